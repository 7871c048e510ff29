//! Listener admission: the connections a listening socket offers its guest.
//!
//! Every connection is filtered by the policy's `accept` grants before the
//! guest hears of it: a refused peer is reset. A plain listener admits in
//! its guest's accept call. A listener registered with WSPAsyncSelect, and
//! every rooted listener, has a task that takes connections from the
//! kernel in the background, so that FD_ACCEPT never announces a refused
//! peer, and a rooted joiner is announced only once its caller data is in
//! (a silent peer holds nobody, SPEC JL-4; the callee data answers it when
//! the guest accepts). The task keeps at most [`MAX_ADMITTED`] admitted
//! connections ready; the rest wait in the kernel's backlog.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinSet};

use super::engine::EventLink;
use super::gate::Gate;
use super::rooted;
use crate::error::WsaError;
use crate::policy::NetUse;

/// Most admitted connections one listener holds ready for its guest;
/// further ones stay in the kernel's backlog.
pub const MAX_ADMITTED: usize = 16;

/// Most rooted join handshakes one listener runs at once: silent peers
/// can hold at most these, each for at most
/// [`rooted::HANDSHAKE_TIMEOUT`], while others still get in.
pub const MAX_HANDSHAKES: usize = 64;

/// How long the admitting task waits after a failed accept.
const ACCEPT_RETRY: std::time::Duration = std::time::Duration::from_millis(20);

/// A connection admitted by the policy, ready for `wsp-accept`.
pub struct Admitted {
    /// The connected stream.
    pub stream: TcpStream,
    /// The peer's address.
    pub peer: SocketAddr,
    /// The caller data of a rooted join (SPEC JL-7), if the listener is
    /// rooted.
    pub caller_data: Option<Vec<u8>>,
}

impl Admitted {
    /// Resets the connection (linger 0, then close): what a refused or
    /// unwanted peer gets.
    pub fn reset(self) {
        reset(&self.stream);
    }
}

fn reset(stream: &impl std::os::fd::AsFd) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(std::time::Duration::ZERO));
}

/// The admitted connections of one listener and the task that admits them.
///
/// The task runs for a rooted listener (its joiners' caller data is
/// received in the background) and for a listener registered with
/// WSPAsyncSelect (FD_ACCEPT announces only admitted connections). A plain
/// listener admits in its guest's accept call, as Winsock's does.
pub struct Admission {
    /// The listening socket, owned by the guest's socket alone: closing
    /// it frees its port at once, whatever the tasks are doing.
    listener: Weak<AsyncFd<socket2::Socket>>,
    gate: Arc<Gate>,
    rooted: bool,
    ready: Mutex<VecDeque<Admitted>>,
    /// A connection became ready (one permit for a waiting accept).
    arrived: Notify,
    /// A ready connection was taken (room for the admitting task).
    taken: Arc<Notify>,
    /// The callee data a rooted listener answers joins with (SO_CONNDATA).
    callee_data: Mutex<Vec<u8>>,
    /// The listener's event link, woken when a connection is ready.
    link: Arc<EventLink>,
    task: Mutex<Option<AbortHandle>>,
    /// An accept was refused at the socket quota: FD_ACCEPT waits for room.
    refused_at_quota: AtomicBool,
}

