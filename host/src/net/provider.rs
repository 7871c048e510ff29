//! The provider of one guest: its socket table and every WSP call as a
//! Rust method, with the capability checks made before any system call.
//!
//! This is the mechanism the WIT glue calls; it never sees Wasmtime types.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use super::buffers::Buffers;
use super::catalog::{self, ProtocolEntry, SocketKind, SocketRequest};
use super::engine::{EventLink, Remains};
use super::gate::{DenialCounts, DeniedBy, Gate};
use super::queue::MessageQueue;
use super::reactor::Reactor;
use super::rooted::{self, JoinCell, Rooted};
use super::select::{FdEvents, Reenable, SelectState};
use super::socket::{BroadcastProbe, Membership, MsgFlags, Socket, wildcard};
use crate::error::WsaError;
use crate::policy::{
    Denial, Destination, MulticastGrant, MulticastInterface, NetUse, Policy, canonical,
};

/// Direction of `WSPShutdown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownHow {
    /// SD_RECEIVE.
    Receive,
    /// SD_SEND.
    Send,
    /// SD_BOTH.
    Both,
}

/// The role of a joining leaf (`dwFlags` of WSPJoinLeaf, SPEC JL-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinRole {
    /// JL_SENDER_ONLY.
    SenderOnly,
    /// JL_RECEIVER_ONLY.
    ReceiverOnly,
    /// JL_BOTH.
    Both,
}

/// The service asked for in one direction of a flow specification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceType {
    /// No traffic in this direction.
    NoTraffic,
    /// Best effort.
    BestEffort,
    /// Controlled load.
    ControlledLoad,
    /// Guaranteed service.
    Guaranteed,
    /// Not specified.
    NotSpecified,
}

/// A sending QoS request (`lpSQOS`), as far as wasp looks at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QosRequest {
    /// The sending direction's service.
    pub sending: ServiceType,
    /// The receiving direction's service.
    pub receiving: ServiceType,
}

impl QosRequest {
    /// Whether wasp can meet it: it offers best effort only (SPEC JL-8).
    pub fn can_be_met(&self) -> bool {
        let best_effort = |t| {
            matches!(
                t,
                ServiceType::NoTraffic | ServiceType::BestEffort | ServiceType::NotSpecified
            )
        };
        best_effort(self.sending) && best_effort(self.receiving)
    }
}

/// A `WSPIoctl` command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoctlCommand {
    /// FIONBIO: `true` makes the socket non-blocking.
    NonBlocking(bool),
    /// FIONREAD.
    BytesReadable,
    /// SIOCATMARK.
    AtMark,
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

/// The capability checks of one guest's calls, on its [`Gate`].
struct Guard {
    gate: Arc<Gate>,
    broadcast: BroadcastProbe,
}

impl Guard {
    fn deny(&self, denial: Denial) -> WsaError {
        self.gate.deny(denial, DeniedBy::Call)
    }

    fn check(&self, net_use: NetUse, addr: SocketAddr) -> Result<(), WsaError> {
        self.gate.check(net_use, addr)
    }

    fn check_multicast(&self, group: SocketAddr) -> Result<MulticastGrant, WsaError> {
        self.gate.check_multicast(group)
    }

    /// The highest multicast TTL the socket may set: its session's grant's
    /// ceiling, or the highest ceiling of the grants of its family.
    fn ttl_ceiling(&self, sock: &Socket) -> u8 {
        if let Some(m) = &sock.membership {
            return m.max_ttl;
        }
        let v4 = sock.entry.family == super::catalog::Family::V4;
        self.gate
            .policy()
            .multicast_grants()
            .iter()
            .filter(|g| g.groups.addr().is_ipv4() == v4)
            .map(|g| g.max_ttl)
            .max()
            .unwrap_or(0)
    }

    /// Checks an implicit bind (to the wildcard address, port 0) and binds.
    fn implicit_bind(&self, sock: &mut Socket) -> Result<(), WsaError> {
        if sock.bound_addr().is_some() {
            return Ok(());
        }
        let any = wildcard(sock.entry.family);
        self.check(NetUse::Bind, any)?;
        sock.bind(any)
    }

    /// SPEC SE-6: a broadcast destination — any address the kernel treats
    /// as broadcast: the limited broadcast and every subnet-directed one
    /// of a local interface — needs SO_BROADCAST, then the policy's
    /// `broadcast` grant.
    fn check_broadcast(&self, sock: &Socket, to: SocketAddr) -> Result<(), WsaError> {
        if !self.broadcast.is_broadcast(to) {
            return Ok(());
        }
        if !sock.sock_ref()?.broadcast().unwrap_or(false) {
            return Err(self.deny(Denial::BroadcastWithoutFlag(canonical(to))));
        }
        self.check(NetUse::Broadcast, to)
    }

    /// The one decision for an outbound destination of `connect` (under
    /// `net_use` = connect) or `send-to`: a multicast group needs a
    /// `multicast` grant whatever the call, and the socket's TTL and
    /// interface are held to it (a scope id cannot choose another
    /// interface); a broadcast address needs SO_BROADCAST and a
    /// `broadcast` grant; anything else the grants of `net_use`. Binds an
    /// unbound socket (checked as an implicit bind). Returns the address
    /// to use.
    fn destination(
        &self,
        sock: &mut Socket,
        to: SocketAddr,
        net_use: NetUse,
    ) -> Result<SocketAddr, WsaError> {
        if sock.entry.kind == SocketKind::Datagram {
            self.check_broadcast(sock, to)?;
        }
        let grant = match self.gate.policy().check_destination(net_use, to) {
            Ok(Destination::Unicast) => None,
            Ok(Destination::Multicast(grant)) => Some(grant.clone()),
            Err(denial) => return Err(self.deny(denial)),
        };
        if grant.is_some() && sock.entry.kind == SocketKind::Stream {
            // No stream reaches a group: the policy still decides first
            // (the implicit bind too), but nothing is bound.
            if sock.bound_addr().is_none() {
                self.check(NetUse::Bind, wildcard(sock.entry.family))?;
            }
            return Err(WsaError::AddrNotAvail);
        }
        self.implicit_bind(sock)?;
        match grant {
            Some(grant) => {
                sock.prepare_multicast(&grant)?;
                sock.pin_multicast_scope(to, &grant)
            }
            None => Ok(to),
        }
    }
}

