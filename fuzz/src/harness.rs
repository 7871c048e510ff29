//! The logic of the fuzz targets, shared with the replay test.
//!
//! This file uses only `wasp_host`'s public API, `arbitrary` and `std`, so
//! that the fuzz crate (`fuzz/src/lib.rs`) and the host integration tests
//! (`tests/host/fuzz_replay.rs`, with `#[path]`) compile the very same code.
//! Each target is a function from raw bytes (a corpus file) that panics when
//! an invariant fails. The structured targets decode the bytes exactly as
//! `libfuzzer-sys` does for `fuzz_target!(|input: T| ...)`
//! (`T::arbitrary_take_rest`), so a corpus file is the same input to the
//! fuzzer and to the replay.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use arbitrary::{Arbitrary, Unstructured};
use wasp_host::net::queue::{Message, MessageQueue, Posted};
use wasp_host::net::select::{Conditions, FdEvents, Input, Notice, Reenable, SelectState};
use wasp_host::{NetUse, Policy, WsaError};

// ---------------------------------------------------------------------------
// Target 1: the policy loader
// ---------------------------------------------------------------------------

/// `policy_loader`: any bytes, read as UTF-8 (lossily), given to
/// `Policy::from_toml`. It must never panic; a policy it accepts has its
/// grant blocks in canonical form (no host bits), and checking addresses
/// derived from its grants does not panic either.
pub fn policy_loader(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(policy) = Policy::from_toml(&text) else {
        return;
    };
    let mut probes: Vec<SocketAddr> = vec![
        "127.0.0.1:0".parse().unwrap(),
        "0.0.0.0:65535".parse().unwrap(),
        "[::1]:80".parse().unwrap(),
        "[::ffff:127.0.0.1]:80".parse().unwrap(),
    ];
    for net_use in NetUse::ALL {
        for grant in policy.grants(net_use) {
            assert_eq!(
                grant.net,
                grant.net.trunc(),
                "grants.{net_use}: the block {} is not in canonical form",
                grant.net
            );
            let (lo, hi) = (*grant.ports.start(), *grant.ports.end());
            assert!(lo <= hi, "grants.{net_use}: empty port range {lo}-{hi}");
            let (first, last) = (grant.net.network(), grant.net.broadcast());
            for ip in [first, last] {
                for port in [lo, hi, lo.wrapping_sub(1), hi.wrapping_add(1)] {
                    probes.push(SocketAddr::new(ip, port));
                }
                if let IpAddr::V4(v4) = ip {
                    probes.push(SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), lo));
                    probes.push(SocketAddr::new(IpAddr::V6(v4.to_ipv6_compatible()), lo));
                }
            }
            // The first address of an IPv4 block is granted on its first port
            // (an IPv6 block may be an IPv4-embedding form, checked as IPv4).
            if first.is_ipv4() {
                assert!(
                    policy.check(net_use, SocketAddr::new(first, lo)).is_ok(),
                    "grants.{net_use}: {first}:{lo} is inside the grant {grant} but refused"
                );
            }
        }
    }
    for grant in policy.multicast_grants() {
        let (ip, port) = (grant.groups.network(), *grant.ports.start());
        probes.push(SocketAddr::new(ip, port));
        let _ = policy.check_multicast(SocketAddr::new(ip, port));
        let _ = policy.check_multicast(SocketAddr::new(grant.groups.broadcast(), port));
    }
    for addr in probes.iter().take(512) {
        for net_use in NetUse::ALL {
            if let Err(denial) = policy.check(net_use, *addr) {
                let _ = denial.to_string();
            }
            let _ = policy.check_destination(net_use, *addr);
        }
        let _ = policy.check_broadcast(*addr);
    }
    let _ = format!("{policy:?}");
}

// ---------------------------------------------------------------------------
// Target 2: the policy decision against a reference model
// ---------------------------------------------------------------------------

