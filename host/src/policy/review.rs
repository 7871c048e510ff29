//! What a policy grants, in plain words, and what in it looks like a
//! mistake (`wasp policy check`): a pure reading of a [`Policy`], deciding
//! nothing about any call.

use std::fmt;

use ipnet::IpNet;

use super::{AddressGrant, MulticastGrant, MulticastInterface, NetUse, Policy};

/// Something in a policy that is valid but probably not what its author
/// meant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warning {
    /// The policy is in audit mode: what it does not grant is only logged
    /// (for onboarding a plugin, never for running one).
    Audit,
    /// No protocol or no grant at all: every socket call of the plugin
    /// would be denied.
    GrantsNothing,
    /// Address grants without any protocol: no socket can be created, so
    /// none of them can be used.
    NoProtocol,
    /// Two grants of one use that cover some of the same addresses and
    /// ports (one may be wider than meant).
    Overlap {
        /// The use both grant.
        net_use: NetUse,
        /// The grant listed first.
        first: AddressGrant,
        /// The grant listed later.
        second: AddressGrant,
    },
    /// A grant of every address of its family (a /0).
    EveryAddress {
        /// The use granted.
        net_use: NetUse,
        /// The grant.
        grant: AddressGrant,
    },
    /// An outgoing grant (connect, send-to, broadcast) of every port of
    /// more than one host.
    EveryPort {
        /// The use granted.
        net_use: NetUse,
        /// The grant.
        grant: AddressGrant,
    },
    /// A multicast grant whose datagrams may leave this machine (a TTL
    /// ceiling above 0).
    MulticastLeavesHost {
        /// The grant.
        grant: MulticastGrant,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::Audit => f.write_str(
                "mode = \"audit\": nothing the policy does not grant is refused (use it to learn a plugin's needs, then enforce)",
            ),
            Warning::GrantsNothing => f.write_str(
                "the policy grants nothing: every socket call of the plugin will be denied",
            ),
            Warning::NoProtocol => f.write_str(
                "no protocol is allowed (`protocols`), so no socket can be created and no grant can be used",
            ),
            Warning::Overlap {
                net_use,
                first,
                second,
            } => write!(
                f,
                "`{net_use}` grants overlap: {first} and {second} cover some of the same addresses and ports"
            ),
            Warning::EveryAddress { net_use, grant } => write!(
                f,
                "`{net_use}` grant {grant} covers every address of its family"
            ),
            Warning::EveryPort { net_use, grant } => write!(
                f,
                "`{net_use}` grant {grant} allows every port of more than one host"
            ),
            Warning::MulticastLeavesHost { grant } => write!(
                f,
                "multicast grant {} ports {}-{} allows a TTL of {}: datagrams may leave this machine",
                grant.groups,
                grant.ports.start(),
                grant.ports.end(),
                grant.max_ttl
            ),
        }
    }
}

/// What each use lets the plugin do, as a sentence's start.
fn verb(net_use: NetUse) -> &'static str {
    match net_use {
        NetUse::Bind => "may bind",
        NetUse::Listen => "may listen on",
        NetUse::Accept => "may accept connections from",
        NetUse::Connect => "may connect to",
        NetUse::SendTo => "may send datagrams to",
        NetUse::RecvFrom => "may receive datagrams from",
        NetUse::Broadcast => "may broadcast to",
    }
}

/// The policy's grants and limits in plain words, one line each.
pub fn describe(policy: &Policy) -> Vec<String> {
    let mut lines = Vec::new();
    let protocols: Vec<&str> = policy.protocols().map(|t| t.name()).collect();
    lines.push(match protocols.is_empty() {
        true => "protocols: none".to_string(),
        false => format!("protocols: {}", protocols.join(", ")),
    });
    for net_use in NetUse::ALL {
        for grant in policy.grants(net_use) {
            lines.push(format!("{} {grant}", verb(net_use)));
        }
    }
    for grant in policy.multicast_grants() {
        let interface = match &grant.interface {
            MulticastInterface::V4(addr) => addr.to_string(),
            MulticastInterface::V6(0) => "the loopback interface".to_string(),
            MulticastInterface::V6(index) => format!("interface {index}"),
            MulticastInterface::V6Named(name) => name.clone(),
        };
        let sources = grant
            .source
            .map(|s| format!(", from sources in {s}"))
            .unwrap_or_default();
        lines.push(format!(
            "may join multicast groups {} ports {}-{} on {interface}, TTL at most {}{sources}",
            grant.groups,
            grant.ports.start(),
            grant.ports.end(),
            grant.max_ttl
        ));
    }
    let limits = policy.limits();
    let mut quotas = vec![
        format!("sockets {}", limits.max_sockets),
        format!("message queues {}", limits.max_queues),
        format!("bytes per receive {}", limits.max_recv_len),
        format!("overlapped operations {}", limits.max_overlapped_operations),
    ];
    if let Some(rate) = limits.max_send_rate {
        quotas.push(format!("bytes/s per socket {rate}"));
    }
    if let Some(cpu) = limits.max_cpu_time {
        quotas.push(format!("CPU seconds {}", cpu.as_secs_f64()));
    }
    if let Some(wall) = limits.max_wall_time {
        quotas.push(format!("running seconds {}", wall.as_secs_f64()));
    }
    if let Some(share) = limits.max_cpu_share {
        quotas.push(format!("share of a core {share}%"));
    }
    lines.push(format!("at most: {}", quotas.join(", ")));
    lines
}

