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
//!
//! Every value is checked as it is read (issue 8 point 9), so that an error
//! names its line: blocks with host bits set, IPv6 blocks of a form that
//! embeds IPv4 addresses, multicast groups outside 224.0.0.0/4 and
//! ff00::/8, a source or interface of the other family, interface names the
//! kernel would not accept, and limits out of their range are refused.

use std::fmt;
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::RangeInclusive;
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use super::{Limits, Mode, MulticastGrant, MulticastInterface, NetUse, Policy, Transport, address};

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
    /// The TOML is malformed, or has a key or value the format does not know
    /// or refuses.
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
    /// "enforce" (the default) or "audit".
    #[serde(default)]
    mode: ModeName,
    #[serde(default)]
    protocols: Vec<ProtocolName>,
    #[serde(default)]
    limits: LimitsFile,
    #[serde(default)]
    grants: GrantsFile,
}

#[derive(Deserialize, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
enum ModeName {
    #[default]
    Enforce,
    Audit,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum ProtocolName {
    Tcp,
    Udp,
}

/// `[limits]`: a key left out keeps its default ([`Limits::default`]).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct LimitsFile {
    max_sockets: Option<u32>,
    max_recv_len: Option<Bounded<MaxRecvLen>>,
    max_queues: Option<Bounded<MaxQueues>>,
    max_buffers_per_call: Option<Bounded<MaxBuffersPerCall>>,
    max_socket_buffer_bytes: Option<u64>,
    max_overlapped_operations: Option<u32>,
    max_overlapped_bytes: Option<u64>,
    max_send_rate: Option<u32>,
    max_cpu_seconds: Option<Seconds>,
    max_wall_seconds: Option<Seconds>,
    max_cpu_share: Option<Bounded<MaxCpuShare>>,
}

impl LimitsFile {
    /// The limits of the file, `defaults` where a key is left out.
    fn over(self, defaults: Limits) -> Limits {
        Limits {
            max_sockets: self.max_sockets.unwrap_or(defaults.max_sockets),
            max_recv_len: self.max_recv_len.map_or(defaults.max_recv_len, |b| b.0),
            max_queues: self.max_queues.map_or(defaults.max_queues, |b| b.0),
            max_buffers_per_call: self
                .max_buffers_per_call
                .map_or(defaults.max_buffers_per_call, |b| b.0),
            max_socket_buffer_bytes: self
                .max_socket_buffer_bytes
                .unwrap_or(defaults.max_socket_buffer_bytes),
            max_overlapped_operations: self
                .max_overlapped_operations
                .unwrap_or(defaults.max_overlapped_operations),
            max_overlapped_bytes: self
                .max_overlapped_bytes
                .unwrap_or(defaults.max_overlapped_bytes),
            max_send_rate: self.max_send_rate.or(defaults.max_send_rate),
            max_cpu_time: self.max_cpu_seconds.map(|s| s.0).or(defaults.max_cpu_time),
            max_wall_time: self
                .max_wall_seconds
                .map(|s| s.0)
                .or(defaults.max_wall_time),
            // Bounded to 1..=100 as it was read, so it fits.
            max_cpu_share: self
                .max_cpu_share
                .and_then(|b| u8::try_from(b.0).ok())
                .or(defaults.max_cpu_share),
        }
    }
}

/// The range of a `[limits]` count.
trait Bounds {
    /// The key in the file.
    const KEY: &'static str;
    /// The values allowed.
    const RANGE: RangeInclusive<u32>;
    /// Why the range is what it is.
    const WHY: &'static str;
}

/// A `[limits]` count checked against its [`Bounds`] as it is read.
struct Bounded<B>(u32, PhantomData<B>);

