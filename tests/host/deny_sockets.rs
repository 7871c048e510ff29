//! The deny matrix on real sockets (issue 8): operation × loopback address
//! class × grant state, generated from one table. Every cell runs on a
//! fresh [`Provider`] (no guest) with real loopback sockets and asserts
//!
//! 1. the result: `WSAEACCES` for a denial; for an allowed cell anything
//!    but `WSAEACCES` (the kernel may still fail it), or the exact success
//!    where it is deterministic; the exact error for a call the mechanism
//!    refuses before the policy;
//! 2. the footprint: a denied call left no OS socket bound or connected
//!    (`wsp-get-sock-name` is `WSAEINVAL`, `wsp-get-peer-name`
//!    `WSAENOTCONN`), no listener, no descriptor, no changed TTL, and a
//!    refused inbound peer was never seen by the guest;
//! 3. the denial counters: up by exactly one under the expected reason for
//!    a denial, unchanged otherwise.
//!
//! The expectations are not listed by hand: [`expect`] derives each one
//! from the cell's grants (the same data the policy is built from) by the
//! rules of [`needs`]:
//!
//! - R1: the mechanism's own refusals come first and count nothing
//!   (`connect` / `send-to` to the unspecified address or port 0, and a
//!   join of anything but a multicast group: `WSAEADDRNOTAVAIL`; `listen`
//!   on an unbound socket: `WSAEINVAL`, no implicit bind);
//! - R2: an IPv6 form that embeds an IPv4 address is checked as that
//!   address; the NAT64 local-use and Teredo forms are refused whatever
//!   the grants (`embedded-ipv4`);
//! - R3: a datagram to a broadcast address needs SO_BROADCAST
//!   (`broadcast-flag`), then a `broadcast` grant, then the call's own;
//! - R4: a multicast destination (connect, send-to, join) needs a
//!   `multicast` grant, whatever the call's own grants say;
//! - R5: anything else needs a grant of the call's use covering the
//!   address and port (`address:<use>`);
//! - R6: an unbound socket that connects or sends is then bound to the
//!   wildcard address, port 0, under the `bind` grants; a join's bind is
//!   covered by its multicast grant (SPEC JL-1);
//! - R7: a multicast TTL above the highest ceiling of the socket's
//!   family's multicast grants (0 without one) is `multicast-ttl`.
//!
//! Grant states: `granted` (every grant), `withheld` (every grant but the
//! ones of the use under test) and `other-use-only` (the use under test's
//! addresses granted to a neighbouring use only — `send-to` for
//! `connect`, `connect` and `send-to` for `multicast` (issue 8 point 6),
//! `send-to` for `broadcast`, the other protocol for a protocol — with
//! the other grants the call needs).
//!
//! Network safety: every address is loopback or stands for it (127.0.0.x,
//! ::1, 239.255.x.y over 127.0.0.1 with TTL 0, 127.255.255.255, which is
//! loopback's broadcast address). IPv6 forms embedding 127.0.0.1 are
//! routed by the host's IPv6 routes (a default route would carry them off
//! the machine), so they are used only by calls that send nothing: bind,
//! UDP connect, join. IPv4-mapped forms cannot leave an IPv6-only socket.
//! Every UDP socket that may send has its multicast TTL set to 0 first, so
//! that even a regressed multicast check could not send a group off the
//! host. Nothing is sent to 255.255.255.255.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use socket2::{Domain, Socket, Type};
use wasp_host::net::buffers::Buffers;
use wasp_host::net::catalog::{
    AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_WASP_RMP, SOCK_DGRAM, SOCK_STREAM,
    SocketFlags, SocketRequest,
};
use wasp_host::net::{IoctlCommand, JoinRole, MsgFlags, OptName, OptValue, Provider};
use wasp_host::policy::MulticastGrant;
use wasp_host::{NetUse, Policy, Transport, WsaError};

/// The longest one wait of a cell may take (a peer's connection or
/// datagram to arrive, a connect to finish).
const WAIT: Duration = Duration::from_secs(5);

/// What the cells send.
const PAYLOAD: &[u8] = b"deny-matrix";

/// The multicast groups the grants cover (over 127.0.0.1, TTL ceiling 1).
const GROUPS_V4: &str = "239.255.91.0/24";
const GROUPS_V6: &str = "ff15::9100/120";
/// The multicast TTL ceiling of the granted groups.
const TTL_CEILING: u8 = 1;

/// Addresses of the fixtures (never an address class): the guest's own
/// listener or receiver in the inbound-filter cells, and the admitted
/// sentinel peer sent after the peer under test.
const FIXTURE_GUEST_V4: &str = "127.0.0.4";
const FIXTURE_SENTINEL_V4: &str = "127.0.0.5";

// ---------------------------------------------------------------------
// The table: address classes, operations, grant states.

/// Where a class's port lies relative to the granted range `low..=high`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    Zero,
    Below,
    Low,
    Mid,
    High,
    Above,
}