impl Admission {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Admitted>> {
        self.ready.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The admission of `listener` (held here only weakly: the caller
    /// owns it) for the guest behind `gate`; `link` is the listener's event
    /// link (woken when a connection is ready); `rooted` makes each joining
    /// peer send its caller data first, answered with `callee_data` when
    /// the guest accepts. A rooted listener starts admitting at once.
    pub fn start(
        listener: &Arc<AsyncFd<socket2::Socket>>,
        gate: Arc<Gate>,
        link: Arc<EventLink>,
        rooted: bool,
        callee_data: Vec<u8>,
    ) -> Arc<Self> {
        let admission = Arc::new(Self {
            listener: Arc::downgrade(listener),
            gate,
            rooted,
            ready: Mutex::default(),
            arrived: Notify::new(),
            taken: Arc::new(Notify::new()),
            callee_data: Mutex::new(callee_data),
            link,
            task: Mutex::default(),
            refused_at_quota: AtomicBool::new(false),
        });
        if rooted {
            admission.admit_in_background();
        }
        admission
    }

    /// Starts the admitting task, if it is not running yet (the listener
    /// was registered with WSPAsyncSelect).
    pub fn admit_in_background(self: &Arc<Self>) {
        let mut task = self.task.lock().unwrap_or_else(|p| p.into_inner());
        if task.is_some() {
            return;
        }
        let handle = tokio::spawn(admit(
            self.listener.clone(),
            self.gate.clone(),
            self.rooted,
            self.taken.clone(),
            Arc::downgrade(self),
        ));
        *task = Some(handle.abort_handle());
    }

    /// Waits for a connection the guest may take: one the admitting task
    /// readied, or (not rooted) one the kernel has, admitted here. Only
    /// the calling guest waits.
    pub async fn wait_for_connection(&self) -> Option<Admitted> {
        loop {
            if let Some(admitted) = self.take().or_else(|| self.admit_now()) {
                return Some(admitted);
            }
            let listener = self.listener.upgrade()?;
            tokio::select! {
                () = self.wait() => {}
                ready = listener.readable(), if !self.rooted => {
                    let mut ready = ready.ok()?;
                    // Take what the kernel has; readiness is cleared only
                    // once it has nothing more.
                    while let Ok(accepted) = ready.try_io(|l| l.get_ref().accept()) {
                        let Ok((native, peer)) = accepted else { break };
                        if let Some((stream, peer)) = filter(native, peer, &self.gate) {
                            return Some(Admitted { stream, peer, caller_data: None });
                        }
                    }
                }
            }
        }
    }

    /// An accept found the guest at its socket quota: WSAEMFILE, and
    /// FD_ACCEPT is not announced again until the guest has room.
    pub fn refused_at_quota(&self) {
        self.refused_at_quota.store(true, Ordering::Relaxed);
    }

    /// Takes the oldest admitted connection, if any. A rooted joiner gets
    /// the callee data now, completing its join (SPEC JL-4, JL-7); one
    /// that cannot take it is reset and the next one is taken.
    pub fn take(&self) -> Option<Admitted> {
        loop {
            let admitted = self.lock().pop_front()?;
            self.refused_at_quota.store(false, Ordering::Relaxed);
            self.taken.notify_one();
            if admitted.caller_data.is_none()
                || rooted::answer(&admitted.stream, &self.callee_data()).is_ok()
            {
                return Some(admitted);
            }
            admitted.reset();
        }
    }

    /// A connection the kernel has right now, admitted on the spot (so a
    /// non-blocking accept right after a peer's connect finds it, as with
    /// Winsock); `None` when there is none, or for a rooted listener, whose
    /// joiners are admitted in the background once their handshake is in.
    pub fn admit_now(&self) -> Option<Admitted> {
        if self.rooted {
            return None;
        }
        loop {
            let (native, peer) = self.listener.upgrade()?.get_ref().accept().ok()?;
            if let Some((stream, peer)) = filter(native, peer, &self.gate) {
                return Some(Admitted {
                    stream,
                    peer,
                    caller_data: None,
                });
            }
        }
    }

    /// Whether a connection waits to be accepted.
    pub fn has_pending(&self) -> bool {
        !self.lock().is_empty()
    }

    /// The FD_ACCEPT condition: a connection waits, and the guest has room
    /// for its socket or has not yet been told WSAEMFILE for it.
    pub fn can_accept(&self) -> bool {
        self.has_pending()
            && (self.gate.has_room() || !self.refused_at_quota.load(Ordering::Relaxed))
    }

    /// Waits until a connection is ready.
    pub async fn wait(&self) {
        loop {
            let arrived = self.arrived.notified();
            if self.has_pending() {
                return;
            }
            arrived.await;
        }
    }

    /// Sets the callee data answered to later joins (SO_CONNDATA).
    pub fn set_callee_data(&self, data: Vec<u8>) {
        *self.callee_data.lock().unwrap_or_else(|p| p.into_inner()) = data;
    }

    fn callee_data(&self) -> Vec<u8> {
        self.callee_data
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn push(&self, admitted: Admitted) {
        self.lock().push_back(admitted);
        self.arrived.notify_one();
        self.link.wake();
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(task) = self
            .task
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            task.abort();
        }
        for admitted in self
            .ready
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            admitted.reset();
        }
    }
}

/// One connection from the kernel, filtered: `None` for a refused peer
/// (reset) or a connection that could not be set up.
fn filter(
    native: socket2::Socket,
    peer: socket2::SockAddr,
    gate: &Gate,
) -> Option<(TcpStream, SocketAddr)> {
    let peer = peer.as_socket()?;
    if !gate.admits(NetUse::Accept, peer) {
        reset(&native);
        return None;
    }
    native.set_nonblocking(true).ok()?;
    let stream = TcpStream::from_std(native.into()).ok()?;
    Some((stream, peer))
}

/// Polls for one connection of the listener without keeping it alive
/// between polls; `None` once the listener is closed.
fn poll_accept(
    listener: &Weak<AsyncFd<socket2::Socket>>,
    cx: &mut Context<'_>,
) -> Poll<Option<std::io::Result<(socket2::Socket, socket2::SockAddr)>>> {
    let Some(listener) = listener.upgrade() else {
        return Poll::Ready(None);
    };
    loop {
        let mut ready = match listener.poll_read_ready(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(ready)) => ready,
        };
        if let Ok(accepted) = ready.try_io(|l| l.get_ref().accept()) {
            return Poll::Ready(Some(accepted));
        }
    }
}

async fn admit(
    listener: Weak<AsyncFd<socket2::Socket>>,
    gate: Arc<Gate>,
    rooted: bool,
    taken: Arc<Notify>,
    admission: Weak<Admission>,
) {
    let mut handshakes: JoinSet<Result<Admitted, WsaError>> = JoinSet::new();
    loop {
        let Some(this) = admission.upgrade() else {
            return;
        };
        let taken = taken.notified();
        let full = this.lock().len() >= MAX_ADMITTED || handshakes.len() >= MAX_HANDSHAKES;
        drop(this);
        tokio::select! {
            () = taken, if full => {}
            accepted = std::future::poll_fn(|cx| poll_accept(&listener, cx)), if !full => {
                let Some(accepted) = accepted else {
                    // The guest closed the listener.
                    return;
                };
                let Ok((native, peer)) = accepted else {
                    // Out of descriptors, or a peer gone before the
                    // accept: try again a little later, never in a spin.
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                };
                let Some((stream, peer)) = filter(native, peer, &gate) else { continue };
                if rooted {
                    handshakes.spawn(async move {
                        // A peer that does not send its caller data in
                        // time is dropped unseen (SPEC JL-4, JL-7).
                        let caller = rooted::receive_caller(&stream).await?;
                        Ok(Admitted { stream, peer, caller_data: Some(caller) })
                    });
                } else {
                    let Some(this) = admission.upgrade() else { return };
                    this.push(Admitted { stream, peer, caller_data: None });
                }
            }
            Some(done) = handshakes.join_next(), if !handshakes.is_empty() => {
                if let Ok(Ok(admitted)) = done {
                    let Some(this) = admission.upgrade() else { return };
                    this.push(admitted);
                }
            }
        }
    }
}
