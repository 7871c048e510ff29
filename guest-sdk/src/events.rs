//! WSPAsyncSelect for plugins: message queues, events and the message loop
//! (the `GetMessage` / dispatch shape of a Windows program).
//!
//! ```no_run
//! use wasp_guest::{EventQueue, FdEvents, Socket};
//! const WM_SOCKET: u32 = 1;
//! let queue = EventQueue::new(1024);
//! let listener = Socket::listen_on("127.0.0.1:7000".parse().unwrap(), 128)?;
//! queue.select(&listener, WM_SOCKET, FdEvents::ACCEPT)?;
//! queue.run(|event| {
//!     if event.is(FdEvents::ACCEPT) {
//!         // accept until WSAEWOULDBLOCK ...
//!     }
//!     std::ops::ControlFlow::<()>::Continue(())
//! });
//! # Ok::<(), wasp_guest::WsaError>(())
//! ```

use std::ops::ControlFlow;
use std::time::Duration;

use crate::raw::messages::{Message, MessageQueue};
use crate::raw::sockets as wsp;
use crate::raw::types::FdEvents;
use crate::raw::wasi::io::poll::Pollable;
use crate::{Result, Socket, WsaError};

/// Most messages one [`EventQueue::wait`] takes at once.
pub const DEFAULT_BATCH: u32 = 256;

/// One network event (a posted message, SPEC AS-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// The message id the socket was registered with (`wMsg`).
    pub msg: u32,
    /// The socket descriptor (`wParam`).
    pub socket: u32,
    /// The single event (`WSAGETSELECTEVENT(lParam)`).
    pub event: FdEvents,
    /// The error carried (`WSAGETSELECTERROR(lParam)`), if any.
    pub error: Option<WsaError>,
    /// The packed `lParam`: `error << 16 | event`, Winsock values.
    pub lparam: u32,
    /// The completion of an overlapped send or receive this message
    /// reports (SPEC SE-7); `event` is then empty and `error` the
    /// operation's.
    pub completion: Option<Completion>,
}

/// The completion of an overlapped operation (SPEC SE-7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The token the operation was started with.
    pub token: u64,
    /// Bytes transferred (a receive's bytes come from
    /// [`Socket::overlapped_result`]).
    pub bytes: u32,
}

/// The overlapped argument of a send or receive (SPEC SE-7): the
/// operation's token, and the queue and message id of its completion.
#[derive(Clone, Copy)]
pub struct Overlapped<'a> {
    /// The queue the completion is posted to.
    pub queue: &'a EventQueue,
    /// The completion's message id.
    pub msg: u32,
    /// The guest's name for the operation.
    pub token: u64,
}

impl Overlapped<'_> {
    /// The WIT form of the argument.
    pub fn raw(&self) -> wsp::Overlapped<'_> {
        wsp::Overlapped {
            token: self.token,
            queue: &self.queue.raw,
            msg: self.msg,
        }
    }
}

impl Event {
    /// Whether this is `event` (one of `FdEvents::READ`, ...).
    pub fn is(&self, event: FdEvents) -> bool {
        self.event == event
    }

    /// `WSAGETSELECTEVENT`: the Winsock `FD_*` value.
    pub fn select_event(&self) -> u32 {
        self.lparam & 0xffff
    }

    /// `WSAGETSELECTERROR`: the Winsock error value, 0 for none.
    pub fn select_error(&self) -> u32 {
        self.lparam >> 16
    }
}

impl From<Message> for Event {
    fn from(m: Message) -> Self {
        Event {
            msg: m.msg,
            socket: m.socket,
            event: m.event,
            error: m.error.map(WsaError),
            lparam: m.lparam,
            completion: m.completion.map(|c| Completion {
                token: c.token,
                bytes: c.bytes,
            }),
        }
    }
}

/// A guest-owned message queue (the window of WSPAsyncSelect). Dropping it
/// stops delivery to it.
pub struct EventQueue {
    raw: MessageQueue,
}

impl EventQueue {
    /// A queue holding at most `capacity` messages (FD_CONNECT and FD_CLOSE
    /// may go past a full queue, once each per socket; other events wait
    /// for room).
    pub fn new(capacity: u32) -> Self {
        EventQueue {
            raw: MessageQueue::new(capacity),
        }
    }

    /// `wsp-async-select(socket, self, msg, events)`: the socket becomes
    /// non-blocking and its events are posted here with message id `msg`.
    /// `FdEvents::empty()` cancels.
    pub fn select(&self, socket: &Socket, msg: u32, events: FdEvents) -> Result<()> {
        Ok(wsp::wsp_async_select(socket.raw(), &self.raw, msg, events)?)
    }

