//! Running plugins: an engine set up for untrusted guests, WASI plus wasp
//! in one linker, and one store per guest with its own limits.
//!
//! A plugin is a WASI command component (it exports `wasi:cli/run`). Its
//! WASI context has no network (`wasi:sockets` denies every address): the
//! network is reachable only through `wasp:spi` and its policy.
//!
//! Limits (DESIGN §4): one byte budget for all of a guest's linear
//! memories and table elements, counts of its instances, memories and
//! tables, and optional CPU-time, wall-clock and CPU-share limits. A guest
//! over one is stopped alone, with [`GuestStopped`] as the error's root
//! cause. A guest that computes without calling the host yields to the
//! runtime every [`EPOCH_TICK`], and the runtime polls its I/O before the
//! guest runs again, so guests sharing a thread stay served; its stdio never
//! blocks the runtime thread either.

use std::collections::VecDeque;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
    UpdateDeadline,
};
use wasmtime_wasi::cli::AsyncStdoutStream;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::cache::CompileCache;
use crate::net::meter::Meter;
use crate::policy::{CPU_SHARE_WINDOW, Limits};
use crate::{Policy, PolicyHandle, WaspCtx, WaspCtxView, WaspView};

/// Default memory ceiling of one guest: all its linear memories and table
/// elements together.
pub const DEFAULT_MEMORY_LIMIT: usize = 64 << 20;
/// Most core instances one guest may create (a Rust plugin has a handful;
/// toolchains that link many libraries have dozens).
pub const MAX_INSTANCES: usize = 256;
/// Most linear memories one guest may create: even an empty one reserves
/// gigabytes of address space.
pub const MAX_MEMORIES: usize = 16;
/// Most tables one guest may create.
pub const MAX_TABLES: usize = 64;
/// Guests one [`PluginHost`] keeps instance slots for: its engine
/// allocates instances from a pool reserved once (wasmtime's pooling
/// allocator), which makes starting a guest cheaper than mapping fresh
/// memory each time. One more concurrent guest fails to start with
/// [`InstantiationFailed`]; a machine that refuses the pool's address-space
/// reservation gets an engine that maps memory for each instance instead.
pub const MAX_CONCURRENT_GUESTS: u32 = 1000;
/// Elements one table of a pooled instance may hold (toolchains with large
/// runtimes have tens of thousands of functions in their tables).
const POOLED_TABLE_ELEMENTS: usize = 1 << 17;
/// What one table element costs the host (Wasmtime stores a pointer).
const TABLE_ELEMENT_BYTES: usize = size_of::<usize>();
/// Bytes of a guest's stdout or stderr that may wait for the host's own
/// stream; past them the guest waits (it alone).
const STDIO_BUFFER: usize = 64 << 10;
/// The slots of the CPU-share window: CPU time is kept per slot, and the
/// oldest slot leaves the window whole.
const CPU_SHARE_SLOTS: u32 = 20;
/// How often the epoch ticks: a guest that computes without calling the
/// host yields to the runtime at least this often. An echo round trip to a
/// guest beside a spinning one on the same thread waits about three slices:
/// 28 ms at a 10 ms tick, 6 ms at 2 ms.
pub const EPOCH_TICK: Duration = Duration::from_millis(2);

/// A guest's limits of CPU and wall-clock time ([`GuestOptions::time_limits`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeLimits {
    /// Total CPU time: the time spent running the guest (its code and the
    /// host calls it makes), summed over its life.
    pub cpu_time: Option<Duration>,
    /// Wall-clock time from the start of the run.
    pub wall_time: Option<Duration>,
    /// Share of one core in percent (1..=100), measured over the last
    /// [`CPU_SHARE_WINDOW`].
    pub cpu_share: Option<u8>,
}

impl From<&Limits> for TimeLimits {
    fn from(limits: &Limits) -> Self {
        Self {
            cpu_time: limits.max_cpu_time,
            wall_time: limits.max_wall_time,
            cpu_share: limits.max_cpu_share,
        }
    }
}

