//! Capability policy: what a guest may do on the network.
//!
//! Pure data and decisions, no sockets and no runtime (DESIGN §2, §4).
//! Everything is denied unless a grant allows it. A grant is a CIDR block
//! and a port range for one [`NetUse`]; the glue asks [`Policy::check`]
//! before any system call, and a [`Denial`] names the grant that was
//! missing (for the operator's log and `last-denial`), while the guest
//! only sees `WSAEACCES`.

pub mod address;
mod file;
#[cfg(test)]
mod matrix_tests;
pub mod review;
pub mod suggest;

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;

use ipnet::IpNet;

pub use address::Ipv4Embedding;
pub use file::PolicyError;

/// Default for [`Limits::max_sockets`].
pub const DEFAULT_MAX_SOCKETS: u32 = 64;
/// Default for [`Limits::max_recv_len`]: the largest buffer one receive call
/// may ask the host to allocate.
pub const DEFAULT_MAX_RECV_LEN: u32 = 1 << 20;
/// Default for [`Limits::max_queues`].
pub const DEFAULT_MAX_QUEUES: u32 = 16;
/// Default for [`Limits::max_buffers_per_call`].
pub const DEFAULT_MAX_BUFFERS_PER_CALL: u32 = 4096;
/// Default for [`Limits::max_socket_buffer_bytes`].
pub const DEFAULT_MAX_SOCKET_BUFFER_BYTES: u64 = 4 << 20;
/// Default for [`Limits::max_overlapped_operations`].
pub const DEFAULT_MAX_OVERLAPPED_OPERATIONS: u32 = 256;
/// Default for [`Limits::max_overlapped_bytes`].
pub const DEFAULT_MAX_OVERLAPPED_BYTES: u64 = 4 << 20;
/// Largest `backlog` a guest may pass to `wsp-listen`; larger values are
/// clamped, as Winsock clamps to SOMAXCONN.
pub const MAX_BACKLOG: u32 = 1024;

/// One use of the network that a grant can authorise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NetUse {
    /// Binding a local address (`wsp-bind`, and implicit binds checked
    /// with the wildcard address and port 0).
    Bind,
    /// Listening on a local address (`wsp-listen`).
    Listen,
    /// Accepting a connection from a peer (`wsp-accept`): the peer filter.
    Accept,
    /// Connecting to a remote address (`wsp-connect`).
    Connect,
    /// Sending a datagram to a remote address (`wsp-send-to`).
    SendTo,
    /// Receiving a datagram from a peer (`wsp-recv-from`): the peer filter.
    RecvFrom,
    /// Sending to a broadcast address (with SO_BROADCAST set).
    Broadcast,
}

impl NetUse {
    /// Every use, in the order the policy file lists them.
    pub const ALL: [NetUse; 7] = [
        NetUse::Bind,
        NetUse::Listen,
        NetUse::Accept,
        NetUse::Connect,
        NetUse::SendTo,
        NetUse::RecvFrom,
        NetUse::Broadcast,
    ];

    /// The name of the use in the policy file (`send-to`).
    pub const fn name(self) -> &'static str {
        match self {
            NetUse::Bind => "bind",
            NetUse::Listen => "listen",
            NetUse::Accept => "accept",
            NetUse::Connect => "connect",
            NetUse::SendTo => "send-to",
            NetUse::RecvFrom => "recv-from",
            NetUse::Broadcast => "broadcast",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for NetUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether a policy's decisions are enforced (`mode` in the file).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// A use the grants do not cover is refused (`WSAEACCES`).
    #[default]
    Enforce,
    /// Every use is checked and recorded, and what the grants do not cover
    /// is logged as a denial it would have been, but allowed: a plugin is
    /// run this way to learn the policy it needs (`wasp run --audit`,
    /// [`suggest`]). Refusals that are not grants (an IPv6 form hiding an
    /// IPv4 address, a broadcast without SO_BROADCAST) and the limits
    /// still hold.
    Audit,
}

/// A transport protocol the policy can allow (`protocols` in the file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// TCP (stream sockets).
    Tcp,
    /// UDP (datagram sockets).
    Udp,
}

impl Transport {
    /// The name used in the policy file.
    pub const fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A block of addresses and a port range: the unit of every grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressGrant {
    /// The address block (a bare address is a /32 or /128).
    pub net: IpNet,
    /// The ports allowed, inclusive. Port 0 is an ephemeral-port bind.
    pub ports: RangeInclusive<u16>,
}

impl AddressGrant {
    /// A grant of `net` on every port.
    pub fn any_port(net: IpNet) -> Self {
        Self {
            net,
            ports: 0..=u16::MAX,
        }
    }