/// The sockets of one guest and the WSP calls on them.
pub struct Provider {
    guard: Guard,
    sockets: HashMap<u32, Socket>,
    next_descriptor: u32,
    /// The guest's memory limit: no receive asks the host for more.
    memory_limit: usize,
    /// Where stream receives land before their bytes go to the guest (one
    /// buffer for all the guest's sockets: a receive of 64 bytes into room
    /// for 64 KiB allocates 64 bytes, not 64 KiB).
    recv_scratch: Vec<u8>,
    /// The guest's event reactor (WSPAsyncSelect): watches its registered
    /// sockets and posts into its queues.
    reactor: Arc<Reactor>,
}

impl Provider {
    /// A provider with no sockets, under `policy`; `label` names the guest
    /// in log lines.
    pub fn new(policy: Arc<Policy>, label: impl Into<Arc<str>>) -> Self {
        let gate = Gate::new(policy, label.into());
        Self {
            reactor: Reactor::new(gate.clone()),
            guard: Guard {
                gate,
                broadcast: BroadcastProbe::default(),
            },
            sockets: HashMap::new(),
            next_descriptor: 1,
            memory_limit: usize::MAX,
            recv_scratch: Vec::new(),
        }
    }

    /// The policy this provider enforces.
    pub fn policy(&self) -> &Policy {
        self.guard.gate.policy()
    }

    /// The most recent denial, naming the missing grant.
    pub fn last_denial(&self) -> Option<Denial> {
        self.guard.gate.last_denial()
    }

    /// The guest's denials so far, by reason.
    pub fn denial_counts(&self) -> DenialCounts {
        self.guard.gate.denial_counts()
    }

    /// Number of open sockets.
    pub fn open_sockets(&self) -> usize {
        self.sockets.len()
    }

    fn socket(&mut self, s: u32) -> Result<&mut Socket, WsaError> {
        self.sockets.get_mut(&s).ok_or(WsaError::NotSock)
    }

    fn has_room(&self) -> Result<(), WsaError> {
        if !self.guard.gate.has_room() {
            Err(WsaError::Mfile)
        } else {
            Ok(())
        }
    }

    fn insert(&mut self, mut socket: Socket) -> u32 {
        loop {
            let s = self.next_descriptor;
            self.next_descriptor = match s.wrapping_add(1) {
                0 | u32::MAX => 1,
                next => next,
            };
            if let std::collections::hash_map::Entry::Vacant(slot) = self.sockets.entry(s) {
                socket.link = EventLink::new(s);
                slot.insert(socket);
                return s;
            }
        }
    }

    /// Bounds every receive by the guest's memory limit as well as the
    /// policy's `max-recv-len`: the bytes have to fit in the guest anyway.
    pub fn set_memory_limit(&mut self, bytes: usize) {
        self.memory_limit = bytes;
    }

    fn recv_cap(&self, max_len: u32) -> usize {
        (max_len.min(self.policy().limits().max_recv_len) as usize).min(self.memory_limit)
    }

    /// WSPSocket (SPEC SO-1..SO-9).
    pub fn wsp_socket(&mut self, req: &SocketRequest) -> Result<u32, WsaError> {
        let entry = catalog::resolve(req)?;
        if let Err(denial) = self.policy().check_protocol(entry.transport) {
            return Err(self.guard.deny(denial));
        }
        self.has_room()?;
        let mut socket = Socket::create(
            entry,
            req.flags,
            self.guard.gate.clone(),
            self.reactor.clone(),
        )?;
        if entry.is_rooted()
            && req
                .flags
                .contains(super::catalog::SocketFlags::MULTIPOINT_C_ROOT)
        {
            socket.rooted = Some(Rooted::Root {
                leaves: Vec::new(),
                pending: None,
            });
        }
        Ok(self.insert(socket))
    }

    /// WSPBind, under the `bind` grants.
    pub fn wsp_bind(&mut self, s: u32, addr: SocketAddr) -> Result<(), WsaError> {
        let Self { guard, sockets, .. } = self;
        let sock = sockets.get_mut(&s).ok_or(WsaError::NotSock)?;
        sock.check_family(&addr)?;
        guard.check(NetUse::Bind, addr)?;
        sock.bind(addr)
    }

    /// WSPListen, under the `listen` grants for the bound address.
    pub fn wsp_listen(&mut self, s: u32, backlog: u32) -> Result<(), WsaError> {
        let Self { guard, sockets, .. } = self;
        let sock = sockets.get_mut(&s).ok_or(WsaError::NotSock)?;
        if sock.entry.kind != SocketKind::Stream {
            return Err(WsaError::OpNotSupp);
        }
        let local = sock.bound_addr().ok_or(WsaError::Inval)?;
        guard.check(NetUse::Listen, local)?;
        sock.listen(backlog.min(crate::policy::MAX_BACKLOG))?;
        sock.restart_watcher()?;
        Ok(())
    }

    /// WSPAccept: takes a connection the listener's admission let in
    /// (peers outside the `accept` grants were reset before the guest
    /// heard of them; rooted joins have sent their caller data). At the
    /// socket quota the call is `WSAEMFILE` and the connection waits; FD_ACCEPT
    /// is not posted again until the guest has room for it.
    pub async fn wsp_accept(&mut self, s: u32) -> Result<(u32, SocketAddr), WsaError> {
        let at_quota = self.has_room().is_err();
        let listener = self.socket(s)?;
        let result = async {
            let admission = listener.admission()?.clone();
            if at_quota {
                admission.refused_at_quota();
                return Err(WsaError::Mfile);
            }
            if listener.blocking() {
                return admission.wait_for_connection().await.ok_or(WsaError::Inval);
            }
            admission
                .take()
                .or_else(|| admission.admit_now())
                .ok_or(WsaError::WouldBlock)
        }
        .await;
        // SPEC AS-10: any accept, failed or not, re-enables FD_ACCEPT.
        listener.link.update(|st| st.reenable(Reenable::Accept));
        let admitted = result?;
        let peer = admitted.peer;
        let accepted = listener.accepted(admitted);
        let listener_link = listener.link.clone();
        let is_root = matches!(listener.rooted, Some(Rooted::Root { .. }));
        let child_s = self.insert(accepted);
        if is_root {
            if let Some(Rooted::Root { leaves, .. }) = &mut self.socket(s)?.rooted {
                leaves.push(child_s);
            }
            self.socket(child_s)?.rooted = Some(Rooted::LeafOfRoot { root: s });
        }
        let child = self.socket(child_s)?;
        // SPEC AS-7: the accepted socket inherits the registration.
        listener_link.inherit_into(&child.link);
        if let Err(err) = child.restart_watcher() {
            self.sockets.remove(&child_s);
            return Err(err);
        }
        Ok((child_s, peer))
    }

