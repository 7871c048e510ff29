//! One guest socket on the host: its native socket in the state it has
//! reached, its Winsock mode (blocking or not, overlapped or not) and the
//! bookkeeping Winsock requires (shutdown directions, SO_ERROR, overlapped
//! results).
//!
//! Every I/O call first tries the system call itself (so a non-blocking
//! call sees exactly what the kernel has, DESIGN §5 "sockets start not
//! ready"), and only a blocking call that would block waits on tokio's
//! readiness; a blocking call therefore suspends only its own guest.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use bitflags::bitflags;
use socket2::{Domain, SockAddr, SockRef, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::net::{TcpStream, UdpSocket};
use tokio::task::AbortHandle;

use super::admission::{Admission, Admitted};
use super::catalog::{Family, ProtocolEntry, SocketFlags, SocketKind};
use super::engine::{EventLink, Watched};
use super::gate::{DatagramFilter, Gate, SocketSlot};
use super::overlapped::{Native, Overlapped};
use super::qos::{Flow, Qos, Shaper};
use super::reactor::{Reactor, Watch};
use super::rooted::{JoinCell, Rooted};
use super::select::Input;
use super::sys;
use crate::error::WsaError;
use crate::policy::{MulticastGrant, MulticastInterface};

bitflags! {
    /// `MSG_*` flags of the send and receive calls (SPEC SE-5).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
    pub struct MsgFlags: u32 {
        /// MSG_OOB.
        const OOB = 1 << 0;
        /// MSG_PEEK.
        const PEEK = 1 << 1;
        /// MSG_DONTROUTE (ignored, as Winsock allows).
        const DONT_ROUTE = 1 << 2;
        /// MSG_PARTIAL (unsupported: WSAEOPNOTSUPP).
        const PARTIAL = 1 << 3;
        /// MSG_WAITALL.
        const WAIT_ALL = 1 << 4;
    }
}

/// A datagram socket's membership of an IP multicast session (SPEC JL-3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    /// The group and port joined.
    pub group: SocketAddr,
    /// Whether the socket may send to the group (not JL_RECEIVER_ONLY).
    pub sends: bool,
    /// Whether it joined to receive (not JL_SENDER_ONLY).
    pub receives: bool,
    /// The grant's source filter: only these senders reach the guest.
    pub source: Option<ipnet::IpNet>,
    /// The grant's TTL / hop-limit ceiling.
    pub max_ttl: u8,
}

impl Membership {
    /// Whether a datagram from `from` may reach the guest.
    pub fn admits(&self, from: &SocketAddr) -> bool {
        self.receives
            && self
                .source
                .is_none_or(|s| crate::policy::address::block_contains(&s, from.ip()))
    }
}

/// The kernel buffer sizes a socket was granted (SO_RCVBUF, SO_SNDBUF);
/// the guest's sockets together stay within its policy's
/// `max-socket-buffer-bytes`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BufferRequest {
    receive: u32,
    send: u32,
}

impl BufferRequest {
    /// Bytes asked for by both options.
    pub fn total(&self) -> u64 {
        u64::from(self.receive) + u64::from(self.send)
    }

    /// Grants SO_RCVBUF of `asked` bytes out of `left` (the budget the
    /// guest's other sockets left); returns the size to set.
    pub fn grant_receive(&mut self, asked: u32, left: u64) -> u32 {
        self.receive = clamp_to(asked, left.saturating_sub(u64::from(self.send)));
        self.receive
    }

    /// Grants SO_SNDBUF of `asked` bytes out of `left`.
    pub fn grant_send(&mut self, asked: u32, left: u64) -> u32 {
        self.send = clamp_to(asked, left.saturating_sub(u64::from(self.receive)));
        self.send
    }
}

fn clamp_to(asked: u32, left: u64) -> u32 {
    u32::try_from(u64::from(asked).min(left)).unwrap_or(u32::MAX)
}

/// Where a socket is in its life. Native sockets the event engine watches
/// are shared with it (`Arc`).
pub(crate) enum State {
    /// A stream socket that is neither connected nor listening (maybe bound).
    Idle(socket2::Socket),
    /// A stream socket whose non-blocking connect has not finished.
    Connecting(Arc<TcpStream>),
    /// A stream socket whose connect failed; it may connect again.
    Failed(Arc<TcpStream>),
    /// A connected stream socket.
    Connected(Arc<TcpStream>),
    /// A listening stream socket and the connections admitted for it.
    Listening(Listening),
    /// A datagram socket (bound or not, connected or not).
    Datagram(Arc<UdpSocket>),
    /// Only while a call moves the socket from one state to the next.
    Moving,
}

/// A listening socket: the native listener and its admission.
pub(crate) struct Listening {
    native: Arc<AsyncFd<socket2::Socket>>,
    pub(crate) admission: Arc<Admission>,
}

