//! WSPIoctl, WSPGetSockOpt and WSPSetSockOpt.

use super::*;

/// A `WSPIoctl` command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoctlCommand {
    /// FIONBIO: `true` makes the socket non-blocking.
    NonBlocking(bool),
    /// FIONREAD.
    BytesReadable,
    /// SIOCATMARK.
    AtMark,
    /// SIO_SET_QOS (SPEC JL-8).
    SetQos(Qos),
    /// SIO_GET_QOS.
    GetQos,
    /// SIO_ADDRESS_LIST_CHANGE: arms FD_ADDRESS_LIST_CHANGE.
    AddressListChange,
    /// SIO_FLUSH: discards the overlapped sends that pend.
    Flush,
    /// SIO_ROUTING_INTERFACE_CHANGE: arms FD_ROUTING_INTERFACE_CHANGE for
    /// a destination.
    RoutingInterfaceChange(SocketAddr),
}

/// The answer of a `WSPIoctl` command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoctlReply {
    /// Nothing to return.
    None,
    /// A byte count.
    Bytes(u32),
    /// A truth value.
    Flag(bool),
    /// A quality of service.
    Qos(Qos),
}

/// A socket option name (`WSPGetSockOpt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptName {
    /// SO_BROADCAST.
    Broadcast,
    /// SO_OOBINLINE.
    OobInline,
    /// SO_REUSEADDR.
    ReuseAddress,
    /// SO_KEEPALIVE.
    KeepAlive,
    /// TCP_NODELAY.
    TcpNoDelay,
    /// SO_LINGER.
    Linger,
    /// SO_RCVBUF.
    ReceiveBuffer,
    /// SO_SNDBUF.
    SendBuffer,
    /// SO_MAX_MSG_SIZE.
    MaxMessageSize,
    /// SO_ERROR.
    Error,
    /// SO_TYPE.
    SocketType,
    /// SO_ACCEPTCONN.
    AcceptConn,
    /// SO_PROTOCOL_INFO.
    ProtocolInfo,
    /// IP_MULTICAST_TTL / IPV6_MULTICAST_HOPS.
    MulticastTtl,
    /// IP_MULTICAST_LOOP / IPV6_MULTICAST_LOOP.
    MulticastLoop,
    /// SO_CONNDATA.
    ConnectData,
}

/// A socket option with its value (`WSPGetSockOpt` / `WSPSetSockOpt`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptValue {
    /// SO_BROADCAST.
    Broadcast(bool),
    /// SO_OOBINLINE.
    OobInline(bool),
    /// SO_REUSEADDR.
    ReuseAddress(bool),
    /// SO_KEEPALIVE.
    KeepAlive(bool),
    /// TCP_NODELAY.
    TcpNoDelay(bool),
    /// SO_LINGER in seconds.
    Linger(Option<u16>),
    /// SO_RCVBUF.
    ReceiveBuffer(u32),
    /// SO_SNDBUF.
    SendBuffer(u32),
    /// SO_MAX_MSG_SIZE (read-only).
    MaxMessageSize(u32),
    /// SO_ERROR (read-only).
    Error(Option<WsaError>),
    /// SO_TYPE (read-only).
    SocketType(i32),
    /// SO_ACCEPTCONN (read-only).
    AcceptConn(bool),
    /// SO_PROTOCOL_INFO (read-only).
    ProtocolInfo(&'static ProtocolEntry),
    /// IP_MULTICAST_TTL / IPV6_MULTICAST_HOPS.
    MulticastTtl(u8),
    /// IP_MULTICAST_LOOP / IPV6_MULTICAST_LOOP.
    MulticastLoop(bool),
    /// SO_CONNDATA: connect data of a rooted multipoint socket.
    ConnectData(Vec<u8>),
}

/// Multicast options exist on datagram sockets only.
fn datagram_only(sock: &Socket) -> Result<(), WsaError> {
    if sock.entry.kind == SocketKind::Datagram {
        Ok(())
    } else {
        Err(WsaError::NoProtoOpt)
    }
}

