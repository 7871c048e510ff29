//! The driver of the pinned echo benchmark: every server is its own process
//! pinned to one core (`taskset -c 0`), the load generator (`loadgen`) is
//! pinned to another (`taskset -c 1`), on loopback.
//!
//! `cargo build --release -p wasp-host -p wasp-bench && target/release/pinned-bench [--quick] [--write]`
//!
//! It builds what it runs (release builds of wasp-host and wasp-bench, and
//! of the guests rust-event-echo and wasi-poll-echo for wasm32-wasip2;
//! `--no-build` skips that), then runs R repetitions (`--reps`, default 5;
//! `--quick`: one short repetition). Each repetition measures every server
//! back to back, in an order rotated by one from the previous repetition,
//! each server freshly started. It prints a markdown report: min, median
//! and max of each figure over the repetitions, and the median of the
//! per-repetition ratios to native tokio on a current-thread runtime;
//! `--write` also puts the report into `BENCHMARKS.md`, between
//! `<!-- pinned-bench:start -->` and `<!-- pinned-bench:end -->`.
//!
//! Every process it starts is killed by its PID and reaped when it is no
//! longer needed, also when the run fails; every wait has a time limit.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use wasp_bench::{Line, Test, listening_address};

/// Start marker of the section of BENCHMARKS.md this driver owns.
const START_MARKER: &str = "<!-- pinned-bench:start -->";
/// End marker of that section.
const END_MARKER: &str = "<!-- pinned-bench:end -->";
/// Concurrent connection counts of the rate tests.
const CONNECTIONS: [usize; 3] = [64, 256, 1000];
/// The connection count at which CPU per round trip is reported.
const CPU_AT: usize = 256;
/// Other work (other processes' CPU plus hypervisor steal, in cores) during a
/// rate window above which the report says the run was disturbed.
const OTHERS_LIMIT: f64 = 0.05;
/// Longest a server may take to say it listens (wasp and the stock host
/// compile the guest with Cranelift on one core first).
const START_LIMIT: Duration = Duration::from_secs(120);
/// Longest one cargo build may take.
const BUILD_LIMIT: Duration = Duration::from_secs(60 * 60);
/// Longest a small helper command (git, lscpu, date) may take.
const TOOL_LIMIT: Duration = Duration::from_secs(30);
/// Longest a killed process may take to be reaped.
const REAP_LIMIT: Duration = Duration::from_secs(10);
/// Most stderr kept of a process, to show when it fails.
const STDERR_KEEP: usize = 16 * 1024;

/// Command line.
#[derive(Parser)]
#[command(about = "Pinned multi-process echo benchmark: native tokio, wasp and stock wasi:sockets")]
struct Args {
    /// Repetitions; each measures every server.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// One short repetition (shorter tests), to check that everything works.
    #[arg(long)]
    quick: bool,
    /// Also write the report into BENCHMARKS.md (between its pinned-bench
    /// markers, added after the title if missing).
    #[arg(long)]
    write: bool,
    /// The file `--write` updates [default: BENCHMARKS.md of the workspace].
    #[arg(long)]
    benchmarks_file: Option<PathBuf>,
    /// Use the built artifacts as they are, build nothing.
    #[arg(long)]
    no_build: bool,
    /// The core the servers are pinned to.
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
    /// The core the load generator is pinned to.
    #[arg(long, default_value_t = 1)]
    client_cpu: usize,
    /// Only these servers (keys: native-ct, native-mt, wasp, stock-tuned,
    /// stock); native-ct, the baseline, is always measured.
    #[arg(long, value_delimiter = ',')]
    servers: Vec<String>,
    /// Also measure another build of the `wasp` binary (key
    /// `wasp-compare`), running the same plugin in the same repetitions: a
    /// change's before and after in one run.
    #[arg(long)]
    compare_wasp: Option<PathBuf>,
}

/// Sizes of the tests.
struct Plan {
    /// Repetitions.
    reps: usize,
    /// Measured round trips of the latency test.
    latency_rounds: usize,
    /// Bytes of the stream test.
    stream_bytes: usize,
    /// Warm-up before each rate window.
    warmup_ms: u64,
    /// Each rate window.
    duration_ms: u64,
}

