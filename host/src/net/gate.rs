//! The capability gate of one guest: its policy, and what its denials
//! leave behind — the last denial (for `last-denial`), a count per reason,
//! and log lines rate-limited so that neither a guest in a loop nor a
//! remote peer knocking can flood the operator's log (DESIGN §4).
//!
//! Shared (`Arc`) by the provider's calls and the background tasks that
//! filter inbound peers (listener admission, datagram filters).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use std::time::{Duration, Instant};
use tokio::sync::Notify;

use arc_swap::ArcSwap;
use arc_swap::Guard as PolicyGuard;

use super::engine::EventLink;
use super::meter::Meter;
use super::qos::Flow;
use super::select::{FdEvents, Input};
use super::socket::Membership;
use crate::error::WsaError;
use crate::policy::suggest::Activity;
use crate::policy::{Denial, Mode, MulticastGrant, NetUse, Policy, Transport, canonical};

/// A guest's policy that can be replaced while the guest runs: by an
/// embedder, or by the CLI when its policy file is reloaded (SIGHUP).
/// Every later check uses the new policy; the guest's sockets are told
/// what changed for them: FD_QOS where the send rate they are held to
/// changed (SPEC AS-12, AS-24), FD_ADDRESS_LIST_CHANGE where the guest
/// armed it and the addresses it may bind changed (AS-13, AS-25).
/// Time limits (CPU, wall clock) stay those the guest started with.
#[derive(Clone)]
pub struct PolicyHandle {
    shared: Arc<PolicyShared>,
}

struct PolicyShared {
    current: ArcSwap<Policy>,
    /// The gates of the guests running under this handle.
    gates: Mutex<Vec<std::sync::Weak<Gate>>>,
}

impl PolicyHandle {
    /// A handle whose policy is `policy` until replaced.
    pub fn new(policy: Arc<Policy>) -> Self {
        Self {
            shared: Arc::new(PolicyShared {
                current: ArcSwap::new(policy),
                gates: Mutex::default(),
            }),
        }
    }

    /// The policy now.
    pub fn current(&self) -> Arc<Policy> {
        self.shared.current.load_full()
    }

    /// Replaces the policy of every guest running under this handle.
    pub fn replace(&self, policy: Arc<Policy>) {
        let old = self.shared.current.swap(policy.clone());
        let gates: Vec<Arc<Gate>> = self
            .live_gates()
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .collect();
        for gate in gates {
            gate.policy_replaced(&old, &policy);
        }
    }

    fn attach(&self, gate: &Arc<Gate>) {
        self.live_gates().push(Arc::downgrade(gate));
    }

    /// The gates of the guests still running under this handle.
    fn live_gates(&self) -> MutexGuard<'_, Vec<std::sync::Weak<Gate>>> {
        let mut gates = self
            .shared
            .gates
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        gates.retain(|g| g.strong_count() > 0);
        gates
    }
}

/// A socket's flows, shared by the socket and its gate.
type SharedFlow = Arc<Mutex<Flow>>;

/// What a policy change is told to: one socket's event link and flows.
struct Tracked {
    link: std::sync::Weak<EventLink>,
    flow: std::sync::Weak<Mutex<Flow>>,
}

/// Log lines per second a guest's denials may produce (the burst is the
/// same); lines beyond it are counted and reported with the next line.
pub const DENIAL_LOG_RATE: u32 = 10;

/// The refill period of one log line.
const LOG_REFILL: Duration = Duration::from_millis(1000 / DENIAL_LOG_RATE as u64);

/// How often each reason refused something, by reason name.
pub type DenialCounts = BTreeMap<&'static str, u64>;

#[derive(Default)]
struct Telemetry {
    last: Option<Denial>,
    log: LogBucket,
    /// The embedder's hook, told of every denial.
    hook: Option<DenialHook>,
}

/// An embedder's hook, called with each denial of a guest as it happens
/// (on the guest's thread: keep it short, never block).
pub type DenialHook = Arc<dyn Fn(&Denial) + Send + Sync>;

/// A token bucket for log lines: [`DENIAL_LOG_RATE`] a second.
struct LogBucket {
    tokens: u32,
    refilled: Instant,
    suppressed: u64,
}

impl Default for LogBucket {
    fn default() -> Self {
        Self {
            tokens: DENIAL_LOG_RATE,
            refilled: Instant::now(),
            suppressed: 0,
        }
    }
}

