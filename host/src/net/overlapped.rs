//! Overlapped sends and receives of one socket (SPEC SE-7..SE-11): the
//! operations that pend, the background lanes that finish them in the
//! order they were submitted, and the outcomes kept for
//! `wsp-get-overlapped-result`. A completion is posted to the queue its
//! overlapped argument named (the completion routine of this world).
//!
//! Each socket has two lanes, sends and receives: a lane is a tokio task
//! that exists only while its operations pend, waits on the native
//! socket's readiness, and makes one non-blocking system call per
//! readiness for the operation at its head. What an operation holds (the
//! bytes a send has not sent, the room of a receive and the bytes it got
//! until the guest takes them) is counted by the guest's gate against the
//! policy's `max-overlapped-*` limits.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::io::Interest;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::gate::{DatagramFilter, OverlappedHold};
use super::qos::Shaper;
use super::queue::{Completion, Message, MessageQueue};
use super::select::{FdEvents, Notice};
use super::socket::{datagram_recv_once, datagram_send_once, stream_recv_once, stream_send_once};
use crate::error::WsaError;

/// Most outcomes one socket keeps for `wsp-get-overlapped-result`: the
/// oldest one whose bytes were handed over goes first.
pub const MAX_OVERLAPPED_RESULTS: usize = 1024;

/// The overlapped argument of a send or receive, as the guest gave it
/// (SPEC SE-7).
#[derive(Clone)]
pub struct OverlappedArg {
    /// The guest's name for the operation.
    pub token: u64,
    /// The queue the completion is posted to.
    pub queue: Arc<MessageQueue>,
    /// The message id of the completion.
    pub msg: u32,
}

/// The outcome of an overlapped operation, as `wsp-get-overlapped-result`
/// reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlappedOutcome {
    /// Bytes transferred.
    pub bytes: u32,
    /// A receive that completed after its call: the bytes it got (handed
    /// over once).
    pub data: Vec<u8>,
    /// The sender of a datagram received that way.
    pub sender: Option<SocketAddr>,
}

/// The native socket a lane works on.
#[derive(Clone)]
pub(crate) enum Native {
    /// A connected stream.
    Stream(Arc<TcpStream>),
    /// A datagram socket and the senders whose datagrams may reach the
    /// guest.
    Datagram(Arc<UdpSocket>, DatagramFilter),
}

/// What a pending operation does.
pub(crate) enum Operation {
    /// Sends `data[sent..]`; `sent` bytes were taken already.
    Send {
        /// The bytes captured at the call (SPEC SE-8).
        data: Vec<u8>,
        /// How many of them are sent.
        sent: usize,
        /// A datagram's destination (checked at the call).
        to: Option<SocketAddr>,
        /// `MSG_*` flags of the system call.
        native_flags: i32,
        /// The socket's flow, which the send keeps to (SPEC JL-8).
        shaper: Option<Arc<Shaper>>,
    },
    /// Receives at most `max_len` bytes.
    Recv {
        /// The most bytes to receive.
        max_len: usize,
        /// `MSG_*` flags of the system call.
        native_flags: i32,
    },
}

/// An operation that was admitted: its argument and what it holds.
pub(crate) struct Ticket {
    target: CompletionTarget,
    hold: OverlappedHold,
}

#[derive(Clone)]
struct CompletionTarget {
    token: u64,
    queue: Weak<MessageQueue>,
    msg: u32,
}

struct Pending {
    target: CompletionTarget,
    hold: OverlappedHold,
    operation: Operation,
}

struct Kept {
    result: Result<OverlappedOutcome, WsaError>,
    /// Held while received bytes wait to be handed over.
    hold: Option<OverlappedHold>,
}

/// The two lanes of a socket's overlapped operations: each keeps the
/// order of submission (SPEC SE-9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lane {
    /// Sends.
    Send = 0,
    /// Receives.
    Recv = 1,
}

#[derive(Default)]
struct Operations {
    lanes: [VecDeque<Pending>; 2],
    tasks: [Option<AbortHandle>; 2],
    kept: HashMap<u64, Kept>,
    /// Tokens of `kept` in the order their outcomes arrived.
    order: VecDeque<u64>,
    /// The socket is closed: nothing pends any more.
    closed: bool,
}

