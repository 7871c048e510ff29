//! Winsock error codes as a Rust type, shared by the mechanism and the glue.
//!
//! Every failure a guest can see is one of these (SPEC mapping table:
//! `lpErrno + SOCKET_ERROR` becomes `result<T, error-code>`).

use std::io;

/// A Winsock error (`WSAE*` / `WSA_*`), with its numeric value.
///
/// The variants mirror the WIT `error-code` enum one to one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[allow(missing_docs)] // each variant is its Winsock name; `code()` gives its value
pub enum WsaError {
    #[error("WSA_INVALID_HANDLE")]
    InvalidHandle,
    #[error("WSA_OPERATION_ABORTED")]
    OperationAborted,
    #[error("WSA_IO_INCOMPLETE")]
    IoIncomplete,
    #[error("WSA_IO_PENDING")]
    IoPending,
    #[error("WSAEINTR")]
    Intr,
    #[error("WSAEACCES")]
    Acces,
    #[error("WSAEFAULT")]
    Fault,
    #[error("WSAEINVAL")]
    Inval,
    #[error("WSAEMFILE")]
    Mfile,
    #[error("WSAEWOULDBLOCK")]
    WouldBlock,
    #[error("WSAEINPROGRESS")]
    InProgress,
    #[error("WSAEALREADY")]
    Already,
    #[error("WSAENOTSOCK")]
    NotSock,
    #[error("WSAEDESTADDRREQ")]
    DestAddrReq,
    #[error("WSAEMSGSIZE")]
    MsgSize,
    #[error("WSAEPROTOTYPE")]
    ProtoType,
    #[error("WSAENOPROTOOPT")]
    NoProtoOpt,
    #[error("WSAEPROTONOSUPPORT")]
    ProtoNoSupport,
    #[error("WSAESOCKTNOSUPPORT")]
    SocktNoSupport,
    #[error("WSAEOPNOTSUPP")]
    OpNotSupp,
    #[error("WSAEPFNOSUPPORT")]
    PfNoSupport,
    #[error("WSAEAFNOSUPPORT")]
    AfNoSupport,
    #[error("WSAEADDRINUSE")]
    AddrInUse,
    #[error("WSAEADDRNOTAVAIL")]
    AddrNotAvail,
    #[error("WSAENETDOWN")]
    NetDown,
    #[error("WSAENETUNREACH")]
    NetUnreach,
    #[error("WSAENETRESET")]
    NetReset,
    #[error("WSAECONNABORTED")]
    ConnAborted,
    #[error("WSAECONNRESET")]
    ConnReset,
    #[error("WSAENOBUFS")]
    NoBufs,
    #[error("WSAEISCONN")]
    IsConn,
    #[error("WSAENOTCONN")]
    NotConn,
    #[error("WSAESHUTDOWN")]
    Shutdown,
    #[error("WSAETIMEDOUT")]
    TimedOut,
    #[error("WSAECONNREFUSED")]
    ConnRefused,
    #[error("WSAEHOSTUNREACH")]
    HostUnreach,
}

impl WsaError {
    /// The numeric Winsock value (`WSAEWOULDBLOCK` is 10035).
    pub const fn code(self) -> i32 {
        match self {
            Self::InvalidHandle => 6,
            Self::OperationAborted => 995,
            Self::IoIncomplete => 996,
            Self::IoPending => 997,
            Self::Intr => 10004,
            Self::Acces => 10013,
            Self::Fault => 10014,
            Self::Inval => 10022,
            Self::Mfile => 10024,
            Self::WouldBlock => 10035,
            Self::InProgress => 10036,
            Self::Already => 10037,
            Self::NotSock => 10038,
            Self::DestAddrReq => 10039,
            Self::MsgSize => 10040,
            Self::ProtoType => 10041,
            Self::NoProtoOpt => 10042,
            Self::ProtoNoSupport => 10043,
            Self::SocktNoSupport => 10044,
            Self::OpNotSupp => 10045,
            Self::PfNoSupport => 10046,
            Self::AfNoSupport => 10047,
            Self::AddrInUse => 10048,
            Self::AddrNotAvail => 10049,
            Self::NetDown => 10050,
            Self::NetUnreach => 10051,
            Self::NetReset => 10052,
            Self::ConnAborted => 10053,
            Self::ConnReset => 10054,
            Self::NoBufs => 10055,
            Self::IsConn => 10056,
            Self::NotConn => 10057,
            Self::Shutdown => 10058,
            Self::TimedOut => 10060,
            Self::ConnRefused => 10061,
            Self::HostUnreach => 10065,
        }
    }
}

