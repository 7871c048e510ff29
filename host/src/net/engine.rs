//! The event engine of WSPAsyncSelect: for each registered socket, a tokio
//! task that watches the native socket, feeds what it sees into the
//! socket's [`SelectState`] and posts the messages that become due into the
//! guest's queue. The guest never gets a call from the host: it pulls.
//!
//! The engine trusts the kernel, not tokio's cached readiness: every wake-up
//! is checked with `poll(2)` (timeout 0), and readiness that turns out
//! stale is cleared, so a socket whose condition has been posted and not
//! re-enabled costs nothing until something changes (no spin, DESIGN §5).

use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use rustix::event::{PollFd, PollFlags, Timespec};
use socket2::SockRef;
use tokio::io::unix::AsyncFd;
use tokio::io::{Interest, Ready};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::admission::Admission;
use super::gate::DatagramFilter;
use super::queue::{Message, MessageQueue, Posted};
use super::rooted::JoinCell;
use super::select::{Conditions, FdEvents, Reenable, SelectState};
use super::socket::{abort_unreadable, purge_refused, unread_bytes};
use super::sys;
use crate::error::WsaError;

/// The registration of one socket, shared by the provider (which makes the
/// guest's calls) and the socket's engine task.
pub struct EventLink {
    socket: u32,
    inner: Mutex<LinkInner>,
    wake: Notify,
}

#[derive(Default)]
struct LinkInner {
    state: SelectState,
    queue: Option<Weak<MessageQueue>>,
    /// The socket was closed by the guest: post nothing more (SPEC AS-19).
    closed: bool,
    /// The error of a failed connect the engine saw first.
    connect_error: Option<WsaError>,
    /// The guest shut the receive direction (WSPShutdown SD_RECEIVE or
    /// SD_BOTH): wasp keeps it open natively so that the peer's FIN still
    /// shows (SPEC AS-18), and data that arrives ends the connection.
    receive_shut: bool,
    /// The engine saw the peer's end of a stream (or its breaking): once
    /// the guest has read what is left, FD_CLOSE may be due (SPEC AS-18),
    /// which only the engine decides.
    peer_ended: bool,
}

/// What a guest's stream receive showed about the data still queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remains {
    /// Nothing is left: the receive got less than it asked for, or
    /// WSAEWOULDBLOCK.
    Nothing,
    /// Data is left (a peek, or FIONREAD after a full receive).
    Data,
    /// Unknown, or something only the engine can judge (the end of the
    /// connection, an error): the engine looks.
    Unknown,
}

/// Posts the messages due on `inner`'s socket. Returns the queue when it
/// had no room for one, or `Err` when the queue is gone or closed.
fn post_due(socket: u32, inner: &mut LinkInner) -> Result<Option<Arc<MessageQueue>>, ()> {
    if inner.closed {
        return Err(());
    }
    let Some(queue) = inner.queue.as_ref().and_then(Weak::upgrade) else {
        return Err(());
    };
    while let Some(notice) = inner.state.next_due() {
        let message = Message {
            msg: inner.state.msg(),
            socket,
            notice,
        };
        match queue.post(message) {
            Posted::Queued => inner.state.posted(notice.event),
            Posted::Full => return Ok(Some(queue)),
            Posted::Closed => return Err(()),
        }
    }
    Ok(None)
}