/// An address the fuzzer picks, biased towards the IPv6 forms that embed
/// an IPv4 address.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum AddrSpec {
    /// Any IPv4 address.
    V4([u8; 4]),
    /// Any IPv6 address.
    V6([u16; 8]),
    /// `::ffff:a.b.c.d` (IPv4-mapped).
    Mapped([u8; 4]),
    /// `::a.b.c.d` (IPv4-compatible).
    Compatible([u8; 4]),
    /// `::ffff:0:a.b.c.d` (SIIT).
    Siit([u8; 4]),
    /// `64:ff9b::a.b.c.d` (NAT64, well-known prefix).
    Nat64([u8; 4]),
    /// `64:ff9b:1::/48` (NAT64, local use).
    Nat64Local([u16; 5]),
    /// `2002:aabb:ccdd::/48` (6to4), with the rest of the address.
    SixToFour([u8; 4], [u16; 5]),
    /// `2001::/32` (Teredo), with the rest of the address.
    Teredo([u16; 6]),
    /// One of [`WELL_KNOWN`].
    Known(u8),
}

/// Addresses worth trying on their own.
const WELL_KNOWN: [&str; 20] = [
    "0.0.0.0",
    "127.0.0.1",
    "127.255.255.255",
    "10.0.0.1",
    "169.254.169.254",
    "224.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "::2",
    "::ffff:0:0",
    "::ffff:127.0.0.1",
    "::127.0.0.1",
    "::ffff:0:127.0.0.1",
    "64:ff9b::7f00:1",
    "64:ff9b:1::7f00:1",
    "2002:7f00:1::",
    "2001::7f00:1",
    "fe80::1",
    "ff02::1",
];

impl AddrSpec {
    fn ip(self) -> IpAddr {
        let v4 = |b: [u8; 4]| u128::from(u32::from_be_bytes(b));
        let v6 = |bits: u128| IpAddr::V6(Ipv6Addr::from(bits));
        match self {
            AddrSpec::V4(b) => IpAddr::V4(Ipv4Addr::from(b)),
            AddrSpec::V6(s) => IpAddr::V6(Ipv6Addr::from(s)),
            AddrSpec::Mapped(b) => v6((0xffff << 32) | v4(b)),
            AddrSpec::Compatible(b) => v6(v4(b)),
            AddrSpec::Siit(b) => v6((0xffff << 48) | v4(b)),
            AddrSpec::Nat64(b) => v6((0x64_ff9b << 96) | v4(b)),
            AddrSpec::Nat64Local(s) => {
                let [a, b, c, d, e] = s;
                IpAddr::V6(Ipv6Addr::new(0x64, 0xff9b, 1, a, b, c, d, e))
            }
            AddrSpec::SixToFour(b, s) => {
                let [c, d, e, f, g] = s;
                let [b0, b1, b2, b3] = b;
                let hi = u16::from_be_bytes([b0, b1]);
                let lo = u16::from_be_bytes([b2, b3]);
                IpAddr::V6(Ipv6Addr::new(0x2002, hi, lo, c, d, e, f, g))
            }
            AddrSpec::Teredo(s) => {
                let [a, b, c, d, e, f] = s;
                IpAddr::V6(Ipv6Addr::new(0x2001, 0, a, b, c, d, e, f))
            }
            AddrSpec::Known(i) => WELL_KNOWN[usize::from(i) % WELL_KNOWN.len()]
                .parse()
                .unwrap(),
        }
    }
}

/// The ports of a grant.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum PortsSpec {
    /// Every port.
    All,
    /// One port.
    One(u16),
    /// `lo..=hi` (empty when `lo > hi`).
    Range(u16, u16),
}

impl PortsSpec {
    fn bounds(self) -> (u16, u16) {
        match self {
            PortsSpec::All => (0, u16::MAX),
            PortsSpec::One(p) => (p, p),
            PortsSpec::Range(lo, hi) => (lo, hi),
        }
    }
}

