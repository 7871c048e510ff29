//! The attack suite (issue 8): guests and peers built to hurt the host.
//! Each attack is one test; each asserts that the attacker alone is stopped
//! or refused, that the host did not panic and, for attacks on neighbours,
//! that a neighbour guest in the same `PluginHost` kept answering.
//!
//! # The harness
//!
//! [`beside_echo`] runs an attack next to a **neighbour**: the `rust-echo`
//! example plugin, in the same [`PluginHost`](wasp_host::run::PluginHost)
//! (the shared `common::host()`) on one current-thread runtime, as the CLI
//! runs guests. While the attack runs, the test thread drives echo round
//! trips against the neighbour over loopback (each must come back within
//! [`ROUND_TRIP_DEADLINE`]) and a sampler thread records the process's
//! VmRSS. Afterwards it checks that this process's open fds are back to
//! their baseline (taken with the neighbour already serving) and prints the
//! neighbour's round-trip p50/p99 and the RSS to stderr. A panic of the
//! attack task (a host panic) fails the test.
//!
//! ```ignore
//! let report = beside_echo("udp-flood", || {
//!     Box::pin(async move { host().run(&component, options).await })
//! });
//! assert!(report.outcome.is_err());
//! ```
//!
//! [`run_beside_echo`] is the common case: one attacker guest. Attacks run
//! one at a time ([`beside_echo`] holds a lock), and this suite is a test
//! binary of its own (no other test shares its process), so RSS and fd
//! counts belong to one attack. [`rss`] and [`open_fds`] are also usable
//! alone.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use wasmtime::component::Component;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasp_host::Policy;
use wasp_host::run::{GuestOptions, Stdio};

use crate::common::{GUEST_DEADLINE, component, host, root, wait_for_line};

// The host tests' harness (guest builds, the shared plugin host); this
// binary uses part of it.
#[allow(dead_code)]
#[path = "../host/common.rs"]
mod common;

mod guest;
mod net;

/// Longest one echo round trip to the neighbour may take.
pub const ROUND_TRIP_DEADLINE: Duration = Duration::from_secs(10);

/// An attack: a future run on the runtime thread, beside the neighbour.
pub type AttackFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What an attack left behind.
pub struct Report<T> {
    /// What the attack's future returned.
    pub outcome: T,
    /// Every neighbour round trip, in order (during and after the attack).
    pub round_trips: Vec<Duration>,
    /// VmRSS just before the attack started, in bytes.
    pub rss_before: u64,
    /// The highest VmRSS sampled while the attack ran, in bytes.
    pub rss_peak: u64,
}

impl<T> Report<T> {
    /// The `q`-quantile (0.0..=1.0) of the round trips.
    pub fn round_trip_quantile(&self, q: f64) -> Duration {
        let mut sorted = self.round_trips.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
        sorted.get(index).copied().unwrap_or_default()
    }

    /// How far the RSS rose above its value before the attack, in bytes.
    pub fn rss_growth(&self) -> u64 {
        self.rss_peak.saturating_sub(self.rss_before)
    }
}

/// A guest to attack with: its component and how to run it.
pub struct Attacker {
    /// The compiled component.
    pub component: Component,
    /// Its options (stdout and stderr captured in memory by default).
    pub options: GuestOptions,
}

impl Attacker {
    /// The test guest `name` (from `tests/programs` or `examples`) with
    /// `args`, under `policy`.
    pub fn guest(name: &str, policy: Policy, args: &[&str]) -> Self {
        Self::new(component(name), name, policy, args)
    }

    /// A hand-written component in WebAssembly text (it must export
    /// `wasi:cli/run`), with no network.
    pub fn wat(name: &str, text: &str) -> Self {
        let bytes = wat::parse_str(text).expect("the attack's WAT parses");
        let component = Component::new(host().engine(), bytes).expect("the attack compiles");
        Self::new(component, name, Policy::builder().build(), &[])
    }

