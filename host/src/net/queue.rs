//! Guest-owned message queues: the HWND of this world (SPEC mapping of
//! `WPUPostMessage`). The event engine posts, the guest takes.
//!
//! A queue is bounded by its capacity. When it is full, FD_READ, FD_WRITE,
//! FD_OOB, FD_ACCEPT and the change notifications are not dropped: their
//! event stays due in the socket's state and is posted as soon as the guest
//! makes room, and the queue counts how often a post had to wait
//! ([`MessageQueue::overflows`]). FD_CONNECT and FD_CLOSE are never held
//! back: they go past the capacity (at most two per socket, so the excess
//! is bounded by the socket quota).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;

use super::meter::Meter;
use super::reactor::Reactor;
use super::select::{FdEvents, Notice};

/// Largest capacity a guest may ask for.
pub const MAX_QUEUE_CAPACITY: u32 = 1 << 16;

/// One posted message (SPEC AS-1), or the completion of an overlapped
/// operation (SPEC SE-7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    /// The message id given to `wsp-async-select` (`wMsg`), or to the
    /// overlapped argument.
    pub msg: u32,
    /// The socket (`wParam`).
    pub socket: u32,
    /// The event and its error (`lParam`); a completion has no event and
    /// the operation's error.
    pub notice: Notice,
    /// The completion this message reports, if it reports one.
    pub completion: Option<Completion>,
}

/// What the completion of an overlapped operation reports (SPEC SE-7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The guest's token for the operation.
    pub token: u64,
    /// Bytes transferred.
    pub bytes: u32,
}

/// What happened to a post.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Posted {
    /// The message is in the queue.
    Queued,
    /// The queue is full; try again once it has room.
    Full,
    /// The queue was closed by its owner: stop posting to it.
    Closed,
}

#[derive(Default)]
struct Inner {
    messages: VecDeque<Message>,
    capacity: usize,
    closed: bool,
    overflows: u64,
    /// Queued FD_CONNECT / FD_CLOSE messages by (socket, event bits).
    critical: HashMap<(u32, u32), u32>,
}

/// FD_CONNECT and FD_CLOSE: the events that may go past the capacity.
const CRITICAL: FdEvents = FdEvents::CONNECT.union(FdEvents::CLOSE);

fn critical_key(message: &Message) -> Option<(u32, u32)> {
    (message.completion.is_none() && CRITICAL.contains(message.notice.event))
        .then_some((message.socket, message.notice.event.bits()))
}

impl Inner {
    fn pop_front(&mut self) -> Option<Message> {
        let message = self.messages.pop_front()?;
        if let Some(key) = critical_key(&message)
            && let std::collections::hash_map::Entry::Occupied(mut queued) =
                self.critical.entry(key)
        {
            *queued.get_mut() -= 1;
            if *queued.get() == 0 {
                queued.remove();
            }
        }
        Some(message)
    }
}

/// A bounded message queue shared by the guest and the event engine.
///
/// Looking at the queue (taking, peeking, its length, waiting) first turns
/// the reactor of the guest whose sockets post into it, so that what the
/// kernel reported since is in the queue (see `net::reactor`).
#[derive(Default)]
pub struct MessageQueue {
    inner: Mutex<Inner>,
    arrived: Notify,
    /// The reactor of the guest whose sockets post here, from the first
    /// WSPAsyncSelect with this queue on.
    reactor: OnceLock<Arc<Reactor>>,
    /// The meter of the guest that owns the queue: counts its posts.
    meter: Option<Arc<Meter>>,
}

impl MessageQueue {
    /// A queue of at most `capacity` messages (clamped to
    /// 1..=[`MAX_QUEUE_CAPACITY`]).
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    pub fn new(capacity: u32) -> Arc<Self> {
        Self::with_meter(capacity, None)
    }

    /// A queue as [`MessageQueue::new`] whose posts and depth `meter`
    /// counts.
    pub fn metered(capacity: u32, meter: &Arc<Meter>) -> Arc<Self> {
        let queue = Self::with_meter(capacity, Some(meter.clone()));
        meter.track_queue(&queue);
        queue
    }

