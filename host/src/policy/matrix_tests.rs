//! The deny matrix, policy-decision part (issue 8, "a deny matrix generated
//! from one table"): every operation × address class × grant state, each
//! cell asserting `Ok` or the exact [`Denial`] and its reason's name.
//!
//! The facts about each address — what it is checked as, whether the
//! matrix's grants cover it — are written by hand in [`CLASSES`]; the
//! expected outcome follows from them by the few rules of [`expected`], not
//! from the code under test. Only policy decisions are made here (no
//! sockets), so addresses off this machine are fine.

use std::net::SocketAddr;
use std::ops::RangeInclusive;

use self::Checked::{As, Refused};
use super::{Denial, Destination, Ipv4Embedding, MulticastGrant, NetUse, Policy, Transport};

/// The ports of every grant in the matrix.
const PORTS: RangeInclusive<u16> = 1000..=2000;

/// The blocks of the unicast grants: two ordinary blocks, and the whole
/// multicast space (so that a `connect` or `send-to` grant covers every
/// group, which must not be enough to reach one).
const UNICAST_BLOCKS: [&str; 4] = ["10.0.0.0/8", "2001:db8::/32", "224.0.0.0/4", "ff00::/8"];

/// The groups of the multicast grants.
const GROUP_BLOCKS: [&str; 2] = ["239.1.0.0/16", "ff15::/16"];

/// The TTL ceiling of the multicast grants.
const CEILING: u8 = 1;

