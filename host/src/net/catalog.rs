//! The protocol catalogue (`WSPEnumProtocols`, SPEC SO-9) and the argument
//! rules of `WSPSocket` (SPEC SO-2..SO-5, SO-8): which `(af, type,
//! protocol, flags)` a guest may ask for, and which error each mistake gets.

use bitflags::bitflags;

use crate::error::WsaError;
use crate::policy::Transport;

/// `AF_UNSPEC`: wildcard family (SPEC SO-4).
pub const AF_UNSPEC: i32 = 0;
/// `AF_INET`.
pub const AF_INET: i32 = 2;
/// `AF_INET6` (the Winsock value).
pub const AF_INET6: i32 = 23;
/// Wildcard socket type (SPEC SO-4).
pub const SOCK_ANY: i32 = 0;
/// `SOCK_STREAM`.
pub const SOCK_STREAM: i32 = 1;
/// `SOCK_DGRAM`.
pub const SOCK_DGRAM: i32 = 2;
/// `SOCK_RAW` (not offered, SPEC SO-8).
#[cfg(test)]
pub const SOCK_RAW: i32 = 3;
/// `SOCK_RDM` (not offered).
#[cfg(test)]
pub const SOCK_RDM: i32 = 4;
/// `SOCK_SEQPACKET` (not offered).
#[cfg(test)]
pub const SOCK_SEQPACKET: i32 = 5;
/// Wildcard protocol.
pub const IPPROTO_ANY: i32 = 0;
/// `IPPROTO_TCP`.
pub const IPPROTO_TCP: i32 = 6;
/// `IPPROTO_UDP`.
pub const IPPROTO_UDP: i32 = 17;
/// wasp's rooted multipoint protocol over TCP (an IANA protocol number for
/// experimentation): rooted control and data planes, connect data.
pub const IPPROTO_WASP_RMP: i32 = 253;
/// Largest caller or callee data of a rooted join (SPEC JL-7).
pub const MAX_CONNECT_DATA: usize = 4096;
/// `FROM_PROTOCOL_INFO`: take the value from the protocol-info argument.
pub const FROM_PROTOCOL_INFO: i32 = -1;
/// Largest UDP payload over IPv4 (`SO_MAX_MSG_SIZE`).
pub const UDP_MAX_MSG_SIZE_V4: u32 = 65_507;
/// Largest UDP payload over IPv6 (`SO_MAX_MSG_SIZE`).
pub const UDP_MAX_MSG_SIZE_V6: u32 = 65_527;

bitflags! {
    /// `XP1_*` service flags of a catalogue entry.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct ServiceFlags: u32 {
        /// XP1_CONNECTIONLESS.
        const CONNECTIONLESS = 1 << 0;
        /// XP1_GUARANTEED_DELIVERY.
        const GUARANTEED_DELIVERY = 1 << 1;
        /// XP1_GUARANTEED_ORDER.
        const GUARANTEED_ORDER = 1 << 2;
        /// XP1_MESSAGE_ORIENTED.
        const MESSAGE_ORIENTED = 1 << 3;
        /// XP1_GRACEFUL_CLOSE.
        const GRACEFUL_CLOSE = 1 << 4;
        /// XP1_EXPEDITED_DATA.
        const EXPEDITED_DATA = 1 << 5;
        /// XP1_CONNECT_DATA.
        const CONNECT_DATA = 1 << 6;
        /// XP1_SUPPORT_BROADCAST.
        const SUPPORT_BROADCAST = 1 << 7;
        /// XP1_SUPPORT_MULTIPOINT.
        const SUPPORT_MULTIPOINT = 1 << 8;
        /// XP1_MULTIPOINT_CONTROL_PLANE (rooted control plane).
        const MULTIPOINT_CONTROL_PLANE = 1 << 9;
        /// XP1_MULTIPOINT_DATA_PLANE (rooted data plane).
        const MULTIPOINT_DATA_PLANE = 1 << 10;
        /// XP1_QOS_SUPPORTED.
        const QOS_SUPPORTED = 1 << 11;
        /// XP1_PARTIAL_MESSAGE.
        const PARTIAL_MESSAGE = 1 << 12;
    }
}

bitflags! {
    /// `dwFlags` of `WSPSocket` (SPEC SO-3, SO-5).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
    pub struct SocketFlags: u32 {
        /// WSA_FLAG_OVERLAPPED.
        const OVERLAPPED = 1 << 0;
        /// WSA_FLAG_MULTIPOINT_C_ROOT.
        const MULTIPOINT_C_ROOT = 1 << 1;
        /// WSA_FLAG_MULTIPOINT_C_LEAF.
        const MULTIPOINT_C_LEAF = 1 << 2;
        /// WSA_FLAG_MULTIPOINT_D_ROOT.
        const MULTIPOINT_D_ROOT = 1 << 3;
        /// WSA_FLAG_MULTIPOINT_D_LEAF.
        const MULTIPOINT_D_LEAF = 1 << 4;
    }
}

