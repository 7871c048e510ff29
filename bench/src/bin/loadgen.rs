//! The load generator: measures one echo server on a tokio current-thread
//! runtime. `pinned-bench` runs it pinned to its own core.
//!
//! `loadgen --addr ADDR --server-pid PID [--tests latency,stream,rate_64,...] [options]`
//!
//! The tests (`--tests`, run in the order given):
//!
//! - `latency`: one connection, 64-byte round trips (a tenth more first as
//!   warm-up, not counted): `rtt_p50_us`, `rtt_p99_us`;
//! - `stream`: one connection writing `--stream-bytes` in 64 KiB chunks
//!   while reading the echo concurrently, then ending its stream and
//!   expecting the server's end of stream: `stream_mb_per_s` (10^6 bytes
//!   echoed per second) and the server's CPU per 10^9 bytes,
//!   `stream_cpu_ms_per_gb`;
//! - `rate_N`: N connections are opened (50 at a time) and each does one
//!   checked round trip, then all do 64-byte ping-pong; after `--warmup-ms`
//!   the completed round trips and the server's CPU time are read, again
//!   after `--duration-ms`: `rate_N` (round trips per second),
//!   `cpu_us_per_rt_N` (server CPU per round trip), `server_busy_N`,
//!   `loadgen_busy_N` and `other_busy_N` (CPU time over the window of the
//!   server, of the load generator, and of every other process of the
//!   machine plus hypervisor steal; 1 = one core; from `/proc/PID/stat` and
//!   `/proc/stat`).
//!
//! On stdout: `begin TEST` before each test, `figure NAME VALUE` for each
//! figure once the test has succeeded, `failed TEST REASON` when it fails
//! (progress and errors also go to stderr). Every echo is compared with what
//! was sent and every wait has a time limit: a wrong, missing or late echo,
//! or a connection that fails, fails the test, which reports no figure, and
//! the load generator stops there with exit status 1.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::timeout;
use wasp_bench::{Line, Test, cpu};

/// Size of a ping-pong message.
const MESSAGE: usize = 64;
/// Size of a stream write and read.
const CHUNK: usize = 64 * 1024;
/// The stream's byte pattern repeats with this period (a prime, so that
/// shifted or lost chunks do not line up again).
const PERIOD: usize = 251;
/// Longest wait for one connect, one round trip, or the end of a stream.
const STEP_LIMIT: Duration = Duration::from_secs(10);
/// Connections opened at once.
const CONNECT_BATCH: usize = 50;

/// Command line.
#[derive(Parser)]
#[command(about = "Load generator of the pinned echo benchmark (wasp-bench)")]
struct Args {
    /// The echo server.
    #[arg(long)]
    addr: SocketAddr,
    /// The server's process id, for its CPU time.
    #[arg(long)]
    server_pid: u32,
    /// The tests to run, in order: `latency`, `stream`, `rate_N` (N
    /// connections).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "latency,stream,rate_64,rate_256,rate_1000"
    )]
    tests: Vec<Test>,
    /// Measured round trips of the latency test.
    #[arg(long, default_value_t = 20_000)]
    latency_rounds: usize,
    /// Bytes of the stream test.
    #[arg(long, default_value_t = 256 << 20)]
    stream_bytes: usize,
    /// Ping-pong before each rate window.
    #[arg(long, default_value_t = 500)]
    warmup_ms: u64,
    /// Each rate window.
    #[arg(long, default_value_t = 3000)]
    duration_ms: u64,
}

/// CPU time of the server and of this process.
struct CpuClock {
    /// The server's `/proc` name.
    server: String,
    /// Ticks per second.
    per_second: u64,
}

/// One reading of [`CpuClock`].
#[derive(Clone, Copy)]
struct CpuReading {
    /// Wall clock.
    at: Instant,
    /// Server CPU ticks.
    server: u64,
    /// This process's CPU ticks.
    own: u64,
    /// The whole machine's CPU ticks.
    machine: u64,
}

impl CpuClock {
    /// Reads both processes' CPU time now.
    fn read(&self) -> Result<CpuReading> {
        Ok(CpuReading {
            at: Instant::now(),
            server: cpu::ticks(&self.server).context("the server's CPU time (has it exited?)")?,
            own: cpu::ticks("self")?,
            machine: cpu::machine_ticks()?,
        })
    }

    /// CPU time from `a` to `b`.
    fn between(&self, a: CpuReading, b: CpuReading) -> Spent {
        let server = b.server - a.server;
        let own = b.own - a.own;
        let others = (b.machine - a.machine).saturating_sub(server + own);
        Spent {
            server: cpu::to_duration(server, self.per_second),
            own: cpu::to_duration(own, self.per_second),
            others: cpu::to_duration(others, self.per_second),
            wall: b.at - a.at,
        }
    }
}

