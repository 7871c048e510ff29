//! Glue for `wasp:spi/types`: conversions between WIT values and the
//! mechanism's Rust types. Decides nothing.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::WaspCtxView;
use crate::bindings::types::{
    self, ErrorCode, FdEvents as WitFdEvents, Ipv4SocketAddress, Ipv6SocketAddress, MessageFlags,
    ProtocolInfo, ServiceFlags as WitServiceFlags, SocketAddress, SocketFlags as WitSocketFlags,
};
use crate::error::WsaError;
use crate::net::catalog::{ProtocolEntry, ProtocolInfoArg, ServiceFlags, SocketFlags};
use crate::net::select::FdEvents;
use crate::net::{Flowspec, MsgFlags, Qos, ServiceType};

impl types::Host for WaspCtxView<'_> {}

impl From<WsaError> for ErrorCode {
    fn from(e: WsaError) -> Self {
        use WsaError as W;
        match e {
            W::InvalidHandle => ErrorCode::WsaInvalidHandle,
            W::OperationAborted => ErrorCode::WsaOperationAborted,
            W::IoIncomplete => ErrorCode::WsaIoIncomplete,
            W::IoPending => ErrorCode::WsaIoPending,
            W::Intr => ErrorCode::Wsaeintr,
            W::Acces => ErrorCode::Wsaeacces,
            W::Fault => ErrorCode::Wsaefault,
            W::Inval => ErrorCode::Wsaeinval,
            W::Mfile => ErrorCode::Wsaemfile,
            W::WouldBlock => ErrorCode::Wsaewouldblock,
            W::InProgress => ErrorCode::Wsaeinprogress,
            W::Already => ErrorCode::Wsaealready,
            W::NotSock => ErrorCode::Wsaenotsock,
            W::DestAddrReq => ErrorCode::Wsaedestaddrreq,
            W::MsgSize => ErrorCode::Wsaemsgsize,
            W::ProtoType => ErrorCode::Wsaeprototype,
            W::NoProtoOpt => ErrorCode::Wsaenoprotoopt,
            W::ProtoNoSupport => ErrorCode::Wsaeprotonosupport,
            W::SocktNoSupport => ErrorCode::Wsaesocktnosupport,
            W::OpNotSupp => ErrorCode::Wsaeopnotsupp,
            W::PfNoSupport => ErrorCode::Wsaepfnosupport,
            W::AfNoSupport => ErrorCode::Wsaeafnosupport,
            W::AddrInUse => ErrorCode::Wsaeaddrinuse,
            W::AddrNotAvail => ErrorCode::Wsaeaddrnotavail,
            W::NetDown => ErrorCode::Wsaenetdown,
            W::NetUnreach => ErrorCode::Wsaenetunreach,
            W::NetReset => ErrorCode::Wsaenetreset,
            W::ConnAborted => ErrorCode::Wsaeconnaborted,
            W::ConnReset => ErrorCode::Wsaeconnreset,
            W::NoBufs => ErrorCode::Wsaenobufs,
            W::IsConn => ErrorCode::Wsaeisconn,
            W::NotConn => ErrorCode::Wsaenotconn,
            W::Shutdown => ErrorCode::Wsaeshutdown,
            W::TimedOut => ErrorCode::Wsaetimedout,
            W::ConnRefused => ErrorCode::Wsaeconnrefused,
            W::HostUnreach => ErrorCode::Wsaehostunreach,
        }
    }
}

/// A WIT address as a Rust one.
pub fn socket_addr(addr: SocketAddress) -> SocketAddr {
    match addr {
        SocketAddress::Ipv4(a) => {
            let (o0, o1, o2, o3) = a.address;
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(o0, o1, o2, o3), a.port))
        }
        SocketAddress::Ipv6(a) => {
            let (g0, g1, g2, g3, g4, g5, g6, g7) = a.address;
            let ip = Ipv6Addr::new(g0, g1, g2, g3, g4, g5, g6, g7);
            SocketAddr::V6(SocketAddrV6::new(ip, a.port, a.flow_info, a.scope_id))
        }
    }
}