/// Address family of a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// IPv4 (`AF_INET`).
    V4,
    /// IPv6 (`AF_INET6`).
    V6,
}

impl Family {
    /// The Winsock constant.
    pub const fn af(self) -> i32 {
        match self {
            Family::V4 => AF_INET,
            Family::V6 => AF_INET6,
        }
    }
}

/// Kind of socket: stream or datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketKind {
    /// `SOCK_STREAM`: connection-oriented (SPEC SO-6).
    Stream,
    /// `SOCK_DGRAM`: connectionless (SPEC SO-7).
    Datagram,
}

impl SocketKind {
    /// The Winsock constant.
    pub const fn socket_type(self) -> i32 {
        match self {
            SocketKind::Stream => SOCK_STREAM,
            SocketKind::Datagram => SOCK_DGRAM,
        }
    }
}

/// One catalogue entry (`WSAPROTOCOL_INFO`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolEntry {
    /// Catalogue entry identifier.
    pub id: u32,
    /// Address family.
    pub family: Family,
    /// Socket kind.
    pub kind: SocketKind,
    /// The transport the policy's `protocols` list names.
    pub transport: Transport,
    /// The `IPPROTO_*` value.
    pub protocol: i32,
    /// XP1_* flags.
    pub service_flags: ServiceFlags,
    /// SO_MAX_MSG_SIZE (0 for streams).
    pub max_msg_size: u32,
    /// Display name.
    pub name: &'static str,
}

impl ProtocolEntry {
    /// The `IPPROTO_*` value.
    pub const fn protocol(&self) -> i32 {
        self.protocol
    }

    /// Whether this is wasp's rooted multipoint protocol (SPEC JL-4).
    pub fn is_rooted(&self) -> bool {
        self.service_flags
            .contains(ServiceFlags::MULTIPOINT_CONTROL_PLANE)
    }
}

const TCP_FLAGS: ServiceFlags = ServiceFlags::GUARANTEED_DELIVERY
    .union(ServiceFlags::GUARANTEED_ORDER)
    .union(ServiceFlags::GRACEFUL_CLOSE)
    .union(ServiceFlags::EXPEDITED_DATA);
const RMP_FLAGS: ServiceFlags = ServiceFlags::GUARANTEED_DELIVERY
    .union(ServiceFlags::GUARANTEED_ORDER)
    .union(ServiceFlags::GRACEFUL_CLOSE)
    .union(ServiceFlags::CONNECT_DATA)
    .union(ServiceFlags::SUPPORT_MULTIPOINT)
    .union(ServiceFlags::MULTIPOINT_CONTROL_PLANE)
    .union(ServiceFlags::MULTIPOINT_DATA_PLANE);
const UDP_FLAGS: ServiceFlags = ServiceFlags::CONNECTIONLESS
    .union(ServiceFlags::MESSAGE_ORIENTED)
    .union(ServiceFlags::SUPPORT_BROADCAST)
    .union(ServiceFlags::SUPPORT_MULTIPOINT);

/// The host's catalogue, in preference order: the first entry matching
/// wildcard arguments is the one chosen (SPEC SO-4).
pub static CATALOG: [ProtocolEntry; 6] = [
    ProtocolEntry {
        id: 1001,
        family: Family::V4,
        kind: SocketKind::Stream,
        transport: Transport::Tcp,
        protocol: IPPROTO_TCP,
        service_flags: TCP_FLAGS,
        max_msg_size: 0,
        name: "wasp TCP/IPv4",
    },
    ProtocolEntry {
        id: 1002,
        family: Family::V4,
        kind: SocketKind::Datagram,
        transport: Transport::Udp,
        protocol: IPPROTO_UDP,
        service_flags: UDP_FLAGS,
        max_msg_size: UDP_MAX_MSG_SIZE_V4,
        name: "wasp UDP/IPv4",
    },
    ProtocolEntry {
        id: 1003,
        family: Family::V6,
        kind: SocketKind::Stream,
        transport: Transport::Tcp,
        protocol: IPPROTO_TCP,
        service_flags: TCP_FLAGS,
        max_msg_size: 0,
        name: "wasp TCP/IPv6",
    },
    ProtocolEntry {
        id: 1004,
        family: Family::V6,
        kind: SocketKind::Datagram,
        transport: Transport::Udp,
        protocol: IPPROTO_UDP,
        service_flags: UDP_FLAGS,
        max_msg_size: UDP_MAX_MSG_SIZE_V6,
        name: "wasp UDP/IPv6",
    },
    ProtocolEntry {
        id: 1005,
        family: Family::V4,
        kind: SocketKind::Stream,
        transport: Transport::Tcp,
        protocol: IPPROTO_WASP_RMP,
        service_flags: RMP_FLAGS,
        max_msg_size: 0,
        name: "wasp rooted multipoint/IPv4",
    },
    ProtocolEntry {
        id: 1006,
        family: Family::V6,
        kind: SocketKind::Stream,
        transport: Transport::Tcp,
        protocol: IPPROTO_WASP_RMP,
        service_flags: RMP_FLAGS,
        max_msg_size: 0,
        name: "wasp rooted multipoint/IPv6",
    },
];