    /// WSPConnect, under the `connect` grants (and the implicit bind's).
    pub async fn wsp_connect(&mut self, s: u32, addr: SocketAddr) -> Result<(), WsaError> {
        let Self { guard, sockets, .. } = self;
        let sock = sockets.get_mut(&s).ok_or(WsaError::NotSock)?;
        // SPEC AS-20: "even when it fails immediately", with its error.
        sock.check_family(&addr)
            .map_err(|err| sock.failed_at_once(err))?;
        if addr.ip().is_unspecified() || addr.port() == 0 {
            return Err(WsaError::AddrNotAvail);
        }
        if sock.is_listening() {
            return Err(WsaError::Inval);
        }
        let addr = guard.destination(sock, addr, NetUse::Connect)?;
        let result = sock.connect(addr).await;
        sock.restart_watcher()?;
        result
    }

    /// The policy's bound on the buffers of one send call: more is
    /// `WSAENOBUFS` and nothing is sent (a bad descriptor still comes
    /// first: `WSAENOTSOCK`); then the bytes to send.
    fn check_buffers<'a>(&mut self, s: u32, buffers: &Buffers<'a>) -> Result<&'a [u8], WsaError> {
        let max = self.policy().limits().max_buffers_per_call as usize;
        self.socket(s)?;
        if buffers.count() > max {
            return Err(WsaError::NoBufs);
        }
        buffers.bytes()
    }

    /// WSPSend (SPEC SE-1..SE-8).
    pub async fn wsp_send(
        &mut self,
        s: u32,
        buffers: Buffers<'_>,
        flags: MsgFlags,
        overlapped: Option<u64>,
    ) -> Result<u32, WsaError> {
        let data = self.check_buffers(s, &buffers)?;
        if matches!(self.socket(s)?.rooted, Some(Rooted::Root { .. })) {
            self.socket(s)?.check_send(flags)?;
            let result = self.send_to_leaves(s, data, flags).await;
            return sent(self.socket(s)?, result);
        }
        let sock = self.socket(s)?;
        let result = async {
            sock.check_send(flags)?;
            sock.check_overlapped(overlapped)?;
            match sock.entry.kind {
                SocketKind::Stream => sock.send_stream(data, flags).await,
                SocketKind::Datagram => match (&sock.membership, sock.peer_addr()) {
                    (_, Some(_)) => sock.send_datagram(data, None).await,
                    // A joined session is the default peer (SPEC JL-3).
                    (Some(m), None) if m.sends => {
                        let group = m.group;
                        sock.send_datagram(data, Some(group)).await
                    }
                    (Some(_), None) => Err(WsaError::Shutdown),
                    (None, None) => Err(WsaError::NotConn),
                },
            }
        }
        .await;
        sock.complete_overlapped(overlapped, result);
        sent(sock, result)
    }

    /// WSPSendTo: datagrams under the `send-to` (and `broadcast`) grants;
    /// on a stream socket `to` is ignored, as in Winsock.
    pub async fn wsp_send_to(
        &mut self,
        s: u32,
        buffers: Buffers<'_>,
        flags: MsgFlags,
        to: SocketAddr,
        overlapped: Option<u64>,
    ) -> Result<u32, WsaError> {
        let data = self.check_buffers(s, &buffers)?;
        let Self { guard, sockets, .. } = self;
        let sock = sockets.get_mut(&s).ok_or(WsaError::NotSock)?;
        let result = async {
            sock.check_send(flags)?;
            sock.check_overlapped(overlapped)?;
            match sock.entry.kind {
                SocketKind::Stream => sock.send_stream(data, flags).await,
                SocketKind::Datagram => {
                    sock.check_family(&to)?;
                    if to.ip().is_unspecified() || to.port() == 0 {
                        return Err(WsaError::AddrNotAvail);
                    }
                    if data.len() > sock.entry.max_msg_size as usize {
                        return Err(WsaError::MsgSize);
                    }
                    if sock
                        .membership
                        .as_ref()
                        .is_some_and(|m| m.group == to && !m.sends)
                    {
                        return Err(WsaError::Shutdown);
                    }
                    let to = guard.destination(sock, to, NetUse::SendTo)?;
                    sock.send_datagram(data, Some(to)).await
                }
            }
        }
        .await;
        sock.complete_overlapped(overlapped, result);
        sent(sock, result)
    }

    /// WSPRecv: stream bytes, or one datagram from a peer the policy lets
    /// through (`recv-from` grants, or the connected peer).
    pub async fn wsp_recv(
        &mut self,
        s: u32,
        max_len: u32,
        flags: MsgFlags,
    ) -> Result<Vec<u8>, WsaError> {
        let cap = self.recv_cap(max_len);
        let sock = self.socket(s)?;
        let result = match sock.check_recv(flags) {
            Err(e) => Err(e),
            Ok(()) => match sock.entry.kind {
                SocketKind::Stream => self.recv_stream(s, cap, flags).await,
                SocketKind::Datagram => self.recv_datagram(s, cap, flags).await.map(|(d, _)| d),
            },
        };
        self.received(s, cap, flags, result.as_ref().map(Vec::len));
        result
    }

    /// WSPRecvFrom.
    pub async fn wsp_recv_from(
        &mut self,
        s: u32,
        max_len: u32,
        flags: MsgFlags,
    ) -> Result<(Vec<u8>, SocketAddr), WsaError> {
        let cap = self.recv_cap(max_len);
        let sock = self.socket(s)?;
        let result = match sock.check_recv(flags) {
            Err(e) => Err(e),
            Ok(()) => match sock.entry.kind {
                SocketKind::Stream => match sock.peer_addr() {
                    Some(peer) => self.recv_stream(s, cap, flags).await.map(|d| (d, peer)),
                    None => Err(WsaError::NotConn),
                },
                SocketKind::Datagram => self.recv_datagram(s, cap, flags).await,
            },
        };
        self.received(s, cap, flags, result.as_ref().map(|(d, _)| d.len()));
        result
    }

    /// SPEC AS-9, AS-10: any receive call, failed or not, re-enables
    /// FD_READ and FD_OOB; whether data remains decides whether FD_READ is
    /// due again. A stream receive that got less than `cap` bytes, or
    /// WSAEWOULDBLOCK, left nothing; one that filled its buffer asks
    /// FIONREAD; anything else the event engine looks at.
    fn received(&mut self, s: u32, cap: usize, flags: MsgFlags, got: Result<usize, &WsaError>) {
        let Some(sock) = self.sockets.get(&s) else {
            return;
        };
        if sock.entry.kind != SocketKind::Stream || flags.contains(MsgFlags::OOB) {
            sock.link.update(|st| st.reenable(Reenable::Recv));
            return;
        }
        let remains = match got {
            Ok(n) if flags.contains(MsgFlags::PEEK) && n > 0 => Remains::Data,
            Ok(n) if n > 0 && n < cap && !flags.contains(MsgFlags::WAIT_ALL) => Remains::Nothing,
            Ok(n) if n > 0 => match sock.bytes_readable() {
                Ok(0) => Remains::Nothing,
                Ok(_) => Remains::Data,
                Err(_) => Remains::Unknown,
            },
            Err(WsaError::WouldBlock) => Remains::Nothing,
            _ => Remains::Unknown,
        };
        sock.link.stream_received(remains);
    }

    /// WSPAsyncSelect (SPEC AS-1..AS-7): registers `events` with message
    /// id `msg` on `queue`, makes the socket non-blocking, and starts (or
    /// stops, for an empty mask) the socket's event engine.
    pub fn wsp_async_select(
        &mut self,
        s: u32,
        queue: &Arc<MessageQueue>,
        msg: u32,
        events: FdEvents,
    ) -> Result<(), WsaError> {
        self.socket(s)?;
        // A closed queue, or another guest's (SPEC AS-3).
        if queue.is_closed() || !queue.attach(&self.reactor) {
            return Err(WsaError::Inval);
        }
        let sock = self.socket(s)?;
        sock.nonblocking = true;
        sock.refresh_connect();
        if sock.entry.kind == SocketKind::Datagram {
            // SPEC AS-15: a send is possible on registration, bound or not
            // (send-to binds an unbound socket implicitly).
            sock.link.update(SelectState::datagram_bound);
        }
        sock.link.register(queue, msg, events);
        if let Err(err) = sock.restart_watcher() {
            sock.link.register(queue, msg, FdEvents::empty());
            return Err(err);
        }
        Ok(())
    }

    /// Up to `cap` bytes from stream `s`, received into the provider's
    /// scratch buffer.
    async fn recv_stream(
        &mut self,
        s: u32,
        cap: usize,
        flags: MsgFlags,
    ) -> Result<Vec<u8>, WsaError> {
        let Self {
            sockets,
            recv_scratch,
            ..
        } = self;
        let sock = sockets.get_mut(&s).ok_or(WsaError::NotSock)?;
        sock.recv_stream(cap, flags, recv_scratch).await
    }

    /// One datagram that passes the peer filter: datagrams from peers the
    /// policy refuses are dropped before the guest sees them.
    async fn recv_datagram(
        &mut self,
        s: u32,
        cap: usize,
        flags: MsgFlags,
    ) -> Result<(Vec<u8>, SocketAddr), WsaError> {
        let sock = self.socket(s)?;
        if sock.bound_addr().is_none() {
            return Err(WsaError::Inval);
        }
        let filter = sock.datagram_filter();
        sock.recv_datagram(cap, flags, &filter).await
    }

    /// WSPJoinLeaf (SPEC JL-1..JL-9) for IP multicast: a c_leaf/d_leaf
    /// datagram socket joins the group `name` under the policy's multicast
    /// grants and is itself the returned leaf (JL-3). Returns the leaf's
    /// descriptor and the callee data (always empty for IP multicast).
    pub async fn wsp_join_leaf(
        &mut self,
        s: u32,
        name: SocketAddr,
        caller_data: Option<&[u8]>,
        callee_capacity: u32,
        sqos: Option<QosRequest>,
        role: JoinRole,
    ) -> Result<(u32, Vec<u8>), WsaError> {
        use super::catalog::SocketFlags as F;
        if self.socket(s)?.entry.is_rooted() {
            if sqos.is_some_and(|q| !q.can_be_met()) {
                return Err(WsaError::OpNotSupp);
            }
            let caller_data = caller_data.unwrap_or_default().to_vec();
            return self
                .join_rooted(s, name, caller_data, callee_capacity as usize)
                .await;
        }
        let Self { guard, sockets, .. } = self;
        let sock = sockets.get_mut(&s).ok_or(WsaError::NotSock)?;
        let multipoint = F::MULTIPOINT_C_ROOT
            | F::MULTIPOINT_C_LEAF
            | F::MULTIPOINT_D_ROOT
            | F::MULTIPOINT_D_LEAF;
        if !sock.flags.intersects(multipoint) || sock.entry.kind != SocketKind::Datagram {
            return Err(WsaError::OpNotSupp);
        }
        sock.check_family(&name)?;
        if name.ip().is_unspecified() || name.port() == 0 || !name.ip().is_multicast() {
            return Err(WsaError::AddrNotAvail);
        }
        if sock.membership.is_some() {
            return Err(WsaError::IsConn);
        }
        // JL-7: IP multicast carries no user data.
        if caller_data.is_some_and(|d| !d.is_empty()) {
            return Err(WsaError::ProtoNoSupport);
        }
        // JL-8: only best effort can be met.
        if sqos.is_some_and(|q| !q.can_be_met()) {
            return Err(WsaError::OpNotSupp);
        }
        let grant = guard.check_multicast(name)?;
        let receives = role != JoinRole::SenderOnly;
        // JL-1: an unbound socket is bound first: receivers to the group's
        // address and port (shared with other members), senders to the
        // grant's interface. The multicast grant covers this bind.
        if sock.bound_addr().is_none() {
            if receives {
                sock.sock_ref()?.set_reuse_address(true)?;
                bind_on_group_port(sockets, s, name)?;
            } else {
                let local = match &grant.interface {
                    MulticastInterface::V4(interface) => SocketAddr::new((*interface).into(), 0),
                    MulticastInterface::V6(_) | MulticastInterface::V6Named(_) => {
                        wildcard(sock.entry.family)
                    }
                };
                sock.bind(local)?;
            }
        }
        let sock = sockets.get_mut(&s).ok_or(WsaError::NotSock)?;
        sock.prepare_multicast(&grant)?;
        if receives {
            sock.join_group(&name, &grant)?;
        }
        sock.membership = Some(Membership {
            group: name,
            sends: role != JoinRole::ReceiverOnly,
            receives,
            source: grant.source,
            max_ttl: grant.max_ttl,
        });
        // JL-5, AS-20: the join's outcome is FD_CONNECT on the socket.
        sock.link.update(|st| {
            st.connect_started();
            st.connect_finished(None);
        });
        // Its inbound filter now includes the membership.
        sock.restart_watcher()?;
        Ok((s, Vec::new()))
    }

    /// WSPJoinLeaf on wasp's rooted multipoint protocol (SPEC JL-4..JL-7).
    ///
    /// On a c_leaf socket `name` is a listening root: the socket connects,
    /// hands over the caller data and gets the root's callee data; it is
    /// itself the returned leaf. On a c_root socket `name` is a listening
    /// leaf to add: a new c_leaf descriptor is created for it, carrying the
    /// root's properties and registration. Blocking joins return when the
    /// handshake is over; non-blocking ones return the descriptor at once
    /// and report the outcome as FD_CONNECT on `s` (JL-5).
    async fn join_rooted(
        &mut self,
        s: u32,
        name: SocketAddr,
        caller_data: Vec<u8>,
        callee_capacity: usize,
    ) -> Result<(u32, Vec<u8>), WsaError> {
        use super::catalog::SocketFlags as F;
        if caller_data.len() > super::catalog::MAX_CONNECT_DATA {
            return Err(WsaError::Fault);
        }
        let sock = self.socket(s)?;
        sock.check_family(&name)?;
        if name.ip().is_unspecified() || name.port() == 0 {
            return Err(WsaError::AddrNotAvail);
        }
        let is_root = sock.flags.contains(F::MULTIPOINT_C_ROOT);
        if !is_root && !sock.flags.contains(F::MULTIPOINT_C_LEAF) {
            return Err(WsaError::OpNotSupp);
        }
        sock.refresh_connect();
        let pending = match &sock.rooted {
            Some(Rooted::Root { pending, .. }) => *pending,
            _ => None,
        };
        let (joining_now, joined) = (sock.join.is_some(), sock.joined);
        // The policy decides before anything is created or kept: a denied
        // join leaves no trace (no descriptor, no session entry).
        self.guard.check(NetUse::Connect, name)?;
        let leaf = if is_root {
            // A root-initiated join binds its new leaf implicitly.
            let family = self.socket(s)?.entry.family;
            self.guard.check(NetUse::Bind, wildcard(family))?;
            // JL-4: at most one root-initiated join outstanding.
            if let Some(p) = pending
                && let Some(joining) = self.sockets.get_mut(&p)
            {
                joining.refresh_connect();
                if joining.join.is_some() {
                    return Err(WsaError::Already);
                }
            }
            self.has_room()?;
            let gate = self.guard.gate.clone();
            let reactor = self.reactor.clone();
            let root = self.socket(s)?;
            let flags = (root.flags - F::MULTIPOINT_C_ROOT - F::MULTIPOINT_D_ROOT)
                | F::MULTIPOINT_C_LEAF
                | F::MULTIPOINT_D_LEAF;
            let mut leaf = Socket::create(root.entry, flags, gate, reactor)?;
            leaf.nonblocking = root.nonblocking;
            leaf.rooted = Some(Rooted::LeafOfRoot { root: s });
            let root_link = root.link.clone();
            let leaf_s = self.insert(leaf);
            root_link.inherit_into(&self.socket(leaf_s)?.link);
            if let Some(Rooted::Root { leaves, pending }) = &mut self.socket(s)?.rooted {
                leaves.push(leaf_s);
                *pending = Some(leaf_s);
            }
            leaf_s
        } else {
            // JL-6: one join at a time; a joined leaf stays joined.
            if joining_now {
                return Err(WsaError::Already);
            }
            if joined {
                return Err(WsaError::IsConn);
            }
            s
        };
        let original = self.socket(s)?.link.clone();
        let Self { guard, sockets, .. } = self;
        let joining = sockets.get_mut(&leaf).ok_or(WsaError::NotSock)?;
        let started = async {
            guard.implicit_bind(joining)?;
            joining.start_stream_connect(name)
        }
        .await;
        let stream = match started {
            Ok(stream) => stream,
            Err(err) => {
                self.forget_failed_leaf(s, leaf);
                return Err(err);
            }
        };
        original.update(SelectState::connect_started);
        let cell = JoinCell::new();
        joining.join = Some(cell.clone());
        let task = tokio::spawn(rooted::initiate(
            stream,
            caller_data,
            callee_capacity,
            cell.clone(),
            original,
            joining.link.clone(),
        ));
        joining.join_task = Some(task.abort_handle());
        joining.restart_watcher()?;
        if !self.socket(s)?.blocking() {
            return Ok((leaf, Vec::new()));
        }
        let _ = task.await;
        let joined = self.socket(leaf)?;
        joined.refresh_connect();
        joined.restart_watcher()?;
        match cell.outcome() {
            Some(Ok(callee_data)) => Ok((leaf, callee_data)),
            Some(Err(err)) => {
                self.forget_failed_leaf(s, leaf);
                Err(err)
            }
            None => Err(WsaError::InProgress),
        }
    }

    /// Drops the descriptor of a root-initiated join that failed, and its
    /// place in the root's session.
    fn forget_failed_leaf(&mut self, root: u32, leaf: u32) {
        if leaf == root {
            return;
        }
        self.sockets.remove(&leaf);
        if let Some(Some(Rooted::Root { leaves, pending })) =
            self.sockets.get_mut(&root).map(|r| r.rooted.as_mut())
        {
            leaves.retain(|l| *l != leaf);
            if *pending == Some(leaf) {
                *pending = None;
            }
        }
    }

    /// A c_root's send: the same bytes to every leaf still in the session
    /// (SPEC JL-4, rooted data plane), each sent whole, one leaf after the
    /// other. A leaf that has not taken its copy within
    /// [`rooted::FANOUT_STALL`] is dropped from the session, so one stalled
    /// leaf cannot hold the root.
    async fn send_to_leaves(
        &mut self,
        s: u32,
        data: &[u8],
        flags: MsgFlags,
    ) -> Result<u32, WsaError> {
        let leaves = match &self.socket(s)?.rooted {
            Some(Rooted::Root { leaves, .. }) => leaves.clone(),
            _ => return Err(WsaError::NotConn),
        };
        let mut reached = 0;
        let mut gone = Vec::new();
        for leaf in leaves {
            let Some(sock) = self.sockets.get_mut(&leaf) else {
                gone.push(leaf);
                continue;
            };
            sock.refresh_connect();
            let was_nonblocking = std::mem::replace(&mut sock.nonblocking, false);
            let sent =
                tokio::time::timeout(rooted::FANOUT_STALL, sock.send_stream(data, flags)).await;
            sock.nonblocking = was_nonblocking;
            match sent {
                Ok(Ok(_)) => reached += 1,
                Ok(Err(_)) => {}
                Err(_) => {
                    // A leaf that has not taken its copy within FANOUT_STALL
                    // is dropped from the session (reset): the leaf sees
                    // FD_CLOSE with WSAECONNRESET.
                    if let Ok(r) = sock.sock_ref() {
                        let _ = r.set_linger(Some(std::time::Duration::ZERO));
                        let _ = r.shutdown(std::net::Shutdown::Both);
                    }
                    gone.push(leaf);
                }
            }
        }
        if let Some(Rooted::Root { leaves, .. }) = &mut self.socket(s)?.rooted {
            leaves.retain(|l| !gone.contains(l));
        }
        if reached == 0 {
            return Err(WsaError::NotConn);
        }
        Ok(data.len() as u32)
    }

    /// WSPShutdown.
    pub fn wsp_shutdown(&mut self, s: u32, how: ShutdownHow) -> Result<(), WsaError> {
        let (send, recv) = match how {
            ShutdownHow::Receive => (false, true),
            ShutdownHow::Send => (true, false),
            ShutdownHow::Both => (true, true),
        };
        self.socket(s)?.shutdown(send, recv)
    }

    /// WSPCloseSocket: the descriptor is gone at once; the native socket
    /// closes as its SO_LINGER says, in the background: a blocking socket's
    /// close waits for it (only this guest waits), a non-blocking one
    /// returns at once. A lingering socket counts against the socket quota
    /// until it is done.
    pub async fn wsp_close_socket(&mut self, s: u32) -> Result<(), WsaError> {
        let mut sock = self.sockets.remove(&s).ok_or(WsaError::NotSock)?;
        let lingering = sock.begin_close();
        let blocking = sock.blocking();
        drop(sock);
        if let Some(lingering) = lingering
            && blocking
        {
            let _ = lingering.await;
        }
        Ok(())
    }

    /// WSPIoctl.
    pub fn wsp_ioctl(&mut self, s: u32, command: IoctlCommand) -> Result<IoctlReply, WsaError> {
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
        }
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
                if asked > ceiling {
                    return Err(guard.deny(Denial::MulticastTtl { asked, ceiling }));
                }
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

    /// WSPGetSockName: `WSAEINVAL` while unbound, as in Winsock.
    pub fn wsp_get_sock_name(&mut self, s: u32) -> Result<SocketAddr, WsaError> {
        self.socket(s)?.bound_addr().ok_or(WsaError::Inval)
    }

    /// WSPGetPeerName.
    pub fn wsp_get_peer_name(&mut self, s: u32) -> Result<SocketAddr, WsaError> {
        let sock = self.socket(s)?;
        sock.refresh_connect();
        sock.peer_addr().ok_or(WsaError::NotConn)
    }

    /// WSPGetOverlappedResult (SPEC SE-7).
    pub fn wsp_get_overlapped_result(&mut self, s: u32, token: u64) -> Result<u32, WsaError> {
        self.socket(s)?.overlapped_result(token)
    }
}