/// What an address is checked as.
#[derive(Clone, Copy)]
enum Checked {
    /// This socket address.
    As(&'static str),
    /// Refused, as an IPv4-embedding form whose IPv4 address is unknown.
    Refused(Ipv4Embedding),
}

/// One address class of the matrix.
struct Class {
    /// What the class is.
    name: &'static str,
    /// The address the guest passes.
    addr: &'static str,
    /// What the policy must check it as.
    checked: Checked,
    /// Whether [`UNICAST_BLOCKS`] and [`PORTS`] cover the checked address.
    in_unicast_grant: bool,
    /// Whether [`GROUP_BLOCKS`] and [`PORTS`] cover the checked address.
    in_group_grant: bool,
}

const fn class(
    name: &'static str,
    addr: &'static str,
    checked: Checked,
    in_unicast_grant: bool,
    in_group_grant: bool,
) -> Class {
    Class {
        name,
        addr,
        checked,
        in_unicast_grant,
        in_group_grant,
    }
}

/// The address classes: name, address, what it is checked as, whether the
/// unicast grants cover it, whether the multicast grants cover it.
#[rustfmt::skip]
const CLASSES: &[Class] = &[
    // Granted, and just outside the blocks.
    class("granted IPv4", "10.1.2.3:1500", As("10.1.2.3:1500"), true, false),
    class("granted IPv6", "[2001:db8::5]:1500", As("[2001:db8::5]:1500"), true, false),
    class("granted IPv6 with a scope id", "[2001:db8::5%3]:1500", As("[2001:db8::5]:1500"), true, false),
    class("link-local with a scope id", "[fe80::1%7]:1500", As("[fe80::1]:1500"), false, false),
    class("IPv4 just below the block", "9.255.255.255:1500", As("9.255.255.255:1500"), false, false),
    class("IPv4 just above the block", "11.0.0.0:1500", As("11.0.0.0:1500"), false, false),
    class("IPv6 just below the block", "[2001:db7:ffff:ffff:ffff:ffff:ffff:ffff]:1500", As("[2001:db7:ffff:ffff:ffff:ffff:ffff:ffff]:1500"), false, false),
    class("IPv6 just above the block", "[2001:db9::]:1500", As("[2001:db9::]:1500"), false, false),
    // Port edges.
    class("lowest granted port", "10.1.2.3:1000", As("10.1.2.3:1000"), true, false),
    class("one below the lowest port", "10.1.2.3:999", As("10.1.2.3:999"), false, false),
    class("highest granted port", "[2001:db8::5]:2000", As("[2001:db8::5]:2000"), true, false),
    class("one past the highest port", "[2001:db8::5]:2001", As("[2001:db8::5]:2001"), false, false),
    class("port 0", "10.1.2.3:0", As("10.1.2.3:0"), false, false),
    class("unspecified IPv4, port 0", "0.0.0.0:0", As("0.0.0.0:0"), false, false),
    // Loopback, cloud metadata, unspecified.
    class("IPv4 loopback", "127.0.0.1:1500", As("127.0.0.1:1500"), false, false),
    class("IPv6 loopback", "[::1]:1500", As("[::1]:1500"), false, false),
    class("IPv4 cloud metadata", "169.254.169.254:1500", As("169.254.169.254:1500"), false, false),
    class("IPv6 cloud metadata", "[fd00:ec2::254]:1500", As("[fd00:ec2::254]:1500"), false, false),
    class("unspecified IPv4", "0.0.0.0:1500", As("0.0.0.0:1500"), false, false),
    class("unspecified IPv6", "[::]:1500", As("[::]:1500"), false, false),
    // Every IPv4-in-IPv6 form of a granted IPv4 address.
    class("IPv4-mapped granted", "[::ffff:10.1.2.3]:1500", As("10.1.2.3:1500"), true, false),
    class("IPv4-compatible granted", "[::10.1.2.3]:1500", As("10.1.2.3:1500"), true, false),
    class("SIIT granted", "[::ffff:0:10.1.2.3]:1500", As("10.1.2.3:1500"), true, false),
    class("NAT64 well-known granted", "[64:ff9b::10.1.2.3]:1500", As("10.1.2.3:1500"), true, false),
    class("NAT64 local-use granted", "[64:ff9b:1::a01:203]:1500", Refused(Ipv4Embedding::Nat64LocalUse), false, false),
    class("6to4 granted", "[2002:a01:203::1]:1500", As("10.1.2.3:1500"), true, false),
    class("Teredo", "[2001:0:4136:e378:8000:63bf:f5fe:fdfc]:1500", Refused(Ipv4Embedding::Teredo), false, false),
    // ... and of IPv4 addresses no grant covers.
    class("IPv4-mapped loopback", "[::ffff:127.0.0.1]:1500", As("127.0.0.1:1500"), false, false),
    class("IPv4-compatible loopback", "[::127.0.0.1]:1500", As("127.0.0.1:1500"), false, false),
    class("SIIT metadata", "[::ffff:0:169.254.169.254]:1500", As("169.254.169.254:1500"), false, false),
    class("NAT64 well-known metadata", "[64:ff9b::169.254.169.254]:1500", As("169.254.169.254:1500"), false, false),
    class("NAT64 local-use metadata", "[64:ff9b:1::a9fe:a9fe]:1500", Refused(Ipv4Embedding::Nat64LocalUse), false, false),
    class("6to4 loopback", "[2002:7f00:1::]:1500", As("127.0.0.1:1500"), false, false),
    class("6to4 metadata", "[2002:a9fe:a9fe:1::1]:1500", As("169.254.169.254:1500"), false, false),
    class("Teredo with loopback bits", "[2001::7f00:1]:1500", Refused(Ipv4Embedding::Teredo), false, false),
    // Multicast inside and outside the multicast grants.
    class("IPv4 group granted", "239.1.2.3:1500", As("239.1.2.3:1500"), true, true),
    class("IPv6 group granted", "[ff15::1]:1500", As("[ff15::1]:1500"), true, true),
    class("IPv4 group not granted", "239.2.0.1:1500", As("239.2.0.1:1500"), true, false),
    class("IPv6 group not granted", "[ff02::1]:1500", As("[ff02::1]:1500"), true, false),
    class("granted group, port past the range", "239.1.2.3:2001", As("239.1.2.3:2001"), false, false),
    class("IPv4-mapped granted group", "[::ffff:239.1.2.3]:1500", As("239.1.2.3:1500"), true, true),
    class("NAT64 granted group", "[64:ff9b::239.1.2.3]:1500", As("239.1.2.3:1500"), true, true),
    class("6to4 group not granted", "[2002:e002:1::]:1500", As("224.2.0.1:1500"), true, false),
    // Broadcast, limited and subnet-directed.
    class("limited broadcast", "255.255.255.255:1500", As("255.255.255.255:1500"), false, false),
    class("subnet broadcast", "10.255.255.255:1500", As("10.255.255.255:1500"), true, false),
    class("IPv4-mapped subnet broadcast", "[::ffff:10.255.255.255]:1500", As("10.255.255.255:1500"), true, false),
    class("6to4 limited broadcast", "[2002:ffff:ffff::]:1500", As("255.255.255.255:1500"), false, false),
];

/// An operation whose policy decision the matrix checks.
#[derive(Clone, Copy)]
enum Op {
    /// [`Policy::check`] for a use (bind, listen, the accept and recv-from
    /// filters).
    Check(NetUse),
    /// [`Policy::check_destination`] (connect, send-to; to a group this is
    /// the multicast connect and send).
    Destination(NetUse),
    /// [`Policy::check_broadcast`].
    Broadcast,
    /// [`Policy::check_multicast`] (join-leaf).
    Join,
    /// A join, then [`MulticastGrant::check_ttl`] one above the ceiling.
    TtlAboveCeiling,
    /// A join, then [`MulticastGrant::check_ttl`] at the ceiling.
    TtlAtCeiling,
}

/// The operations, with the reason name of their address denial.
const OPS: [(Op, &str); 10] = [
    (Op::Check(NetUse::Bind), "address:bind"),
    (Op::Check(NetUse::Listen), "address:listen"),
    (Op::Check(NetUse::Accept), "address:accept"),
    (Op::Check(NetUse::RecvFrom), "address:recv-from"),
    (Op::Destination(NetUse::Connect), "address:connect"),
    (Op::Destination(NetUse::SendTo), "address:send-to"),
    (Op::Broadcast, "address:broadcast"),
    (Op::Join, "-"),
    (Op::TtlAboveCeiling, "-"),
    (Op::TtlAtCeiling, "-"),
];

impl Op {
    /// The use whose grants authorise the operation on a unicast address.
    fn net_use(self) -> Option<NetUse> {
        match self {
            Op::Check(net_use) | Op::Destination(net_use) => Some(net_use),
            Op::Broadcast => Some(NetUse::Broadcast),
            Op::Join | Op::TtlAboveCeiling | Op::TtlAtCeiling => None,
        }
    }