/// A Rust address as a WIT one.
pub fn wit_addr(addr: SocketAddr) -> SocketAddress {
    match addr {
        SocketAddr::V4(a) => {
            let [o0, o1, o2, o3] = a.ip().octets();
            SocketAddress::Ipv4(Ipv4SocketAddress {
                port: a.port(),
                address: (o0, o1, o2, o3),
            })
        }
        SocketAddr::V6(a) => {
            let [g0, g1, g2, g3, g4, g5, g6, g7] = a.ip().segments();
            SocketAddress::Ipv6(Ipv6SocketAddress {
                port: a.port(),
                flow_info: a.flowinfo(),
                address: (g0, g1, g2, g3, g4, g5, g6, g7),
                scope_id: a.scope_id(),
            })
        }
    }
}

/// WIT `socket-flags` as the mechanism's flags.
pub fn socket_flags(flags: WitSocketFlags) -> SocketFlags {
    let mut out = SocketFlags::empty();
    out.set(
        SocketFlags::OVERLAPPED,
        flags.contains(WitSocketFlags::OVERLAPPED),
    );
    out.set(
        SocketFlags::MULTIPOINT_C_ROOT,
        flags.contains(WitSocketFlags::MULTIPOINT_C_ROOT),
    );
    out.set(
        SocketFlags::MULTIPOINT_C_LEAF,
        flags.contains(WitSocketFlags::MULTIPOINT_C_LEAF),
    );
    out.set(
        SocketFlags::MULTIPOINT_D_ROOT,
        flags.contains(WitSocketFlags::MULTIPOINT_D_ROOT),
    );
    out.set(
        SocketFlags::MULTIPOINT_D_LEAF,
        flags.contains(WitSocketFlags::MULTIPOINT_D_LEAF),
    );
    out
}

/// WIT `message-flags` as the mechanism's flags.
pub fn msg_flags(flags: MessageFlags) -> MsgFlags {
    let mut out = MsgFlags::empty();
    out.set(MsgFlags::OOB, flags.contains(MessageFlags::OOB));
    out.set(MsgFlags::PEEK, flags.contains(MessageFlags::PEEK));
    out.set(
        MsgFlags::DONT_ROUTE,
        flags.contains(MessageFlags::DONT_ROUTE),
    );
    out.set(MsgFlags::PARTIAL, flags.contains(MessageFlags::PARTIAL));
    out.set(MsgFlags::WAIT_ALL, flags.contains(MessageFlags::WAIT_ALL));
    out
}

/// Each FD_* event with its WIT flag.
const FD_EVENT_PAIRS: [(FdEvents, WitFdEvents); 10] = [
    (FdEvents::READ, WitFdEvents::READ),
    (FdEvents::WRITE, WitFdEvents::WRITE),
    (FdEvents::OOB, WitFdEvents::OOB),
    (FdEvents::ACCEPT, WitFdEvents::ACCEPT),
    (FdEvents::CONNECT, WitFdEvents::CONNECT),
    (FdEvents::CLOSE, WitFdEvents::CLOSE),
    (FdEvents::QOS, WitFdEvents::QOS),
    (FdEvents::GROUP_QOS, WitFdEvents::GROUP_QOS),
    (
        FdEvents::ROUTING_INTERFACE_CHANGE,
        WitFdEvents::ROUTING_INTERFACE_CHANGE,
    ),
    (
        FdEvents::ADDRESS_LIST_CHANGE,
        WitFdEvents::ADDRESS_LIST_CHANGE,
    ),
];

/// WIT `fd-events` as the mechanism's events.
pub fn fd_events(wit: WitFdEvents) -> FdEvents {
    FD_EVENT_PAIRS
        .iter()
        .filter(|(_, w)| wit.contains(*w))
        .fold(FdEvents::empty(), |acc, (ours, _)| acc | *ours)
}

/// The mechanism's events as WIT `fd-events`.
pub fn wit_fd_events(ours: FdEvents) -> WitFdEvents {
    FD_EVENT_PAIRS
        .iter()
        .filter(|(o, _)| ours.contains(*o))
        .fold(WitFdEvents::empty(), |acc, (_, wit)| acc | *wit)
}

/// The part of a WIT protocol-info that `WSPSocket` reads.
pub fn protocol_info_arg(info: &ProtocolInfo) -> ProtocolInfoArg {
    ProtocolInfoArg {
        af: info.address_family,
        socket_type: info.socket_type,
        protocol: info.protocol,
        catalog_entry_id: info.catalog_entry_id,
    }
}

