//! WSPSend, WSPSendTo, WSPRecv, WSPRecvFrom and WSPGetOverlappedResult
//! (SPEC SE-*), overlapped or not (SE-7..SE-11), and what a send or a
//! receive re-enables (AS-9, AS-10).

use super::*;
use crate::net::socket::recv_flags;

/// SPEC AS-9, AS-10, AS-15: any send re-enables FD_WRITE; one that would
/// block makes FD_WRITE owed for when room comes back. When the socket's
/// flow ran out of tokens, room comes back with the tokens: FD_WRITE is
/// owed from then (one wake-up arranged per socket, however many sends
/// were refused).
fn sent(sock: &Socket, gate: &Gate, result: Result<u32, WsaError>) -> Result<u32, WsaError> {
    if let Ok(bytes) = result {
        gate.meter().sent(bytes as usize);
    }
    let would_block = result == Err(WsaError::WouldBlock);
    // Only a send that would block asks for the socket's flow.
    let throttled = would_block.then(|| sock.shaper()).flatten();
    match &throttled {
        Some(shaper) if shaper.is_empty() => {
            sock.link.sent(false);
            if let Some(delay) = shaper.arm_wake() {
                let (link, shaper) = (sock.link.clone(), shaper.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    shaper.woke();
                    link.feed(Input::SendWouldBlock);
                });
            }
        }
        _ => sock.link.sent(would_block),
    }
    result
}

/// One send that does not wait for overlapped sends before it: the stream
/// or the connected peer, or the datagram's destination `to`, within the
/// socket's flow (SPEC JL-8). A datagram goes whole when the flow allows;
/// a stream takes what the flow allows (with `wait`, all of it, waiting
/// for tokens: only this guest waits).
async fn send_now(
    sock: &mut Socket,
    data: &[u8],
    flags: MsgFlags,
    to: Option<SocketAddr>,
    wait: bool,
) -> Result<u32, WsaError> {
    let Some(shaper) = sock.shaper() else {
        return match sock.entry.kind {
            SocketKind::Stream => sock.send_stream(data, flags, wait).await,
            SocketKind::Datagram => sock.send_datagram(data, to, wait).await,
        };
    };
    if sock.entry.kind == SocketKind::Datagram {
        while !shaper.admit_datagram(data.len()) {
            if !wait {
                return Err(WsaError::WouldBlock);
            }
            tokio::time::sleep(shaper.wait_for(data.len())).await;
        }
        let result = sock.send_datagram(data, to, wait).await;
        if result.is_err() {
            shaper.refund(data.len());
        }
        return result;
    }
    let mut sent = 0;
    loop {
        let grant = shaper.take(data.len() - sent);
        if grant == 0 && sent < data.len() {
            if !wait {
                return if sent > 0 {
                    Ok(sent as u32)
                } else {
                    Err(WsaError::WouldBlock)
                };
            }
            tokio::time::sleep(shaper.wait_for(data.len() - sent)).await;
            continue;
        }
        match sock
            .send_stream(&data[sent..sent + grant], flags, wait)
            .await
        {
            Ok(n) => {
                shaper.refund(grant - n as usize);
                sent += n as usize;
            }
            Err(e) => {
                shaper.refund(grant);
                return if sent > 0 { Ok(sent as u32) } else { Err(e) };
            }
        }
        if sent == data.len() || !wait {
            return Ok(sent as u32);
        }
    }
}

/// A call without an overlapped argument comes after the overlapped ones
/// pending in its `lane` (SPEC SE-9): it waits for them, or is
/// WSAEWOULDBLOCK on a non-blocking socket.
async fn behind_pending(sock: &Socket, lane: Lane) -> Result<(), WsaError> {
    if sock.overlapped.is_pending(lane) {
        if !sock.blocking() {
            return Err(WsaError::WouldBlock);
        }
        sock.overlapped.drained(lane).await;
    }
    Ok(())
}