/// Whether two blocks share an address (CIDR blocks nest or are apart).
fn nets_overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Whether two grants cover some of the same addresses and ports.
fn grants_overlap(a: &AddressGrant, b: &AddressGrant) -> bool {
    nets_overlap(&a.net, &b.net)
        && a.ports.start() <= b.ports.end()
        && b.ports.start() <= a.ports.end()
}

/// What in `policy` looks like a mistake, in the order of the file.
pub fn warnings(policy: &Policy) -> Vec<Warning> {
    let mut found = Vec::new();
    if policy.mode() == super::Mode::Audit {
        found.push(Warning::Audit);
    }
    let any_grant = NetUse::ALL.iter().any(|&u| !policy.grants(u).is_empty())
        || !policy.multicast_grants().is_empty();
    let any_protocol = policy.protocols().next().is_some();
    if !any_grant || !any_protocol {
        found.push(if any_grant {
            Warning::NoProtocol
        } else {
            Warning::GrantsNothing
        });
    }
    for net_use in NetUse::ALL {
        let grants = policy.grants(net_use);
        for (i, grant) in grants.iter().enumerate() {
            if grant.net.prefix_len() == 0 {
                found.push(Warning::EveryAddress {
                    net_use,
                    grant: grant.clone(),
                });
            }
            let outgoing = matches!(
                net_use,
                NetUse::Connect | NetUse::SendTo | NetUse::Broadcast
            );
            let every_port = *grant.ports.start() == 0 && *grant.ports.end() == u16::MAX;
            if outgoing && every_port && grant.net.prefix_len() < grant.net.max_prefix_len() {
                found.push(Warning::EveryPort {
                    net_use,
                    grant: grant.clone(),
                });
            }
            for later in &grants[i + 1..] {
                if grants_overlap(grant, later) {
                    found.push(Warning::Overlap {
                        net_use,
                        first: grant.clone(),
                        second: later.clone(),
                    });
                }
            }
        }
    }
    for grant in policy.multicast_grants() {
        if grant.max_ttl > 0 {
            found.push(Warning::MulticastLeavesHost {
                grant: grant.clone(),
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> Policy {
        Policy::from_toml(text).unwrap()
    }

    #[test]
    fn an_empty_policy_grants_nothing() {
        assert_eq!(warnings(&policy("")), [Warning::GrantsNothing]);
        assert_eq!(
            warnings(&policy("protocols = [\"tcp\"]")),
            [Warning::GrantsNothing]
        );
    }

    #[test]
    fn grants_without_a_protocol_are_unusable() {
        let p = policy("[grants]\nconnect = [{ addr = \"127.0.0.1\", ports = \"80\" }]");
        assert_eq!(warnings(&p), [Warning::NoProtocol]);
    }

    #[test]
    fn a_narrow_policy_has_no_warning() {
        let p = policy(
            "protocols = [\"tcp\", \"udp\"]\n[grants]\n\
             bind = [{ addr = \"127.0.0.1\", ports = \"*\" }]\n\
             connect = [{ addr = \"10.0.0.0/8\", ports = \"443\" }]\n\
             send-to = [{ addr = \"127.0.0.1\", ports = \"*\" }]",
        );
        assert_eq!(warnings(&p), []);
        assert_eq!(
            describe(&p)[..4],
            [
                "protocols: tcp, udp",
                "may bind 127.0.0.1/32 ports *",
                "may connect to 10.0.0.0/8 port 443",
                "may send datagrams to 127.0.0.1/32 ports *",
            ]
        );
    }

    #[test]
    fn wide_and_overlapping_grants_are_named() {
        let p = policy(
            "protocols = [\"tcp\"]\n[grants]\n\
             connect = [{ addr = \"0.0.0.0/0\", ports = \"443\" }, \
                        { addr = \"10.0.0.0/8\", ports = \"*\" }]",
        );
        let found = warnings(&p);
        assert!(
            matches!(
                found[0],
                Warning::EveryAddress {
                    net_use: NetUse::Connect,
                    ..
                }
            ),
            "{found:?}"
        );
        assert!(
            matches!(
                found[1],
                Warning::Overlap {
                    net_use: NetUse::Connect,
                    ..
                }
            ),
            "{found:?}"
        );
        assert!(
            matches!(
                found[2],
                Warning::EveryPort {
                    net_use: NetUse::Connect,
                    ..
                }
            ),
            "{found:?}"
        );
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(
            found[1].to_string(),
            "`connect` grants overlap: 0.0.0.0/0 port 443 and 10.0.0.0/8 ports * cover some of the same addresses and ports"
        );
    }

    #[test]
    fn disjoint_ports_do_not_overlap() {
        let p = policy(
            "protocols = [\"tcp\"]\n[grants]\n\
             bind = [{ addr = \"127.0.0.1\", ports = \"1000-1999\" }, \
                     { addr = \"127.0.0.0/8\", ports = \"2000-2999\" }]",
        );
        assert_eq!(warnings(&p), []);
    }

    #[test]
    fn a_multicast_ttl_above_zero_is_named() {
        let p = policy(
            "protocols = [\"udp\"]\n[grants]\n\
             multicast = [{ group = \"239.1.0.0/16\", ports = \"5000\", interface = \"127.0.0.1\", max-ttl = 4 }]",
        );
        let found = warnings(&p);
        assert!(
            matches!(found[..], [Warning::MulticastLeavesHost { .. }]),
            "{found:?}"
        );
    }
}