    /// Asks the policy; `Ok(true)` when a multicast grant allowed it.
    fn run(self, policy: &Policy, addr: SocketAddr) -> Result<bool, Denial> {
        match self {
            Op::Check(net_use) => policy.check(net_use, addr).map(|()| false),
            Op::Destination(net_use) => policy
                .check_destination(net_use, addr)
                .map(|d| matches!(d, Destination::Multicast(_))),
            Op::Broadcast => policy.check_broadcast(addr).map(|()| false),
            Op::Join => policy.check_multicast(addr).map(|_| true),
            Op::TtlAboveCeiling => policy
                .check_multicast(addr)
                .and_then(|grant| grant.check_ttl(CEILING + 1))
                .map(|()| true),
            Op::TtlAtCeiling => policy
                .check_multicast(addr)
                .and_then(|grant| grant.check_ttl(CEILING))
                .map(|()| true),
        }
    }
}

/// What the policy holds in a cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GrantState {
    /// The operation's grants: its use on [`UNICAST_BLOCKS`] and the
    /// multicast grants on [`GROUP_BLOCKS`].
    Granted,
    /// Nothing.
    NotGranted,
    /// Every other use on [`UNICAST_BLOCKS`] (every use for a join), and no
    /// multicast grant.
    OtherUseOnly,
}

const GRANT_STATES: [GrantState; 3] = [
    GrantState::Granted,
    GrantState::NotGranted,
    GrantState::OtherUseOnly,
];