/// A guest's socket.
pub struct Socket {
    /// The guest's capability gate (inbound filters use it).
    gate: Arc<Gate>,
    /// The guest's event reactor, which watches the socket while it is
    /// registered (WSPAsyncSelect).
    reactor: Arc<Reactor>,
    /// This socket's place in the guest's socket quota (it moves to a
    /// lingering close, which holds it until done).
    slot: Option<SocketSlot>,
    /// The catalogue entry it was created from.
    pub entry: &'static ProtocolEntry,
    /// The `WSPSocket` flags.
    pub flags: SocketFlags,
    /// Winsock blocking mode (FIONBIO); the native socket is always
    /// non-blocking.
    pub nonblocking: bool,
    pub(crate) state: State,
    /// The async-select registration and its delivery (WSPAsyncSelect).
    pub(crate) link: Arc<EventLink>,
    watcher: Option<Watch>,
    /// The multicast session joined with WSPJoinLeaf, if any.
    pub membership: Option<Membership>,
    /// A rooted join in progress (its handshake runs in a task).
    pub(crate) join: Option<Arc<JoinCell>>,
    /// The task of that join: closing the socket cancels it (SPEC JL-5).
    pub(crate) join_task: Option<AbortHandle>,
    /// A leaf that completed its rooted join (a second one is WSAEISCONN).
    pub joined: bool,
    /// Its place in a rooted multipoint session (SPEC JL-4), if any.
    pub rooted: Option<Rooted>,
    /// SO_CONNDATA: a root's callee data for joining leaves; after a join,
    /// the data the peer sent (a leaf's caller data, a root's callee data).
    pub connect_data: Vec<u8>,
    /// SO_REUSEADDR of a datagram socket, as the guest set it (never
    /// applied natively).
    pub reuse_address: bool,
    /// SO_RCVBUF / SO_SNDBUF bytes granted to this socket.
    pub buffer_request: BufferRequest,
    send_shut: bool,
    recv_shut: bool,
    pending_error: Option<WsaError>,
    /// Its overlapped operations (SPEC SE-7..SE-11).
    pub(crate) overlapped: Overlapped,
    /// Its flows (SIO_SET_QOS, JL-8) and their shaper, shared with the
    /// gate (a policy change re-shapes them).
    pub(crate) flow: Arc<std::sync::Mutex<Flow>>,
}

fn domain(family: Family) -> Domain {
    match family {
        Family::V4 => Domain::IPV4,
        Family::V6 => Domain::IPV6,
    }
}

/// The unspecified address of a family, port 0: what an implicit bind uses.
pub fn wildcard(family: Family) -> SocketAddr {
    match family {
        Family::V4 => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        Family::V6 => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    }
}

/// Dissolves a failed connection attempt (`connect` with `AF_UNSPEC`) so
/// that the same socket can connect again.
fn reset_after_failed_connect(native: &socket2::Socket) {
    let _ = rustix::net::connect_unspec(native);
}

fn to_socket_addr(addr: &SockAddr) -> Result<SocketAddr, WsaError> {
    addr.as_socket().ok_or(WsaError::AfNoSupport)
}

fn is_wouldblock(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::WouldBlock
}

/// Runs `op` now, whatever tokio's readiness says (nothing but a blocking
/// wait uses it: the guest's reactor asks the kernel); if it would block
/// and the socket is blocking, waits for readiness on `io` and retries.
macro_rules! run_io {
    ($io:expr, $blocking:expr, $interest:expr, $op:expr) => {{
        #[allow(unused_mut)]
        let mut op = $op;
        match op() {
            Err(e) if $blocking && is_wouldblock(&e) => $io.async_io($interest, op).await,
            other => other,
        }
    }};
}

impl Socket {
    /// Creates the native socket for `entry` (SPEC SO-1). IPv6 sockets are
    /// IPv6-only, as on Windows.
    pub fn create(
        entry: &'static ProtocolEntry,
        flags: SocketFlags,
        gate: Arc<Gate>,
        reactor: Arc<Reactor>,
    ) -> Result<Self, WsaError> {
        let ty = match entry.kind {
            SocketKind::Stream => Type::STREAM,
            SocketKind::Datagram => Type::DGRAM,
        };
        let native = socket2::Socket::new(domain(entry.family), ty, None)?;
        native.set_nonblocking(true)?;
        if entry.family == Family::V6 {
            native.set_only_v6(true)?;
        }
        let state = match entry.kind {
            SocketKind::Stream => State::Idle(native),
            SocketKind::Datagram => State::Datagram(Arc::new(UdpSocket::from_std(native.into())?)),
        };
        Ok(Self::with_state(entry, flags, false, state, gate, reactor))
    }

    fn with_state(
        entry: &'static ProtocolEntry,
        flags: SocketFlags,
        nonblocking: bool,
        state: State,
        gate: Arc<Gate>,
        reactor: Arc<Reactor>,
    ) -> Self {
        let flow = Flow::new(Qos::default(), gate.policy().limits().max_send_rate);
        Self {
            slot: Some(gate.slot()),
            gate,
            reactor,
            entry,
            flags,
            nonblocking,
            state,
            link: EventLink::new(0),
            watcher: None,
            membership: None,
            join: None,
            join_task: None,
            joined: false,
            rooted: None,
            connect_data: Vec::new(),
            reuse_address: false,
            buffer_request: BufferRequest::default(),
            send_shut: false,
            recv_shut: false,
            pending_error: None,
            overlapped: Overlapped::new(0),
            flow: Arc::new(std::sync::Mutex::new(flow)),
        }
    }

    /// What the event engine watches in the current state.
    pub(crate) fn watched(&self) -> Watched {
        match &self.state {
            State::Connecting(s) => match &self.join {
                Some(cell) => Watched::Joining(s.clone(), cell.clone()),
                None => Watched::Connecting(s.clone()),
            },
            State::Connected(s) => Watched::Stream(s.clone()),
            State::Listening(l) => Watched::Listener(l.admission.clone()),
            State::Datagram(u) => Watched::Datagram(u.clone(), self.datagram_filter()),
            State::Idle(_) | State::Failed(_) | State::Moving => Watched::Nothing,
        }
    }