/// CPU time spent between two readings.
struct Spent {
    /// By the server.
    server: Duration,
    /// By this process.
    own: Duration,
    /// By every other process of the machine, plus hypervisor steal
    /// (interrupts not counted).
    others: Duration,
    /// Wall time.
    wall: Duration,
}

/// Connects with a time limit; no Nagle delay on the client side.
async fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let conn = timeout(STEP_LIMIT, TcpStream::connect(addr))
        .await
        .context("connect timed out")?
        .context("connect")?;
    conn.set_nodelay(true)?;
    Ok(conn)
}

/// One 64-byte round trip carrying `seq`; fails on a short, wrong or late
/// echo.
async fn round_trip(conn: &mut TcpStream, seq: u64) -> Result<()> {
    let mut message = [0x5au8; MESSAGE];
    message[..8].copy_from_slice(&seq.to_le_bytes());
    message[MESSAGE - 8..].copy_from_slice(&(!seq).to_le_bytes());
    let mut back = [0u8; MESSAGE];
    timeout(STEP_LIMIT, async {
        conn.write_all(&message).await?;
        conn.read_exact(&mut back).await
    })
    .await
    .context("round trip timed out")?
    .context("round trip")?;
    ensure!(back == message, "the echo of message {seq} differs from it");
    Ok(())
}

/// Percentile `p` (0..=100) of sorted samples (nearest rank).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The latency test: p50 and p99 of `rounds` round trips.
async fn latency(addr: SocketAddr, rounds: usize) -> Result<(Duration, Duration)> {
    let mut conn = connect(addr).await?;
    let warmup = rounds / 10;
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..warmup + rounds {
        let start = Instant::now();
        round_trip(&mut conn, i as u64).await?;
        if i >= warmup {
            samples.push(start.elapsed());
        }
    }
    samples.sort_unstable();
    Ok((percentile(&samples, 50.0), percentile(&samples, 99.0)))
}

/// The stream test: wall time and server CPU time for echoing `bytes`.
async fn stream(addr: SocketAddr, bytes: usize, clock: &CpuClock) -> Result<(Duration, Duration)> {
    let pattern: Arc<Vec<u8>> = Arc::new((0..CHUNK + PERIOD).map(|i| (i % PERIOD) as u8).collect());
    let conn = connect(addr).await?;
    let (mut reader, mut writer) = conn.into_split();
    // Generous: 2 MB/s at the least.
    let limit = STEP_LIMIT + Duration::from_secs((bytes / 2_000_000) as u64);
    let start = clock.read()?;
    let send_pattern = Arc::clone(&pattern);
    let send = tokio::spawn(async move {
        let mut sent = 0;
        while sent < bytes {
            let n = CHUNK.min(bytes - sent);
            let from = sent % PERIOD;
            writer.write_all(&send_pattern[from..from + n]).await?;
            sent += n;
        }
        // End of stream: the server closes after echoing everything.
        writer.shutdown().await?;
        anyhow::Ok(writer)
    });
    let receive = async {
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0;
        while got < bytes {
            let n = reader.read(&mut buf).await?;
            ensure!(n > 0, "the server closed after {got} of {bytes} bytes");
            ensure!(got + n <= bytes, "the server echoed more than was sent");
            let from = got % PERIOD;
            ensure!(
                buf[..n] == pattern[from..from + n],
                "the echo differs from the stream between bytes {got} and {}",
                got + n
            );
            got += n;
        }
        let end = clock.read()?;
        ensure!(
            reader.read(&mut buf).await? == 0,
            "the server echoed more than was sent"
        );
        anyhow::Ok(end)
    };
    let end = timeout(limit, receive)
        .await
        .context("the stream test timed out")??;
    let writer = timeout(STEP_LIMIT, send)
        .await
        .context("the stream's writer did not finish")???;
    drop(writer);
    let spent = clock.between(start, end);
    Ok((spent.wall, spent.server))
}

/// Figures of one rate test.
struct Rate {
    /// Completed round trips per second.
    per_second: f64,
    /// Server CPU per round trip.
    cpu_per_rt: Duration,
    /// Server CPU time over wall time.
    server_busy: f64,
    /// This process's CPU time over wall time.
    own_busy: f64,
    /// Other processes' CPU time and steal over wall time.
    others_busy: f64,
}