impl LogBucket {
    /// Whether a line may be written now; if so, how many were suppressed
    /// since the last one written.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        let elapsed = now.saturating_duration_since(self.refilled);
        let earned = (elapsed.as_millis() / LOG_REFILL.as_millis()) as u64;
        if earned > 0 {
            let tokens = u64::from(self.tokens) + earned;
            self.tokens = tokens.min(u64::from(DENIAL_LOG_RATE)) as u32;
            self.refilled += LOG_REFILL * earned.min(u64::from(u32::MAX)) as u32;
        }
        if self.tokens == 0 {
            self.suppressed += 1;
            return None;
        }
        self.tokens -= 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Where a denial happened: a guest's call (`WSAEACCES`) or an inbound
/// filter (the peer is refused unseen). Either becomes the guest's
/// `last-denial`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeniedBy {
    /// A call of the guest: `WSAEACCES`.
    Call,
    /// A remote peer refused by an inbound filter (accept, recv-from).
    Inbound,
}

/// The policy of one guest and its denial telemetry.
pub struct Gate {
    policy: PolicyHandle,
    /// The guest's sockets, told when the policy changes.
    sockets: Mutex<Vec<Tracked>>,
    label: Arc<str>,
    telemetry: Mutex<Telemetry>,
    /// Native sockets held for the guest: its open sockets and the closed
    /// ones still lingering (SO_LINGER), counted against `max-sockets`.
    held: AtomicU32,
    /// What the guest is doing: its sockets, bytes, messages, denials
    /// (shared with other runs when the embedder shares it).
    meter: Arc<Meter>,
    /// A held socket was let go: there may be room again.
    room: Notify,
    /// What the guest's overlapped operations hold now.
    overlapped: Mutex<OverlappedHeld>,
    /// The machine's addresses the guest may bind, as last seen (once
    /// SIO_ADDRESS_LIST_CHANGE asked for interface changes).
    bindable: Mutex<Option<Vec<IpAddr>>>,
}

/// The overlapped operations of a guest and the bytes the host holds for
/// them (SPEC SE-7, SE-8), against `max-overlapped-operations` and
/// `max-overlapped-bytes`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OverlappedHeld {
    /// Operations pending, or completed with received bytes not handed
    /// over yet.
    pub operations: u32,
    /// Bytes held for them.
    pub bytes: u64,
}

impl Gate {
    /// The gate of the guest named `label` (in log lines) under `policy`.
    #[cfg(test)]
    pub fn new(policy: Arc<Policy>, label: Arc<str>) -> Arc<Self> {
        Self::metered(PolicyHandle::new(policy), label, Meter::new())
    }

    /// The gate of a guest whose policy `handle` may replace while it
    /// runs, and whose activity `meter` counts.
    pub fn metered(handle: PolicyHandle, label: Arc<str>, meter: Arc<Meter>) -> Arc<Self> {
        let gate = Arc::new(Self {
            policy: handle.clone(),
            sockets: Mutex::default(),
            label,
            telemetry: Mutex::default(),
            held: AtomicU32::new(0),
            meter,
            room: Notify::new(),
            overlapped: Mutex::default(),
            bindable: Mutex::default(),
        });
        handle.attach(&gate);
        gate
    }

    /// Tells a socket's `link` and `flow` about policy changes from now
    /// on, for as long as they live.
    pub(crate) fn track(&self, link: &Arc<EventLink>, flow: &SharedFlow) {
        let mut sockets = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        sockets.retain(|t| t.link.strong_count() > 0);
        sockets.push(Tracked {
            link: Arc::downgrade(link),
            flow: Arc::downgrade(flow),
        });
    }

    /// The policy was replaced: each socket whose enforced send rate
    /// changed is re-shaped and gets FD_QOS (SPEC AS-24); each gets
    /// FD_ADDRESS_LIST_CHANGE (where armed, AS-25) if the addresses the
    /// guest may bind changed.
    fn policy_replaced(&self, old: &Policy, new: &Policy) {
        let ceiling = new.limits().max_send_rate;
        let rate_changed = old.limits().max_send_rate != ceiling;
        let list_changed = old.grants_of(NetUse::Bind) != new.grants_of(NetUse::Bind);
        tracing::info!(guest = %self.label, "policy replaced");
        if list_changed {
            // Interface changes are compared with what the new grants
            // cover from now on (the change itself is posted below).
            let now = self.bindable_now();
            if let Some(last) = self.bindable().as_mut() {
                *last = now;
            }
        }
        for (link, flow) in self.live_sockets() {
            let reshaped = rate_changed
                && flow
                    .is_some_and(|f| f.lock().unwrap_or_else(|p| p.into_inner()).reshape(ceiling));
            if reshaped {
                link.feed(Input::Changed(FdEvents::QOS));
            }
            if list_changed {
                link.feed(Input::Changed(FdEvents::ADDRESS_LIST_CHANGE));
            }
        }
    }

