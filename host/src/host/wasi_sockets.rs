//! Glue for the second door: a guest's `wasi:sockets` (Rust's `std::net`,
//! Python's `socket`) checked against the same wasp policy as its
//! `wasp:spi` calls. Decides nothing: each use is converted to a
//! [`NetUse`] and [`Gate::allows_wasi`] decides.

use std::sync::Arc;

use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::sockets::SocketAddrUse;

use crate::WaspCtx;
use crate::net::gate::Gate;
use crate::policy::{NetUse, Transport};

/// The wasp use and transport of a `wasi:sockets` use.
fn wasp_use(wasi_use: SocketAddrUse) -> (NetUse, Transport) {
    match wasi_use {
        SocketAddrUse::TcpBind => (NetUse::Bind, Transport::Tcp),
        SocketAddrUse::TcpListen => (NetUse::Listen, Transport::Tcp),
        SocketAddrUse::TcpAccept => (NetUse::Accept, Transport::Tcp),
        SocketAddrUse::TcpConnect => (NetUse::Connect, Transport::Tcp),
        SocketAddrUse::UdpBind => (NetUse::Bind, Transport::Udp),
        SocketAddrUse::UdpSend => (NetUse::SendTo, Transport::Udp),
        SocketAddrUse::UdpReceive => (NetUse::RecvFrom, Transport::Udp),
    }
}

impl WaspCtx {
    /// Puts the guest's `wasi:sockets` under this context's policy: TCP and
    /// UDP are allowed in `wasi` and every address the guest binds,
    /// listens on, connects or sends to, and every peer it accepts or
    /// receives from, is checked by the same grants as a wasp call, with
    /// the same denial log, counts and `last-denial`. Name lookup stays
    /// off. Call it on the `WasiCtxBuilder` of the same guest; without it,
    /// a `WasiCtxBuilder` that inherits the network would be a door the
    /// policy does not guard.
    ///
    /// What wasp's own sockets have and these do not: the `max-sockets`
    /// quota and the per-call limits (the store's resource table and
    /// memory limit bound them), QoS, and the TTL ceiling of multicast
    /// grants (a `wasi:sockets` send to a group is refused unless its
    /// grant allows TTL 1, the kernel's default).
    pub fn govern_wasi_sockets(&self, wasi: &mut WasiCtxBuilder) {
        let gate: Arc<Gate> = self.provider().gate().clone();
        wasi.allow_tcp(true)
            .allow_udp(true)
            .allow_ip_name_lookup(false)
            .socket_addr_check(move |addr, wasi_use| {
                let (net_use, transport) = wasp_use(wasi_use);
                let allowed = gate.allows_wasi(net_use, transport, addr);
                Box::pin(async move { allowed })
            });
    }
}
