//! The smallest policy that allows what a plugin did (`wasp run --audit
//! --suggest-policy FILE`): built from the uses recorded while it ran in
//! [`Mode::Audit`](super::Mode::Audit), as policy-file text an operator
//! reads, tightens and then enforces. Pure: it decides nothing about any
//! call.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use super::{NetUse, Transport};

/// One use of the network a plugin made, as its policy checked it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Activity {
    /// A socket of this protocol was created.
    Protocol(Transport),
    /// `use` of this address (as checked: no scope id, IPv4-embedding IPv6
    /// forms as their IPv4 address).
    Address(NetUse, SocketAddr),
    /// A multicast group was joined or sent to.
    Multicast(SocketAddr),
    /// A multicast TTL (IPv4) or hop limit (IPv6) was set.
    MulticastTtl {
        /// Whether it was an IPv6 socket's hop limit.
        v6: bool,
        /// The value asked for.
        ttl: u8,
    },
}

/// Contiguous runs of `ports`, as policy-file port ranges.
fn port_ranges(ports: &BTreeSet<u16>) -> Vec<String> {
    let mut ranges: Vec<(u16, u16)> = Vec::new();
    for &port in ports {
        match ranges.last_mut() {
            Some((_, hi)) if u32::from(*hi) + 1 == u32::from(port) => *hi = port,
            _ => ranges.push((port, port)),
        }
    }
    ranges
        .into_iter()
        .map(|(lo, hi)| match lo == hi {
            true => lo.to_string(),
            false => format!("{lo}-{hi}"),
        })
        .collect()
}

/// The ports used of each address.
type PortsByAddress = BTreeMap<IpAddr, BTreeSet<u16>>;

/// Whether every listen on `ip` was on a port the kernel chose: `ip` was
/// bound with port 0 and never with these ports. Such a listen is granted
/// any port (the `bind` grant of port 0 is what holds it to ephemeral
/// ones), since the next run gets other ports.
fn listens_where_bound_ephemeral(
    uses: &BTreeMap<NetUse, PortsByAddress>,
    ip: &IpAddr,
    ports: &BTreeSet<u16>,
) -> bool {
    let bound = uses.get(&NetUse::Bind).and_then(|b| b.get(ip));
    bound.is_some_and(|bound| bound.contains(&0) && bound.is_disjoint(ports))
}

