//! Running plugins: an engine set up for untrusted guests, WASI plus wasp
//! in one linker, and one store per guest with its own limits.
//!
//! A plugin is a WASI command component (it exports `wasi:cli/run`). Its
//! WASI context has no network (`wasi:sockets` denies every address): the
//! network is reachable only through `wasp:spi` and its policy.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::bindings::Command;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::{Policy, WaspCtx, WaspCtxView, WaspView};

/// Default memory ceiling of one guest (linear memories and tables).
pub const DEFAULT_MEMORY_LIMIT: usize = 64 << 20;
/// How often the epoch ticks: a guest that computes without calling the
/// host yields to the runtime at least this often.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The store data of one plugin: WASI, wasp and the limits.
pub struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    wasp: WaspCtx,
    limits: StoreLimits,
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
    /// The host process's own.
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

/// How to run one plugin.
#[derive(Clone)]
pub struct GuestOptions {
    /// Its capabilities.
    pub policy: Arc<Policy>,
    /// Its name in logs (and `argv[0]`).
    pub name: String,
    /// Its arguments after `argv[0]`.
    pub args: Vec<String>,
    /// Memory ceiling in bytes; growing beyond it fails inside the guest.
    pub memory_limit: usize,
    /// Standard output and error.
    pub stdio: Stdio,
}

impl GuestOptions {
    /// Options for a plugin called `name` under `policy`, with no arguments,
    /// the default memory limit and inherited stdio.
    pub fn new(name: impl Into<String>, policy: Arc<Policy>) -> Self {
        Self {
            policy,
            name: name.into(),
            args: Vec::new(),
            memory_limit: DEFAULT_MEMORY_LIMIT,
            stdio: Stdio::Inherit,
        }
    }
}

/// An engine and linker for running plugins; share one across guests.
pub struct PluginHost {
    engine: Engine,
    linker: Linker<GuestState>,
}

impl PluginHost {
    /// Sets up the engine (epoch interruption, a ticker thread of its own)
    /// and the linker (WASI p2 and wasp).
    pub fn new() -> wasmtime::Result<Self> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config)?;
        spawn_epoch_ticker(&engine);
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        crate::add_to_linker(&mut linker)?;
        Ok(Self { engine, linker })
    }

    /// The engine, for compiling components.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles a component from a `.wasm` file.
    pub fn load(&self, path: impl AsRef<Path>) -> wasmtime::Result<Component> {
        Component::from_file(&self.engine, path)
    }

    /// Runs `component` as a WASI command to its end and returns its exit
    /// status (0 for success). A trap is an `Err`.
    ///
    /// Poll this future on a runtime worker (spawn it, or use a
    /// current-thread runtime): the socket engine's tasks run on the
    /// runtime's workers, and a guest polled elsewhere (a multi-thread
    /// runtime's `block_on`) pays a thread wake-up for every event.
    pub async fn run(&self, component: &Component, options: GuestOptions) -> wasmtime::Result<i32> {
        let mut wasi = WasiCtxBuilder::new();
        let mut argv = vec![options.name.clone()];
        argv.extend(options.args.iter().cloned());
        wasi.args(&argv).allow_tcp(false).allow_udp(false);
        match &options.stdio {
            Stdio::Inherit => {
                wasi.inherit_stdio();
            }
            Stdio::Capture { stdout, stderr } => {
                wasi.stdout(stdout.clone()).stderr(stderr.clone());
            }
        }
        let state = GuestState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            wasp: WaspCtx::new(options.policy.clone(), options.name.as_str()),
            limits: StoreLimitsBuilder::new()
                .memory_size(options.memory_limit)
                .build(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_async_yield_and_update(1);
        let command = Command::instantiate_async(&mut store, component, &self.linker).await?;
        match command.wasi_cli_run().call_run(&mut store).await {
            Ok(Ok(())) => Ok(0),
            Ok(Err(())) => Ok(1),
            Err(e) => match e.downcast_ref::<I32Exit>() {
                Some(exit) => Ok(exit.0),
                None => Err(e),
            },
        }
    }
}

/// Ticks the engine's epoch on a thread of its own (a ticker on the tokio
/// runtime would starve behind spinning guests, DESIGN §4); the thread ends
/// when the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wasp-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}