/// SPEC JL-1: binds receiving leaf `s` implicitly to its group's address
/// and port, beside the guest's own datagram sockets already bound to that
/// port (on the wildcard, as Windows lets a specific bind sit beside a
/// wildcard one). Linux shares a UDP port only among sockets that all have
/// SO_REUSEADDR, which wasp never leaves set on a guest's socket bound to
/// an ordinary address (another program could then bind beside it): it is
/// set on the guest's own sockets for the moment of the bind only.
fn bind_on_group_port(
    sockets: &mut HashMap<u32, Socket>,
    s: u32,
    group: SocketAddr,
) -> Result<(), WsaError> {
    let family = sockets.get(&s).ok_or(WsaError::NotSock)?.entry.family;
    let neighbours: Vec<u32> = sockets
        .iter()
        .filter(|(other, sock)| {
            **other != s
                && sock.entry.kind == SocketKind::Datagram
                && sock.entry.family == family
                && sock.bound_addr().is_some_and(|a| a.port() == group.port())
                && sock
                    .sock_ref()
                    .is_ok_and(|r| r.reuse_address().is_ok_and(|on| !on))
        })
        .map(|(&other, _)| other)
        .collect();
    let share = |sockets: &HashMap<u32, Socket>, on: bool| {
        for sock in neighbours.iter().filter_map(|n| sockets.get(n)) {
            if let Ok(r) = sock.sock_ref() {
                let _ = r.set_reuse_address(on);
            }
        }
    };
    share(sockets, true);
    let bound = match sockets.get_mut(&s) {
        Some(sock) => sock.bind(group),
        None => Err(WsaError::NotSock),
    };
    share(sockets, false);
    bound
}

