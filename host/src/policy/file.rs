//! The policy file: TOML, every key known, nothing granted by omission.
//!
//! ```toml
//! protocols = ["tcp"]
//!
//! [limits]
//! max-sockets = 32
//!
//! [grants]
//! bind = [{ addr = "127.0.0.1", ports = "0-65535" }]
//! listen = [{ addr = "127.0.0.1" }]            # ports default to "*"
//! accept = [{ addr = "127.0.0.0/8" }]
//! ```

use std::ops::RangeInclusive;
use std::path::Path;

use ipnet::IpNet;
use serde::Deserialize;

use super::{
    DEFAULT_MAX_QUEUES, DEFAULT_MAX_RECV_LEN, DEFAULT_MAX_SOCKETS, MulticastGrant,
    MulticastInterface, NetUse, Policy, Transport,
};

/// A policy file that could not be read or understood.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read policy file {path}: {source}")]
    Read {
        /// The path given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed, or has a key or value the format does not know.
    #[error("invalid policy{where_}: {message}")]
    Invalid {
        /// " in FILE" when the text came from a file.
        where_: String,
        /// What is wrong, with its line and column.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PolicyFile {
    #[serde(default)]
    protocols: Vec<ProtocolName>,
    #[serde(default)]
    limits: LimitsFile,
    #[serde(default)]
    grants: GrantsFile,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum ProtocolName {
    Tcp,
    Udp,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct LimitsFile {
    #[serde(default = "default_max_sockets")]
    max_sockets: u32,
    #[serde(default = "default_max_recv_len")]
    max_recv_len: u32,
    #[serde(default = "default_max_queues")]
    max_queues: u32,
}

impl Default for LimitsFile {
    fn default() -> Self {
        Self {
            max_sockets: DEFAULT_MAX_SOCKETS,
            max_recv_len: DEFAULT_MAX_RECV_LEN,
            max_queues: DEFAULT_MAX_QUEUES,
        }
    }
}

fn default_max_queues() -> u32 {
    DEFAULT_MAX_QUEUES
}

fn default_max_sockets() -> u32 {
    DEFAULT_MAX_SOCKETS
}

fn default_max_recv_len() -> u32 {
    DEFAULT_MAX_RECV_LEN
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct GrantsFile {
    #[serde(default)]
    bind: Vec<GrantFile>,
    #[serde(default)]
    listen: Vec<GrantFile>,
    #[serde(default)]
    accept: Vec<GrantFile>,
    #[serde(default)]
    connect: Vec<GrantFile>,
    #[serde(default)]
    send_to: Vec<GrantFile>,
    #[serde(default)]
    recv_from: Vec<GrantFile>,
    #[serde(default)]
    broadcast: Vec<GrantFile>,
    #[serde(default)]
    multicast: Vec<MulticastFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct MulticastFile {
    /// Group address or block: "239.255.0.0/16", "ff15::/16".
    group: AddrBlock,
    #[serde(default)]
    ports: Option<PortsFile>,
    /// Only datagrams from this source (address or block).
    #[serde(default)]
    source: Option<AddrBlock>,
    /// IPv4: the interface address (default 127.0.0.1). IPv6: the interface
    /// index or name (default 0: loopback).
    #[serde(default)]
    interface: Option<InterfaceFile>,
    /// Highest TTL / hop limit (default 0: this host only).
    #[serde(default)]
    max_ttl: u8,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum InterfaceFile {
    Index(u32),
    Address(String),
}

impl GrantsFile {
    fn of(&self, net_use: NetUse) -> &[GrantFile] {
        match net_use {
            NetUse::Bind => &self.bind,
            NetUse::Listen => &self.listen,
            NetUse::Accept => &self.accept,
            NetUse::Connect => &self.connect,
            NetUse::SendTo => &self.send_to,
            NetUse::RecvFrom => &self.recv_from,
            NetUse::Broadcast => &self.broadcast,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantFile {
    /// An address or CIDR block: "127.0.0.1", "10.0.0.0/8", "::1".
    addr: AddrBlock,
    /// "*", "80", "1024-65535", or a number.
    #[serde(default)]
    ports: Option<PortsFile>,
}

#[derive(Deserialize)]
#[serde(try_from = "String")]
struct AddrBlock(IpNet);

impl TryFrom<String> for AddrBlock {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(AddrBlock(net.trunc()));
        }
        text.parse::<std::net::IpAddr>()
            .map(|ip| AddrBlock(IpNet::from(ip)))
            .map_err(|_| format!("`{text}` is not an IP address or CIDR block"))
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PortsFile {
    Number(u16),
    Text(String),
}

impl PortsFile {
    fn range(&self) -> Result<RangeInclusive<u16>, String> {
        let text = match self {
            PortsFile::Number(port) => return Ok(*port..=*port),
            PortsFile::Text(text) => text.trim(),
        };
        if text == "*" {
            return Ok(0..=u16::MAX);
        }
        let parse = |s: &str| {
            s.trim()
                .parse::<u16>()
                .map_err(|_| format!("`{text}` is not a port, a range `LOW-HIGH` or `*`"))
        };
        match text.split_once('-') {
            None => parse(text).map(|p| p..=p),
            Some((lo, hi)) => {
                let (lo, hi) = (parse(lo)?, parse(hi)?);
                if lo > hi {
                    return Err(format!("port range `{text}` is empty"));
                }
                Ok(lo..=hi)
            }
        }
    }
}

impl Policy {
    /// Parses a policy from TOML text. Unknown keys are rejected.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        parse(text, String::new())
    }

    /// Reads and parses a policy file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Policy, PolicyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        parse(&text, format!(" in {}", path.display()))
    }
}

fn parse(text: &str, where_: String) -> Result<Policy, PolicyError> {
    let invalid = |message: String| PolicyError::Invalid {
        where_: where_.clone(),
        message,
    };
    let file: PolicyFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let mut builder = Policy::builder()
        .max_sockets(file.limits.max_sockets)
        .max_recv_len(file.limits.max_recv_len)
        .max_queues(file.limits.max_queues);
    for protocol in &file.protocols {
        builder = builder.allow_protocol(match protocol {
            ProtocolName::Tcp => Transport::Tcp,
            ProtocolName::Udp => Transport::Udp,
        });
    }
    for m in &file.grants.multicast {
        let ports = match &m.ports {
            None => 0..=u16::MAX,
            Some(ports) => ports
                .range()
                .map_err(|e| invalid(format!("grants.multicast: {e}")))?,
        };
        if !m.group.0.network().is_multicast() {
            return Err(invalid(format!(
                "grants.multicast: `{}` is not a multicast block",
                m.group.0
            )));
        }
        let mut grant = MulticastGrant::loopback(m.group.0, ports);
        grant.source = m.source.as_ref().map(|s| s.0);
        grant.max_ttl = m.max_ttl;
        grant.interface = match (&m.interface, m.group.0) {
            (None, _) => grant.interface,
            (Some(InterfaceFile::Address(a)), IpNet::V4(_)) => {
                MulticastInterface::V4(a.parse().map_err(|_| {
                    invalid(format!(
                        "grants.multicast: interface `{a}` is not an IPv4 address"
                    ))
                })?)
            }
            (Some(InterfaceFile::Index(i)), IpNet::V6(_)) => MulticastInterface::V6(*i),
            (Some(InterfaceFile::Address(name)), IpNet::V6(_)) => {
                MulticastInterface::V6Named(name.clone())
            }
            (Some(_), IpNet::V4(_)) => {
                return Err(invalid(
                    "grants.multicast: an IPv4 group needs an interface address".into(),
                ));
            }
        };
        builder = builder.grant_multicast(grant);
    }
    for net_use in NetUse::ALL {
        for grant in file.grants.of(net_use) {
            let ports = match &grant.ports {
                None => 0..=u16::MAX,
                Some(ports) => ports
                    .range()
                    .map_err(|e| invalid(format!("grants.{net_use}: {e}")))?,
            };
            builder = builder.grant(net_use, grant.addr.0, ports);
        }
    }
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::AddressGrant;

    #[test]
    fn parses_every_use_and_port_form() {
        let policy = Policy::from_toml(
            r#"
            protocols = ["tcp", "udp"]
            [limits]
            max-sockets = 3
            [grants]
            bind = [{ addr = "127.0.0.1", ports = "0-65535" }]
            listen = [{ addr = "127.0.0.1", ports = 7000 }]
            accept = [{ addr = "127.0.0.0/8" }]
            connect = [{ addr = "::1", ports = "80" }]
            send-to = [{ addr = "127.0.0.1", ports = "*" }]
            recv-from = [{ addr = "127.0.0.1/32", ports = "1000-2000" }]
            broadcast = [{ addr = "255.255.255.255/32", ports = "9" }]
            "#,
        )
        .unwrap();
        assert_eq!(policy.limits().max_sockets, 3);
        assert_eq!(policy.protocols().count(), 2);
        assert_eq!(
            policy.grants(NetUse::Listen),
            &[AddressGrant {
                net: "127.0.0.1/32".parse().unwrap(),
                ports: 7000..=7000
            }]
        );
        assert_eq!(policy.grants(NetUse::Accept)[0].ports, 0..=65535);
        assert!(
            policy
                .check(NetUse::Connect, "[::1]:80".parse().unwrap())
                .is_ok()
        );
        assert!(
            policy
                .check(NetUse::RecvFrom, "127.0.0.1:2001".parse().unwrap())
                .is_err()
        );
    }

    #[test]
    fn multicast_grants_parse_with_their_defaults() {
        let policy = Policy::from_toml(
            r#"
            [grants]
            multicast = [
                { group = "239.255.0.0/16", ports = "5000" },
                { group = "239.1.0.0/16", source = "127.0.0.1", interface = "127.0.0.1", max-ttl = 2 },
                { group = "ff15::/16", interface = 1 },
                { group = "ff16::/16", interface = "veth0" },
            ]
            "#,
        )
        .unwrap();
        let grants = policy.multicast_grants();
        assert_eq!(grants.len(), 4);
        assert_eq!(
            grants[3].interface,
            MulticastInterface::V6Named("veth0".into())
        );
        assert_eq!(
            (grants[0].max_ttl, grants[0].ports.clone()),
            (0, 5000..=5000)
        );
        assert_eq!(grants[1].source, Some("127.0.0.1/32".parse().unwrap()));
        assert_eq!(grants[1].max_ttl, 2);
        assert_eq!(grants[2].interface, MulticastInterface::V6(1));
        let err = Policy::from_toml("[grants]\nmulticast = [{ group = \"10.0.0.0/8\" }]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a multicast block"), "{err}");
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        for text in [
            "protocol = [\"tcp\"]",
            "[grants]\nconect = []",
            "[limits]\nmax-socket = 1",
            "[grants]\nbind = [{ addr = \"127.0.0.1\", port = 1 }]",
        ] {
            let err = Policy::from_toml(text).unwrap_err().to_string();
            assert!(err.contains("unknown"), "{text}: {err}");
        }
    }

    #[test]
    fn bad_values_are_rejected_clearly() {
        let err = Policy::from_toml("[grants]\nbind = [{ addr = \"localhost\" }]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`localhost` is not an IP address"), "{err}");
        let err = Policy::from_toml("[grants]\nbind = [{ addr = \"::1\", ports = \"9-1\" }]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("empty"), "{err}");
        let err = Policy::from_toml("protocols = [\"sctp\"]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sctp"), "{err}");
    }

    #[test]
    fn empty_file_denies_everything() {
        let policy = Policy::from_toml("").unwrap();
        assert_eq!(policy.protocols().count(), 0);
        for net_use in NetUse::ALL {
            assert!(policy.grants(net_use).is_empty());
        }
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = Policy::from_file("/nonexistent/wasp.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/wasp.toml"), "{err}");
    }
}