    /// Whether the grant covers `addr`, an address as checked (see
    /// [`address::checked`]).
    fn covers(&self, addr: SocketAddr) -> bool {
        self.net.contains(&addr.ip()) && self.ports.contains(&addr.port())
    }
}

impl fmt::Display for AddressGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (lo, hi) = (*self.ports.start(), *self.ports.end());
        if lo == 0 && hi == u16::MAX {
            write!(f, "{} ports *", self.net)
        } else if lo == hi {
            write!(f, "{} port {lo}", self.net)
        } else {
            write!(f, "{} ports {lo}-{hi}", self.net)
        }
    }
}

/// A grant to join IP multicast groups and send to them (SPEC JL-1..JL-3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MulticastGrant {
    /// The groups (multicast addresses) that may be joined.
    pub groups: IpNet,
    /// The ports of those groups.
    pub ports: RangeInclusive<u16>,
    /// Only datagrams from these sources reach the guest (all when `None`).
    pub source: Option<IpNet>,
    /// The interface memberships and sends use: an IPv4 address, or an
    /// IPv6 interface index (0: the loopback interface).
    pub interface: MulticastInterface,
    /// The highest TTL / hop limit the guest may set (0: this host only).
    pub max_ttl: u8,
}

/// The interface of a multicast grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MulticastInterface {
    /// An IPv4 interface address (`IP_MULTICAST_IF`, the membership's
    /// interface).
    V4(std::net::Ipv4Addr),
    /// An IPv6 interface index (0: the loopback interface).
    V6(u32),
    /// An IPv6 interface by name (`lo`, `veth0`), looked up at each use.
    V6Named(String),
}

impl MulticastGrant {
    /// A grant of `groups` on `ports` over loopback, TTL 0, any source.
    pub fn loopback(groups: IpNet, ports: RangeInclusive<u16>) -> Self {
        let interface = match groups {
            IpNet::V4(_) => MulticastInterface::V4(std::net::Ipv4Addr::LOCALHOST),
            IpNet::V6(_) => MulticastInterface::V6(0),
        };
        Self {
            groups,
            ports,
            source: None,
            interface,
            max_ttl: 0,
        }
    }

    /// Whether the grant covers `group`, an address as checked (see
    /// [`address::checked`]).
    fn covers(&self, group: SocketAddr) -> bool {
        self.groups.contains(&group.ip()) && self.ports.contains(&group.port())
    }

    /// Checks that the guest may set a multicast TTL / hop limit of `asked`
    /// under this grant (at most [`MulticastGrant::max_ttl`]).
    pub fn check_ttl(&self, asked: u8) -> Result<(), Denial> {
        if asked <= self.max_ttl {
            Ok(())
        } else {
            Err(Denial::MulticastTtl {
                asked,
                ceiling: self.max_ttl,
            })
        }
    }
}

/// Quotas that bound what one guest can hold (DESIGN §4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most sockets open at once; one more is `WSAEMFILE` (SPEC SO-2).
    pub max_sockets: u32,
    /// Largest `max-len` of one receive call; larger requests are clamped.
    pub max_recv_len: u32,
    /// Most message queues open at once; one more stops the guest.
    pub max_queues: u32,
    /// Most buffers one send call may pass; more is `WSAENOBUFS` and
    /// nothing is sent (SPEC SE-1, DESIGN §4).
    pub max_buffers_per_call: u32,
    /// Kernel socket-buffer bytes the guest may ask for with SO_RCVBUF and
    /// SO_SNDBUF, summed over all its sockets; a request beyond what is
    /// left is clamped to it.
    pub max_socket_buffer_bytes: u64,
    /// Overlapped operations (SPEC SE-7) the guest may have pending at
    /// once over all its sockets; one more is `WSAENOBUFS`.
    pub max_overlapped_operations: u32,
    /// Bytes the host may hold for the guest's overlapped operations: what
    /// pending sends have not sent yet, and the room of pending receives
    /// and of received bytes not yet handed over; beyond it `WSAENOBUFS`.
    pub max_overlapped_bytes: u64,
    /// Bytes per second each socket may send (SPEC JL-8: a sending flow
    /// above it cannot be met); `None` for no ceiling.
    pub max_send_rate: Option<u32>,
    /// Total CPU time the guest may use; past it the guest is stopped.
    pub max_cpu_time: Option<std::time::Duration>,
    /// Wall-clock time the guest may run; past it the guest is stopped.
    pub max_wall_time: Option<std::time::Duration>,
    /// Sustained share of one core (percent, 1..=100) the guest may use,
    /// measured over [`CPU_SHARE_WINDOW`]; above it the guest is stopped.
    pub max_cpu_share: Option<u8>,
}

/// The window over which [`Limits::max_cpu_share`] is measured.
pub const CPU_SHARE_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_sockets: DEFAULT_MAX_SOCKETS,
            max_recv_len: DEFAULT_MAX_RECV_LEN,
            max_queues: DEFAULT_MAX_QUEUES,
            max_buffers_per_call: DEFAULT_MAX_BUFFERS_PER_CALL,
            max_socket_buffer_bytes: DEFAULT_MAX_SOCKET_BUFFER_BYTES,
            max_overlapped_operations: DEFAULT_MAX_OVERLAPPED_OPERATIONS,
            max_overlapped_bytes: DEFAULT_MAX_OVERLAPPED_BYTES,
            max_send_rate: None,
            max_cpu_time: None,
            max_wall_time: None,
            max_cpu_share: None,
        }
    }
}