impl Plan {
    /// The plan the options ask for.
    fn new(args: &Args) -> Result<Self> {
        ensure!(args.reps > 0, "--reps must be at least 1");
        Ok(if args.quick {
            Plan {
                reps: 1,
                latency_rounds: 2_000,
                stream_bytes: 32 << 20,
                warmup_ms: 200,
                duration_ms: 1_000,
            }
        } else {
            Plan {
                reps: args.reps,
                latency_rounds: 20_000,
                stream_bytes: 256 << 20,
                warmup_ms: 500,
                duration_ms: 3_000,
            }
        })
    }

    /// A generous upper bound of one load-generator run of `tests`.
    fn loadgen_limit(&self, tests: &[Test]) -> Duration {
        let one = |test: &Test| match *test {
            // Up to 5 ms a round trip on average.
            Test::Latency => Duration::from_millis(self.latency_rounds as u64 * 11 / 10 * 5),
            Test::Stream => Duration::from_secs(15 + (self.stream_bytes / 2_000_000) as u64),
            Test::Rate(n) => {
                Duration::from_millis(self.warmup_ms + self.duration_ms)
                    + Duration::from_secs(30 + 2 * (n / 50) as u64)
            }
        };
        Duration::from_secs(30) + tests.iter().map(one).sum::<Duration>()
    }
}

/// Every test, in the order they run against a server.
fn all_tests() -> Vec<Test> {
    let mut tests = vec![Test::Latency, Test::Stream];
    tests.extend(CONNECTIONS.iter().map(|&n| Test::Rate(n)));
    tests
}

/// Where things are.
struct Paths {
    /// The workspace.
    root: PathBuf,
    /// Its cargo target directory.
    target: PathBuf,
}

impl Paths {
    /// The workspace this driver was built from.
    fn new() -> Result<Self> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("the workspace of wasp-bench")?
            .to_path_buf();
        let target = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => root.join(dir),
            None => root.join("target"),
        };
        Ok(Paths { root, target })
    }

    /// A native release binary.
    fn binary(&self, name: &str) -> PathBuf {
        self.target.join("release").join(name)
    }

    /// A wasm32-wasip2 release guest.
    fn guest(&self, name: &str) -> PathBuf {
        self.target
            .join("wasm32-wasip2/release")
            .join(format!("{name}.wasm"))
    }
}

/// One server under test.
struct Server {
    /// Short name for `--servers`.
    key: &'static str,
    /// Name in the report.
    label: &'static str,
    /// The program.
    program: PathBuf,
    /// Its arguments.
    args: Vec<String>,
}

/// Every server, the baseline first.
fn all_servers(paths: &Paths) -> Vec<Server> {
    let native = paths.binary("echo-native");
    let stock = paths.binary("echo-stock-wasi");
    let poll_echo = paths.guest("wasi-poll-echo").display().to_string();
    let strings = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    vec![
        Server {
            key: "native-ct",
            label: "native tokio, current-thread",
            program: native.clone(),
            args: strings(&["--runtime", "current-thread"]),
        },
        Server {
            key: "native-mt",
            label: "native tokio, multi-thread (1 worker)",
            program: native,
            args: strings(&["--runtime", "multi-thread"]),
        },
        Server {
            key: "wasp",
            label: "wasp (event-echo)",
            program: paths.binary("wasp"),
            args: vec![
                "run".into(),
                paths.guest("rust-event-echo").display().to_string(),
                "--policy".into(),
                paths
                    .root
                    .join("examples/policies/event-echo.toml")
                    .display()
                    .to_string(),
                "--".into(),
                "127.0.0.1:0".into(),
            ],
        },
        Server {
            key: "stock-tuned",
            label: "stock wasi:sockets poll loop, current-thread, unconstrained",
            program: stock.clone(),
            args: vec![
                "--config".into(),
                "tuned".into(),
                poll_echo.clone(),
                "--".into(),
                "127.0.0.1:0".into(),
            ],
        },
        Server {
            key: "stock",
            label: "stock wasi:sockets poll loop, stock settings",
            program: stock,
            args: vec![
                "--config".into(),
                "stock".into(),
                poll_echo,
                "--".into(),
                "127.0.0.1:0".into(),
            ],
        },
    ]
}

/// A process this driver started: killed by its PID and reaped when
/// dropped (a no-op once it has been reaped).
struct Process {
    /// What it is, for messages.
    name: String,
    /// The child.
    child: Child,
    /// Its stdout, line by line (closed when it exits).
    stdout: Option<Receiver<String>>,
    /// The start of its stderr.
    stderr: Arc<Mutex<String>>,
}