    /// (Re)starts watching this socket in the guest's reactor after its
    /// registration or its state changed; stops when nothing is registered.
    /// `WSAENOBUFS` when the kernel has no room for the watch.
    pub fn restart_watcher(&mut self) -> Result<(), WsaError> {
        self.watcher = None;
        if self.link.is_registered() {
            if let State::Listening(listening) = &self.state {
                // FD_ACCEPT announces only admitted connections.
                listening.admission.admit_in_background();
            }
            self.watcher = Some(self.reactor.watch(&self.link, self.watched())?);
        }
        Ok(())
    }

    /// Whether calls block (the Winsock mode, not the native one).
    pub fn blocking(&self) -> bool {
        !self.nonblocking
    }

    /// A borrowed view of the native socket for options and system calls.
    /// Only a socket whose native socket was lost (a failed registration
    /// with the reactor) has none: WSAENETDOWN.
    pub fn sock_ref(&self) -> Result<SockRef<'_>, WsaError> {
        Ok(match &self.state {
            State::Idle(s) => SockRef::from(s),
            State::Connecting(s) | State::Failed(s) | State::Connected(s) => SockRef::from(&**s),
            State::Listening(s) => SockRef::from(s.native.get_ref()),
            State::Datagram(s) => SockRef::from(&**s),
            State::Moving => return Err(WsaError::NetDown),
        })
    }

    /// The address family's check: an address of the other family is
    /// `WSAEAFNOSUPPORT`.
    pub fn check_family(&self, addr: &SocketAddr) -> Result<(), WsaError> {
        let family = match addr {
            SocketAddr::V4(_) => Family::V4,
            SocketAddr::V6(_) => Family::V6,
        };
        if family == self.entry.family {
            Ok(())
        } else {
            Err(WsaError::AfNoSupport)
        }
    }

    /// The bound local address, or `None` while unbound.
    pub fn bound_addr(&self) -> Option<SocketAddr> {
        let addr = self.sock_ref().ok()?.local_addr().ok()?.as_socket()?;
        (addr.port() != 0).then_some(addr)
    }

    /// Binds the native socket (the policy has been checked by the caller).
    pub fn bind(&mut self, addr: SocketAddr) -> Result<(), WsaError> {
        self.check_family(&addr)?;
        if self.bound_addr().is_some() {
            return Err(WsaError::Inval);
        }
        if !matches!(self.state, State::Idle(_) | State::Datagram(_)) {
            return Err(WsaError::Inval);
        }
        self.sock_ref()?.bind(&addr.into())?;
        if self.entry.kind == SocketKind::Datagram {
            // SPEC AS-15: a connectionless socket can send once bound.
            self.link.feed(Input::DatagramBound);
        }
        Ok(())
    }

    /// Starts listening; the socket must be a bound, idle stream socket.
    /// Its connections are admitted through the guest's gate (the
    /// `accept` filter) in the background; see [`Admission`].
    pub fn listen(&mut self, backlog: u32) -> Result<(), WsaError> {
        match &self.state {
            State::Idle(_) if self.bound_addr().is_some() => {}
            State::Listening(_) => return Ok(()),
            State::Connecting(_) | State::Connected(_) => return Err(WsaError::IsConn),
            State::Datagram(_) => return Err(WsaError::OpNotSupp),
            State::Idle(_) | State::Failed(_) | State::Moving => return Err(WsaError::Inval),
        }
        let State::Idle(native) = std::mem::replace(&mut self.state, State::Moving) else {
            unreachable!()
        };
        let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
        if let Err(e) = native.listen(backlog) {
            self.state = State::Idle(native);
            return Err(e.into());
        }
        match sys::register_listener(native) {
            Ok(listener) => {
                let native = Arc::new(listener);
                let admission = Admission::start(
                    &native,
                    self.gate.clone(),
                    self.link.clone(),
                    self.entry.is_rooted(),
                    self.connect_data.clone(),
                );
                self.state = State::Listening(Listening { native, admission });
                Ok(())
            }
            Err((native, err)) => {
                self.state = State::Idle(native);
                Err(err.into())
            }
        }
    }

    /// The admission of a listening socket.
    pub(crate) fn admission(&self) -> Result<&Arc<Admission>, WsaError> {
        match &self.state {
            State::Listening(l) => Ok(&l.admission),
            _ => Err(WsaError::Inval),
        }
    }

    /// Wraps an admitted connection in a guest socket that inherits this
    /// listener's entry, flags and blocking mode.
    pub fn accepted(&self, admitted: Admitted) -> Socket {
        let mut socket = Self::with_state(
            self.entry,
            self.flags,
            self.nonblocking,
            State::Connected(Arc::new(admitted.stream)),
            self.gate.clone(),
            self.reactor.clone(),
        );
        if let Some(caller_data) = admitted.caller_data {
            socket.connect_data = caller_data;
            socket.joined = true;
        }
        socket
    }

    /// Brings a non-blocking connect up to date: connected, failed (SO_ERROR
    /// set, the socket reusable) or still in progress. The event engine may
    /// have seen the outcome first; it keeps the error in the link.
    pub fn refresh_connect(&mut self) {
        if let Some(cell) = &self.join {
            // A rooted join owns the connection until its handshake ends.
            let Some(outcome) = cell.outcome() else {
                return;
            };
            self.join = None;
            match outcome {
                Ok(callee_data) => {
                    self.connect_data = callee_data;
                    self.joined = true;
                    if let State::Connecting(stream) = &self.state {
                        self.state = State::Connected(stream.clone());
                    }
                }
                Err(err) => {
                    if let State::Connecting(stream) = &self.state {
                        let stream = stream.clone();
                        reset_after_failed_connect(&SockRef::from(&*stream));
                        self.state = State::Failed(stream);
                    }
                    self.pending_error = Some(err);
                }
            }
            return;
        }
        let State::Connecting(stream) = &self.state else {
            return;
        };
        let failure = match self.link.take_connect_error() {
            Some(err) => Some(err),
            None => match stream.take_error() {
                Ok(Some(err)) | Err(err) => Some(WsaError::from(err)),
                Ok(None) => None,
            },
        };
        let stream = stream.clone();
        match failure {
            Some(err) => {
                reset_after_failed_connect(&SockRef::from(&*stream));
                self.state = State::Failed(stream);
                self.pending_error = Some(err);
                self.link.feed(Input::ConnectFinished(Some(err)));
            }
            None if stream.peer_addr().is_ok() => {
                self.state = State::Connected(stream);
                self.link.feed(Input::ConnectFinished(None));
            }
            None => {}
        }
    }

    /// Connects a stream socket, or sets a datagram socket's default peer.
    /// Blocking stream connects wait for the outcome; non-blocking ones
    /// return `WSAEWOULDBLOCK` and finish in the background (FD_CONNECT).
    pub async fn connect(&mut self, addr: SocketAddr) -> Result<(), WsaError> {
        self.check_family(&addr)?;
        self.refresh_connect();
        if let State::Datagram(udp) = &self.state {
            let result = udp.connect(addr).await.map_err(WsaError::from);
            // SPEC AS-20: FD_CONNECT even when connect completes at once.
            self.link.feed(Input::ConnectStarted);
            self.link.feed(Input::ConnectFinished(result.err()));
            return result;
        }
        let stream = self.start_stream_connect(addr)?;
        self.link.feed(Input::ConnectStarted);
        if self.nonblocking {
            // Winsock: the outcome of a non-blocking connect is learnt
            // later (FD_CONNECT, SO_ERROR, getpeername), never at once.
            return Err(WsaError::WouldBlock);
        }
        // Readiness fires on success and on failure alike.
        let _ = stream.writable().await;
        self.refresh_connect();
        match &self.state {
            State::Connected(_) => Ok(()),
            _ => Err(self.pending_error.take().unwrap_or(WsaError::ConnRefused)),
        }
    }

    /// Starts a stream connect: the socket is `Connecting` when this
    /// returns `Ok`. A connect that fails at once reports FD_CONNECT.
    pub fn start_stream_connect(&mut self, addr: SocketAddr) -> Result<Arc<TcpStream>, WsaError> {
        let stream = match std::mem::replace(&mut self.state, State::Moving) {
            State::Idle(native) => match native.connect(&addr.into()) {
                Ok(()) => Arc::new(TcpStream::from_std(native.into())?),
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
                    Arc::new(TcpStream::from_std(native.into())?)
                }
                Err(e) => {
                    reset_after_failed_connect(&SockRef::from(&native));
                    self.state = State::Idle(native);
                    return Err(self.failed_at_once(e.into()));
                }
            },
            State::Failed(stream) => match SockRef::from(&*stream).connect(&addr.into()) {
                Ok(()) => stream,
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => stream,
                Err(e) => {
                    reset_after_failed_connect(&SockRef::from(&*stream));
                    self.state = State::Failed(stream);
                    return Err(self.failed_at_once(e.into()));
                }
            },
            other => {
                let err = match other {
                    State::Connecting(_) => WsaError::Already,
                    State::Connected(_) => WsaError::IsConn,
                    _ => WsaError::Inval,
                };
                self.state = other;
                return Err(err);
            }
        };
        self.state = State::Connecting(stream.clone());
        Ok(stream)
    }

    /// Sets the multicast interface, loopback and TTL / hop limit (at most
    /// `grant.max_ttl`) before the socket sends to or joins a group of
    /// `grant`: multicast leaves the host only as far as the policy says.
    pub fn prepare_multicast(&self, grant: &MulticastGrant) -> Result<(), WsaError> {
        let sock = self.sock_ref()?;
        match &grant.interface {
            MulticastInterface::V4(interface) => {
                sock.set_multicast_if_v4(interface)?;
                sock.set_multicast_loop_v4(true)?;
                let ttl = sock.multicast_ttl_v4()?.min(u32::from(grant.max_ttl));
                sock.set_multicast_ttl_v4(ttl)?;
            }
            v6 => {
                sock.set_multicast_if_v6(self.v6_interface_index(v6)?)?;
                sock.set_multicast_loop_v6(true)?;
                let hops = sock.multicast_hops_v6()?.min(u32::from(grant.max_ttl));
                sock.set_multicast_hops_v6(hops)?;
            }
        }
        Ok(())
    }

    /// `group` with the scope id of the grant's interface (IPv6): a scope
    /// id chosen by the guest cannot send the group's datagrams out of
    /// another interface than the grant's.
    pub fn pin_multicast_scope(
        &self,
        group: SocketAddr,
        grant: &MulticastGrant,
    ) -> Result<SocketAddr, WsaError> {
        match group {
            SocketAddr::V6(mut v6) if !matches!(grant.interface, MulticastInterface::V4(_)) => {
                v6.set_scope_id(self.v6_interface_index(&grant.interface)?);
                Ok(SocketAddr::V6(v6))
            }
            other => Ok(other),
        }
    }

    /// The index of a grant's IPv6 interface; index 0 stands for loopback.
    fn v6_interface_index(&self, interface: &MulticastInterface) -> Result<u32, WsaError> {
        let name = match interface {
            MulticastInterface::V6(0) => "lo",
            MulticastInterface::V6(index) => return Ok(*index),
            MulticastInterface::V6Named(name) => name,
            MulticastInterface::V4(_) => return Err(WsaError::AfNoSupport),
        };
        let sock = self.sock_ref()?;
        rustix::net::netdevice::name_to_index(sock.as_fd(), name)
            .map_err(|e| WsaError::from(io::Error::from(e)))
    }

    /// Joins `group` on the grant's interface (IP_ADD_MEMBERSHIP /
    /// IPV6_JOIN_GROUP). Closing the socket leaves it.
    pub fn join_group(&self, group: &SocketAddr, grant: &MulticastGrant) -> Result<(), WsaError> {
        let sock = self.sock_ref()?;
        match (group.ip(), &grant.interface) {
            (IpAddr::V4(g), MulticastInterface::V4(interface)) => {
                sock.join_multicast_v4(&g, interface)?
            }
            (IpAddr::V6(g), v6 @ (MulticastInterface::V6(_) | MulticastInterface::V6Named(_))) => {
                sock.join_multicast_v6(&g, self.v6_interface_index(v6)?)?;
            }
            _ => return Err(WsaError::AfNoSupport),
        }
        // A member bound elsewhere than its group (the wildcard) receives
        // unicast datagrams too; its filter tells them from the group's by
        // their destination.
        if self.bound_addr() != Some(*group) {
            sys::report_destinations(&sock, group.is_ipv6())?;
        }
        Ok(())
    }

    /// SPEC AS-20: a connect that fails at once still reports FD_CONNECT
    /// with its error.
    pub(crate) fn failed_at_once(&self, err: WsaError) -> WsaError {
        self.link.feed(Input::ConnectStarted);
        self.link.feed(Input::ConnectFinished(Some(err)));
        err
    }

    /// The connected peer, if any.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        match &self.state {
            State::Connected(s) => s.peer_addr().ok(),
            State::Datagram(s) => s.peer_addr().ok(),
            _ => None,
        }
    }

    /// SIO_SET_QOS and the sending QoS of WSPJoinLeaf (SPEC JL-8): the
    /// socket's sends are shaped to `qos` from now on; what wasp cannot
    /// meet is WSAEOPNOTSUPP and changes nothing.
    pub fn set_qos(&mut self, qos: Qos) -> Result<(), WsaError> {
        let ceiling = self.gate.policy().limits().max_send_rate;
        qos.check(ceiling)?;
        *self.flow() = Flow::new(qos, ceiling);
        Ok(())
    }

    /// The socket's flows.
    pub(crate) fn flow(&self) -> std::sync::MutexGuard<'_, Flow> {
        self.flow
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What holds the socket's sends to its flow, if anything does.
    pub(crate) fn shaper(&self) -> Option<Arc<Shaper>> {
        self.flow().shaper.clone()
    }

    /// Whether the socket takes overlapped operations (SPEC SO-3, SE-6:
    /// an overlapped argument on another socket is WSAEINVAL).
    pub fn check_overlapped(&self) -> Result<(), WsaError> {
        if self.flags.contains(SocketFlags::OVERLAPPED) {
            Ok(())
        } else {
            Err(WsaError::Inval)
        }
    }

    /// The native socket an overlapped operation pends on: a connected
    /// stream, or a datagram socket with its inbound filter.
    pub(crate) fn overlapped_native(&self) -> Result<Native, WsaError> {
        match &self.state {
            State::Connected(stream) => Ok(Native::Stream(stream.clone())),
            State::Datagram(udp) => Ok(Native::Datagram(udp.clone(), self.datagram_filter())),
            _ if self.entry.kind == SocketKind::Stream => Err(WsaError::NotConn),
            _ => Err(WsaError::Inval),
        }
    }

    /// The checks every send makes before touching the socket (SPEC SE-5,
    /// SE-6).
    pub fn check_send(&self, flags: MsgFlags) -> Result<(), WsaError> {
        if flags.contains(MsgFlags::PARTIAL) {
            return Err(WsaError::OpNotSupp);
        }
        if flags.contains(MsgFlags::OOB) && self.entry.kind != SocketKind::Stream {
            return Err(WsaError::OpNotSupp);
        }
        if self.send_shut {
            return Err(WsaError::Shutdown);
        }
        Ok(())
    }

    /// Sends `data` (the call's buffers, in order) as one stream write
    /// (SPEC SE-1, SE-3): with `wait` (a blocking socket) everything,
    /// otherwise what fits.
    pub async fn send_stream(
        &mut self,
        data: &[u8],
        flags: MsgFlags,
        wait: bool,
    ) -> Result<u32, WsaError> {
        self.refresh_connect();
        let State::Connected(stream) = &self.state else {
            return Err(WsaError::NotConn);
        };
        let total = u32::try_from(data.len()).map_err(|_| WsaError::NoBufs)?;
        let mut native_flags = libc::MSG_NOSIGNAL;
        if flags.contains(MsgFlags::OOB) {
            native_flags |= libc::MSG_OOB;
        }
        let mut sent = 0u32;
        while sent < total {
            let rest = &data[sent as usize..];
            let result = run_io!(stream, wait, Interest::WRITABLE, || {
                stream_send_once(stream, rest, native_flags)
            });
            match result {
                Ok(n) => {
                    sent += n as u32;
                    if !wait {
                        break;
                    }
                }
                Err(e) if sent > 0 && is_wouldblock(&e) => break,
                Err(e) => return Err(self.send_error(e)),
            }
        }
        if total == 0 {
            // A zero-byte send still checks the connection.
            SockRef::from(stream).send_with_flags(&[], native_flags)?;
        }
        Ok(sent)
    }

    /// The Winsock error of a failed stream send. After the peer's reset
    /// the kernel reports a broken pipe once the reset's error was read —
    /// by the event engine's look at the socket, if it is registered — but
    /// the send fails because of the reset (SPEC SE-6: WSAECONNRESET).
    fn send_error(&self, err: io::Error) -> WsaError {
        match WsaError::from(err) {
            WsaError::Shutdown if !self.send_shut => {
                self.link.close_error().unwrap_or(WsaError::Shutdown)
            }
            other => other,
        }
    }

    /// Sends `data` (the call's buffers, in order) as one datagram to
    /// `to`, or to the connected peer (SPEC SE-1, SE-4). The caller has
    /// checked the policy.
    /// With `wait` (a blocking socket) it waits for room.
    pub async fn send_datagram(
        &mut self,
        data: &[u8],
        to: Option<SocketAddr>,
        wait: bool,
    ) -> Result<u32, WsaError> {
        let State::Datagram(udp) = &self.state else {
            return Err(WsaError::Inval);
        };
        if data.len() > self.entry.max_msg_size as usize {
            return Err(WsaError::MsgSize);
        }
        let sent = run_io!(udp, wait, Interest::WRITABLE, || {
            datagram_send_once(udp, data, to)
        })?;
        Ok(sent as u32)
    }

    /// The checks every receive makes before touching the socket.
    pub fn check_recv(&self, flags: MsgFlags) -> Result<(), WsaError> {
        if flags.contains(MsgFlags::PARTIAL) {
            return Err(WsaError::OpNotSupp);
        }
        if flags.contains(MsgFlags::OOB) {
            if self.entry.kind != SocketKind::Stream {
                return Err(WsaError::OpNotSupp);
            }
            if self.sock_ref()?.out_of_band_inline().unwrap_or(false) {
                return Err(WsaError::Inval);
            }
        }
        if self.recv_shut {
            return Err(WsaError::Shutdown);
        }
        Ok(())
    }

    /// Receives up to `max_len` bytes from a connected stream socket; an
    /// empty result is the peer's graceful close. With `wait` (a blocking
    /// socket) it waits for data. The bytes land in `scratch` first: a
    /// small receive returns a copy of what it got, a large one the buffer
    /// itself.
    pub async fn recv_stream(
        &mut self,
        max_len: usize,
        flags: MsgFlags,
        scratch: &mut Vec<u8>,
        wait: bool,
    ) -> Result<Vec<u8>, WsaError> {
        self.refresh_connect();
        let State::Connected(stream) = &self.state else {
            return Err(WsaError::NotConn);
        };
        let native_flags = recv_flags(flags);
        let interest = match flags.contains(MsgFlags::OOB) {
            true => Interest::PRIORITY,
            false => Interest::READABLE,
        };
        let wait_all = flags.contains(MsgFlags::WAIT_ALL) && wait && native_flags == 0;
        scratch.clear();
        let buf = scratch;
        loop {
            let result = run_io!(stream, wait, interest, || {
                stream_recv_once(stream, buf, max_len - buf.len(), native_flags)
            });
            match result {
                Ok(0) => break,
                Ok(_) => {
                    if !wait_all || buf.len() == max_len {
                        break;
                    }
                }
                // Linux reports "no urgent data" as EINVAL.
                Err(e)
                    if native_flags & libc::MSG_OOB != 0
                        && e.raw_os_error() == Some(libc::EINVAL) =>
                {
                    return Err(WsaError::WouldBlock);
                }
                Err(e) => return Err(e.into()),
            }
        }
        // Half full or more: hand the buffer over (the next receive makes a
        // new one); less: copy what arrived.
        if buf.len() * 2 >= buf.capacity() {
            Ok(std::mem::take(buf))
        } else {
            Ok(buf.as_slice().to_vec())
        }
    }

    /// Receives one datagram of at most `max_len` bytes and its sender,
    /// among those `filter` (this socket's [`Socket::datagram_filter`])
    /// admits: refused ones are dropped first, so that neither their size
    /// (WSAEMSGSIZE) nor their data reaches the guest. A larger datagram
    /// is consumed and reported as `WSAEMSGSIZE`. With `wait` (a blocking
    /// socket) it waits for an admitted datagram.
    pub async fn recv_datagram(
        &mut self,
        max_len: usize,
        flags: MsgFlags,
        filter: &DatagramFilter,
        wait: bool,
    ) -> Result<(Vec<u8>, SocketAddr), WsaError> {
        let State::Datagram(udp) = &self.state else {
            return Err(WsaError::Inval);
        };
        let mut buf = Vec::new();
        let native_flags = recv_flags(flags);
        let (n, from) = run_io!(udp, wait, Interest::READABLE, || {
            datagram_recv_once(udp, filter, &mut buf, max_len, native_flags)
        })?;
        if n > max_len {
            return Err(WsaError::MsgSize);
        }
        Ok((buf, to_socket_addr(&from)?))
    }

    /// Which senders' datagrams may reach the guest now.
    pub fn datagram_filter(&self) -> DatagramFilter {
        // The local address only matters to a session member (whether it
        // is bound to its group): others do not ask the kernel for it.
        let local = self.membership.as_ref().and_then(|_| self.bound_addr());
        DatagramFilter::new(
            self.gate.clone(),
            self.peer_addr(),
            self.membership.clone(),
            local,
        )
    }

    /// Drops the datagrams at the head of the receive queue whose senders
    /// `filter` (this socket's [`Socket::datagram_filter`]) refuses, so that what the guest can read, count
    /// (FIONREAD) or be told about (FD_READ) is admitted.
    pub fn purge_refused(&self, filter: &DatagramFilter) {
        if let State::Datagram(udp) = &self.state {
            purge_refused(udp, filter);
        }
    }

    /// Disables sends, receives or both (WSPShutdown). A stream's send
    /// direction is shut natively (the peer gets our FIN); its receive
    /// direction only in wasp, so that the peer's FIN still shows as the
    /// close indication (SPEC AS-18), and data queued now or arriving later
    /// aborts the connection, as on Windows.
    pub fn shutdown(&mut self, send: bool, recv: bool) -> Result<(), WsaError> {
        self.refresh_connect();
        if let State::Connected(stream) = &self.state {
            let unreadable = recv && !self.recv_shut && unread_bytes(stream) > 0;
            if unreadable {
                // Reset at once: the peer gets no FIN before the reset.
                let aborted = abort_unreadable(stream);
                self.link.feed(Input::CloseArrived(Some(aborted)));
            } else if send {
                SockRef::from(stream).shutdown(std::net::Shutdown::Write)?;
            }
            if recv {
                self.link.shut_receive();
            }
        } else if self.entry.kind == SocketKind::Stream {
            return Err(WsaError::NotConn);
        }
        self.send_shut |= send;
        self.recv_shut |= recv;
        Ok(())
    }

    /// Takes SO_ERROR: the error left by a failed non-blocking connect, or
    /// the native socket's pending error.
    pub fn take_error(&mut self) -> Option<WsaError> {
        self.refresh_connect();
        if let Some(err) = self.pending_error.take() {
            return Some(err);
        }
        match self.sock_ref().map(|r| r.take_error()) {
            Err(err) => Some(err),
            Ok(Ok(Some(err)) | Err(err)) => Some(err.into()),
            Ok(Ok(None)) => None,
        }
    }

    /// Whether the socket is listening (SO_ACCEPTCONN).
    pub fn is_listening(&self) -> bool {
        matches!(self.state, State::Listening(_))
    }

    /// Bytes one receive would return now (FIONREAD).
    pub fn bytes_readable(&self) -> Result<u32, WsaError> {
        let n = rustix::io::ioctl_fionread(self.sock_ref()?.as_fd()).map_err(io::Error::from)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// SIOCATMARK: `true` when no urgent data waits to be read.
    pub fn at_mark(&self) -> Result<bool, WsaError> {
        if self.entry.kind != SocketKind::Stream {
            return Err(WsaError::Inval);
        }
        let mut probe = [0u8; 1];
        let sock = self.sock_ref()?;
        match sys::recv(&sock, &mut probe, libc::MSG_OOB | libc::MSG_PEEK) {
            Ok(_) => Ok(false),
            Err(e) if is_wouldblock(&e) => Ok(false),
            Err(_) => Ok(true),
        }
    }

    /// Sets SO_LINGER (seconds), as `wsp-set-sock-opt` does.
    pub fn set_linger(&self, seconds: Option<u16>) -> Result<(), WsaError> {
        let linger = seconds.map(|s| Duration::from_secs(u64::from(s)));
        self.sock_ref()?.set_linger(linger)?;
        Ok(())
    }
}

