//! Stock wasmtime-wasi 48 running a `wasi:cli` command guest with the
//! network: the "stock wasi:sockets" server of the benchmark (its guest is
//! `bench/guests/wasi-poll-echo`).
//!
//! `echo-stock-wasi --config tuned|stock GUEST.wasm [-- GUEST-ARGS...]`
//!
//! The host is wasmtime-wasi's own: `wasmtime_wasi::p2::add_to_linker_async`
//! and a `WasiCtxBuilder` with `inherit_network()`, `allow_tcp(true)`,
//! `allow_ip_name_lookup(false)`, `inherit_stdout()` and `inherit_stderr()`;
//! nothing of wasp. Two configurations:
//!
//! - `tuned`: a tokio current-thread runtime (as wasp's CLI uses) running
//!   the guest inside `tokio::task::unconstrained`, so tokio's cooperative
//!   budget never makes a ready socket look unready;
//! - `stock`: what `#[tokio::main]` gives: a default multi-thread runtime
//!   (one worker per core it may use, so one when pinned), the guest on
//!   `block_on`, with tokio's cooperative budget (under which the guest
//!   stalls once more than about 128 of its pollables are ready at once;
//!   `bench/README.md` explains why).
//!
//! Exits with the guest's status.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::p2::bindings::Command;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// How the guest is run.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum HostConfig {
    /// Current-thread runtime, the guest unconstrained.
    Tuned,
    /// Default multi-thread runtime, the guest on `block_on`.
    Stock,
}

/// Command line.
#[derive(Parser)]
#[command(about = "Stock wasmtime-wasi 48 running a wasi:sockets guest (wasp-bench)")]
struct Args {
    /// Runtime configuration.
    #[arg(long, value_enum)]
    config: HostConfig,
    /// The guest component (a `wasi:cli/command`).
    guest: PathBuf,
    /// Arguments of the guest (after its name).
    #[arg(last = true)]
    guest_args: Vec<String>,
}

/// The store's data: WASI and its resource table, nothing else.
struct State {
    /// The WASI context.
    wasi: WasiCtx,
    /// Resources of the guest.
    table: ResourceTable,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Instantiates the guest and runs its `wasi:cli/run.run`; the guest's
/// exit status.
async fn run(
    engine: Engine,
    component: Component,
    linker: Linker<State>,
    argv: Vec<String>,
) -> Result<ExitCode> {
    let wasi = WasiCtxBuilder::new()
        .args(&argv)
        .inherit_stdout()
        .inherit_stderr()
        .inherit_network()
        // TCP is off by default (wasmtime-wasi 48); `inherit_network` only
        // sets the address check.
        .allow_tcp(true)
        .allow_ip_name_lookup(false)
        .build();
    let mut store = Store::new(
        &engine,
        State {
            wasi,
            table: ResourceTable::new(),
        },
    );
    let command = Command::instantiate_async(&mut store, &component, &linker)
        .await
        .map_err(anyhow::Error::from)
        .context("instantiating the guest")?;
    let outcome = command.wasi_cli_run().call_run(&mut store).await;
    match outcome {
        Ok(Ok(())) => Ok(ExitCode::SUCCESS),
        Ok(Err(())) => Ok(ExitCode::FAILURE),
        Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            Some(exit) => Ok(ExitCode::from(u8::try_from(exit.0).unwrap_or(1))),
            None => Err(anyhow::Error::from(e)).context("the guest trapped"),
        },
    }
}

fn main() -> Result<ExitCode> {
    let args = Args::parse();
    let engine = Engine::new(&Config::new())?;
    let component = Component::from_file(&engine, &args.guest)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("loading {}", args.guest.display()))?;
    let mut linker: Linker<State> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    let name = args
        .guest
        .file_stem()
        .map_or_else(|| "guest".into(), |s| s.to_string_lossy().into_owned());
    let argv: Vec<String> = std::iter::once(name).chain(args.guest_args).collect();
    let guest = run(engine, component, linker, argv);
    match args.config {
        HostConfig::Tuned => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(tokio::task::unconstrained(guest)),
        HostConfig::Stock => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(guest),
    }
}