/// Why the policy refused something: the missing grant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// No grant of this use covers the address.
    #[error("no `{net_use}` grant covers {addr}")]
    Address {
        /// The use that was asked for.
        net_use: NetUse,
        /// The address as checked: an IPv6 form embedding an IPv4
        /// address shown as that IPv4 address, without scope id.
        addr: SocketAddr,
    },
    /// An IPv6 address of a form that embeds an IPv4 address which cannot
    /// be known (NAT64 local-use prefix, Teredo): refused whatever the
    /// grants (issue 8 point 6).
    #[error("{addr} embeds an IPv4 address ({form}): refused")]
    EmbeddedIpv4 {
        /// The address, without scope id.
        addr: SocketAddr,
        /// Its form.
        form: Ipv4Embedding,
    },
    /// The protocol is not in the policy's `protocols` list.
    #[error("protocol `{0}` is not in the policy's `protocols`")]
    Protocol(Transport),
    /// No multicast grant covers the group.
    #[error("no `multicast` grant covers {0}")]
    Multicast(SocketAddr),
    /// A multicast TTL above the grant's ceiling.
    #[error("multicast TTL {asked} is above the ceiling {ceiling}")]
    MulticastTtl {
        /// The TTL asked for.
        asked: u8,
        /// The highest allowed.
        ceiling: u8,
    },
    /// A send to a broadcast address from a socket without SO_BROADCAST
    /// (SPEC SE-6). The mechanism decides what is a broadcast address.
    #[error("SO_BROADCAST is not set for broadcast address {0}")]
    BroadcastWithoutFlag(SocketAddr),
}

impl Denial {
    /// The reason the denial is counted under.
    pub const fn reason(&self) -> DenialReason {
        match self {
            Denial::Address { net_use, .. } => DenialReason::Address(*net_use),
            Denial::EmbeddedIpv4 { .. } => DenialReason::EmbeddedIpv4,
            Denial::Protocol(_) => DenialReason::Protocol,
            Denial::Multicast(_) => DenialReason::Multicast,
            Denial::MulticastTtl { .. } => DenialReason::MulticastTtl,
            Denial::BroadcastWithoutFlag(_) => DenialReason::BroadcastFlag,
        }
    }

    /// Whether the denial is of a grant, which [`Mode::Audit`] lets
    /// through: an address, a protocol, a multicast group or TTL. The
    /// others (an IPv6 form hiding an IPv4 address, a broadcast without
    /// SO_BROADCAST) are refused in either mode.
    pub const fn is_of_a_grant(&self) -> bool {
        matches!(
            self,
            Denial::Address { .. }
                | Denial::Protocol(_)
                | Denial::Multicast(_)
                | Denial::MulticastTtl { .. }
        )
    }
}

/// Why something was denied, as a small closed set (per-guest denial
/// counters, rate-limited logs): a [`Denial`] without its addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DenialReason {
    /// No grant of this use covers the address ([`Denial::Address`]).
    Address(NetUse),
    /// The protocol is not allowed ([`Denial::Protocol`]).
    Protocol,
    /// No multicast grant covers the group ([`Denial::Multicast`]).
    Multicast,
    /// A multicast TTL above the ceiling ([`Denial::MulticastTtl`]).
    MulticastTtl,
    /// A refused IPv4-embedding IPv6 form ([`Denial::EmbeddedIpv4`]).
    EmbeddedIpv4,
    /// A broadcast without SO_BROADCAST ([`Denial::BroadcastWithoutFlag`]).
    BroadcastFlag,
}

impl DenialReason {
    /// Every reason, in the order of [`DenialReason::index`].
    pub const ALL: [DenialReason; 12] = [
        DenialReason::Address(NetUse::Bind),
        DenialReason::Address(NetUse::Listen),
        DenialReason::Address(NetUse::Accept),
        DenialReason::Address(NetUse::Connect),
        DenialReason::Address(NetUse::SendTo),
        DenialReason::Address(NetUse::RecvFrom),
        DenialReason::Address(NetUse::Broadcast),
        DenialReason::Protocol,
        DenialReason::Multicast,
        DenialReason::MulticastTtl,
        DenialReason::EmbeddedIpv4,
        DenialReason::BroadcastFlag,
    ];

