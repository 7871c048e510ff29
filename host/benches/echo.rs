//! The echo benchmark (a benchmark, not a test): the event-driven echo
//! plugin under wasp against a native tokio echo server and against a
//! `std::net` echo guest on stock `wasi:sockets`, on loopback, in one run,
//! reported as ratios to native. Then the per-call costs of the SPI.
//!
//! `cargo bench -p wasp-host --bench echo` (add `-- --quick` for a short
//! run, `-- --micro` for the per-call costs only)

#[path = "../../tests/host/common.rs"]
#[allow(dead_code)]
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::p2::bindings::Command;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasp_host::Policy;
use wasp_host::run::{GuestOptions, Stdio};

const SERVER_THREADS: &str = "bench-server";

#[derive(Clone, Copy, PartialEq)]
enum Server {
    Native,
    Wasp,
    StockWasi,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Native => "native tokio",
            Server::Wasp => "wasp (event-echo)",
            Server::StockWasi => "stock wasi:sockets",
        }
    }
}

/// One server's figures.
#[derive(Default, Clone)]
struct Figures {
    p50: Option<Duration>,
    p99: Option<Duration>,
    rate: Vec<(usize, Option<f64>)>,
    throughput: Option<f64>,
    cpu_per_message: Option<Duration>,
}

fn server_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(SERVER_THREADS)
        .enable_all()
        .build()
        .unwrap()
}

/// The address a server guest printed after `prefix`.
fn wait_for_address(out: &MemoryOutputPipe, prefix: &str) -> SocketAddr {
    let line = common::wait_for_line(out, prefix);
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

fn start_native(runtime: &tokio::runtime::Runtime) -> SocketAddr {
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if conn.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        addr
    })
}

fn start_wasp(runtime: &tokio::runtime::Runtime) -> SocketAddr {
    let toml =
        std::fs::read_to_string(common::root().join("examples/policies/event-echo.toml")).unwrap();
    let out = MemoryOutputPipe::new(1 << 20);
    let mut options = GuestOptions::new(
        "rust-event-echo",
        Arc::new(Policy::from_toml(&toml).unwrap()),
    );
    options.args = vec!["127.0.0.1:0".into()];
    options.stdio = Stdio::Capture {
        stdout: out.clone(),
        stderr: MemoryOutputPipe::new(1 << 20),
    };
    let component = common::component("rust-event-echo");
    runtime.spawn(async move { common::host().run(&component, options).await });
    wait_for_address(&out, "event-echo: listening on ")
}

struct StockState {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for StockState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn start_stock(runtime: &tokio::runtime::Runtime) -> SocketAddr {
    let engine = Engine::new(&Config::new()).unwrap();
    let mut linker: Linker<StockState> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    let component = Component::from_file(&engine, common::guest("std-echo")).unwrap();
    let out = MemoryOutputPipe::new(1 << 20);
    let wasi = WasiCtxBuilder::new()
        .args(&["std-echo", "127.0.0.1:0"])
        .stdout(out.clone())
        .allow_tcp(true)
        .socket_addr_check(|addr, _| Box::pin(async move { addr.ip().is_loopback() }))
        .build();
    runtime.spawn(async move {
        let mut store = Store::new(
            &engine,
            StockState {
                wasi,
                table: ResourceTable::new(),
            },
        );
        let command = Command::instantiate_async(&mut store, &component, &linker).await?;
        command.wasi_cli_run().call_run(&mut store).await
    });
    wait_for_address(&out, "std-echo: listening on ")
}

/// 64-byte round trips on one connection: p50 and p99.
async fn latency(addr: SocketAddr, rounds: usize) -> (Duration, Duration) {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.set_nodelay(true).unwrap();
    let message = [1u8; 64];
    let mut back = [0u8; 64];
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..rounds + rounds / 10 {
        let start = Instant::now();
        conn.write_all(&message).await.unwrap();
        conn.read_exact(&mut back).await.unwrap();
        if i >= rounds / 10 {
            samples.push(start.elapsed());
        }
    }
    samples.sort();
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    )
}

