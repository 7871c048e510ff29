//! Embedding wasp in a Rust program.
//!
//! `cargo run -p wasp-host --example embed -- PLUGIN.wasm`
//!
//! Runs the echo plugin (`examples/rust-echo`) inside this process with a
//! policy built in code, talks to it over loopback as a client, and exits.
//! It shows the three pieces an embedder needs: a store data type holding a
//! [`WaspCtx`] (with [`WaspView`]), [`wasp_host::add_to_linker`] next to
//! WASI, and a [`Policy`] from the builder.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::p2::bindings::Command;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasp_host::{NetUse, Policy, Transport, WaspCtx, WaspCtxView, WaspView};

/// The embedder's own per-guest state.
struct MyGuest {
    wasi: WasiCtx,
    table: ResourceTable,
    wasp: WaspCtx,
}

impl WasiView for MyGuest {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WaspView for MyGuest {
    fn wasp(&mut self) -> WaspCtxView<'_> {
        WaspCtxView {
            ctx: &mut self.wasp,
            table: &mut self.table,
        }
    }
}

fn main() -> anyhow::Result<()> {
    let plugin = std::env::args()
        .nth(1)
        .context("usage: embed PLUGIN.wasm (the rust-echo plugin)")?;

    // A port for the plugin: free now, granted exactly.
    let addr: SocketAddr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?
    };
    let policy = Policy::builder()
        .allow_protocol(Transport::Tcp)
        .grant_addr(NetUse::Bind, addr)
        .grant_addr(NetUse::Listen, addr)
        .grant(NetUse::Accept, "127.0.0.1/32".parse()?, 0..=u16::MAX)
        .max_sockets(4)
        .build();

    let engine = Engine::new(&Config::new()).map_err(|e| anyhow!("{e:#}"))?;
    let mut linker: Linker<MyGuest> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| anyhow!("{e:#}"))?;
    wasp_host::add_to_linker(&mut linker).map_err(|e| anyhow!("{e:#}"))?;
    let component = Component::from_file(&engine, &plugin).map_err(|e| anyhow!("{e:#}"))?;

    let runtime = tokio::runtime::Runtime::new()?;
    let guest = runtime.spawn(async move {
        let wasi = WasiCtxBuilder::new()
            .args(&["echo", &addr.to_string(), "1"])
            .inherit_stdout()
            .inherit_stderr()
            .build();
        let state = MyGuest {
            wasi,
            table: ResourceTable::new(),
            wasp: WaspCtx::new(Arc::new(policy), "embedded-echo"),
        };
        let mut store = Store::new(&engine, state);
        let command = Command::instantiate_async(&mut store, &component, &linker).await?;
        command.wasi_cli_run().call_run(&mut store).await
    });

    // Be the plugin's client: connect (it may still be starting), echo once.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut conn = loop {
        match TcpStream::connect(addr) {
            Ok(conn) => break conn,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => bail!("the plugin never listened on {addr}: {e}"),
        }
    };
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    conn.write_all(b"hello from the embedder")?;
    let mut reply = [0u8; 23];
    conn.read_exact(&mut reply)?;
    drop(conn);
    println!(
        "embed: the plugin echoed {:?}",
        String::from_utf8_lossy(&reply)
    );

    match runtime.block_on(guest)? {
        Ok(Ok(())) => Ok(()),
        Ok(Err(())) => bail!("the plugin failed"),
        Err(trap) => bail!("the plugin trapped: {trap:?}"),
    }
}