/// The rate test with `connections` concurrent ping-pong connections.
async fn rate(
    addr: SocketAddr,
    connections: usize,
    warmup: Duration,
    window: Duration,
    clock: &CpuClock,
) -> Result<Rate> {
    // Open every connection, each with one checked round trip (so it has
    // been accepted and served), a batch at a time.
    let mut conns = Vec::with_capacity(connections);
    while conns.len() < connections {
        let batch = CONNECT_BATCH.min(connections - conns.len());
        let mut opening = JoinSet::new();
        for _ in 0..batch {
            opening.spawn(async move {
                let mut conn = connect(addr).await?;
                round_trip(&mut conn, 0).await?;
                anyhow::Ok(conn)
            });
        }
        while let Some(conn) = opening.join_next().await {
            conns.push(conn??);
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut clients = JoinSet::new();
    for (id, mut conn) in conns.into_iter().enumerate() {
        let stop = Arc::clone(&stop);
        let done = Arc::clone(&done);
        clients.spawn(async move {
            let mut seq = (id as u64) << 40;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                round_trip(&mut conn, seq)
                    .await
                    .with_context(|| format!("connection {id}"))?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        });
    }

    tokio::time::sleep(warmup).await;
    let (done_before, before) = (done.load(Ordering::Relaxed), clock.read()?);
    tokio::time::sleep(window).await;
    let (done_after, after) = (done.load(Ordering::Relaxed), clock.read()?);
    stop.store(true, Ordering::Relaxed);

    // Every client must end cleanly: a failure at any time fails the test.
    let all = async {
        while let Some(client) = clients.join_next().await {
            client??;
        }
        anyhow::Ok(())
    };
    timeout(STEP_LIMIT + STEP_LIMIT, all)
        .await
        .context("the clients did not stop")??;

    let round_trips = done_after - done_before;
    ensure!(round_trips > 0, "no round trip completed in the window");
    let spent = clock.between(before, after);
    let wall = spent.wall.as_secs_f64();
    Ok(Rate {
        per_second: round_trips as f64 / wall,
        cpu_per_rt: spent.server / u32::try_from(round_trips).context("too many round trips")?,
        server_busy: spent.server.as_secs_f64() / wall,
        own_busy: spent.own.as_secs_f64() / wall,
        others_busy: spent.others.as_secs_f64() / wall,
    })
}

/// Runs one test; its figures.
async fn run_test(test: Test, args: &Args, clock: &CpuClock) -> Result<Vec<(String, f64)>> {
    Ok(match test {
        Test::Latency => {
            let (p50, p99) = latency(args.addr, args.latency_rounds).await?;
            vec![
                ("rtt_p50_us".into(), p50.as_secs_f64() * 1e6),
                ("rtt_p99_us".into(), p99.as_secs_f64() * 1e6),
            ]
        }
        Test::Stream => {
            let (wall, server_cpu) = stream(args.addr, args.stream_bytes, clock).await?;
            let bytes = args.stream_bytes as f64;
            vec![
                ("stream_mb_per_s".into(), bytes / 1e6 / wall.as_secs_f64()),
                (
                    "stream_cpu_ms_per_gb".into(),
                    server_cpu.as_secs_f64() * 1e3 / (bytes / 1e9),
                ),
            ]
        }
        Test::Rate(n) => {
            let r = rate(
                args.addr,
                n,
                Duration::from_millis(args.warmup_ms),
                Duration::from_millis(args.duration_ms),
                clock,
            )
            .await?;
            // Let the server close the connections before the next test.
            tokio::time::sleep(Duration::from_millis(200)).await;
            vec![
                (format!("rate_{n}"), r.per_second),
                (
                    format!("cpu_us_per_rt_{n}"),
                    r.cpu_per_rt.as_secs_f64() * 1e6,
                ),
                (format!("server_busy_{n}"), r.server_busy),
                (format!("loadgen_busy_{n}"), r.own_busy),
                (format!("other_busy_{n}"), r.others_busy),
            ]
        }
    })
}

/// Runs the tests in order, reporting each on stdout; stops at the first
/// that fails (reported as `failed TEST REASON`), which is `Err`.
async fn measure(args: &Args, clock: &CpuClock) -> Result<()> {
    for &test in &args.tests {
        println!("{}", Line::Begin(test));
        eprintln!("loadgen: {test}");
        match run_test(test, args, clock).await {
            Ok(figures) => {
                for (name, value) in figures {
                    println!("{}", Line::Figure(name, value));
                }
            }
            Err(e) => {
                println!("{}", Line::Failed(test, format!("{e:#}")));
                return Err(e.context(format!("the test {test}")));
            }
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.latency_rounds == 0 || args.stream_bytes == 0 || args.duration_ms == 0 {
        bail!("--latency-rounds, --stream-bytes and --duration-ms must be positive");
    }
    let clock = CpuClock {
        server: args.server_pid.to_string(),
        per_second: cpu::ticks_per_second()?,
    };
    // The server must exist before anything is measured.
    clock.read()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(measure(&args, &clock))
}