    fn new(component: Component, name: &str, policy: Policy, args: &[&str]) -> Self {
        let mut options = GuestOptions::new(name, Arc::new(policy));
        options.args = args.iter().map(|a| a.to_string()).collect();
        options.stdio = Stdio::Capture {
            stdout: MemoryOutputPipe::new(1 << 20),
            stderr: MemoryOutputPipe::new(1 << 20),
        };
        Self { component, options }
    }

    /// The future that runs this guest to its end.
    pub fn run(self) -> AttackFuture<wasmtime::Result<i32>> {
        Box::pin(async move { host().run(&self.component, self.options).await })
    }
}

/// Runs `attacker` beside the echo neighbour and returns its report (see
/// [`beside_echo`]).
pub fn run_beside_echo(label: &str, attacker: Attacker) -> Report<wasmtime::Result<i32>> {
    beside_echo(label, move || attacker.run())
}

/// Runs the attack that `attack` builds (on the runtime thread) beside the
/// echo neighbour, on one current-thread runtime, while this thread keeps
/// the neighbour busy with echo round trips; see the module docs. Panics if
/// the attack panics, outlives [`GUEST_DEADLINE`], leaves fds open, or if a
/// round trip fails or takes longer than [`ROUND_TRIP_DEADLINE`].
pub fn beside_echo<T: Send + 'static>(
    label: &str,
    attack: impl FnOnce() -> AttackFuture<T> + Send + 'static,
) -> Report<T> {
    let _one_at_a_time = exclusive();
    let neighbour_out = MemoryOutputPipe::new(1 << 20);
    let mut neighbour = GuestOptions::new(
        "neighbour",
        Arc::new(
            Policy::from_file(root().join("examples/policies/echo.toml"))
                .expect("echo policy loads"),
        ),
    );
    neighbour.args = vec!["127.0.0.1:0".into()];
    neighbour.stdio = Stdio::Capture {
        stdout: neighbour_out.clone(),
        stderr: MemoryOutputPipe::new(1 << 20),
    };
    let echo = component("rust-echo");
    let (go, go_rx) = tokio::sync::oneshot::channel::<()>();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (done_tx, done) = mpsc::channel::<std::thread::Result<T>>();
    let runtime_thread = std::thread::Builder::new()
        .name("hostile-runtime".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let neighbour = tokio::spawn(async move { host().run(&echo, neighbour).await });
                if go_rx.await.is_ok() {
                    let outcome = tokio::spawn(attack()).await.map_err(|e| {
                        let panic: Box<dyn std::any::Any + Send> = match e.try_into_panic() {
                            Ok(payload) => payload,
                            Err(e) => Box::new(format!("attack task failed: {e}")),
                        };
                        panic
                    });
                    let _ = done_tx.send(outcome);
                    let _ = stop_rx.await;
                }
                neighbour.abort();
                let _ = neighbour.await;
            });
            // A writer blocked on a stalled pipe must not hold the thread.
            runtime.shutdown_background();
        })
        .expect("runtime thread");

    let line = wait_for_line(&neighbour_out, "echo: listening on ");
    let addr: SocketAddr = line["echo: listening on ".len()..]
        .trim()
        .parse()
        .expect("neighbour address");
    let mut conn = TcpStream::connect_timeout(&addr, ROUND_TRIP_DEADLINE).expect("connect");
    conn.set_read_timeout(Some(ROUND_TRIP_DEADLINE)).unwrap();
    conn.set_write_timeout(Some(ROUND_TRIP_DEADLINE)).unwrap();
    conn.set_nodelay(true).unwrap();
    let mut round_trips = Vec::new();
    for i in 0..5 {
        round_trip(&mut conn, i);
    }
    let fds_before = open_fds();
    let rss_before = rss();
    let peak = Arc::new(AtomicU64::new(rss_before));
    let attacking = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, attacking) = (peak.clone(), attacking.clone());
        std::thread::spawn(move || {
            while attacking.load(Ordering::Relaxed) {
                peak.fetch_max(rss(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    go.send(()).expect("runtime thread alive");
    let start = Instant::now();
    let outcome = loop {
        if let Ok(outcome) = done.try_recv() {
            break outcome;
        }
        assert!(
            start.elapsed() < GUEST_DEADLINE,
            "{label}: the attack was not over within {GUEST_DEADLINE:?}"
        );
        round_trips.push(round_trip(&mut conn, round_trips.len()));
        std::thread::sleep(Duration::from_millis(2));
    };
    attacking.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    let outcome = outcome.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        panic!("{label}: the host panicked during the attack: {message}")
    });
    // The neighbour still answers after the attack.
    for _ in 0..5 {
        round_trips.push(round_trip(&mut conn, round_trips.len()));
    }
    let report = Report {
        outcome,
        round_trips,
        rss_before,
        rss_peak: peak.load(Ordering::Relaxed),
    };
    eprintln!(
        "hostile {label}: neighbour round trips n={} p50={:?} p99={:?} max={:?}; \
         RSS before {} MiB, peak {} MiB (+{} MiB)",
        report.round_trips.len(),
        report.round_trip_quantile(0.5),
        report.round_trip_quantile(0.99),
        report.round_trip_quantile(1.0),
        report.rss_before >> 20,
        report.rss_peak >> 20,
        report.rss_growth() >> 20,
    );
    // Measured with the neighbour still serving, as the baseline was.
    assert_fds_back_to(label, &fds_before);
    drop(conn);
    let _ = stop.send(());
    runtime_thread.join().expect("runtime thread");
    report
}

/// One echo round trip of a 64-byte message tagged with `i`; its duration.
fn round_trip(conn: &mut TcpStream, i: usize) -> Duration {
    let mut message = [b'.'; 64];
    message[..8].copy_from_slice(&(i as u64).to_le_bytes());
    let start = Instant::now();
    conn.write_all(&message)
        .unwrap_or_else(|e| panic!("round trip {i} to the neighbour: send failed: {e}"));
    let mut back = [0u8; 64];
    conn.read_exact(&mut back).unwrap_or_else(|e| {
        panic!("round trip {i}: the neighbour did not answer within {ROUND_TRIP_DEADLINE:?}: {e}")
    });
    let took = start.elapsed();
    assert_eq!(
        back, message,
        "round trip {i}: the neighbour echoed garbage"
    );
    assert!(took < ROUND_TRIP_DEADLINE, "round trip {i} took {took:?}");
    took
}

/// Holds the attack lock: one attack at a time in this process.
pub fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// This process's resident set size (VmRSS) in bytes.
pub fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map_or(0, |kb| kb << 10)
}

/// The file descriptors this process has open, with what they point to,
/// leaving out the memory images (`memfd:`) that Wasmtime keeps for each
/// compiled module once it was instantiated: they belong to the compiled
/// component, not to a guest.
pub fn open_fds() -> BTreeMap<u32, String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return BTreeMap::new();
    };
    dir.flatten()
        .filter_map(|entry| {
            let fd = entry.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(entry.path()).ok()?;
            let target = target.to_string_lossy().into_owned();
            (!target.starts_with("/memfd:")).then_some((fd, target))
        })
        .collect()
}

/// Waits (up to [`GUEST_DEADLINE`]) until no more fds are open than in
/// `baseline` (from [`open_fds`]): whatever an attack opened is closed when
/// it ends.
pub fn assert_fds_back_to(label: &str, baseline: &BTreeMap<u32, String>) {
    let start = Instant::now();
    loop {
        let open = open_fds();
        if open.len() <= baseline.len() {
            return;
        }
        let extra: Vec<_> = open
            .iter()
            .filter(|(fd, _)| !baseline.contains_key(fd))
            .collect();
        assert!(
            start.elapsed() < GUEST_DEADLINE,
            "{label}: {} fds open after the attack, {} before; new: {extra:?}",
            open.len(),
            baseline.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