    /// The next event, waiting up to `timeout` (forever with `None`).
    pub fn get(&self, timeout: Option<Duration>) -> Option<Event> {
        let ms = timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
        self.raw.get(ms).map(Event::from)
    }

    /// The next event, left in the queue.
    pub fn peek(&self) -> Option<Event> {
        self.raw.peek().map(Event::from)
    }

    /// Up to `max` events that are already there, without waiting.
    pub fn drain(&self, max: u32) -> Vec<Event> {
        self.raw.drain(max).into_iter().map(Event::from).collect()
    }

    /// Waits for at least one event, then takes up to `max` at once (one
    /// host call for the batch).
    pub fn wait(&self, max: u32) -> Vec<Event> {
        let mut batch = self.drain(max);
        if batch.is_empty()
            && let Some(first) = self.get(None)
        {
            batch.push(first);
            batch.extend(self.drain(max.saturating_sub(1)));
        }
        batch
    }

    /// A `wasi:io` pollable, ready when an event waits.
    pub fn subscribe(&self) -> Pollable {
        crate::raw::readiness::subscribe(&self.raw)
    }

    /// How often events were held back because the queue was full.
    pub fn overflows(&self) -> u64 {
        self.raw.overflows()
    }

    /// The message loop: waits for events and hands each to `handler`
    /// until it returns `ControlFlow::Break` (or the queue is closed).
    pub fn run<B>(&self, mut handler: impl FnMut(Event) -> ControlFlow<B>) -> Option<B> {
        loop {
            let batch = self.wait(DEFAULT_BATCH);
            if batch.is_empty() {
                return None;
            }
            for event in batch {
                if let ControlFlow::Break(b) = handler(event) {
                    return Some(b);
                }
            }
        }
    }

    /// Closes the queue: delivery stops and `get` returns `None`.
    pub fn close(&self) {
        self.raw.close();
    }
}

/// The handler of one message id (a window procedure).
pub type Handler<'a, B> = Box<dyn FnMut(Event) -> ControlFlow<B> + 'a>;

/// Handlers per message id: the window procedures of this world.
pub struct Dispatcher<'a, B> {
    handlers: Vec<(u32, Handler<'a, B>)>,
}

impl<'a, B> Default for Dispatcher<'a, B> {
    fn default() -> Self {
        Dispatcher {
            handlers: Vec::new(),
        }
    }
}

impl<'a, B> Dispatcher<'a, B> {
    /// No handlers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Handles events posted with message id `msg`.
    pub fn on(mut self, msg: u32, handler: impl FnMut(Event) -> ControlFlow<B> + 'a) -> Self {
        self.handlers.push((msg, Box::new(handler)));
        self
    }

    /// Hands one event to its handler (events of unknown ids are ignored).
    pub fn dispatch(&mut self, event: Event) -> ControlFlow<B> {
        match self.handlers.iter_mut().find(|(msg, _)| *msg == event.msg) {
            Some((_, handler)) => handler(event),
            None => ControlFlow::Continue(()),
        }
    }

    /// `queue.run` with this dispatcher.
    pub fn run(mut self, queue: &EventQueue) -> Option<B> {
        queue.run(|event| self.dispatch(event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(msg: u32, event: FdEvents) -> Event {
        Event {
            msg,
            socket: 9,
            event,
            error: None,
            lparam: 0x1,
            completion: None,
        }
    }

    #[test]
    fn dispatcher_routes_by_message_id() {
        let mut seen = Vec::new();
        {
            let mut dispatcher = Dispatcher::<&str>::new()
                .on(1, |e| {
                    seen.push(e.msg);
                    ControlFlow::Continue(())
                })
                .on(2, |_| ControlFlow::Break("stop"));
            assert_eq!(
                dispatcher.dispatch(event(1, FdEvents::READ)),
                ControlFlow::Continue(())
            );
            assert_eq!(
                dispatcher.dispatch(event(3, FdEvents::READ)),
                ControlFlow::Continue(())
            );
            assert_eq!(
                dispatcher.dispatch(event(2, FdEvents::CLOSE)),
                ControlFlow::Break("stop")
            );
        }
        assert_eq!(seen, [1]);
    }

    #[test]
    fn lparam_splits_into_event_and_error() {
        let e = Event {
            lparam: (10061 << 16) | 0x10,
            ..event(1, FdEvents::CONNECT)
        };
        assert_eq!((e.select_event(), e.select_error()), (0x10, 10061));
        assert!(e.is(FdEvents::CONNECT));
    }
}