    /// The stable name of the reason (`address:connect`, `protocol`,
    /// `multicast`, `multicast-ttl`, `embedded-ipv4`, `broadcast-flag`).
    pub const fn name(self) -> &'static str {
        match self {
            DenialReason::Address(NetUse::Bind) => "address:bind",
            DenialReason::Address(NetUse::Listen) => "address:listen",
            DenialReason::Address(NetUse::Accept) => "address:accept",
            DenialReason::Address(NetUse::Connect) => "address:connect",
            DenialReason::Address(NetUse::SendTo) => "address:send-to",
            DenialReason::Address(NetUse::RecvFrom) => "address:recv-from",
            DenialReason::Address(NetUse::Broadcast) => "address:broadcast",
            DenialReason::Protocol => "protocol",
            DenialReason::Multicast => "multicast",
            DenialReason::MulticastTtl => "multicast-ttl",
            DenialReason::EmbeddedIpv4 => "embedded-ipv4",
            DenialReason::BroadcastFlag => "broadcast-flag",
        }
    }

    /// The position of the reason in [`DenialReason::ALL`] (an index into
    /// an array of counters).
    pub const fn index(self) -> usize {
        const ADDRESS_REASONS: usize = NetUse::ALL.len();
        match self {
            DenialReason::Address(net_use) => net_use.index(),
            DenialReason::Protocol => ADDRESS_REASONS,
            DenialReason::Multicast => ADDRESS_REASONS + 1,
            DenialReason::MulticastTtl => ADDRESS_REASONS + 2,
            DenialReason::EmbeddedIpv4 => ADDRESS_REASONS + 3,
            DenialReason::BroadcastFlag => ADDRESS_REASONS + 4,
        }
    }
}

impl fmt::Display for DenialReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where an outbound address leads, as [`Policy::check_destination`]
/// decided it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination<'a> {
    /// A unicast (or broadcast) address the use's grants cover.
    Unicast,
    /// A multicast group, and the grant that covers it: its TTL ceiling and
    /// interface apply to the socket.
    Multicast(&'a MulticastGrant),
}

/// A guest's capabilities: deny by default, grants per [`NetUse`], an
/// allow-list of protocols and [`Limits`].
#[derive(Clone, Default)]
pub struct Policy {
    mode: Mode,
    protocols: BTreeSet<Transport>,
    grants: [Vec<AddressGrant>; 7],
    multicast: Vec<MulticastGrant>,
    limits: Limits,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let grants: Vec<_> = NetUse::ALL
            .iter()
            .map(|u| (u.name(), &self.grants[u.index()]))
            .collect();
        f.debug_struct("Policy")
            .field("mode", &self.mode)
            .field("protocols", &self.protocols)
            .field("grants", &grants)
            .field("multicast", &self.multicast)
            .field("limits", &self.limits)
            .finish()
    }
}

impl Policy {
    /// The policy that allows nothing (no protocol, no address).
    pub fn deny_all() -> Self {
        Self::default()
    }

    /// Whether the policy's decisions are enforced or audited.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// This policy in `mode` (`wasp run --audit` audits a policy file).
    pub fn in_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The grants of `net_use` (for example the addresses a guest may
    /// bind: its address list, SPEC AS-25).
    pub fn grants_of(&self, net_use: NetUse) -> &[AddressGrant] {
        &self.grants[net_use.index()]
    }

    /// Starts a policy from nothing, granting what the builder adds.
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder {
            policy: Self::default(),
        }
    }

    /// Checks that `use` of `addr` is granted. An IPv6 form embedding an
    /// IPv4 address is checked as that IPv4 address, or refused when the
    /// address cannot be known ([`address::effective`]); scope id and flow
    /// information do not matter.
    pub fn check(&self, net_use: NetUse, addr: SocketAddr) -> Result<(), Denial> {
        let addr = checked(addr)?;
        if self.grants[net_use.index()]
            .iter()
            .any(|grant| grant.covers(addr))
        {
            Ok(())
        } else {
            Err(Denial::Address { net_use, addr })
        }
    }

    /// Checks an outbound destination (`connect`, `send-to`): a multicast
    /// group needs a multicast grant, whatever the grants of `use` cover
    /// (issue 8 point 6); any other address needs a grant of `use`.
    /// Addresses are checked as [`Policy::check`] checks them.
    pub fn check_destination(
        &self,
        net_use: NetUse,
        addr: SocketAddr,
    ) -> Result<Destination<'_>, Denial> {
        if checked(addr)?.ip().is_multicast() {
            self.check_multicast(addr).map(Destination::Multicast)
        } else {
            self.check(net_use, addr).map(|()| Destination::Unicast)
        }
    }

    /// Checks a send to `addr`, which the mechanism has found to be a
    /// broadcast address (limited or subnet-directed) on a socket with
    /// SO_BROADCAST: it needs a `broadcast` grant (SPEC SE-6).
    pub fn check_broadcast(&self, addr: SocketAddr) -> Result<(), Denial> {
        self.check(NetUse::Broadcast, addr)
    }

    /// Checks that sockets of `transport` may be created.
    pub fn check_protocol(&self, transport: Transport) -> Result<(), Denial> {
        if self.protocols.contains(&transport) {
            Ok(())
        } else {
            Err(Denial::Protocol(transport))
        }
    }

    /// The multicast grant covering `group` (its address and port).
    /// The group is checked as [`Policy::check`] checks addresses.
    pub fn check_multicast(&self, group: SocketAddr) -> Result<&MulticastGrant, Denial> {
        let group = checked(group)?;
        self.multicast
            .iter()
            .find(|g| g.covers(group))
            .ok_or(Denial::Multicast(group))
    }

    /// The multicast grants.
    pub fn multicast_grants(&self) -> &[MulticastGrant] {
        &self.multicast
    }

    /// The grants of one use, in the order they were added.
    pub fn grants(&self, net_use: NetUse) -> &[AddressGrant] {
        &self.grants[net_use.index()]
    }

    /// The protocols allowed.
    pub fn protocols(&self) -> impl Iterator<Item = Transport> + '_ {
        self.protocols.iter().copied()
    }

    /// The quotas.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