fn sa(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// The policy of `state` for `op`.
fn policy_for(op: Op, state: GrantState) -> Policy {
    let uses: Vec<NetUse> = match state {
        GrantState::Granted => op.net_use().into_iter().collect(),
        GrantState::NotGranted => Vec::new(),
        GrantState::OtherUseOnly => NetUse::ALL
            .into_iter()
            .filter(|&u| Some(u) != op.net_use())
            .collect(),
    };
    let mut builder = Policy::builder();
    for net_use in uses {
        for block in UNICAST_BLOCKS {
            builder = builder.grant(net_use, block.parse().unwrap(), PORTS);
        }
    }
    if state == GrantState::Granted {
        for block in GROUP_BLOCKS {
            let mut grant = MulticastGrant::loopback(block.parse().unwrap(), PORTS);
            grant.max_ttl = CEILING;
            builder = builder.grant_multicast(grant);
        }
    }
    builder.build()
}

/// The outcome the rules give for a cell, and the reason name of its
/// denial.
fn expected(
    (op, address_reason): (Op, &'static str),
    class: &Class,
    state: GrantState,
) -> Result<bool, (Denial, &'static str)> {
    let checked = match class.checked {
        // Refused whatever the grants.
        Refused(form) => {
            let denial = Denial::EmbeddedIpv4 {
                addr: sa(class.addr),
                form,
            };
            return Err((denial, "embedded-ipv4"));
        }
        As(text) => sa(text),
    };
    let granted = state == GrantState::Granted;
    let through_group = match op {
        Op::Join | Op::TtlAboveCeiling | Op::TtlAtCeiling => true,
        Op::Destination(_) => checked.ip().is_multicast(),
        Op::Check(_) | Op::Broadcast => false,
    };
    if through_group {
        // A group needs a multicast grant, whatever else is granted.
        if !(granted && class.in_group_grant) {
            return Err((Denial::Multicast(checked), "multicast"));
        }
        if let Op::TtlAboveCeiling = op {
            let denial = Denial::MulticastTtl {
                asked: CEILING + 1,
                ceiling: CEILING,
            };
            return Err((denial, "multicast-ttl"));
        }
        return Ok(true);
    }
    if granted && class.in_unicast_grant {
        return Ok(false);
    }
    let net_use = op.net_use().expect("a unicast operation has a use");
    let denial = Denial::Address {
        net_use,
        addr: checked,
    };
    Err((denial, address_reason))
}

#[test]
fn every_cell_of_the_deny_matrix_decides_as_the_table_says() {
    let mut cells = 0;
    let mut wrong = Vec::new();
    for op in OPS {
        for state in GRANT_STATES {
            let policy = policy_for(op.0, state);
            for class in CLASSES {
                cells += 1;
                let actual = op.0.run(&policy, sa(class.addr));
                let actual_reason = actual.as_ref().err().map(|d| d.reason().name());
                let want = expected(op, class, state);
                let want_reason = want.as_ref().err().map(|(_, reason)| *reason);
                if actual != want.clone().map_err(|(denial, _)| denial)
                    || actual_reason != want_reason
                {
                    wrong.push(format!(
                        "{} / {} ({}) / {state:?}: got {actual:?} ({actual_reason:?}), want {want:?}",
                        op.1, class.name, class.addr
                    ));
                }
            }
        }
    }
    for transport in [Transport::Tcp, Transport::Udp] {
        let other = match transport {
            Transport::Tcp => Transport::Udp,
            Transport::Udp => Transport::Tcp,
        };
        for state in GRANT_STATES {
            cells += 1;
            let policy = match state {
                GrantState::Granted => Policy::builder().allow_protocol(transport).build(),
                GrantState::NotGranted => Policy::deny_all(),
                GrantState::OtherUseOnly => Policy::builder().allow_protocol(other).build(),
            };
            let actual = policy.check_protocol(transport);
            let want = match state {
                GrantState::Granted => Ok(()),
                _ => Err(Denial::Protocol(transport)),
            };
            let reason = actual.as_ref().err().map(|d| d.reason().name());
            if actual != want || (want.is_err() && reason != Some("protocol")) {
                wrong.push(format!(
                    "protocol {transport} / {state:?}: got {actual:?} ({reason:?}), want {want:?}"
                ));
            }
        }
    }
    assert!(cells >= 300, "only {cells} cells");
    assert!(
        wrong.is_empty(),
        "{} of {cells} cells wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn the_table_is_consistent_with_itself() {
    // Each class's address parses, and a class in the multicast grants is
    // a group in the unicast grants' multicast blocks too.
    for class in CLASSES {
        let addr = sa(class.addr);
        if let As(checked) = class.checked {
            let checked = sa(checked);
            assert_eq!(addr.port(), checked.port(), "{}", class.name);
            assert!(
                !class.in_group_grant || checked.ip().is_multicast(),
                "{}",
                class.name
            );
            assert!(
                !class.in_group_grant || class.in_unicast_grant,
                "{}",
                class.name
            );
        } else {
            assert!(
                !class.in_unicast_grant && !class.in_group_grant,
                "{}",
                class.name
            );
        }
    }
}