/// One grant: a use, a block (an address and a prefix length, taken modulo
/// the family's width + 1; host bits may be set) and ports.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub struct GrantSpec {
    /// The use (modulo 7).
    pub net_use: u8,
    /// The address of the block.
    pub addr: AddrSpec,
    /// The prefix length.
    pub prefix: u8,
    /// The ports.
    pub ports: PortsSpec,
}

/// The address of a query.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum QueryAddr {
    /// An address of its own.
    Plain(AddrSpec),
    /// The address of grant `grant` (modulo their number), with bit `flip`
    /// (modulo the width) flipped when given: block edges.
    NearGrant { grant: u8, flip: Option<u8> },
    /// The IPv4 address of grant `grant`, last byte set to `low`, spelt in
    /// the IPv6 form `form` (mapped, compatible, SIIT, NAT64, 6to4 or
    /// Teredo's server field, modulo 6).
    EmbedGrant {
        grant: u8,
        form: u8,
        low: Option<u8>,
    },
}

/// The port of a query.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum QueryPort {
    /// A port of its own.
    Plain(u16),
    /// An edge of the ports of grant `grant`: lo - 1, lo, hi, hi + 1.
    NearGrant { grant: u8, edge: u8 },
}

/// One query: `policy.check(use, addr)`.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub struct QuerySpec {
    /// The use (modulo 7).
    pub net_use: u8,
    /// The address.
    pub addr: QueryAddr,
    /// The port.
    pub port: QueryPort,
    /// The IPv6 scope id (never matters).
    pub scope_id: u32,
    /// The IPv6 flow label (never matters).
    pub flowinfo: u32,
}

/// The input of `policy_decision`.
#[derive(Arbitrary, Clone, Debug)]
pub struct DecisionInput {
    /// Grants, in order (the first 12).
    pub grants: Vec<GrantSpec>,
    /// Queries (the first 32).
    pub queries: Vec<QuerySpec>,
}

/// A grant as the reference model sees it.
#[derive(Clone, Copy, Debug)]
struct ModelGrant {
    net_use: NetUse,
    ip: IpAddr,
    prefix: u8,
    lo: u16,
    hi: u16,
}

/// What an address is checked as, by the reference model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Checked {
    V4(u32),
    V6(u128),
    /// Never granted (Teredo, NAT64 local-use).
    Refused,
}