/// Messages per second with `connections` clients doing 64-byte round
/// trips; also the server CPU spent.
async fn rate(addr: SocketAddr, connections: usize, total: usize) -> (f64, Duration) {
    let per_connection = (total / connections).max(5);
    let cpu_before = common::cpu_time(SERVER_THREADS);
    let start = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..connections {
        clients.spawn(async move {
            let mut conn = TcpStream::connect(addr).await.unwrap();
            conn.set_nodelay(true).unwrap();
            let message = [2u8; 64];
            let mut back = [0u8; 64];
            for _ in 0..per_connection {
                conn.write_all(&message).await.unwrap();
                conn.read_exact(&mut back).await.unwrap();
            }
        });
    }
    while let Some(r) = clients.join_next().await {
        r.unwrap();
    }
    let elapsed = start.elapsed();
    let messages = (per_connection * connections) as f64;
    (
        messages / elapsed.as_secs_f64(),
        common::cpu_time(SERVER_THREADS) - cpu_before,
    )
}

/// One stream: bytes echoed per second (MiB/s).
async fn throughput(addr: SocketAddr, bytes: usize) -> f64 {
    let conn = TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = conn.into_split();
    let start = Instant::now();
    let send = tokio::spawn(async move {
        let chunk = vec![3u8; 64 * 1024];
        let mut sent = 0;
        while sent < bytes {
            writer.write_all(&chunk).await.unwrap();
            sent += chunk.len();
        }
        writer
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < bytes {
        got += reader.read(&mut buf).await.unwrap();
    }
    drop(send.await.unwrap());
    got as f64 / (1 << 20) as f64 / start.elapsed().as_secs_f64()
}

fn measure(server: Server, quick: bool) -> Figures {
    let server_rt = server_runtime();
    let addr = match server {
        Server::Native => start_native(&server_rt),
        Server::Wasp => start_wasp(&server_rt),
        Server::StockWasi => start_stock(&server_rt),
    };
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-client")
        .enable_all()
        .build()
        .unwrap();
    let scale = if quick { 10 } else { 1 };
    let mut figures = Figures::default();
    client.block_on(async {
        let (p50, p99) = latency(addr, 5_000 / scale).await;
        figures.p50 = Some(p50);
        figures.p99 = Some(p99);
        figures.throughput = Some(throughput(addr, (256 << 20) / scale).await);
        for connections in [64, 256, 1000] {
            if server == Server::StockWasi {
                // std::net on wasip2 serves one connection at a time.
                figures.rate.push((connections, None));
                continue;
            }
            let (per_second, cpu) = rate(addr, connections, 100_000 / scale).await;
            figures.rate.push((connections, Some(per_second)));
            if connections == 256 {
                let messages = ((100_000 / scale / connections).max(5) * connections) as u32;
                figures.cpu_per_message = Some(cpu / messages);
            }
        }
    });
    server_rt.shutdown_background();
    figures
}

fn ratio(value: Option<f64>, native: Option<f64>) -> String {
    match (value, native) {
        (Some(v), Some(n)) if n > 0.0 => format!("{:.2}x", v / n),
        _ => "n/a".into(),
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores")
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    if std::env::args().any(|a| a == "--micro") {
        micro(quick);
        return;
    }
    println!(
        "wasp echo benchmark — {} — loopback, 1 server thread, 1 client thread",
        machine()
    );
    // `--only-wasp`: measure wasp alone (for profiling it).
    if std::env::args().any(|a| a == "--only-wasp") {
        let f = measure(Server::Wasp, quick);
        println!("wasp: msgs/s {:?}, CPU/msg {:?}", f.rate, f.cpu_per_message);
        return;
    }
    let servers = [Server::Native, Server::Wasp, Server::StockWasi];
    let results: Vec<(Server, Figures)> = servers.iter().map(|&s| (s, measure(s, quick))).collect();
    let native = results[0].1.clone();
    let us = |d: Option<Duration>| {
        d.map_or("n/a".into(), |d| format!("{:.1} µs", d.as_secs_f64() * 1e6))
    };
    let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());

    println!();
    println!(
        "| server | 64 B RTT p50 | p99 | throughput (MiB/s) | msgs/s @64 | @256 | @1000 | server CPU/msg |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (server, f) in &results {
        let rates: Vec<String> = f
            .rate
            .iter()
            .map(|(_, r)| r.map_or("n/a".into(), |r| format!("{r:.0}")))
            .collect();
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            server.name(),
            us(f.p50),
            us(f.p99),
            f.throughput.map_or("n/a".into(), |t| format!("{t:.0}")),
            rates[0],
            rates[1],
            rates[2],
            us(f.cpu_per_message),
        );
    }
    println!();
    println!("Ratios to native (latency and CPU: lower is better; rates: higher is better):");
    println!("| server | p50 | p99 | throughput | msgs/s @64 | @256 | @1000 | CPU/msg |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (server, f) in &results[1..] {
        let rates: Vec<String> = f
            .rate
            .iter()
            .zip(&native.rate)
            .map(|((_, r), (_, n))| ratio(*r, *n))
            .collect();
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            server.name(),
            ratio(secs(f.p50), secs(native.p50)),
            ratio(secs(f.p99), secs(native.p99)),
            ratio(f.throughput, native.throughput),
            rates[0],
            rates[1],
            rates[2],
            ratio(secs(f.cpu_per_message), secs(native.cpu_per_message)),
        );
    }

    micro(quick);
}