/// The part of a guest's protocol-info argument that `WSPSocket` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolInfoArg {
    /// `iAddressFamily`.
    pub af: i32,
    /// `iSocketType`.
    pub socket_type: i32,
    /// `iProtocol`.
    pub protocol: i32,
    /// `dwCatalogEntryId`.
    pub catalog_entry_id: u32,
}

/// The arguments of `WSPSocket`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketRequest {
    /// `af`.
    pub af: i32,
    /// `type`.
    pub socket_type: i32,
    /// `protocol`.
    pub protocol: i32,
    /// `lpProtocolInfo`.
    pub info: Option<ProtocolInfoArg>,
    /// `g`: must be 0.
    pub group: u32,
    /// `dwFlags`.
    pub flags: SocketFlags,
}

/// Resolves a `WSPSocket` request to the catalogue entry it names, or the
/// Winsock error the arguments deserve (SPEC SO-2, SO-4, SO-5, SO-8).
pub fn resolve(req: &SocketRequest) -> Result<&'static ProtocolEntry, WsaError> {
    // SO-2: groups are reserved, only 0 is valid.
    if req.group != 0 {
        return Err(WsaError::Inval);
    }
    // SO-4: FROM_PROTOCOL_INFO takes the value from the protocol-info.
    let uses_info = [req.af, req.socket_type, req.protocol].contains(&FROM_PROTOCOL_INFO);
    let info = match (&req.info, uses_info) {
        (None, true) => return Err(WsaError::Fault),
        (Some(info), _) => {
            if !CATALOG.iter().any(|e| e.id == info.catalog_entry_id) {
                return Err(WsaError::Inval);
            }
            Some(info)
        }
        (None, false) => None,
    };
    // A value taken from the info must name something: a wildcard there is
    // refused with the error of that argument, never resolved from the
    // catalogue's defaults.
    let pick =
        |value: i32, from_info: fn(&ProtocolInfoArg) -> i32, wildcard, error| match (value, info) {
            (FROM_PROTOCOL_INFO, Some(info)) if from_info(info) == wildcard => Err(error),
            (FROM_PROTOCOL_INFO, Some(info)) => Ok(from_info(info)),
            (value, _) => Ok(value),
        };
    let af = pick(req.af, |i| i.af, AF_UNSPEC, WsaError::AfNoSupport)?;
    let socket_type = pick(
        req.socket_type,
        |i| i.socket_type,
        SOCK_ANY,
        WsaError::SocktNoSupport,
    )?;
    let protocol = pick(
        req.protocol,
        |i| i.protocol,
        IPPROTO_ANY,
        WsaError::ProtoNoSupport,
    )?;

    let family = match af {
        AF_UNSPEC => None,
        AF_INET => Some(Family::V4),
        AF_INET6 => Some(Family::V6),
        _ => return Err(WsaError::AfNoSupport),
    };
    let kind = match socket_type {
        SOCK_ANY => None,
        SOCK_STREAM => Some(SocketKind::Stream),
        SOCK_DGRAM => Some(SocketKind::Datagram),
        // SO-8: raw sockets are optional and not offered; neither are
        // RDM and SEQPACKET, nor unknown types.
        _ => return Err(WsaError::SocktNoSupport),
    };
    let protocol = match protocol {
        IPPROTO_ANY => None,
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_WASP_RMP => Some(protocol),
        _ => return Err(WsaError::ProtoNoSupport),
    };
    // SO-2: a protocol of the wrong type for the socket type.
    if let (Some(kind), Some(protocol)) = (kind, protocol) {
        let natural = if protocol == IPPROTO_UDP {
            SocketKind::Datagram
        } else {
            SocketKind::Stream
        };
        if kind != natural {
            return Err(WsaError::ProtoType);
        }
    }
    let entry = CATALOG
        .iter()
        .find(|e| {
            family.is_none_or(|f| e.family == f)
                && kind.is_none_or(|k| e.kind == k)
                && protocol.is_none_or(|p| e.protocol == p)
        })
        .ok_or(WsaError::ProtoNoSupport)?;
    check_multipoint_flags(req.flags, entry.service_flags)?;
    Ok(entry)
}