/// How the policy sees an address.
#[derive(Clone, Copy, Debug)]
enum Seen {
    /// As it is.
    Same,
    /// As this IPv4 address (an IPv6 form embedding it), same port.
    As(&'static str),
    /// Refused whatever the grants (an embedding that cannot be known).
    Refused,
}

/// An address class: a loopback stand-in and how the policy sees it.
struct AddrClass {
    name: &'static str,
    ip: &'static str,
    port: At,
    seen: Seen,
    /// A unicast loopback address of this host with a real port: it can be
    /// bound, listened on, and be an inbound peer's address.
    local: bool,
    /// A packet to it stays on this machine even if a check regressed;
    /// calls that transmit at once (a TCP connect's SYN, a datagram) use
    /// only these classes.
    stays_here: bool,
}

const fn class(
    name: &'static str,
    ip: &'static str,
    port: At,
    seen: Seen,
    local: bool,
    stays_here: bool,
) -> AddrClass {
    AddrClass {
        name,
        ip,
        port,
        seen,
        local,
        stays_here,
    }
}

/// Every address class (the grants cover 127.0.0.1 and ::1 on the middle
/// three ports, see [`std_grants`]). Columns: name, address, port, how
/// the policy sees it, `local`, `stays_here`.
#[rustfmt::skip]
static ADDRESS_CLASSES: [AddrClass; 25] = [
    class("granted",                   "127.0.0.1",              At::Mid,   Seen::Same, true, true),
    class("outside-cidr",              "127.0.0.2",              At::Mid,   Seen::Same, true, true),
    class("port-below-range",          "127.0.0.1",              At::Below, Seen::Same, true, true),
    class("port-range-low",            "127.0.0.1",              At::Low,   Seen::Same, true, true),
    class("port-range-high",           "127.0.0.1",              At::High,  Seen::Same, true, true),
    class("port-above-range",          "127.0.0.1",              At::Above, Seen::Same, true, true),
    class("ipv6-loopback",             "::1",                    At::Mid,   Seen::Same, true, true),
    class("ipv6-loopback-port-above",  "::1",                    At::Above, Seen::Same, true, true),
    // An IPv6-only socket cannot reach an IPv4-mapped address at all.
    class("ipv4-mapped",               "::ffff:127.0.0.1",       At::Mid,   Seen::As("127.0.0.1"), false, true),
    class("ipv4-mapped-outside-cidr",  "::ffff:127.0.0.2",       At::Mid,   Seen::As("127.0.0.2"), false, true),
    // Routed as IPv6 by the host: never given to a call that transmits.
    class("ipv4-compatible",           "::127.0.0.1",            At::Mid,   Seen::As("127.0.0.1"), false, false),
    class("siit-translated",           "::ffff:0:127.0.0.1",     At::Mid,   Seen::As("127.0.0.1"), false, false),
    class("nat64-well-known",          "64:ff9b::127.0.0.1",     At::Mid,   Seen::As("127.0.0.1"), false, false),
    class("6to4",                      "2002:7f00:1::1",         At::Mid,   Seen::As("127.0.0.1"), false, false),
    class("nat64-local-use",           "64:ff9b:1::7f00:1",      At::Mid,   Seen::Refused, false, false),
    class("teredo",                    "2001:0:7f00:1::1",       At::Mid,   Seen::Refused, false, false),
    class("unspecified",               "0.0.0.0",                At::Mid,   Seen::Same, false, true),
    class("wildcard-port-0",           "0.0.0.0",                At::Zero,  Seen::Same, false, true),
    class("port-0",                    "127.0.0.1",              At::Zero,  Seen::Same, false, true),
    class("group-granted",             "239.255.91.1",           At::Mid,   Seen::Same, false, true),
    class("group-outside",             "239.255.92.1",           At::Mid,   Seen::Same, false, true),
    class("group-port-above",          "239.255.91.1",           At::Above, Seen::Same, false, true),
    class("group-ipv4-mapped",         "::ffff:239.255.91.1",    At::Mid,   Seen::As("239.255.91.1"), false, true),
    class("loopback-broadcast",        "127.255.255.255",        At::Mid,   Seen::Same, false, true),
    class("loopback-broadcast-mapped", "::ffff:127.255.255.255", At::Mid,   Seen::As("127.255.255.255"), false, true),
];

/// The multicast TTLs asked for (the classes of the TTL operation).
const TTL_CLASSES: [(&str, u8); 4] = [
    ("ttl-0", 0),
    ("ttl-at-ceiling", TTL_CEILING),
    ("ttl-above-ceiling", TTL_CEILING + 1),
    ("ttl-255", 255),
];

impl AddrClass {
    fn ip(&self) -> IpAddr {
        self.ip.parse().expect("class address")
    }

    fn addr(&self, ports: Ports) -> SocketAddr {
        SocketAddr::new(self.ip(), ports.at(self.port))
    }

    /// The address the policy checks (`None`: refused whatever the grants).
    fn seen(&self, ports: Ports) -> Option<SocketAddr> {
        let port = ports.at(self.port);
        match self.seen {
            Seen::Same => Some(SocketAddr::new(self.ip(), port)),
            Seen::As(v4) => Some(SocketAddr::new(v4.parse().expect("v4"), port)),
            Seen::Refused => None,
        }
    }

