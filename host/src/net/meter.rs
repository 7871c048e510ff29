//! What one guest is doing, counted as it happens: its sockets, the bytes
//! its calls move, the messages posted into its queues, its denials, its
//! CPU time and memory. Shared (`Arc`) by the guest's gate, its queues, its
//! overlapped operations and the runner; read at any time from another
//! thread ([`Meter::reading`]) by an embedder or the CLI's metrics
//! endpoint.
//!
//! Every count is a relaxed atomic (or, for denials, taken under a lock
//! that only a denial or a reading takes): metering adds nothing a guest
//! could make expensive.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use std::collections::BTreeSet;

use super::gate::DenialCounts;
use super::queue::MessageQueue;
use crate::policy::suggest::Activity;

/// The live counts of one guest (see the module documentation).
#[derive(Debug, Default)]
pub struct Meter {
    /// Native sockets held: open, or closed and still lingering
    /// (SO_LINGER).
    held_sockets: AtomicU32,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    messages_posted: AtomicU64,
    messages_held_back: AtomicU64,
    cpu_nanos: AtomicU64,
    memory_bytes: AtomicU64,
    denials: Mutex<DenialCounts>,
    /// The guest's message queues, for their depth.
    queues: Mutex<Vec<Weak<MessageQueue>>>,
    /// Every use of the network the guest made under a policy in audit
    /// mode, for the policy that would allow it.
    activities: Mutex<BTreeSet<Activity>>,
}

/// One reading of a guest's [`Meter`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeterReading {
    /// Native sockets held: open, or closed and still lingering.
    pub open_sockets: u32,
    /// Bytes the guest's sends handed to the network (WSPSend, WSPSendTo,
    /// their overlapped forms).
    pub bytes_sent: u64,
    /// Bytes the guest's receives took from the network (WSPRecv,
    /// WSPRecvFrom, their overlapped forms).
    pub bytes_received: u64,
    /// Messages posted into the guest's queues (events and completions,
    /// SPEC AS-1, SE-7).
    pub messages_posted: u64,
    /// Posts that found a queue full and were held back until the guest
    /// made room.
    pub messages_held_back: u64,
    /// Messages waiting in the guest's queues now.
    pub queue_depth: u64,
    /// Denials so far, by reason (both doors: wasp calls and
    /// `wasi:sockets`).
    pub denials: DenialCounts,
    /// CPU time the guest has used (its code and the host calls it made).
    pub cpu_time: Duration,
    /// Bytes of linear memory and tables the guest holds.
    pub memory_bytes: u64,
}

impl Meter {
    /// A meter with nothing counted.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Reads every count now.
    pub fn reading(&self) -> MeterReading {
        let queue_depth = self
            .live_queues()
            .iter()
            .filter_map(Weak::upgrade)
            .map(|q| q.waiting() as u64)
            .sum();
        MeterReading {
            open_sockets: self.held_sockets.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            messages_posted: self.messages_posted.load(Ordering::Relaxed),
            messages_held_back: self.messages_held_back.load(Ordering::Relaxed),
            queue_depth,
            denials: self.denials().clone(),
            cpu_time: Duration::from_nanos(self.cpu_nanos.load(Ordering::Relaxed)),
            memory_bytes: self.memory_bytes.load(Ordering::Relaxed),
        }
    }

    /// Counts a native socket held (`true`) or let go.
    pub(crate) fn socket_held(&self, held: bool) {
        match held {
            true => self.held_sockets.fetch_add(1, Ordering::Relaxed),
            false => self.held_sockets.fetch_sub(1, Ordering::Relaxed),
        };
    }

    /// Counts bytes a send handed to the network.
    pub(crate) fn sent(&self, bytes: usize) {
        self.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Counts bytes a receive took from the network.
    pub(crate) fn received(&self, bytes: usize) {
        self.bytes_received
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Counts one message posted (`queued`) or held back.
    pub(crate) fn posted(&self, queued: bool) {
        let count = match queued {
            true => &self.messages_posted,
            false => &self.messages_held_back,
        };
        count.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one denial under `reason`.
    pub(crate) fn denied(&self, reason: &'static str) {
        *self.denials().entry(reason).or_default() += 1;
    }

    /// The denials so far, by reason.
    pub(crate) fn denials(&self) -> MutexGuard<'_, DenialCounts> {
        self.denials.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts CPU time the guest spent.
    pub(crate) fn spent(&self, cpu: Duration) {
        let nanos = u64::try_from(cpu.as_nanos()).unwrap_or(u64::MAX);
        self.cpu_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Counts memory the guest took (`grew`) or gave back.
    pub(crate) fn memory(&self, bytes: usize, grew: bool) {
        match grew {
            true => self.memory_bytes.fetch_add(bytes as u64, Ordering::Relaxed),
            false => self.memory_bytes.fetch_sub(bytes as u64, Ordering::Relaxed),
        };
    }

    /// Records a use the guest made (audit mode).
    pub(crate) fn record(&self, activity: Activity) {
        self.activities
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(activity);
    }

    /// The uses of the network recorded while the guest ran under a policy
    /// in audit mode: what [`crate::policy::suggest::suggest`] makes a
    /// policy of.
    pub fn activities(&self) -> Vec<Activity> {
        let recorded = self.activities.lock().unwrap_or_else(|p| p.into_inner());
        recorded.iter().copied().collect()
    }

    /// Counts the depth of `queue` from now on, for as long as it lives.
    pub(crate) fn track_queue(&self, queue: &Arc<MessageQueue>) {
        self.live_queues().push(Arc::downgrade(queue));
    }

    fn live_queues(&self) -> MutexGuard<'_, Vec<Weak<MessageQueue>>> {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        queues.retain(|q| q.strong_count() > 0);
        queues
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::queue::{Message, Posted};
    use crate::net::select::{FdEvents, Notice};

    fn read_event(socket: u32) -> Message {
        Message {
            msg: 1,
            socket,
            notice: Notice {
                event: FdEvents::READ,
                error: None,
            },
            completion: None,
        }
    }

    #[test]
    fn posts_held_back_and_queue_depth_are_counted_until_the_queue_is_dropped() {
        let meter = Meter::new();
        let queue = MessageQueue::metered(1, &meter);
        assert_eq!(queue.post(read_event(1)), Posted::Queued);
        assert_eq!(queue.post(read_event(2)), Posted::Full);
        let reading = meter.reading();
        assert_eq!(
            (
                reading.messages_posted,
                reading.messages_held_back,
                reading.queue_depth
            ),
            (1, 1, 1)
        );
        assert!(queue.try_get().is_some());
        assert_eq!(meter.reading().queue_depth, 0);
        queue.post(read_event(3));
        drop(queue);
        let reading = meter.reading();
        assert_eq!((reading.messages_posted, reading.queue_depth), (2, 0));
    }

    #[test]
    fn bytes_denials_cpu_and_memory_are_read_back() {
        let meter = Meter::new();
        meter.sent(10);
        meter.sent(5);
        meter.received(7);
        meter.denied("address:connect");
        meter.denied("address:connect");
        meter.spent(Duration::from_millis(1000));
        meter.spent(Duration::from_millis(500));
        meter.memory(2 << 20, true);
        meter.memory(1 << 20, false);
        let reading = meter.reading();
        assert_eq!((reading.bytes_sent, reading.bytes_received), (15, 7));
        assert_eq!(reading.denials.get("address:connect"), Some(&2));
        assert_eq!(reading.cpu_time, Duration::from_millis(1500));
        assert_eq!(reading.memory_bytes, 1 << 20);
    }
}
