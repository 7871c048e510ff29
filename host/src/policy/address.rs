//! Which address a socket address really reaches (issue 8 point 6).
//!
//! Several IPv6 forms carry an IPv4 address: a packet sent to one of them
//! ends up at (or is translated to) the IPv4 host. The policy therefore
//! checks such an address as the IPv4 address it embeds, so that an IPv6
//! grant such as `::/0` never reaches IPv4 hosts and an IPv4 grant means the
//! same in both families. Forms whose IPv4 address cannot be known from the
//! address alone are refused. [`effective`] is the one place that decides;
//! grants, multicast groups and the mechanism all go through it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// An IPv6 form that embeds an IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ipv4Embedding {
    /// IPv4-mapped `::ffff:0:0/96` (RFC 4291): the low 32 bits.
    Mapped,
    /// IPv4-compatible `::/96` except `::` and `::1` (RFC 4291,
    /// deprecated): the low 32 bits.
    Compatible,
    /// SIIT IPv4-translated `::ffff:0:0:0/96` (RFC 2765): the low 32 bits.
    Translated,
    /// NAT64 well-known prefix `64:ff9b::/96` (RFC 6052): the low 32 bits.
    Nat64WellKnown,
    /// NAT64 local-use prefix `64:ff9b:1::/48` (RFC 8215): refused, as
    /// where the IPv4 address sits depends on the operator's prefix length.
    Nat64LocalUse,
    /// 6to4 `2002::/16` (RFC 3056): bits 16..48.
    SixToFour,
    /// Teredo `2001::/32` (RFC 4380): refused, as the client address is
    /// obfuscated and the server address is not the destination.
    Teredo,
}

/// Where the IPv4 address of a form sits, if it can be known.
#[derive(Clone, Copy)]
enum Position {
    /// The address occupies the low 32 bits.
    Low32,
    /// The address occupies bits 16..48 (segments 1 and 2).
    Bits16To48,
    /// The address cannot be known from the IPv6 address alone.
    Unknown,
}

impl Position {
    /// The bit offset of the IPv4 address inside the IPv6 address.
    const fn offset(self) -> Option<u8> {
        match self {
            Position::Low32 => Some(96),
            Position::Bits16To48 => Some(16),
            Position::Unknown => None,
        }
    }
}

impl Ipv4Embedding {
    /// Every form, in the order [`effective`] tries them.
    pub const ALL: [Ipv4Embedding; 7] = [
        Ipv4Embedding::Mapped,
        Ipv4Embedding::Compatible,
        Ipv4Embedding::Translated,
        Ipv4Embedding::Nat64WellKnown,
        Ipv4Embedding::Nat64LocalUse,
        Ipv4Embedding::SixToFour,
        Ipv4Embedding::Teredo,
    ];

    /// What the form is called in messages ("NAT64 local-use prefix").
    pub const fn description(self) -> &'static str {
        match self {
            Ipv4Embedding::Mapped => "IPv4-mapped",
            Ipv4Embedding::Compatible => "IPv4-compatible",
            Ipv4Embedding::Translated => "SIIT IPv4-translated",
            Ipv4Embedding::Nat64WellKnown => "NAT64 well-known prefix",
            Ipv4Embedding::Nat64LocalUse => "NAT64 local-use prefix",
            Ipv4Embedding::SixToFour => "6to4",
            Ipv4Embedding::Teredo => "Teredo",
        }
    }

    /// The IPv6 block of the form.
    pub const fn prefix(self) -> Ipv6Net {
        let (segments, len) = match self {
            Ipv4Embedding::Mapped => ([0, 0, 0, 0, 0, 0xffff, 0, 0], 96),
            Ipv4Embedding::Compatible => ([0; 8], 96),
            Ipv4Embedding::Translated => ([0, 0, 0, 0, 0xffff, 0, 0, 0], 96),
            Ipv4Embedding::Nat64WellKnown => ([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96),
            Ipv4Embedding::Nat64LocalUse => ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
            Ipv4Embedding::SixToFour => ([0x2002, 0, 0, 0, 0, 0, 0, 0], 16),
            Ipv4Embedding::Teredo => ([0x2001, 0, 0, 0, 0, 0, 0, 0], 32),
        };
        let [a, b, c, d, e, f, g, h] = segments;
        Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, g, h), len)
    }

    /// Whether addresses of this form are refused rather than checked as
    /// the IPv4 address they embed.
    pub const fn is_refused(self) -> bool {
        matches!(self.position(), Position::Unknown)
    }

    const fn position(self) -> Position {
        match self {
            Ipv4Embedding::Mapped
            | Ipv4Embedding::Compatible
            | Ipv4Embedding::Translated
            | Ipv4Embedding::Nat64WellKnown => Position::Low32,
            Ipv4Embedding::SixToFour => Position::Bits16To48,
            Ipv4Embedding::Nat64LocalUse | Ipv4Embedding::Teredo => Position::Unknown,
        }
    }

    /// Whether `ip` is of this form. `::` and `::1` are not IPv4-compatible
    /// addresses (they are the unspecified and loopback addresses).
    fn holds(self, ip: Ipv6Addr) -> bool {
        self.prefix().contains(&ip)
            && !(self == Ipv4Embedding::Compatible && UNSPECIFIED_AND_LOOPBACK.contains(&ip))
    }

    /// The IPv4 address embedded at this form's position in `ip` (`None`
    /// for a refused form).
    fn extract(self, ip: Ipv6Addr) -> Option<Ipv4Addr> {
        let offset = self.position().offset()?;
        let bits = u128::from(ip) >> (96 - offset);
        // Only the 32 bits of the IPv4 address are kept (truncation intended).
        Some(Ipv4Addr::from((bits & u128::from(u32::MAX)) as u32))
    }
}