    fn is_broadcast(&self, ports: Ports) -> bool {
        self.seen(ports)
            .is_some_and(|a| a.ip() == IpAddr::V4(Ipv4Addr::new(127, 255, 255, 255)))
    }
}

/// What a cell is about: an address, or a multicast TTL.
#[derive(Clone, Copy)]
enum Subject {
    Addr(&'static AddrClass),
    Ttl(&'static str, u8),
}

impl Subject {
    fn name(self) -> &'static str {
        match self {
            Subject::Addr(c) => c.name,
            Subject::Ttl(name, _) => name,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sock {
    Stream,
    Datagram,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Tcp,
    Udp,
    RootedMultipoint,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

/// The provider call a cell makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    /// `wsp-socket`.
    Create(Proto),
    /// `wsp-bind` of a fresh socket.
    Bind(Sock),
    /// `wsp-listen` of a socket bound to the class address.
    Listen,
    /// `wsp-listen` of an unbound socket.
    ListenUnbound,
    /// `wsp-connect` of a fresh socket.
    Connect(Sock),
    /// `wsp-send-to` from a fresh datagram socket, SO_BROADCAST set or not.
    SendTo { broadcast_flag: bool },
    /// `wsp-join-leaf` of a fresh c_leaf/d_leaf datagram socket.
    JoinLeaf,
    /// A peer from the class address connects to the guest's listener.
    AcceptFrom,
    /// A peer from the class address sends to the guest's socket.
    RecvFrom,
    /// `wsp-set-sock-opt(IP_MULTICAST_TTL)` of a fresh datagram socket.
    MulticastTtl(Family),
}

/// What a grant is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Use(NetUse),
    Multicast,
    Protocol(Transport),
}

impl Kind {
    /// The denial counter's reason when no grant of this kind covers.
    fn reason(self) -> &'static str {
        match self {
            Kind::Use(NetUse::Bind) => "address:bind",
            Kind::Use(NetUse::Listen) => "address:listen",
            Kind::Use(NetUse::Accept) => "address:accept",
            Kind::Use(NetUse::Connect) => "address:connect",
            Kind::Use(NetUse::SendTo) => "address:send-to",
            Kind::Use(NetUse::RecvFrom) => "address:recv-from",
            Kind::Use(NetUse::Broadcast) => "address:broadcast",
            Kind::Multicast => "multicast",
            Kind::Protocol(_) => "protocol",
        }
    }

    /// The neighbouring uses a confused policy might grant instead.
    fn neighbours(self) -> &'static [Kind] {
        match self {
            Kind::Use(NetUse::Bind) => &[Kind::Use(NetUse::Listen)],
            Kind::Use(NetUse::Listen) => &[Kind::Use(NetUse::Bind)],
            Kind::Use(NetUse::Accept) => &[Kind::Use(NetUse::RecvFrom)],
            Kind::Use(NetUse::RecvFrom) => &[Kind::Use(NetUse::Accept)],
            Kind::Use(NetUse::Connect) => &[Kind::Use(NetUse::SendTo)],
            Kind::Use(NetUse::SendTo) => &[Kind::Use(NetUse::Connect)],
            Kind::Use(NetUse::Broadcast) => &[Kind::Use(NetUse::SendTo)],
            // Issue 8 point 6: unicast grants covering a multicast block.
            Kind::Multicast => &[Kind::Use(NetUse::Connect), Kind::Use(NetUse::SendTo)],
            Kind::Protocol(Transport::Tcp) => &[Kind::Protocol(Transport::Udp)],
            Kind::Protocol(Transport::Udp) => &[Kind::Protocol(Transport::Tcp)],
        }
    }
}

/// Which subjects an operation is run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Subjects {
    /// Every address class.
    All,
    /// The classes a packet to which stays on this machine whatever
    /// happens (for calls that transmit at once).
    StaysHere,
    /// This host's own unicast loopback addresses.
    Local,
    /// The classes seen as multicast groups, and a few others.
    Groups,
    /// One IPv4 and one IPv6 class (calls that take no address).
    OnePerFamily,
    /// The multicast TTLs.
    Ttls,
}

/// An operation: a call, and the grant whose presence the states vary.
struct Op {
    name: &'static str,
    call: Call,
    tests: Kind,
    subjects: Subjects,
}

const fn op(name: &'static str, call: Call, tests: Kind, subjects: Subjects) -> Op {
    Op {
        name,
        call,
        tests,
        subjects,
    }
}

/// Every operation: its name, its call, the grant its states vary, the
/// subjects it is run on.
#[rustfmt::skip]
static OPS: [Op; 22] = [
    op("create tcp",                    Call::Create(Proto::Tcp),               Kind::Protocol(Transport::Tcp), Subjects::OnePerFamily),
    op("create udp",                    Call::Create(Proto::Udp),               Kind::Protocol(Transport::Udp), Subjects::OnePerFamily),
    op("create rooted multipoint",      Call::Create(Proto::RootedMultipoint),  Kind::Protocol(Transport::Tcp), Subjects::OnePerFamily),
    op("bind tcp",                      Call::Bind(Sock::Stream),               Kind::Use(NetUse::Bind),        Subjects::All),
    op("bind udp",                      Call::Bind(Sock::Datagram),             Kind::Use(NetUse::Bind),        Subjects::All),
    op("listen",                        Call::Listen,                           Kind::Use(NetUse::Listen),      Subjects::Local),
    op("implicit bind via listen",      Call::ListenUnbound,                    Kind::Use(NetUse::Bind),        Subjects::OnePerFamily),
    op("connect tcp",                   Call::Connect(Sock::Stream),            Kind::Use(NetUse::Connect),     Subjects::StaysHere),
    op("connect udp",                   Call::Connect(Sock::Datagram),          Kind::Use(NetUse::Connect),     Subjects::All),
    op("send-to",                       Call::SendTo { broadcast_flag: false }, Kind::Use(NetUse::SendTo),      Subjects::StaysHere),
    op("send-to with SO_BROADCAST",     Call::SendTo { broadcast_flag: true },  Kind::Use(NetUse::Broadcast),   Subjects::StaysHere),
    op("implicit bind via connect tcp", Call::Connect(Sock::Stream),            Kind::Use(NetUse::Bind),        Subjects::StaysHere),
    op("implicit bind via connect udp", Call::Connect(Sock::Datagram),          Kind::Use(NetUse::Bind),        Subjects::All),
    op("implicit bind via send-to",     Call::SendTo { broadcast_flag: false }, Kind::Use(NetUse::Bind),        Subjects::StaysHere),
    op("multicast via connect udp",     Call::Connect(Sock::Datagram),          Kind::Multicast,                Subjects::Groups),
    op("multicast via send-to",         Call::SendTo { broadcast_flag: false }, Kind::Multicast,                Subjects::Groups),
    op("join-leaf",                     Call::JoinLeaf,                         Kind::Multicast,                Subjects::Groups),
    op("implicit bind via join-leaf",   Call::JoinLeaf,                         Kind::Use(NetUse::Bind),        Subjects::Groups),
    op("accept filter",                 Call::AcceptFrom,                       Kind::Use(NetUse::Accept),      Subjects::Local),
    op("recv-from filter",              Call::RecvFrom,                         Kind::Use(NetUse::RecvFrom),    Subjects::Local),
    op("multicast ttl v4",              Call::MulticastTtl(Family::V4),         Kind::Multicast,                Subjects::Ttls),
    op("multicast ttl v6",              Call::MulticastTtl(Family::V6),         Kind::Multicast,                Subjects::Ttls),
];

impl Subjects {
    fn list(self, ports: Ports) -> Vec<Subject> {
        if self == Subjects::Ttls {
            return TTL_CLASSES
                .iter()
                .map(|&(name, ttl)| Subject::Ttl(name, ttl))
                .collect();
        }
        ADDRESS_CLASSES
            .iter()
            .filter(|c| match self {
                Subjects::All => true,
                Subjects::StaysHere => c.stays_here,
                Subjects::Local => c.local,
                Subjects::Groups => {
                    c.seen(ports).is_some_and(|a| a.ip().is_multicast())
                        || matches!(c.name, "granted" | "ipv6-loopback" | "wildcard-port-0")
                }
                Subjects::OnePerFamily => matches!(c.name, "granted" | "ipv6-loopback"),
                Subjects::Ttls => false,
            })
            .map(Subject::Addr)
            .collect()
    }
}

impl Call {
    /// The kinds of grant the call can need (see [`needs`]).
    fn kinds(self) -> Vec<Kind> {
        let u = Kind::Use;
        match self {
            Call::Create(Proto::Udp) => vec![Kind::Protocol(Transport::Udp)],
            Call::Create(_) => vec![Kind::Protocol(Transport::Tcp)],
            Call::Bind(_) => vec![u(NetUse::Bind)],
            Call::Listen | Call::ListenUnbound => vec![u(NetUse::Listen), u(NetUse::Bind)],
            Call::Connect(_) => vec![u(NetUse::Connect), Kind::Multicast, u(NetUse::Bind)],
            Call::SendTo { .. } => vec![
                u(NetUse::SendTo),
                u(NetUse::Broadcast),
                Kind::Multicast,
                u(NetUse::Bind),
            ],
            Call::JoinLeaf => vec![Kind::Multicast, u(NetUse::Bind)],
            Call::AcceptFrom => vec![u(NetUse::Accept)],
            Call::RecvFrom => vec![u(NetUse::RecvFrom)],
            Call::MulticastTtl(_) => vec![Kind::Multicast],
        }
    }
}

/// Which grants the policy of a cell holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Every grant.
    Granted,
    /// Every grant but those of the use under test.
    Withheld,
    /// The use under test's addresses granted to its neighbouring use
    /// only, with the other grants the call needs.
    OtherUseOnly,
}

const STATES: [State; 3] = [State::Granted, State::Withheld, State::OtherUseOnly];

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Granted => "granted",
            State::Withheld => "withheld",
            State::OtherUseOnly => "other-use-only",
        }
    }
}

// ---------------------------------------------------------------------
// Grants: the data both the policy and the expectations come from.