impl<'de, B: Bounds> Deserialize<'de> for Bounded<B> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = i64::deserialize(deserializer)?;
        u32::try_from(value)
            .ok()
            .filter(|value| B::RANGE.contains(value))
            .map(|value| Bounded(value, PhantomData))
            .ok_or_else(|| {
                de::Error::custom(format!(
                    "`{} = {value}` is out of range {}..={}: {}",
                    B::KEY,
                    B::RANGE.start(),
                    B::RANGE.end(),
                    B::WHY
                ))
            })
    }
}

/// The largest `max-recv-len`: 64 MiB.
const MAX_RECV_LEN_CEILING: u32 = 64 << 20;

/// Bounds of `max-recv-len`.
enum MaxRecvLen {}

impl Bounds for MaxRecvLen {
    const KEY: &'static str = "max-recv-len";
    const RANGE: RangeInclusive<u32> = 1..=MAX_RECV_LEN_CEILING;
    const WHY: &'static str = "a receive must be able to return a byte, and one receive \
        buffer is at most 64 MiB";
}

/// Bounds of `max-queues`.
enum MaxQueues {}

impl Bounds for MaxQueues {
    const KEY: &'static str = "max-queues";
    const RANGE: RangeInclusive<u32> = 0..=1024;
    const WHY: &'static str = "a guest holds at most 1024 message queues";
}

/// Bounds of `max-buffers-per-call`.
enum MaxBuffersPerCall {}

impl Bounds for MaxBuffersPerCall {
    const KEY: &'static str = "max-buffers-per-call";
    const RANGE: RangeInclusive<u32> = 1..=u32::MAX;
    const WHY: &'static str = "a send passes at least one buffer";
}

/// Bounds of `max-cpu-share`.
enum MaxCpuShare {}

impl Bounds for MaxCpuShare {
    const KEY: &'static str = "max-cpu-share";
    const RANGE: RangeInclusive<u32> = 1..=100;
    const WHY: &'static str = "a percentage of one core";
}

/// A positive duration in seconds (integer or float).
struct Seconds(Duration);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let seconds = f64::deserialize(deserializer)?;
        Some(seconds)
            .filter(|s| *s > 0.0)
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .filter(|d| !d.is_zero())
            .map(Seconds)
            .ok_or_else(|| {
                de::Error::custom(format!(
                    "{seconds} is not a positive, finite number of seconds"
                ))
            })
    }
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
    /// "*", "80", "1024-65535", or a number (default "*").
    #[serde(default)]
    ports: Ports,
}

/// One `multicast` grant, checked as a whole (source and interface against
/// the group's family).
struct MulticastFile(MulticastGrant);