/// The per-call costs of the SPI, timed inside a guest.
fn micro(quick: bool) {
    println!();
    println!("Per-call costs inside a wasp guest (ns):");
    // One worker thread, as for the servers above: the guest and the
    // engine tasks that post its messages share it.
    let out = MemoryOutputPipe::new(1 << 20);
    let policy = format!("{}\n[limits]\nmax-sockets = 128\n", common::LOOPBACK);
    let mut options =
        GuestOptions::new("microbench", Arc::new(Policy::from_toml(&policy).unwrap()));
    options.args = vec![if quick { "2000" } else { "20000" }.to_string()];
    options.stdio = Stdio::Capture {
        stdout: out.clone(),
        stderr: MemoryOutputPipe::new(1 << 20),
    };
    let component = common::component("microbench");
    // Spawned, not `block_on`: the guest task then runs on the worker
    // thread, beside the engine tasks, as in a server.
    let runtime = server_runtime();
    let status = runtime
        .block_on(async {
            tokio::spawn(async move { common::host().run(&component, options).await }).await
        })
        .expect("the micro-benchmark task")
        .expect("the micro-benchmark ran");
    assert_eq!(status, 0);
    for line in String::from_utf8_lossy(&out.contents()).lines() {
        println!("  {line}");
    }

    // Instantiation: the probe with an empty script (it instantiates, runs
    // an empty `main` and ends), prepared once or resolved at every run.
    let probe = common::component("probe");
    let host = common::host();
    let prepared = host.prepare(&probe).expect("the probe links");
    let runs = if quick { 50 } else { 500 };
    let options = || {
        let mut options = GuestOptions::new("probe", Arc::new(Policy::deny_all()));
        options.stdio = Stdio::Capture {
            stdout: MemoryOutputPipe::new(1 << 10),
            stderr: MemoryOutputPipe::new(1 << 10),
        };
        options
    };
    let per_run = |prepare_each_time: bool| {
        let start = Instant::now();
        runtime.block_on(async {
            for _ in 0..runs {
                let status = if prepare_each_time {
                    host.run(&probe, options()).await
                } else {
                    host.run_prepared(&prepared, options()).await
                };
                assert_eq!(status.expect("the probe runs"), 0);
            }
        });
        start.elapsed().as_nanos() / runs
    };
    println!("  instantiate-and-run-prepared-ns {}", per_run(false));
    println!("  instantiate-and-run-ns {}", per_run(true));

    // An idle instance: probes that each made one message queue and wait on
    // it; the process's resident memory grows by this much per instance
    // (the pages of the guest's linear memory it touched included).
    let instances = if quick { 50 } else { 500 };
    let prepared = Arc::new(prepared);
    let before = resident_bytes();
    let grown = runtime.block_on(async {
        let mut waiting = Vec::with_capacity(instances);
        let mut tasks = Vec::with_capacity(instances);
        for _ in 0..instances {
            let stdout = MemoryOutputPipe::new(1 << 10);
            let mut options = options();
            options.args = vec!["queue 1".into(), "get q0 600000".into()];
            options.stdio = Stdio::Capture {
                stdout: stdout.clone(),
                stderr: MemoryOutputPipe::new(1 << 10),
            };
            let prepared = prepared.clone();
            tasks.push(tokio::spawn(async move {
                host.run_prepared(&prepared, options).await
            }));
            waiting.push(stdout);
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while !waiting.iter().all(|out| !out.contents().is_empty()) {
            assert!(Instant::now() < deadline, "idle probes did not start");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let grown = resident_bytes().saturating_sub(before);
        for task in tasks {
            task.abort();
        }
        grown
    });
    println!(
        "  idle-instance-resident-bytes {}",
        grown / instances as u64
    );
}

/// The process's resident memory (`/proc/self/statm`), in bytes.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * rustix::param::page_size() as u64
}