impl EventLink {
    /// The link of socket `socket`, with no registration.
    pub fn new(socket: u32) -> Arc<Self> {
        Arc::new(Self {
            socket,
            inner: Mutex::default(),
            wake: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, LinkInner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The socket descriptor (`wParam` of its messages).
    pub fn socket(&self) -> u32 {
        self.socket
    }

    /// WSPAsyncSelect: registers `mask` with message id `msg` on `queue`
    /// (SPEC AS-5, AS-6).
    pub fn register(&self, queue: &Arc<MessageQueue>, msg: u32, mask: FdEvents) {
        self.update(|state| state.register(mask, msg));
        self.lock().queue = (!mask.is_empty()).then(|| Arc::downgrade(queue));
    }

    /// Whether messages are to be delivered: some events registered on a
    /// queue that is still open.
    pub fn is_registered(&self) -> bool {
        let inner = self.lock();
        !inner.closed
            && !inner.state.mask().is_empty()
            && inner
                .queue
                .as_ref()
                .and_then(Weak::upgrade)
                .is_some_and(|q| !q.is_closed())
    }

    /// Changes the select state (a guest call happened) and wakes the
    /// engine to deliver what became due.
    pub fn update(&self, change: impl FnOnce(&mut SelectState)) {
        change(&mut self.lock().state);
        self.wake.notify_one();
    }

    /// A stream receive (WSPRecv, WSPRecvFrom) finished: FD_READ and FD_OOB
    /// are re-enabled (SPEC AS-9, AS-10) and what the receive showed is an
    /// observation. A message due now is posted at once; the engine, which
    /// keeps watching for new data meanwhile, is woken only when it has to
    /// look (see [`Remains::Unknown`], the peer's end) or the queue has no
    /// room.
    pub fn stream_received(&self, remains: Remains) {
        let mut inner = self.lock();
        inner.state.reenable(Reenable::Recv);
        let look = match remains {
            Remains::Nothing => {
                inner.state.observe_data(false);
                inner.peer_ended
            }
            Remains::Data => {
                inner.state.observe_data(true);
                false
            }
            Remains::Unknown => true,
        };
        let full = matches!(post_due(self.socket, &mut inner), Ok(Some(_)));
        drop(inner);
        if look || full {
            self.wake.notify_one();
        }
    }

    /// A send (WSPSend, WSPSendTo) finished: FD_WRITE is re-enabled, and
    /// after WSAEWOULDBLOCK it is owed once room comes back (SPEC AS-9,
    /// AS-15), which the engine then watches for. A message due now is
    /// posted at once.
    pub fn sent(&self, would_block: bool) {
        let mut inner = self.lock();
        inner.state.reenable(Reenable::Send);
        if would_block {
            inner.state.send_would_block();
        }
        let full = matches!(post_due(self.socket, &mut inner), Ok(Some(_)));
        drop(inner);
        if would_block || full {
            self.wake.notify_one();
        }
    }

    /// Gives an accepted socket's link the registration of this listener's
    /// (SPEC AS-7).
    pub fn inherit_into(&self, child: &EventLink) {
        let (state, queue) = {
            let inner = self.lock();
            (inner.state.inherit(), inner.queue.clone())
        };
        let mut child_inner = child.lock();
        child_inner.state = state;
        child_inner.queue = queue;
    }

    /// The registered events.
    pub fn registered_mask(&self) -> FdEvents {
        self.lock().state.mask()
    }

    /// The error of an abortive close the engine saw (its look at the
    /// socket consumed the socket's pending error), if any.
    pub fn close_error(&self) -> Option<WsaError> {
        self.lock().state.close_error()
    }

    /// The connect error the engine saw first, if any.
    pub fn take_connect_error(&self) -> Option<WsaError> {
        self.lock().connect_error.take()
    }

    /// The guest shut the receive direction of its stream (WSPShutdown):
    /// from now on data is never news, and data that arrives aborts the
    /// connection (SPEC AS-18).
    pub fn shut_receive(&self) {
        self.lock().receive_shut = true;
        self.wake.notify_one();
    }

    /// The guest closed the socket: deliver nothing more (SPEC AS-19).
    pub fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }
}

/// The native socket an engine task watches.
pub enum Watched {
    /// A stream socket whose connect is in progress.
    Connecting(Arc<TcpStream>),
    /// A stream socket whose rooted join handshake is running.
    Joining(Arc<TcpStream>, Arc<JoinCell>),
    /// A connected stream socket.
    Stream(Arc<TcpStream>),
    /// A listening socket: its admitted connections (the admitting task
    /// wakes the engine through the link when one is ready).
    Listener(Arc<Admission>),
    /// A datagram socket and the senders that may reach its guest.
    Datagram(Arc<UdpSocket>, DatagramFilter),
    /// Nothing to watch (idle socket): only guest calls change anything.
    Nothing,
}

/// Starts the engine task of one socket on the current tokio runtime.
pub fn spawn(link: Arc<EventLink>, watched: Watched) -> AbortHandle {
    tokio::spawn(run(link, watched)).abort_handle()
}

/// What one look at the native socket found.
#[derive(Default)]
struct Observed {
    now: Conditions,
    /// The connection closed: `None` gracefully, or the error.
    close: Option<Option<WsaError>>,
    /// A connect in progress finished: `None` success, or the error.
    connect: Option<Option<WsaError>>,
    /// The peer's end is closed (or the connection broke): nothing new
    /// will arrive to read, so readability is no news.
    ended: bool,
}

fn poll_now(fd: impl AsFd) -> PollFlags {
    let wanted = PollFlags::IN | PollFlags::PRI | PollFlags::OUT | PollFlags::RDHUP;
    let mut fds = [PollFd::new(&fd, wanted)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match rustix::event::poll(&mut fds, Some(&zero)) {
        Ok(_) => fds[0].revents(),
        Err(_) => PollFlags::empty(),
    }
}

fn close_error(err: std::io::Error) -> WsaError {
    match WsaError::from(err) {
        WsaError::ConnReset => WsaError::ConnReset,
        WsaError::NetDown => WsaError::NetDown,
        _ => WsaError::ConnAborted,
    }
}

/// What a connected stream shows. One `poll(2)` in the common case;
/// FIONREAD only once the peer's side has ended (to tell the last data from
/// the end), SO_OOBINLINE only when FD_OOB is registered. After the guest
/// shut its receive direction, data is no news but aborts the connection,
/// and the peer's FIN is the close indication (SPEC AS-18).
fn observe_stream(stream: &TcpStream, wants_oob: bool, receive_shut: bool) -> Observed {
    let flags = poll_now(stream);
    let sock = SockRef::from(stream);
    let ended = flags.intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR);
    let data = match (flags.contains(PollFlags::IN), ended) {
        (false, _) => false,
        (true, false) => true,
        (true, true) => unread_bytes(stream) > 0,
    };
    if receive_shut && data {
        return Observed {
            close: Some(Some(abort_unreadable(stream))),
            ended: true,
            ..Observed::default()
        };
    }
    let close = if ended && !data {
        let mut probe = [0u8; 1];
        match sys::recv(&sock, &mut probe, libc::MSG_PEEK | libc::MSG_DONTWAIT) {
            Ok(0) => Some(None),
            Ok(_) => None,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
            Err(e) => Some(Some(close_error(e))),
        }
    } else {
        None
    };
    Observed {
        now: Conditions {
            data,
            oob: flags.contains(PollFlags::PRI),
            pending_accept: false,
            writable: flags.contains(PollFlags::OUT),
            oob_inline: wants_oob && sock.out_of_band_inline().unwrap_or(false),
        },
        close,
        connect: None,
        ended,
    }
}

fn observe(watched: &Watched, link: &EventLink) -> Observed {
    match watched {
        Watched::Connecting(stream) => {
            let flags = poll_now(&**stream);
            if !flags.intersects(PollFlags::OUT | PollFlags::ERR | PollFlags::HUP) {
                return Observed::default();
            }
            let outcome = match stream.take_error() {
                Ok(Some(err)) | Err(err) => {
                    let err = WsaError::from(err);
                    link.lock().connect_error = Some(err);
                    Some(Some(err))
                }
                // The provider may have seen (and reported) it first.
                Ok(None) if stream.peer_addr().is_ok() => Some(None),
                Ok(None) => None,
            };
            Observed {
                connect: outcome,
                ..Observed::default()
            }
        }
        Watched::Stream(stream) => {
            let (wants_oob, receive_shut) = {
                let inner = link.lock();
                (
                    inner.state.mask().contains(FdEvents::OOB),
                    inner.receive_shut,
                )
            };
            observe_stream(stream, wants_oob, receive_shut)
        }
        Watched::Listener(admission) => Observed {
            now: Conditions {
                pending_accept: admission.can_accept(),
                ..Conditions::default()
            },
            ..Observed::default()
        },
        Watched::Datagram(udp, filter) => {
            // A refused datagram is no FD_READ: it is dropped unseen, and
            // data is there when an admitted datagram is at the head.
            let admitted = purge_refused(udp, filter);
            let flags = poll_now(&**udp);
            Observed {
                now: Conditions {
                    data: admitted,
                    writable: flags.contains(PollFlags::OUT),
                    ..Conditions::default()
                },
                ..Observed::default()
            }
        }
        Watched::Joining(..) | Watched::Nothing => Observed::default(),
    }
}

/// What the task waits for next.
enum Next {
    /// Stop: the socket was closed, unregistered, or its queue is gone.
    Stop,
    /// Wait for readiness of `interest` (if any), a guest call, or room in
    /// `full` when a post found the queue full.
    Wait {
        interest: Option<Interest>,
        full: Option<Arc<MessageQueue>>,
    },
}

fn merge(a: Option<Interest>, b: Interest) -> Option<Interest> {
    Some(match a {
        Some(a) => a | b,
        None => b,
    })
}

/// Looks at the socket, posts what is due, and says what to wait for.
///
/// `woke` is the readiness that woke the engine when it is new data on a
/// stream: tokio's readiness is then what the socket shows without asking
/// the kernel again, because every non-blocking operation that finds the
/// socket empty clears it (a receive that got less than it asked for
/// included, see `Socket::recv_stream`), and epoll reports a socket's state
/// as of the moment it is asked. Streams whose urgent data or receive
/// shutdown matters are looked at with `poll(2)`.
fn deliver(link: &EventLink, watched: &mut Watched, woke: Option<Ready>) -> Next {
    // The readiness must still be there (the guest may have emptied the
    // socket since), which is only certain when nothing runs beside this
    // task: on a current-thread runtime.
    let new_data = match (woke, &*watched) {
        (Some(_), Watched::Stream(stream)) => {
            let inner = link.lock();
            !inner.receive_shut
                && !inner.state.mask().contains(FdEvents::OOB)
                && stream.try_io(Interest::READABLE, || Ok(())).is_ok()
        }
        _ => false,
    };
    let seen = (!new_data).then(|| observe(watched, link));
    let mut inner = link.lock();
    if inner.closed || inner.queue.as_ref().and_then(Weak::upgrade).is_none() {
        return Next::Stop;
    }
    let seen = seen.unwrap_or_else(|| Observed {
        now: Conditions {
            data: true,
            ..inner.state.conditions()
        },
        ..Observed::default()
    });
    if let Some(outcome) = seen.connect {
        inner.state.connect_finished(outcome);
        if let Watched::Connecting(stream) = watched {
            *watched = match outcome {
                None => Watched::Stream(stream.clone()),
                Some(_) => Watched::Nothing,
            };
        }
    }
    // A rooted join reports FD_CONNECT itself (on the socket it was called
    // on); here its socket only starts being watched as a stream.
    if let Watched::Joining(stream, cell) = watched
        && let Some(outcome) = cell.outcome()
    {
        *watched = match outcome {
            Ok(_) => Watched::Stream(stream.clone()),
            Err(_) => Watched::Nothing,
        };
    }
    let seen = match (&*watched, seen.connect) {
        // Just connected: look again as a connected stream.
        (Watched::Stream(stream), Some(None)) => observe_stream(
            stream,
            inner.state.mask().contains(FdEvents::OOB),
            inner.receive_shut,
        ),
        _ => seen,
    };
    if let Some(close) = seen.close {
        inner.state.close_arrived(close);
    }
    inner.state.observe(seen.now);
    if matches!(watched, Watched::Stream(_)) {
        inner.peer_ended = seen.ended;
    }
    let Ok(full) = post_due(link.socket, &mut inner) else {
        return Next::Stop;
    };
    let state = &inner.state;
    let now = state.conditions();
    let mut interest = None;
    let watching = |e| state.watching(e);
    match watched {
        Watched::Connecting(_) => interest = merge(interest, Interest::WRITABLE),
        Watched::Joining(..) => {}
        // A stream whose close indication arrived stays "ready" for ever:
        // nothing new can happen on it but the guest's own calls.
        Watched::Stream(_) if state.close_arrived_already() => {}
        Watched::Stream(_) if seen.ended => {
            // Only room to send can still change by itself.
            if watching(FdEvents::WRITE) && state.write_owed() && !now.writable {
                interest = merge(interest, Interest::WRITABLE);
            }
        }
        Watched::Stream(stream) => {
            // Watched for new data whenever FD_READ or FD_CLOSE is
            // registered, also while FD_READ waits for its re-enabling
            // recv: the guest's receives then need not wake the engine
            // (see `EventLink::stream_received`). Data already there is no
            // news: its readiness is cleared first, so that only new data
            // or the peer's end (which stays ready) wakes the engine. A
            // stream whose receive direction the guest shut is watched for
            // data too: data that can no longer be read aborts it.
            if state.mask().intersects(FdEvents::READ | FdEvents::CLOSE) || inner.receive_shut {
                if now.data {
                    let _ = stream.try_io(Interest::READABLE, would_block);
                }
                interest = merge(interest, Interest::READABLE);
            }
            // Never wait for a readiness whose condition already holds: it
            // would be ready at once, for ever.
            if watching(FdEvents::OOB) && !now.oob {
                interest = merge(interest, Interest::PRIORITY);
            }
            if watching(FdEvents::WRITE) && state.write_owed() && !now.writable {
                interest = merge(interest, Interest::WRITABLE);
            }
        }
        Watched::Datagram(..) => {
            // Never wait for a readiness whose condition already holds: it
            // would be ready at once, for ever (the guest's next receive
            // wakes the engine instead).
            if watching(FdEvents::READ) && !now.data {
                interest = merge(interest, Interest::READABLE);
            }
            if watching(FdEvents::WRITE) && state.write_owed() && !now.writable {
                interest = merge(interest, Interest::WRITABLE);
            }
        }
        // The admitting task wakes the link when a connection is ready; a
        // connection that waits for room in the socket quota waits for a
        // socket of the guest to be closed.
        Watched::Listener(admission) => {
            if watching(FdEvents::ACCEPT) && admission.has_pending() && !now.pending_accept {
                interest = merge(interest, Interest::READABLE);
            }
        }
        Watched::Nothing => {}
    }
    Next::Wait { interest, full }
}

/// A readiness check that always fails: `try_io` with it clears tokio's
/// readiness of the interest it is given.
fn would_block() -> std::io::Result<()> {
    Err(std::io::ErrorKind::WouldBlock.into())
}

/// Urgent-data readiness of a stream: tokio registers streams for read and
/// write only, so FD_OOB watches a duplicate descriptor registered for
/// `EPOLLPRI`.
type UrgentWatch = AsyncFd<std::os::fd::OwnedFd>;

/// The readiness of `one` (a single interest) the kernel confirms in
/// `flags`.
fn confirms(flags: PollFlags, one: Interest) -> bool {
    (one.is_readable() && flags.intersects(PollFlags::IN | PollFlags::RDHUP))
        || (one.is_writable() && flags.contains(PollFlags::OUT))
        || (one.is_priority() && flags.contains(PollFlags::PRI))
}

/// Clears the readiness tokio holds for `interest` that the kernel does not
/// confirm: the engine has looked at the socket since it arrived. The
/// kernel is asked inside `try_io`, so readiness that arrives meanwhile is
/// kept; one `poll(2)` at most, none when tokio holds no readiness.
fn clear_stale(
    fd: impl AsFd,
    interest: Interest,
    try_io: impl Fn(Interest, &mut dyn FnMut() -> std::io::Result<()>) -> std::io::Result<()>,
) {
    let mut flags = None;
    for one in [Interest::READABLE, Interest::WRITABLE, Interest::PRIORITY] {
        let wanted = (one.is_readable() && interest.is_readable())
            || (one.is_writable() && interest.is_writable())
            || (one.is_priority() && interest.is_priority());
        if wanted {
            let _ = try_io(one, &mut || {
                let flags = *flags.get_or_insert_with(|| poll_now(&fd));
                if confirms(flags, one) {
                    Ok(())
                } else {
                    would_block()
                }
            });
        }
    }
}

/// Waits for readiness of `interest`, stale readiness cleared first.
/// Returns the readiness when it is new data on a stream watched for
/// nothing else (see [`deliver`]).
async fn ready(
    watched: &Watched,
    urgent: Option<&UrgentWatch>,
    interest: Interest,
) -> Option<Ready> {
    let (main, wants_urgent) = match urgent {
        Some(_) if interest.is_priority() => (interest.remove(Interest::PRIORITY), true),
        _ => (Some(interest), false),
    };
    let on_main = async {
        let Some(interest) = main else {
            return std::future::pending().await;
        };
        match watched {
            Watched::Stream(s) => {
                clear_stale(&**s, interest, |one, f| s.try_io(one, f));
                let ready = s.ready(interest).await.ok();
                ready.filter(|r| interest == Interest::READABLE && *r == Ready::READABLE)
            }
            Watched::Connecting(s) => {
                clear_stale(&**s, interest, |one, f| s.try_io(one, f));
                let _ = s.ready(interest).await;
                None
            }
            Watched::Datagram(u, _) => {
                clear_stale(&**u, interest, |one, f| u.try_io(one, f));
                let _ = u.ready(interest).await;
                None
            }
            // Readable on a listener: room in the socket quota.
            Watched::Listener(admission) => {
                admission.room().await;
                None
            }
            Watched::Joining(..) | Watched::Nothing => std::future::pending().await,
        }
    };
    let on_urgent = async {
        match urgent {
            Some(watch) if wants_urgent => {
                clear_stale(watch.get_ref(), Interest::PRIORITY, |one, f| {
                    watch.try_io(one, |_| f())
                });
                let _ = watch.ready(Interest::PRIORITY).await;
                None
            }
            _ => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        woke = on_main => woke,
        woke = on_urgent => woke,
    }
}

async fn run(link: Arc<EventLink>, mut watched: Watched) {
    // See `deliver`: readiness stands for what the socket shows only where
    // the guest's calls and this task never run at the same time.
    let alone = tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::CurrentThread;
    let urgent = match &watched {
        Watched::Connecting(s) | Watched::Stream(s)
            if link.registered_mask().contains(FdEvents::OOB) =>
        {
            sys::register_urgent(&**s).ok()
        }
        _ => None,
    };
    let mut woke = None;
    loop {
        // Whatever happens, give the runtime its turn now and then.
        tokio::task::consume_budget().await;
        let woken = link.wake.notified();
        let (interest, full) = match deliver(&link, &mut watched, woke) {
            Next::Stop => return,
            Next::Wait { interest, full } => (interest, full),
        };
        woke = tokio::select! {
            // In order: no random number per wake-up.
            biased;
            woke = async {
                match interest {
                    Some(interest) => ready(&watched, urgent.as_ref(), interest).await,
                    None => std::future::pending().await,
                }
            } => woke.filter(|_| alone),
            () = woken => None,
            () = async {
                match &full {
                    Some(queue) => queue.room().await,
                    None => std::future::pending().await,
                }
            } => None,
        };
    }
}