/// Why the host stopped a guest: the limit it went over. It is the root
/// cause of [`PluginHost::run`]'s error (find it with `downcast_ref`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GuestStopped {
    /// Its linear memories, tables and instances together outgrew the
    /// memory limit (bytes).
    #[error("guest memory limit of {} exceeded", Bytes(*.0))]
    Memory(usize),
    /// It used more CPU time than [`TimeLimits::cpu_time`].
    #[error("guest CPU time limit of {0:?} exceeded")]
    CpuTime(Duration),
    /// It ran longer than [`TimeLimits::wall_time`].
    #[error("guest wall-clock time limit of {0:?} exceeded")]
    WallTime(Duration),
    /// It used more than [`TimeLimits::cpu_share`] percent of a core over
    /// [`CPU_SHARE_WINDOW`].
    #[error("guest CPU share limit of {0} % over {CPU_SHARE_WINDOW:?} exceeded")]
    CpuShare(u8),
}

/// A byte count in MiB when it is a whole number of them.
struct Bytes(usize);

impl std::fmt::Display for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_multiple_of(1 << 20) {
            write!(f, "{} MiB", self.0 >> 20)
        } else {
            write!(f, "{} bytes", self.0)
        }
    }
}

/// The store data of one plugin: WASI, wasp and the limits.
pub struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    wasp: WaspCtx,
    memory: MemoryBudget,
}

/// One byte budget for everything a guest can multiply: its linear
/// memories and its table elements, summed over every instance of its
/// store (memories and tables only grow until the store is dropped), plus
/// the counts of instances, memories and tables. Going over the budget is a
/// trap of the guest ([`GuestStopped::Memory`]), never a host allocation.
struct MemoryBudget {
    limit: usize,
    used: usize,
    /// Told the memory in use after each change.
    meter: Arc<Meter>,
    /// The last growth granted, returned if it then fails.
    granted: usize,
}

impl MemoryBudget {
    fn new(limit: usize, meter: Arc<Meter>) -> Self {
        Self {
            limit,
            used: 0,
            meter,
            granted: 0,
        }
    }

    /// Grants a growth from `current` to `desired` bytes within the budget.
    /// Growing past the memory's or table's own `maximum` is refused as
    /// WebAssembly says (`memory.grow` returns -1); past the budget, the
    /// guest traps.
    fn grow(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Asking for more than the budget stops the guest, whatever the
        // memory's or table's own maximum (which the instance pool may
        // lower): only a growth within the budget is refused quietly.
        let growth = desired.saturating_sub(current);
        let used = match self.used.checked_add(growth) {
            Some(used) if used <= self.limit => used,
            _ => return Err(GuestStopped::Memory(self.limit).into()),
        };
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        self.used = used;
        self.granted = growth;
        self.meter.memory(growth, true);
        Ok(true)
    }

    fn grow_failed(&mut self) -> wasmtime::Result<()> {
        let granted = std::mem::take(&mut self.granted);
        self.used -= granted;
        self.meter.memory(granted, false);
        Ok(())
    }
}

impl Drop for MemoryBudget {
    /// The store is gone, and its memories and tables with it.
    fn drop(&mut self) {
        self.meter.memory(self.used, false);
    }
}

impl ResourceLimiter for MemoryBudget {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(current, desired, maximum)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_failed()
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let bytes = |elements: usize| elements.saturating_mul(TABLE_ELEMENT_BYTES);
        self.grow(bytes(current), bytes(desired), maximum.map(bytes))
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_failed()
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WaspView for GuestState {
    fn wasp(&mut self) -> WaspCtxView<'_> {
        WaspCtxView {
            ctx: &mut self.wasp,
            table: &mut self.table,
        }
    }
}

/// Where a plugin's standard output and error go.
#[derive(Clone, Default)]
pub enum Stdio {
    /// The host process's own (standard input too). Writes go through a
    /// buffer and the runtime's blocking pool: a stdout that nobody reads
    /// stalls the writing guest alone, never the runtime thread.
    #[default]
    Inherit,
    /// In-memory pipes the caller reads afterwards.
    Capture {
        /// Standard output.
        stdout: MemoryOutputPipe,
        /// Standard error.
        stderr: MemoryOutputPipe,
    },
}