    /// The guest's sockets that are still open, with their flows.
    fn live_sockets(&self) -> Vec<(Arc<EventLink>, Option<SharedFlow>)> {
        let mut sockets = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        sockets.retain(|t| t.link.strong_count() > 0);
        sockets
            .iter()
            .filter_map(|t| Some((t.link.upgrade()?, t.flow.upgrade())))
            .collect()
    }

    fn bindable(&self) -> MutexGuard<'_, Option<Vec<IpAddr>>> {
        self.bindable.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The machine's addresses that the guest's `bind` grants cover: its
    /// address list (SPEC AS-25), sorted.
    fn bindable_now(&self) -> Vec<IpAddr> {
        let policy = self.policy();
        let grants = policy.grants_of(NetUse::Bind);
        let mut list: Vec<IpAddr> = super::sys::local_addresses()
            .unwrap_or_default()
            .into_iter()
            .filter(|ip| {
                grants
                    .iter()
                    .any(|g| crate::policy::address::block_contains(&g.net, *ip))
            })
            .collect();
        list.sort();
        list.dedup();
        list
    }

    /// The machine's interfaces changed (a report of the kernel): when the
    /// addresses the guest may bind changed with them, its sockets get
    /// FD_ADDRESS_LIST_CHANGE where armed (SPEC AS-25). The first call
    /// only takes the list as it is.
    pub(crate) fn interfaces_changed(&self) {
        let now = self.bindable_now();
        let changed = {
            let mut last = self.bindable();
            let changed = last.as_ref().is_some_and(|l| *l != now);
            *last = Some(now);
            changed
        };
        if changed {
            for (link, _) in self.live_sockets() {
                link.feed(Input::Changed(FdEvents::ADDRESS_LIST_CHANGE));
            }
        }
    }

    /// Holds one overlapped operation and `bytes` for it until the
    /// returned hold is dropped; beyond the policy's limits `WSAENOBUFS`.
    pub fn hold_overlapped(self: &Arc<Self>, bytes: u64) -> Result<OverlappedHold, WsaError> {
        let policy = self.policy();
        let limits = policy.limits();
        let mut held = self.overlapped_held();
        let total = held.bytes.saturating_add(bytes);
        if held.operations >= limits.max_overlapped_operations
            || total > limits.max_overlapped_bytes
        {
            return Err(WsaError::NoBufs);
        }
        held.operations += 1;
        held.bytes = total;
        Ok(OverlappedHold {
            gate: self.clone(),
            bytes,
        })
    }

    fn overlapped_held(&self) -> MutexGuard<'_, OverlappedHeld> {
        self.overlapped
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What the guest's overlapped operations hold now.
    #[cfg(test)]
    pub fn overlapped(&self) -> OverlappedHeld {
        *self.overlapped_held()
    }

    /// Counts one native socket held for the guest until the returned slot
    /// is dropped.
    pub fn slot(self: &Arc<Self>) -> SocketSlot {
        self.held.fetch_add(1, Ordering::Relaxed);
        self.meter.socket_held(true);
        SocketSlot(self.clone())
    }

    /// Whether the guest may hold one more socket (SPEC SO-2).
    pub fn has_room(&self) -> bool {
        self.held.load(Ordering::Relaxed) < self.policy().limits().max_sockets
    }

    /// Waits until the guest may hold one more socket.
    pub async fn room(&self) {
        loop {
            let freed = self.room.notified();
            if self.has_room() {
                return;
            }
            freed.await;
        }
    }