/// The granted port range `low..=low + 2` (found free at run time, below
/// the ephemeral range) and the ports around it.
#[derive(Clone, Copy, Debug)]
struct Ports {
    low: u16,
}

impl Ports {
    fn at(self, at: At) -> u16 {
        match at {
            At::Zero => 0,
            At::Below => self.low - 1,
            At::Low => self.low,
            At::Mid => self.low + 1,
            At::High => self.low + 2,
            At::Above => self.low + 3,
        }
    }

    fn granted(self) -> RangeInclusive<u16> {
        self.low..=self.low + 2
    }

    /// Ports above every class's port (they include the ephemeral range):
    /// the IPv6 fixtures live there.
    fn fixture(self) -> RangeInclusive<u16> {
        self.low + 5..=u16::MAX
    }
}

/// One grant: of a use, of multicast groups (with a TTL ceiling) or of a
/// protocol.
#[derive(Clone, Debug)]
struct Grant {
    kind: Kind,
    net: Option<IpNet>,
    ports: RangeInclusive<u16>,
    ttl: u8,
}

impl Grant {
    fn new(kind: Kind, net: &str, ports: RangeInclusive<u16>) -> Self {
        Self {
            kind,
            net: Some(net.parse().expect("grant block")),
            ports,
            ttl: if kind == Kind::Multicast {
                TTL_CEILING
            } else {
                0
            },
        }
    }

    fn protocol(transport: Transport) -> Self {
        Self {
            kind: Kind::Protocol(transport),
            net: None,
            ports: 0..=0,
            ttl: 0,
        }
    }

    fn covers(&self, kind: Kind, addr: SocketAddr) -> bool {
        self.kind == kind
            && self.net.is_some_and(|n| n.contains(&addr.ip()))
            && self.ports.contains(&addr.port())
    }
}

/// Every grant of the `granted` state.
fn std_grants(ports: Ports) -> Vec<Grant> {
    let range = ports.granted();
    let mut grants = Vec::new();
    for net_use in [
        NetUse::Bind,
        NetUse::Listen,
        NetUse::Accept,
        NetUse::Connect,
        NetUse::SendTo,
        NetUse::RecvFrom,
    ] {
        for net in ["127.0.0.1/32", "::1/128"] {
            grants.push(Grant::new(Kind::Use(net_use), net, range.clone()));
        }
    }
    // Implicit binds.
    grants.push(Grant::new(Kind::Use(NetUse::Bind), "0.0.0.0/32", 0..=0));
    grants.push(Grant::new(Kind::Use(NetUse::Bind), "::/128", 0..=0));
    // Broadcast needs both its own grant and the send-to grant.
    for net_use in [NetUse::SendTo, NetUse::Broadcast] {
        grants.push(Grant::new(
            Kind::Use(net_use),
            "127.255.255.255/32",
            range.clone(),
        ));
    }
    grants.push(Grant::new(Kind::Multicast, GROUPS_V4, range.clone()));
    grants.push(Grant::new(Kind::Multicast, GROUPS_V6, range));
    grants.push(Grant::protocol(Transport::Tcp));
    grants.push(Grant::protocol(Transport::Udp));
    grants
}

/// Grants every state holds: the inbound-filter cells' own listener or
/// receiver and their admitted sentinel peer (never an address class).
fn fixture_grants(ports: Ports) -> Vec<Grant> {
    let all = 0..=u16::MAX;
    let guest = format!("{FIXTURE_GUEST_V4}/32");
    let sentinel = format!("{FIXTURE_SENTINEL_V4}/32");
    vec![
        Grant::new(Kind::Use(NetUse::Bind), &guest, all.clone()),
        Grant::new(Kind::Use(NetUse::Listen), &guest, all.clone()),
        Grant::new(Kind::Use(NetUse::Accept), &sentinel, all.clone()),
        Grant::new(Kind::Use(NetUse::RecvFrom), &sentinel, all),
        Grant::new(Kind::Use(NetUse::Bind), "::1/128", 0..=0),
        Grant::new(Kind::Use(NetUse::Listen), "::1/128", ports.fixture()),
        Grant::new(Kind::Use(NetUse::Accept), "::1/128", ports.fixture()),
        Grant::new(Kind::Use(NetUse::RecvFrom), "::1/128", ports.fixture()),
    ]
}

/// The grants of `op`'s cells in `state`.
fn grants_for(op: &Op, state: State, ports: Ports) -> Vec<Grant> {
    let mut grants = fixture_grants(ports);
    if op.call == Call::Listen {
        // The listener is bound to the class address first.
        for net in ["127.0.0.0/8", "::1/128"] {
            grants.push(Grant::new(Kind::Use(NetUse::Bind), net, 0..=u16::MAX));
        }
    }
    let all = std_grants(ports);
    match state {
        State::Granted => grants.extend(all),
        State::Withheld => grants.extend(all.into_iter().filter(|g| g.kind != op.tests)),
        State::OtherUseOnly => {
            let needed = op.call.kinds();
            for g in all {
                if g.kind == op.tests {
                    for &kind in op.tests.neighbours() {
                        grants.push(Grant { kind, ..g.clone() });
                    }
                } else if needed.contains(&g.kind)
                    || matches!(g.kind, Kind::Protocol(_)) && !matches!(op.tests, Kind::Protocol(_))
                {
                    grants.push(g);
                }
            }
        }
    }
    grants
}

/// The policy holding `grants`.
fn policy(grants: &[Grant]) -> Policy {
    let mut builder = Policy::builder();
    for g in grants {
        builder = match (g.kind, g.net) {
            (Kind::Protocol(t), _) => builder.allow_protocol(t),
            (Kind::Use(net_use), Some(net)) => builder.grant(net_use, net, g.ports.clone()),
            (Kind::Multicast, Some(net)) => {
                let mut grant = MulticastGrant::loopback(net, g.ports.clone());
                grant.max_ttl = g.ttl;
                builder.grant_multicast(grant)
            }
            (_, None) => unreachable!("an address grant has a block"),
        };
    }
    builder.build()
}

// ---------------------------------------------------------------------
// Expectations, derived by the rules R1..R7.