/// The log filter every front end starts from: wasp's own lines from
/// `info` (start, denials, end), other crates' warnings only.
pub const DEFAULT_LOG_DIRECTIVES: &str = "warn,wasp=info,wasp_host=info";

/// The `tracing` filter directives for a `WASP_LOG` value: the default
/// without one; a bare level (`debug`) applied to wasp's own lines only,
/// never the compiler's; anything else taken as written
/// (`cranelift=debug`).
pub fn log_directives(wasp_log: Option<&str>) -> String {
    match wasp_log.map(str::trim) {
        None | Some("") => DEFAULT_LOG_DIRECTIVES.to_string(),
        Some(level) if level.parse::<tracing::Level>().is_ok() => {
            format!("warn,wasp={level},wasp_host={level}")
        }
        Some(directives) => directives.to_string(),
    }
}

/// How to run one plugin.
#[derive(Clone)]
pub struct GuestOptions {
    /// Its capabilities: keep a clone of the handle to replace them while
    /// the plugin runs ([`PolicyHandle::replace`]).
    pub policy: PolicyHandle,
    /// Its name in logs (and `argv[0]`).
    pub name: String,
    /// Its arguments after `argv[0]`.
    pub args: Vec<String>,
    /// Its environment variables: these and no other (the host's own
    /// environment is never passed on).
    pub env: Vec<(String, String)>,
    /// Called with each denial of the guest as it happens
    /// ([`WaspCtx::on_denial`]).
    pub on_denial: Option<crate::net::gate::DenialHook>,
    /// Counts what the guest does (sockets, bytes, messages, denials, CPU
    /// time, memory): keep a clone to read it while the plugin runs
    /// ([`Meter::reading`]). Runs of cloned options share it and are
    /// counted together (`wasp serve` counts a plugin's restarts so);
    /// each run's quotas stay its own.
    pub meter: Arc<Meter>,
    /// Memory ceiling in bytes, for all its linear memories and table
    /// elements together; growing beyond it stops the guest
    /// ([`GuestStopped::Memory`]).
    pub memory_limit: usize,
    /// Standard output and error.
    pub stdio: Stdio,
    /// CPU and wall-clock limits; [`GuestOptions::new`] takes them from the
    /// policy's [`Limits`].
    pub time_limits: TimeLimits,
}

impl GuestOptions {
    /// Logs the start line of a run with these options: the plugin, its
    /// `policy` (where it came from) and its limits. Every front end
    /// writes the same line (target `wasp`).
    pub fn log_start(&self, policy: &dyn std::fmt::Display) {
        let time = &self.time_limits;
        let seconds = |limit: Option<Duration>| {
            limit.map_or("none".into(), |d| format!("{}s", d.as_secs_f64()))
        };
        tracing::info!(
            target: "wasp",
            plugin = %self.name,
            policy = %policy,
            memory_mib = self.memory_limit >> 20,
            cpu_time = %seconds(time.cpu_time),
            wall_time = %seconds(time.wall_time),
            cpu_share = %time.cpu_share.map_or("none".into(), |p| format!("{p}%")),
            "plugin starting"
        );
    }

    /// Options for a plugin called `name` under `policy`, with no arguments,
    /// the default memory limit and inherited stdio.
    pub fn new(name: impl Into<String>, policy: Arc<Policy>) -> Self {
        Self {
            name: name.into(),
            args: Vec::new(),
            env: Vec::new(),
            on_denial: None,
            meter: Meter::new(),
            memory_limit: DEFAULT_MEMORY_LIMIT,
            stdio: Stdio::Inherit,
            time_limits: TimeLimits::from(policy.limits()),
            policy: PolicyHandle::new(policy),
        }
    }
}