/// Tells whether the kernel treats an address as broadcast: the limited
/// broadcast, or a subnet-directed broadcast of any local interface (for
/// example 127.255.255.255 on loopback). It asks the kernel itself: a UDP
/// connect (which sends nothing) to a broadcast route without SO_BROADCAST
/// fails with EACCES.
#[derive(Default)]
pub(crate) struct BroadcastProbe {
    probe: std::sync::OnceLock<Option<socket2::Socket>>,
}

impl BroadcastProbe {
    /// Whether `to` is a broadcast destination.
    pub(crate) fn is_broadcast(&self, to: SocketAddr) -> bool {
        let IpAddr::V4(v4) = crate::policy::canonical(to).ip() else {
            return false;
        };
        if v4.is_broadcast() {
            return true;
        }
        if v4.is_multicast() {
            // A group is never a broadcast address: no need to ask.
            return false;
        }
        let probe = self.probe.get_or_init(|| {
            let probe = socket2::Socket::new(Domain::IPV4, Type::DGRAM, None).ok()?;
            probe.set_broadcast(false).ok()?;
            Some(probe)
        });
        // Without a probe socket, nothing can be sent anyway.
        let Some(probe) = probe else {
            return true;
        };
        let target = SocketAddr::new(IpAddr::V4(v4), to.port().max(1));
        matches!(
            probe.connect(&target.into()),
            Err(e) if e.raw_os_error() == Some(libc::EACCES)
        )
    }
}