impl<'de> Deserialize<'de> for MulticastFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Checks the entry inside the visit of its table, so that an error
        /// points at the entry rather than at the array holding it.
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = MulticastFile;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a multicast grant: { group = ..., ports = ..., ... }")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MulticastFile, A::Error> {
                let entry = MulticastEntry::deserialize(MapAccessDeserializer::new(map))?;
                MulticastFile::try_from(entry).map_err(de::Error::custom)
            }
        }
        deserializer.deserialize_map(EntryVisitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct MulticastEntry {
    /// Group address or block: "239.255.0.0/16", "ff15::/16".
    group: GroupBlock,
    #[serde(default)]
    ports: Ports,
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

impl TryFrom<MulticastEntry> for MulticastFile {
    type Error = String;
    fn try_from(entry: MulticastEntry) -> Result<Self, String> {
        let group = entry.group.0;
        let mut grant = MulticastGrant::loopback(group, entry.ports.0);
        grant.max_ttl = entry.max_ttl;
        if let Some(AddrBlock(source)) = entry.source {
            if source.addr().is_ipv4() != group.addr().is_ipv4() {
                return Err(format!(
                    "source `{source}` is {} but the group `{group}` is {}",
                    family(&source),
                    family(&group)
                ));
            }
            grant.source = Some(source);
        }
        if let Some(interface) = entry.interface {
            grant.interface = interface.for_group(&group)?;
        }
        Ok(MulticastFile(grant))
    }
}

/// "IPv4" or "IPv6".
fn family(net: &IpNet) -> &'static str {
    match net {
        IpNet::V4(_) => "IPv4",
        IpNet::V6(_) => "IPv6",
    }
}

/// The `interface` of a multicast grant as written: an index or a text.
enum InterfaceFile {
    Index(u32),
    Text(String),
}

impl InterfaceFile {
    /// The interface, checked against the family of `group`: an IPv4 group
    /// takes an interface address, an IPv6 group an index or a name.
    fn for_group(self, group: &IpNet) -> Result<MulticastInterface, String> {
        match (self, group) {
            (InterfaceFile::Index(_), IpNet::V4(_)) => {
                Err("an IPv4 group's interface is given by its IPv4 address, not an index".into())
            }
            (InterfaceFile::Text(text), IpNet::V4(_)) => match text.parse::<IpAddr>() {
                Ok(IpAddr::V4(v4)) => Ok(MulticastInterface::V4(v4)),
                Ok(IpAddr::V6(_)) => Err(format!(
                    "interface `{text}` is an IPv6 address, but the group `{group}` is IPv4: \
                     give the IPv4 address of the interface"
                )),
                Err(_) => Err(format!(
                    "interface `{text}` is not an IPv4 address: an IPv4 group's interface \
                     is given by its address"
                )),
            },
            (InterfaceFile::Index(index), IpNet::V6(_)) => Ok(MulticastInterface::V6(index)),
            (InterfaceFile::Text(text), IpNet::V6(_)) => {
                if text.parse::<IpAddr>().is_ok() {
                    return Err(format!(
                        "interface `{text}` is an address, but an IPv6 group's interface is \
                         given by its index or name"
                    ));
                }
                check_interface_name(&text)?;
                Ok(MulticastInterface::V6Named(text))
            }
        }
    }
}

/// The longest interface name: IFNAMSIZ - 1.
const MAX_INTERFACE_NAME_LEN: usize = 15;

/// Refuses a name no interface can have (Linux `dev_valid_name`).
fn check_interface_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an interface name cannot be empty".into());
    }
    if name.len() > MAX_INTERFACE_NAME_LEN {
        return Err(format!(
            "interface name `{name}` is longer than {MAX_INTERFACE_NAME_LEN} bytes (IFNAMSIZ - 1)"
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("`{name}` is not an interface name"));
    }
    if let Some(bad) = name
        .chars()
        .find(|&c| c == '/' || c == ':' || c == '\0' || c.is_whitespace())
    {
        let what = match bad {
            '/' => "`/`".to_owned(),
            ':' => "`:`".to_owned(),
            '\0' => "NUL".to_owned(),
            other => format!("whitespace ({other:?})"),
        };
        return Err(format!(
            "interface name {name:?} contains {what}, which no interface name has"
        ));
    }
    Ok(())
}

impl<'de> Deserialize<'de> for InterfaceFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InterfaceVisitor;
        impl Visitor<'_> for InterfaceVisitor {
            type Value = InterfaceFile;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an interface address, index or name")
            }
            fn visit_i64<E: de::Error>(self, index: i64) -> Result<InterfaceFile, E> {
                u32::try_from(index).map(InterfaceFile::Index).map_err(|_| {
                    E::custom(format!(
                        "interface index {index} is out of range 0..=4294967295"
                    ))
                })
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<InterfaceFile, E> {
                Ok(InterfaceFile::Text(text.to_owned()))
            }
        }
        deserializer.deserialize_any(InterfaceVisitor)
    }
}

/// An address or CIDR block, without host bits and not of an
/// IPv4-embedding IPv6 form.
#[derive(Deserialize)]
#[serde(try_from = "String")]
struct AddrBlock(IpNet);

