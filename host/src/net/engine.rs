//! The event rules of WSPAsyncSelect applied to what a socket shows: each
//! registered socket's [`EventLink`] (its [`SelectState`] and queue), and
//! [`deliver`], which feeds one look at the native socket into that state
//! and posts the messages that become due into the guest's queue. The
//! guest's [`Reactor`](super::reactor::Reactor) decides when to look; the
//! guest never gets a call from the host: it pulls.
//!
//! A look uses what the kernel reported (the reactor's `epoll_wait`) or,
//! when a guest call asked for it, one `poll(2)`; a socket whose condition
//! has been posted and not re-enabled costs nothing until something
//! changes (no spin, DESIGN §5).

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use rustix::event::{PollFd, PollFlags, Timespec};
use socket2::SockRef;
use tokio::net::TcpStream;
use tokio::net::UdpSocket;

use super::admission::Admission;
use super::gate::DatagramFilter;
use super::queue::{Message, MessageQueue, Posted};
use super::reactor::Reactor;
use super::rooted::JoinCell;
use super::select::{Conditions, FdEvents, Input, Reenable, SelectState};
use super::socket::{abort_unreadable, purge_refused, unread_bytes};
use super::sys;
use crate::error::WsaError;

/// The registration of one socket, shared by the provider (which makes the
/// guest's calls) and the guest's reactor.
pub struct EventLink {
    socket: u32,
    inner: Mutex<LinkInner>,
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
    /// The reactor watching the socket, and the socket's key there.
    watch: Option<(Weak<Reactor>, u64)>,
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
            completion: None,
        };
        match queue.post(message) {
            Posted::Queued => inner.state.apply(Input::Posted(notice.event)),
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
        })
    }

    /// The reactor watches the socket under `key`.
    pub(crate) fn watched_as(&self, reactor: Weak<Reactor>, key: u64) {
        self.lock().watch = Some((reactor, key));
    }

    /// The reactor stopped watching the socket under `key`.
    pub(crate) fn unwatched(&self, key: u64) {
        let mut inner = self.lock();
        if inner.watch.as_ref().is_some_and(|(_, k)| *k == key) {
            inner.watch = None;
        }
    }

    /// Asks the reactor for a full look at the socket in its next turn
    /// (something the kernel does not report changed).
    pub fn wake(&self) {
        let watch = self.lock().watch.clone();
        if let Some((reactor, key)) = watch
            && let Some(reactor) = reactor.upgrade()
        {
            reactor.look_at(key);
        }
    }

    fn lock(&self) -> MutexGuard<'_, LinkInner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// WSPAsyncSelect: registers `mask` with message id `msg` on `queue`
    /// (SPEC AS-5, AS-6).
    pub fn register(&self, queue: &Arc<MessageQueue>, msg: u32, mask: FdEvents) {
        self.feed(Input::Register { mask, msg });
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

    /// Feeds `input` (a guest call or a task beside it changed something)
    /// into the socket's select state and asks the reactor to deliver what
    /// became due.
    pub fn feed(&self, input: Input) {
        self.lock().state.apply(input);
        self.wake();
    }

    /// A stream receive (WSPRecv, WSPRecvFrom) finished: FD_READ and FD_OOB
    /// are re-enabled (SPEC AS-9, AS-10) and what the receive showed is an
    /// observation. A message due now is posted at once; the engine, which
    /// keeps watching for new data meanwhile, is woken only when it has to
    /// look (see [`Remains::Unknown`], the peer's end) or the queue has no
    /// room.
    pub fn stream_received(&self, remains: Remains) {
        let mut inner = self.lock();
        inner.state.apply(Input::Reenabled(Reenable::Recv));
        let look = match remains {
            Remains::Nothing => {
                inner.state.apply(Input::DataObserved(false));
                inner.peer_ended
            }
            Remains::Data => {
                inner.state.apply(Input::DataObserved(true));
                false
            }
            Remains::Unknown => true,
        };
        let full = matches!(post_due(self.socket, &mut inner), Ok(Some(_)));
        drop(inner);
        if look || full {
            self.wake();
        }
    }

    /// A send (WSPSend, WSPSendTo) finished: FD_WRITE is re-enabled, and
    /// after WSAEWOULDBLOCK it is owed once room comes back (SPEC AS-9,
    /// AS-15), which the engine then watches for. A message due now is
    /// posted at once.
    pub fn sent(&self, would_block: bool) {
        let mut inner = self.lock();
        inner.state.apply(Input::Reenabled(Reenable::Send));
        if would_block {
            inner.state.apply(Input::SendWouldBlock);
        }
        let full = matches!(post_due(self.socket, &mut inner), Ok(Some(_)));
        drop(inner);
        if would_block || full {
            self.wake();
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
        self.wake();
    }

    /// The guest closed the socket: deliver nothing more (SPEC AS-19).
    pub fn close(&self) {
        self.lock().closed = true;
        self.wake();
    }
}

/// The native socket the reactor watches for a registered socket.
pub enum Watched {
    /// A stream socket whose connect is in progress.
    Connecting(Arc<TcpStream>),
    /// A stream socket whose rooted join handshake is running.
    Joining(Arc<TcpStream>, Arc<JoinCell>),
    /// A connected stream socket.
    Stream(Arc<TcpStream>),
    /// A listening socket: its admitted connections (the admitting task
    /// asks for a look through the link when one is ready).
    Listener(Arc<Admission>),
    /// A datagram socket and the senders that may reach its guest.
    Datagram(Arc<UdpSocket>, DatagramFilter),
    /// Nothing to watch (idle socket): only guest calls change anything.
    Nothing,
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
    /// What the kernel showed of a socket whose connect finished: the
    /// connected stream's first look uses it.
    connected_flags: Option<PollFlags>,
}

/// The conditions `fd` shows now, asked with one `poll(2)`.
fn poll_now(fd: impl std::os::fd::AsFd) -> PollFlags {
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

/// What a connected stream shows, from `flags` (what the kernel reported):
/// FIONREAD only once the peer's side has ended (to tell the last data from
/// the end), SO_OOBINLINE only when FD_OOB is registered. After the guest
/// shut its receive direction, data is no news but aborts the connection,
/// and the peer's FIN is the close indication (SPEC AS-18).
fn observe_stream(
    stream: &TcpStream,
    flags: PollFlags,
    wants_oob: bool,
    receive_shut: bool,
) -> Observed {
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
        connected_flags: None,
    }
}

/// One look at `watched`: `flags` as the kernel reported them, or asked
/// now when there are none.
fn observe(watched: &Watched, link: &EventLink, flags: Option<PollFlags>) -> Observed {
    match watched {
        Watched::Connecting(stream) => {
            let flags = flags.unwrap_or_else(|| poll_now(&**stream));
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
                connected_flags: Some(flags),
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
            let flags = flags.unwrap_or_else(|| poll_now(&**stream));
            observe_stream(stream, flags, wants_oob, receive_shut)
        }
        Watched::Listener(admission) => Observed {
            now: Conditions {
                pending_accept: admission.can_accept(),
                ..Conditions::default()
            },
            ..Observed::default()
        },
        Watched::Datagram(udp, filter) => {
            let flags = flags.unwrap_or_else(|| poll_now(&**udp));
            // A refused datagram is no FD_READ: it is dropped unseen, and
            // data is there when an admitted datagram is at the head.
            let admitted = flags.contains(PollFlags::IN) && purge_refused(udp, filter);
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

/// What a delivery leaves the reactor to wait for.
pub(crate) enum Next {
    /// Nothing more: the socket was closed, unregistered, or its queue is
    /// gone.
    Stop,
    /// Later reports of the kernel and looks asked for; besides, `room` in
    /// the socket quota for a listener's waiting connection, and room in
    /// `full` when a post found it full.
    Wait {
        room: bool,
        full: Option<Arc<MessageQueue>>,
    },
}

/// Looks at the socket (with `flags` the kernel reported, or asking it
/// now), feeds what it shows into the socket's select state, and posts
/// what is due (SPEC AS-9 .. AS-20).
pub(crate) fn deliver(link: &EventLink, watched: &mut Watched, flags: Option<PollFlags>) -> Next {
    let seen = observe(watched, link, flags);
    let mut inner = link.lock();
    if inner.closed || inner.queue.as_ref().and_then(Weak::upgrade).is_none() {
        return Next::Stop;
    }
    if let Some(outcome) = seen.connect {
        inner.state.apply(Input::ConnectFinished(outcome));
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
        // Just connected: what the kernel showed, read as a connected
        // stream.
        (Watched::Stream(stream), Some(None)) => observe_stream(
            stream,
            seen.connected_flags.unwrap_or_else(|| poll_now(&**stream)),
            inner.state.mask().contains(FdEvents::OOB),
            inner.receive_shut,
        ),
        _ => seen,
    };
    if let Some(close) = seen.close {
        inner.state.apply(Input::CloseArrived(close));
    }
    inner.state.apply(Input::Observed(seen.now));
    if matches!(watched, Watched::Stream(_)) {
        inner.peer_ended = seen.ended;
    }
    let Ok(full) = post_due(link.socket, &mut inner) else {
        return Next::Stop;
    };
    // A connection that waits for room in the socket quota waits for a
    // socket of the guest to be closed.
    let room = match watched {
        Watched::Listener(admission) => {
            inner.state.watching(FdEvents::ACCEPT)
                && admission.has_pending()
                && !inner.state.conditions().pending_accept
        }
        _ => false,
    };
    Next::Wait { room, full }
}