/// The reference rule: an IPv6 address that embeds an IPv4 address is
/// checked as that IPv4 address; Teredo and NAT64 local-use are refused.
fn model_checked_as(ip: IpAddr) -> Checked {
    let bits = match ip {
        IpAddr::V4(v4) => return Checked::V4(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    };
    let low32 = (bits & 0xffff_ffff) as u32;
    if bits >> 32 == 0xffff {
        return Checked::V4(low32); // ::ffff:0:0/96, IPv4-mapped
    }
    if bits >> 32 == 0 && bits > 1 {
        return Checked::V4(low32); // ::/96 but :: and ::1, IPv4-compatible
    }
    if bits >> 32 == 0xffff_0000 {
        return Checked::V4(low32); // ::ffff:0:0:0/96, SIIT
    }
    if bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000 {
        return Checked::V4(low32); // 64:ff9b::/96, NAT64
    }
    if bits >> 80 == 0x0064_ff9b_0001 {
        return Checked::Refused; // 64:ff9b:1::/48, NAT64 local use
    }
    if bits >> 112 == 0x2002 {
        return Checked::V4((bits >> 80) as u32); // 2002::/16, 6to4
    }
    if bits >> 96 == 0x2001_0000 {
        return Checked::Refused; // 2001::/32, Teredo
    }
    Checked::V6(bits)
}

/// The first `prefix` bits of a `width`-bit value, by hand.
fn leading_bits(value: u128, prefix: u8, width: u8) -> u128 {
    if prefix == 0 {
        return 0;
    }
    let drop = u32::from(width - prefix);
    let mask = if width == 128 {
        u128::MAX << drop
    } else {
        (u128::MAX >> (128 - u32::from(width))) & (u128::MAX << drop)
    };
    value & mask
}

/// The reference model: is `use` of `addr` granted by one of `grants`?
fn model_check(grants: &[ModelGrant], net_use: NetUse, addr: SocketAddr) -> bool {
    let checked = model_checked_as(addr.ip());
    let port = addr.port();
    for grant in grants {
        if grant.net_use != net_use {
            continue;
        }
        if !(grant.lo <= port && port <= grant.hi) {
            continue;
        }
        let inside = match (grant.ip, checked) {
            (IpAddr::V4(g), Checked::V4(a)) => {
                let (g, a) = (u128::from(u32::from(g)), u128::from(a));
                leading_bits(g, grant.prefix, 32) == leading_bits(a, grant.prefix, 32)
            }
            (IpAddr::V6(g), Checked::V6(a)) => {
                leading_bits(u128::from(g), grant.prefix, 128) == leading_bits(a, grant.prefix, 128)
            }
            _ => false,
        };
        if inside {
            return true;
        }
    }
    false
}

fn use_of(n: u8) -> NetUse {
    NetUse::ALL[usize::from(n) % NetUse::ALL.len()]
}

fn query_addr(spec: &QuerySpec, grants: &[ModelGrant]) -> SocketAddr {
    let pick = |i: u8| grants.get(usize::from(i) % grants.len().max(1)).copied();
    let ip = match spec.addr {
        QueryAddr::Plain(a) => a.ip(),
        QueryAddr::NearGrant { grant, flip } => match pick(grant) {
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Some(g) => match (g.ip, flip) {
                (ip, None) => ip,
                (IpAddr::V4(v4), Some(bit)) => {
                    IpAddr::V4(Ipv4Addr::from(u32::from(v4) ^ (1 << (bit % 32))))
                }
                (IpAddr::V6(v6), Some(bit)) => {
                    IpAddr::V6(Ipv6Addr::from(u128::from(v6) ^ (1 << (bit % 128))))
                }
            },
        },
        QueryAddr::EmbedGrant { grant, form, low } => {
            let v4 = match pick(grant).map(|g| g.ip) {
                Some(IpAddr::V4(v4)) => v4,
                _ => Ipv4Addr::LOCALHOST,
            };
            let mut b = v4.octets();
            if let Some(low) = low {
                b[3] = low;
            }
            let spec = match form % 6 {
                0 => AddrSpec::Mapped(b),
                1 => AddrSpec::Compatible(b),
                2 => AddrSpec::Siit(b),
                3 => AddrSpec::Nat64(b),
                4 => AddrSpec::SixToFour(b, [0; 5]),
                _ => AddrSpec::Teredo([
                    u16::from_be_bytes([b[0], b[1]]),
                    u16::from_be_bytes([b[2], b[3]]),
                    0,
                    0,
                    0,
                    0,
                ]),
            };
            spec.ip()
        }
    };
    let port = match spec.port {
        QueryPort::Plain(p) => p,
        QueryPort::NearGrant { grant, edge } => match pick(grant) {
            None => 0,
            Some(g) => match edge % 4 {
                0 => g.lo.wrapping_sub(1),
                1 => g.lo,
                2 => g.hi,
                _ => g.hi.wrapping_add(1),
            },
        },
    };
    match ip {
        IpAddr::V4(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
        IpAddr::V6(v6) => SocketAddr::V6(SocketAddrV6::new(v6, port, spec.flowinfo, spec.scope_id)),
    }
}

/// `policy_decision`: grants and queries; `Policy::check` must agree with
/// the reference model on every query, scope ids and flow labels must not
/// change a decision, and `check_destination` refuses every multicast
/// group (no multicast grant here) and otherwise agrees with the model.
pub fn policy_decision(data: &[u8]) {
    let Ok(mut input) = DecisionInput::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    input.grants.truncate(12);
    input.queries.truncate(32);
    run_policy_decision(&input);
}

/// [`policy_decision`] on a decoded input.
pub fn run_policy_decision(input: &DecisionInput) {
    let mut builder = Policy::builder();
    let mut grants = Vec::new();
    for spec in &input.grants {
        let ip = spec.addr.ip();
        let width = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = spec.prefix % (width + 1);
        let (lo, hi) = spec.ports.bounds();
        let net_use = use_of(spec.net_use);
        let net = format!("{ip}/{prefix}")
            .parse()
            .unwrap_or_else(|e| panic!("{ip}/{prefix} does not parse as a block: {e}"));
        builder = builder.grant(net_use, net, lo..=hi);
        grants.push(ModelGrant {
            net_use,
            ip,
            prefix,
            lo,
            hi,
        });
    }
    let policy = builder.build();
    // The grants read back as given, per use, in order.
    for net_use in NetUse::ALL {
        let given: Vec<_> = grants.iter().filter(|g| g.net_use == net_use).collect();
        let read = policy.grants(net_use);
        assert_eq!(read.len(), given.len(), "grants of {net_use}: {read:?}");
        for (r, g) in read.iter().zip(given) {
            assert_eq!(
                (r.net.network(), r.net.prefix_len()),
                (model_network(g.ip, g.prefix), g.prefix),
                "grant of {net_use} read back differently"
            );
            assert_eq!((*r.ports.start(), *r.ports.end()), (g.lo, g.hi));
        }
    }
    for spec in &input.queries {
        let net_use = use_of(spec.net_use);
        let addr = query_addr(spec, &grants);
        let real = policy.check(net_use, addr);
        if let Err(denial) = &real {
            let _ = denial.to_string();
        }
        let real = real.is_ok();
        // Scope ids and flow labels never matter.
        if let SocketAddr::V6(v6) = addr {
            let plain = SocketAddr::V6(SocketAddrV6::new(*v6.ip(), v6.port(), 0, 0));
            assert_eq!(
                policy.check(net_use, plain).is_ok(),
                real,
                "{net_use} {addr}: the scope id or flow label changed the decision \
                 (grants: {grants:?})"
            );
        }
        let model = model_check(&grants, net_use, addr);
        // An outbound destination: a multicast group needs a multicast grant
        // (there are none here), whatever the grants of the use cover.
        let multicast = match model_checked_as(addr.ip()) {
            Checked::V4(v4) => v4 >> 28 == 0xe,
            Checked::V6(v6) => v6 >> 120 == 0xff,
            Checked::Refused => false,
        };
        assert_eq!(
            policy.check_destination(net_use, addr).is_ok(),
            model && !multicast,
            "{net_use} {addr} as a destination (multicast: {multicast}; grants: {grants:?})"
        );
        if net_use == NetUse::Broadcast {
            assert_eq!(
                policy.check_broadcast(addr).is_ok(),
                real,
                "broadcast {addr}"
            );
        }
        if real == model {
            continue;
        }
        panic!(
            "policy decision diverges from the reference model: {net_use} {addr} \
             (checked as {}): policy says {}, model says {}\ngrants: {grants:#?}",
            match model_checked_as(addr.ip()) {
                Checked::V4(v4) => format!("IPv4 {}", Ipv4Addr::from(v4)),
                Checked::V6(v6) => format!("IPv6 {}", Ipv6Addr::from(v6)),
                Checked::Refused => "always refused".to_string(),
            },
            if real { "granted" } else { "refused" },
            if model { "granted" } else { "refused" },
        );
    }
}

/// The first address of the block `ip/prefix`, by hand.
fn model_network(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = leading_bits(u128::from(u32::from(v4)), prefix, 32);
            IpAddr::V4(Ipv4Addr::from(bits as u32))
        }
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(leading_bits(u128::from(v6), prefix, 128))),
    }
}

