//! WSPJoinLeaf: multicast leaves and rooted joins (SPEC JL-*).

use super::*;

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

/// SPEC JL-1: binds receiving leaf `s` implicitly to its group's address
/// and port, beside the guest's own datagram sockets already bound to that
/// port (on the wildcard, as Windows lets a specific bind sit beside a
/// wildcard one). Linux shares a UDP port only among sockets that all have
/// SO_REUSEADDR, which wasp never leaves set on a guest's socket bound to
/// an ordinary address (another program could then bind beside it): it is
/// set on the guest's own sockets for the moment of the bind only.
fn bind_on_group_port(sockets: &mut Sockets, s: u32, group: SocketAddr) -> Result<(), WsaError> {
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
    let share = |sockets: &Sockets, on: bool| {
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

impl Provider {
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
        sqos: Option<Qos>,
        role: JoinRole,
    ) -> Result<(u32, Vec<u8>), WsaError> {
        use super::catalog::SocketFlags as F;
        if self.socket(s)?.entry.is_rooted() {
            // JL-8: the sending QoS replaces any earlier SIO_SET_QOS.
            if let Some(qos) = sqos {
                self.socket(s)?.set_qos(qos)?;
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
        // JL-8: the sending QoS replaces any earlier SIO_SET_QOS; what
        // wasp cannot meet is WSAEOPNOTSUPP.
        if let Some(qos) = sqos {
            sock.set_qos(qos)?;
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
        sock.link.feed(Input::ConnectStarted);
        sock.link.feed(Input::ConnectFinished(None));
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
        original.feed(Input::ConnectStarted);
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
    pub(super) async fn send_to_leaves(
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
            let whole = sock.send_stream(data, flags, true);
            let sent = tokio::time::timeout(rooted::FANOUT_STALL, whole).await;
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
}
