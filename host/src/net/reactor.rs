//! The event reactor of one guest (WSPAsyncSelect): one epoll set holds
//! every registered socket of the guest, and it is turned inline, on the
//! guest's own thread, whenever the guest looks at one of its message
//! queues (a drain, a peek, its length, waiting on its pollable). A turn
//! reads what the kernel reports (`epoll_wait`, timeout 0), feeds each
//! socket's [`SelectState`](super::select::SelectState) and posts what
//! became due: no task per socket, no wake-up per event, and an idle guest
//! costs nothing at all (SPEC AS-1, AS-9).
//!
//! Sockets are added edge-triggered for every condition a message can be
//! about (`EPOLLIN | EPOLLOUT | EPOLLPRI | EPOLLRDHUP`). The kernel reports
//! a socket's conditions as of the `epoll_wait` that returns them, and
//! nothing of the guest's runs during a turn, so what a turn reads is what
//! the socket shows: no second look (`poll(2)`) on the hot path. What the
//! kernel cannot report (a guest call changed the registration, the
//! listener's admitting task has a connection ready, a rooted join
//! finished) is asked for with [`EventLink::wake`](super::engine::EventLink)
//! and looked at in full at the next turn.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use rustix::event::epoll::{self, CreateFlags, Event, EventData, EventFlags};
use rustix::event::{PollFlags, Timespec};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Notify;

use super::engine::{EventLink, Next, Watched, deliver};
use super::gate::Gate;
use super::queue::MessageQueue;
use super::sys;
use crate::error::WsaError;

/// Events one `epoll_wait` returns at most; a turn asks again while it
/// gets this many.
const EVENTS_PER_WAIT: usize = 64;

/// What the reactor's epoll set reports about a socket.
const CONDITIONS: EventFlags = EventFlags::IN
    .union(EventFlags::OUT)
    .union(EventFlags::PRI)
    .union(EventFlags::RDHUP)
    .union(EventFlags::ET);

/// A socket's place in its reactor: the slot index and the slot's
/// generation (so that an event for a socket since removed is ignored).
type Key = u64;

fn key(index: u32, generation: u32) -> Key {
    (u64::from(generation) << 32) | u64::from(index)
}

fn index(key: Key) -> usize {
    (key & u64::from(u32::MAX)) as usize
}

fn generation(key: Key) -> u32 {
    (key >> 32) as u32
}

/// The native socket in the epoll set, held until it leaves the set (its
/// descriptor must stay open for `EPOLL_CTL_DEL`).
enum Source {
    Stream(Arc<TcpStream>),
    Datagram(Arc<UdpSocket>),
}

impl Source {
    fn of(watched: &Watched) -> Option<Self> {
        match watched {
            Watched::Connecting(s) | Watched::Joining(s, _) | Watched::Stream(s) => {
                Some(Self::Stream(s.clone()))
            }
            Watched::Datagram(u, _) => Some(Self::Datagram(u.clone())),
            Watched::Listener(_) | Watched::Nothing => None,
        }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Stream(s) => s.as_fd(),
            Self::Datagram(u) => u.as_fd(),
        }
    }
}

/// One watched socket.
struct Entry {
    link: Arc<EventLink>,
    watched: Watched,
    source: Option<Source>,
    /// In `Entries::full`: a post found its queue full.
    waits_for_queue: Option<Arc<MessageQueue>>,
    /// In `Entries::room`: a listener's FD_ACCEPT waits for room in the
    /// socket quota.
    waits_for_room: bool,
}

#[derive(Default)]
struct Slot {
    generation: u32,
    entry: Option<Entry>,
}

#[derive(Default)]
struct Entries {
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Sockets whose messages wait for room in their queue.
    full: Vec<Key>,
    /// Listeners whose FD_ACCEPT waits for room in the socket quota.
    room: Vec<Key>,
}

impl Entries {
    fn get_mut(&mut self, key: Key) -> Option<&mut Entry> {
        let slot = self.slots.get_mut(index(key))?;
        (slot.generation == generation(key))
            .then_some(slot.entry.as_mut())
            .flatten()
    }