impl fmt::Display for Ipv4Embedding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// `::` and `::1`, which lie in the IPv4-compatible block but are not of
/// that form.
const UNSPECIFIED_AND_LOOPBACK: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::UNSPECIFIED, 127);

/// The address an IP address is checked as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Effective {
    /// An IPv4 address, given as such or embedded in an IPv6 form.
    V4(Ipv4Addr),
    /// An IPv6 address that embeds no IPv4 address.
    V6(Ipv6Addr),
    /// An IPv6 form that embeds an IPv4 address which cannot be known.
    Refused(Ipv4Embedding),
}

impl Effective {
    /// The address checked, or the form that is refused.
    pub fn ip(self) -> Result<IpAddr, Ipv4Embedding> {
        match self {
            Effective::V4(v4) => Ok(IpAddr::V4(v4)),
            Effective::V6(v6) => Ok(IpAddr::V6(v6)),
            Effective::Refused(form) => Err(form),
        }
    }
}

/// The embedding form of `ip`, if it has one.
pub fn embedding(ip: Ipv6Addr) -> Option<Ipv4Embedding> {
    Ipv4Embedding::ALL.into_iter().find(|form| form.holds(ip))
}

/// The address `ip` is checked as: IPv4 addresses as they are, IPv6 forms
/// embedding an IPv4 address as that address (or refused), other IPv6
/// addresses as they are.
pub fn effective(ip: IpAddr) -> Effective {
    match ip {
        IpAddr::V4(v4) => Effective::V4(v4),
        IpAddr::V6(v6) => match embedding(v6) {
            None => Effective::V6(v6),
            Some(form) => form
                .extract(v6)
                .map_or(Effective::Refused(form), Effective::V4),
        },
    }
}

/// The socket address `addr` is checked as: its [`effective`] address and
/// its port, without IPv6 scope id and flow information (they choose an
/// interface or label a flow, and must not change a grant decision).
pub fn checked(addr: SocketAddr) -> Result<SocketAddr, Ipv4Embedding> {
    effective(addr.ip())
        .ip()
        .map(|ip| SocketAddr::new(ip, addr.port()))
}

/// Whether `net` contains `ip` as checked: an embedded IPv4 address is
/// looked up as IPv4, and a refused form is in no block. Use it for every
/// address filter (grants, multicast source filters).
pub fn block_contains(net: &IpNet, ip: IpAddr) -> bool {
    effective(ip).ip().is_ok_and(|ip| net.contains(&ip))
}

