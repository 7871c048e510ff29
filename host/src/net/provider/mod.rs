//! The provider of one guest: its socket table and every WSP call as a
//! Rust method, with the capability checks made before any system call.
//! The calls are split by family: sockets, binding and connections
//! (`connection`), sends and receives (`transfer`), WSPAsyncSelect
//! (`async_select`), WSPJoinLeaf (`join`), options and ioctls (`options`).
//!
//! This is the mechanism the WIT glue calls; it never sees Wasmtime types.

mod async_select;
mod connection;
mod join;
mod options;
mod transfer;

pub use connection::ShutdownHow;
pub use join::JoinRole;
pub use options::{IoctlCommand, IoctlReply, OptName, OptValue};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use super::buffers::Buffers;
use super::catalog::{self, ProtocolEntry, SocketKind, SocketRequest};
use super::engine::{EventLink, Remains};
use super::gate::{DenialCounts, DeniedBy, Gate, PolicyHandle};
use super::meter::Meter;
use super::overlapped::{Lane, Operation, Overlapped, OverlappedArg, OverlappedOutcome};
use super::qos::Qos;
use super::queue::MessageQueue;
use super::reactor::Reactor;
use super::rooted::{self, JoinCell, Rooted};
use super::routes::{InterfaceWatch, RouteWatches};
use super::select::{FdEvents, Input, Reenable};
use super::socket::{BroadcastProbe, Membership, MsgFlags, Socket, wildcard};
use crate::error::WsaError;
use crate::policy::{Denial, MulticastGrant, MulticastInterface, NetUse, Policy, canonical};

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
        let grant = self.gate.check_destination(net_use, to)?;
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

/// A guest's sockets by descriptor. Descriptors are the host's own numbers
/// (a guest names them, never chooses them), so a fast hash is safe.
type Sockets = HashMap<u32, Socket, rustc_hash::FxBuildHasher>;

/// The sockets of one guest and the WSP calls on them.
pub struct Provider {
    guard: Guard,
    sockets: Sockets,
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
    /// Destinations armed with SIO_ROUTING_INTERFACE_CHANGE.
    routes: RouteWatches,
    /// The machine's interfaces, watched once SIO_ADDRESS_LIST_CHANGE was
    /// issued.
    interfaces: InterfaceWatch,
}

impl Provider {
    /// A provider with no sockets, under `policy`; `label` names the guest
    /// in log lines (wasp's tests drive a provider without a guest).
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    pub fn new(policy: Arc<Policy>, label: impl Into<Arc<str>>) -> Self {
        Self::metered(PolicyHandle::new(policy), label, Meter::new())
    }

    /// A provider whose policy `handle` may replace while the guest runs,
    /// and whose guest's activity `meter` counts.
    pub fn metered(handle: PolicyHandle, label: impl Into<Arc<str>>, meter: Arc<Meter>) -> Self {
        let gate = Gate::metered(handle, label.into(), meter);
        Self {
            reactor: Reactor::new(gate.clone()),
            guard: Guard {
                gate,
                broadcast: BroadcastProbe::default(),
            },
            sockets: HashMap::default(),
            next_descriptor: 1,
            memory_limit: usize::MAX,
            recv_scratch: Vec::new(),
            routes: RouteWatches::default(),
            interfaces: InterfaceWatch::default(),
        }
    }

    /// The policy this provider enforces now.
    pub fn policy(&self) -> Arc<Policy> {
        self.guard.gate.policy().clone()
    }

    /// The guest's gate: its policy, quotas and denial telemetry (shared
    /// with the `wasi:sockets` door, see `WaspCtx::govern_wasi_sockets`).
    pub(crate) fn gate(&self) -> &Arc<Gate> {
        &self.guard.gate
    }

    /// The most recent denial, naming the missing grant.
    pub fn last_denial(&self) -> Option<Denial> {
        self.guard.gate.last_denial()
    }

    /// The guest's denials so far, by reason.
    pub fn denial_counts(&self) -> DenialCounts {
        self.guard.gate.denial_counts()
    }

    /// What the guest is doing, counted: held sockets, bytes, messages,
    /// denials (and, under a runner, CPU time and memory).
    pub fn meter(&self) -> &Arc<Meter> {
        self.guard.gate.meter()
    }

    /// Number of open sockets.
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
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
                socket.overlapped = Overlapped::new(s);
                self.guard.gate.track(&socket.link, &socket.flow);
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
        let max_recv_len = self.guard.gate.policy().limits().max_recv_len;
        (max_len.min(max_recv_len) as usize).min(self.memory_limit)
    }

    /// WSPSocket (SPEC SO-1..SO-9).
    pub fn wsp_socket(&mut self, req: &SocketRequest) -> Result<u32, WsaError> {
        let entry = catalog::resolve(req)?;
        self.guard.gate.check_protocol(entry.transport)?;
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
        let got = p
            .wsp_recv(server, 4, MsgFlags::WAIT_ALL, None)
            .await
            .unwrap();
        assert_eq!(got, b"abcd");
        assert_eq!(p.open_sockets(), 3);
        p.wsp_close_socket(client).await.unwrap();
        assert_eq!(
            p.wsp_recv(server, 4, MsgFlags::empty(), None)
                .await
                .unwrap(),
            b""
        );
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
        let got = p.wsp_recv(s, 70_000, MsgFlags::empty(), None).await;
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
        let got = p.wsp_recv(s, u32::MAX, MsgFlags::WAIT_ALL, None).await;
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
    async fn a_queue_is_one_guests_and_another_guests_registration_is_wsaeinval() {
        // SPEC AS-1: the queue (the window) belongs to one guest; only its
        // reactor posts there.
        let mut mine = loopback();
        let mut theirs = loopback();
        let queue = MessageQueue::new(8);
        let a = mine.wsp_socket(&request(SOCK_DGRAM, IPPROTO_UDP)).unwrap();
        let b = theirs
            .wsp_socket(&request(SOCK_DGRAM, IPPROTO_UDP))
            .unwrap();
        assert_eq!(mine.wsp_async_select(a, &queue, 1, FdEvents::WRITE), Ok(()));
        assert_eq!(
            theirs.wsp_async_select(b, &queue, 1, FdEvents::WRITE),
            Err(WsaError::Inval)
        );
        let posted = queue.get(Some(std::time::Duration::from_secs(10))).await;
        assert_eq!(
            posted.map(|m| (m.socket, m.notice.event)),
            Some((a, FdEvents::WRITE))
        );
        assert_eq!(
            queue.get(Some(std::time::Duration::from_millis(100))).await,
            None
        );
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
        p.wsp_recv(a, 10, MsgFlags::empty(), None).await.unwrap();
        assert_eq!(
            p.wsp_recv(a, 10, MsgFlags::empty(), None).await,
            Err(WsaError::WouldBlock)
        );
        assert_eq!(
            p.wsp_ioctl(a, IoctlCommand::NonBlocking(false)),
            Err(WsaError::Inval)
        );
    }
}