impl TryFrom<String> for AddrBlock {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let net = match text.parse::<IpNet>() {
            Ok(net) => net,
            Err(_) => text
                .parse::<IpAddr>()
                .map(IpNet::from)
                .map_err(|_| format!("`{text}` is not an IP address or CIDR block"))?,
        };
        let network = net.trunc();
        if network != net {
            return Err(format!(
                "`{text}` has host bits set: write `{network}` for the block, or `{}` for \
                 the one address",
                net.addr()
            ));
        }
        if let IpNet::V6(v6) = net
            && let Some((form, v4)) = address::embedded_block(v6)
        {
            return Err(match v4 {
                Some(v4) => {
                    let v4 = if v4.prefix_len() == v4.max_prefix_len() {
                        v4.addr().to_string()
                    } else {
                        v4.to_string()
                    };
                    format!(
                        "`{text}` embeds IPv4 ({form}) and is checked as IPv4: write it as `{v4}`"
                    )
                }
                None => format!(
                    "`{text}` lies in the {form} block `{}`, whose embedded IPv4 addresses \
                     cannot be known: addresses in it are always refused",
                    form.prefix()
                ),
            });
        }
        Ok(AddrBlock(net))
    }
}

/// A multicast group block: an [`AddrBlock`] inside 224.0.0.0/4 or
/// ff00::/8.
#[derive(Deserialize)]
#[serde(try_from = "AddrBlock")]
struct GroupBlock(IpNet);

/// The IPv4 multicast block.
const IPV4_MULTICAST: IpNet = IpNet::V4(ipnet::Ipv4Net::new_assert(Ipv4Addr::new(224, 0, 0, 0), 4));
/// The IPv6 multicast block.
const IPV6_MULTICAST: IpNet = IpNet::V6(ipnet::Ipv6Net::new_assert(
    std::net::Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
    8,
));

impl TryFrom<AddrBlock> for GroupBlock {
    type Error = String;
    fn try_from(AddrBlock(net): AddrBlock) -> Result<Self, String> {
        if IPV4_MULTICAST.contains(&net) || IPV6_MULTICAST.contains(&net) {
            Ok(GroupBlock(net))
        } else {
            Err(format!(
                "`{net}` is not a multicast block: groups lie in {IPV4_MULTICAST} or \
                 {IPV6_MULTICAST}"
            ))
        }
    }
}

/// A port range: "*", "80", "1024-65535", or a number.
struct Ports(RangeInclusive<u16>);

impl Default for Ports {
    fn default() -> Self {
        Ports(0..=u16::MAX)
    }
}

impl Ports {
    fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "*" {
            return Ok(Ports::default());
        }
        let parse = |s: &str| {
            s.trim()
                .parse::<u16>()
                .map_err(|_| format!("`{text}` is not a port, a range `LOW-HIGH` or `*`"))
        };
        match text.split_once('-') {
            None => parse(text).map(|p| Ports(p..=p)),
            Some((lo, hi)) => {
                let (lo, hi) = (parse(lo)?, parse(hi)?);
                if lo > hi {
                    return Err(format!("port range `{text}` is empty"));
                }
                Ok(Ports(lo..=hi))
            }
        }
    }
}

impl<'de> Deserialize<'de> for Ports {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortsVisitor;
        impl Visitor<'_> for PortsVisitor {
            type Value = Ports;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port, a range `LOW-HIGH` or `*`")
            }
            fn visit_i64<E: de::Error>(self, port: i64) -> Result<Ports, E> {
                u16::try_from(port)
                    .map(|p| Ports(p..=p))
                    .map_err(|_| E::custom(format!("port {port} is out of range 0..=65535")))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Ports, E> {
                Ports::parse(text).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(PortsVisitor)
    }
}