/// The instance pool of a [`PluginHost`]'s engine: room for
/// [`MAX_CONCURRENT_GUESTS`] guests, each as large as the per-guest limits
/// allow (the store's limiter holds each guest to its own budget and to
/// [`MAX_INSTANCES`], [`MAX_MEMORIES`] and [`MAX_TABLES`]).
fn pooled_instances() -> InstanceAllocationStrategy {
    let guests = MAX_CONCURRENT_GUESTS;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(guests)
        .total_stacks(guests)
        // A Rust plugin has a handful of core instances, one memory and a
        // few tables; the pool holds that many on average per guest.
        .total_core_instances(guests * 8)
        .total_memories(guests * 2)
        .total_tables(guests * 8)
        // A module that declares more memories or tables than a guest may
        // have is refused when it is compiled; the store's limiter counts
        // them across the guest's modules.
        .max_memories_per_module(MAX_MEMORIES as u32)
        .max_tables_per_module(MAX_TABLES as u32)
        .table_elements(POOLED_TABLE_ELEMENTS);
    InstanceAllocationStrategy::Pooling(pool)
}

/// A plugin file's bytes, checked ([`crate::check::check_plugin`]).
fn read_plugin(path: &Path) -> wasmtime::Result<Vec<u8>> {
    let bytes = std::fs::read(path)?;
    crate::check::check_plugin(&bytes)?;
    Ok(bytes)
}

/// An engine and linker for running plugins; share one across guests.
pub struct PluginHost {
    engine: Engine,
    linker: Linker<GuestState>,
    ticker: Arc<EpochTicker>,
}

impl Drop for PluginHost {
    fn drop(&mut self) {
        self.ticker.stop();
    }
}