/// The embedding form an IPv6 block lies in, if every address of the block
/// is of that form, with the IPv4 block it stands for (`None` for a
/// refused form). A grant on such a block would never match, as its
/// addresses are checked as IPv4 (or refused); the policy file refuses it.
pub fn embedded_block(net: Ipv6Net) -> Option<(Ipv4Embedding, Option<Ipv4Net>)> {
    let form = Ipv4Embedding::ALL.into_iter().find(|form| {
        form.prefix().contains(&net)
            // `::` and `::1` (`::/127`) are no IPv4-compatible addresses.
            && !(*form == Ipv4Embedding::Compatible && UNSPECIFIED_AND_LOOPBACK.contains(&net))
    })?;
    let v4 = form.position().offset().and_then(|offset| {
        let v4_len = net.prefix_len().saturating_sub(offset).min(32);
        let v4_addr = form.extract(net.network())?;
        Ipv4Net::new(v4_addr, v4_len).ok()
    });
    Some((form, v4))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn each_form_yields_its_ipv4_address_or_is_refused() {
        let cases = [
            ("::ffff:10.1.2.3", Effective::V4(Ipv4Addr::new(10, 1, 2, 3))),
            ("::10.1.2.3", Effective::V4(Ipv4Addr::new(10, 1, 2, 3))),
            (
                "::ffff:0:10.1.2.3",
                Effective::V4(Ipv4Addr::new(10, 1, 2, 3)),
            ),
            (
                "64:ff9b::10.1.2.3",
                Effective::V4(Ipv4Addr::new(10, 1, 2, 3)),
            ),
            (
                "64:ff9b:1::a01:203",
                Effective::Refused(Ipv4Embedding::Nat64LocalUse),
            ),
            (
                "2002:a01:203:5::9",
                Effective::V4(Ipv4Addr::new(10, 1, 2, 3)),
            ),
            (
                "2001:0:4136:e378:8000:63bf:f5fe:fdfc",
                Effective::Refused(Ipv4Embedding::Teredo),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(effective(IpAddr::V6(v6(text))), expected, "{text}");
        }
    }

    #[test]
    fn ordinary_ipv6_addresses_are_themselves() {
        for text in [
            "::",
            "::1",
            "fe80::1",
            "2001:db8::1",
            "64:ff9b:2::1",
            "ff02::1",
            "2003::1",
        ] {
            assert_eq!(effective(IpAddr::V6(v6(text))), Effective::V6(v6(text)));
        }
    }

    #[test]
    fn checked_address_keeps_the_port_and_drops_scope_and_flow() {
        let scoped = SocketAddr::V6(std::net::SocketAddrV6::new(v6("fe80::1"), 80, 9, 7));
        assert_eq!(checked(scoped), Ok("[fe80::1]:80".parse().unwrap()));
        let mapped = SocketAddr::V6(std::net::SocketAddrV6::new(v6("::ffff:1.2.3.4"), 5, 9, 7));
        assert_eq!(checked(mapped), Ok("1.2.3.4:5".parse().unwrap()));
        assert_eq!(
            checked("[2001::1]:5".parse().unwrap()),
            Err(Ipv4Embedding::Teredo)
        );
    }

    #[test]
    fn blocks_inside_a_form_name_the_ipv4_block() {
        let cases = [
            (
                "::ffff:10.0.0.0/104",
                Ipv4Embedding::Mapped,
                Some("10.0.0.0/8"),
            ),
            ("::ffff:0:0/96", Ipv4Embedding::Mapped, Some("0.0.0.0/0")),
            ("::/96", Ipv4Embedding::Compatible, Some("0.0.0.0/0")),
            ("::a00:0/104", Ipv4Embedding::Compatible, Some("10.0.0.0/8")),
            (
                "::a00:1/128",
                Ipv4Embedding::Compatible,
                Some("10.0.0.1/32"),
            ),
            (
                "64:ff9b::/96",
                Ipv4Embedding::Nat64WellKnown,
                Some("0.0.0.0/0"),
            ),
            (
                "2002:a00::/24",
                Ipv4Embedding::SixToFour,
                Some("10.0.0.0/8"),
            ),
            (
                "2002:a01:203:1::/64",
                Ipv4Embedding::SixToFour,
                Some("10.1.2.3/32"),
            ),
            ("64:ff9b:1::/48", Ipv4Embedding::Nat64LocalUse, None),
            ("2001::/32", Ipv4Embedding::Teredo, None),
        ];
        for (block, form, v4) in cases {
            let v4 = v4.map(|b| b.parse().unwrap());
            assert_eq!(
                embedded_block(block.parse().unwrap()),
                Some((form, v4)),
                "{block}"
            );
        }
        for block in [
            "::/0",
            "::/127",
            "::1/128",
            "::/128",
            "2000::/3",
            "2001:db8::/32",
            "fe80::/10",
        ] {
            assert_eq!(embedded_block(block.parse().unwrap()), None, "{block}");
        }
    }

    #[test]
    fn block_contains_looks_embedded_addresses_up_as_ipv4() {
        let v4_block: IpNet = "10.0.0.0/8".parse().unwrap();
        let v6_wide: IpNet = "::/0".parse().unwrap();
        let six_to_four = IpAddr::V6(v6("2002:a01:203::1"));
        assert!(block_contains(&v4_block, six_to_four));
        assert!(!block_contains(&v6_wide, six_to_four));
        let teredo = IpAddr::V6(v6("2001::1"));
        assert!(!block_contains(&v6_wide, teredo));
    }
}
