//! Shared test harness: guests built from source once per run, one plugin
//! host per test binary, each component compiled once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use wasmtime::component::Component;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasp_host::Policy;
use wasp_host::run::{GuestOptions, PluginHost, Stdio};

/// Longest a guest may run in a test before the test fails.
pub const GUEST_DEADLINE: Duration = Duration::from_secs(60);

/// The workspace root.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
}

/// Builds every guest (test programs and example plugins) for
/// `wasm32-wasip2` once, and returns where the `.wasm` files are.
pub fn guest_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = root().join("target").join("guests");
        let status = Command::new(option_env!("CARGO").unwrap_or("cargo"))
            .current_dir(root())
            .args(["build", "--release", "--target", "wasm32-wasip2"])
            .args(["-p", "wasp-test-programs", "-p", "rust-echo"])
            .args([
                "-p",
                "rust-event-echo",
                "-p",
                "rust-multicast",
                "-p",
                "rust-rooted-feed",
                "-p",
                "rust-rate-streamer",
            ])
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTFLAGS")
            .status()
            .expect("running cargo to build the guests");
        assert!(status.success(), "building the guests failed");
        target.join("wasm32-wasip2").join("release")
    })
}

/// The path of a guest's `.wasm`.
pub fn guest(name: &str) -> PathBuf {
    guest_dir().join(format!("{name}.wasm"))
}

/// The plugin host shared by the tests of this binary.
pub fn host() -> &'static PluginHost {
    static HOST: OnceLock<PluginHost> = OnceLock::new();
    HOST.get_or_init(|| PluginHost::new().expect("plugin host"))
}

/// A guest compiled once.
pub fn component(name: &str) -> Component {
    static CACHE: OnceLock<Mutex<HashMap<String, Component>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(c) = cache.lock().unwrap().get(name) {
        return c.clone();
    }
    let compiled = host().load(guest(name)).expect("compiling guest");
    cache
        .lock()
        .unwrap()
        .entry(name.to_string())
        .or_insert(compiled)
        .clone()
}

/// A policy from TOML text.
pub fn policy(toml: &str) -> Policy {
    Policy::from_toml(toml).expect("test policy parses")
}

/// What a guest run left behind.
pub struct Run {
    pub status: i32,
    pub stdout: Vec<String>,
    pub stderr: String,
}

/// The runtime a guest runs on in a test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// Two workers: the guest and its engine tasks may run at the same time.
    MultiThread,
    /// One thread, as the CLI runs each plugin: the engine takes tokio's
    /// readiness as what a stream shows.
    CurrentThread,
}

/// Runs guest `name` with `args` under `policy`, with a deadline.
pub fn run_guest(name: &str, policy: Policy, args: &[&str]) -> Run {
    run_guest_on(Flavor::MultiThread, name, policy, args)
}

/// [`run_guest`] on a runtime of `flavor`.
pub fn run_guest_on(flavor: Flavor, name: &str, policy: Policy, args: &[&str]) -> Run {
    let component = component(name);
    let stdout = MemoryOutputPipe::new(1 << 20);
    let stderr = MemoryOutputPipe::new(1 << 20);
    let mut options = GuestOptions::new(name, Arc::new(policy));
    options.args = args.iter().map(|a| a.to_string()).collect();
    options.stdio = Stdio::Capture {
        stdout: stdout.clone(),
        stderr: stderr.clone(),
    };
    let runtime = match flavor {
        Flavor::MultiThread => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
    };
    // Spawned so that the guest runs on a worker, beside its engine tasks.
    let status = runtime.block_on(async {
        let guest = tokio::spawn(async move { host().run(&component, options).await });
        match tokio::time::timeout(GUEST_DEADLINE, guest).await {
            Ok(finished) => finished.expect("guest task"),
            Err(_) => panic!(
                "guest did not finish within the deadline; its output so far:\n{}\nits \
                 stderr so far:\n{}\nthreads of this process:\n{}",
                String::from_utf8_lossy(&stdout.contents()),
                String::from_utf8_lossy(&stderr.contents()),
                threads(),
            ),
        }
    });
    let status = status.unwrap_or_else(|e| panic!("guest trapped: {e:?}"));
    Run {
        status,
        stdout: String::from_utf8_lossy(&stdout.contents())
            .lines()
            .map(str::to_string)
            .collect(),
        stderr: String::from_utf8_lossy(&stderr.contents()).into_owned(),
    }
}