impl Policy {
    /// Parses a policy from TOML text. Unknown keys and values the format
    /// refuses are errors naming their line.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        parse(text, String::new())
    }

    /// Reads and parses a policy file; errors name the file and the line.
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
    let file: PolicyFile = toml::from_str(text).map_err(|e| PolicyError::Invalid {
        where_,
        message: e.to_string(),
    })?;
    let mode = match file.mode {
        ModeName::Enforce => Mode::Enforce,
        ModeName::Audit => Mode::Audit,
    };
    let mut builder = Policy::builder()
        .mode(mode)
        .limits(file.limits.over(Limits::default()));
    for protocol in &file.protocols {
        builder = builder.allow_protocol(match protocol {
            ProtocolName::Tcp => Transport::Tcp,
            ProtocolName::Udp => Transport::Udp,
        });
    }
    for net_use in NetUse::ALL {
        for grant in file.grants.of(net_use) {
            builder = builder.grant(net_use, grant.addr.0, grant.ports.0.clone());
        }
    }
    for MulticastFile(grant) in file.grants.multicast {
        builder = builder.grant_multicast(grant);
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

    /// Asserts that `text` is refused with an error naming line `line` and
    /// containing `needle`.
    fn assert_refused(text: &str, line: usize, needle: &str) {
        let err = match Policy::from_toml(text) {
            Ok(policy) => panic!("accepted: {text}\n{policy:?}"),
            Err(err) => err.to_string(),
        };
        assert!(err.contains(&format!("at line {line},")), "{text}\n{err}");
        assert!(err.contains(needle), "{text}\nwanted `{needle}` in\n{err}");
    }

    #[test]
    fn blocks_with_host_bits_are_refused() {
        for (text, needle) in [
            (
                "[grants]\nbind = [{ addr = \"127.0.0.1/0\" }]",
                "`127.0.0.1/0` has host bits set: write `0.0.0.0/0`",
            ),
            (
                "[grants]\nconnect = [{ addr = \"10.9.9.9/8\" }]",
                "`10.9.9.9/8` has host bits set: write `10.0.0.0/8`",
            ),
            (
                "[grants]\nconnect = [{ addr = \"fd00::1/8\" }]",
                "`fd00::1/8` has host bits set",
            ),
            (
                "[grants]\nmulticast = [{ group = \"239.1.1.1/16\" }]",
                "host bits",
            ),
            (
                "[grants]\nmulticast = [{ group = \"239.1.0.0/16\", source = \"10.1.1.1/8\" }]",
                "host bits",
            ),
        ] {
            assert_refused(text, 2, needle);
        }
        assert!(Policy::from_toml("[grants]\nbind = [{ addr = \"10.0.0.0/8\" }]").is_ok());
    }

    #[test]
    fn limits_out_of_range_are_refused() {
        for (text, needle) in [
            ("max-recv-len = 0", "`max-recv-len = 0`"),
            ("max-recv-len = 67108865", "1..=67108864"),
            ("max-queues = 1025", "0..=1024"),
            ("max-buffers-per-call = 0", "`max-buffers-per-call = 0`"),
            ("max-cpu-share = 0", "1..=100"),
            ("max-cpu-share = 101", "1..=100"),
            ("max-cpu-seconds = 0", "positive"),
            ("max-cpu-seconds = -1.5", "positive"),
            ("max-cpu-seconds = nan", "positive"),
            ("max-wall-seconds = inf", "positive"),
            ("max-wall-seconds = 0.0", "positive"),
            ("max-sockets = -1", "max-sockets"),
        ] {
            assert_refused(&format!("\n[limits]\n{text}"), 3, needle);
        }
    }

    #[test]
    fn limits_parse_with_their_defaults() {
        let policy = Policy::from_toml(
            r#"
            [limits]
            max-sockets = 0
            max-recv-len = 67108864
            max-queues = 1024
            max-buffers-per-call = 8
            max-socket-buffer-bytes = 1000000
            max-overlapped-operations = 3
            max-overlapped-bytes = 4096
            max-send-rate = 125000
            max-cpu-seconds = 1.5
            max-wall-seconds = 60
            max-cpu-share = 50
            "#,
        )
        .unwrap();
        assert_eq!(
            *policy.limits(),
            crate::policy::Limits {
                max_sockets: 0,
                max_recv_len: 64 << 20,
                max_queues: 1024,
                max_buffers_per_call: 8,
                max_socket_buffer_bytes: 1_000_000,
                max_overlapped_operations: 3,
                max_overlapped_bytes: 4096,
                max_send_rate: Some(125_000),
                max_cpu_time: Some(std::time::Duration::from_millis(1500)),
                max_wall_time: Some(std::time::Duration::from_secs(60)),
                max_cpu_share: Some(50),
            }
        );
        let defaults = Policy::from_toml("[limits]").unwrap();
        assert_eq!(*defaults.limits(), crate::policy::Limits::default());
    }

    #[test]
    fn ipv4_embedding_grants_are_refused_with_their_ipv4_form() {
        for (block, needle) in [
            (
                "::ffff:10.0.0.1",
                "embeds IPv4 (IPv4-mapped) and is checked as IPv4: write it as `10.0.0.1`",
            ),
            ("::ffff:10.0.0.0/104", "write it as `10.0.0.0/8`"),
            (
                "::10.0.0.1",
                "(IPv4-compatible) and is checked as IPv4: write it as `10.0.0.1`",
            ),
            ("::ffff:0:10.0.0.1", "SIIT IPv4-translated"),
            (
                "64:ff9b::/96",
                "(NAT64 well-known prefix) and is checked as IPv4: write it as `0.0.0.0/0`",
            ),
            (
                "2002:a00::/24",
                "(6to4) and is checked as IPv4: write it as `10.0.0.0/8`",
            ),
            (
                "64:ff9b:1::/48",
                "lies in the NAT64 local-use prefix block `64:ff9b:1::/48`",
            ),
            ("2001::/32", "Teredo block `2001::/32`, whose embedded IPv4"),
            ("2001:0:1::/48", "always refused"),
        ] {
            assert_refused(
                &format!("[grants]\nconnect = [{{ addr = \"{block}\" }}]"),
                2,
                needle,
            );
            assert_refused(
                &format!(
                    "[grants]\nmulticast = [{{ group = \"239.1.0.0/16\", source = \"{block}\" }}]"
                ),
                2,
                "IPv4",
            );
        }
        for block in ["::/0", "::", "::1", "2000::/3", "64:ff9b:2::/48"] {
            let text = format!("[grants]\nconnect = [{{ addr = \"{block}\" }}]");
            assert!(Policy::from_toml(&text).is_ok(), "{block}");
        }
    }

    #[test]
    fn multicast_groups_outside_the_multicast_blocks_are_refused() {
        for group in ["224.0.0.0/3", "10.0.0.0/8", "0.0.0.0/0", "fe00::/7", "::/0"] {
            assert_refused(
                &format!("[grants]\nmulticast = [{{ group = \"{group}\" }}]"),
                2,
                "is not a multicast block",
            );
        }
        for group in ["224.0.0.0/4", "ff00::/8", "239.1.2.3", "ff02::1"] {
            let text = format!("[grants]\nmulticast = [{{ group = \"{group}\" }}]");
            assert!(Policy::from_toml(&text).is_ok(), "{group}");
        }
    }

    #[test]
    fn multicast_source_and_interface_must_fit_the_group() {
        for (entry, needle) in [
            (
                r#"group = "239.1.0.0/16", source = "::1""#,
                "source `::1/128` is IPv6 but the group `239.1.0.0/16` is IPv4",
            ),
            (
                r#"group = "ff15::/16", source = "127.0.0.1""#,
                "source `127.0.0.1/32` is IPv4 but the group `ff15::/16` is IPv6",
            ),
            (
                r#"group = "239.1.0.0/16", interface = "::1""#,
                "interface `::1` is an IPv6 address",
            ),
            (
                r#"group = "239.1.0.0/16", interface = 1"#,
                "an IPv4 group's interface is given by its IPv4 address",
            ),
            (
                r#"group = "239.1.0.0/16", interface = "lo""#,
                "interface `lo` is not an IPv4 address",
            ),
            (
                r#"group = "ff15::/16", interface = "127.0.0.1""#,
                "interface `127.0.0.1` is an address",
            ),
            (
                r#"group = "ff15::/16", interface = "fe80::1""#,
                "interface `fe80::1` is an address",
            ),
            (r#"group = "ff15::/16", interface = """#, "empty"),
            (
                r#"group = "ff15::/16", interface = "abcdefghijklmnop""#,
                "longer than 15 bytes",
            ),
            (r#"group = "ff15::/16", interface = "../lo""#, "`/`"),
            (r#"group = "ff15::/16", interface = "eth 0""#, "whitespace"),
            (r#"group = "ff15::/16", interface = "eth\t0""#, "whitespace"),
            (r#"group = "ff15::/16", interface = "eth\u0000""#, "NUL"),
            (r#"group = "ff15::/16", interface = "eth0:1""#, "`:`"),
            (r#"group = "ff15::/16", interface = ".""#, "`.`"),
            (r#"group = "ff15::/16", interface = "..""#, "`..`"),
            (r#"group = "ff15::/16", interface = -1"#, "interface"),
        ] {
            assert_refused(&format!("[grants]\nmulticast = [{{ {entry} }}]"), 2, needle);
        }
        let policy = Policy::from_toml(
            "[grants]\nmulticast = [{ group = \"ff15::/16\", interface = \"abcdefghijklmno\" }]",
        )
        .unwrap();
        assert_eq!(
            policy.multicast_grants()[0].interface,
            MulticastInterface::V6Named("abcdefghijklmno".into())
        );
    }

    #[test]
    fn every_refusal_names_the_file_and_line() {
        let path = std::env::temp_dir().join(format!("wasp-policy-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "protocols = [\"udp\"]\n\n[grants]\nsend-to = [{ addr = \"10.9.9.9/8\" }]\n",
        )
        .unwrap();
        let err = Policy::from_file(&path).unwrap_err().to_string();
        std::fs::remove_file(&path).unwrap();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("at line 4,"), "{err}");
        assert_refused(
            "[grants]\n\nbind = [{ addr = \"::1\", ports = \"9-1\" }]",
            3,
            "port range `9-1` is empty",
        );
        assert_refused(
            "[grants]\nbind = [{ addr = \"::1\", ports = 70000 }]",
            2,
            "70000",
        );
        // A multicast entry's own line, not the line of its array.
        assert_refused(
            "[grants]\nmulticast = [\n  { group = \"ff15::/16\" },\n  { group = \"239.1.0.0/16\", source = \"::1\" },\n]",
            4,
            "source `::1/128` is IPv6",
        );
        assert_refused(
            "[[grants.multicast]]\ngroup = \"ff15::/16\"\n\n[[grants.multicast]]\ngroup = \"ff15::/16\"\ninterface = \"a b\"",
            4,
            "whitespace",
        );
        assert_refused(
            "[grants]\nmulticast = [{ group = \"239.1.0.0/16\", sorce = \"::1\" }]",
            2,
            "unknown field `sorce`",
        );
    }

    #[test]
    fn no_prefix_of_a_full_policy_panics() {
        let full = r#"protocols = ["tcp", "udp"]
[limits]
max-sockets = 3
max-recv-len = 4096
max-cpu-seconds = 2.5
max-cpu-share = 30
[grants]
bind = [{ addr = "127.0.0.1", ports = "0-65535" }, { addr = "::", ports = 0 }]
connect = [{ addr = "10.0.0.0/8", ports = "80" }]
multicast = [
  { group = "239.255.0.0/16", ports = "5000", source = "127.0.0.1", interface = "127.0.0.1", max-ttl = 2 },
  { group = "ff15::/16", interface = "veth0" },
]
"#;
        assert!(Policy::from_toml(full).is_ok());
        for end in (0..full.len()).filter(|&end| full.is_char_boundary(end)) {
            let _ = Policy::from_toml(&full[..end]);
        }
    }
}