/// Builds a [`Policy`] in code (the embedder's API; the policy file uses
/// it too).
#[derive(Debug)]
pub struct PolicyBuilder {
    policy: Policy,
}

impl PolicyBuilder {
    /// Allows sockets of `transport`.
    pub fn allow_protocol(mut self, transport: Transport) -> Self {
        self.policy.protocols.insert(transport);
        self
    }

    /// Grants `use` of the addresses in `net` on the ports in `ports`.
    pub fn grant(mut self, net_use: NetUse, net: IpNet, ports: RangeInclusive<u16>) -> Self {
        self.policy.grants[net_use.index()].push(AddressGrant { net, ports });
        self
    }

    /// Grants `use` of exactly `addr` (its address, and its port).
    pub fn grant_addr(self, net_use: NetUse, addr: SocketAddr) -> Self {
        self.grant(net_use, IpNet::from(addr.ip()), addr.port()..=addr.port())
    }

    /// Grants joining (and sending to) the groups of `grant`.
    pub fn grant_multicast(mut self, grant: MulticastGrant) -> Self {
        self.policy.multicast.push(grant);
        self
    }

    /// Sets every quota at once.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.policy.limits = limits;
        self
    }

    /// Sets the socket quota (`WSAEMFILE` beyond it).
    pub fn max_sockets(mut self, max: u32) -> Self {
        self.policy.limits.max_sockets = max;
        self
    }

    /// Sets the largest buffer one receive call may ask for.
    pub fn max_recv_len(mut self, max: u32) -> Self {
        self.policy.limits.max_recv_len = max;
        self
    }

    /// Sets the message-queue quota.
    pub fn max_queues(mut self, max: u32) -> Self {
        self.policy.limits.max_queues = max;
        self
    }

    /// Sets the most buffers one send call may pass.
    pub fn max_buffers_per_call(mut self, max: u32) -> Self {
        self.policy.limits.max_buffers_per_call = max;
        self
    }

    /// Sets the guest's budget of kernel socket-buffer bytes.
    pub fn max_socket_buffer_bytes(mut self, max: u64) -> Self {
        self.policy.limits.max_socket_buffer_bytes = max;
        self
    }

    /// Sets the most overlapped operations pending at once.
    pub fn max_overlapped_operations(mut self, max: u32) -> Self {
        self.policy.limits.max_overlapped_operations = max;
        self
    }

    /// Sets the bytes the host may hold for overlapped operations.
    pub fn max_overlapped_bytes(mut self, max: u64) -> Self {
        self.policy.limits.max_overlapped_bytes = max;
        self
    }

    /// Sets the bytes per second each socket may send.
    pub fn max_send_rate(mut self, rate: u32) -> Self {
        self.policy.limits.max_send_rate = Some(rate);
        self
    }

    /// Sets the total CPU time the guest may use.
    pub fn max_cpu_time(mut self, max: std::time::Duration) -> Self {
        self.policy.limits.max_cpu_time = Some(max);
        self
    }

    /// Sets the wall-clock time the guest may run.
    pub fn max_wall_time(mut self, max: std::time::Duration) -> Self {
        self.policy.limits.max_wall_time = Some(max);
        self
    }

    /// Sets the sustained CPU share (percent of one core) the guest may use.
    pub fn max_cpu_share(mut self, percent: u8) -> Self {
        self.policy.limits.max_cpu_share = Some(percent);
        self
    }

    /// Sets whether the policy is enforced or audited.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.policy.mode = mode;
        self
    }

    /// Finishes the policy.
    pub fn build(self) -> Policy {
        self.policy
    }
}

/// `addr` as checked ([`address::checked`]), or the denial of a refused
/// IPv4-embedding form.
fn checked(addr: SocketAddr) -> Result<SocketAddr, Denial> {
    address::checked(addr).map_err(|form| Denial::EmbeddedIpv4 {
        addr: SocketAddr::new(addr.ip(), addr.port()),
        form,
    })
}

