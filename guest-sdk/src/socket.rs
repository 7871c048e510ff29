//! The idiomatic socket: one owned descriptor, closed on drop.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::consts::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP, SOCK_DGRAM, SOCK_STREAM};
use crate::raw::sockets as wsp;
use crate::raw::types::{
    Flowspec, Ipv4SocketAddress, Ipv6SocketAddress, JoinFlags, MessageFlags, ProtocolInfo, Qos,
    ServiceType, ShutdownHow, SocketAddress, SocketFlags,
};
use crate::{
    IoctlCommand, IoctlResult, Overlapped, OverlappedResult, Result, Sockopt, SockoptName, WsaError,
};

/// Stream or datagram, for the convenience constructors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketType {
    /// TCP.
    Stream,
    /// UDP.
    Datagram,
}

/// A wasp socket descriptor, closed when dropped (`wsp-close-socket`).
#[derive(Debug)]
pub struct Socket {
    s: u32,
}

/// A `std` socket address as a WIT `socket-address`.
pub fn socket_address(addr: SocketAddr) -> SocketAddress {
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

/// A WIT `socket-address` as a `std` socket address.
pub fn std_socket_addr(addr: SocketAddress) -> SocketAddr {
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

impl Socket {
    /// `wsp-socket(af, type, protocol, none, 0, flags)` with Winsock
    /// constants (see [`crate::consts`]).
    pub fn new(af: i32, socket_type: i32, protocol: i32, flags: SocketFlags) -> Result<Socket> {
        Self::with_info(af, socket_type, protocol, None, 0, flags)
    }

    /// `wsp-socket` with every argument, as in Winsock.
    pub fn with_info(
        af: i32,
        socket_type: i32,
        protocol: i32,
        info: Option<&ProtocolInfo>,
        group: u32,
        flags: SocketFlags,
    ) -> Result<Socket> {
        let s = wsp::wsp_socket(af, socket_type, protocol, info, group, flags)?;
        Ok(Socket { s })
    }

    /// A TCP or UDP socket of the family of `addr`.
    pub fn for_addr(addr: &SocketAddr, kind: SocketType) -> Result<Socket> {
        let af = if addr.is_ipv4() { AF_INET } else { AF_INET6 };
        let (ty, proto) = match kind {
            SocketType::Stream => (SOCK_STREAM, IPPROTO_TCP),
            SocketType::Datagram => (SOCK_DGRAM, IPPROTO_UDP),
        };
        Self::new(af, ty, proto, SocketFlags::empty())
    }

    /// A TCP socket bound to `addr` and listening.
    pub fn listen_on(addr: SocketAddr, backlog: u32) -> Result<Socket> {
        let socket = Self::for_addr(&addr, SocketType::Stream)?;
        socket.bind(addr)?;
        socket.listen(backlog)?;
        Ok(socket)
    }

    /// A TCP socket connected to `addr` (blocking connect).
    pub fn connect_to(addr: SocketAddr) -> Result<Socket> {
        let socket = Self::for_addr(&addr, SocketType::Stream)?;
        socket.connect(addr)?;
        Ok(socket)
    }

    /// A UDP socket bound to `addr`.
    pub fn udp_bound(addr: SocketAddr) -> Result<Socket> {
        let socket = Self::for_addr(&addr, SocketType::Datagram)?;
        socket.bind(addr)?;
        Ok(socket)
    }

    /// Takes ownership of a raw descriptor.
    pub fn from_raw(s: u32) -> Socket {
        Socket { s }
    }

    /// The raw descriptor (still owned by `self`).
    pub fn raw(&self) -> u32 {
        self.s
    }

    /// Gives up ownership: the descriptor is not closed on drop.
    pub fn into_raw(self) -> u32 {
        let s = self.s;
        std::mem::forget(self);
        s
    }

    /// `wsp-bind`.
    pub fn bind(&self, addr: SocketAddr) -> Result<()> {
        Ok(wsp::wsp_bind(self.s, socket_address(addr))?)
    }

    /// `wsp-listen`.
    pub fn listen(&self, backlog: u32) -> Result<()> {
        Ok(wsp::wsp_listen(self.s, backlog)?)
    }

    /// `wsp-accept`: the new socket and its peer.
    pub fn accept(&self) -> Result<(Socket, SocketAddr)> {
        let (s, peer) = wsp::wsp_accept(self.s)?;
        Ok((Socket { s }, std_socket_addr(peer)))
    }

    /// `wsp-connect`.
    pub fn connect(&self, addr: SocketAddr) -> Result<()> {
        Ok(wsp::wsp_connect(self.s, socket_address(addr))?)
    }

    /// `wsp-send` of one buffer (passed as it is, without a copy).
    pub fn send(&self, data: &[u8]) -> Result<usize> {
        let length = [data.len() as u32];
        Ok(wsp::wsp_send(self.s, data, &length, MessageFlags::empty(), None)? as usize)
    }

    /// `wsp-send` with every argument: the buffers go out in order as one
    /// stream write or one datagram. An overlapped send that does not
    /// complete at once fails with `WSA_IO_PENDING`
    /// ([`WsaError::is_pending`]) and completes later.
    pub fn send_with(
        &self,
        buffers: &[&[u8]],
        flags: MessageFlags,
        overlapped: Option<Overlapped<'_>>,
    ) -> Result<usize> {
        let (data, lengths) = wsabuf(buffers);
        let overlapped = overlapped.as_ref().map(Overlapped::raw);
        Ok(wsp::wsp_send(self.s, &data, &lengths, flags, overlapped.as_ref())? as usize)
    }

    /// An overlapped `wsp-send` of `data` (SPEC SE-7): `Some(n)` when it
    /// completed at once (its completion is queued too), `None` when it
    /// pends (the host keeps the bytes and posts the completion to
    /// `overlapped.queue` once they are sent).
    pub fn send_overlapped(
        &self,
        data: &[u8],
        overlapped: Overlapped<'_>,
    ) -> Result<Option<usize>> {
        match self.send_with(&[data], MessageFlags::empty(), Some(overlapped)) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.is_pending() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// An overlapped `wsp-recv` of at most `max_len` bytes: `Some(bytes)`
    /// when data was there at once, `None` when it pends (its bytes come
    /// from [`Socket::overlapped_result`] after its completion).
    pub fn recv_overlapped(
        &self,
        max_len: usize,
        overlapped: Overlapped<'_>,
    ) -> Result<Option<Vec<u8>>> {
        let max = u32::try_from(max_len).unwrap_or(u32::MAX);
        let raw = overlapped.raw();
        match wsp::wsp_recv(self.s, max, MessageFlags::empty(), Some(&raw)) {
            Ok(data) => Ok(Some(data)),
            Err(e) if WsaError(e).is_pending() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// `wsp-get-overlapped-result`: the outcome of the operation `token`;
    /// with `wait`, waits while it pends (else `WSA_IO_INCOMPLETE`).
    pub fn overlapped_result(&self, token: u64, wait: bool) -> Result<OverlappedResult> {
        Ok(wsp::wsp_get_overlapped_result(self.s, token, wait)?)
    }

    /// Sends every byte of `data`, looping over partial sends.
    pub fn send_all(&self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let n = self.send(data)?;
            data = &data[n..];
        }
        Ok(())
    }

    /// `wsp-send-to` of one buffer.
    pub fn send_to(&self, data: &[u8], to: SocketAddr) -> Result<usize> {
        self.send_to_with(&[data], to, MessageFlags::empty())
    }

    /// `wsp-send-to` of several buffers as one datagram.
    pub fn send_to_with(
        &self,
        buffers: &[&[u8]],
        to: SocketAddr,
        flags: MessageFlags,
    ) -> Result<usize> {
        let (data, lengths) = wsabuf(buffers);
        Ok(wsp::wsp_send_to(self.s, &data, &lengths, flags, socket_address(to), None)? as usize)
    }

    /// `wsp-recv` of up to `max_len` bytes; empty means the peer closed.
    pub fn recv(&self, max_len: usize) -> Result<Vec<u8>> {
        self.recv_with(max_len, MessageFlags::empty())
    }

    /// `wsp-recv` with flags (`PEEK`, `OOB`, `WAIT_ALL`).
    pub fn recv_with(&self, max_len: usize, flags: MessageFlags) -> Result<Vec<u8>> {
        let max = u32::try_from(max_len).unwrap_or(u32::MAX);
        Ok(wsp::wsp_recv(self.s, max, flags, None)?)
    }

    /// `wsp-recv-from`: one datagram and its sender.
    pub fn recv_from(&self, max_len: usize) -> Result<(Vec<u8>, SocketAddr)> {
        let max = u32::try_from(max_len).unwrap_or(u32::MAX);
        let (data, from) = wsp::wsp_recv_from(self.s, max, MessageFlags::empty(), None)?;
        Ok((data, std_socket_addr(from)))
    }

    /// `wsp-shutdown`.
    pub fn shutdown(&self, how: ShutdownHow) -> Result<()> {
        Ok(wsp::wsp_shutdown(self.s, how)?)
    }

    /// FIONBIO.
    pub fn set_nonblocking(&self, on: bool) -> Result<()> {
        wsp::wsp_ioctl(self.s, &IoctlCommand::Fionbio(on))?;
        Ok(())
    }

    /// FIONREAD.
    pub fn bytes_readable(&self) -> Result<u32> {
        match wsp::wsp_ioctl(self.s, &IoctlCommand::Fionread)? {
            IoctlResult::Bytes(n) => Ok(n),
            _ => Err(WsaError(crate::ErrorCode::Wsaeinval)),
        }
    }

    /// SIO_SET_QOS: a sending flow of controlled load shapes this socket's
    /// sends to its token rate (SPEC JL-8); WSAEOPNOTSUPP for what the host
    /// cannot meet.
    pub fn set_qos(&self, qos: &Qos) -> Result<()> {
        wsp::wsp_ioctl(self.s, &IoctlCommand::SioSetQos(qos.clone()))?;
        Ok(())
    }

    /// SIO_SET_QOS of a controlled-load sending flow of `rate` bytes per
    /// second with a bucket of `bucket` bytes (0: a tenth of a second's
    /// worth), best effort for receiving.
    pub fn set_send_rate(&self, rate: u32, bucket: u32) -> Result<()> {
        let sending = Flowspec {
            token_rate: rate,
            token_bucket_size: bucket,
            peak_bandwidth: 0,
            latency: 0,
            delay_variation: 0,
            service_type: ServiceType::ControlledLoad,
            max_sdu_size: 0,
            minimum_policed_size: 0,
        };
        let receiving = Flowspec {
            token_rate: 0,
            token_bucket_size: 0,
            service_type: ServiceType::BestEffort,
            ..sending
        };
        self.set_qos(&Qos {
            sending,
            receiving,
            provider_specific: Vec::new(),
        })
    }

    /// SIO_GET_QOS: the socket's quality of service.
    pub fn qos(&self) -> Result<Qos> {
        match wsp::wsp_ioctl(self.s, &IoctlCommand::SioGetQos)? {
            IoctlResult::Qos(qos) => Ok(qos),
            _ => Err(WsaError(crate::ErrorCode::Wsaeinval)),
        }
    }

    /// SIO_ADDRESS_LIST_CHANGE: arms FD_ADDRESS_LIST_CHANGE (one message
    /// when the addresses this guest may bind change; SPEC AS-13, AS-25).
    pub fn notify_address_list_change(&self) -> Result<()> {
        wsp::wsp_ioctl(self.s, &IoctlCommand::SioAddressListChange)?;
        Ok(())
    }

    /// SIO_ROUTING_INTERFACE_CHANGE: arms FD_ROUTING_INTERFACE_CHANGE for
    /// `to` (one message when the local interface that reaches it
    /// changes; WSAENETUNREACH in it when `to` became unreachable).
    pub fn notify_routing_interface_change(&self, to: SocketAddr) -> Result<()> {
        let command = IoctlCommand::SioRoutingInterfaceChange(socket_address(to));
        wsp::wsp_ioctl(self.s, &command)?;
        Ok(())
    }

    /// `wsp-set-sock-opt`.
    pub fn set_option(&self, value: Sockopt) -> Result<()> {
        Ok(wsp::wsp_set_sock_opt(self.s, &value)?)
    }

    /// `wsp-get-sock-opt`.
    pub fn option(&self, name: SockoptName) -> Result<Sockopt> {
        Ok(wsp::wsp_get_sock_opt(self.s, name)?)
    }

    /// `wsp-get-sock-name`.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(std_socket_addr(wsp::wsp_get_sock_name(self.s)?))
    }

    /// `wsp-get-peer-name`.
    pub fn peer_addr(&self) -> Result<SocketAddr> {
        Ok(std_socket_addr(wsp::wsp_get_peer_name(self.s)?))
    }

    /// A UDP socket that can join IP multicast sessions (created with
    /// WSA_FLAG_MULTIPOINT_C_LEAF | WSA_FLAG_MULTIPOINT_D_LEAF).
    pub fn multicast(ipv6: bool) -> Result<Socket> {
        let af = if ipv6 { AF_INET6 } else { AF_INET };
        let flags = SocketFlags::MULTIPOINT_C_LEAF | SocketFlags::MULTIPOINT_D_LEAF;
        Self::new(af, SOCK_DGRAM, IPPROTO_UDP, flags)
    }

    /// `wsp-join-leaf` on a c_leaf socket: joins the session at `name` (an
    /// IP multicast group) as sender, receiver or both. The leaf is this
    /// socket itself (SPEC JL-3); `send` then goes to the group. Returns the
    /// callee data (empty for IP multicast).
    pub fn join_leaf(&self, name: SocketAddr, role: JoinFlags) -> Result<Vec<u8>> {
        let joined = wsp::wsp_join_leaf(self.s, socket_address(name), None, 0, None, None, role)?;
        Ok(joined.callee_data)
    }

    /// `wsp-close-socket`, reporting its error (drop ignores it).
    pub fn close(self) -> Result<()> {
        Ok(wsp::wsp_close_socket(self.into_raw())?)
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        let _ = wsp::wsp_close_socket(self.s);
    }
}

impl io::Read for &Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let data = self.recv(buf.len())?;
        buf[..data.len()].copy_from_slice(&data);
        Ok(data.len())
    }
}

impl io::Write for &Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(self.send(buf)?)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `wsp-enum-protocols`: the host's catalogue, optionally filtered by
/// protocol (`IPPROTO_*`).
pub fn enum_protocols(protocols: Option<&[i32]>) -> Vec<ProtocolInfo> {
    wsp::wsp_enum_protocols(protocols)
}

/// Why the host last refused this guest (`WSAEACCES`): the missing grant.
pub fn last_denial() -> Option<String> {
    wsp::last_denial()
}

/// Several buffers as `wsp-send` takes them (Winsock's WSABUF array): their
/// bytes back to back and each one's length.
pub fn wsabuf<'a>(buffers: &[&'a [u8]]) -> (std::borrow::Cow<'a, [u8]>, Vec<u32>) {
    let lengths = buffers.iter().map(|b| b.len() as u32).collect();
    let data = match buffers {
        [one] => std::borrow::Cow::Borrowed(*one),
        many => std::borrow::Cow::Owned(many.concat()),
    };
    (data, lengths)
}