/// What a call needs, in the order the provider checks it.
#[derive(Clone, Copy, Debug)]
enum Need {
    /// The protocol allowed.
    Protocol(Transport),
    /// A grant of this kind covering the address.
    Grant(Kind, SocketAddr),
    /// Refused whatever the grants, for this reason.
    Never(&'static str),
    /// A multicast TTL at most the family's ceiling.
    Ttl { v4: bool, asked: u8 },
}

/// R1..R7: the mechanism's own refusal (`Err`), or the checks the call
/// makes in order.
fn needs(call: Call, subject: Subject, ports: Ports) -> Result<Vec<Need>, WsaError> {
    let class = match subject {
        Subject::Addr(class) => class,
        Subject::Ttl(_, asked) => {
            let Call::MulticastTtl(family) = call else {
                unreachable!("only the TTL call has TTL subjects")
            };
            // R7.
            return Ok(vec![Need::Ttl {
                v4: family == Family::V4,
                asked,
            }]);
        }
    };
    let to = class.addr(ports);
    let seen = class.seen(ports);
    // R2: a refused embedding is denied by any check of the address.
    let at = |kind: Kind| match seen {
        Some(addr) => Need::Grant(kind, addr),
        None => Need::Never("embedded-ipv4"),
    };
    let wildcard = match to {
        SocketAddr::V4(_) => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
        SocketAddr::V6(_) => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0),
    };
    // R3, R4, R5, R6 for an outbound datagram or connection.
    let outbound = |net_use: NetUse, datagram: bool, broadcast_flag: bool| {
        if to.ip().is_unspecified() || to.port() == 0 {
            return Err(WsaError::AddrNotAvail); // R1
        }
        let mut needs = Vec::new();
        if datagram && class.is_broadcast(ports) {
            needs.push(if broadcast_flag {
                at(Kind::Use(NetUse::Broadcast))
            } else {
                Need::Never("broadcast-flag")
            });
        }
        needs.push(match seen {
            Some(addr) if addr.ip().is_multicast() => Need::Grant(Kind::Multicast, addr),
            _ => at(Kind::Use(net_use)),
        });
        needs.push(Need::Grant(Kind::Use(NetUse::Bind), wildcard));
        Ok(needs)
    };
    match call {
        Call::Create(Proto::Udp) => Ok(vec![Need::Protocol(Transport::Udp)]),
        Call::Create(_) => Ok(vec![Need::Protocol(Transport::Tcp)]),
        Call::Bind(_) => Ok(vec![at(Kind::Use(NetUse::Bind))]),
        Call::Listen => Ok(vec![at(Kind::Use(NetUse::Listen))]),
        Call::ListenUnbound => Err(WsaError::Inval), // R1
        Call::Connect(sock) => outbound(NetUse::Connect, sock == Sock::Datagram, false),
        Call::SendTo { broadcast_flag } => outbound(NetUse::SendTo, true, broadcast_flag),
        Call::JoinLeaf => {
            if to.ip().is_unspecified() || to.port() == 0 || !to.ip().is_multicast() {
                return Err(WsaError::AddrNotAvail); // R1
            }
            Ok(vec![at(Kind::Multicast)]) // R4, R6 (JL-1)
        }
        Call::AcceptFrom => Ok(vec![at(Kind::Use(NetUse::Accept))]),
        Call::RecvFrom => Ok(vec![at(Kind::Use(NetUse::RecvFrom))]),
        Call::MulticastTtl(_) => unreachable!("TTL subjects only"),
    }
}

/// The expected outcome of a cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Allowed by the policy (the kernel may still fail it, never with
    /// `WSAEACCES`); no denial counted.
    Allowed,
    /// Denied: `WSAEACCES` (or, inbound, the peer never seen), counted
    /// once under this reason.
    Denied(&'static str),
    /// Refused by the mechanism before the policy; nothing counted.
    Refused(WsaError),
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Allowed => f.write_str("allowed"),
            Expect::Denied(reason) => write!(f, "denied ({reason})"),
            Expect::Refused(err) => write!(f, "refused before the policy ({err:?})"),
        }
    }
}

fn expect(call: Call, subject: Subject, grants: &[Grant], ports: Ports) -> Expect {
    let needs = match needs(call, subject, ports) {
        Ok(needs) => needs,
        Err(err) => return Expect::Refused(err),
    };
    for need in needs {
        let refused = match need {
            Need::Protocol(t) => {
                (!grants.iter().any(|g| g.kind == Kind::Protocol(t))).then_some("protocol")
            }
            Need::Grant(kind, addr) => {
                (!grants.iter().any(|g| g.covers(kind, addr))).then_some(kind.reason())
            }
            Need::Never(reason) => Some(reason),
            Need::Ttl { v4, asked } => {
                let ceiling = grants
                    .iter()
                    .filter(|g| g.kind == Kind::Multicast)
                    .filter(|g| g.net.is_some_and(|n| matches!(n, IpNet::V4(_)) == v4))
                    .map(|g| g.ttl)
                    .max()
                    .unwrap_or(0);
                (asked > ceiling).then_some("multicast-ttl")
            }
        };
        if let Some(reason) = refused {
            return Expect::Denied(reason);
        }
    }
    Expect::Allowed
}

/// One cell of the matrix.
struct Cell {
    op: &'static Op,
    subject: Subject,
    state: State,
    grants: Vec<Grant>,
    expect: Expect,
    ports: Ports,
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{} × {}", self.op.name, self.subject.name())?;
        if let Subject::Addr(class) = self.subject {
            write!(f, " {}", class.addr(self.ports))?;
        }
        write!(f, " × {}]", self.state.name())
    }
}

/// The whole matrix.
fn table(ports: Ports) -> Vec<Cell> {
    let mut cells = Vec::new();
    for op in &OPS {
        for subject in op.subjects.list(ports) {
            for state in STATES {
                let grants = grants_for(op, state, ports);
                let expect = expect(op.call, subject, &grants, ports);
                cells.push(Cell {
                    op,
                    subject,
                    state,
                    grants,
                    expect,
                    ports,
                });
            }
        }
    }
    cells
}

// ---------------------------------------------------------------------
// Running a cell.

type Counts = BTreeMap<&'static str, u64>;

fn af(addr: SocketAddr) -> i32 {
    if addr.is_ipv4() { AF_INET } else { AF_INET6 }
}

fn request(af: i32, sock: Sock, flags: SocketFlags) -> SocketRequest {
    let (socket_type, protocol) = match sock {
        Sock::Stream => (SOCK_STREAM, IPPROTO_TCP),
        Sock::Datagram => (SOCK_DGRAM, IPPROTO_UDP),
    };
    SocketRequest {
        af,
        socket_type,
        protocol,
        info: None,
        group: 0,
        flags,
    }
}

fn setup<T>(what: &str, result: Result<T, WsaError>) -> Result<T, String> {
    result.map_err(|e| format!("setup failed: {what}: {e:?}"))
}

fn socket(p: &mut Provider, af: i32, sock: Sock, flags: SocketFlags) -> Result<u32, String> {
    setup("wsp-socket", p.wsp_socket(&request(af, sock, flags)))
}