impl From<io::Error> for WsaError {
    /// Maps an OS error to the Winsock error a Windows provider would give.
    fn from(err: io::Error) -> Self {
        use io::ErrorKind as K;
        if let Some(mapped) = err.raw_os_error().and_then(from_errno) {
            return mapped;
        }
        match err.kind() {
            K::WouldBlock => Self::WouldBlock,
            K::PermissionDenied => Self::Acces,
            K::ConnectionRefused => Self::ConnRefused,
            K::ConnectionReset => Self::ConnReset,
            K::ConnectionAborted => Self::ConnAborted,
            K::NotConnected => Self::NotConn,
            K::AddrInUse => Self::AddrInUse,
            K::AddrNotAvailable => Self::AddrNotAvail,
            K::BrokenPipe => Self::Shutdown,
            K::TimedOut => Self::TimedOut,
            K::InvalidInput => Self::Inval,
            K::Interrupted => Self::Intr,
            K::OutOfMemory => Self::NoBufs,
            K::NetworkUnreachable => Self::NetUnreach,
            K::HostUnreachable => Self::HostUnreach,
            K::NetworkDown => Self::NetDown,
            _ => Self::NetDown,
        }
    }
}

/// OS errno values and their Winsock counterparts.
fn from_errno(errno: i32) -> Option<WsaError> {
    use WsaError as W;
    Some(match errno {
        libc::EINTR => W::Intr,
        libc::EACCES | libc::EPERM => W::Acces,
        libc::EFAULT => W::Fault,
        libc::EINVAL => W::Inval,
        libc::ENFILE | libc::EMFILE => W::Mfile,
        libc::EAGAIN | libc::EINPROGRESS => W::WouldBlock,
        libc::EALREADY => W::Already,
        libc::ENOTSOCK => W::NotSock,
        libc::EDESTADDRREQ => W::DestAddrReq,
        libc::EMSGSIZE => W::MsgSize,
        libc::EPROTOTYPE => W::ProtoType,
        libc::ENOPROTOOPT => W::NoProtoOpt,
        libc::EPROTONOSUPPORT => W::ProtoNoSupport,
        libc::ESOCKTNOSUPPORT => W::SocktNoSupport,
        libc::EOPNOTSUPP => W::OpNotSupp,
        libc::EPFNOSUPPORT => W::PfNoSupport,
        libc::EAFNOSUPPORT => W::AfNoSupport,
        libc::EADDRINUSE => W::AddrInUse,
        libc::EADDRNOTAVAIL => W::AddrNotAvail,
        libc::ENETDOWN => W::NetDown,
        libc::ENETUNREACH => W::NetUnreach,
        libc::ENETRESET => W::NetReset,
        libc::ECONNABORTED => W::ConnAborted,
        libc::ECONNRESET => W::ConnReset,
        libc::ENOBUFS | libc::ENOMEM => W::NoBufs,
        libc::EISCONN => W::IsConn,
        libc::ENOTCONN => W::NotConn,
        libc::ESHUTDOWN | libc::EPIPE => W::Shutdown,
        libc::ETIMEDOUT => W::TimedOut,
        libc::ECONNREFUSED => W::ConnRefused,
        libc::EHOSTUNREACH => W::HostUnreach,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_winsock_values() {
        assert_eq!(WsaError::WouldBlock.code(), 10035);
        assert_eq!(WsaError::Acces.code(), 10013);
        assert_eq!(WsaError::NotSock.code(), 10038);
        assert_eq!(WsaError::MsgSize.code(), 10040);
        assert_eq!(WsaError::IoPending.code(), 997);
    }

    #[test]
    fn os_errors_map_to_winsock() {
        let refused = io::Error::from_raw_os_error(111);
        assert_eq!(WsaError::from(refused), WsaError::ConnRefused);
        let would_block = io::Error::from(io::ErrorKind::WouldBlock);
        assert_eq!(WsaError::from(would_block), WsaError::WouldBlock);
    }
}