impl PluginHost {
    /// Sets up the engine (epoch interruption, a ticker thread of its own)
    /// and the linker (WASI p2 and wasp).
    pub fn new() -> wasmtime::Result<Self> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.allocation_strategy(pooled_instances());
        let engine = match Engine::new(&config) {
            Ok(engine) => engine,
            Err(e) => {
                tracing::debug!("no instance pool ({e:#}): instances are mapped one by one");
                config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
                Engine::new(&config)?
            }
        };
        let ticker = EpochTicker::spawn(&engine);
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        crate::add_to_linker(&mut linker)?;
        Ok(Self {
            engine,
            linker,
            ticker,
        })
    }

    /// The engine, for compiling components.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles a plugin from a `.wasm` file, after checking from its bytes
    /// that it is a WASI command component importing only what the host
    /// provides (a [`PluginError`](crate::check::PluginError) as the
    /// error's root cause otherwise, before any compiling).
    pub fn load(&self, path: impl AsRef<Path>) -> wasmtime::Result<Component> {
        Component::new(&self.engine, &read_plugin(path.as_ref())?)
    }

    /// [`PluginHost::load`] of a plugin's bytes (an image layer, say),
    /// with the same checks first.
    pub fn load_bytes(&self, bytes: &[u8]) -> wasmtime::Result<Component> {
        crate::check::check_plugin(bytes)?;
        Component::new(&self.engine, bytes)
    }

    /// [`PluginHost::load`] through a compile cache: a plugin compiled
    /// before by this wasp and engine is loaded compiled, any other is
    /// compiled and stored. The same checks come first.
    pub fn load_cached(
        &self,
        path: impl AsRef<Path>,
        cache: &CompileCache,
    ) -> wasmtime::Result<Component> {
        cache.component(&self.engine, &read_plugin(path.as_ref())?)
    }

    /// Runs `component` as a WASI command to its end and returns its exit
    /// status (0 for success). A trap is an `Err`; so is a guest stopped at
    /// one of its limits, with [`GuestStopped`] as the root cause.
    ///
    /// Poll this future on a runtime worker (spawn it, or use a
    /// current-thread runtime): the I/O driver runs on the runtime's
    /// workers, and a guest polled elsewhere (a multi-thread runtime's
    /// `block_on`) pays a thread wake-up for every batch of events. The
    /// runtime needs its time driver (`enable_time`).
    pub async fn run(&self, component: &Component, options: GuestOptions) -> wasmtime::Result<i32> {
        let plugin = self.prepare(component)?;
        self.run_prepared(&plugin, options).await
    }

    /// Resolves `component`'s imports against the host once (wasmtime's
    /// `InstancePre`): a plugin run many times is then instantiated
    /// without that work each time ([`PluginHost::run_prepared`]). An
    /// import the host lacks is an error here, with
    /// [`InstantiationFailed`] as its context.
    pub fn prepare(&self, component: &Component) -> wasmtime::Result<PreparedPlugin> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .and_then(CommandPre::new)
            .map_err(|e| e.context(InstantiationFailed))?;
        Ok(PreparedPlugin { pre })
    }

    /// [`PluginHost::run`] of a plugin prepared with
    /// [`PluginHost::prepare`].
    pub async fn run_prepared(
        &self,
        plugin: &PreparedPlugin,
        options: GuestOptions,
    ) -> wasmtime::Result<i32> {
        let mut wasi = WasiCtxBuilder::new();
        let mut argv = vec![options.name.clone()];
        argv.extend(options.args.iter().cloned());
        wasi.args(&argv).envs(&options.env);
        match &options.stdio {
            Stdio::Inherit => {
                wasi.inherit_stdin()
                    .stdout(AsyncStdoutStream::new(
                        STDIO_BUFFER,
                        wasmtime_wasi::cli::stdout(),
                    ))
                    .stderr(AsyncStdoutStream::new(
                        STDIO_BUFFER,
                        wasmtime_wasi::cli::stderr(),
                    ));
            }
            Stdio::Capture { stdout, stderr } => {
                wasi.stdout(stdout.clone()).stderr(stderr.clone());
            }
        }
        let mut wasp = WaspCtx::metered(
            options.policy.clone(),
            options.name.as_str(),
            options.meter.clone(),
        );
        // No receive may ask the host for more than the guest can hold.
        wasp.set_memory_limit(options.memory_limit);
        // One policy for both doors: the guest's wasi:sockets too.
        wasp.govern_wasi_sockets(&mut wasi);
        if let Some(hook) = &options.on_denial {
            wasp.on_denial(hook.clone());
        }
        let state = GuestState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            wasp,
            memory: MemoryBudget::new(options.memory_limit, options.meter.clone()),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.memory);
        // Every tick, yield through the runtime. The guest's own future
        // ([`Supervised`]) arranges its wake-up with tokio's `yield_now`,
        // which wakes it only after the runtime has polled its I/O driver,
        // so the neighbours' sockets are served between two slices. The
        // future wasmtime polls here cannot do it: at a tick inside wasm
        // that a host call's result lowering runs (the guest's
        // `cabi_realloc`), the waker it is polled with never wakes the
        // task (seen as a guest stalled right after a rooted join).
        store.set_epoch_deadline(1);
        let yielded = Arc::new(AtomicBool::new(false));
        let tick = yielded.clone();
        store.epoch_deadline_callback(move |_| {
            tick.store(true, Ordering::Relaxed);
            Ok(UpdateDeadline::YieldCustom(1, Box::pin(PendingOnce(false))))
        });
        let guest = async move {
            let command = plugin
                .pre
                .instantiate_async(&mut store)
                .await
                .map_err(|e| e.context(InstantiationFailed))?;
            command.wasi_cli_run().call_run(&mut store).await
        };
        let supervised = Supervised::new(
            guest,
            options.time_limits,
            self.ticker.clone(),
            yielded,
            options.meter.clone(),
        );
        match supervised.await {
            Ok(Ok(())) => Ok(0),
            Ok(Err(())) => Ok(1),
            Err(e) => match e.downcast_ref::<I32Exit>() {
                Some(exit) => Ok(exit.0),
                None => Err(e),
            },
        }
    }
}

/// A plugin whose imports are resolved against a [`PluginHost`]'s linker
/// ([`PluginHost::prepare`]); run it with [`PluginHost::run_prepared`].
pub struct PreparedPlugin {
    pre: CommandPre<GuestState>,
}

