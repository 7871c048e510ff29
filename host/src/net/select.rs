//! The WSPAsyncSelect rules as a pure state machine: conditions and calls
//! in, messages out (SPEC AS-1..AS-26). No sockets, no clocks: the event
//! engine feeds it what the socket shows and what the guest calls, and
//! delivers what it says is due.

use bitflags::bitflags;

use crate::error::WsaError;

bitflags! {
    /// `FD_*` network events, with their Winsock values (SPEC AS-2).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct FdEvents: u32 {
        /// FD_READ: data to read.
        const READ = 0x01;
        /// FD_WRITE: room to send again.
        const WRITE = 0x02;
        /// FD_OOB: urgent data to read.
        const OOB = 0x04;
        /// FD_ACCEPT: a connection to accept.
        const ACCEPT = 0x08;
        /// FD_CONNECT: a connect (or join) finished.
        const CONNECT = 0x10;
        /// FD_CLOSE: the connection closed.
        const CLOSE = 0x20;
        /// FD_QOS: the quality of service changed.
        const QOS = 0x40;
        /// FD_GROUP_QOS: reserved.
        const GROUP_QOS = 0x80;
        /// FD_ROUTING_INTERFACE_CHANGE.
        const ROUTING_INTERFACE_CHANGE = 0x100;
        /// FD_ADDRESS_LIST_CHANGE.
        const ADDRESS_LIST_CHANGE = 0x200;
    }
}

/// The order in which events due together are posted: FD_CONNECT before
/// FD_WRITE and FD_READ, FD_CLOSE last.
const POST_ORDER: [FdEvents; 10] = [
    FdEvents::CONNECT,
    FdEvents::WRITE,
    FdEvents::READ,
    FdEvents::OOB,
    FdEvents::ACCEPT,
    FdEvents::QOS,
    FdEvents::GROUP_QOS,
    FdEvents::ROUTING_INTERFACE_CHANGE,
    FdEvents::ADDRESS_LIST_CHANGE,
    FdEvents::CLOSE,
];

/// Events that are posted once and never re-enabled (SPEC AS-9).
const ONCE: FdEvents = FdEvents::CONNECT.union(FdEvents::CLOSE);

/// One message for the guest's queue (SPEC AS-1): `wParam` is the socket,
/// `lParam` packs the event and the error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The single event.
    pub event: FdEvents,
    /// The error carried (SPEC AS-26), `None` for success.
    pub error: Option<WsaError>,
}

impl Notice {
    /// `WSAMAKESELECTREPLY(event, error)`: `error << 16 | event`.
    pub fn lparam(&self) -> u32 {
        let error = self.error.map_or(0, |e| e.code() as u32);
        (error << 16) | self.event.bits()
    }
}

/// A guest call that re-enables events (SPEC AS-9, AS-10: even a failed
/// call re-enables).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reenable {
    /// recv / recv-from: FD_READ and FD_OOB.
    Recv,
    /// send / send-to: FD_WRITE.
    Send,
    /// accept: FD_ACCEPT.
    Accept,
    /// ioctl SIO_GET_QOS: FD_QOS.
    GetQos,
    /// ioctl SIO_GET_GROUP_QOS: FD_GROUP_QOS. (Socket groups are not
    /// offered, so no call re-enables it yet; the event machine and its
    /// fuzz target cover the rule.)
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    GetGroupQos,
    /// ioctl SIO_ROUTING_INTERFACE_CHANGE: arms FD_ROUTING_INTERFACE_CHANGE.
    RoutingInterfaceChange,
    /// ioctl SIO_ADDRESS_LIST_CHANGE: arms FD_ADDRESS_LIST_CHANGE.
    AddressListChange,
}

impl Reenable {
    fn events(self) -> FdEvents {
        match self {
            Reenable::Recv => FdEvents::READ | FdEvents::OOB,
            Reenable::Send => FdEvents::WRITE,
            Reenable::Accept => FdEvents::ACCEPT,
            Reenable::GetQos => FdEvents::QOS,
            Reenable::GetGroupQos => FdEvents::GROUP_QOS,
            Reenable::RoutingInterfaceChange => FdEvents::ROUTING_INTERFACE_CHANGE,
            Reenable::AddressListChange => FdEvents::ADDRESS_LIST_CHANGE,
        }
    }
}