/// Rule 1 of a cell: the result.
fn verdict(expect: Expect, result: Result<(), WsaError>) -> Result<(), String> {
    match (expect, result) {
        (Expect::Denied(_), Err(WsaError::Acces)) => Ok(()),
        (Expect::Refused(want), Err(got)) if got == want => Ok(()),
        (Expect::Allowed, r) if r != Err(WsaError::Acces) => Ok(()),
        (_, r) => Err(format!("expected {expect}, got {r:?}")),
    }
}

/// Rule 3 of a cell: the denial counters moved by the expected reason only.
fn counted(p: &Provider, before: &Counts, expect: Expect) -> Result<(), String> {
    let mut moved = Counts::new();
    for (reason, n) in p.denial_counts() {
        let was = before.get(reason).copied().unwrap_or(0);
        if n != was {
            moved.insert(reason, n - was);
        }
    }
    let wanted: Counts = match expect {
        Expect::Denied(reason) => [(reason, 1)].into(),
        _ => Counts::new(),
    };
    if moved == wanted {
        Ok(())
    } else {
        Err(format!(
            "denial counters moved by {moved:?}, expected {wanted:?} (last denial: {:?})",
            p.last_denial().map(|d| d.to_string())
        ))
    }
}

/// Rule 2 for a socket that was unbound before the call: still no OS
/// socket bound or connected.
fn untouched(p: &mut Provider, s: u32) -> Result<(), String> {
    let name = p.wsp_get_sock_name(s);
    let peer = p.wsp_get_peer_name(s);
    if name == Err(WsaError::Inval) && peer == Err(WsaError::NotConn) {
        Ok(())
    } else {
        Err(format!(
            "left an OS socket bound or connected: sock name {name:?}, peer name {peer:?}"
        ))
    }
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

/// The counters before the call, which setup must have left untouched.
fn before_call(p: &Provider) -> Result<Counts, String> {
    let counts = p.denial_counts();
    check(counts.is_empty(), || {
        format!("setup was denied: {counts:?}")
    })?;
    Ok(counts)
}

async fn bounded<T>(what: &str, call: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(WAIT, call)
        .await
        .map_err(|_| format!("{what} did not finish within {WAIT:?}"))
}

/// A peer socket (not the guest's) bound to `local`.
fn peer(ty: Type, local: SocketAddr) -> Result<Socket, String> {
    let make = || -> std::io::Result<Socket> {
        let s = Socket::new(Domain::for_address(local), ty, None)?;
        if local.is_ipv6() {
            s.set_only_v6(true)?;
        }
        s.set_reuse_address(true)?;
        s.bind(&local.into())?;
        Ok(s)
    };
    make().map_err(|e| format!("setup failed: peer bound to {local}: {e}"))
}

fn local_of(s: &Socket) -> Result<SocketAddr, String> {
    s.local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .ok_or_else(|| "setup failed: peer address".to_string())
}

/// The fixture addresses of a family: the guest's own, the sentinel's.
fn fixtures(v4: bool) -> (SocketAddr, SocketAddr) {
    if v4 {
        (
            SocketAddr::new(FIXTURE_GUEST_V4.parse().unwrap(), 0),
            SocketAddr::new(FIXTURE_SENTINEL_V4.parse().unwrap(), 0),
        )
    } else {
        let any_port = SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 0);
        (any_port, any_port)
    }
}

/// Runs one cell on a fresh provider; `Err` says what went wrong.
async fn run(cell: &Cell) -> Result<(), String> {
    let mut p = Provider::new(Arc::new(policy(&cell.grants)), cell.to_string());
    let mut peers = Vec::new();
    let outcome = call(cell, &mut p, &mut peers).await;
    // The guest closes first, so that no class port is left in TIME_WAIT.
    drop(p);
    drop(peers);
    outcome
}