/// Most refused datagrams dropped in one look at a socket (the work of one
/// call stays bounded; the next look drops the next ones).
const MAX_PURGE: usize = 256;

/// Bytes waiting to be read on `stream` (FIONREAD; 0 if it cannot say).
pub(crate) fn unread_bytes(stream: &TcpStream) -> u64 {
    rustix::io::ioctl_fionread(stream.as_fd()).unwrap_or(0)
}

/// Resets a connection whose received data can no longer be read (its
/// receive direction was shut), as Windows does: the peer sees
/// WSAECONNRESET, and the socket's own close indication is the local abort,
/// WSAECONNABORTED (SPEC AS-18).
pub(crate) fn abort_unreadable(stream: &TcpStream) -> WsaError {
    let _ = rustix::net::connect_unspec(stream);
    // The reset leaves ECONNRESET pending on the socket; the abort is ours.
    let _ = stream.take_error();
    WsaError::ConnAborted
}

/// The `MSG_*` flags of a receive's system call (MSG_PEEK, MSG_OOB).
pub(crate) fn recv_flags(flags: MsgFlags) -> i32 {
    let mut native_flags = 0;
    if flags.contains(MsgFlags::PEEK) {
        native_flags |= libc::MSG_PEEK;
    }
    if flags.contains(MsgFlags::OOB) {
        native_flags |= libc::MSG_OOB;
    }
    native_flags
}

