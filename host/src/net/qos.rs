//! Quality of service (SPEC JL-8, AS-12, AS-24): flow specifications as
//! the guest gives them (SIO_SET_QOS, the sending QoS of WSPJoinLeaf), and
//! the shaper that holds a socket's sends to its sending flow and to the
//! policy's `max-send-rate`.
//!
//! What wasp can meet: a sending flow of controlled load is shaped to its
//! token rate and bucket size (a token bucket on the socket's sends);
//! best effort and unspecified service need nothing. It cannot reserve
//! bandwidth on the path, so guaranteed service cannot be met
//! (WSAEOPNOTSUPP), nor can a token rate above the policy's
//! `max-send-rate`. Receiving flows are recorded as given (the host does
//! not choose what peers send) unless they ask for guaranteed service.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::WsaError;

/// The service asked for in one direction of a flow specification.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServiceType {
    /// No traffic in this direction.
    NoTraffic,
    /// Best effort.
    #[default]
    BestEffort,
    /// Controlled load.
    ControlledLoad,
    /// Guaranteed service.
    Guaranteed,
    /// Not specified.
    NotSpecified,
}

/// One direction's flow specification (`FLOWSPEC`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flowspec {
    /// Bytes per second.
    pub token_rate: u32,
    /// Bytes.
    pub token_bucket_size: u32,
    /// Bytes per second.
    pub peak_bandwidth: u32,
    /// Microseconds.
    pub latency: u32,
    /// Microseconds.
    pub delay_variation: u32,
    /// The service asked for.
    pub service_type: ServiceType,
    /// Bytes.
    pub max_sdu_size: u32,
    /// Bytes.
    pub minimum_policed_size: u32,
}

impl Flowspec {
    /// Whether the flow asks to be shaped (controlled load with a rate).
    fn shaped(&self) -> bool {
        self.service_type == ServiceType::ControlledLoad && self.token_rate > 0
    }
}

/// A socket's quality of service (`QOS`), as the guest set it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Qos {
    /// The sending direction.
    pub sending: Flowspec,
    /// The receiving direction.
    pub receiving: Flowspec,
}

impl Qos {
    /// SPEC JL-8: whether wasp can meet it under a policy whose
    /// `max-send-rate` is `ceiling` (bytes per second, `None` for no
    /// ceiling); WSAEOPNOTSUPP when not.
    pub fn check(&self, ceiling: Option<u32>) -> Result<(), WsaError> {
        let guaranteed = |f: &Flowspec| f.service_type == ServiceType::Guaranteed;
        if guaranteed(&self.sending) || guaranteed(&self.receiving) {
            return Err(WsaError::OpNotSupp);
        }
        if self.sending.shaped() && ceiling.is_some_and(|max| self.sending.token_rate > max) {
            return Err(WsaError::OpNotSupp);
        }
        Ok(())
    }

    /// The rate and bucket size a socket's sends are shaped to: the
    /// sending flow's (when it is shaped), within the policy's ceiling.
    pub fn shaping(&self, ceiling: Option<u32>) -> Option<(u32, u32)> {
        let flow = self
            .sending
            .shaped()
            .then_some((self.sending.token_rate, self.sending.token_bucket_size));
        match (flow, ceiling) {
            (Some((rate, bucket)), Some(max)) => Some((rate.min(max), bucket)),
            (Some(flow), None) => Some(flow),
            (None, Some(max)) => Some((max, 0)),
            (None, None) => None,
        }
    }
}

/// A socket's flows and what enforces them, shared with its guest's gate
/// (which re-shapes it when the policy changes while the guest runs).
#[derive(Default)]
pub struct Flow {
    /// The quality of service as the guest set it.
    pub qos: Qos,
    /// What holds the socket's sends to it, if anything does.
    pub shaper: Option<Arc<Shaper>>,
}

impl Flow {
    /// The flow of `qos` under the policy's `ceiling`.
    pub fn new(qos: Qos, ceiling: Option<u32>) -> Self {
        Self {
            qos,
            shaper: qos
                .shaping(ceiling)
                .map(|(rate, size)| Shaper::new(rate, size)),
        }
    }

    /// The QoS SIO_GET_QOS reports: as set, the sending rate lowered to
    /// what is enforced where that is lower.
    pub fn effective(&self) -> Qos {
        let mut qos = self.qos;
        if let Some(shaper) = &self.shaper
            && qos.sending.token_rate > shaper.rate()
        {
            qos.sending.token_rate = shaper.rate();
        }
        qos
    }

    /// The policy's ceiling became `ceiling`: whether what is enforced
    /// changed (then the socket is re-shaped, and FD_QOS is due, AS-24).
    pub fn reshape(&mut self, ceiling: Option<u32>) -> bool {
        let before = self.shaper.as_ref().map(|s| s.rate());
        let after = self.qos.shaping(ceiling).map(|(rate, _)| rate.max(1));
        if before == after {
            return false;
        }
        *self = Self::new(self.qos, ceiling);
        true
    }
}

/// A token bucket on one socket's sends: `rate` bytes per second, at most
/// `size` bytes at once (a zero size is a tenth of a second's worth, at
/// least one 1,500-byte packet).
pub struct Shaper {
    bucket: Mutex<Bucket>,
}

struct Bucket {
    rate: u64,
    size: u64,
    /// Bytes that may be sent now (negative after a datagram larger than
    /// what was there: the debt is paid before the next send).
    tokens: i64,
    refilled: Instant,
    /// A wake-up for FD_WRITE is already arranged.
    wake_armed: bool,
}