    /// Delivers to the socket of `key` what `flags` (from the kernel) or,
    /// without them, a full look shows.
    fn deliver(&mut self, key: Key, flags: Option<PollFlags>) {
        let Some(entry) = self.get_mut(key) else {
            return;
        };
        let Next::Wait { room, full } = deliver(&entry.link, &mut entry.watched, flags) else {
            return;
        };
        let newly_full = full.is_some() && entry.waits_for_queue.is_none();
        if full.is_some() {
            entry.waits_for_queue = full;
        }
        let newly_room = room && !entry.waits_for_room;
        entry.waits_for_room |= room;
        if newly_full {
            self.full.push(key);
        }
        if newly_room {
            self.room.push(key);
        }
    }
}

/// The reactor of one guest: its epoll set and its watched sockets.
pub struct Reactor {
    /// The epoll set, registered with tokio for readability (some socket
    /// has news); made at the first watch, inside the runtime.
    epoll: OnceLock<AsyncFd<OwnedFd>>,
    entries: Mutex<Entries>,
    /// Sockets to look at in full at the next turn.
    looks: Mutex<Vec<Key>>,
    /// A look was asked for (perhaps from a task beside the guest).
    looked_for: Notify,
    /// The guest's gate: its socket quota frees room for FD_ACCEPT.
    gate: Arc<Gate>,
}

/// A socket's membership of its reactor; dropping it takes the socket out.
pub struct Watch {
    reactor: Arc<Reactor>,
    key: Key,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.reactor.unwatch(self.key);
    }
}