    fn telemetry(&self) -> MutexGuard<'_, Telemetry> {
        self.telemetry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The policy now (it may be replaced while the guest runs; see
    /// [`PolicyHandle`]).
    pub fn policy(&self) -> PolicyGuard<Arc<Policy>> {
        self.policy.shared.current.load()
    }

    /// Records `denial`: counted under its reason, logged within the rate,
    /// and kept as the last denial. Returns `WSAEACCES`.
    pub fn deny(&self, denial: Denial, by: DeniedBy) -> WsaError {
        let mut telemetry = self.telemetry();
        self.report(&mut telemetry, &denial, by, "denied");
        let hook = telemetry.hook.clone();
        telemetry.last = Some(denial.clone());
        drop(telemetry);
        if let Some(hook) = hook {
            hook(&denial);
        }
        WsaError::Acces
    }

    /// Counts `denial` under its reason and logs it within the rate, as
    /// `what` ("denied", or in audit mode "audit: would deny").
    fn report(&self, telemetry: &mut Telemetry, denial: &Denial, by: DeniedBy, what: &str) {
        self.meter.denied(denial.reason().name());
        if let Some(suppressed) = telemetry.log.admit(Instant::now()) {
            let peer = if by == DeniedBy::Inbound {
                " (inbound peer)"
            } else {
                ""
            };
            if suppressed > 0 {
                tracing::warn!(
                    guest = %self.label,
                    "{what}: {denial}{peer} ({suppressed} more denials not logged)"
                );
            } else {
                tracing::warn!(guest = %self.label, "{what}: {denial}{peer}");
            }
        }
    }

    /// The one rule for a use the guest makes, given the policy's
    /// `verdict` on it: allowed, or refused with `WSAEACCES`. Under a
    /// policy in [`Mode::Audit`] the use is recorded (for the suggested
    /// policy), and a denial of a grant is logged and counted as one it
    /// would have been, but let through.
    fn rule(
        &self,
        policy: &Policy,
        activity: Activity,
        verdict: Result<(), Denial>,
        by: DeniedBy,
    ) -> Result<(), WsaError> {
        let auditing = policy.mode() == Mode::Audit;
        match verdict {
            Ok(()) => {
                if auditing {
                    self.meter.record(activity);
                }
                Ok(())
            }
            Err(denial) if auditing && denial.is_of_a_grant() => {
                self.meter.record(activity);
                self.report(&mut self.telemetry(), &denial, by, "audit: would deny");
                Ok(())
            }
            Err(denial) => Err(self.deny(denial, by)),
        }
    }

    /// Calls `hook` with every later denial of this guest.
    pub fn set_denial_hook(&self, hook: DenialHook) {
        self.telemetry().hook = Some(hook);
    }

    /// Checks `net_use` of `addr` for a call of the guest.
    pub fn check(&self, net_use: NetUse, addr: SocketAddr) -> Result<(), WsaError> {
        let policy = self.policy();
        let used = Activity::Address(net_use, canonical(addr));
        self.rule(&policy, used, policy.check(net_use, addr), DeniedBy::Call)
    }

    /// Whether an inbound peer passes the `net_use` filter (accept,
    /// recv-from); a refusal is counted and logged, never shown to the
    /// guest.
    pub fn admits(&self, net_use: NetUse, peer: SocketAddr) -> bool {
        let policy = self.policy();
        let used = Activity::Address(net_use, canonical(peer));
        let verdict = policy.check(net_use, peer);
        self.rule(&policy, used, verdict, DeniedBy::Inbound).is_ok()
    }

    /// Checks that the guest may create sockets of `transport`.
    pub fn check_protocol(&self, transport: Transport) -> Result<(), WsaError> {
        let policy = self.policy();
        let verdict = policy.check_protocol(transport);
        self.rule(
            &policy,
            Activity::Protocol(transport),
            verdict,
            DeniedBy::Call,
        )
    }

    /// The multicast grant covering `group`, for a call of the guest. In
    /// audit mode a group no grant covers gets a grant of its own (on the
    /// default interface, any TTL, whose setting is audited in turn).
    pub fn check_multicast(&self, group: SocketAddr) -> Result<MulticastGrant, WsaError> {
        let policy = self.policy();
        let used = Activity::Multicast(canonical(group));
        match policy.check_multicast(group) {
            Ok(grant) => {
                let grant = grant.clone();
                self.rule(&policy, used, Ok(()), DeniedBy::Call)?;
                Ok(grant)
            }
            Err(denial) => {
                self.rule(&policy, used, Err(denial), DeniedBy::Call)?;
                let group = canonical(group);
                let mut grant =
                    MulticastGrant::loopback(group.ip().into(), group.port()..=group.port());
                grant.max_ttl = u8::MAX;
                Ok(grant)
            }
        }
    }

    /// The one decision for an outbound destination (`connect`,
    /// `send-to`): a multicast group needs a `multicast` grant, whose grant
    /// is returned; any other address a grant of `net_use`.
    pub fn check_destination(
        &self,
        net_use: NetUse,
        to: SocketAddr,
    ) -> Result<Option<MulticastGrant>, WsaError> {
        if canonical(to).ip().is_multicast() {
            self.check_multicast(to).map(Some)
        } else {
            self.check(net_use, to).map(|()| None)
        }
    }

    /// Checks a multicast TTL (IPv4) or hop limit (`v6`) of `asked`
    /// against `ceiling`, the grant's.
    pub fn check_ttl(&self, asked: u8, ceiling: u8, v6: bool) -> Result<(), WsaError> {
        let policy = self.policy();
        let verdict = match asked <= ceiling {
            true => Ok(()),
            false => Err(Denial::MulticastTtl { asked, ceiling }),
        };
        let used = Activity::MulticastTtl { v6, ttl: asked };
        self.rule(&policy, used, verdict, DeniedBy::Call)
    }

    /// Whether the guest's `wasi:sockets` (the second door to the network)
    /// may make `net_use` of `addr` over `transport`: the same policy, the
    /// same denial telemetry as a wasp call. Inbound peers (accept,
    /// receive) are filtered as [`Gate::admits`] filters them. A send or
    /// connect to a multicast group needs a grant whose TTL ceiling allows
    /// the kernel's default multicast TTL of 1, which `wasi:sockets` 0.2
    /// cannot lower.
    pub fn allows_wasi(&self, net_use: NetUse, transport: Transport, addr: SocketAddr) -> bool {
        let decided = self.check_protocol(transport).and_then(|()| match net_use {
            NetUse::Accept | NetUse::RecvFrom => match self.admits(net_use, addr) {
                true => Ok(()),
                false => Err(WsaError::Acces),
            },
            NetUse::Connect | NetUse::SendTo => match self.check_destination(net_use, addr)? {
                Some(grant) => self.check_ttl(WASI_MULTICAST_TTL, grant.max_ttl, addr.is_ipv6()),
                None => Ok(()),
            },
            NetUse::Bind | NetUse::Listen | NetUse::Broadcast => self.check(net_use, addr),
        });
        decided.is_ok()
    }

    /// The most recent denial of a call.
    pub fn last_denial(&self) -> Option<Denial> {
        self.telemetry().last.clone()
    }

    /// Denials so far, by reason.
    pub fn denial_counts(&self) -> DenialCounts {
        self.meter.denials().clone()
    }

    /// What the guest is doing, counted.
    pub fn meter(&self) -> &Arc<Meter> {
        &self.meter
    }
}

/// The multicast TTL of a `wasi:sockets` send: the kernel's default, which
/// WASI 0.2 gives the guest no way to change.
const WASI_MULTICAST_TTL: u8 = 1;

/// One native socket held for the guest (open, or closed and still
/// lingering), counted by its gate against `max-sockets` while alive.
pub struct SocketSlot(Arc<Gate>);

impl Drop for SocketSlot {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::Relaxed);
        self.0.meter.socket_held(false);
        self.0.room.notify_waiters();
    }
}