/// The context of an error that happened while instantiating the plugin
/// (an import the host lacks, a count limit), before any of its code ran
/// its `run`.
#[derive(Debug, thiserror::Error)]
#[error("cannot instantiate the plugin")]
pub struct InstantiationFailed;

/// A guest's future under its [`TimeLimits`]: the time spent inside its
/// polls is its CPU time (its code and the host calls it makes), and the
/// wall-clock deadline runs from the first poll. Over a limit, the guest
/// future is dropped (which stops the guest) and the run ends with
/// [`GuestStopped`].
struct Supervised<F> {
    guest: Pin<Box<F>>,
    ticker: Arc<EpochTicker>,
    /// Set by the epoch callback: the guest yielded at a tick, and its
    /// wake-up is this future's to arrange.
    yielded: Arc<AtomicBool>,
    limits: TimeLimits,
    cpu: CpuMeter,
    /// Told the CPU time after each poll.
    meter: Arc<Meter>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// A wake-up [`YIELD_FALLBACK`] after each yield at a tick, in case the
    /// deferred one is lost.
    fallback: Pin<Box<tokio::time::Sleep>>,
}

/// How long a guest that yielded at an epoch tick waits at most for its
/// wake-up: the runtime normally wakes it as soon as it has polled its
/// I/O driver; a guest seen stalled after a tick (a rooted join's test,
/// under heavy load) gets going again after this.
const YIELD_FALLBACK: Duration = Duration::from_millis(20);

impl<F> Supervised<F> {
    fn new(
        guest: F,
        limits: TimeLimits,
        ticker: Arc<EpochTicker>,
        yielded: Arc<AtomicBool>,
        meter: Arc<Meter>,
    ) -> Self {
        Self {
            meter,
            guest: Box::pin(guest),
            ticker,
            yielded,
            limits,
            cpu: CpuMeter::default(),
            deadline: limits
                .wall_time
                .map(|wall| Box::pin(tokio::time::sleep(wall))),
            fallback: Box::pin(tokio::time::sleep(YIELD_FALLBACK)),
        }
    }
}

impl<F, T> Future for Supervised<F>
where
    F: Future<Output = wasmtime::Result<T>>,
{
    type Output = wasmtime::Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let start = Instant::now();
        let poll = {
            let _running = this.ticker.guest_running();
            this.guest.as_mut().poll(cx)
        };
        let spent = start.elapsed();
        this.cpu.record(start, spent);
        this.meter.spent(spent);
        if poll.is_ready() {
            return poll;
        }
        if let Some(stop) = this.cpu.over(&this.limits) {
            return Poll::Ready(Err(stop.into()));
        }
        if let (Some(deadline), Some(wall)) = (&mut this.deadline, this.limits.wall_time)
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(GuestStopped::WallTime(wall).into()));
        }
        if this.yielded.swap(false, Ordering::Relaxed) {
            // The guest yielded at an epoch tick: wake it once the runtime
            // has polled its I/O driver (`yield_now` defers this task's
            // waker until then; its first poll is always pending).
            let _ = std::pin::pin!(tokio::task::yield_now()).poll(cx);
            let at = tokio::time::Instant::now() + YIELD_FALLBACK;
            this.fallback.as_mut().reset(at);
            let _ = this.fallback.as_mut().poll(cx);
        }
        Poll::Pending
    }
}

/// The future a guest waits on at an epoch tick: pending once, then ready.
/// It registers no waker: [`Supervised`] wakes the guest's task.
struct PendingOnce(bool);

impl Future for PendingOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            Poll::Pending
        }
    }
}

/// A guest's CPU time: the total, and the part spent within the last
/// [`CPU_SHARE_WINDOW`] (kept in [`CPU_SHARE_SLOTS`] slots).
#[derive(Default)]
struct CpuMeter {
    total: Duration,
    /// (start of the slot, CPU time spent in it), oldest first.
    slots: VecDeque<(Instant, Duration)>,
    in_window: Duration,
}

