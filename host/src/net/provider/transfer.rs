//! WSPSend, WSPSendTo, WSPRecv, WSPRecvFrom and WSPGetOverlappedResult
//! (SPEC SE-*), and what a send or a receive re-enables (AS-9, AS-10).

use super::*;

/// SPEC AS-9, AS-10, AS-15: any send re-enables FD_WRITE; one that would
/// block makes FD_WRITE owed for when room comes back.
fn sent(sock: &Socket, result: Result<u32, WsaError>) -> Result<u32, WsaError> {
    sock.link.sent(result == Err(WsaError::WouldBlock));
    result
}

impl Provider {
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
            sock.link.feed(Input::Reenabled(Reenable::Recv));
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

    /// WSPGetOverlappedResult (SPEC SE-7).
    pub fn wsp_get_overlapped_result(&mut self, s: u32, token: u64) -> Result<u32, WsaError> {
        self.socket(s)?.overlapped_result(token)
    }
}