/// Each thread of this process: its name, state, where the kernel has it
/// waiting and its kernel stack (read from /proc, without stopping it):
/// whether a guest that missed its deadline is stuck in a system call, on
/// a lock, or waits for an event that never came.
fn threads() -> String {
    let mut out = String::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return "(no /proc/self/task)".into();
    };
    for task in tasks.flatten() {
        let path = task.path();
        let read = |name: &str| std::fs::read_to_string(path.join(name)).unwrap_or_default();
        let stat = read("stat");
        let state = stat
            .rsplit(") ")
            .next()
            .and_then(|rest| rest.split(' ').next());
        out.push_str(&format!(
            "{:?} {} state={} wchan={}\n{}",
            task.file_name(),
            read("comm").trim(),
            state.unwrap_or("?"),
            read("wchan"),
            read("stack")
        ));
    }
    out
}

/// Runs the scripted `probe` guest and returns one line per command.
pub fn probe(policy: Policy, script: &[&str]) -> Vec<String> {
    probe_on(Flavor::MultiThread, policy, script)
}

/// [`probe`] on a runtime of `flavor`.
pub fn probe_on(flavor: Flavor, policy: Policy, script: &[&str]) -> Vec<String> {
    let run = run_guest_on(flavor, "probe", policy, script);
    assert_eq!(run.status, 0, "probe failed: {}", run.stderr);
    assert_eq!(
        run.stdout.len(),
        script.len(),
        "one line per command: {:?}\n{}",
        run.stdout,
        run.stderr
    );
    run.stdout
}

/// Asserts the probe's lines, showing the script on failure.
#[track_caller]
pub fn expect(policy_toml: &str, script: &[&str], expected: &[&str]) {
    expect_on(Flavor::MultiThread, policy_toml, script, expected);
}

/// [`expect`] on both runtime flavors (the event engine observes a stream
/// differently on each).
pub fn expect_on_both(policy_toml: &str, script: &[&str], expected: &[&str]) {
    expect_on(Flavor::MultiThread, policy_toml, script, expected);
    expect_on(Flavor::CurrentThread, policy_toml, script, expected);
}

/// [`expect`] on a runtime of `flavor`.
pub fn expect_on(flavor: Flavor, policy_toml: &str, script: &[&str], expected: &[&str]) {
    let lines = probe_on(flavor, policy(policy_toml), script);
    let pairs: Vec<_> = script.iter().zip(&lines).collect();
    for (i, want) in expected.iter().enumerate() {
        if *want == "*" {
            continue;
        }
        let got = &lines[i];
        let ok = match want.strip_suffix('*') {
            Some(prefix) => got.starts_with(prefix),
            None => got == want,
        };
        assert!(
            ok,
            "command {i} `{}` ({flavor:?}): got `{got}`, want `{want}`\n{pairs:#?}",
            script[i]
        );
    }
}

/// A loopback policy granting every use on 127.0.0.0/8 and ::1 for TCP and
/// UDP, except broadcast.
pub const LOOPBACK: &str = r#"
protocols = ["tcp", "udp"]
[grants]
bind = [{ addr = "127.0.0.0/8" }, { addr = "::1" }, { addr = "0.0.0.0", ports = "0" }, { addr = "::", ports = "0" }]
listen = [{ addr = "127.0.0.0/8" }, { addr = "::1" }]
accept = [{ addr = "127.0.0.0/8" }, { addr = "::1" }]
connect = [{ addr = "127.0.0.0/8" }, { addr = "::1" }]
send-to = [{ addr = "127.0.0.0/8" }, { addr = "::1" }]
recv-from = [{ addr = "127.0.0.0/8" }, { addr = "::1" }]
"#;

/// A loopback port with nothing listening on it (for refusals), held by a
/// bound socket that does not listen until the value is dropped: a port
/// merely freed could be bound again by a test running beside it, and a
/// connect meant to be refused would then reach that test's listener.
pub struct ClosedPort {
    /// The port.
    pub port: u16,
    _held: socket2::Socket,
}

/// A [`ClosedPort`]: connects to it are refused while it lives.
pub fn closed_port() -> ClosedPort {
    let held = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    held.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let port = held.local_addr().unwrap().as_socket().unwrap().port();
    ClosedPort { port, _held: held }
}

/// A connected TCP pair inside the probe: s0 listens, s1 is the client, s2
/// the accepted side.
pub const TCP_PAIR: [&str; 6] = [
    "socket 2 1 6",
    "bind s0 127.0.0.1:0",
    "listen s0 4",
    "socket 2 1 6",
    "connect s1 @s0",
    "accept s0",
];

/// `prefix` followed by `rest`: a script that starts with a set-up.
pub fn after<'a>(prefix: &[&'a str], rest: &[&'a str]) -> Vec<&'a str> {
    prefix.iter().chain(rest).copied().collect()
}

/// Expected lines that skip `prefix`'s lines and then match `rest`.
pub fn skipping<'a>(prefix: &[&str], rest: &[&'a str]) -> Vec<&'a str> {
    std::iter::repeat_n("*", prefix.len())
        .chain(rest.iter().copied())
        .collect()
}

