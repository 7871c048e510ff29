//! The Winsock error of a failed call, with its numeric value.

use std::fmt;
use std::io;

use crate::raw::types::ErrorCode;

/// A failed wasp call: the Winsock error (`WSAEWOULDBLOCK`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WsaError(pub ErrorCode);

/// The result of a wasp call.
pub type Result<T> = std::result::Result<T, WsaError>;

impl WsaError {
    /// The Winsock numeric value (`WSAEWOULDBLOCK` is 10035).
    pub fn code(self) -> i32 {
        use ErrorCode as E;
        match self.0 {
            E::WsaInvalidHandle => 6,
            E::WsaOperationAborted => 995,
            E::WsaIoIncomplete => 996,
            E::WsaIoPending => 997,
            E::Wsaeintr => 10004,
            E::Wsaeacces => 10013,
            E::Wsaefault => 10014,
            E::Wsaeinval => 10022,
            E::Wsaemfile => 10024,
            E::Wsaewouldblock => 10035,
            E::Wsaeinprogress => 10036,
            E::Wsaealready => 10037,
            E::Wsaenotsock => 10038,
            E::Wsaedestaddrreq => 10039,
            E::Wsaemsgsize => 10040,
            E::Wsaeprototype => 10041,
            E::Wsaenoprotoopt => 10042,
            E::Wsaeprotonosupport => 10043,
            E::Wsaesocktnosupport => 10044,
            E::Wsaeopnotsupp => 10045,
            E::Wsaepfnosupport => 10046,
            E::Wsaeafnosupport => 10047,
            E::Wsaeaddrinuse => 10048,
            E::Wsaeaddrnotavail => 10049,
            E::Wsaenetdown => 10050,
            E::Wsaenetunreach => 10051,
            E::Wsaenetreset => 10052,
            E::Wsaeconnaborted => 10053,
            E::Wsaeconnreset => 10054,
            E::Wsaenobufs => 10055,
            E::Wsaeisconn => 10056,
            E::Wsaenotconn => 10057,
            E::Wsaeshutdown => 10058,
            E::Wsaetimedout => 10060,
            E::Wsaeconnrefused => 10061,
            E::Wsaehostunreach => 10065,
        }
    }

    /// `WSA_IO_PENDING`: an overlapped operation started and completes
    /// later (SPEC SE-7).
    pub fn is_pending(self) -> bool {
        self.0 == ErrorCode::WsaIoPending
    }

    /// The Winsock name (`WSAEWOULDBLOCK`, `WSA_IO_PENDING`).
    pub fn name(self) -> String {
        self.0.name().to_uppercase().replace('-', "_")
    }

    /// The `std::io::ErrorKind` closest to this error.
    pub fn kind(self) -> io::ErrorKind {
        use ErrorCode as E;
        use io::ErrorKind as K;
        match self.0 {
            E::Wsaewouldblock | E::WsaIoPending | E::WsaIoIncomplete => K::WouldBlock,
            E::Wsaeacces => K::PermissionDenied,
            E::Wsaeconnrefused => K::ConnectionRefused,
            E::Wsaeconnreset | E::Wsaenetreset => K::ConnectionReset,
            E::Wsaeconnaborted | E::WsaOperationAborted => K::ConnectionAborted,
            E::Wsaenotconn => K::NotConnected,
            E::Wsaeaddrinuse => K::AddrInUse,
            E::Wsaeaddrnotavail => K::AddrNotAvailable,
            E::Wsaeshutdown => K::BrokenPipe,
            E::Wsaetimedout => K::TimedOut,
            E::Wsaeintr => K::Interrupted,
            E::Wsaeinval | E::Wsaefault | E::Wsaemsgsize => K::InvalidInput,
            E::Wsaenetunreach => K::NetworkUnreachable,
            E::Wsaehostunreach => K::HostUnreachable,
            E::Wsaenetdown => K::NetworkDown,
            E::Wsaeopnotsupp
            | E::Wsaeafnosupport
            | E::Wsaepfnosupport
            | E::Wsaeprotonosupport
            | E::Wsaesocktnosupport
            | E::Wsaenoprotoopt => K::Unsupported,
            _ => K::Other,
        }
    }
}

impl fmt::Display for WsaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

impl std::error::Error for WsaError {}

impl From<ErrorCode> for WsaError {
    fn from(code: ErrorCode) -> Self {
        WsaError(code)
    }
}

impl From<WsaError> for io::Error {
    fn from(err: WsaError) -> Self {
        io::Error::new(err.kind(), err)
    }
}