// ---------------------------------------------------------------------------
// Target 3: the WSPAsyncSelect state machine
// ---------------------------------------------------------------------------

/// An error a connect or a close can carry.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum ErrSpec {
    /// WSAECONNREFUSED.
    ConnRefused,
    /// WSAECONNRESET.
    ConnReset,
    /// WSAECONNABORTED.
    ConnAborted,
    /// WSAETIMEDOUT.
    TimedOut,
    /// WSAENETUNREACH.
    NetUnreach,
    /// WSAENETDOWN.
    NetDown,
}

impl ErrSpec {
    fn error(self) -> WsaError {
        match self {
            ErrSpec::ConnRefused => WsaError::ConnRefused,
            ErrSpec::ConnReset => WsaError::ConnReset,
            ErrSpec::ConnAborted => WsaError::ConnAborted,
            ErrSpec::TimedOut => WsaError::TimedOut,
            ErrSpec::NetUnreach => WsaError::NetUnreach,
            ErrSpec::NetDown => WsaError::NetDown,
        }
    }
}

/// A re-enabling call.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum CallSpec {
    /// recv / recv-from.
    Recv,
    /// send / send-to.
    Send,
    /// accept.
    Accept,
    /// SIO_GET_QOS.
    GetQos,
    /// SIO_GET_GROUP_QOS.
    GetGroupQos,
    /// SIO_ROUTING_INTERFACE_CHANGE.
    RoutingInterfaceChange,
    /// SIO_ADDRESS_LIST_CHANGE.
    AddressListChange,
}