/// One stream send of `data` that does not wait (SPEC SE-1).
pub(crate) fn stream_send_once(
    stream: &TcpStream,
    data: &[u8],
    native_flags: i32,
) -> io::Result<usize> {
    SockRef::from(stream).send_with_flags(data, native_flags)
}

/// One datagram to `to`, or to the connected peer, that does not wait.
pub(crate) fn datagram_send_once(
    udp: &UdpSocket,
    data: &[u8],
    to: Option<SocketAddr>,
) -> io::Result<usize> {
    let sock = SockRef::from(udp);
    match to {
        Some(to) => sock.send_to_with_flags(data, &SockAddr::from(to), libc::MSG_NOSIGNAL),
        None => sock.send_with_flags(data, libc::MSG_NOSIGNAL),
    }
}

/// One stream receive that does not wait, appending at most `max` bytes
/// to `buf`.
pub(crate) fn stream_recv_once(
    stream: &TcpStream,
    buf: &mut Vec<u8>,
    max: usize,
    native_flags: i32,
) -> io::Result<usize> {
    sys::recv_append(&SockRef::from(stream), buf, max, native_flags)
}

/// One datagram of an admitted sender that does not wait, into `buf`
/// (at most `max` bytes kept; the datagram's own size is returned): the
/// refused ones at the head are dropped first.
pub(crate) fn datagram_recv_once(
    udp: &UdpSocket,
    filter: &DatagramFilter,
    buf: &mut Vec<u8>,
    max: usize,
    native_flags: i32,
) -> io::Result<(usize, SockAddr)> {
    if !purge_refused(udp, filter) {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    buf.clear();
    sys::recv_from_append(
        &SockRef::from(udp),
        buf,
        max,
        native_flags | libc::MSG_TRUNC,
    )
}

/// Drops refused datagrams at the head of `udp`'s receive queue (at most
/// [`MAX_PURGE`]); returns whether an admitted one is now at the head.
pub(crate) fn purge_refused(udp: &UdpSocket, filter: &DatagramFilter) -> bool {
    let sock = SockRef::from(udp);
    let peek = || match filter.needs_destination() {
        true => sys::peek_sender_and_destination(&sock),
        false => sys::recv_from(&sock, &mut [], libc::MSG_PEEK | libc::MSG_DONTWAIT)
            .map(|(_, from)| (from, None)),
    };
    for _ in 0..MAX_PURGE {
        let Ok((from, to)) = peek() else {
            return false;
        };
        match from.as_socket() {
            Some(from) if filter.admits(from, to) => return true,
            _ => {
                let _ = sys::recv(&sock, &mut [], libc::MSG_DONTWAIT | libc::MSG_TRUNC);
            }
        }
    }
    false
}

/// How often a lingering close looks whether its data has gone.
const LINGER_POLL: Duration = Duration::from_millis(10);

/// A close with SO_LINGER, done without blocking any thread: the native
/// socket closes at once (SO_LINGER off) while a duplicate of it is held
/// until the peer has acknowledged every byte, or until the linger time
/// is up, when the connection is reset, as a lingering close does.
async fn linger(duplicate: std::os::fd::OwnedFd, limit: Duration, _slot: Option<SocketSlot>) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match sys::unsent_bytes(&duplicate) {
            Ok(0) | Err(_) => return,
            Ok(_) if tokio::time::Instant::now() >= deadline => {
                let _ = SockRef::from(&duplicate).set_linger(Some(Duration::ZERO));
                return;
            }
            Ok(_) => tokio::time::sleep(LINGER_POLL).await,
        }
    }
}