/// CPU time (user + system) of this process's threads named `name` (other
/// tests run beside the caller in the same process).
pub fn cpu_time(name: &str) -> Duration {
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.split_once(") ") else {
            continue;
        };
        if head.ends_with(&format!("({name}")) {
            let fields: Vec<&str> = rest.split(' ').collect();
            ticks +=
                fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
        }
    }
    Duration::from_millis(ticks * 10)
}

/// Waits until `out` holds a line starting with `prefix`, and returns it.
pub fn wait_for_line(out: &MemoryOutputPipe, prefix: &str) -> String {
    let start = std::time::Instant::now();
    loop {
        let text = String::from_utf8_lossy(&out.contents()).into_owned();
        if let Some(line) = text.lines().find(|l| l.starts_with(prefix)) {
            return line.to_string();
        }
        assert!(
            start.elapsed() < GUEST_DEADLINE,
            "no `{prefix}` line: {text}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Options for guest `name` with `args` under the TOML policy `toml`, its
/// stdout (returned) and stderr captured in memory.
pub fn captured(name: &str, toml: &str, args: &[&str]) -> (GuestOptions, MemoryOutputPipe) {
    let stdout = MemoryOutputPipe::new(1 << 20);
    let mut options = GuestOptions::new(name, Arc::new(policy(toml)));
    options.args = args.iter().map(|a| a.to_string()).collect();
    options.stdio = Stdio::Capture {
        stdout: stdout.clone(),
        stderr: MemoryOutputPipe::new(1 << 20),
    };
    (options, stdout)
}

/// Runs a guest on a runtime of its own, on threads named `threads`;
/// returns its stdout.
pub fn spawn_guest(
    name: &'static str,
    threads: &str,
    toml: &str,
    args: &[&str],
) -> MemoryOutputPipe {
    let (options, stdout) = captured(name, toml, args);
    let thread_name = threads.to_string();
    std::thread::Builder::new()
        .name(threads.to_string())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name(thread_name)
                .enable_all()
                .build()
                .unwrap();
            // The guest runs until the test process ends.
            let _ = runtime.block_on(host().run(&component(name), options));
        })
        .unwrap();
    stdout
}

/// A policy whose `accept` and `recv-from` grants cover 127.0.0.9 only:
/// peers on 127.0.0.1 are refused.
pub const ONLY_9_INBOUND: &str = r#"
protocols = ["tcp", "udp"]
[grants]
bind = [{ addr = "127.0.0.0/8" }, { addr = "0.0.0.0", ports = "0" }]
listen = [{ addr = "127.0.0.0/8" }]
accept = [{ addr = "127.0.0.9" }]
connect = [{ addr = "127.0.0.0/8" }]
send-to = [{ addr = "127.0.0.0/8" }]
recv-from = [{ addr = "127.0.0.9" }]
"#;

/// The address a probe printed for `name sN` (`ok ADDR`).
pub fn printed_addr(line: &str) -> SocketAddr {
    line.strip_prefix("ok ").unwrap().parse().unwrap()
}

/// Line `n` (from 0) of a guest's output, once it is there.
pub fn nth_line(out: &MemoryOutputPipe, n: usize) -> String {
    let start = Instant::now();
    loop {
        let text = String::from_utf8_lossy(&out.contents()).into_owned();
        if let Some(line) = text
            .lines()
            .nth(n)
            .filter(|_| text.ends_with('\n') || text.lines().count() > n + 1)
        {
            return line.to_string();
        }
        assert!(start.elapsed() < GUEST_DEADLINE, "no line {n}: {text}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A peer outside the guest: a loopback listener whose first connection
/// is read to its end; its address, and a thread that returns the bytes
/// read and the time from the first byte to the end.
pub fn reading_peer() -> (String, std::thread::JoinHandle<(usize, Duration)>) {
    use std::io::Read;
    let peer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = peer.local_addr().unwrap().to_string();
    let reader = std::thread::spawn(move || {
        let (mut conn, _) = peer.accept().unwrap();
        conn.set_read_timeout(Some(GUEST_DEADLINE)).unwrap();
        let mut buf = vec![0u8; 65536];
        let mut total = 0;
        let mut first = None;
        loop {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    first.get_or_insert_with(Instant::now);
                    total += n;
                }
            }
        }
        (total, first.map_or(Duration::ZERO, |f| f.elapsed()))
    });
    (addr, reader)
}

/// Says on the terminal that `test` was skipped and why: written to the
/// process's stderr directly, which the test harness does not capture, so
/// the line shows even when the test passes.
pub fn skipped(test: &str, reason: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason}");
}