impl CallSpec {
    fn call(self) -> Reenable {
        match self {
            CallSpec::Recv => Reenable::Recv,
            CallSpec::Send => Reenable::Send,
            CallSpec::Accept => Reenable::Accept,
            CallSpec::GetQos => Reenable::GetQos,
            CallSpec::GetGroupQos => Reenable::GetGroupQos,
            CallSpec::RoutingInterfaceChange => Reenable::RoutingInterfaceChange,
            CallSpec::AddressListChange => Reenable::AddressListChange,
        }
    }

    /// The events the call re-enables, from SPEC AS-9 (written here, not
    /// taken from the state machine).
    fn reenables(self) -> FdEvents {
        match self {
            CallSpec::Recv => FdEvents::READ | FdEvents::OOB,
            CallSpec::Send => FdEvents::WRITE,
            CallSpec::Accept => FdEvents::ACCEPT,
            CallSpec::GetQos => FdEvents::QOS,
            CallSpec::GetGroupQos => FdEvents::GROUP_QOS,
            CallSpec::RoutingInterfaceChange => FdEvents::ROUTING_INTERFACE_CHANGE,
            CallSpec::AddressListChange => FdEvents::ADDRESS_LIST_CHANGE,
        }
    }
}

/// An edge-triggered change.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum EdgeSpec {
    /// FD_QOS.
    Qos,
    /// FD_GROUP_QOS.
    GroupQos,
    /// FD_ROUTING_INTERFACE_CHANGE.
    RoutingInterfaceChange,
    /// FD_ADDRESS_LIST_CHANGE.
    AddressListChange,
}

impl EdgeSpec {
    fn event(self) -> FdEvents {
        match self {
            EdgeSpec::Qos => FdEvents::QOS,
            EdgeSpec::GroupQos => FdEvents::GROUP_QOS,
            EdgeSpec::RoutingInterfaceChange => FdEvents::ROUTING_INTERFACE_CHANGE,
            EdgeSpec::AddressListChange => FdEvents::ADDRESS_LIST_CHANGE,
        }
    }
}

/// One operation on a socket's async-select state or its queue.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum SelectOp {
    /// `register(mask, msg)` (the mask's unknown bits dropped).
    Register {
        /// FD_* bits.
        mask: u16,
        /// The message id.
        msg: u32,
    },
    /// `observe(conditions)`.
    Observe {
        /// Data to read.
        data: bool,
        /// Urgent data to read.
        oob: bool,
        /// A connection to accept.
        pending_accept: bool,
        /// Room to send.
        writable: bool,
        /// SO_OOBINLINE.
        oob_inline: bool,
    },
    /// `reenable(call)`.
    Reenable(CallSpec),
    /// `connected()`.
    Connected,
    /// `connect_started()`.
    ConnectStarted,
    /// `connect_finished(error)`.
    ConnectFinished(Option<ErrSpec>),
    /// `close_arrived(error)`.
    CloseArrived(Option<ErrSpec>),
    /// `send_would_block()`.
    SendWouldBlock,
    /// `datagram_bound()`.
    DatagramBound,
    /// `changed(event)`.
    Changed(EdgeSpec),
    /// Post what is due, as the event engine does.
    Drain,
    /// The guest takes up to n % 8 messages from the queue.
    Take(u8),
}