impl Socket {
    /// Starts closing: nothing more is posted (SPEC AS-19) and a stream
    /// with SO_LINGER set lingers in the background (never blocking the
    /// runtime thread other guests share). Returns the lingering task, for
    /// a blocking socket's close to wait on.
    pub fn begin_close(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        self.link.close();
        let State::Connected(stream) = &self.state else {
            return None;
        };
        let sock = SockRef::from(&**stream);
        let limit = sock.linger().ok().flatten()?;
        let _ = sock.set_linger(None);
        if limit.is_zero() {
            // An abortive close does not wait: keep it.
            let _ = sock.set_linger(Some(Duration::ZERO));
            return None;
        }
        let duplicate = rustix::io::dup(&**stream).ok()?;
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        Some(runtime.spawn(linger(duplicate, limit, self.slot.take())))
    }
}

impl Drop for Socket {
    /// SPEC AS-19: after the guest's own close, nothing more is posted.
    fn drop(&mut self) {
        // A guest that ends with lingering sockets must not block either.
        let _ = self.begin_close();
        self.watcher = None;
        if let Some(join) = self.join_task.take() {
            // Cancelling a join resets its connection (SPEC JL-5).
            if let State::Connecting(stream) = &self.state {
                let _ = SockRef::from(&**stream).set_linger(Some(Duration::ZERO));
            }
            join.abort();
        }
    }
}