const NANOS: u128 = 1_000_000_000;

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_nanos();
        let earned = elapsed * u128::from(self.rate) / NANOS;
        if earned == 0 {
            return;
        }
        let size = self.size as i64;
        self.tokens = (self
            .tokens
            .saturating_add(earned.min(i64::MAX as u128) as i64))
        .min(size);
        if self.tokens == size {
            self.refilled = now;
        } else {
            // Keep the fraction of a byte not yet earned.
            let spent = earned * NANOS / u128::from(self.rate);
            self.refilled += Duration::from_nanos(spent.min(u64::MAX as u128) as u64);
        }
    }

    fn until(&self, tokens: i64) -> Duration {
        let missing = (tokens - self.tokens).max(0) as u128;
        let nanos = (missing * NANOS).div_ceil(u128::from(self.rate.max(1)));
        Duration::from_nanos(nanos.min(u64::MAX as u128) as u64).max(Duration::from_millis(1))
    }
}

impl Shaper {
    /// A full bucket of `size` bytes refilled at `rate` bytes per second.
    pub fn new(rate: u32, size: u32) -> Arc<Self> {
        let rate = u64::from(rate.max(1));
        let size = match size {
            0 => (rate / 10).max(1500),
            size => u64::from(size),
        };
        Arc::new(Self {
            bucket: Mutex::new(Bucket {
                rate,
                size,
                tokens: size as i64,
                refilled: Instant::now(),
                wake_armed: false,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Bucket> {
        self.bucket
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Bytes per second.
    pub fn rate(&self) -> u32 {
        u32::try_from(self.lock().rate).unwrap_or(u32::MAX)
    }

    /// Takes up to `want` bytes of a stream send; 0 when none may go now.
    pub fn take(&self, want: usize) -> usize {
        let mut bucket = self.lock();
        bucket.refill(Instant::now());
        let granted = (bucket.tokens.max(0) as u64).min(want as u64);
        bucket.tokens -= granted as i64;
        granted as usize
    }

    /// Admits a datagram of `len` bytes whole: it needs a full bucket's
    /// worth at most (what it takes beyond is paid back before the next
    /// send). `false` when it may not go now.
    pub fn admit_datagram(&self, len: usize) -> bool {
        let mut bucket = self.lock();
        bucket.refill(Instant::now());
        let needed = (len as u64).min(bucket.size) as i64;
        if bucket.tokens < needed.max(1) {
            return false;
        }
        bucket.tokens -= len as i64;
        true
    }

    /// Gives back `bytes` taken for a send the kernel did not take.
    pub fn refund(&self, bytes: usize) {
        let mut bucket = self.lock();
        let size = bucket.size as i64;
        bucket.tokens = (bucket.tokens + bytes as i64).min(size);
    }

    /// How long until `bytes` (at most a bucket's worth) may go.
    pub fn wait_for(&self, bytes: usize) -> Duration {
        let mut bucket = self.lock();
        bucket.refill(Instant::now());
        let needed = (bytes as u64).min(bucket.size).max(1) as i64;
        bucket.until(needed)
    }

    /// Arranges one wake-up for when sends may go again; `None` when one
    /// is already arranged (a guest that keeps sending while throttled
    /// arms one, not one per call).
    pub fn arm_wake(&self) -> Option<Duration> {
        let mut bucket = self.lock();
        if bucket.wake_armed {
            return None;
        }
        bucket.wake_armed = true;
        bucket.refill(Instant::now());
        Some(bucket.until(1))
    }

    /// The arranged wake-up happened.
    pub fn woke(&self) {
        self.lock().wake_armed = false;
    }

    /// Whether nothing may be sent now.
    pub fn is_empty(&self) -> bool {
        let mut bucket = self.lock();
        bucket.refill(Instant::now());
        bucket.tokens <= 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controlled(rate: u32) -> Qos {
        Qos {
            sending: Flowspec {
                token_rate: rate,
                token_bucket_size: 1000,
                service_type: ServiceType::ControlledLoad,
                ..Flowspec::default()
            },
            receiving: Flowspec::default(),
        }
    }

    #[test]
    fn jl_8_guaranteed_service_or_a_rate_above_the_ceiling_cannot_be_met() {
        let mut guaranteed = controlled(10);
        guaranteed.sending.service_type = ServiceType::Guaranteed;
        assert_eq!(guaranteed.check(None), Err(WsaError::OpNotSupp));
        assert_eq!(controlled(2000).check(Some(1000)), Err(WsaError::OpNotSupp));
        assert_eq!(controlled(1000).check(Some(1000)), Ok(()));
        assert_eq!(Qos::default().check(Some(1)), Ok(()), "best effort");
    }

    #[test]
    fn shaping_is_the_flow_within_the_ceiling() {
        assert_eq!(controlled(500).shaping(Some(1000)), Some((500, 1000)));
        assert_eq!(controlled(500).shaping(None), Some((500, 1000)));
        assert_eq!(Qos::default().shaping(Some(1000)), Some((1000, 0)));
        assert_eq!(Qos::default().shaping(None), None);
    }

    #[test]
    fn the_bucket_grants_its_size_then_waits_for_the_rate() {
        let shaper = Shaper::new(1000, 100);
        assert_eq!(shaper.take(250), 100);
        assert_eq!(shaper.take(10), 0);
        assert!(shaper.is_empty());
        let wait = shaper.wait_for(50);
        assert!(wait > Duration::from_millis(40) && wait <= Duration::from_millis(50));
        shaper.refund(30);
        assert_eq!(shaper.take(100), 30);
        assert!(!shaper.admit_datagram(10));
        assert!(shaper.arm_wake().is_some());
        assert!(shaper.arm_wake().is_none(), "one wake-up at a time");
        shaper.woke();
        assert!(shaper.arm_wake().is_some());
    }
}