/// The input of `select_machine`.
#[derive(Arbitrary, Clone, Debug)]
pub struct SelectInput {
    /// The queue capacity (modulo 5; 0 is clamped to 1 by the queue).
    pub capacity: u8,
    /// The operations (the first 256).
    pub ops: Vec<SelectOp>,
}

/// What the harness tracks to judge the state machine.
struct Tracker {
    /// The registered events.
    mask: FdEvents,
    /// The registered message id.
    msg: u32,
    /// Events posted and not re-enabled since (SPEC AS-9).
    posted_not_reenabled: FdEvents,
    /// FD_CLOSE was posted during this registration.
    close_posted: bool,
    /// The last `data` observed.
    data: bool,
    /// The first close indication and its error.
    close: Option<Option<WsaError>>,
}

const SOCKET: u32 = 7;

/// `select_machine`: operation sequences on one socket's `SelectState`
/// with a bounded queue. Invariants: (a) one message per event until it
/// is re-enabled (FD_CONNECT: until a new connect starts; FD_CLOSE: never)
/// or the socket is registered again; (b) FD_CLOSE at most once per
/// registration, never while unread data is observed, carrying the first
/// close's error; (c) only registered events are ever due, one event per
/// message, with the registration's message id; (d) the queue holds at
/// most its capacity + 2 messages (one socket).
pub fn select_machine(data: &[u8]) {
    let Ok(mut input) = SelectInput::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    input.ops.truncate(256);
    run_select_machine(&input);
}

/// [`select_machine`] on a decoded input.
pub fn run_select_machine(input: &SelectInput) {
    let capacity = u32::from(input.capacity % 5);
    let queue = MessageQueue::new(capacity);
    // The queue clamps a capacity of 0 to 1.
    let effective = capacity.max(1) as usize;
    let mut state = SelectState::new();
    let mut t = Tracker {
        mask: FdEvents::empty(),
        msg: 0,
        posted_not_reenabled: FdEvents::empty(),
        close_posted: false,
        data: false,
        close: None,
    };
    for (step, op) in input.ops.iter().enumerate() {
        let at = |what: &str| format!("step {step} ({op:?}): {what}\nops: {:?}", input.ops);
        match *op {
            SelectOp::Register { mask, msg } => {
                let mask = FdEvents::from_bits_truncate(u32::from(mask));
                state.apply(Input::Register { mask, msg });
                t.mask = mask;
                t.msg = msg;
                t.posted_not_reenabled = FdEvents::empty();
                t.close_posted = false;
            }
            SelectOp::Observe {
                data,
                oob,
                pending_accept,
                writable,
                oob_inline,
            } => {
                state.apply(Input::Observed(Conditions {
                    data,
                    oob,
                    pending_accept,
                    writable,
                    oob_inline,
                }));
                t.data = data;
            }
            SelectOp::Reenable(call) => {
                state.apply(Input::Reenabled(call.call()));
                t.posted_not_reenabled -= call.reenables();
            }
            SelectOp::Connected => state.apply(Input::Connected),
            SelectOp::ConnectStarted => {
                state.apply(Input::ConnectStarted);
                t.posted_not_reenabled -= FdEvents::CONNECT;
            }
            SelectOp::ConnectFinished(error) => {
                state.apply(Input::ConnectFinished(error.map(ErrSpec::error)));
            }
            SelectOp::CloseArrived(error) => {
                let error = error.map(ErrSpec::error);
                state.apply(Input::CloseArrived(error));
                t.close.get_or_insert(error);
            }
            SelectOp::SendWouldBlock => state.apply(Input::SendWouldBlock),
            SelectOp::DatagramBound => state.apply(Input::DatagramBound),
            SelectOp::Changed(edge) => state.apply(Input::Changed(edge.event())),
            SelectOp::Take(n) => {
                for message in queue.drain(usize::from(n % 8)) {
                    assert_eq!(message.socket, SOCKET, "{}", at("foreign message"));
                }
            }
            SelectOp::Drain => drain(&mut state, &queue, &mut t, effective, &at),
        }
        assert_eq!(
            (state.mask(), state.msg()),
            (t.mask, t.msg),
            "{}",
            at("the registration is not the one made")
        );
        // What is due is checked at every step, not only when draining.
        if let Some(notice) = state.next_due() {
            check_due(&notice, &t, &at);
        }
    }
}

