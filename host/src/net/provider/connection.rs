//! WSPBind, WSPListen, WSPAccept, WSPConnect, WSPShutdown, WSPCloseSocket,
//! WSPGetSockName and WSPGetPeerName (SPEC SO-*, AS-7, AS-17..AS-20).

use super::*;

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

impl Provider {
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
        listener.link.feed(Input::Reenabled(Reenable::Accept));
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
}