/// What the socket shows right now, as the event engine last saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Conditions {
    /// Normal data (or a datagram) waits to be read.
    pub data: bool,
    /// Urgent data waits to be read (meaningful with SO_OOBINLINE off).
    pub oob: bool,
    /// A connection waits to be accepted.
    pub pending_accept: bool,
    /// A send would take at least one byte now.
    pub writable: bool,
    /// SO_OOBINLINE is on: urgent data counts as normal data (SPEC AS-16).
    pub oob_inline: bool,
}

/// One input of the async-select rules: every change of a socket's
/// [`SelectState`] is one of these, fed through [`SelectState::apply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// `WSPAsyncSelect(s, queue, msg, mask)`: replaces the registration
    /// (SPEC AS-5), a mask of 0 cancels (AS-6); conditions that already
    /// hold are due at once (AS-14).
    Register {
        /// The events registered.
        mask: FdEvents,
        /// The message id.
        msg: u32,
    },
    /// The socket was connected or accepted: FD_WRITE is owed (AS-15).
    /// (The engine feeds accepts and connects their own inputs; the fuzz
    /// target drives this one.)
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    Connected,
    /// A datagram socket was bound: it may send at once (AS-15).
    DatagramBound,
    /// A connect (or join) started: its outcome will be posted once more
    /// (a connect may be retried after a failure, AS-20).
    ConnectStarted,
    /// A connect (or join) finished, `None` for success (AS-20); only the
    /// first report of one attempt counts.
    ConnectFinished(Option<WsaError>),
    /// The close indication arrived, `None` graceful or the error of an
    /// abortive close (AS-17, AS-18); only the first counts.
    CloseArrived(Option<WsaError>),
    /// A send failed with WSAEWOULDBLOCK: no room now, and FD_WRITE is owed
    /// once room comes back (AS-15).
    SendWouldBlock,
    /// An edge-triggered change happened (FD_QOS, FD_GROUP_QOS, routing or
    /// address-list change; AS-12, AS-13).
    Changed(FdEvents),
    /// The interface that reaches the destination armed with
    /// SIO_ROUTING_INTERFACE_CHANGE changed; `Some` when it is now
    /// unreachable (SPEC AS-25, AS-26).
    RouteChanged(Option<WsaError>),
    /// The guest made a re-enabling call (AS-9, AS-10).
    Reenabled(Reenable),
    /// What the socket shows now, as the engine saw it.
    Observed(Conditions),
    /// Whether data waits to be read, as a guest's receive showed it.
    DataObserved(bool),
    /// The message of this event was posted: no more until its
    /// re-enabling call (AS-9); FD_CONNECT and FD_CLOSE never again.
    Posted(FdEvents),
}

/// The async-select state of one socket.
#[derive(Clone, Debug, Default)]
pub struct SelectState {
    /// The registered events (0: none, SPEC AS-6).
    mask: FdEvents,
    /// The message id of the registration.
    msg: u32,
    /// Events that may be posted: not posted since their re-enabling call.
    enabled: FdEvents,
    /// Edge-triggered events that happened and wait to be posted.
    edges: FdEvents,
    /// FD_WRITE is owed: first connect/accept, registration while
    /// writable, or room back after a WSAEWOULDBLOCK send (SPEC AS-15).
    write_owed: bool,
    /// The outcome of a connect, once known (SPEC AS-20).
    connect_outcome: Option<Option<WsaError>>,
    /// The close indication, once it arrived (SPEC AS-17, AS-18).
    close_outcome: Option<Option<WsaError>>,
    /// Once-only events already posted.
    spent: FdEvents,
    /// The socket is connected (for FD_CONNECT on registration, AS-20).
    connected: bool,
    /// The error FD_ROUTING_INTERFACE_CHANGE carries (AS-26).
    route_error: Option<WsaError>,
    now: Conditions,
}

impl SelectState {
    /// A socket with no registration.
    pub fn new() -> Self {
        Self::default()
    }

    /// The state of a socket accepted from a listener with this state: the
    /// same events and message id (SPEC AS-7), FD_WRITE owed (AS-15).
    pub fn inherit(&self) -> Self {
        let mut state = Self::new();
        state.register(self.mask, self.msg);
        state.connected = true;
        state.write_owed = true;
        state
    }