/// A send in the order of submission (SPEC SE-9). Without an overlapped
/// argument it comes after the socket's pending overlapped sends (a
/// non-blocking socket: WSAEWOULDBLOCK while they pend). With one (SE-7):
/// all sent at once is a completion queued at once; otherwise what is
/// left is captured (SE-8) and sent in the background, WSA_IO_PENDING.
async fn send_in_order(
    sock: &mut Socket,
    gate: &Arc<Gate>,
    data: &[u8],
    flags: MsgFlags,
    to: Option<SocketAddr>,
    overlapped: Option<OverlappedArg>,
) -> Result<u32, WsaError> {
    let Some(arg) = overlapped else {
        behind_pending(sock, Lane::Send).await?;
        let wait = sock.blocking();
        return send_now(sock, data, flags, to, wait).await;
    };
    sock.check_overlapped()?;
    let native = sock.overlapped_native()?;
    let ticket = sock.overlapped.admit(&arg, data.len(), gate)?;
    let mut sent = 0;
    if !sock.overlapped.is_pending(Lane::Send) {
        match send_now(sock, data, flags, to, false).await {
            Ok(n) if n as usize == data.len() => {
                sock.overlapped.completed_at_once(ticket, n);
                return Ok(n);
            }
            Ok(n) => sent = n as usize,
            Err(WsaError::WouldBlock) => {}
            Err(e) => return Err(e),
        }
    }
    let mut native_flags = libc::MSG_NOSIGNAL;
    if flags.contains(MsgFlags::OOB) {
        native_flags |= libc::MSG_OOB;
    }
    let operation = Operation::Send {
        data: data.to_vec(),
        sent,
        to,
        native_flags,
        shaper: sock.shaper(),
    };
    Err(sock.overlapped.pend(ticket, operation, native))
}

/// One receive that does not wait for overlapped receives before it, and
/// the datagram's sender.
async fn recv_now(
    sock: &mut Socket,
    cap: usize,
    flags: MsgFlags,
    scratch: &mut Vec<u8>,
    wait: bool,
) -> Result<(Vec<u8>, Option<SocketAddr>), WsaError> {
    match sock.entry.kind {
        SocketKind::Stream => {
            let data = sock.recv_stream(cap, flags, scratch, wait).await?;
            Ok((data, None))
        }
        SocketKind::Datagram => {
            // Datagrams from peers the policy refuses are dropped before
            // the guest sees them.
            if sock.bound_addr().is_none() {
                return Err(WsaError::Inval);
            }
            let filter = sock.datagram_filter();
            let (data, from) = sock.recv_datagram(cap, flags, &filter, wait).await?;
            Ok((data, Some(from)))
        }
    }
}