impl Process {
    /// Starts `program` with `args` from `dir`, pinned to `cpu` with
    /// `taskset` (which execs the program, so the child's PID is the
    /// program's). Its stdout is read line by line, its stderr kept.
    fn start_pinned(
        name: &str,
        cpu: usize,
        program: &Path,
        args: &[String],
        dir: &Path,
    ) -> Result<Self> {
        ensure!(
            program.exists(),
            "{} is missing (build it, or run without --no-build)",
            program.display()
        );
        let mut command = Command::new("taskset");
        command
            .arg("-c")
            .arg(cpu.to_string())
            .arg(program)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {name} with taskset"))?;
        let stdout = child.stdout.take().context("stdout pipe")?;
        let stderr = child.stderr.take().context("stderr pipe")?;
        let (lines_tx, lines_rx) = mpsc::channel();
        // The readers end when the process's pipes close (when it exits).
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                // Keep draining even when nobody listens any more.
                let _ = lines_tx.send(line);
            }
        });
        let kept = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&kept);
        thread::spawn(move || {
            let mut stderr = stderr;
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    return;
                }
                if let Ok(mut kept) = sink.lock()
                    && kept.len() < STDERR_KEEP
                {
                    kept.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        Ok(Process {
            name: name.to_string(),
            child,
            stdout: Some(lines_rx),
            stderr: kept,
        })
    }

    /// The process id.
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it wrote on stderr (the start of it), for an error message.
    fn stderr_text(&self) -> String {
        let text = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
        if text.trim().is_empty() {
            "(nothing on stderr)".into()
        } else {
            format!("stderr:\n{}", text.trim_end())
        }
    }

    /// Waits for its "listening on ADDR" line.
    fn wait_listening(&mut self, limit: Duration) -> Result<SocketAddr> {
        let deadline = Instant::now() + limit;
        let lines = self.stdout.as_ref().context("stdout already consumed")?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = listening_address(&line) {
                        return Ok(addr);
                    }
                }
                Err(RecvTimeoutError::Timeout) => bail!(
                    "{} did not say it listens within {limit:?}; {}",
                    self.name,
                    self.stderr_text()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.wait(REAP_LIMIT)?;
                    bail!(
                        "{} exited ({status}) before it listened; {}",
                        self.name,
                        self.stderr_text()
                    )
                }
            }
        }
    }

    /// All its stdout lines until it closes, then its exit status; killed
    /// when that takes longer than `limit`.
    fn collect(&mut self, limit: Duration) -> Result<(Vec<String>, ExitStatus)> {
        let deadline = Instant::now() + limit;
        let lines = self.stdout.take().context("stdout already consumed")?;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => out.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    self.kill();
                    bail!(
                        "{} did not finish within {limit:?}; {}",
                        self.name,
                        self.stderr_text()
                    )
                }
            }
        }
        let status = self.wait(deadline.saturating_duration_since(Instant::now()) + REAP_LIMIT)?;
        Ok((out, status))
    }

    /// Its exit status, waiting at most `limit` (then it is killed).
    fn wait(&mut self, limit: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                self.kill();
                bail!("{} did not exit within {limit:?}", self.name);
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether it is still running.
    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its exit status if it has exited.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Kills it (SIGKILL to its PID) unless it has exited, and reaps it.
    fn kill(&mut self) {
        if !self.running() {
            return;
        }
        let _ = self.child.kill();
        let deadline = Instant::now() + REAP_LIMIT;
        while Instant::now() < deadline {
            if !self.running() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        eprintln!(
            "pinned-bench: warning: {} (pid {}) still there {REAP_LIMIT:?} after SIGKILL",
            self.name,
            self.pid()
        );
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs a helper command, its stdout as text; failing on a non-zero exit
/// or after `limit`.
fn run_tool(program: &str, args: &[&str], dir: &Path, limit: Duration) -> Result<String> {
    let child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let (tx, rx) = mpsc::channel();
    let mut process = Process {
        name: program.to_string(),
        child,
        stdout: Some(rx),
        stderr: Arc::new(Mutex::new(String::new())),
    };
    let mut stdout = process.child.stdout.take().context("stdout pipe")?;
    thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    let (text, status) = process.collect(limit)?;
    ensure!(status.success(), "{program} {args:?} failed: {status}");
    Ok(text.concat())
}

/// Runs one cargo build, its output on our stderr, within [`BUILD_LIMIT`].
fn cargo_build(paths: &Paths, args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("pinned-bench: {cargo} {}", args.join(" "));
    let child = Command::new(&cargo)
        .args(args)
        .current_dir(&paths.root)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .spawn()
        .with_context(|| format!("starting {cargo}"))?;
    let mut process = Process {
        name: format!("cargo {}", args.join(" ")),
        child,
        stdout: None,
        stderr: Arc::new(Mutex::new(String::new())),
    };
    let status = process.wait(BUILD_LIMIT)?;
    ensure!(status.success(), "{} failed: {status}", process.name);
    Ok(())
}

/// Builds everything the benchmark runs.
fn build(paths: &Paths) -> Result<()> {
    // wasp-host and wasp-bench together, so that their shared dependencies
    // (wasmtime among them) are built once, with the same features.
    cargo_build(
        paths,
        &["build", "--release", "-p", "wasp-host", "-p", "wasp-bench"],
    )?;
    for guest in ["rust-event-echo", "wasi-poll-echo"] {
        cargo_build(
            paths,
            &[
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "-p",
                guest,
            ],
        )?;
    }
    Ok(())
}

/// One server's results in one repetition.
#[derive(Default)]
struct Measurement {
    /// Figures by the load generator's names.
    figures: BTreeMap<String, f64>,
    /// The tests that failed, and why (they have no figures).
    failed: BTreeMap<Test, String>,
}

/// Starts `server` and waits until it listens; the process and its address.
fn start_server(server: &Server, paths: &Paths, args: &Args) -> Result<(Process, SocketAddr)> {
    let mut process = Process::start_pinned(
        server.label,
        args.server_cpu,
        &server.program,
        &server.args,
        &paths.root,
    )?;
    let addr = process.wait_listening(START_LIMIT)?;
    let pid = process.pid();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    ensure!(
        comm.trim() != "taskset",
        "pid {pid} is taskset, not the server: its CPU time would be wrong"
    );
    Ok((process, addr))
}

/// Measures `server` with every test. A test that fails is recorded with
/// its reason and without figures; the server is then restarted for the
/// tests after it (a server that failed once may be wedged). Anything else
/// going wrong (a server that does not start, a load generator that
/// crashes or reports nonsense) is an error.
fn measure(server: &Server, plan: &Plan, paths: &Paths, args: &Args) -> Result<Measurement> {
    let mut result = Measurement::default();
    let mut remaining = all_tests();
    while !remaining.is_empty() {
        let (mut process, addr) = start_server(server, paths, args)?;
        let tests: Vec<String> = remaining.iter().map(Test::to_string).collect();
        let loadgen_args = vec![
            "--addr".to_string(),
            addr.to_string(),
            "--server-pid".into(),
            process.pid().to_string(),
            "--tests".into(),
            tests.join(","),
            "--latency-rounds".into(),
            plan.latency_rounds.to_string(),
            "--stream-bytes".into(),
            plan.stream_bytes.to_string(),
            "--warmup-ms".into(),
            plan.warmup_ms.to_string(),
            "--duration-ms".into(),
            plan.duration_ms.to_string(),
        ];
        let mut loadgen = Process::start_pinned(
            "loadgen",
            args.client_cpu,
            &paths.binary("loadgen"),
            &loadgen_args,
            &paths.root,
        )?;
        let (lines, status) = loadgen.collect(plan.loadgen_limit(&remaining))?;
        let mut failed = None;
        for line in &lines {
            match Line::parse(line)? {
                Some(Line::Figure(name, value)) => {
                    result.figures.insert(name, value);
                }
                Some(Line::Failed(test, reason)) => failed = Some((test, reason)),
                Some(Line::Begin(_)) | None => {}
            }
        }
        let server_exit = process.exited();
        ensure!(
            failed.is_some() || status.success(),
            "loadgen against {} failed ({status}) without reporting a failed test; {}",
            server.label,
            loadgen.stderr_text()
        );
        // The tests that completed must have all their figures.
        let completed = match &failed {
            Some((test, _)) => remaining
                .iter()
                .position(|t| t == test)
                .context("loadgen failed a test it was not given")?,
            None => remaining.len(),
        };
        for test in &remaining[..completed] {
            for figure in test.figures() {
                ensure!(
                    result.figures.contains_key(&figure),
                    "loadgen ({status}) reported no {figure} for {}; {}",
                    server.label,
                    loadgen.stderr_text()
                );
            }
        }
        match failed {
            None => {
                if let Some(exit) = server_exit {
                    bail!(
                        "{} exited ({exit}) during the measurement; {}",
                        server.label,
                        process.stderr_text()
                    );
                }
                remaining.clear();
            }
            Some((test, mut reason)) => {
                ensure!(
                    !status.success(),
                    "loadgen reported {test} failed but exited successfully"
                );
                if let Some(exit) = server_exit {
                    reason.push_str(&format!(
                        " (the server exited: {exit}; {})",
                        process.stderr_text()
                    ));
                }
                eprintln!("pinned-bench: {}: {test} FAILED: {reason}", server.label);
                result.failed.insert(test, reason);
                remaining.drain(..=completed);
            }
        }
        process.kill();
    }
    Ok(result)
}

/// Median of values (the mean of the middle two for an even count).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Min, median, max.
fn spread(values: &[f64]) -> (f64, f64, f64) {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (min, median(values), max)
}

/// A column of the report.
struct Column {
    /// The load generator's figure.
    figure: String,
    /// Table header.
    header: String,
    /// Decimal places of the value.
    decimals: usize,
    /// Shown in the ratio table too.
    ratio: bool,
}

/// The report's columns.
fn columns() -> Vec<Column> {
    let column = |figure: String, header: String, decimals: usize, ratio: bool| Column {
        figure,
        header,
        decimals,
        ratio,
    };
    let mut columns: Vec<Column> = CONNECTIONS
        .iter()
        .map(|n| column(format!("rate_{n}"), format!("msgs/s @{n}"), 0, true))
        .collect();
    columns.push(column(
        format!("cpu_us_per_rt_{CPU_AT}"),
        format!("server CPU/RT @{CPU_AT} (µs)"),
        2,
        true,
    ));
    columns.push(column(
        format!("server_busy_{CPU_AT}"),
        format!("server busy @{CPU_AT}"),
        2,
        false,
    ));
    columns.push(column(
        format!("loadgen_busy_{CPU_AT}"),
        format!("loadgen busy @{CPU_AT}"),
        2,
        false,
    ));
    columns.push(column("rtt_p50_us".into(), "RTT p50 (µs)".into(), 1, true));
    columns.push(column("rtt_p99_us".into(), "RTT p99 (µs)".into(), 1, true));
    columns.push(column(
        "stream_mb_per_s".into(),
        "stream (MB/s)".into(),
        0,
        true,
    ));
    columns.push(column(
        "stream_cpu_ms_per_gb".into(),
        "server CPU/GB (ms)".into(),
        0,
        true,
    ));
    columns
}

/// What the report says about the run.
struct RunFacts {
    /// CPU model and count.
    machine: String,
    /// Commit (and whether the work tree differs).
    commit: String,
    /// When.
    date: String,
}

/// Facts about the machine, the commit and the date.
fn run_context(paths: &Paths) -> Result<RunFacts> {
    let lscpu = run_tool("lscpu", &[], &paths.root, TOOL_LIMIT)?;
    let field = |name: &str| {
        lscpu
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    };
    let mut machine = format!(
        "{}, {} CPUs",
        field("Model name").unwrap_or_else(|| "unknown CPU".into()),
        field("CPU(s)").unwrap_or_else(|| "?".into())
    );
    if let Some(hypervisor) = field("Hypervisor vendor") {
        machine.push_str(&format!(" ({hypervisor} VM)"));
    }
    let git = |args: &[&str]| run_tool("git", args, &paths.root, TOOL_LIMIT);
    let mut commit = git(&["rev-parse", "--short", "HEAD"])?.trim().to_string();
    if !git(&["status", "--porcelain", "--untracked-files=no"])?
        .trim()
        .is_empty()
    {
        commit.push_str(" + uncommitted changes");
    }
    let date = run_tool(
        "date",
        &["-u", "+%Y-%m-%d %H:%M UTC"],
        &paths.root,
        TOOL_LIMIT,
    )?
    .trim()
    .to_string();
    Ok(RunFacts {
        machine,
        commit,
        date,
    })
}

/// A value with `decimals` places.
fn number(value: f64, decimals: usize) -> String {
    format!("{value:.decimals$}")
}

/// In how many repetitions the test of `figure` failed for server `s`.
fn failed_reps(results: &[Vec<Measurement>], s: usize, figure: &str) -> usize {
    let Some(test) = Test::of_figure(figure) else {
        return 0;
    };
    results
        .iter()
        .filter(|rep| rep[s].failed.contains_key(&test))
        .count()
}

/// The cell of a figure whose test failed.
fn failed_cell(failures: usize, reps: usize) -> String {
    if reps == 1 {
        "FAILED".into()
    } else {
        format!("FAILED in {failures} of {reps}")
    }
}

/// The markdown report (with its markers).
fn report(
    servers: &[&Server],
    results: &[Vec<Measurement>],
    plan: &Plan,
    args: &Args,
    facts: &RunFacts,
) -> String {
    let columns = columns();
    let reps = results.len();
    let mut md = String::new();
    let mut line = |s: &str| {
        md.push_str(s);
        md.push('\n');
    };
    line(START_MARKER);
    line("## Pinned processes: server on one core, load generator on the other");
    line("");
    line(&format!(
        "`cargo build --release -p wasp-host -p wasp-bench && target/release/pinned-bench{}` \
         (`bench/`, see `bench/README.md`). {}, commit {}, {}.",
        if args.quick { " --quick" } else { "" },
        facts.date,
        facts.commit,
        facts.machine
    ));
    line("");
    line(&format!(
        "Each server is its own process pinned with `taskset -c {}`, the load generator \
         (`loadgen`, tokio current-thread) is pinned with `taskset -c {}`; loopback \
         127.0.0.1. {reps} repetition{}{}; per server and repetition, freshly started: \
         {} one-connection 64 B round trips (p50, p99; a tenth more first, unmeasured), \
         one connection echoing {} MiB (written and read concurrently; MB = 10^6 bytes \
         echoed), then 64 B ping-pong on 64, 256 and 1,000 connections (all opened and \
         each checked with one round trip first), round trips counted over {:.1} s after \
         {:.1} s of warm-up. Server CPU is the server process's utime + stime \
         (`/proc/PID/stat`, all threads) over the measured window; \"busy\" is CPU time \
         over wall time (1.00 = a whole core; a load generator near 1.00 means the rate \
         measures it, not the server). Every echo is checked: a test with a failed round \
         trip gives no figure and is listed below the tables.",
        args.server_cpu,
        args.client_cpu,
        if reps == 1 { "" } else { "s" },
        if reps > 1 {
            ", each measuring every server back to back (order rotated by one per repetition)"
        } else {
            ""
        },
        plan.latency_rounds,
        plan.stream_bytes >> 20,
        plan.duration_ms as f64 / 1000.0,
        plan.warmup_ms as f64 / 1000.0,
    ));
    line("");
    line(
        "Servers: native tokio echo (a task per connection, 64 KiB reads, `write_all`) on a \
          current-thread runtime (the baseline) and on a multi-thread runtime with one worker; \
          `wasp run` of `examples/rust-event-echo` (WSPAsyncSelect, one message queue); \
          `bench/guests/wasi-poll-echo` (one `wasi:io/poll.poll` loop over every socket) under \
          stock wasmtime-wasi 48 (`bench/src/bin/echo-stock-wasi.rs`), tuned (current-thread \
          runtime, guest in `tokio::task::unconstrained`) and with stock settings \
          (`#[tokio::main]`'s multi-thread runtime, guest on `block_on`).",
    );
    line("");
    line(&if reps > 1 {
        format!("Figures, median (min – max) over {reps} repetitions:")
    } else {
        "Figures (one repetition):".to_string()
    });
    line("");
    let header: Vec<&str> = columns.iter().map(|c| c.header.as_str()).collect();
    line(&format!("| server | {} |", header.join(" | ")));
    line(&format!("| --- |{}", " --- |".repeat(columns.len())));
    for (s, server) in servers.iter().enumerate() {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| {
                let failures = failed_reps(results, s, &c.figure);
                if failures > 0 {
                    return failed_cell(failures, reps);
                }
                let values: Vec<f64> = results
                    .iter()
                    .map(|rep| rep[s].figures.get(&c.figure).copied().unwrap_or(f64::NAN))
                    .collect();
                let (min, med, max) = spread(&values);
                if reps > 1 {
                    format!(
                        "{} ({} – {})",
                        number(med, c.decimals),
                        number(min, c.decimals),
                        number(max, c.decimals)
                    )
                } else {
                    number(med, c.decimals)
                }
            })
            .collect();
        line(&format!("| {} | {} |", server.label, cells.join(" | ")));
    }
    let others: Vec<f64> = results
        .iter()
        .flatten()
        .flat_map(|m| {
            CONNECTIONS
                .iter()
                .filter_map(|n| m.figures.get(&format!("other_busy_{n}")).copied())
        })
        .collect();
    if !others.is_empty() {
        let (_, med, max) = spread(&others);
        line("");
        line(&format!(
            "Other work during the rate windows (CPU of all other processes plus hypervisor \
             steal: `/proc/stat` less server and load generator): median {med:.2}, max \
             {max:.2} cores{}.",
            if max > OTHERS_LIMIT {
                " — other work on the machine disturbed this run"
            } else {
                ""
            }
        ));
    }
    line("");
    line(&if reps > 1 {
        format!(
            "Ratios to {}: the median of the {reps} per-repetition ratios, with their \
             min – max (msgs/s, MB/s: higher is better; latency and CPU: lower is better):",
            servers[0].label
        )
    } else {
        format!(
            "Ratios to {} (msgs/s, MB/s: higher is better; latency and CPU: lower is better):",
            servers[0].label
        )
    });
    line("");
    let ratio_columns: Vec<&Column> = columns.iter().filter(|c| c.ratio).collect();
    let header: Vec<&str> = ratio_columns.iter().map(|c| c.header.as_str()).collect();
    line(&format!("| server | {} |", header.join(" | ")));
    line(&format!("| --- |{}", " --- |".repeat(ratio_columns.len())));
    for (s, server) in servers.iter().enumerate().skip(1) {
        let cells: Vec<String> = ratio_columns
            .iter()
            .map(|c| {
                if failed_reps(results, s, &c.figure) + failed_reps(results, 0, &c.figure) > 0 {
                    return "n/a".to_string();
                }
                let ratios: Vec<f64> = results
                    .iter()
                    .map(|rep| {
                        let get = |i: usize| rep[i].figures.get(&c.figure).copied();
                        match (get(s), get(0)) {
                            (Some(v), Some(base)) => v / base,
                            _ => f64::NAN,
                        }
                    })
                    .collect();
                let (min, med, max) = spread(&ratios);
                if reps > 1 {
                    format!("{med:.2}x ({min:.2} – {max:.2})")
                } else {
                    format!("{med:.2}x")
                }
            })
            .collect();
        line(&format!("| {} | {} |", server.label, cells.join(" | ")));
    }
    let mut failures = Vec::new();
    for (r, rep) in results.iter().enumerate() {
        for (s, server) in servers.iter().enumerate() {
            for (test, reason) in &rep[s].failed {
                let reason: String = reason.chars().take(300).collect();
                failures.push(format!(
                    "- {}, test {test}, repetition {}: {reason}",
                    server.label,
                    r + 1
                ));
            }
        }
    }
    if !failures.is_empty() {
        line("");
        line(
            "FAILED measurements (a test that fails gives no figure; the server is restarted \
             for the tests after it):",
        );
        line("");
        for failure in &failures {
            line(failure);
        }
    }
    line(END_MARKER);
    md
}

/// `text` with the section between the markers replaced by `section`
/// (which carries the markers), or `section` inserted after the title.
fn replace_section(text: &str, section: &str) -> Result<String> {
    let section = section.trim_end();
    match (text.find(START_MARKER), text.find(END_MARKER)) {
        (Some(start), Some(end)) if start < end => Ok(format!(
            "{}{}{}",
            &text[..start],
            section,
            &text[end + END_MARKER.len()..]
        )),
        (None, None) => {
            // After the title (the first `# ` line), or at the top.
            let mut offset = 0;
            for line in text.split_inclusive('\n') {
                offset += line.len();
                if line.starts_with("# ") {
                    let (head, rest) = text.split_at(offset);
                    let head = if head.ends_with('\n') {
                        head.to_string()
                    } else {
                        format!("{head}\n")
                    };
                    return Ok(format!(
                        "{head}\n{section}\n\n{}",
                        rest.trim_start_matches('\n')
                    ));
                }
            }
            Ok(format!("{section}\n\n{text}"))
        }
        _ => {
            bail!("the file has only one of {START_MARKER} and {END_MARKER}, or in the wrong order")
        }
    }
}

/// One repetition's progress line for one server.
fn progress(rep: usize, reps: usize, server: &Server, m: &Measurement) -> String {
    let get = |figure: &str, decimals: usize| {
        m.figures
            .get(figure)
            .map_or_else(|| "FAILED".to_string(), |v| number(*v, decimals))
    };
    format!(
        "pinned-bench: [{}/{reps}] {}: {} / {} / {} msgs/s @64/256/1000, {} µs CPU/RT @256, \
         p50 {} µs, p99 {} µs, {} MB/s; other work {} cores @256",
        rep + 1,
        server.label,
        get("rate_64", 0),
        get("rate_256", 0),
        get("rate_1000", 0),
        get("cpu_us_per_rt_256", 2),
        get("rtt_p50_us", 1),
        get("rtt_p99_us", 1),
        get("stream_mb_per_s", 0),
        get("other_busy_256", 2),
    )
}

fn main() -> Result<ExitCode> {
    let args = Args::parse();
    let plan = Plan::new(&args)?;
    let paths = Paths::new()?;
    ensure!(
        args.server_cpu != args.client_cpu,
        "the server and the load generator need different cores"
    );
    let mut every = all_servers(&paths);
    if let Some(binary) = &args.compare_wasp {
        let wasp = every
            .iter()
            .find(|s| s.key == "wasp")
            .context("the wasp server")?;
        let label = format!("wasp (event-echo), {}", binary.display());
        every.push(Server {
            key: "wasp-compare",
            // One label for the life of the driver.
            label: Box::leak(label.into_boxed_str()),
            program: binary.clone(),
            args: wasp.args.clone(),
        });
    }
    for key in &args.servers {
        ensure!(
            every.iter().any(|s| s.key == key),
            "unknown server {key:?}; the servers are {}",
            every.iter().map(|s| s.key).collect::<Vec<_>>().join(", ")
        );
    }
    let servers: Vec<&Server> = every
        .iter()
        .enumerate()
        .filter(|(i, s)| {
            *i == 0
                || args.servers.is_empty()
                || args.servers.iter().any(|k| k == s.key)
                || s.key == "wasp-compare"
        })
        .map(|(_, s)| s)
        .collect();
    if !args.no_build {
        build(&paths)?;
    }
    let facts = run_context(&paths)?;
    eprintln!(
        "pinned-bench: {} repetition(s) of {} servers; each loadgen run at most {:?}",
        plan.reps,
        servers.len(),
        plan.loadgen_limit(&all_tests())
    );

    // results[rep][server], servers in report order.
    let mut results: Vec<Vec<Measurement>> = Vec::with_capacity(plan.reps);
    for rep in 0..plan.reps {
        let mut row: Vec<Option<Measurement>> = (0..servers.len()).map(|_| None).collect();
        for k in 0..servers.len() {
            let s = (rep + k) % servers.len();
            let server = servers[s];
            let figures = measure(server, &plan, &paths, &args)
                .with_context(|| format!("repetition {}: {}", rep + 1, server.label))?;
            eprintln!("{}", progress(rep, plan.reps, server, &figures));
            row[s] = Some(figures);
            // Let the kernel finish closing the last server's sockets.
            thread::sleep(Duration::from_millis(300));
        }
        let row = row.into_iter().collect::<Option<Vec<_>>>();
        results.push(row.context("a server was left out of a repetition")?);
    }

    let md = report(&servers, &results, &plan, &args, &facts);
    print!("{md}");
    if args.write {
        let file = args
            .benchmarks_file
            .clone()
            .unwrap_or_else(|| paths.root.join("BENCHMARKS.md"));
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        std::fs::write(&file, replace_section(&text, &md)?)
            .with_context(|| format!("writing {}", file.display()))?;
        eprintln!("pinned-bench: wrote the report into {}", file.display());
    }
    let failures: usize = results.iter().flatten().map(|m| m.failed.len()).sum();
    if failures > 0 {
        eprintln!("pinned-bench: {failures} measurement(s) FAILED (listed in the report)");
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(spread(&[2.0, 5.0, 1.0]), (1.0, 2.0, 5.0));
    }

    #[test]
    fn section_is_inserted_after_the_title_then_replaced() {
        let section = format!("{START_MARKER}\nnew\n{END_MARKER}\n");
        let text = "# Benchmarks\n\nintro\n";
        let once = replace_section(text, &section).unwrap();
        assert_eq!(
            once,
            format!("# Benchmarks\n\n{START_MARKER}\nnew\n{END_MARKER}\n\nintro\n")
        );
        let again =
            replace_section(&once, &format!("{START_MARKER}\nnewer\n{END_MARKER}\n")).unwrap();
        assert_eq!(
            again,
            format!("# Benchmarks\n\n{START_MARKER}\nnewer\n{END_MARKER}\n\nintro\n")
        );
        assert!(replace_section(&format!("x {END_MARKER} {START_MARKER}"), &section).is_err());
    }
}