    /// Feeds one input into the rules (the only way the state changes
    /// from outside).
    pub fn apply(&mut self, input: Input) {
        match input {
            Input::Register { mask, msg } => self.register(mask, msg),
            Input::Connected => self.connected(),
            Input::DatagramBound => self.datagram_bound(),
            Input::ConnectStarted => self.connect_started(),
            Input::ConnectFinished(error) => self.connect_finished(error),
            Input::CloseArrived(error) => self.close_arrived(error),
            Input::SendWouldBlock => self.send_would_block(),
            Input::Changed(event) => self.changed(event),
            Input::RouteChanged(error) => {
                self.route_error = error;
                self.changed(FdEvents::ROUTING_INTERFACE_CHANGE);
            }
            Input::Reenabled(call) => self.reenable(call),
            Input::Observed(now) => self.observe(now),
            Input::DataObserved(data) => self.observe_data(data),
            Input::Posted(event) => self.posted(event),
        }
    }

    /// The registered events.
    pub fn mask(&self) -> FdEvents {
        self.mask
    }

    /// The message id.
    pub fn msg(&self) -> u32 {
        self.msg
    }

    /// `WSPAsyncSelect(s, queue, msg, events)`: replaces the previous
    /// registration (SPEC AS-5); a mask of 0 cancels (AS-6). Conditions
    /// that already hold are due at once (AS-14).
    fn register(&mut self, mask: FdEvents, msg: u32) {
        self.mask = mask;
        self.msg = msg;
        // Level and once-only events start enabled; the edge-triggered
        // change notifications wait for their ioctl (AS-13).
        self.enabled =
            FdEvents::all() - FdEvents::ROUTING_INTERFACE_CHANGE - FdEvents::ADDRESS_LIST_CHANGE;
        // A QoS change not yet posted is posted now (AS-24); other changes
        // wait for their ioctl.
        self.edges &= FdEvents::QOS;
        if mask.contains(FdEvents::WRITE) && self.connected {
            // AS-15: "also on registration if a send is possible".
            self.write_owed = true;
        }
        // AS-20: FD_CONNECT on registration only for a connection this
        // socket initiated (its outcome is kept from `connect_finished`);
        // an accepted socket never gets one.
        // AS-14 (seed FD_CLOSE case 1): a connection already closed posts
        // FD_CLOSE again at each registration, with its error.
        self.spent.remove(FdEvents::CLOSE);
    }

    /// The socket was connected or accepted (FD_WRITE is owed, AS-15).
    fn connected(&mut self) {
        self.connected = true;
        self.write_owed = true;
    }

    /// A datagram socket was bound: it may send at once (AS-15).
    fn datagram_bound(&mut self) {
        self.write_owed = true;
    }

    /// A connect (or join) started: its outcome will be posted once more
    /// (a connect may be retried after a failure).
    fn connect_started(&mut self) {
        self.connect_outcome = None;
        self.spent.remove(FdEvents::CONNECT);
        self.enabled.insert(FdEvents::CONNECT);
    }

    /// A connect (or join) finished, `None` for success (SPEC AS-20). Only
    /// the first report of one attempt counts.
    fn connect_finished(&mut self, error: Option<WsaError>) {
        if self.connect_outcome.is_some() {
            return;
        }
        self.connect_outcome = Some(error);
        if error.is_none() {
            self.connected();
        }
    }

    /// The error of an abortive close that has arrived, if any (SPEC AS-17).
    pub fn close_error(&self) -> Option<WsaError> {
        self.close_outcome.flatten()
    }

    /// Whether FD_WRITE is owed (the engine then watches for room).
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    pub fn write_owed(&self) -> bool {
        self.write_owed
    }

    /// The close indication arrived (SPEC AS-17): `None` graceful, or the
    /// error of an abortive close.
    fn close_arrived(&mut self, error: Option<WsaError>) {
        if self.close_outcome.is_none() {
            self.close_outcome = Some(error);
        }
    }

    /// A send failed with WSAEWOULDBLOCK: FD_WRITE is owed once room comes
    /// back (SPEC AS-15).
    fn send_would_block(&mut self) {
        self.write_owed = true;
        // The send showed there is no room now.
        self.now.writable = false;
    }

    /// An edge-triggered change happened (FD_QOS, FD_GROUP_QOS, routing or
    /// address-list change; SPEC AS-12, AS-13): it counts only while its
    /// event is enabled (a change before the re-enabling call is not
    /// posted by that call), except that a QoS change while FD_QOS is not
    /// registered is posted on its registration (AS-24).
    fn changed(&mut self, event: FdEvents) {
        let awaited = self.enabled & event;
        let before_registration = event & (FdEvents::QOS - self.mask);
        self.edges |= awaited | before_registration;
    }