/// A catalogue entry as a WIT protocol-info.
pub fn protocol_info(entry: &ProtocolEntry) -> ProtocolInfo {
    const PAIRS: [(ServiceFlags, WitServiceFlags); 13] = [
        (
            ServiceFlags::CONNECTIONLESS,
            WitServiceFlags::CONNECTIONLESS,
        ),
        (
            ServiceFlags::GUARANTEED_DELIVERY,
            WitServiceFlags::GUARANTEED_DELIVERY,
        ),
        (
            ServiceFlags::GUARANTEED_ORDER,
            WitServiceFlags::GUARANTEED_ORDER,
        ),
        (
            ServiceFlags::MESSAGE_ORIENTED,
            WitServiceFlags::MESSAGE_ORIENTED,
        ),
        (
            ServiceFlags::GRACEFUL_CLOSE,
            WitServiceFlags::GRACEFUL_CLOSE,
        ),
        (
            ServiceFlags::EXPEDITED_DATA,
            WitServiceFlags::EXPEDITED_DATA,
        ),
        (ServiceFlags::CONNECT_DATA, WitServiceFlags::CONNECT_DATA),
        (
            ServiceFlags::SUPPORT_BROADCAST,
            WitServiceFlags::SUPPORT_BROADCAST,
        ),
        (
            ServiceFlags::SUPPORT_MULTIPOINT,
            WitServiceFlags::SUPPORT_MULTIPOINT,
        ),
        (
            ServiceFlags::MULTIPOINT_CONTROL_PLANE,
            WitServiceFlags::MULTIPOINT_CONTROL_PLANE,
        ),
        (
            ServiceFlags::MULTIPOINT_DATA_PLANE,
            WitServiceFlags::MULTIPOINT_DATA_PLANE,
        ),
        (ServiceFlags::QOS_SUPPORTED, WitServiceFlags::QOS_SUPPORTED),
        (
            ServiceFlags::PARTIAL_MESSAGE,
            WitServiceFlags::PARTIAL_MESSAGE,
        ),
    ];
    let mut service_flags = WitServiceFlags::empty();
    for (ours, wit) in PAIRS {
        if entry.service_flags.contains(ours) {
            service_flags |= wit;
        }
    }
    ProtocolInfo {
        service_flags,
        catalog_entry_id: entry.id,
        address_family: entry.family.af(),
        socket_type: entry.kind.socket_type(),
        protocol: entry.protocol(),
        max_message_size: entry.max_msg_size,
        name: entry.name.to_string(),
    }
}

/// A WIT QoS as the mechanism takes it (provider-specific bytes, which
/// wasp defines none of, are ignored).
pub fn qos_request(qos: &types::Qos) -> Qos {
    let service = |t: types::ServiceType| match t {
        types::ServiceType::NoTraffic => ServiceType::NoTraffic,
        types::ServiceType::BestEffort => ServiceType::BestEffort,
        types::ServiceType::ControlledLoad => ServiceType::ControlledLoad,
        types::ServiceType::Guaranteed => ServiceType::Guaranteed,
        types::ServiceType::NotSpecified => ServiceType::NotSpecified,
    };
    let flow = |f: &types::Flowspec| Flowspec {
        token_rate: f.token_rate,
        token_bucket_size: f.token_bucket_size,
        peak_bandwidth: f.peak_bandwidth,
        latency: f.latency,
        delay_variation: f.delay_variation,
        service_type: service(f.service_type),
        max_sdu_size: f.max_sdu_size,
        minimum_policed_size: f.minimum_policed_size,
    };
    Qos {
        sending: flow(&qos.sending),
        receiving: flow(&qos.receiving),
    }
}

/// The WIT form of a QoS (SIO_GET_QOS).
pub fn wit_qos(qos: &Qos) -> types::Qos {
    let service = |t: ServiceType| match t {
        ServiceType::NoTraffic => types::ServiceType::NoTraffic,
        ServiceType::BestEffort => types::ServiceType::BestEffort,
        ServiceType::ControlledLoad => types::ServiceType::ControlledLoad,
        ServiceType::Guaranteed => types::ServiceType::Guaranteed,
        ServiceType::NotSpecified => types::ServiceType::NotSpecified,
    };
    let flow = |f: &Flowspec| types::Flowspec {
        token_rate: f.token_rate,
        token_bucket_size: f.token_bucket_size,
        peak_bandwidth: f.peak_bandwidth,
        latency: f.latency,
        delay_variation: f.delay_variation,
        service_type: service(f.service_type),
        max_sdu_size: f.max_sdu_size,
        minimum_policed_size: f.minimum_policed_size,
    };
    types::Qos {
        sending: flow(&qos.sending),
        receiving: flow(&qos.receiving),
        provider_specific: Vec::new(),
    }
}