/// Checks a notice that `next_due` returned (invariants a, b, c).
fn check_due(notice: &Notice, t: &Tracker, at: &dyn Fn(&str) -> String) {
    let event = notice.event;
    assert_eq!(
        event.bits().count_ones(),
        1,
        "{}",
        at(&format!("a message for several events {event:?}"))
    );
    assert!(
        t.mask.contains(event),
        "{}",
        at(&format!("{event:?} due but not registered ({:?})", t.mask))
    );
    assert!(
        !t.posted_not_reenabled.contains(event),
        "{}",
        at(&format!(
            "{event:?} due again before its re-enabling call or a new registration"
        ))
    );
    if event == FdEvents::CLOSE {
        assert!(
            !t.close_posted,
            "{}",
            at("FD_CLOSE due twice in one registration")
        );
        assert!(
            !t.data,
            "{}",
            at("FD_CLOSE due while unread data is observed")
        );
        assert_eq!(
            Some(notice.error),
            t.close,
            "{}",
            at("FD_CLOSE without a close indication, or with another error")
        );
    } else if event != FdEvents::CONNECT {
        assert_eq!(
            notice.error,
            None,
            "{}",
            at(&format!("{event:?} carries an error"))
        );
    }
}

/// The event engine's delivery loop: post what is due until nothing is or
/// the queue is full for an ordinary event (which then stays due);
/// FD_CONNECT and FD_CLOSE may go in past the capacity (the queue decides
/// how often).
fn drain(
    state: &mut SelectState,
    queue: &MessageQueue,
    t: &mut Tracker,
    capacity: usize,
    at: &dyn Fn(&str) -> String,
) {
    let bound = capacity + 2;
    for _ in 0..=FdEvents::all().bits().count_ones() {
        let Some(notice) = state.next_due() else {
            return;
        };
        check_due(&notice, t, at);
        let message = Message {
            msg: state.msg(),
            socket: SOCKET,
            notice,
            completion: None,
        };
        match queue.post(message) {
            Posted::Queued => {
                state.apply(Input::Posted(notice.event));
                t.posted_not_reenabled |= notice.event;
                if notice.event == FdEvents::CLOSE {
                    t.close_posted = true;
                }
                assert!(
                    queue.len() <= bound,
                    "{}",
                    at(&format!(
                        "{} messages queued from one socket, more than capacity + 2 = {bound}",
                        queue.len()
                    ))
                );
            }
            Posted::Full => {
                // The event stays due. FD_CONNECT / FD_CLOSE may go past the
                // capacity, but a queue below its capacity refuses nothing.
                assert!(
                    queue.len() >= capacity,
                    "{}",
                    at(&format!(
                        "{:?} refused by a queue holding {} of {capacity}",
                        notice.event,
                        queue.len()
                    ))
                );
                return;
            }
            Posted::Closed => panic!("{}", at("the queue is closed")),
        }
    }
    panic!(
        "{}",
        at("draining does not end: an event is posted over and over")
    );
}