impl Provider {
    /// The policy's bound on the buffers of one send call: more is
    /// `WSAENOBUFS` and nothing is sent (a bad descriptor still comes
    /// first: `WSAENOTSOCK`); then the bytes to send.
    fn check_buffers<'a>(&mut self, s: u32, buffers: &Buffers<'a>) -> Result<&'a [u8], WsaError> {
        let max = self.guard.gate.policy().limits().max_buffers_per_call as usize;
        self.socket(s)?;
        if buffers.count() > max {
            return Err(WsaError::NoBufs);
        }
        buffers.bytes()
    }

    /// WSPSend (SPEC SE-1..SE-11).
    pub async fn wsp_send(
        &mut self,
        s: u32,
        buffers: Buffers<'_>,
        flags: MsgFlags,
        overlapped: Option<OverlappedArg>,
    ) -> Result<u32, WsaError> {
        let data = self.check_buffers(s, &buffers)?;
        if matches!(self.socket(s)?.rooted, Some(Rooted::Root { .. })) {
            return self.send_as_root(s, data, flags, overlapped).await;
        }
        let Self { guard, sockets, .. } = self;
        let sock = sockets.get_mut(&s).ok_or(WsaError::NotSock)?;
        let result = async {
            sock.check_send(flags)?;
            let to = match sock.entry.kind {
                SocketKind::Stream => None,
                SocketKind::Datagram => match (&sock.membership, sock.peer_addr()) {
                    (_, Some(_)) => None,
                    // A joined session is the default peer (SPEC JL-3).
                    (Some(m), None) if m.sends => Some(m.group),
                    (Some(_), None) => return Err(WsaError::Shutdown),
                    (None, None) => return Err(WsaError::NotConn),
                },
            };
            send_in_order(sock, &guard.gate, data, flags, to, overlapped).await
        }
        .await;
        sent(sock, &guard.gate, result)
    }

    /// A root's send: a copy to every leaf, complete when the call returns
    /// (an overlapped one has its completion queued at once).
    async fn send_as_root(
        &mut self,
        s: u32,
        data: &[u8],
        flags: MsgFlags,
        overlapped: Option<OverlappedArg>,
    ) -> Result<u32, WsaError> {
        let gate = self.guard.gate.clone();
        let sock = self.socket(s)?;
        sock.check_send(flags)?;
        let ticket = match &overlapped {
            Some(arg) => {
                sock.check_overlapped()?;
                Some(sock.overlapped.admit(arg, data.len(), &gate)?)
            }
            None => None,
        };
        let result = self.send_to_leaves(s, data, flags).await;
        let sock = self.socket(s)?;
        if let (Some(ticket), Ok(n)) = (ticket, result) {
            sock.overlapped.completed_at_once(ticket, n);
        }
        sent(sock, &gate, result)
    }

    /// WSPSendTo: datagrams under the `send-to` (and `broadcast`) grants;
    /// on a stream socket `to` is ignored, as in Winsock.
    pub async fn wsp_send_to(
        &mut self,
        s: u32,
        buffers: Buffers<'_>,
        flags: MsgFlags,
        to: SocketAddr,
        overlapped: Option<OverlappedArg>,
    ) -> Result<u32, WsaError> {
        let data = self.check_buffers(s, &buffers)?;
        let Self { guard, sockets, .. } = self;
        let sock = sockets.get_mut(&s).ok_or(WsaError::NotSock)?;
        let result = async {
            sock.check_send(flags)?;
            let to = match sock.entry.kind {
                SocketKind::Stream => None,
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
                    Some(guard.destination(sock, to, NetUse::SendTo)?)
                }
            };
            send_in_order(sock, &guard.gate, data, flags, to, overlapped).await
        }
        .await;
        sent(sock, &guard.gate, result)
    }

    /// WSPRecv: stream bytes, or one datagram from a peer the policy lets
    /// through (`recv-from` grants, or the connected peer).
    pub async fn wsp_recv(
        &mut self,
        s: u32,
        max_len: u32,
        flags: MsgFlags,
        overlapped: Option<OverlappedArg>,
    ) -> Result<Vec<u8>, WsaError> {
        let (data, _) = self.receive(s, max_len, flags, overlapped).await?;
        Ok(data)
    }

    /// WSPRecvFrom.
    pub async fn wsp_recv_from(
        &mut self,
        s: u32,
        max_len: u32,
        flags: MsgFlags,
        overlapped: Option<OverlappedArg>,
    ) -> Result<(Vec<u8>, SocketAddr), WsaError> {
        match self.receive(s, max_len, flags, overlapped).await? {
            (data, Some(from)) => Ok((data, from)),
            // A stream's sender is its peer.
            (data, None) => match self.socket(s)?.peer_addr() {
                Some(peer) => Ok((data, peer)),
                None => Err(WsaError::NotConn),
            },
        }
    }

    /// A receive in the order of submission, overlapped or not (as
    /// [`send_in_order`]); then what it re-enables.
    async fn receive(
        &mut self,
        s: u32,
        max_len: u32,
        flags: MsgFlags,
        overlapped: Option<OverlappedArg>,
    ) -> Result<(Vec<u8>, Option<SocketAddr>), WsaError> {
        let cap = self.recv_cap(max_len);
        let Self {
            guard,
            sockets,
            recv_scratch,
            ..
        } = self;
        let sock = sockets.get_mut(&s).ok_or(WsaError::NotSock)?;
        let result = async {
            sock.check_recv(flags)?;
            let Some(arg) = overlapped else {
                behind_pending(sock, Lane::Recv).await?;
                let wait = sock.blocking();
                return recv_now(sock, cap, flags, recv_scratch, wait).await;
            };
            sock.check_overlapped()?;
            if flags.contains(MsgFlags::OOB) {
                // Urgent data is read when it is there, never pended.
                return Err(WsaError::OpNotSupp);
            }
            let native = sock.overlapped_native()?;
            let ticket = sock.overlapped.admit(&arg, cap, &guard.gate)?;
            if !sock.overlapped.is_pending(Lane::Recv) {
                match recv_now(sock, cap, flags, recv_scratch, false).await {
                    Ok(got) => {
                        sock.overlapped
                            .completed_at_once(ticket, got.0.len() as u32);
                        return Ok(got);
                    }
                    Err(WsaError::WouldBlock) => {}
                    Err(e) => return Err(e),
                }
            }
            let operation = Operation::Recv {
                max_len: cap,
                native_flags: recv_flags(flags),
            };
            Err(sock.overlapped.pend(ticket, operation, native))
        }
        .await;
        if let (Ok((data, _)), false) = (&result, flags.contains(MsgFlags::PEEK)) {
            self.guard.gate.meter().received(data.len());
        }
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

    /// WSPGetOverlappedResult (SPEC SE-7): the outcome of the overlapped
    /// operation `token` on `s`; with `wait`, waits while it pends (only
    /// this guest waits).
    pub async fn wsp_get_overlapped_result(
        &mut self,
        s: u32,
        token: u64,
        wait: bool,
    ) -> Result<OverlappedOutcome, WsaError> {
        let outcome = self.socket(s)?.overlapped.result(token, wait);
        outcome.await
    }
}