/// SPEC SO-5: a multipoint socket has exactly one C_ flag and one D_ flag,
/// roots only where the protocol's planes are rooted, leaves only where it
/// supports multipoint; anything else is `WSAEINVAL`.
pub fn check_multipoint_flags(flags: SocketFlags, service: ServiceFlags) -> Result<(), WsaError> {
    let c_root = flags.contains(SocketFlags::MULTIPOINT_C_ROOT);
    let c_leaf = flags.contains(SocketFlags::MULTIPOINT_C_LEAF);
    let d_root = flags.contains(SocketFlags::MULTIPOINT_D_ROOT);
    let d_leaf = flags.contains(SocketFlags::MULTIPOINT_D_LEAF);
    if !(c_root || c_leaf || d_root || d_leaf) {
        return Ok(());
    }
    let valid = service.contains(ServiceFlags::SUPPORT_MULTIPOINT)
        && (c_root != c_leaf)
        && (d_root != d_leaf)
        && (!c_root || service.contains(ServiceFlags::MULTIPOINT_CONTROL_PLANE))
        && (!d_root || service.contains(ServiceFlags::MULTIPOINT_DATA_PLANE));
    if valid { Ok(()) } else { Err(WsaError::Inval) }
}

/// Catalogue entries whose protocol is in `protocols` (all when `None`).
pub fn enumerate(protocols: Option<&[i32]>) -> impl Iterator<Item = &'static ProtocolEntry> {
    let wanted = protocols.map(<[i32]>::to_vec);
    CATALOG
        .iter()
        .filter(move |e| wanted.as_ref().is_none_or(|w| w.contains(&e.protocol())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(af: i32, socket_type: i32, protocol: i32) -> SocketRequest {
        SocketRequest {
            af,
            socket_type,
            protocol,
            info: None,
            group: 0,
            flags: SocketFlags::empty(),
        }
    }

    fn id(r: SocketRequest) -> Result<u32, WsaError> {
        resolve(&r).map(|e| e.id)
    }

    #[test]
    fn so_4_wildcards_resolve_from_the_catalogue() {
        assert_eq!(id(req(0, 0, 0)), Ok(1001));
        assert_eq!(id(req(0, SOCK_DGRAM, 0)), Ok(1002));
        assert_eq!(id(req(AF_INET6, 0, IPPROTO_UDP)), Ok(1004));
        assert_eq!(id(req(0, 0, IPPROTO_UDP)), Ok(1002));
        assert_eq!(id(req(AF_INET6, SOCK_STREAM, 0)), Ok(1003));
    }

    #[test]
    fn so_4_from_protocol_info_takes_its_values() {
        let mut r = req(FROM_PROTOCOL_INFO, FROM_PROTOCOL_INFO, FROM_PROTOCOL_INFO);
        r.info = Some(ProtocolInfoArg {
            af: AF_INET6,
            socket_type: SOCK_DGRAM,
            protocol: IPPROTO_UDP,
            catalog_entry_id: 1004,
        });
        assert_eq!(id(r), Ok(1004));
        r.info = None;
        assert_eq!(id(r), Err(WsaError::Fault));
        r.info = Some(ProtocolInfoArg {
            af: AF_INET,
            socket_type: SOCK_STREAM,
            protocol: IPPROTO_TCP,
            catalog_entry_id: 77,
        });
        assert_eq!(id(r), Err(WsaError::Inval));
    }

    #[test]
    fn so_4_values_taken_from_the_info_are_never_wildcards() {
        let info = |af, socket_type, protocol| ProtocolInfoArg {
            af,
            socket_type,
            protocol,
            catalog_entry_id: 1001,
        };
        let from = |af, socket_type, protocol, i| SocketRequest {
            info: Some(i),
            ..req(af, socket_type, protocol)
        };
        let any = FROM_PROTOCOL_INFO;
        assert_eq!(
            id(from(any, any, any, info(0, 1, 6))),
            Err(WsaError::AfNoSupport)
        );
        assert_eq!(
            id(from(any, any, any, info(99, 1, 6))),
            Err(WsaError::AfNoSupport)
        );
        assert_eq!(
            id(from(2, any, 6, info(2, 0, 6))),
            Err(WsaError::SocktNoSupport)
        );
        assert_eq!(
            id(from(2, 1, any, info(2, 1, 0))),
            Err(WsaError::ProtoNoSupport)
        );
        // Wildcards given as arguments still resolve; the info then only
        // names the provider.
        assert_eq!(id(from(0, 0, 0, info(0, 0, 0))), Ok(1001));
    }

    #[test]
    fn so_2_each_bad_argument_has_its_own_code() {
        assert_eq!(id(req(99, SOCK_STREAM, 0)), Err(WsaError::AfNoSupport));
        assert_eq!(id(req(AF_INET, 42, 0)), Err(WsaError::SocktNoSupport));
        assert_eq!(
            id(req(AF_INET, SOCK_STREAM, 132)),
            Err(WsaError::ProtoNoSupport)
        );
        assert_eq!(
            id(req(AF_INET, SOCK_STREAM, IPPROTO_UDP)),
            Err(WsaError::ProtoType)
        );
        assert_eq!(
            id(req(AF_INET, SOCK_DGRAM, IPPROTO_TCP)),
            Err(WsaError::ProtoType)
        );
        let mut grouped = req(AF_INET, SOCK_STREAM, 0);
        grouped.group = 1;
        assert_eq!(id(grouped), Err(WsaError::Inval));
    }

    #[test]
    fn so_8_raw_and_other_types_are_not_offered() {
        for t in [SOCK_RAW, SOCK_RDM, SOCK_SEQPACKET] {
            assert_eq!(id(req(AF_INET, t, 0)), Err(WsaError::SocktNoSupport));
        }
    }

    #[test]
    fn so_5_multipoint_flags_follow_the_catalogue() {
        let leafs = SocketFlags::MULTIPOINT_C_LEAF | SocketFlags::MULTIPOINT_D_LEAF;
        let mut udp = req(AF_INET, SOCK_DGRAM, 0);
        udp.flags = leafs;
        assert_eq!(id(udp), Ok(1002));
        // Rooted planes are not offered by UDP.
        udp.flags = SocketFlags::MULTIPOINT_C_ROOT | SocketFlags::MULTIPOINT_D_LEAF;
        assert_eq!(id(udp), Err(WsaError::Inval));
        // Exactly one C_ and one D_ flag.
        udp.flags = SocketFlags::MULTIPOINT_C_LEAF;
        assert_eq!(id(udp), Err(WsaError::Inval));
        udp.flags = leafs | SocketFlags::MULTIPOINT_C_ROOT;
        assert_eq!(id(udp), Err(WsaError::Inval));
        // TCP does not support multipoint at all.
        let mut tcp = req(AF_INET, SOCK_STREAM, 0);
        tcp.flags = leafs;
        assert_eq!(id(tcp), Err(WsaError::Inval));
        // Overlapped alone is not a multipoint flag.
        tcp.flags = SocketFlags::OVERLAPPED;
        assert_eq!(id(tcp), Ok(1001));
    }

    #[test]
    fn so_5_rooted_multipoint_takes_root_and_leaf_flags() {
        use SocketFlags as F;
        let mut rmp = req(AF_INET, SOCK_STREAM, IPPROTO_WASP_RMP);
        assert_eq!(id(rmp), Ok(1005));
        rmp.flags = F::MULTIPOINT_C_ROOT | F::MULTIPOINT_D_ROOT;
        assert_eq!(id(rmp), Ok(1005));
        rmp.flags = F::MULTIPOINT_C_LEAF | F::MULTIPOINT_D_LEAF;
        assert_eq!(id(rmp), Ok(1005));
        rmp.flags = F::MULTIPOINT_C_ROOT | F::MULTIPOINT_C_LEAF | F::MULTIPOINT_D_ROOT;
        assert_eq!(id(rmp), Err(WsaError::Inval));
        assert_eq!(
            id(req(AF_INET, SOCK_DGRAM, IPPROTO_WASP_RMP)),
            Err(WsaError::ProtoType)
        );
        // Wildcards still pick TCP first.
        assert_eq!(id(req(AF_INET, SOCK_STREAM, 0)), Ok(1001));
    }

    #[test]
    fn so_9_enumerate_filters_by_protocol() {
        assert_eq!(enumerate(None).count(), 6);
        let udp: Vec<_> = enumerate(Some(&[IPPROTO_UDP])).map(|e| e.id).collect();
        assert_eq!(udp, [1002, 1004]);
    }
}