/// One overlapped operation held for the guest, with the bytes the host
/// keeps for it (see [`Gate::hold_overlapped`]).
pub struct OverlappedHold {
    gate: Arc<Gate>,
    bytes: u64,
}

impl OverlappedHold {
    /// Keeps only `bytes` (the operation needs less than it asked for).
    pub fn shrink_to(&mut self, bytes: u64) {
        let freed = self.bytes.saturating_sub(bytes);
        self.gate.overlapped_held().bytes -= freed;
        self.bytes -= freed;
    }

    /// The meter of the guest the operation is for.
    pub fn meter(&self) -> &Meter {
        &self.gate.meter
    }
}

impl Drop for OverlappedHold {
    fn drop(&mut self) {
        let mut held = self.gate.overlapped_held();
        held.operations -= 1;
        held.bytes -= self.bytes;
    }
}

/// Which senders' datagrams may reach a datagram socket: the connected
/// peer, the senders a multicast membership admits, and the peers of the
/// `recv-from` grants. Every inbound path (receive calls, FIONREAD, the
/// FD_READ condition) goes through it, so a refused datagram is dropped
/// before the guest can see or count it.
#[derive(Clone)]
pub struct DatagramFilter {
    gate: Arc<Gate>,
    connected: Option<SocketAddr>,
    membership: Option<Membership>,
    /// Bound to the group's own address: the kernel delivers only the
    /// group's datagrams to it, never unicast.
    bound_to_group: bool,
}