/// Multicast options exist on datagram sockets only.
fn datagram_only(sock: &Socket) -> Result<(), WsaError> {
    if sock.entry.kind == SocketKind::Datagram {
        Ok(())
    } else {
        Err(WsaError::NoProtoOpt)
    }
}

/// SPEC AS-9, AS-10, AS-15: any send re-enables FD_WRITE; one that would
/// block makes FD_WRITE owed for when room comes back.
fn sent(sock: &Socket, result: Result<u32, WsaError>) -> Result<u32, WsaError> {
    sock.link.sent(result == Err(WsaError::WouldBlock));
    result
}

fn size_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    //! Mechanism tests: the provider on real loopback sockets, no guest.

    use super::*;
    use crate::net::catalog::{
        AF_INET, IPPROTO_TCP, IPPROTO_UDP, SOCK_DGRAM, SOCK_STREAM, SocketFlags,
    };
    use crate::policy::{PolicyBuilder, Transport};

    fn loopback() -> Provider {
        let net = "127.0.0.0/8".parse().unwrap();
        let any = "0.0.0.0/32".parse().unwrap();
        let policy = Policy::builder()
            .allow_protocol(Transport::Tcp)
            .allow_protocol(Transport::Udp)
            .grant(NetUse::Bind, net, 0..=u16::MAX)
            .grant(NetUse::Bind, any, 0..=0)
            .grant(NetUse::Listen, net, 0..=u16::MAX)
            .grant(NetUse::Accept, net, 0..=u16::MAX)
            .grant(NetUse::Connect, net, 0..=u16::MAX)
            .grant(NetUse::SendTo, net, 0..=u16::MAX)
            .grant(NetUse::RecvFrom, net, 0..=u16::MAX)
            .build();
        Provider::new(Arc::new(policy), "test")
    }

    /// UDP on 127.0.0.0/8, datagrams admitted from `recv_from` only.
    fn udp_policy(recv_from: &str) -> PolicyBuilder {
        let net = "127.0.0.0/8".parse().unwrap();
        Policy::builder()
            .allow_protocol(Transport::Udp)
            .grant(NetUse::Bind, net, 0..=u16::MAX)
            .grant(NetUse::SendTo, net, 0..=u16::MAX)
            .grant(NetUse::RecvFrom, recv_from.parse().unwrap(), 0..=u16::MAX)
    }

    fn request(socket_type: i32, protocol: i32) -> SocketRequest {
        SocketRequest {
            af: AF_INET,
            socket_type,
            protocol,
            info: None,
            group: 0,
            flags: SocketFlags::empty(),
        }
    }

    fn any_port() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    #[tokio::test]
    async fn a_stream_pair_moves_data_both_ways() {
        let mut p = loopback();
        let listener = p.wsp_socket(&request(SOCK_STREAM, IPPROTO_TCP)).unwrap();
        p.wsp_bind(listener, any_port()).unwrap();
        p.wsp_listen(listener, 8).unwrap();
        let addr = p.wsp_get_sock_name(listener).unwrap();
        let client = p.wsp_socket(&request(SOCK_STREAM, IPPROTO_TCP)).unwrap();
        p.wsp_connect(client, addr).await.unwrap();
        let (server, peer) = p.wsp_accept(listener).await.unwrap();
        assert_eq!(peer, p.wsp_get_sock_name(client).unwrap());
        let sent = p
            .wsp_send(
                client,
                Buffers::new(b"abcd", &[2, 2]),
                MsgFlags::empty(),
                None,
            )
            .await;
        assert_eq!(sent, Ok(4));
        let got = p.wsp_recv(server, 4, MsgFlags::WAIT_ALL).await.unwrap();
        assert_eq!(got, b"abcd");
        assert_eq!(p.open_sockets(), 3);
        p.wsp_close_socket(client).await.unwrap();
        assert_eq!(p.wsp_recv(server, 4, MsgFlags::empty()).await.unwrap(), b"");
        assert_eq!(p.wsp_close_socket(client).await, Err(WsaError::NotSock));
    }

    #[tokio::test]
    async fn denials_come_before_any_system_call_and_name_the_grant() {
        let mut p = Provider::new(
            Arc::new(Policy::builder().allow_protocol(Transport::Udp).build()),
            "test",
        );
        let s = p.wsp_socket(&request(SOCK_DGRAM, IPPROTO_UDP)).unwrap();
        let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let sent = p
            .wsp_send_to(s, Buffers::one(b"x"), MsgFlags::empty(), to, None)
            .await;
        assert_eq!(sent, Err(WsaError::Acces));
        assert_eq!(
            p.last_denial().unwrap().to_string(),
            "no `send-to` grant covers 127.0.0.1:9"
        );
        // Nothing was bound: the implicit bind never happened.
        assert_eq!(p.wsp_get_sock_name(s), Err(WsaError::Inval));
    }

    #[tokio::test]
    async fn a_datagram_larger_than_the_maximum_is_refused_whole() {
        let mut p = loopback();
        let s = p.wsp_socket(&request(SOCK_DGRAM, IPPROTO_UDP)).unwrap();
        p.wsp_bind(s, any_port()).unwrap();
        let me = p.wsp_get_sock_name(s).unwrap();
        let big = vec![0u8; 65_508];
        let sent = p
            .wsp_send_to(s, Buffers::one(&big), MsgFlags::empty(), me, None)
            .await;
        assert_eq!(sent, Err(WsaError::MsgSize));
        p.wsp_ioctl(s, IoctlCommand::NonBlocking(true)).unwrap();
        let got = p.wsp_recv(s, 70_000, MsgFlags::empty()).await;
        assert_eq!(got, Err(WsaError::WouldBlock));
    }

    #[tokio::test]
    async fn a_denied_root_join_leaves_nothing_behind() {
        // Issue 8 point 8: every denied root-initiated join left its leaf
        // in the root's session (+14 MiB over 2.6 M denials).
        let policy = Policy::builder().allow_protocol(Transport::Tcp).build();
        let mut p = Provider::new(Arc::new(policy), "test");
        let root = p
            .wsp_socket(&SocketRequest {
                protocol: crate::net::catalog::IPPROTO_WASP_RMP,
                flags: SocketFlags::MULTIPOINT_C_ROOT | SocketFlags::MULTIPOINT_D_ROOT,
                ..request(SOCK_STREAM, 0)
            })
            .unwrap();
        let leaf: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for _ in 0..1000 {
            let joined = p
                .wsp_join_leaf(root, leaf, None, 0, None, JoinRole::Both)
                .await;
            assert_eq!(joined, Err(WsaError::Acces));
        }
        assert_eq!(p.open_sockets(), 1);
        assert_eq!(
            p.sockets[&root].rooted,
            Some(Rooted::Root {
                leaves: Vec::new(),
                pending: None
            })
        );
        assert_eq!(p.denial_counts().get("address:connect"), Some(&1000));
    }

    #[tokio::test]
    async fn a_scope_id_cannot_send_a_group_out_of_another_interface() {
        // Issue 8 point 6: an IPv6 scope id overrode the interface of the
        // multicast grant. (No datagram is sent here.)
        let mut p = loopback();
        let s = p
            .wsp_socket(&SocketRequest {
                af: crate::net::catalog::AF_INET6,
                ..request(SOCK_DGRAM, IPPROTO_UDP)
            })
            .unwrap();
        let grant = MulticastGrant::loopback("ff15::/16".parse().unwrap(), 0..=u16::MAX);
        let asked = std::net::SocketAddrV6::new("ff15::1".parse().unwrap(), 5000, 0, 999);
        let pinned = p.sockets[&s]
            .pin_multicast_scope(SocketAddr::V6(asked), &grant)
            .unwrap();
        let SocketAddr::V6(pinned) = pinned else {
            panic!("still IPv6")
        };
        // Index 0 in a grant stands for loopback, which Linux numbers 1.
        assert_eq!(pinned.scope_id(), 1);
        assert_eq!(*pinned.ip(), *asked.ip());
    }

    #[tokio::test]
    async fn refused_datagrams_are_purged_before_anything_sees_them() {
        let mut p = Provider::new(Arc::new(udp_policy("127.0.0.9/32").build()), "test");
        let a = p.wsp_socket(&request(SOCK_DGRAM, IPPROTO_UDP)).unwrap();
        p.wsp_bind(a, any_port()).unwrap();
        let me = p.wsp_get_sock_name(a).unwrap();
        let b = p.wsp_socket(&request(SOCK_DGRAM, IPPROTO_UDP)).unwrap();
        p.wsp_bind(b, any_port()).unwrap();
        let queue = MessageQueue::new(8);
        p.wsp_async_select(a, &queue, 9, FdEvents::READ).unwrap();
        p.wsp_send_to(b, Buffers::one(b"refused"), MsgFlags::empty(), me, None)
            .await
            .unwrap();
        let posted = queue.get(Some(std::time::Duration::from_millis(200))).await;
        assert_eq!(posted, None, "no FD_READ for a refused datagram");
        assert_eq!(
            p.wsp_ioctl(a, IoctlCommand::BytesReadable),
            Ok(IoctlReply::Bytes(0))
        );
        assert_eq!(p.denial_counts().get("address:recv-from"), Some(&1));
    }

    #[tokio::test]
    async fn a_receive_never_asks_the_host_for_more_than_the_guest_can_hold() {
        // Issue 8 point 8: a 1 GiB MSG_WAITALL receive took the host to
        // 1 GiB under a policy allowing it.
        let policy = udp_policy("127.0.0.0/8").max_recv_len(u32::MAX).build();
        let mut p = Provider::new(Arc::new(policy), "test");
        p.set_memory_limit(1000);
        let s = p.wsp_socket(&request(SOCK_DGRAM, IPPROTO_UDP)).unwrap();
        p.wsp_bind(s, any_port()).unwrap();
        let me = p.wsp_get_sock_name(s).unwrap();
        p.wsp_send_to(s, Buffers::one(&[7u8; 4000]), MsgFlags::empty(), me, None)
            .await
            .unwrap();
        // The datagram does not fit in what the guest can hold.
        let got = p.wsp_recv(s, u32::MAX, MsgFlags::WAIT_ALL).await;
        assert_eq!(got, Err(WsaError::MsgSize));
        assert_eq!(p.recv_cap(u32::MAX), 1000);
    }

    #[tokio::test]
    async fn closing_a_listener_frees_its_port_at_once() {
        // Found by the real-socket deny matrix: the admitting task kept the
        // listener open until the runtime next ran it, so closesocket and
        // an immediate bind of the same port was WSAEADDRINUSE.
        let mut p = loopback();
        let listener = p.wsp_socket(&request(SOCK_STREAM, IPPROTO_TCP)).unwrap();
        p.wsp_bind(listener, any_port()).unwrap();
        p.wsp_listen(listener, 8).unwrap();
        let queue = MessageQueue::new(8);
        p.wsp_async_select(listener, &queue, 1, FdEvents::ACCEPT)
            .unwrap();
        let addr = p.wsp_get_sock_name(listener).unwrap();
        p.wsp_close_socket(listener).await.unwrap();
        let again = p.wsp_socket(&request(SOCK_STREAM, IPPROTO_TCP)).unwrap();
        assert_eq!(p.wsp_bind(again, addr), Ok(()));
    }

    #[tokio::test]
    async fn a_stream_connect_to_a_granted_group_binds_nothing() {
        let policy = Policy::builder()
            .allow_protocol(Transport::Tcp)
            .grant(NetUse::Bind, "0.0.0.0/32".parse().unwrap(), 0..=0)
            .grant_multicast(MulticastGrant::loopback(
                "239.255.82.0/24".parse().unwrap(),
                0..=u16::MAX,
            ))
            .build();
        let mut p = Provider::new(Arc::new(policy), "test");
        let s = p.wsp_socket(&request(SOCK_STREAM, IPPROTO_TCP)).unwrap();
        let group: SocketAddr = "239.255.82.1:5000".parse().unwrap();
        assert_eq!(p.wsp_connect(s, group).await, Err(WsaError::AddrNotAvail));
        assert_eq!(p.wsp_get_sock_name(s), Err(WsaError::Inval));
    }

    #[tokio::test]
    async fn async_select_posts_read_then_close_into_the_queue() {
        let mut p = loopback();
        let a = p.wsp_socket(&request(SOCK_DGRAM, IPPROTO_UDP)).unwrap();
        p.wsp_bind(a, any_port()).unwrap();
        let me = p.wsp_get_sock_name(a).unwrap();
        let queue = MessageQueue::new(8);
        p.wsp_async_select(a, &queue, 9, FdEvents::READ).unwrap();
        p.wsp_send_to(a, Buffers::one(b"ping"), MsgFlags::empty(), me, None)
            .await
            .unwrap();
        let message = queue
            .get(Some(std::time::Duration::from_secs(10)))
            .await
            .expect("FD_READ posted");
        assert_eq!((message.msg, message.socket), (9, a));
        assert_eq!(message.notice.event, FdEvents::READ);
        // AS-4: the socket is now non-blocking.
        p.wsp_recv(a, 10, MsgFlags::empty()).await.unwrap();
        assert_eq!(
            p.wsp_recv(a, 10, MsgFlags::empty()).await,
            Err(WsaError::WouldBlock)
        );
        assert_eq!(
            p.wsp_ioctl(a, IoctlCommand::NonBlocking(false)),
            Err(WsaError::Inval)
        );
    }
}