fn size_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Provider {
    /// WSPIoctl.
    pub fn wsp_ioctl(&mut self, s: u32, command: IoctlCommand) -> Result<IoctlReply, WsaError> {
        if let IoctlCommand::RoutingInterfaceChange(to) = command {
            return self.watch_route(s, to).map(|()| IoctlReply::None);
        }
        if command == IoctlCommand::AddressListChange {
            // Arms FD_ADDRESS_LIST_CHANGE (SPEC AS-13, AS-25): a policy
            // change or an interface change of a granted address.
            self.socket(s)?
                .link
                .feed(Input::Reenabled(Reenable::AddressListChange));
            self.interfaces.start(&self.guard.gate)?;
            return Ok(IoctlReply::None);
        }
        let sock = self.socket(s)?;
        match command {
            IoctlCommand::NonBlocking(on) => {
                // WSPAsyncSelect keeps a registered socket non-blocking.
                if !on && sock.link.is_registered() {
                    return Err(WsaError::Inval);
                }
                sock.nonblocking = on;
                Ok(IoctlReply::None)
            }
            IoctlCommand::BytesReadable => {
                // Only what the guest may read counts.
                if sock.entry.kind == SocketKind::Datagram {
                    sock.purge_refused(&sock.datagram_filter());
                }
                sock.bytes_readable().map(IoctlReply::Bytes)
            }
            IoctlCommand::AtMark => sock.at_mark().map(IoctlReply::Flag),
            IoctlCommand::SetQos(qos) => sock.set_qos(qos).map(|()| IoctlReply::None),
            IoctlCommand::GetQos => {
                // SIO_GET_QOS re-enables FD_QOS (SPEC AS-9, AS-24).
                sock.link.feed(Input::Reenabled(Reenable::GetQos));
                Ok(IoctlReply::Qos(sock.flow().effective()))
            }
            IoctlCommand::RoutingInterfaceChange(_) => Ok(IoctlReply::None),
            IoctlCommand::Flush => {
                sock.overlapped.flush_sends();
                Ok(IoctlReply::None)
            }
            IoctlCommand::AddressListChange => Ok(IoctlReply::None),
        }
    }

    /// SIO_ROUTING_INTERFACE_CHANGE (SPEC AS-13, AS-25): arms
    /// FD_ROUTING_INTERFACE_CHANGE for `to`, a destination the guest may
    /// connect or send to (else WSAEACCES: which interface reaches an
    /// address is the host's to tell only for those).
    fn watch_route(&mut self, s: u32, to: SocketAddr) -> Result<(), WsaError> {
        let sock = self.sockets.get(&s).ok_or(WsaError::NotSock)?;
        sock.check_family(&to)?;
        let policy = self.guard.gate.policy();
        if policy.check(NetUse::Connect, to).is_err() {
            self.guard.check(NetUse::SendTo, to)?;
        }
        sock.link
            .feed(Input::Reenabled(Reenable::RoutingInterfaceChange));
        let link = sock.link.clone();
        self.routes.arm(&link, to)
    }

    /// WSPGetSockOpt.
    pub fn wsp_get_sock_opt(&mut self, s: u32, name: OptName) -> Result<OptValue, WsaError> {
        let sock = self.socket(s)?;
        let stream_only = || {
            if sock.entry.kind == SocketKind::Stream {
                Ok(())
            } else {
                Err(WsaError::NoProtoOpt)
            }
        };
        let r = sock.sock_ref()?;
        Ok(match name {
            OptName::Broadcast => {
                if sock.entry.kind == SocketKind::Stream {
                    return Err(WsaError::NoProtoOpt);
                }
                OptValue::Broadcast(r.broadcast()?)
            }
            OptName::OobInline => {
                stream_only()?;
                OptValue::OobInline(r.out_of_band_inline()?)
            }
            OptName::ReuseAddress if sock.entry.kind == SocketKind::Datagram => {
                OptValue::ReuseAddress(sock.reuse_address)
            }
            OptName::ReuseAddress => OptValue::ReuseAddress(r.reuse_address()?),
            OptName::KeepAlive => {
                stream_only()?;
                OptValue::KeepAlive(r.keepalive()?)
            }
            OptName::TcpNoDelay => {
                stream_only()?;
                OptValue::TcpNoDelay(r.tcp_nodelay()?)
            }
            OptName::Linger => {
                stream_only()?;
                let secs = r
                    .linger()?
                    .map(|d| u16::try_from(d.as_secs()).unwrap_or(u16::MAX));
                OptValue::Linger(secs)
            }
            OptName::ReceiveBuffer => OptValue::ReceiveBuffer(size_u32(r.recv_buffer_size()?)),
            OptName::SendBuffer => OptValue::SendBuffer(size_u32(r.send_buffer_size()?)),
            OptName::MaxMessageSize => OptValue::MaxMessageSize(sock.entry.max_msg_size),
            OptName::Error => OptValue::Error(sock.take_error()),
            OptName::SocketType => OptValue::SocketType(sock.entry.kind.socket_type()),
            OptName::AcceptConn => OptValue::AcceptConn(sock.is_listening()),
            OptName::ProtocolInfo => OptValue::ProtocolInfo(sock.entry),
            OptName::MulticastTtl => {
                datagram_only(sock)?;
                let ttl = match sock.entry.family {
                    super::catalog::Family::V4 => r.multicast_ttl_v4()?,
                    super::catalog::Family::V6 => r.multicast_hops_v6()?,
                };
                OptValue::MulticastTtl(u8::try_from(ttl).unwrap_or(u8::MAX))
            }
            OptName::ConnectData => {
                sock.refresh_connect();
                OptValue::ConnectData(sock.connect_data.clone())
            }
            OptName::MulticastLoop => {
                datagram_only(sock)?;
                OptValue::MulticastLoop(match sock.entry.family {
                    super::catalog::Family::V4 => r.multicast_loop_v4()?,
                    super::catalog::Family::V6 => r.multicast_loop_v6()?,
                })
            }
        })
    }

    /// WSPSetSockOpt; read-only options are `WSAENOPROTOOPT`.
    pub fn wsp_set_sock_opt(&mut self, s: u32, value: &OptValue) -> Result<(), WsaError> {
        // The kernel buffer bytes the guest's other sockets asked for.
        let others: u64 = self
            .sockets
            .iter()
            .filter(|(other, _)| **other != s)
            .map(|(_, sock)| sock.buffer_request.total())
            .sum();
        let budget = self.policy().limits().max_socket_buffer_bytes;
        let Self { guard, sockets, .. } = self;
        let sock = sockets.get_mut(&s).ok_or(WsaError::NotSock)?;
        match value {
            OptValue::ConnectData(data) => {
                if !sock.entry.is_rooted() {
                    return Err(WsaError::NoProtoOpt);
                }
                if data.len() > super::catalog::MAX_CONNECT_DATA {
                    return Err(WsaError::Fault);
                }
                sock.connect_data = data.clone();
                if let Ok(admission) = sock.admission() {
                    admission.set_callee_data(data.clone());
                }
                return Ok(());
            }
            &OptValue::MulticastTtl(asked) => {
                datagram_only(sock)?;
                let ceiling = guard.ttl_ceiling(sock);
                let v6 = sock.entry.family == super::catalog::Family::V6;
                guard.gate.check_ttl(asked, ceiling, v6)?;
                let r = sock.sock_ref()?;
                match sock.entry.family {
                    super::catalog::Family::V4 => r.set_multicast_ttl_v4(u32::from(asked))?,
                    super::catalog::Family::V6 => r.set_multicast_hops_v6(u32::from(asked))?,
                }
                return Ok(());
            }
            &OptValue::MulticastLoop(on) => {
                datagram_only(sock)?;
                let r = sock.sock_ref()?;
                match sock.entry.family {
                    super::catalog::Family::V4 => r.set_multicast_loop_v4(on)?,
                    super::catalog::Family::V6 => r.set_multicast_loop_v6(on)?,
                }
                return Ok(());
            }
            _ => {}
        }
        let is_stream = sock.entry.kind == SocketKind::Stream;
        let r = sock.sock_ref()?;
        match *value {
            OptValue::Broadcast(on) if !is_stream => r.set_broadcast(on)?,
            OptValue::OobInline(on) if is_stream => r.set_out_of_band_inline(on)?,
            // TCP keeps Linux's rule (no port shared with a listener); a
            // datagram socket never shares a port natively, so that no
            // guest can bind a port another process holds and take its
            // datagrams: the option is only remembered.
            OptValue::ReuseAddress(on) if is_stream => r.set_reuse_address(on)?,
            OptValue::ReuseAddress(on) => sock.reuse_address = on,
            OptValue::KeepAlive(on) if is_stream => r.set_keepalive(on)?,
            OptValue::TcpNoDelay(on) if is_stream => r.set_tcp_nodelay(on)?,
            OptValue::Linger(secs) if is_stream => sock.set_linger(secs)?,
            // Kernel buffers count against the guest's budget: a request
            // beyond what is left is clamped to it.
            OptValue::ReceiveBuffer(n) => {
                let mut request = sock.buffer_request;
                let n = request.grant_receive(n, budget.saturating_sub(others));
                r.set_recv_buffer_size(n as usize)?;
                sock.buffer_request = request;
            }
            OptValue::SendBuffer(n) => {
                let mut request = sock.buffer_request;
                let n = request.grant_send(n, budget.saturating_sub(others));
                r.set_send_buffer_size(n as usize)?;
                sock.buffer_request = request;
            }
            _ => return Err(WsaError::NoProtoOpt),
        }
        Ok(())
    }

    /// WSPSetSockOpt of a read-only option (SO_MAX_MSG_SIZE, SO_ERROR,
    /// SO_TYPE, SO_ACCEPTCONN, SO_PROTOCOL_INFO): `WSAENOPROTOOPT`, or
    /// `WSAENOTSOCK` for a bad descriptor.
    pub fn wsp_set_read_only_opt(&mut self, s: u32) -> WsaError {
        match self.socket(s) {
            Ok(_) => WsaError::NoProtoOpt,
            Err(e) => e,
        }
    }
}