    /// The guest made a re-enabling call (SPEC AS-9, AS-10).
    fn reenable(&mut self, call: Reenable) {
        self.enabled |= call.events();
    }

    /// What the socket shows now.
    fn observe(&mut self, now: Conditions) {
        self.now = now;
    }

    /// Whether data waits to be read, as a guest's receive showed it.
    fn observe_data(&mut self, data: bool) {
        self.now.data = data;
    }

    /// The last conditions observed.
    pub fn conditions(&self) -> Conditions {
        self.now
    }

    /// Whether the engine should watch for `event` becoming due: it is
    /// registered and enabled.
    pub fn watching(&self, event: FdEvents) -> bool {
        self.mask.contains(event) && self.enabled.contains(event) && !self.spent.contains(event)
    }

    fn condition(&self, event: FdEvents) -> Option<Option<WsaError>> {
        let now = &self.now;
        let holds = match event {
            e if e == FdEvents::READ => now.data,
            e if e == FdEvents::OOB => now.oob && !now.oob_inline,
            e if e == FdEvents::ACCEPT => now.pending_accept,
            e if e == FdEvents::WRITE => self.write_owed && now.writable,
            e if e == FdEvents::CONNECT => return self.connect_outcome,
            e if e == FdEvents::ROUTING_INTERFACE_CHANGE => {
                return self.edges.contains(e).then_some(self.route_error);
            }
            // AS-18: only once all received data has been read.
            e if e == FdEvents::CLOSE => {
                return if now.data { None } else { self.close_outcome };
            }
            other => self.edges.contains(other),
        };
        holds.then_some(None)
    }

    /// The next message due, in posting order, if any. Feed
    /// [`Input::Posted`] once it is in the queue.
    pub fn next_due(&self) -> Option<Notice> {
        POST_ORDER.into_iter().find_map(|event| {
            if !self.watching(event) {
                return None;
            }
            self.condition(event).map(|error| Notice { event, error })
        })
    }

    /// Every message due now, in posting order, marking each posted (the
    /// engine takes them one by one; tests and the fuzz target at once).
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    pub fn take_due(&mut self) -> Vec<Notice> {
        let mut out = Vec::new();
        while let Some(notice) = self.next_due() {
            self.posted(notice.event);
            out.push(notice);
        }
        out
    }

