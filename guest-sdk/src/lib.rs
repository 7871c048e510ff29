//! # wasp-guest — write wasp plugins in Rust
//!
//! A wasp plugin is a WASI command (a normal `fn main`, built for
//! `wasm32-wasip2`) that reaches the network only through the wasp socket
//! provider, a Winsock SPI mirrored in WIT (`wasp:spi`).
//!
//! - [`raw`] holds the generated bindings: `wsp_socket`, `wsp_send`, ...
//!   exactly as in the WIT, for code that wants Winsock as it is.
//! - [`EventQueue`] is WSPAsyncSelect: register sockets, then run a message
//!   loop ([`EventQueue::run`], [`Dispatcher`]) over FD_* [`Event`]s.
//! - [`Socket`] is the idiomatic layer: `std::net::SocketAddr` in and out,
//!   [`Result`] with a [`WsaError`] that converts into `std::io::Error`,
//!   `std::io::Read`/`Write`, and close on drop.
//!
//! ```no_run
//! use wasp_guest::{Socket, SocketType};
//! let listener = Socket::listen_on("127.0.0.1:7000".parse().unwrap(), 16)?;
//! let (mut conn, _peer) = listener.accept()?;
//! let data = conn.recv(4096)?;
//! conn.send(&data)?;
//! # Ok::<(), wasp_guest::WsaError>(())
//! ```
//!
//! ## Where wasp differs from Windows
//!
//! wasp follows the Winsock SPI rules (SPEC.md) where Windows as shipped
//! differs, and maps Windows notions onto WebAssembly:
//!
//! - descriptors are never reused within one guest, so a stale one is
//!   always WSAENOTSOCK;
//! - an IPv6 socket is IPv6-only (IPV6_V6ONLY on), as the Windows default;
//! - a datagram larger than the receive buffer is consumed and reported as
//!   WSAEMSGSIZE without its truncated part;
//! - `listen` on an unbound socket is WSAEINVAL (no implicit bind);
//! - a capability the policy does not grant is WSAEACCES, and
//!   [`last_denial`] names the missing grant;
//! - the window of WSPAsyncSelect is a guest-owned [`EventQueue`]; the
//!   guest pulls its messages, nothing calls into it;
//! - FD_CONNECT is posted at registration when a connection the socket
//!   initiated is already established (SPEC AS-20), which Windows does not
//!   always do; an accepted socket never gets FD_CONNECT;
//! - at the socket quota, `accept` is WSAEMFILE and re-enables FD_ACCEPT
//!   (AS-10), but FD_ACCEPT is posted again only once the guest has room
//!   for the connection (a socket closed), so a message loop at its quota
//!   does not spin; the connection waits meanwhile;
//! - a listener registered with WSPAsyncSelect announces only connections
//!   the policy admits (others are reset unseen), and a rooted joiner only
//!   once its caller data is in;
//! - SO_REUSEADDR on a datagram socket is remembered but never shares a
//!   port natively; SO_RCVBUF and SO_SNDBUF are clamped to the policy's
//!   budget; a receiving leaf's implicit bind (to its group's address and
//!   port) shares the port with the guest's own sockets bound there, as a
//!   specific bind may sit beside a wildcard one on Windows (SPEC JL-1);
//!   a member bound to the wildcard hears the group's datagrams under its
//!   multicast grant and unicast ones under the `recv-from` grants;
//! - with `FROM_PROTOCOL_INFO`, a value taken from the protocol info must
//!   name something: an address family of 0 or one not offered is
//!   WSAEAFNOSUPPORT, a type of 0 WSAESOCKTNOSUPPORT, a protocol of 0
//!   WSAEPROTONOSUPPORT (never resolved from the catalogue's defaults);
//!   the info's catalogue entry must exist (WSAEINVAL), and values given as
//!   arguments take precedence over the info's (SPEC SO-4);
//! - `shutdown` with SD_RECEIVE or SD_BOTH shuts the receive direction in
//!   wasp only, so that FD_CLOSE comes with the peer's FIN, not with the
//!   local half-close (SPEC AS-18); data queued then, or arriving later
//!   while the socket is registered, resets the connection as Windows
//!   does: the peer sees WSAECONNRESET, the socket FD_CLOSE with
//!   WSAECONNABORTED (data arriving on an unregistered socket after the
//!   shutdown is left unread until it closes);
//! - WSPJoinLeaf offers IP multicast (no caller data: WSAEPROTONOSUPPORT)
//!   and wasp's own rooted protocol (253) over TCP, where a leaf's data
//!   reaches the root on that leaf's c_leaf descriptor; QoS is best effort
//!   only.

mod error;
mod events;
mod socket;

/// The generated `wasp:spi` bindings (the WIT, as Rust).
#[allow(missing_docs)]
pub mod raw {
    wit_bindgen::generate!({
        path: "../wit",
        world: "wasp:spi/plugin",
        generate_all,
    });
    pub use wasp::spi::{messages, readiness, sockets, types};
}

pub use error::{Result, WsaError};
pub use events::{Completion, DEFAULT_BATCH, Dispatcher, Event, EventQueue, Overlapped};
pub use raw::sockets::{IoctlCommand, IoctlResult, OverlappedResult, Sockopt, SockoptName};
pub use raw::types::FdEvents;
pub use raw::types::{
    ErrorCode, Flowspec, JoinFlags, MessageFlags, ProtocolInfo, Qos, ServiceType, ShutdownHow,
    SocketFlags,
};
pub use socket::{
    Socket, SocketType, enum_protocols, last_denial, socket_address, std_socket_addr, wsabuf,
};

/// Winsock constants for `wsp-socket` (`AF_*`, `SOCK_*`, `IPPROTO_*`).
pub mod consts {
    /// Wildcard address family.
    pub const AF_UNSPEC: i32 = 0;
    /// IPv4.
    pub const AF_INET: i32 = 2;
    /// IPv6 (the Winsock value).
    pub const AF_INET6: i32 = 23;
    /// Stream sockets.
    pub const SOCK_STREAM: i32 = 1;
    /// Datagram sockets.
    pub const SOCK_DGRAM: i32 = 2;
    /// Raw sockets (not offered by wasp: WSAESOCKTNOSUPPORT).
    pub const SOCK_RAW: i32 = 3;
    /// TCP.
    pub const IPPROTO_TCP: i32 = 6;
    /// UDP.
    pub const IPPROTO_UDP: i32 = 17;
    /// Take the value from the protocol-info argument.
    pub const FROM_PROTOCOL_INFO: i32 = -1;
}