/// The policy file (TOML) granting exactly `activities`: each protocol
/// used; for each use, each address with the ports used (any port of an
/// inbound peer, whose port is the peer's choice); each multicast group
/// with its ports and the highest TTL asked for its family. Limits are
/// not part of it: keep the ones the plugin ran with.
pub fn suggest<'a>(activities: impl IntoIterator<Item = &'a Activity>) -> String {
    let mut protocols = BTreeSet::new();
    let mut uses: BTreeMap<NetUse, PortsByAddress> = BTreeMap::new();
    let mut groups = PortsByAddress::new();
    let (mut ttl_v4, mut ttl_v6) = (0u8, 0u8);
    for activity in activities {
        match *activity {
            Activity::Protocol(transport) => {
                protocols.insert(transport);
            }
            Activity::Address(net_use, addr) => {
                let ports = uses.entry(net_use).or_default().entry(addr.ip());
                ports.or_default().insert(addr.port());
            }
            Activity::Multicast(group) => {
                groups.entry(group.ip()).or_default().insert(group.port());
            }
            Activity::MulticastTtl { v6: false, ttl } => ttl_v4 = ttl_v4.max(ttl),
            Activity::MulticastTtl { v6: true, ttl } => ttl_v6 = ttl_v6.max(ttl),
        }
    }
    let mut text = String::from(
        "# Suggested by wasp from what the plugin did in audit mode: the\n\
         # smallest grants that allow it. Read it, widen or tighten, then\n\
         # enforce it. Limits are not part of it: add the [limits] you run with.\n\n",
    );
    let names: Vec<String> = protocols
        .iter()
        .map(|t| format!("{:?}", t.name()))
        .collect();
    let _ = writeln!(text, "protocols = [{}]", names.join(", "));
    text.push_str("\n[grants]\n");
    for net_use in NetUse::ALL {
        let Some(addresses) = uses.get(&net_use) else {
            continue;
        };
        let inbound = matches!(net_use, NetUse::Accept | NetUse::RecvFrom);
        let mut grants = Vec::new();
        for (ip, ports) in addresses {
            if inbound
                || (net_use == NetUse::Listen && listens_where_bound_ephemeral(&uses, ip, ports))
            {
                grants.push(format!("{{ addr = \"{ip}\" }}"));
            } else {
                for ports in port_ranges(ports) {
                    grants.push(format!("{{ addr = \"{ip}\", ports = \"{ports}\" }}"));
                }
            }
        }
        let _ = writeln!(text, "{net_use} = [{}]", grants.join(", "));
    }
    if !groups.is_empty() {
        let mut grants = Vec::new();
        for (group, ports) in &groups {
            let max_ttl = if group.is_ipv4() { ttl_v4 } else { ttl_v6 };
            for ports in port_ranges(ports) {
                grants.push(format!(
                    "{{ group = \"{group}\", ports = \"{ports}\", max-ttl = {max_ttl} }}"
                ));
            }
        }
        text.push_str(
            "# Multicast on the default interface (loopback): add the interface to use.\n",
        );
        let _ = writeln!(text, "multicast = [{}]", grants.join(", "));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_suggestion_allows_exactly_what_was_done() {
        let done = [
            Activity::Protocol(Transport::Tcp),
            Activity::Protocol(Transport::Udp),
            Activity::Address(NetUse::Bind, addr("127.0.0.1:0")),
            Activity::Address(NetUse::Bind, addr("0.0.0.0:0")),
            Activity::Address(NetUse::Bind, addr("127.0.0.1:7000")),
            Activity::Address(NetUse::Listen, addr("127.0.0.1:7000")),
            Activity::Address(NetUse::Connect, addr("127.0.0.1:80")),
            Activity::Address(NetUse::Connect, addr("127.0.0.1:81")),
            Activity::Address(NetUse::Connect, addr("127.0.0.1:443")),
            Activity::Address(NetUse::Accept, addr("127.0.0.1:50123")),
            Activity::Address(NetUse::SendTo, addr("[::1]:53")),
            Activity::Multicast(addr("239.255.70.1:47000")),
            Activity::MulticastTtl { v6: false, ttl: 1 },
        ];
        let text = suggest(&done);
        let policy = Policy::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(policy.protocols().count(), 2);
        for activity in &done {
            if let Activity::Address(net_use, to) = activity {
                assert!(policy.check(*net_use, *to).is_ok(), "{activity:?}\n{text}");
            }
        }
        // Exactly: the ports between and beside are not granted, an
        // inbound peer's port is its own choice.
        assert!(policy.check(NetUse::Connect, addr("127.0.0.1:82")).is_err());
        assert!(
            policy
                .check(NetUse::Listen, addr("127.0.0.1:7001"))
                .is_err()
        );
        assert!(policy.check(NetUse::Listen, addr("127.0.0.1:7000")).is_ok());
        assert!(policy.check(NetUse::Bind, addr("127.0.0.1:1")).is_err());
        assert!(policy.check(NetUse::Bind, addr("127.0.0.1:7000")).is_ok());
        assert!(policy.check(NetUse::Accept, addr("127.0.0.1:1")).is_ok());
        assert!(policy.check(NetUse::Accept, addr("127.0.0.2:1")).is_err());
        assert!(text.contains(r#"connect = [{ addr = "127.0.0.1", ports = "80-81" }, { addr = "127.0.0.1", ports = "443" }]"#), "{text}");
        let group = policy.check_multicast(addr("239.255.70.1:47000")).unwrap();
        assert_eq!(group.max_ttl, 1);
        assert!(policy.check_multicast(addr("239.255.70.2:47000")).is_err());
    }

    #[test]
    fn a_listen_on_a_port_the_kernel_chose_is_granted_any_port_bound_as_port_0() {
        let done = [
            Activity::Address(NetUse::Bind, addr("127.0.0.1:0")),
            Activity::Address(NetUse::Listen, addr("127.0.0.1:41234")),
        ];
        let policy = Policy::from_toml(&suggest(&done)).unwrap();
        assert!(
            policy
                .check(NetUse::Listen, addr("127.0.0.1:50000"))
                .is_ok()
        );
        assert!(policy.check(NetUse::Bind, addr("127.0.0.1:50000")).is_err());
    }

    #[test]
    fn nothing_done_suggests_a_policy_that_grants_nothing() {
        let policy = Policy::from_toml(&suggest(&[])).unwrap();
        assert_eq!(policy.protocols().count(), 0);
        assert!(NetUse::ALL.iter().all(|u| policy.grants(*u).is_empty()));
    }
}