impl CpuMeter {
    /// Adds `spent`, a poll that started at `at`.
    fn record(&mut self, at: Instant, spent: Duration) {
        self.total += spent;
        self.in_window += spent;
        match self.slots.back_mut() {
            Some((start, used))
                if at.duration_since(*start) < CPU_SHARE_WINDOW / CPU_SHARE_SLOTS =>
            {
                *used += spent;
            }
            _ => self.slots.push_back((at, spent)),
        }
        while let Some(&(start, used)) = self.slots.front() {
            if at.duration_since(start) < CPU_SHARE_WINDOW {
                break;
            }
            self.in_window -= used;
            self.slots.pop_front();
        }
    }

    /// The limit this CPU use goes over, if any.
    fn over(&self, limits: &TimeLimits) -> Option<GuestStopped> {
        if let Some(max) = limits.cpu_time
            && self.total > max
        {
            return Some(GuestStopped::CpuTime(max));
        }
        if let Some(percent) = limits.cpu_share
            && self.in_window * 100 > CPU_SHARE_WINDOW * u32::from(percent)
        {
            return Some(GuestStopped::CpuShare(percent));
        }
        None
    }
}

/// Ticks the engine's epoch on a thread of its own (a ticker on the tokio
/// runtime would starve behind spinning guests, DESIGN §4), but only while
/// guests run: once no guest has been polled for a whole tick and none is
/// inside a poll, the thread parks until the next poll begins, so that idle
/// guests cost no wake-up at all.
struct EpochTicker {
    /// Guest polls begun (the ticker compares it between two ticks).
    polls: AtomicU64,
    /// Guests inside a poll now (running wasm, which needs ticks).
    running: AtomicUsize,
    /// The ticker is parked (or about to): the next poll unparks it.
    parked: AtomicBool,
    /// The host is gone: the thread ends.
    stopped: AtomicBool,
    thread: std::sync::OnceLock<std::thread::Thread>,
}

/// A guest inside a poll; dropped when the poll returns.
struct Running<'a>(&'a EpochTicker);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl EpochTicker {
    fn spawn(engine: &Engine) -> Arc<Self> {
        let ticker = Arc::new(Self {
            polls: AtomicU64::new(0),
            running: AtomicUsize::new(0),
            parked: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            thread: std::sync::OnceLock::new(),
        });
        let weak = engine.weak();
        let state = ticker.clone();
        let thread = std::thread::Builder::new()
            .name("wasp-epoch".into())
            .spawn(move || state.run(&weak))
            .expect("spawning the epoch thread");
        let _ = ticker.thread.set(thread.thread().clone());
        ticker
    }

    fn run(&self, weak: &wasmtime::EngineWeak) {
        let mut seen = self.polls.load(Ordering::SeqCst);
        while !self.stopped.load(Ordering::SeqCst) {
            let Some(engine) = weak.upgrade() else {
                return;
            };
            engine.increment_epoch();
            drop(engine);
            std::thread::sleep(EPOCH_TICK);
            let idle = |now| now == seen && self.running.load(Ordering::SeqCst) == 0;
            let now = self.polls.load(Ordering::SeqCst);
            if idle(now) {
                self.parked.store(true, Ordering::SeqCst);
                // A poll that began before `parked` was set is seen here.
                if idle(self.polls.load(Ordering::SeqCst)) && !self.stopped.load(Ordering::SeqCst) {
                    std::thread::park();
                }
                self.parked.store(false, Ordering::SeqCst);
            }
            seen = self.polls.load(Ordering::SeqCst);
        }
    }

    /// A guest poll begins: ticks are needed again.
    fn guest_running(&self) -> Running<'_> {
        self.running.fetch_add(1, Ordering::SeqCst);
        self.polls.fetch_add(1, Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst) {
            self.wake();
        }
        Running(self)
    }

    fn wake(&self) {
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }

    /// The host is dropped: the thread ends.
    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.wake();
    }
}