async fn call(cell: &Cell, p: &mut Provider, peers: &mut Vec<Socket>) -> Result<(), String> {
    let expect = cell.expect;
    let denied = !matches!(expect, Expect::Allowed);
    let class = match cell.subject {
        Subject::Addr(class) => Some(class),
        Subject::Ttl(..) => None,
    };
    let to = class.map(|c| c.addr(cell.ports));
    match cell.op.call {
        Call::Create(proto) => {
            let to = to.expect("create subject");
            let (sock, protocol, flags) = match proto {
                Proto::Tcp => (SOCK_STREAM, IPPROTO_TCP, SocketFlags::empty()),
                Proto::Udp => (SOCK_DGRAM, IPPROTO_UDP, SocketFlags::empty()),
                Proto::RootedMultipoint => (
                    SOCK_STREAM,
                    IPPROTO_WASP_RMP,
                    SocketFlags::MULTIPOINT_C_LEAF | SocketFlags::MULTIPOINT_D_LEAF,
                ),
            };
            let before = before_call(p)?;
            let result = p.wsp_socket(&SocketRequest {
                af: af(to),
                socket_type: sock,
                protocol,
                info: None,
                group: 0,
                flags,
            });
            verdict(expect, result.map(drop))?;
            counted(p, &before, expect)?;
            let open = p.open_sockets();
            if denied {
                check(open == 0, || format!("{open} descriptors after a denial"))
            } else {
                check(result.is_ok() && open == 1, || {
                    format!("creation: {result:?}, {open} open")
                })
            }
        }
        Call::Bind(sock) => {
            let (class, to) = (class.unwrap(), to.unwrap());
            let s = socket(p, af(to), sock, SocketFlags::empty())?;
            let before = before_call(p)?;
            let result = p.wsp_bind(s, to);
            verdict(expect, result)?;
            counted(p, &before, expect)?;
            if denied {
                return untouched(p, s);
            }
            let name = p.wsp_get_sock_name(s);
            if class.local {
                check(result.is_ok() && name == Ok(to), || {
                    format!("bind: {result:?}, bound to {name:?}")
                })
            } else if to.port() == 0 && to.ip().is_unspecified() {
                check(
                    result.is_ok() && name.is_ok_and(|n| n.ip().is_unspecified() && n.port() != 0),
                    || format!("bind: {result:?}, bound to {name:?}"),
                )
            } else {
                Ok(())
            }
        }
        Call::Listen => {
            let to = to.unwrap();
            let s = socket(p, af(to), Sock::Stream, SocketFlags::empty())?;
            setup("bind", p.wsp_bind(s, to))?;
            let before = before_call(p)?;
            let result = p.wsp_listen(s, 8);
            verdict(expect, result)?;
            counted(p, &before, expect)?;
            let listening = p.wsp_get_sock_opt(s, OptName::AcceptConn);
            if !denied {
                return check(
                    result.is_ok() && listening == Ok(OptValue::AcceptConn(true)),
                    || format!("listen: {result:?}, SO_ACCEPTCONN {listening:?}"),
                );
            }
            check(listening == Ok(OptValue::AcceptConn(false)), || {
                format!("SO_ACCEPTCONN {listening:?} after a denied listen")
            })?;
            let name = p.wsp_get_sock_name(s);
            check(name == Ok(to), || format!("bound to {name:?}"))?;
            let reached = std::net::TcpStream::connect_timeout(&to, WAIT);
            check(
                reached
                    .as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused),
                || format!("a connect to the refused listener: {reached:?}"),
            )
        }
        Call::ListenUnbound => {
            let to = to.unwrap();
            let s = socket(p, af(to), Sock::Stream, SocketFlags::empty())?;
            let before = before_call(p)?;
            let result = p.wsp_listen(s, 8);
            verdict(expect, result)?;
            counted(p, &before, expect)?;
            untouched(p, s)
        }
        Call::Connect(sock) => {
            let (class, to) = (class.unwrap(), to.unwrap());
            let s = socket(p, af(to), sock, SocketFlags::empty())?;
            if sock == Sock::Datagram {
                setup("TTL 0", p.wsp_set_sock_opt(s, &OptValue::MulticastTtl(0)))?;
            }
            let before = before_call(p)?;
            let result = bounded("wsp-connect", p.wsp_connect(s, to)).await?;
            verdict(expect, result)?;
            counted(p, &before, expect)?;
            if denied {
                return untouched(p, s);
            }
            if sock == Sock::Datagram && (class.local || to.is_ipv4()) {
                let peer = p.wsp_get_peer_name(s);
                return check(result.is_ok() && peer == Ok(to), || {
                    format!("connect: {result:?}, peer {peer:?}")
                });
            }
            Ok(())
        }
        Call::SendTo { broadcast_flag } => {
            let (class, to) = (class.unwrap(), to.unwrap());
            let s = socket(p, af(to), Sock::Datagram, SocketFlags::empty())?;
            setup("TTL 0", p.wsp_set_sock_opt(s, &OptValue::MulticastTtl(0)))?;
            if broadcast_flag {
                setup(
                    "SO_BROADCAST",
                    p.wsp_set_sock_opt(s, &OptValue::Broadcast(true)),
                )?;
            }
            let before = before_call(p)?;
            let result = bounded(
                "wsp-send-to",
                p.wsp_send_to(s, Buffers::one(PAYLOAD), MsgFlags::empty(), to, None),
            )
            .await?;
            verdict(expect, result.map(drop))?;
            counted(p, &before, expect)?;
            if denied {
                return untouched(p, s);
            }
            if class.local || to.is_ipv4() {
                return check(result == Ok(PAYLOAD.len() as u32), || {
                    format!("send-to: {result:?}")
                });
            }
            Ok(())
        }
        Call::JoinLeaf => {
            let to = to.unwrap();
            let flags = SocketFlags::MULTIPOINT_C_LEAF | SocketFlags::MULTIPOINT_D_LEAF;
            let s = socket(p, af(to), Sock::Datagram, flags)?;
            let before = before_call(p)?;
            let result = bounded(
                "wsp-join-leaf",
                p.wsp_join_leaf(s, to, None, 0, None, JoinRole::Both),
            )
            .await?;
            verdict(expect, result.as_ref().map(drop).map_err(|e| *e))?;
            counted(p, &before, expect)?;
            if denied {
                return untouched(p, s);
            }
            let name = p.wsp_get_sock_name(s);
            check(result == Ok((s, Vec::new())) && name == Ok(to), || {
                format!("join: {result:?}, bound to {name:?}")
            })
        }
        Call::AcceptFrom => {
            let to = to.unwrap();
            let (guest, sentinel_at) = fixtures(to.is_ipv4());
            let l = socket(p, af(to), Sock::Stream, SocketFlags::empty())?;
            setup("bind", p.wsp_bind(l, guest))?;
            setup("listen", p.wsp_listen(l, 8))?;
            let at = setup("sock name", p.wsp_get_sock_name(l))?;
            setup(
                "non-blocking",
                p.wsp_ioctl(l, IoctlCommand::NonBlocking(true)),
            )?;
            let before = before_call(p)?;
            let class_peer = peer(Type::STREAM, to)?;
            let sentinel = peer(Type::STREAM, sentinel_at)?;
            let sentinel_at = local_of(&sentinel)?;
            for s in [&class_peer, &sentinel] {
                s.connect_timeout(&at.into(), WAIT)
                    .map_err(|e| format!("setup failed: peer connect: {e}"))?;
            }
            // Accept until the sentinel (sent after the peer under test)
            // is in, and the peer under test was either accepted or
            // refused (counted): a bounded poll, no fixed sleep.
            let deadline = Instant::now() + WAIT;
            let mut seen = Vec::new();
            loop {
                match p.wsp_accept(l).await {
                    Ok((_, from)) => seen.push(from),
                    Err(WsaError::WouldBlock) => {
                        let settled = seen.contains(&sentinel_at)
                            && (seen.contains(&to) || p.denial_counts() != before);
                        if settled {
                            break;
                        }
                        if Instant::now() > deadline {
                            return Err(format!(
                                "peers not settled within {WAIT:?}: accepted {seen:?}, counters {:?}",
                                p.denial_counts()
                            ));
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err(e) => return Err(format!("wsp-accept: {e:?}")),
                }
            }
            check(seen.iter().all(|a| *a == to || *a == sentinel_at), || {
                format!("accepted an unknown peer: {seen:?}")
            })?;
            let result = if seen.contains(&to) {
                Ok(())
            } else {
                Err(WsaError::Acces)
            };
            verdict(expect, result)?;
            counted(p, &before, expect)?;
            if denied {
                let open = p.open_sockets();
                check(open == 2, || {
                    format!("{open} descriptors: listener and sentinel expected")
                })?;
                // The refused peer was reset, never seen.
                let mut buf = [0u8; 1];
                let _ = class_peer.set_read_timeout(Some(WAIT));
                let read = (&class_peer).read(&mut buf);
                check(
                    read.as_ref()
                        .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
                    || format!("the refused peer read {read:?}, not a reset"),
                )?;
            }
            peers.push(class_peer);
            peers.push(sentinel);
            Ok(())
        }
        Call::RecvFrom => {
            let to = to.unwrap();
            let (guest, sentinel_at) = fixtures(to.is_ipv4());
            let g = socket(p, af(to), Sock::Datagram, SocketFlags::empty())?;
            setup("bind", p.wsp_bind(g, guest))?;
            let at = setup("sock name", p.wsp_get_sock_name(g))?;
            setup(
                "non-blocking",
                p.wsp_ioctl(g, IoctlCommand::NonBlocking(true)),
            )?;
            let before = before_call(p)?;
            let class_peer = peer(Type::DGRAM, to)?;
            let sentinel = peer(Type::DGRAM, sentinel_at)?;
            let sentinel_at = local_of(&sentinel)?;
            for s in [&class_peer, &sentinel] {
                s.send_to(PAYLOAD, &at.into())
                    .map_err(|e| format!("setup failed: peer send: {e}"))?;
            }
            let deadline = Instant::now() + WAIT;
            let mut seen = Vec::new();
            loop {
                match p.wsp_recv_from(g, 64, MsgFlags::empty(), None).await {
                    Ok((data, from)) => {
                        check(data == PAYLOAD, || format!("received {data:?}"))?;
                        seen.push(from);
                    }
                    Err(WsaError::WouldBlock) => {
                        let settled = seen.contains(&sentinel_at)
                            && (seen.contains(&to) || p.denial_counts() != before);
                        if settled {
                            break;
                        }
                        if Instant::now() > deadline {
                            return Err(format!(
                                "datagrams not settled within {WAIT:?}: received from {seen:?}, counters {:?}",
                                p.denial_counts()
                            ));
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err(e) => return Err(format!("wsp-recv-from: {e:?}")),
                }
            }
            check(seen.iter().all(|a| *a == to || *a == sentinel_at), || {
                format!("received from an unknown peer: {seen:?}")
            })?;
            let result = if seen.contains(&to) {
                Ok(())
            } else {
                Err(WsaError::Acces)
            };
            verdict(expect, result)?;
            counted(p, &before, expect)?;
            peers.push(class_peer);
            peers.push(sentinel);
            Ok(())
        }
        Call::MulticastTtl(family) => {
            let Subject::Ttl(_, asked) = cell.subject else {
                unreachable!()
            };
            let af = if family == Family::V4 {
                AF_INET
            } else {
                AF_INET6
            };
            let s = socket(p, af, Sock::Datagram, SocketFlags::empty())?;
            let was = setup("TTL", p.wsp_get_sock_opt(s, OptName::MulticastTtl))?;
            let before = before_call(p)?;
            let result = p.wsp_set_sock_opt(s, &OptValue::MulticastTtl(asked));
            verdict(expect, result)?;
            counted(p, &before, expect)?;
            let now = p.wsp_get_sock_opt(s, OptName::MulticastTtl);
            if denied {
                check(now == Ok(was.clone()), || {
                    format!("TTL {now:?} after a denial (was {was:?})")
                })?;
                untouched(p, s)
            } else {
                check(
                    result.is_ok() && now == Ok(OptValue::MulticastTtl(asked)),
                    || format!("set TTL: {result:?}, now {now:?}"),
                )
            }
        }
    }
}

// ---------------------------------------------------------------------
// Ports.

/// A granted range whose ports, and the one on each side, are free on
/// every loopback address the cells bind, below the ephemeral range (the
/// fixtures' ports lie above the range).
fn free_ports() -> Ports {
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (first, last) = (20_000u16, ephemeral.saturating_sub(16));
    assert!(first < last, "no room below the ephemeral range");
    let span = (last - first) / 8;
    let start = (std::process::id() % u32::from(span)) as u16;
    let free = |port: u16| {
        ["127.0.0.1", "127.0.0.2", "::1"].iter().all(|ip| {
            let addr = SocketAddr::new(ip.parse().unwrap(), port);
            std::net::TcpListener::bind(addr).is_ok() && std::net::UdpSocket::bind(addr).is_ok()
        })
    };
    (0..span)
        .map(|i| first + 8 * ((start + i) % span) + 1)
        .find(|&low| (low - 1..=low + 3).all(free))
        .map(|low| Ports { low })
        .expect("a free port range below the ephemeral range")
}

// ---------------------------------------------------------------------
// The tests.

#[test]
fn the_table_covers_every_operation_class_state_and_reason() {
    let ports = Ports { low: 20_001 };
    let cells = table(ports);
    assert!(cells.len() >= 300, "{} cells", cells.len());
    for op in &OPS {
        for state in STATES {
            assert!(
                cells
                    .iter()
                    .any(|c| std::ptr::eq(c.op, op) && c.state == state),
                "{} × {}",
                op.name,
                state.name()
            );
        }
    }
    for class in &ADDRESS_CLASSES {
        assert!(
            cells
                .iter()
                .any(|c| matches!(c.subject, Subject::Addr(a) if std::ptr::eq(a, class))),
            "{} is in no cell",
            class.name
        );
    }
    let reasons: BTreeSet<_> = cells
        .iter()
        .filter_map(|c| match c.expect {
            Expect::Denied(reason) => Some(reason),
            _ => None,
        })
        .collect();
    let all = [
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
    ];
    assert_eq!(reasons, all.into_iter().collect(), "reasons denied");
    // Every operation is allowed somewhere and denied somewhere, but
    // listen on an unbound socket, which is refused before the policy.
    for op in &OPS {
        let of_op = || cells.iter().filter(|c| std::ptr::eq(c.op, op));
        if op.call == Call::ListenUnbound {
            assert!(of_op().all(|c| c.expect == Expect::Refused(WsaError::Inval)));
            continue;
        }
        let allowed = of_op().any(|c| c.expect == Expect::Allowed);
        let denied = of_op().any(|c| matches!(c.expect, Expect::Denied(_)));
        assert!(allowed && denied, "{}", op.name);
    }
    // The fixtures cover no address class, for any use: a cell's
    // decision never rests on them.
    let fixture = fixture_grants(ports);
    for class in &ADDRESS_CLASSES {
        let Some(seen) = class.seen(ports) else {
            continue;
        };
        for g in &fixture {
            assert!(!g.covers(g.kind, seen), "{} covered by {g:?}", class.name);
        }
    }
    // Nothing that would leave the machine is given to a call that
    // transmits at once.
    for c in &cells {
        if let (Call::Connect(Sock::Stream) | Call::SendTo { .. }, Subject::Addr(class)) =
            (c.op.call, c.subject)
        {
            assert!(class.stays_here, "{c}");
        }
    }
}

#[tokio::test]
async fn deny_matrix_on_real_loopback_sockets() {
    let ports = free_ports();
    let cells = table(ports);
    let started = Instant::now();
    let mut failures = Vec::new();
    for cell in &cells {
        if let Err(why) = run(cell).await {
            failures.push(format!("{cell}: expected {}: {why}", cell.expect));
        }
    }
    let count = |f: fn(&Expect) -> bool| cells.iter().filter(|c| f(&c.expect)).count();
    println!(
        "deny_sockets: {} cells run ({} allowed, {} denied, {} refused before the policy) \
         in {:?}, granted ports {:?}",
        cells.len(),
        count(|e| *e == Expect::Allowed),
        count(|e| matches!(e, Expect::Denied(_))),
        count(|e| matches!(e, Expect::Refused(_))),
        started.elapsed(),
        ports.granted(),
    );
    assert!(
        failures.is_empty(),
        "{} of {} cells failed:\n{}",
        failures.len(),
        cells.len(),
        failures.join("\n")
    );
}