impl Reactor {
    /// The reactor of the guest behind `gate`, with nothing watched (and no
    /// epoll set yet).
    pub fn new(gate: Arc<Gate>) -> Arc<Self> {
        Arc::new(Self {
            epoll: OnceLock::new(),
            entries: Mutex::default(),
            looks: Mutex::default(),
            looked_for: Notify::new(),
            gate,
        })
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn looks(&self) -> MutexGuard<'_, Vec<Key>> {
        self.looks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn epoll(&self) -> Result<&AsyncFd<OwnedFd>, WsaError> {
        if let Some(epoll) = self.epoll.get() {
            return Ok(epoll);
        }
        let made = epoll::create(CreateFlags::CLOEXEC)
            .map_err(std::io::Error::from)
            .and_then(sys::register_readable);
        match made {
            Ok(epoll) => Ok(self.epoll.get_or_init(|| epoll)),
            Err(err) => {
                tracing::warn!("no event reactor for the guest: {err}");
                Err(WsaError::NoBufs)
            }
        }
    }

    /// Watches `link`'s socket as `watched` (WSPAsyncSelect registered
    /// it, or its state changed): its current conditions are looked at in
    /// the next turn, then every change the kernel reports.
    /// `WSAENOBUFS` when the kernel has no room for one more watch.
    pub fn watch(
        self: &Arc<Self>,
        link: &Arc<EventLink>,
        watched: Watched,
    ) -> Result<Watch, WsaError> {
        let epoll = self.epoll()?;
        let source = Source::of(&watched);
        let mut entries = self.entries();
        let index = match entries.free.pop() {
            Some(index) => index,
            None => {
                let Ok(index) = u32::try_from(entries.slots.len()) else {
                    return Err(WsaError::NoBufs);
                };
                entries.slots.push(Slot::default());
                index
            }
        };
        let slot = &mut entries.slots[index as usize];
        let key = key(index, slot.generation);
        if let Some(source) = &source
            && let Err(err) = epoll::add(epoll, source.fd(), EventData::new_u64(key), CONDITIONS)
        {
            entries.free.push(index);
            tracing::warn!("a socket could not join the guest's event reactor: {err}");
            return Err(WsaError::NoBufs);
        }
        slot.entry = Some(Entry {
            link: link.clone(),
            watched,
            source,
            waits_for_queue: None,
            waits_for_room: false,
        });
        drop(entries);
        link.watched_as(Arc::downgrade(self), key);
        self.look_at(key);
        Ok(Watch {
            reactor: self.clone(),
            key,
        })
    }

    fn unwatch(&self, key: Key) {
        let mut entries = self.entries();
        let Some(slot) = entries.slots.get_mut(index(key)) else {
            return;
        };
        if slot.generation != generation(key) {
            return;
        }
        let entry = slot.entry.take();
        slot.generation = slot.generation.wrapping_add(1);
        entries.free.push(index(key) as u32);
        drop(entries);
        if let Some(entry) = entry {
            if let (Some(source), Some(epoll)) = (&entry.source, self.epoll.get()) {
                let _ = epoll::delete(epoll, source.fd());
            }
            entry.link.unwatched(key);
        }
    }

    /// Asks for a full look at the socket of `key` in the next turn (and
    /// wakes a guest waiting on one of its queues).
    pub(crate) fn look_at(&self, key: Key) {
        self.looks().push(key);
        self.looked_for.notify_one();
    }

    /// Delivers everything that happened since the last turn: what the
    /// kernel reports, the looks asked for, and messages that waited for
    /// room in their queue or in the socket quota. Never waits.
    pub fn turn(&self) {
        let Some(epoll) = self.epoll.get() else {
            return;
        };
        let mut entries = self.entries();
        let entries = &mut *entries;
        loop {
            let mut got = [(0, PollFlags::empty()); EVENTS_PER_WAIT];
            let mut count = 0;
            // tokio's readiness of the epoll set says whether anything was
            // reported since the set was last found empty: without it, no
            // system call. Fewer events than asked for empties the set, so
            // the readiness is cleared (a later report sets it again).
            let more = epoll
                .try_io(Interest::READABLE, |fd| {
                    let mut events = [MaybeUninit::<Event>::uninit(); EVENTS_PER_WAIT];
                    let zero = Timespec {
                        tv_sec: 0,
                        tv_nsec: 0,
                    };
                    let (events, _) = epoll::wait(fd, &mut events, Some(&zero))?;
                    for (slot, event) in got.iter_mut().zip(events.iter()) {
                        let (flags, data) = (event.flags, event.data);
                        *slot = (data.u64(), PollFlags::from_bits_truncate(flags.bits() as _));
                    }
                    count = events.len();
                    if count < EVENTS_PER_WAIT {
                        Err(std::io::ErrorKind::WouldBlock.into())
                    } else {
                        Ok(())
                    }
                })
                .is_ok();
            for &(key, flags) in &got[..count] {
                entries.deliver(key, Some(flags));
            }
            if !more {
                break;
            }
        }
        let looks = std::mem::take(&mut *self.looks());
        for key in looks {
            entries.deliver(key, None);
        }
        if !entries.full.is_empty() {
            let waiting = std::mem::take(&mut entries.full);
            for key in waiting {
                let Some(entry) = entries.get_mut(key) else {
                    continue;
                };
                let still_full = entry
                    .waits_for_queue
                    .as_ref()
                    .is_some_and(|queue| queue.is_full() && !queue.is_closed());
                if still_full {
                    entries.full.push(key);
                } else {
                    entry.waits_for_queue = None;
                    entries.deliver(key, None);
                }
            }
        }
        if !entries.room.is_empty() && self.gate.has_room() {
            let waiting = std::mem::take(&mut entries.room);
            for key in waiting {
                if let Some(entry) = entries.get_mut(key) {
                    entry.waits_for_room = false;
                    entries.deliver(key, None);
                }
            }
        }
    }

    /// Waits until a turn may deliver something new: the kernel reported
    /// an event, a look was asked for, or the socket quota has room for a
    /// listener's waiting connection.
    pub async fn activity(&self) {
        let looked_for = self.looked_for.notified();
        if !self.looks().is_empty() {
            return;
        }
        let reported = async {
            match self.epoll.get() {
                // The readiness stays: the next turn clears it.
                Some(epoll) => drop(epoll.readable().await),
                None => std::future::pending().await,
            }
        };
        let room = async {
            if self.entries().room.is_empty() {
                std::future::pending().await
            } else {
                self.gate.room().await
            }
        };
        tokio::select! {
            biased;
            () = looked_for => {}
            () = reported => {}
            () = room => {}
        }
    }
}