/// The form in which addresses are compared: an IPv6 form embedding an
/// IPv4 address becomes that IPv4 address, so a grant on 127.0.0.1 means
/// the same to both families; scope id and flow information are dropped.
/// A refused form (see [`address::effective`]) is returned unchanged, so
/// use [`Policy::check`] or [`address::block_contains`] to decide.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    address::checked(addr).unwrap_or(SocketAddr::new(addr.ip(), addr.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn empty_policy_denies_every_use() {
        let policy = Policy::deny_all();
        for net_use in NetUse::ALL {
            let denial = policy.check(net_use, sa("127.0.0.1:80")).unwrap_err();
            assert_eq!(
                denial,
                Denial::Address {
                    net_use,
                    addr: sa("127.0.0.1:80")
                }
            );
        }
        assert!(policy.check_protocol(Transport::Tcp).is_err());
        assert!(policy.check_protocol(Transport::Udp).is_err());
    }

    #[test]
    fn grant_covers_only_its_use_block_and_ports() {
        let policy = Policy::builder()
            .grant(NetUse::Connect, "10.1.0.0/16".parse().unwrap(), 80..=81)
            .build();
        assert!(policy.check(NetUse::Connect, sa("10.1.2.3:80")).is_ok());
        assert!(policy.check(NetUse::Connect, sa("10.1.2.3:81")).is_ok());
        assert!(policy.check(NetUse::Connect, sa("10.1.2.3:82")).is_err());
        assert!(policy.check(NetUse::Connect, sa("10.1.2.3:79")).is_err());
        assert!(policy.check(NetUse::Connect, sa("10.2.0.1:80")).is_err());
        assert!(policy.check(NetUse::SendTo, sa("10.1.2.3:80")).is_err());
    }

    #[test]
    fn top_port_is_grantable() {
        let policy = Policy::builder()
            .grant(NetUse::Bind, "127.0.0.1/32".parse().unwrap(), 65535..=65535)
            .build();
        assert!(policy.check(NetUse::Bind, sa("127.0.0.1:65535")).is_ok());
        assert!(policy.check(NetUse::Bind, sa("127.0.0.1:65534")).is_err());
    }

    #[test]
    fn ipv4_mapped_ipv6_is_checked_as_ipv4() {
        let policy = Policy::builder()
            .grant(NetUse::Connect, "127.0.0.1/32".parse().unwrap(), 0..=65535)
            .build();
        assert!(
            policy
                .check(NetUse::Connect, sa("[::ffff:127.0.0.1]:9"))
                .is_ok()
        );
        let denied = Policy::builder()
            .grant(NetUse::Connect, "::/0".parse().unwrap(), 0..=65535)
            .build();
        // A v6-wide grant does not smuggle in IPv4 through mapped addresses.
        assert!(
            denied
                .check(NetUse::Connect, sa("[::ffff:10.0.0.1]:9"))
                .is_err()
        );
    }

    #[test]
    fn denial_names_the_missing_grant() {
        let denial = Policy::deny_all()
            .check(NetUse::SendTo, sa("[::1]:53"))
            .unwrap_err();
        assert_eq!(denial.to_string(), "no `send-to` grant covers [::1]:53");
        let denial = Policy::deny_all()
            .check_protocol(Transport::Udp)
            .unwrap_err();
        assert_eq!(
            denial.to_string(),
            "protocol `udp` is not in the policy's `protocols`"
        );
    }

    #[test]
    fn multicast_grants_cover_groups_and_ports() {
        let policy = Policy::builder()
            .grant_multicast(MulticastGrant::loopback(
                "239.255.0.0/16".parse().unwrap(),
                5000..=5001,
            ))
            .build();
        let grant = policy.check_multicast(sa("239.255.1.2:5000")).unwrap();
        assert_eq!(grant.max_ttl, 0);
        assert_eq!(
            grant.interface,
            MulticastInterface::V4(std::net::Ipv4Addr::LOCALHOST)
        );
        assert!(policy.check_multicast(sa("239.255.1.2:5002")).is_err());
        let denial = policy.check_multicast(sa("239.1.1.1:5000")).unwrap_err();
        assert_eq!(
            denial.to_string(),
            "no `multicast` grant covers 239.1.1.1:5000"
        );
        assert!(
            Policy::deny_all()
                .check_multicast(sa("239.255.1.2:5000"))
                .is_err()
        );
    }

    #[test]
    fn grant_addr_is_exact() {
        let policy = Policy::builder()
            .grant_addr(NetUse::Listen, sa("127.0.0.1:7000"))
            .build();
        assert!(policy.check(NetUse::Listen, sa("127.0.0.1:7000")).is_ok());
        assert!(policy.check(NetUse::Listen, sa("127.0.0.2:7000")).is_err());
        assert!(policy.check(NetUse::Listen, sa("127.0.0.1:7001")).is_err());
    }

    /// Every IPv6 spelling of 10.1.2.3:80 (issue 8 point 6).
    const EMBEDDINGS_OF_10_1_2_3: [(Ipv4Embedding, &str); 7] = [
        (Ipv4Embedding::Mapped, "[::ffff:10.1.2.3]:80"),
        (Ipv4Embedding::Compatible, "[::10.1.2.3]:80"),
        (Ipv4Embedding::Translated, "[::ffff:0:10.1.2.3]:80"),
        (Ipv4Embedding::Nat64WellKnown, "[64:ff9b::10.1.2.3]:80"),
        (Ipv4Embedding::Nat64LocalUse, "[64:ff9b:1::a01:203]:80"),
        (Ipv4Embedding::SixToFour, "[2002:a01:203::1]:80"),
        (
            Ipv4Embedding::Teredo,
            "[2001:0:4136:e378:8000:63bf:f5fe:fdfc]:80",
        ),
    ];

    /// The denial of `addr` for a refused form, or of the IPv4 address
    /// 10.1.2.3:80 it is checked as.
    fn denial_of_embedding(form: Ipv4Embedding, addr: &str, net_use: NetUse) -> Denial {
        if form.is_refused() {
            Denial::EmbeddedIpv4 {
                addr: sa(addr),
                form,
            }
        } else {
            Denial::Address {
                net_use,
                addr: sa("10.1.2.3:80"),
            }
        }
    }

    #[test]
    fn ipv4_grant_covers_every_translatable_embedding_and_no_refused_one() {
        let policy = Policy::builder()
            .grant(NetUse::Connect, "10.0.0.0/8".parse().unwrap(), 80..=80)
            .build();
        for (form, addr) in EMBEDDINGS_OF_10_1_2_3 {
            let expected = if form.is_refused() {
                Err(denial_of_embedding(form, addr, NetUse::Connect))
            } else {
                Ok(())
            };
            assert_eq!(policy.check(NetUse::Connect, sa(addr)), expected, "{form}");
        }
    }

    #[test]
    fn ipv6_wide_grant_reaches_no_ipv4_through_an_embedding() {
        let policy = Policy::builder()
            .grant(NetUse::Connect, "::/0".parse().unwrap(), 0..=65535)
            .build();
        for (form, addr) in EMBEDDINGS_OF_10_1_2_3 {
            assert_eq!(
                policy.check(NetUse::Connect, sa(addr)),
                Err(denial_of_embedding(form, addr, NetUse::Connect)),
                "{form}"
            );
        }
        assert!(policy.check(NetUse::Connect, sa("[::1]:80")).is_ok());
        assert!(policy.check(NetUse::Connect, sa("[::]:80")).is_ok());
    }

    #[test]
    fn multicast_groups_are_checked_through_their_embedding() {
        let policy = Policy::builder()
            .grant_multicast(MulticastGrant::loopback(
                "239.1.0.0/16".parse().unwrap(),
                80..=80,
            ))
            .build();
        assert!(
            policy
                .check_multicast(sa("[64:ff9b::239.1.2.3]:80"))
                .is_ok()
        );
        assert_eq!(
            policy.check_multicast(sa("[64:ff9b:1::ef01:203]:80")),
            Err(Denial::EmbeddedIpv4 {
                addr: sa("[64:ff9b:1::ef01:203]:80"),
                form: Ipv4Embedding::Nat64LocalUse
            })
        );
        let v6_wide = Policy::builder()
            .grant_multicast(MulticastGrant::loopback(
                "ff00::/8".parse().unwrap(),
                80..=80,
            ))
            .build();
        assert_eq!(
            v6_wide.check_multicast(sa("[::ffff:239.1.2.3]:80")),
            Err(Denial::Multicast(sa("239.1.2.3:80")))
        );
    }

    #[test]
    fn refused_embedding_is_named_in_the_denial() {
        let denial = Policy::deny_all()
            .check(NetUse::Connect, sa("[64:ff9b:1::a00:1]:80"))
            .unwrap_err();
        assert_eq!(
            denial.to_string(),
            "[64:ff9b:1::a00:1]:80 embeds an IPv4 address (NAT64 local-use prefix): refused"
        );
    }

    #[test]
    fn scope_id_and_flowinfo_do_not_matter_to_a_grant() {
        let policy = Policy::builder()
            .grant(NetUse::Connect, "fe80::1/128".parse().unwrap(), 80..=80)
            .build();
        let scoped = SocketAddr::V6(std::net::SocketAddrV6::new(
            "fe80::1".parse().unwrap(),
            80,
            0x1234,
            7,
        ));
        assert_eq!(scoped.to_string(), "[fe80::1%7]:80");
        assert!(policy.check(NetUse::Connect, scoped).is_ok());
        let denied = Policy::deny_all().check(NetUse::Connect, scoped);
        assert_eq!(
            denied,
            Err(Denial::Address {
                net_use: NetUse::Connect,
                addr: sa("[fe80::1]:80")
            })
        );
    }

    #[test]
    fn denial_reasons_are_a_closed_set_with_stable_names() {
        let names: Vec<_> = DenialReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(
            names,
            [
                "address:bind",
                "address:listen",
                "address:accept",
                "address:connect",
                "address:send-to",
                "address:recv-from",
                "address:broadcast",
                "protocol",
                "multicast",
                "multicast-ttl",
                "embedded-ipv4",
                "broadcast-flag",
            ]
        );
        for (index, reason) in DenialReason::ALL.into_iter().enumerate() {
            assert_eq!(reason.index(), index, "{reason}");
        }
    }

    #[test]
    fn every_denial_has_its_reason() {
        let cases = [
            (
                Denial::Address {
                    net_use: NetUse::SendTo,
                    addr: sa("10.0.0.1:9"),
                },
                DenialReason::Address(NetUse::SendTo),
            ),
            (
                Denial::EmbeddedIpv4 {
                    addr: sa("[2001::1]:9"),
                    form: Ipv4Embedding::Teredo,
                },
                DenialReason::EmbeddedIpv4,
            ),
            (Denial::Protocol(Transport::Udp), DenialReason::Protocol),
            (
                Denial::Multicast(sa("239.0.0.1:9")),
                DenialReason::Multicast,
            ),
            (
                Denial::MulticastTtl {
                    asked: 2,
                    ceiling: 1,
                },
                DenialReason::MulticastTtl,
            ),
            (
                Denial::BroadcastWithoutFlag(sa("10.255.255.255:9")),
                DenialReason::BroadcastFlag,
            ),
        ];
        for (denial, reason) in cases {
            assert_eq!(denial.reason(), reason, "{denial}");
        }
        assert_eq!(
            Denial::BroadcastWithoutFlag(sa("10.255.255.255:9")).to_string(),
            "SO_BROADCAST is not set for broadcast address 10.255.255.255:9"
        );
    }

    #[test]
    fn broadcast_needs_the_broadcast_use() {
        let policy = Policy::builder()
            .grant(NetUse::Broadcast, "10.0.0.0/8".parse().unwrap(), 9..=9)
            .grant(NetUse::SendTo, "0.0.0.0/0".parse().unwrap(), 0..=65535)
            .build();
        assert_eq!(policy.check_broadcast(sa("10.255.255.255:9")), Ok(()));
        assert_eq!(
            policy.check_broadcast(sa("255.255.255.255:9")),
            Err(Denial::Address {
                net_use: NetUse::Broadcast,
                addr: sa("255.255.255.255:9")
            })
        );
        assert_eq!(
            policy.check_broadcast(sa("[::ffff:10.255.255.255]:9")),
            Ok(())
        );
    }

    #[test]
    fn a_multicast_destination_needs_a_multicast_grant_whatever_the_use_grants() {
        let group_grant = MulticastGrant::loopback("239.1.0.0/16".parse().unwrap(), 80..=80);
        // A connect and send-to grant covering every multicast block.
        let unicast_only = Policy::builder()
            .grant(NetUse::Connect, "224.0.0.0/4".parse().unwrap(), 0..=65535)
            .grant(NetUse::SendTo, "224.0.0.0/4".parse().unwrap(), 0..=65535)
            .grant(NetUse::Connect, "10.0.0.0/8".parse().unwrap(), 80..=80)
            .build();
        for net_use in [NetUse::Connect, NetUse::SendTo] {
            assert_eq!(
                unicast_only.check_destination(net_use, sa("239.1.2.3:80")),
                Err(Denial::Multicast(sa("239.1.2.3:80")))
            );
            assert_eq!(
                unicast_only.check_destination(net_use, sa("[::ffff:239.1.2.3]:80")),
                Err(Denial::Multicast(sa("239.1.2.3:80")))
            );
        }
        assert_eq!(
            unicast_only.check_destination(NetUse::Connect, sa("10.0.0.1:80")),
            Ok(Destination::Unicast)
        );
        assert_eq!(
            unicast_only.check_destination(NetUse::SendTo, sa("10.0.0.1:80")),
            Err(Denial::Address {
                net_use: NetUse::SendTo,
                addr: sa("10.0.0.1:80")
            })
        );
        let multicast_only = Policy::builder()
            .grant_multicast(group_grant.clone())
            .build();
        assert_eq!(
            multicast_only.check_destination(NetUse::Connect, sa("239.1.2.3:80")),
            Ok(Destination::Multicast(&group_grant))
        );
        assert_eq!(
            multicast_only.check_destination(NetUse::Connect, sa("[2001::1]:80")),
            Err(Denial::EmbeddedIpv4 {
                addr: sa("[2001::1]:80"),
                form: Ipv4Embedding::Teredo
            })
        );
    }

    #[test]
    fn ttl_above_the_ceiling_is_denied() {
        let mut grant = MulticastGrant::loopback("239.1.0.0/16".parse().unwrap(), 80..=80);
        grant.max_ttl = 1;
        assert_eq!(grant.check_ttl(0), Ok(()));
        assert_eq!(grant.check_ttl(1), Ok(()));
        assert_eq!(
            grant.check_ttl(2),
            Err(Denial::MulticastTtl {
                asked: 2,
                ceiling: 1
            })
        );
    }
}