    /// `event` was posted: no more until its re-enabling call (SPEC AS-9);
    /// FD_CONNECT and FD_CLOSE never again.
    fn posted(&mut self, event: FdEvents) {
        self.enabled.remove(event);
        self.edges.remove(event);
        if event == FdEvents::WRITE {
            self.write_owed = false;
        }
        if ONCE.contains(event) {
            self.spent |= event;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: FdEvents = FdEvents::all();

    fn n(event: FdEvents) -> Notice {
        Notice { event, error: None }
    }

    fn connected_state(mask: FdEvents) -> SelectState {
        let mut s = SelectState::new();
        s.connected();
        s.register(mask, 7);
        s
    }

    fn data(s: &mut SelectState, data: bool) {
        let now = Conditions {
            data,
            ..s.conditions()
        };
        s.observe(now);
    }

    #[test]
    fn as_1_lparam_packs_event_and_error() {
        let notice = Notice {
            event: FdEvents::CONNECT,
            error: Some(WsaError::ConnRefused),
        };
        assert_eq!(notice.lparam(), (10061 << 16) | 0x10);
        assert_eq!(n(FdEvents::READ).lparam(), 1);
    }

    #[test]
    fn as_2_event_bits_have_winsock_values() {
        assert_eq!(FdEvents::READ.bits(), 1);
        assert_eq!(FdEvents::CLOSE.bits(), 32);
        assert_eq!(FdEvents::ADDRESS_LIST_CHANGE.bits(), 512);
        assert_eq!(ALL.bits(), 0x3ff);
    }

    #[test]
    fn as_5_a_new_registration_replaces_the_old() {
        let mut s = connected_state(FdEvents::READ);
        s.register(FdEvents::CLOSE, 9);
        assert_eq!((s.mask(), s.msg()), (FdEvents::CLOSE, 9));
        data(&mut s, true);
        assert_eq!(s.take_due(), vec![]);
    }

    #[test]
    fn as_6_mask_zero_cancels_everything() {
        let mut s = connected_state(ALL);
        s.register(FdEvents::empty(), 7);
        s.observe(Conditions {
            data: true,
            writable: true,
            pending_accept: true,
            oob: true,
            oob_inline: false,
        });
        s.close_arrived(None);
        assert_eq!(s.take_due(), vec![]);
    }

    #[test]
    fn as_7_accepted_sockets_inherit_events_and_message_id() {
        let mut listener = SelectState::new();
        listener.register(FdEvents::READ | FdEvents::WRITE | FdEvents::ACCEPT, 42);
        let mut child = listener.inherit();
        assert_eq!((child.mask(), child.msg()), (listener.mask(), 42));
        child.observe(Conditions {
            writable: true,
            ..Default::default()
        });
        assert_eq!(child.take_due(), vec![n(FdEvents::WRITE)]);
    }

    #[test]
    fn as_8_as_9_one_message_per_event_until_reenabled() {
        let mut s = connected_state(FdEvents::READ);
        data(&mut s, true);
        assert_eq!(s.take_due(), vec![n(FdEvents::READ)]);
        // More data arrives: no flood.
        data(&mut s, true);
        assert_eq!(s.take_due(), vec![]);
        s.reenable(Reenable::Recv);
        assert_eq!(s.take_due(), vec![n(FdEvents::READ)]);
    }

    #[test]
    fn as_9_each_event_has_its_own_reenabling_call() {
        let mut s = SelectState::new();
        s.register(FdEvents::ACCEPT, 1);
        s.observe(Conditions {
            pending_accept: true,
            ..Default::default()
        });
        assert_eq!(s.take_due(), vec![n(FdEvents::ACCEPT)]);
        s.reenable(Reenable::Recv);
        s.reenable(Reenable::Send);
        assert_eq!(
            s.take_due(),
            vec![],
            "recv and send do not re-enable FD_ACCEPT"
        );
        s.reenable(Reenable::Accept);
        assert_eq!(s.take_due(), vec![n(FdEvents::ACCEPT)]);
    }

    #[test]
    fn as_9_connect_and_close_are_posted_once() {
        let mut s = SelectState::new();
        s.register(FdEvents::CONNECT | FdEvents::CLOSE, 1);
        s.connect_finished(None);
        s.connect_finished(None);
        s.close_arrived(None);
        assert_eq!(s.take_due(), vec![n(FdEvents::CONNECT), n(FdEvents::CLOSE)]);
        for call in [Reenable::Recv, Reenable::Send, Reenable::Accept] {
            s.reenable(call);
        }
        s.close_arrived(None);
        assert_eq!(s.take_due(), vec![]);
    }

    #[test]
    fn as_10_a_failed_reenabling_call_still_reenables() {
        // The machine does not see whether the call succeeded: any call
        // re-enables. Here the data was not consumed (the recv failed).
        let mut s = connected_state(FdEvents::READ);
        data(&mut s, true);
        s.take_due();
        s.reenable(Reenable::Recv);
        assert_eq!(s.take_due(), vec![n(FdEvents::READ)]);
    }

    #[test]
    fn as_11_read_oob_and_accept_are_level_triggered() {
        let mut s = connected_state(FdEvents::READ | FdEvents::OOB);
        s.observe(Conditions {
            data: true,
            oob: true,
            ..Default::default()
        });
        assert_eq!(s.take_due(), vec![n(FdEvents::READ), n(FdEvents::OOB)]);
        s.reenable(Reenable::Recv);
        // Both still hold after the recv: both are posted again.
        assert_eq!(s.take_due(), vec![n(FdEvents::READ), n(FdEvents::OOB)]);
        s.observe(Conditions::default());
        s.reenable(Reenable::Recv);
        assert_eq!(s.take_due(), vec![]);
    }

    #[test]
    fn as_12_qos_is_edge_triggered() {
        let mut s = connected_state(FdEvents::QOS);
        assert_eq!(s.take_due(), vec![]);
        s.changed(FdEvents::QOS);
        assert_eq!(s.take_due(), vec![n(FdEvents::QOS)]);
        s.reenable(Reenable::GetQos);
        assert_eq!(s.take_due(), vec![], "one message per change");
        s.changed(FdEvents::QOS);
        assert_eq!(s.take_due(), vec![n(FdEvents::QOS)]);
    }

    #[test]
    fn as_13_change_notifications_are_armed_only_by_their_ioctl() {
        let mut s = connected_state(FdEvents::ADDRESS_LIST_CHANGE);
        s.changed(FdEvents::ADDRESS_LIST_CHANGE);
        assert_eq!(s.take_due(), vec![], "not armed before the ioctl");
        s.reenable(Reenable::AddressListChange);
        s.changed(FdEvents::ADDRESS_LIST_CHANGE);
        assert_eq!(s.take_due(), vec![n(FdEvents::ADDRESS_LIST_CHANGE)]);
        s.changed(FdEvents::ADDRESS_LIST_CHANGE);
        assert_eq!(s.take_due(), vec![], "none until the ioctl again");
    }

    #[test]
    fn as_13_a_change_before_the_ioctl_is_not_posted_when_it_arms() {
        let mut s = connected_state(FdEvents::ADDRESS_LIST_CHANGE);
        s.changed(FdEvents::ADDRESS_LIST_CHANGE);
        s.reenable(Reenable::AddressListChange);
        assert_eq!(s.take_due(), vec![], "armed now; the change was before");
        s.changed(FdEvents::ADDRESS_LIST_CHANGE);
        assert_eq!(s.take_due(), vec![n(FdEvents::ADDRESS_LIST_CHANGE)]);
    }

    #[test]
    fn as_24_a_qos_change_before_registration_is_posted_on_registration() {
        let mut s = SelectState::new();
        s.connected();
        s.changed(FdEvents::QOS);
        s.register(FdEvents::QOS, 7);
        assert_eq!(s.take_due(), vec![n(FdEvents::QOS)]);
        s.register(FdEvents::QOS, 7);
        assert_eq!(s.take_due(), vec![], "posted once");
    }

    #[test]
    fn as_14_conditions_already_true_are_posted_at_registration() {
        let mut s = SelectState::new();
        s.observe(Conditions {
            pending_accept: true,
            ..Default::default()
        });
        s.register(FdEvents::ACCEPT, 3);
        assert_eq!(s.take_due(), vec![n(FdEvents::ACCEPT)]);
    }

    #[test]
    fn as_15_write_after_connect_then_only_after_would_block() {
        let mut s = SelectState::new();
        s.register(FdEvents::WRITE | FdEvents::CONNECT, 1);
        s.observe(Conditions {
            writable: true,
            ..Default::default()
        });
        assert_eq!(s.take_due(), vec![], "not connected yet");
        s.connect_finished(None);
        assert_eq!(s.take_due(), vec![n(FdEvents::CONNECT), n(FdEvents::WRITE)]);
        // Sends that succeed owe nothing.
        s.reenable(Reenable::Send);
        assert_eq!(s.take_due(), vec![]);
        // A WSAEWOULDBLOCK send: FD_WRITE once room is back.
        s.reenable(Reenable::Send);
        s.send_would_block();
        s.observe(Conditions::default());
        assert_eq!(s.take_due(), vec![]);
        s.observe(Conditions {
            writable: true,
            ..Default::default()
        });
        assert_eq!(s.take_due(), vec![n(FdEvents::WRITE)]);
    }

    #[test]
    fn as_15_datagram_sockets_are_writable_after_bind() {
        let mut s = SelectState::new();
        s.register(FdEvents::WRITE, 1);
        s.observe(Conditions {
            writable: true,
            ..Default::default()
        });
        assert_eq!(s.take_due(), vec![]);
        s.datagram_bound();
        assert_eq!(s.take_due(), vec![n(FdEvents::WRITE)]);
    }

    #[test]
    fn as_16_no_oob_message_with_oobinline() {
        let mut s = connected_state(FdEvents::OOB);
        s.observe(Conditions {
            oob: true,
            oob_inline: true,
            ..Default::default()
        });
        assert_eq!(s.take_due(), vec![]);
    }

    #[test]
    fn as_17_close_carries_its_error() {
        let mut s = connected_state(FdEvents::CLOSE);
        s.close_arrived(Some(WsaError::ConnReset));
        assert_eq!(
            s.take_due(),
            vec![Notice {
                event: FdEvents::CLOSE,
                error: Some(WsaError::ConnReset)
            }]
        );
    }

    #[test]
    fn as_18_close_waits_until_all_data_is_read() {
        let mut s = connected_state(FdEvents::READ | FdEvents::CLOSE);
        data(&mut s, true);
        s.close_arrived(None);
        assert_eq!(s.take_due(), vec![n(FdEvents::READ)]);
        s.reenable(Reenable::Recv);
        // Data still there: FD_READ again, still no FD_CLOSE.
        assert_eq!(s.take_due(), vec![n(FdEvents::READ)]);
        data(&mut s, false);
        s.reenable(Reenable::Recv);
        assert_eq!(
            s.take_due(),
            vec![n(FdEvents::CLOSE)],
            "no FD_READ for the end of data"
        );
    }

    #[test]
    fn as_20_connect_failure_carries_its_error_and_success_comes_first() {
        let mut s = SelectState::new();
        s.register(FdEvents::CONNECT | FdEvents::READ | FdEvents::WRITE, 1);
        s.connect_started();
        s.connect_finished(Some(WsaError::ConnRefused));
        assert_eq!(
            s.take_due(),
            vec![Notice {
                event: FdEvents::CONNECT,
                error: Some(WsaError::ConnRefused)
            }]
        );
        // A retried connect reports again.
        s.connect_started();
        s.connect_finished(None);
        s.observe(Conditions {
            data: true,
            writable: true,
            ..Default::default()
        });
        assert_eq!(
            s.take_due(),
            vec![n(FdEvents::CONNECT), n(FdEvents::WRITE), n(FdEvents::READ)]
        );
    }

    #[test]
    fn as_20_connect_on_registration_when_already_connected() {
        let mut s = SelectState::new();
        s.connect_started();
        s.connect_finished(None);
        s.register(FdEvents::CONNECT, 1);
        assert_eq!(s.take_due(), vec![n(FdEvents::CONNECT)]);
    }

    #[test]
    fn as_14_fd_close_is_posted_again_at_each_registration_once_closed() {
        // Issue 9 point 4.
        let mut s = connected_state(FdEvents::CLOSE);
        s.close_arrived(Some(WsaError::ConnReset));
        let reset = Notice {
            event: FdEvents::CLOSE,
            error: Some(WsaError::ConnReset),
        };
        assert_eq!(s.take_due(), vec![reset]);
        assert_eq!(s.take_due(), vec![]);
        s.register(FdEvents::CLOSE | FdEvents::READ, 8);
        assert_eq!(s.take_due(), vec![reset]);
    }

    #[test]
    fn as_20_an_accepted_socket_never_gets_fd_connect() {
        // Issue 9 point 1: "the connection that was initiated on socket s
        // has completed" — an accepted socket initiated nothing, whether it
        // inherits FD_CONNECT (AS-7) or registers it itself.
        let mut listener = SelectState::new();
        listener.register(FdEvents::CONNECT | FdEvents::WRITE, 3);
        let mut accepted = listener.inherit();
        accepted.observe(Conditions {
            writable: true,
            ..Default::default()
        });
        assert_eq!(accepted.take_due(), vec![n(FdEvents::WRITE)]);
        accepted.register(FdEvents::CONNECT | FdEvents::READ, 4);
        assert_eq!(accepted.take_due(), vec![]);
    }

    #[test]
    fn as_21_read_is_posted_when_data_arrives_if_not_already() {
        let mut s = connected_state(FdEvents::READ);
        assert_eq!(s.take_due(), vec![]);
        data(&mut s, true);
        assert_eq!(s.take_due(), vec![n(FdEvents::READ)]);
    }

    #[test]
    fn as_22_accept_again_after_accept_if_another_is_pending() {
        let mut s = SelectState::new();
        s.register(FdEvents::ACCEPT, 1);
        s.observe(Conditions {
            pending_accept: true,
            ..Default::default()
        });
        assert_eq!(s.take_due().len(), 1);
        s.reenable(Reenable::Accept);
        assert_eq!(s.take_due(), vec![n(FdEvents::ACCEPT)]);
        s.observe(Conditions::default());
        s.reenable(Reenable::Accept);
        assert_eq!(s.take_due(), vec![]);
    }

    #[test]
    fn as_23_oob_is_posted_on_arrival_and_after_recv_if_some_remains() {
        let mut s = connected_state(FdEvents::OOB);
        s.observe(Conditions {
            oob: true,
            ..Default::default()
        });
        assert_eq!(s.take_due(), vec![n(FdEvents::OOB)]);
        s.reenable(Reenable::Recv);
        assert_eq!(s.take_due(), vec![n(FdEvents::OOB)]);
    }
}