impl DatagramFilter {
    /// The filter of a socket connected to `connected` (if any), member
    /// of a session (if any), bound to `local` (if bound).
    pub fn new(
        gate: Arc<Gate>,
        connected: Option<SocketAddr>,
        membership: Option<Membership>,
        local: Option<SocketAddr>,
    ) -> Self {
        let bound_to_group = matches!((&membership, local), (Some(m), Some(l)) if m.group == l);
        Self {
            gate,
            connected,
            membership,
            bound_to_group,
        }
    }

    /// Whether the filter needs each datagram's destination: a member
    /// bound elsewhere than its group (the wildcard) receives the group's
    /// datagrams and unicast ones on the same port.
    pub fn needs_destination(&self) -> bool {
        self.membership.is_some() && !self.bound_to_group
    }

    /// Whether a datagram from `from`, sent to `to` (where known), may
    /// reach the guest (a refusal is counted and logged as an inbound
    /// denial). The group's datagrams are admitted by the membership's
    /// grant (SPEC JL-2), others by the `recv-from` grants or the
    /// connected peer; where the destination is unknown, a member's
    /// datagram needs both.
    pub fn admits(&self, from: SocketAddr, to: Option<IpAddr>) -> bool {
        if let Some(m) = &self.membership {
            let to_group = self.bound_to_group || to == Some(m.group.ip());
            if to_group || to.is_none() {
                if !m.admits(&from) {
                    return false;
                }
                if to_group {
                    return true;
                }
            }
        }
        self.connected == Some(from) || self.gate.admits(NetUse::RecvFrom, from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guests_sharing_a_meter_are_counted_together_but_keep_their_own_socket_quota() {
        let meter = Meter::new();
        let policy = Arc::new(Policy::builder().max_sockets(1).build());
        let gate = |name: &str| {
            Gate::metered(
                PolicyHandle::new(policy.clone()),
                name.into(),
                meter.clone(),
            )
        };
        let (first, second) = (gate("first"), gate("second"));
        let held = first.slot();
        assert!(!first.has_room(), "the first guest's one socket is held");
        assert!(second.has_room(), "the second guest's quota is its own");
        let also_held = second.slot();
        assert_eq!(meter.reading().open_sockets, 2);
        drop((held, also_held));
        assert_eq!(meter.reading().open_sockets, 0);
        assert!(first.has_room() && second.has_room());
    }

    #[test]
    fn log_lines_are_rate_limited_and_report_what_was_suppressed() {
        let mut bucket = LogBucket::default();
        let start = bucket.refilled;
        for _ in 0..DENIAL_LOG_RATE {
            assert_eq!(bucket.admit(start), Some(0));
        }
        for _ in 0..1000 {
            assert_eq!(bucket.admit(start), None);
        }
        // One refill period later, one line, carrying the count.
        assert_eq!(bucket.admit(start + LOG_REFILL), Some(1000));
        assert_eq!(bucket.admit(start + LOG_REFILL), None);
        // A long quiet time refills to the burst, no more.
        let later = start + Duration::from_secs(3600);
        for _ in 0..DENIAL_LOG_RATE {
            assert!(bucket.admit(later).is_some());
        }
        assert_eq!(bucket.admit(later), None);
    }

    #[test]
    fn denials_are_counted_by_reason_and_the_last_one_is_kept() {
        let gate = Gate::new(Arc::new(Policy::deny_all()), "test".into());
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for _ in 0..3 {
            assert!(!gate.admits(NetUse::Accept, peer));
        }
        assert_eq!(
            gate.last_denial().unwrap().to_string(),
            "no `accept` grant covers 127.0.0.1:9"
        );
        assert_eq!(gate.check(NetUse::Connect, peer), Err(WsaError::Acces));
        let counts = gate.denial_counts();
        assert_eq!(counts.get("address:accept"), Some(&3));
        assert_eq!(counts.get("address:connect"), Some(&1));
        assert_eq!(
            gate.last_denial().unwrap().to_string(),
            "no `connect` grant covers 127.0.0.1:9"
        );
    }
}