    fn with_meter(capacity: u32, meter: Option<Arc<Meter>>) -> Arc<Self> {
        let queue = Self {
            meter,
            ..Self::default()
        };
        queue.lock().capacity = capacity.clamp(1, MAX_QUEUE_CAPACITY) as usize;
        Arc::new(queue)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Posts `message`. When the queue is full, FD_CONNECT and FD_CLOSE
    /// still go in unless one of the same event of the same socket is
    /// already queued, and completions always do (their number is bounded
    /// by the guest's pending overlapped operations).
    pub fn post(&self, message: Message) -> Posted {
        let mut inner = self.lock();
        if inner.closed {
            return Posted::Closed;
        }
        let key = critical_key(&message);
        let full = inner.messages.len() >= inner.capacity;
        let past_capacity =
            message.completion.is_some() || key.is_some_and(|k| !inner.critical.contains_key(&k));
        if full && !past_capacity {
            inner.overflows += 1;
            drop(inner);
            self.count(false);
            return Posted::Full;
        }
        if let Some(key) = key {
            *inner.critical.entry(key).or_default() += 1;
        }
        inner.messages.push_back(message);
        drop(inner);
        self.count(true);
        self.arrived.notify_waiters();
        Posted::Queued
    }

    fn count(&self, queued: bool) {
        if let Some(meter) = &self.meter {
            meter.posted(queued);
        }
    }

    /// Messages waiting now, without a reactor turn (for a reading from
    /// another thread).
    pub(crate) fn waiting(&self) -> usize {
        self.lock().messages.len()
    }

    /// Ties the queue to the reactor of the guest that registers a socket
    /// with it (WSPAsyncSelect). False when the queue already belongs to
    /// another guest's reactor: a queue is one guest's (SPEC AS-1).
    pub(crate) fn attach(&self, reactor: &Arc<Reactor>) -> bool {
        Arc::ptr_eq(self.reactor.get_or_init(|| reactor.clone()), reactor)
    }

    /// Delivers what the guest's sockets have to post (a reactor turn).
    fn turn(&self) {
        if let Some(reactor) = self.reactor.get() {
            reactor.turn();
        }
    }

    /// Takes the oldest message without waiting.
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    pub fn try_get(&self) -> Option<Message> {
        self.turn();
        self.lock().pop_front()
    }

    /// Takes the oldest message, waiting up to `timeout` (forever with
    /// `None`). Only the calling guest waits.
    pub async fn get(&self, timeout: Option<Duration>) -> Option<Message> {
        let wait = async {
            loop {
                // `ready` has just turned the reactor: take without a
                // second turn.
                self.ready().await;
                let mut inner = self.lock();
                if let Some(message) = inner.pop_front() {
                    return Some(message);
                }
                if inner.closed {
                    return None;
                }
            }
        };
        match timeout {
            Some(limit) => tokio::time::timeout(limit, wait).await.ok().flatten(),
            None => wait.await,
        }
    }

    /// Waits until a message is there (or the queue is closed).
    pub async fn ready(&self) {
        loop {
            let arrived = self.arrived.notified();
            self.turn();
            {
                let inner = self.lock();
                if !inner.messages.is_empty() || inner.closed {
                    return;
                }
            }
            match self.reactor.get() {
                Some(reactor) => tokio::select! {
                    biased;
                    () = arrived => {}
                    () = reactor.activity() => {}
                },
                None => arrived.await,
            }
        }
    }

    /// The oldest message, left in the queue.
    pub fn peek(&self) -> Option<Message> {
        self.turn();
        self.lock().messages.front().copied()
    }

    /// Takes up to `max` messages at once, oldest first.
    pub fn drain(&self, max: usize) -> Vec<Message> {
        self.turn();
        let mut inner = self.lock();
        let n = max.min(inner.messages.len());
        (0..n).filter_map(|_| inner.pop_front()).collect()
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.turn();
        self.lock().messages.len()
    }

    /// Whether a post other than FD_CONNECT and FD_CLOSE would find the
    /// queue full (no reactor turn: the reactor asks this itself).
    pub(crate) fn is_full(&self) -> bool {
        let inner = self.lock();
        inner.messages.len() >= inner.capacity
    }

    /// Whether no message waits.
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many posts found the queue full and had to wait.
    pub fn overflows(&self) -> u64 {
        self.turn();
        self.lock().overflows
    }

    /// Closes the queue: posting stops, waiting `get`s return `None`, and
    /// `wsp-async-select` with it is WSAEINVAL (SPEC AS-3).
    pub fn close(&self) {
        self.lock().closed = true;
        self.arrived.notify_waiters();
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::WsaError;

    fn message(event: FdEvents) -> Message {
        Message {
            msg: 1,
            socket: 2,
            notice: Notice { event, error: None },
            completion: None,
        }
    }

    #[test]
    fn full_queue_holds_back_ordinary_events_but_never_connect_or_close() {
        let queue = MessageQueue::new(1);
        assert_eq!(queue.post(message(FdEvents::READ)), Posted::Queued);
        assert_eq!(queue.post(message(FdEvents::WRITE)), Posted::Full);
        assert_eq!(queue.overflows(), 1);
        let close = Message {
            notice: Notice {
                event: FdEvents::CLOSE,
                error: Some(WsaError::ConnReset),
            },
            ..message(FdEvents::CLOSE)
        };
        assert_eq!(queue.post(message(FdEvents::CONNECT)), Posted::Queued);
        assert_eq!(queue.post(close), Posted::Queued);
        assert_eq!(queue.drain(10).len(), 3);
    }

    #[test]
    fn connect_and_close_go_past_the_capacity_once_per_socket() {
        // Issue 8 point 2: a guest reconnecting a UDP socket in a loop with
        // a full queue grew it without bound (1.5 M messages in 60 s).
        let queue = MessageQueue::new(1);
        assert_eq!(queue.post(message(FdEvents::READ)), Posted::Queued);
        for _ in 0..1000 {
            queue.post(message(FdEvents::CONNECT));
            queue.post(message(FdEvents::CLOSE));
        }
        assert_eq!(queue.len(), 3, "capacity 1 + one CONNECT + one CLOSE");
        let other_socket = Message {
            socket: 3,
            ..message(FdEvents::CONNECT)
        };
        assert_eq!(queue.post(other_socket), Posted::Queued);
        assert_eq!(queue.post(other_socket), Posted::Full);
        // Once taken, the socket's next FD_CONNECT may go past again.
        let taken: Vec<_> = queue.drain(2).iter().map(|m| m.notice.event).collect();
        assert_eq!(taken, [FdEvents::READ, FdEvents::CONNECT]);
        assert_eq!(queue.post(message(FdEvents::CONNECT)), Posted::Queued);
        assert_eq!(queue.len(), 3);
    }

    #[test]
    fn peek_leaves_and_drain_takes_in_order() {
        let queue = MessageQueue::new(8);
        for e in [FdEvents::READ, FdEvents::WRITE, FdEvents::ACCEPT] {
            queue.post(message(e));
        }
        assert_eq!(queue.peek().unwrap().notice.event, FdEvents::READ);
        assert_eq!(queue.len(), 3);
        let events: Vec<_> = queue.drain(2).iter().map(|m| m.notice.event).collect();
        assert_eq!(events, [FdEvents::READ, FdEvents::WRITE]);
        assert_eq!(queue.try_get().unwrap().notice.event, FdEvents::ACCEPT);
        assert!(queue.try_get().is_none());
    }

    #[tokio::test]
    async fn get_times_out_and_close_wakes_waiters() {
        let queue = MessageQueue::new(4);
        assert_eq!(queue.get(Some(Duration::from_millis(10))).await, None);
        let waiter = {
            let queue = queue.clone();
            tokio::spawn(async move { queue.get(None).await })
        };
        tokio::task::yield_now().await;
        queue.close();
        assert_eq!(waiter.await.unwrap(), None);
        assert_eq!(queue.post(message(FdEvents::READ)), Posted::Closed);
    }

    #[tokio::test]
    async fn a_waiting_get_receives_a_later_post() {
        let queue = MessageQueue::new(4);
        let waiter = {
            let queue = queue.clone();
            tokio::spawn(async move { queue.get(Some(Duration::from_secs(30))).await })
        };
        tokio::task::yield_now().await;
        queue.post(message(FdEvents::ACCEPT));
        assert_eq!(
            waiter.await.unwrap().unwrap().notice.event,
            FdEvents::ACCEPT
        );
    }
}