impl Operations {
    fn is_pending(&self, token: u64) -> bool {
        self.lanes
            .iter()
            .any(|lane| lane.iter().any(|p| p.target.token == token))
    }

    /// Keeps an outcome, making room by forgetting the oldest outcome that
    /// holds nothing.
    fn keep(&mut self, token: u64, kept: Kept) {
        if self.kept.insert(token, kept).is_none() {
            self.order.push_back(token);
        }
        while self.kept.len() > MAX_OVERLAPPED_RESULTS {
            let Some(index) = self
                .order
                .iter()
                .position(|t| self.kept.get(t).is_some_and(|k| k.hold.is_none()))
            else {
                break;
            };
            if let Some(token) = self.order.remove(index) {
                self.kept.remove(&token);
            }
        }
    }
}

struct Shared {
    socket: u32,
    operations: Mutex<Operations>,
    /// An outcome arrived (or the socket closed).
    changed: Notify,
}

impl Shared {
    /// Completes everything pending in `lanes` with
    /// `WSA_OPERATION_ABORTED`, in order.
    fn abort(&self, operations: &mut Operations, lanes: &[Lane]) {
        for lane in lanes {
            let pending: Vec<Pending> = operations.lanes[*lane as usize].drain(..).collect();
            for p in pending {
                self.complete(operations, &p.target, Err(WsaError::OperationAborted), None);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Operations> {
        self.operations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records `result` for `target`, posts its completion, and wakes
    /// whoever waits for it.
    fn complete(
        &self,
        operations: &mut Operations,
        target: &CompletionTarget,
        result: Result<OverlappedOutcome, WsaError>,
        hold: Option<OverlappedHold>,
    ) {
        let (bytes, error) = match &result {
            Ok(outcome) => (outcome.bytes, None),
            Err(e) => (0, Some(*e)),
        };
        operations.keep(target.token, Kept { result, hold });
        if let Some(queue) = target.queue.upgrade() {
            queue.post(Message {
                msg: target.msg,
                socket: self.socket,
                notice: Notice {
                    event: FdEvents::empty(),
                    error,
                },
                completion: Some(Completion {
                    token: target.token,
                    bytes,
                }),
            });
        }
        self.changed.notify_waiters();
    }
}

/// The overlapped operations of one socket. Dropping it (closing the
/// socket, or the guest ending) aborts what pends with
/// `WSA_OPERATION_ABORTED` (SPEC SE-6, SE-11).
pub(crate) struct Overlapped {
    shared: Arc<Shared>,
}

impl Overlapped {
    /// No operations yet; their completions name `socket`.
    pub(crate) fn new(socket: u32) -> Self {
        Self {
            shared: Arc::new(Shared {
                socket,
                operations: Mutex::default(),
                changed: Notify::new(),
            }),
        }
    }

    /// Admits an operation of `arg` that may hold `bytes`: its queue must
    /// be open and its token not pending (`WSAEINVAL`), the guest's
    /// overlapped limits not reached (`WSAENOBUFS`).
    pub(crate) fn admit(
        &self,
        arg: &OverlappedArg,
        bytes: usize,
        gate: &Arc<super::gate::Gate>,
    ) -> Result<Ticket, WsaError> {
        if arg.queue.is_closed() || self.shared.lock().is_pending(arg.token) {
            return Err(WsaError::Inval);
        }
        let hold = gate.hold_overlapped(bytes as u64)?;
        Ok(Ticket {
            target: CompletionTarget {
                token: arg.token,
                queue: Arc::downgrade(&arg.queue),
                msg: arg.msg,
            },
            hold,
        })
    }

    /// Whether operations pend in `lane` (a later call without an
    /// overlapped argument waits for them, SPEC SE-9).
    pub(crate) fn is_pending(&self, lane: Lane) -> bool {
        !self.shared.lock().lanes[lane as usize].is_empty()
    }

    /// Waits until nothing pends in `lane` (or the socket closes).
    pub(crate) fn drained(&self, lane: Lane) -> impl Future<Output = ()> + use<> {
        let shared = self.shared.clone();
        async move {
            loop {
                let changed = shared.changed.notified();
                {
                    let operations = shared.lock();
                    if operations.closed || operations.lanes[lane as usize].is_empty() {
                        return;
                    }
                }
                changed.await;
            }
        }
    }

    /// SIO_FLUSH (SPEC SE-6): the sends that pend are discarded, each
    /// completing with `WSA_OPERATION_ABORTED` (what a send had already
    /// sent stays sent).
    pub(crate) fn flush_sends(&self) {
        let mut operations = self.shared.lock();
        self.shared.abort(&mut operations, &[Lane::Send]);
    }

    /// The operation of `ticket` completed in its call with `bytes`: its
    /// completion is queued at once (SPEC SE-7).
    pub(crate) fn completed_at_once(&self, ticket: Ticket, bytes: u32) {
        let outcome = OverlappedOutcome {
            bytes,
            data: Vec::new(),
            sender: None,
        };
        let mut operations = self.shared.lock();
        self.shared
            .complete(&mut operations, &ticket.target, Ok(outcome), None);
    }

    /// The operation of `ticket` pends: `operation` finishes on `native`
    /// in the background, after those before it in its lane. Returns
    /// `WSA_IO_PENDING`, the call's answer.
    pub(crate) fn pend(&self, ticket: Ticket, operation: Operation, native: Native) -> WsaError {
        let lane = match operation {
            Operation::Send { .. } => Lane::Send,
            Operation::Recv { .. } => Lane::Recv,
        };
        let mut hold = ticket.hold;
        if let Operation::Send { data, sent, .. } = &operation {
            hold.shrink_to((data.len() - sent) as u64);
        }
        let mut operations = self.shared.lock();
        operations.lanes[lane as usize].push_back(Pending {
            target: ticket.target,
            hold,
            operation,
        });
        if operations.tasks[lane as usize].is_none() {
            let shared = self.shared.clone();
            let task = tokio::spawn(run_lane(shared, lane, native));
            operations.tasks[lane as usize] = Some(task.abort_handle());
        }
        WsaError::IoPending
    }

    /// WSPGetOverlappedResult (SPEC SE-7): the outcome of `token`; while it
    /// pends `WSA_IO_INCOMPLETE`, or with `wait` waits for it. Received
    /// bytes are handed over once.
    pub(crate) fn result(
        &self,
        token: u64,
        wait: bool,
    ) -> impl Future<Output = Result<OverlappedOutcome, WsaError>> + use<> {
        let shared = self.shared.clone();
        async move {
            loop {
                let changed = shared.changed.notified();
                {
                    let mut operations = shared.lock();
                    if let Some(kept) = operations.kept.get_mut(&token) {
                        let result = kept.result.clone();
                        if let Ok(outcome) = &mut kept.result {
                            outcome.data = Vec::new();
                            outcome.sender = None;
                        }
                        kept.hold = None;
                        return result;
                    }
                    if !operations.is_pending(token) {
                        return Err(WsaError::InvalidHandle);
                    }
                    if !wait {
                        return Err(WsaError::IoIncomplete);
                    }
                }
                changed.await;
            }
        }
    }

    /// How many operations pend.
    #[cfg(test)]
    fn pending(&self) -> usize {
        let operations = self.shared.lock();
        operations.lanes.iter().map(VecDeque::len).sum()
    }
}

impl Drop for Overlapped {
    /// SPEC SE-6, SE-11: closing the socket (or the guest ending) aborts
    /// every pending operation with `WSA_OPERATION_ABORTED`.
    fn drop(&mut self) {
        let mut operations = self.shared.lock();
        operations.closed = true;
        for task in operations.tasks.iter_mut().filter_map(Option::take) {
            task.abort();
        }
        self.shared
            .abort(&mut operations, &[Lane::Send, Lane::Recv]);
        self.shared.changed.notify_waiters();
    }
}

/// What one step of a lane did.
enum Step {
    /// The lane is empty (or the socket closed): the task ends.
    Idle,
    /// The head made progress or completed: look again at once.
    Progress,
    /// The socket's flow has no tokens for the head: look again then.
    Throttled(std::time::Duration),
}

/// A lane's task: finishes its operations in order, each with one
/// non-blocking system call per readiness of the native socket.
async fn run_lane(shared: Arc<Shared>, lane: Lane, native: Native) {
    let interest = match lane {
        Lane::Send => Interest::WRITABLE,
        Lane::Recv => Interest::READABLE,
    };
    loop {
        let step = match &native {
            Native::Stream(stream) => {
                stream
                    .async_io(interest, || step(&shared, lane, &native))
                    .await
            }
            Native::Datagram(udp, _) => {
                udp.async_io(interest, || step(&shared, lane, &native))
                    .await
            }
        };
        match step {
            Ok(Step::Idle) => return,
            Ok(Step::Throttled(delay)) => tokio::time::sleep(delay).await,
            Ok(Step::Progress) | Err(_) => {}
        }
    }
}

/// One try of the operation at the head of `lane`: `WouldBlock` when the
/// socket is not ready for it.
fn step(shared: &Shared, lane: Lane, native: &Native) -> io::Result<Step> {
    let mut operations = shared.lock();
    if operations.closed {
        return Ok(Step::Idle);
    }
    let Some(head) = operations.lanes[lane as usize].front_mut() else {
        operations.tasks[lane as usize] = None;
        return Ok(Step::Idle);
    };
    let outcome = match (&mut head.operation, native) {
        (
            Operation::Send {
                data,
                sent,
                to,
                native_flags,
                shaper,
            },
            _,
        ) => {
            let rest = data.len() - *sent;
            let shaper = shaper.as_ref();
            let grant = match (shaper, native) {
                (None, _) => rest,
                (Some(shaper), Native::Stream(_)) => shaper.take(rest),
                (Some(shaper), Native::Datagram(..)) => match shaper.admit_datagram(rest) {
                    true => rest,
                    false => 0,
                },
            };
            if grant == 0
                && rest > 0
                && let Some(shaper) = shaper
            {
                return Ok(Step::Throttled(shaper.wait_for(rest)));
            }
            let result = match native {
                Native::Stream(stream) => {
                    stream_send_once(stream, &data[*sent..*sent + grant], *native_flags)
                }
                Native::Datagram(udp, _) => datagram_send_once(udp, data, *to),
            };
            if let Some(shaper) = shaper {
                shaper.refund(grant - result.as_ref().map_or(0, |n| (*n).min(grant)));
            }
            match result {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(e),
                Err(e) => Some(Err(WsaError::from(e))),
                Ok(n) => {
                    *sent += n;
                    head.hold.meter().sent(n);
                    head.hold.shrink_to((data.len() - *sent) as u64);
                    (*sent == data.len() || matches!(native, Native::Datagram(..))).then(|| {
                        Ok(OverlappedOutcome {
                            bytes: *sent as u32,
                            data: Vec::new(),
                            sender: None,
                        })
                    })
                }
            }
        }
        (
            Operation::Recv {
                max_len,
                native_flags,
            },
            Native::Stream(stream),
        ) => {
            let mut data = Vec::new();
            match stream_recv_once(stream, &mut data, *max_len, *native_flags) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(e),
                Err(e) => Some(Err(WsaError::from(e))),
                Ok(_) => Some(Ok(OverlappedOutcome {
                    bytes: data.len() as u32,
                    data,
                    sender: None,
                })),
            }
        }
        (
            Operation::Recv {
                max_len,
                native_flags,
            },
            Native::Datagram(udp, filter),
        ) => {
            let mut data = Vec::new();
            match datagram_recv_once(udp, filter, &mut data, *max_len, *native_flags) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(e),
                Err(e) => Some(Err(WsaError::from(e))),
                Ok((n, _)) if n > *max_len => Some(Err(WsaError::MsgSize)),
                Ok((_, from)) => Some(Ok(OverlappedOutcome {
                    bytes: data.len() as u32,
                    data,
                    sender: from.as_socket(),
                })),
            }
        }
    };
    if let Some(result) = outcome
        && let Some(done) = operations.lanes[lane as usize].pop_front()
    {
        if let (Lane::Recv, Ok(outcome)) = (lane, &result) {
            done.hold.meter().received(outcome.data.len());
        }
        // Received bytes stay held until the guest takes them.
        let hold = match &result {
            Ok(outcome) if !outcome.data.is_empty() => {
                let mut hold = done.hold;
                hold.shrink_to(outcome.data.len() as u64);
                Some(hold)
            }
            _ => None,
        };
        shared.complete(&mut operations, &done.target, result, hold);
    }
    Ok(Step::Progress)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::gate::Gate;
    use crate::policy::Policy;

    fn gate(operations: u32, bytes: u64) -> Arc<Gate> {
        let policy = Policy::builder()
            .max_overlapped_operations(operations)
            .max_overlapped_bytes(bytes)
            .build();
        Gate::new(Arc::new(policy), "test".into())
    }

    fn arg(token: u64, queue: &Arc<MessageQueue>) -> OverlappedArg {
        OverlappedArg {
            token,
            queue: queue.clone(),
            msg: 9,
        }
    }

    #[tokio::test]
    async fn se_7_an_operation_completed_at_once_is_queued_and_kept() {
        let gate = gate(4, 1024);
        let queue = MessageQueue::new(4);
        let ops = Overlapped::new(3);
        let ticket = ops.admit(&arg(7, &queue), 10, &gate).unwrap();
        assert_eq!(gate.overlapped().operations, 1);
        ops.completed_at_once(ticket, 10);
        assert_eq!(gate.overlapped().operations, 0, "nothing held after");
        let message = queue.try_get().unwrap();
        assert_eq!(
            message.completion,
            Some(Completion {
                token: 7,
                bytes: 10
            })
        );
        assert_eq!((message.msg, message.socket), (9, 3));
        assert_eq!(ops.result(7, false).await.unwrap().bytes, 10);
        assert_eq!(ops.result(8, false).await, Err(WsaError::InvalidHandle));
    }

    #[tokio::test]
    async fn the_guests_overlapped_limits_are_wsaenobufs_and_a_closed_queue_wsaeinval() {
        let gate = gate(2, 100);
        let queue = MessageQueue::new(4);
        let ops = Overlapped::new(3);
        assert_eq!(
            ops.admit(&arg(1, &queue), 101, &gate).err(),
            Some(WsaError::NoBufs)
        );
        let a = ops.admit(&arg(1, &queue), 50, &gate).unwrap();
        let _b = ops.admit(&arg(2, &queue), 50, &gate).unwrap();
        assert_eq!(
            ops.admit(&arg(3, &queue), 0, &gate).err(),
            Some(WsaError::NoBufs)
        );
        drop(a);
        assert_eq!(gate.overlapped().operations, 1);
        queue.close();
        assert_eq!(
            ops.admit(&arg(3, &queue), 0, &gate).err(),
            Some(WsaError::Inval)
        );
    }

    #[tokio::test]
    async fn se_11_dropping_the_operations_aborts_what_pends() {
        let gate = gate(4, 1024);
        let queue = MessageQueue::new(4);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let ops = Overlapped::new(3);
        let ticket = ops.admit(&arg(5, &queue), 64, &gate).unwrap();
        let operation = Operation::Recv {
            max_len: 64,
            native_flags: 0,
        };
        let pending = ops.pend(ticket, operation, Native::Stream(Arc::new(stream)));
        assert_eq!(pending, WsaError::IoPending);
        assert_eq!(ops.pending(), 1);
        assert_eq!(ops.result(5, false).await, Err(WsaError::IoIncomplete));
        let waiter = ops.result(5, true);
        drop(ops);
        assert_eq!(waiter.await, Err(WsaError::OperationAborted));
        let message = queue.try_get().unwrap();
        assert_eq!(message.notice.error, Some(WsaError::OperationAborted));
        assert_eq!(gate.overlapped(), Default::default(), "nothing held");
    }
}
