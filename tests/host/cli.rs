//! End to end: the `wasp` binary runs real plugins; real `std::net` peers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{guest, root};

const DEADLINE: Duration = Duration::from_secs(60);

/// The `wasp` binary, its compile cache under `target/` (not the user's).
pub(crate) fn wasp() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wasp"));
    command.env("WASP_CACHE_DIR", root().join("target/wasp-cache"));
    command
}

/// A policy file written for one test, under `target/guests/`.
fn policy_file(name: &str, text: &str) -> PathBuf {
    let path = root().join("target/guests").join(format!("{name}.toml"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

/// `wasp run GUEST.wasm --policy POLICY`.
pub(crate) fn wasp_run(plugin: &str, policy: &std::path::Path) -> Command {
    let mut command = wasp();
    command
        .arg("run")
        .arg(guest(plugin))
        .arg("--policy")
        .arg(policy);
    command
}

fn echo_policy() -> PathBuf {
    root().join("examples/policies/echo.toml")
}

/// Waits for `child` to exit, killing it past the deadline.
fn finish(child: Child) -> Output {
    finish_within(child, DEADLINE)
}

/// Waits for `child` to exit, killing it past `deadline`.
pub(crate) fn finish_within(mut child: Child, deadline: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > deadline {
            child.kill().unwrap();
            panic!("wasp did not exit within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn run_to_end(cmd: &mut Command) -> Output {
    finish(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

#[test]
fn echo_plugin_serves_allowed_clients_and_resets_refused_ones() {
    let mut child = wasp_run("rust-echo", &echo_policy())
        .args(["--", "127.0.0.1:0", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let addr: SocketAddr = first
        .trim()
        .strip_prefix("echo: listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .parse()
        .unwrap();

    let talk = |payload: &[u8]| {
        let mut conn = TcpStream::connect_timeout(&addr, DEADLINE).unwrap();
        conn.set_read_timeout(Some(DEADLINE)).unwrap();
        conn.write_all(payload).unwrap();
        let mut back = vec![0; payload.len()];
        conn.read_exact(&mut back).unwrap();
        back
    };
    assert_eq!(talk(b"hello, wasp"), b"hello, wasp");

    // A client from 127.0.0.2 is outside the accept grant: it is reset
    // and the plugin never sees it.
    let refused = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    refused
        .bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    refused.connect(&addr.into()).unwrap();
    let mut refused = TcpStream::from(refused);
    refused.set_read_timeout(Some(DEADLINE)).unwrap();
    let _ = refused.write_all(b"let me in");
    let mut buf = [0u8; 16];
    match refused.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("refused client got {other:?}"),
    }

    let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    assert_eq!(talk(&big), big);

    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    child.stdout = None;
    let output = finish(child);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "wasp failed: {stderr}");
    assert_eq!(
        rest.matches("echo: connection from 127.0.0.1:").count(),
        2,
        "{rest}"
    );
    assert!(
        !rest.contains("127.0.0.2"),
        "the refused peer reached the plugin: {rest}"
    );
    assert!(
        stderr.contains("no `accept` grant covers 127.0.0.2:"),
        "{stderr}"
    );
}

#[test]
fn a_denied_connect_is_refused_and_logged() {
    let policy = policy_file(
        "deny-connect",
        "protocols = [\"tcp\"]\n[grants]\nbind = [{ addr = \"0.0.0.0\", ports = \"0\" }]\n",
    );
    let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    target.set_nonblocking(true).unwrap();
    let connect = format!("connect s0 {}", target.local_addr().unwrap());
    let output =
        run_to_end(wasp_run("probe", &policy).args(["--", "socket 2 1 6", &connect, "denial"]));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[1], "err WSAEACCES");
    assert!(
        lines[2].starts_with("ok no `connect` grant covers 127.0.0.1:"),
        "{stdout}"
    );
    assert!(
        stderr.contains("denied: no `connect` grant covers 127.0.0.1:"),
        "{stderr}"
    );
    // Nothing reached the target: the check came before the system call.
    assert!(target.accept().is_err());
}

#[test]
fn a_missing_plugin_is_a_clear_error() {
    let output = run_to_end(
        wasp()
            .args(["run", "/nonexistent/plugin.wasm", "--policy"])
            .arg(echo_policy()),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    // 11: the plugin cannot be loaded (2 is kept for usage and configuration).
    assert_eq!(output.status.code(), Some(11), "{stderr}");
    assert!(
        stderr.contains("cannot load plugin /nonexistent/plugin.wasm"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn an_invalid_policy_is_a_clear_error() {
    let policy = policy_file("invalid", "protocols = [\"tcp\"]\n[grants]\nconect = []\n");
    let output = run_to_end(&mut wasp_run("rust-echo", &policy));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("invalid policy in"), "{stderr}");
    assert!(stderr.contains("unknown field `conect`"), "{stderr}");
    assert!(!stderr.contains("panicked at"), "{stderr}");
}

#[test]
fn a_trapping_plugin_is_reported_without_a_host_panic() {
    let output = run_to_end(wasp_run("probe", &echo_policy()).args(["--", "no-such-command"]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    // 3 is a trap; a panic of the host would be 101.
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert_one_line_stop(&stderr, "wasp: plugin trapped: ");
}

/// Asserts that wasp's own report in `stderr` is one line starting with
/// `prefix` (the guest's own output may come before it), no backtrace.
#[track_caller]
fn assert_one_line_stop(stderr: &str, prefix: &str) {
    let ours: Vec<&str> = stderr.lines().filter(|l| l.starts_with("wasp:")).collect();
    assert_eq!(ours.len(), 1, "{stderr}");
    assert!(ours[0].starts_with(prefix), "{stderr}");
    assert!(!stderr.contains("wasm backtrace"), "{stderr}");
}

/// Runs `plugin` with `flags` and asserts wasp's exit code and message.
#[track_caller]
fn assert_stopped(plugin: &str, args: &[&str], code: i32, message: &str) {
    let start = Instant::now();
    let output = run_to_end(wasp_run(plugin, &echo_policy()).args(args));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "{stderr}");
    assert_one_line_stop(&stderr, &format!("wasp: plugin stopped: {message}"));
    eprintln!("{plugin} {args:?}: exit {code} after {:?}", start.elapsed());
}

#[test]
fn a_plugin_over_its_memory_limit_exits_4() {
    assert_stopped(
        "hog",
        &["--memory-mib", "16"],
        4,
        "guest memory limit of 16 MiB exceeded",
    );
}

#[test]
fn a_spinning_plugin_over_its_cpu_time_exits_5() {
    assert_stopped(
        "spin",
        &["--max-cpu-seconds", "0.5"],
        5,
        "guest CPU time limit of 500ms exceeded",
    );
}

#[test]
fn a_blocked_plugin_over_its_wall_time_exits_6() {
    assert_stopped(
        "rust-echo",
        &["--max-wall-seconds", "1", "--", "127.0.0.1:0"],
        6,
        "guest wall-clock time limit of 1s exceeded",
    );
}

#[test]
fn a_spinning_plugin_over_its_cpu_share_exits_7() {
    assert_stopped(
        "spin",
        &["--max-cpu-share", "5"],
        7,
        "guest CPU share limit of 5 % over 10s exceeded",
    );
}

#[test]
fn the_cli_flags_override_the_policy_limits() {
    // The policy allows 100 s of CPU; the flag allows half a second.
    let policy = policy_file(
        "cpu-limits",
        "protocols = [\"tcp\"]\n[limits]\nmax-cpu-seconds = 100\n",
    );
    let output = run_to_end(wasp_run("spin", &policy).args(["--max-cpu-seconds", "0.5"]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(5), "{stderr}");
}

#[test]
fn the_help_documents_the_limits_and_exit_codes() {
    let output = run_to_end(wasp().args(["run", "--help"]));
    let help = String::from_utf8_lossy(&output.stdout);
    for text in [
        "--max-cpu-seconds",
        "--max-wall-seconds",
        "--max-cpu-share",
        "3  the plugin trapped",
        "4  memory limit",
        "5  CPU time limit",
        "6  wall-clock time limit",
        "7  CPU share limit",
    ] {
        assert!(help.contains(text), "`{text}` missing from:\n{help}");
    }
}

#[test]
fn bad_limit_flags_are_usage_errors() {
    for flags in [
        ["--max-cpu-seconds", "0"],
        ["--max-wall-seconds", "-1"],
        ["--max-cpu-share", "101"],
    ] {
        let output = run_to_end(wasp_run("spin", &echo_policy()).args(flags));
        assert_eq!(output.status.code(), Some(2), "{flags:?}");
    }
}

#[test]
fn a_failing_plugin_passes_its_status_on() {
    // The echo plugin cannot bind outside its grants: it exits 1.
    let output = run_to_end(wasp_run("rust-echo", &echo_policy()).args(["--", "127.0.0.9:0"]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("WSAEACCES (10013)"), "{stderr}");
    assert!(
        stderr.contains("no `bind` grant covers 127.0.0.9:0"),
        "{stderr}"
    );
}

#[test]
fn the_embedding_example_runs_the_echo_plugin() {
    // `cargo test` builds the examples next to the test binaries.
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("embed");
    let output = run_to_end(Command::new(example).arg(guest("rust-echo")));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("the plugin echoed \"hello from the embedder\""),
        "{stdout}"
    );
}

#[test]
fn two_multicast_plugins_discover_each_other() {
    let policy = root().join("examples/policies/multicast.toml");
    let start = |name: &str| {
        wasp_run("rust-multicast", &policy)
            .args(["--", name, "239.255.70.9:47009", "15"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let alice = start("alice");
    let bob = start("bob");
    for (output, other) in [(finish(alice), "bob"), (finish(bob), "alice")] {
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.contains(&format!("discovered {other} at 127.0.0.1:47009")),
            "{stdout}"
        );
    }
}

#[test]
fn a_root_fans_its_feed_out_to_three_leaf_plugins() {
    let policy = root().join("examples/policies/rooted-feed.toml");
    let run = |args: &[&str]| {
        wasp_run("rust-rooted-feed", &policy)
            .arg("--")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut root_process = run(&["root", "127.0.0.1:0", "3", "5"]);
    let mut stdout = BufReader::new(root_process.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let addr = first
        .trim()
        .strip_prefix("root: listening on ")
        .unwrap()
        .to_string();
    let leaves: Vec<(&str, Child)> = ["ann", "ben", "cat"]
        .into_iter()
        .map(|name| (name, run(&["leaf", &addr, name])))
        .collect();
    for (name, leaf) in leaves {
        let output = finish(leaf);
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            text.contains(&format!(
                "{name}: joined, the root says \"welcome to the feed\""
            )),
            "{text}"
        );
        for n in 1..=5 {
            assert!(text.contains(&format!("{name}: got line {n}")), "{text}");
        }
    }
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    root_process.stdout = None;
    let output = finish(root_process);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for name in ["ann", "ben", "cat"] {
        assert!(
            rest.contains(&format!("root: {name} joined from 127.0.0.1:")),
            "{rest}"
        );
    }
    assert!(rest.contains("root: sent 5 lines to 3 leaves"), "{rest}");
}

/// Whether this machine lets the test make a network namespace of its own
/// and configure it (`unshare -n`, `ip` of iproute2); says SKIPPED for
/// `test` when not.
fn network_namespaces(test: &str) -> bool {
    let allowed = Command::new("unshare")
        .args(["-n", "ip", "link", "set", "lo", "up"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !allowed {
        crate::common::skipped(test, "`unshare -n` or `ip` is not available here");
    }
    allowed
}

#[test]
fn ipv6_multicast_in_a_network_namespace_of_its_own() {
    // IPv6 multicast is not delivered over lo here, but it is over a veth
    // pair inside a network namespace the test makes for itself (nothing
    // in it reaches the machine's interfaces).
    if !network_namespaces("ipv6_multicast_in_a_network_namespace_of_its_own") {
        return;
    }
    let policy = policy_file(
        "ipv6-multicast",
        "protocols = [\"udp\"]\n[grants]\nmulticast = [{ group = \"ff15::/16\", ports = \"40015\", interface = \"v0\" }]\n",
    );
    let setup = "echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad; \
                 ip link set lo up && ip link add v0 type veth peer name v1 && \
                 ip link set v0 up && ip link set v1 up && exec \"$0\" \"$@\"";
    let output = run_to_end(
        Command::new("unshare")
            .args(["-n", "sh", "-c", setup])
            .arg(env!("CARGO_BIN_EXE_wasp"))
            .arg("run")
            .arg(guest("probe"))
            .arg("--policy")
            .arg(&policy)
            .args([
                "--",
                "socket 23 2 17 flags=c-leaf,d-leaf",
                "join s0 [ff15::15]:40015",
                "getopt s0 mcast-ttl",
                "send s0 six",
                "recvfrom s0 10",
            ]),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[..4],
        ["ok s0", "ok s0 callee=0", "ok 0", "ok 3"],
        "{stdout}"
    );
    assert!(lines[4].starts_with("ok \"six\" [fe80::"), "{stdout}");
}

/// Context switches of every thread of process `pid` so far.
fn context_switches(pid: u32) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        for line in status.lines() {
            if let Some(count) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += count.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    total
}

#[test]
fn an_idle_plugin_with_1000_registered_sockets_wakes_no_thread() {
    // Issue 10: an idle guest costs no wake-up: no engine task runs and the
    // epoch ticker parks (it woke 500 times a second before).
    let policy = policy_file(
        "idle-wake-ups",
        &format!(
            "{}\n[limits]\nmax-sockets = 2048\n",
            crate::common::LOOPBACK
        ),
    );
    let mut script = vec!["queue 16"];
    script.extend(std::iter::repeat_n("udp-many 100 q0", 10));
    script.extend(["echo idle", "get q0 4000", "echo done"]);
    let mut child = wasp_run("probe", &policy)
        .arg("--")
        .args(&script)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    while seen.last().is_none_or(|l: &String| l != "ok idle") {
        match lines.next() {
            Some(Ok(line)) => seen.push(line),
            _ => panic!("the probe ended before going idle: {seen:?}"),
        }
    }
    assert!(seen.contains(&"ok 1000".to_string()), "{seen:?}");
    // Let the ticker notice, then count a second of idleness.
    std::thread::sleep(Duration::from_millis(300));
    let before = context_switches(pid);
    std::thread::sleep(Duration::from_secs(1));
    let woke = context_switches(pid) - before;
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let output = finish(child);
    assert!(output.status.success(), "{rest:?}");
    assert!(woke < 20, "{woke} context switches in one idle second");
}

#[test]
fn as_24_sighup_reloads_the_policy_file_into_the_running_plugin() {
    // The probe registers FD_QOS on a flow of 50,000 B/s and waits; the
    // policy file is rewritten with a lower max-send-rate and wasp gets
    // SIGHUP: the plugin receives FD_QOS and sees the lowered rate. A
    // policy file that does not parse is reported and changes nothing.
    let before = crate::common::LOOPBACK.to_string();
    let path = policy_file("sighup", &before);
    let mut child = wasp_run("probe", &path)
        .arg("--")
        .args([
            "queue 8",
            "socket 2 2 17",
            "bind s0 127.0.0.1:0",
            "qos s0 set 50000 5000",
            "select s0 q0 9 qos",
            "get q0 30000",
            "qos s0 get",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let hangup = |child: &Child| {
        let pid = i32::try_from(child.id()).unwrap();
        // SAFETY: kill(2) with a child's pid and a signal number.
        #[allow(unsafe_code)]
        let sent = unsafe { libc::kill(pid, libc::SIGHUP) };
        assert_eq!(sent, 0);
    };
    let mut line = String::new();
    let deadline = Instant::now() + DEADLINE;
    loop {
        assert!(Instant::now() < deadline, "the probe never waited");
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "stderr ended");
        if line.trim() == "> get q0 30000" {
            break;
        }
    }
    std::fs::write(&path, "this is not a policy").unwrap();
    hangup(&child);
    loop {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "stderr ended");
        if line.contains("policy reload") {
            assert!(line.contains("keeping the policy in force"), "{line}");
            break;
        }
    }
    std::fs::write(
        &path,
        format!("{before}\n[limits]\nmax-send-rate = 10000\n"),
    )
    .unwrap();
    hangup(&child);
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let output = finish(child);
    assert!(output.status.success(), "{rest}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[5..],
        [
            "ok msg=9 s=s0 event=qos error=none lparam=0x40",
            "ok rate=10000 bucket=5000 service=ServiceType::ControlledLoad",
        ],
        "{stdout}\n{rest}"
    );
    assert!(rest.contains("policy reloaded"), "{rest}");
}

#[test]
fn the_rate_streamer_example_keeps_to_its_flow_with_overlapped_sends() {
    // 300,000 bytes at 200,000 B/s (bucket 20,000): at least 1.4 s from
    // the first byte, never faster; all of it arrives.
    let policy = root().join("examples/policies/rate-streamer.toml");
    let (addr, reader) = crate::common::reading_peer();
    let output = run_to_end(wasp_run("rust-rate-streamer", &policy).arg("--").args([
        addr.as_str(),
        "200000",
        "300000",
    ]));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.starts_with("rate-streamer: sent 300000 bytes in"),
        "{stdout}"
    );
    let (total, elapsed) = reader.join().unwrap();
    assert_eq!(total, 300_000);
    assert!(
        elapsed >= Duration::from_millis(1300),
        "300,000 bytes at 200,000 B/s arrived in {elapsed:?}"
    );
}

#[test]
fn the_rate_streamer_example_cannot_go_above_the_policys_send_rate() {
    let policy = root().join("examples/policies/rate-streamer.toml");
    let (addr, reader) = crate::common::reading_peer();
    let output = run_to_end(wasp_run("rust-rate-streamer", &policy).arg("--").args([
        addr.as_str(),
        "20000000",
        "1000",
    ]));
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("cannot be met"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(reader.join().unwrap().0, 0);
}

#[test]
fn as_25_as_26_routing_interface_change_in_a_network_namespace_of_its_own() {
    // The probe arms SIO_ROUTING_INTERFACE_CHANGE for 10.88.1.1 (no route
    // yet) and waits; a route to 10.88.0.0/16 is added in a namespace the
    // test makes for itself: one FD_ROUTING_INTERFACE_CHANGE. Re-armed, the
    // route is deleted: one more, with WSAENETUNREACH. Nothing is sent
    // anywhere (the route is asked with a UDP connect on a probe socket).
    if !network_namespaces("as_25_as_26_routing_interface_change_in_a_network_namespace_of_its_own")
    {
        return;
    }
    let policy = policy_file(
        "routing-change",
        "protocols = [\"udp\"]\n[grants]\nconnect = [{ addr = \"10.88.0.0/16\" }]\n",
    );
    let err = root().join("target/guests/routing-change.err");
    let setup = format!(
        "ip link set lo up && ip addr add 10.77.0.1/24 dev lo || exit 90
         \"$0\" \"$@\" 2> {err} &
         pid=$!
         wait_for() {{
           n=0
           while [ \"$(grep -c \"$1\" {err})\" -lt \"$2\" ]; do
             n=$((n+1)); [ $n -gt 3000 ] && {{ kill $pid; exit 91; }}
             sleep 0.02
           done
         }}
         wait_for '> get q0 30000' 1
         ip route add 10.88.0.0/16 via 10.77.0.2 dev lo
         wait_for '> get q0 30000' 2
         ip route del 10.88.0.0/16
         wait $pid",
        err = err.display()
    );
    let output = run_to_end(
        Command::new("unshare")
            .args(["-n", "sh", "-c", &setup])
            .arg(env!("CARGO_BIN_EXE_wasp"))
            .arg("run")
            .arg(guest("probe"))
            .arg("--policy")
            .arg(&policy)
            .args([
                "--",
                "queue 4",
                "socket 2 2 17",
                "select s0 q0 9 routing-interface-change",
                "routing s0 10.99.0.1:9",
                "routing s0 10.88.1.1:9",
                "get q0 30000",
                "routing s0 10.88.1.1:9",
                "get q0 30000",
            ]),
    );
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(output.status.success(), "{:?}\n{stderr}", output.status);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[3..],
        [
            "err WSAEACCES",
            "ok",
            "ok msg=9 s=s0 event=routing-interface-change error=none lparam=0x100",
            "ok",
            "ok msg=9 s=s0 event=routing-interface-change error=WSAENETUNREACH lparam=0x27430100",
        ],
        "{stdout}\n{stderr}"
    );
}

#[test]
fn as_25_a_granted_interface_address_appearing_or_going_is_an_address_list_change() {
    // In a namespace of its own: the probe arms SIO_ADDRESS_LIST_CHANGE
    // under a policy that lets it bind 10.77.5.0/24. An address outside
    // the grant appears: nothing. 10.77.5.9 appears: one
    // FD_ADDRESS_LIST_CHANGE; re-armed, it goes: one more.
    if !network_namespaces(
        "as_25_a_granted_interface_address_appearing_or_going_is_an_address_list_change",
    ) {
        return;
    }
    let policy = policy_file(
        "address-list",
        "protocols = [\"udp\"]\n[grants]\nbind = [{ addr = \"10.77.5.0/24\" }]\n",
    );
    let err = root().join("target/guests/address-list.err");
    let setup = format!(
        "ip link set lo up || exit 90
         \"$0\" \"$@\" 2> {err} &
         pid=$!
         wait_for() {{
           n=0
           while [ \"$(grep -c \"$1\" {err})\" -lt \"$2\" ]; do
             n=$((n+1)); [ $n -gt 3000 ] && {{ kill $pid; exit 91; }}
             sleep 0.02
           done
         }}
         wait_for '> get q0 1000' 1
         ip addr add 10.66.0.1/32 dev lo
         wait_for '> get q0 30000' 1
         ip addr add 10.77.5.9/32 dev lo
         wait_for '> get q0 30000' 2
         ip addr del 10.77.5.9/32 dev lo
         wait $pid",
        err = err.display()
    );
    let output = run_to_end(
        Command::new("unshare")
            .args(["-n", "sh", "-c", &setup])
            .arg(env!("CARGO_BIN_EXE_wasp"))
            .arg("run")
            .arg(guest("probe"))
            .arg("--policy")
            .arg(&policy)
            .args([
                "--",
                "queue 4",
                "socket 2 2 17",
                "select s0 q0 9 address-list-change",
                "addrlist s0",
                "get q0 1000",
                "get q0 30000",
                "addrlist s0",
                "get q0 30000",
            ]),
    );
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(output.status.success(), "{:?}\n{stderr}", output.status);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let change = "ok msg=9 s=s0 event=address-list-change error=none lparam=0x200";
    assert_eq!(
        lines[4..],
        ["ok none", change, "ok", change],
        "{stdout}\n{stderr}"
    );
}

/// `text` (WebAssembly text) written as a `.wasm` file for one test.
fn wasm_file(name: &str, text: &str) -> PathBuf {
    let path = root().join("target/guests").join(format!("{name}.wasm"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, wat::parse_str(text).unwrap()).unwrap();
    path
}

/// `wasp run FILE` under the echo policy: its status and stderr.
fn run_file(path: &std::path::Path) -> (Option<i32>, String) {
    let output = run_to_end(
        wasp()
            .arg("run")
            .arg(path)
            .arg("--policy")
            .arg(echo_policy()),
    );
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_core_module_is_refused_before_compiling_with_how_to_wrap_it() {
    let path = wasm_file("core-module", r#"(module (func (export "_start")))"#);
    let (status, stderr) = run_file(&path);
    assert_eq!(status, Some(8), "{stderr}");
    assert!(stderr.contains("not a component"), "{stderr}");
    assert!(stderr.contains("wasm-tools component new"), "{stderr}");
    assert!(!stderr.contains("trap"), "{stderr}");
}

#[test]
fn a_component_that_is_not_a_wasi_command_is_refused_naming_wasi_cli_run() {
    let path = wasm_file(
        "library-component",
        r#"(component
             (core module $m (func (export "f")))
             (core instance $i (instantiate $m))
             (func $f (canon lift (core func $i "f")))
             (instance $api (export "f" (func $f)))
             (export "acme:lib/api@1.0.0" (instance $api)))"#,
    );
    let (status, stderr) = run_file(&path);
    assert_eq!(status, Some(9), "{stderr}");
    assert!(
        stderr.contains("does not export `wasi:cli/run`"),
        "{stderr}"
    );
    assert!(stderr.contains("acme:lib/api@1.0.0"), "{stderr}");
    assert!(!stderr.contains("trap"), "{stderr}");
}

#[test]
fn a_component_importing_what_wasp_does_not_provide_is_refused_naming_the_import() {
    let path = wasm_file(
        "foreign-import",
        r#"(component
             (import "acme:gpu/compute@0.1.0" (instance))
             (core module $m (func (export "run") (result i32) (i32.const 0)))
             (core instance $i (instantiate $m))
             (func $run (result (result)) (canon lift (core func $i "run")))
             (instance $cli (export "run" (func $run)))
             (export "wasi:cli/run@0.2.0" (instance $cli)))"#,
    );
    let (status, stderr) = run_file(&path);
    assert_eq!(status, Some(10), "{stderr}");
    assert!(stderr.contains("`acme:gpu/compute@0.1.0`"), "{stderr}");
    assert!(!stderr.contains("trap"), "{stderr}");
}

/// A fresh compile-cache directory for one test.
fn cache_dir(name: &str) -> PathBuf {
    let dir = root().join("target/guests/caches").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The compiled plugins in `dir`.
fn cache_entries(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|listing| listing.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    entries.sort();
    entries
}

/// `wasp run GUEST --cache-dir DIR -- denied 9` (the conformance guest's
/// denied connect, or any guest's run): stdout and stderr.
fn run_cached(plugin: &str, dir: &std::path::Path) -> (String, String) {
    let output = run_to_end(
        wasp_run(plugin, &root().join("tests/conformance/policy.toml"))
            .arg("--cache-dir")
            .arg(dir)
            .args(["--", "denied", "9"]),
    );
    assert!(
        output.status.success() || plugin != "conformance",
        "{output:?}"
    );
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_plugin_is_compiled_once_and_a_changed_or_damaged_entry_compiles_again() {
    let dir = cache_dir("once");
    let (first, _) = run_cached("conformance", &dir);
    assert!(first.starts_with("connect: 10013 WSAEACCES"), "{first}");
    let entries = cache_entries(&dir);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&dir).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700, "the cache is private to its user");

    // Loaded from the cache: the same output, no new entry.
    let (second, stderr) = run_cached("conformance", &dir);
    assert_eq!(second, first, "{stderr}");
    assert_eq!(cache_entries(&dir), entries);

    // Another plugin is another entry.
    run_cached("probe", &dir);
    assert_eq!(cache_entries(&dir).len(), 2);

    // A damaged entry is compiled again, never loaded.
    let whole = std::fs::metadata(&entries[0]).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&entries[0])
        .unwrap()
        .set_len(whole / 2)
        .unwrap();
    let (third, stderr) = run_cached("conformance", &dir);
    assert_eq!(third, first, "{stderr}");
    assert!(stderr.contains("is damaged; compiling again"), "{stderr}");
    assert_eq!(
        std::fs::metadata(&entries[0]).unwrap().len(),
        whole,
        "rewritten whole"
    );
}

#[test]
fn a_cache_directory_others_may_write_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let dir = cache_dir("shared");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (stdout, stderr) = run_cached("conformance", &dir);
    assert!(stdout.starts_with("connect: 10013 WSAEACCES"), "{stdout}");
    assert!(stderr.contains("is not private to this user"), "{stderr}");
    assert!(cache_entries(&dir).is_empty());
}

#[test]
fn no_cache_neither_reads_nor_writes_the_cache() {
    let dir = cache_dir("none");
    let output = run_to_end(
        wasp_run("conformance", &root().join("tests/conformance/policy.toml"))
            .env("WASP_CACHE_DIR", &dir)
            .args(["--no-cache", "--", "denied", "9"]),
    );
    assert!(output.status.success(), "{output:?}");
    assert!(!dir.exists());
}

/// `wasp policy check FILE [FLAGS]`: status and stdout.
fn policy_check(path: &std::path::Path, flags: &[&str]) -> (Option<i32>, String, String) {
    let output = run_to_end(wasp().args(["policy", "check"]).arg(path).args(flags));
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn policy_check_describes_a_valid_policy_in_plain_words() {
    let (status, stdout, stderr) = policy_check(&echo_policy(), &[]);
    assert_eq!(status, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("valid policy"), "{stdout}");
    for line in [
        "protocols: tcp",
        "may bind 127.0.0.1/32 ports *",
        "may listen on 127.0.0.1/32 ports *",
        "may accept connections from 127.0.0.1/32 ports *",
        "at most: sockets 8, message queues",
    ] {
        assert!(stdout.contains(line), "{line:?} in\n{stdout}");
    }
    assert!(!stdout.contains("warning"), "{stdout}");
}

#[test]
fn policy_check_warns_about_a_policy_that_grants_nothing_or_too_much() {
    let empty = policy_file("check-empty", "# nothing\n");
    let (status, stdout, _) = policy_check(&empty, &[]);
    assert_eq!(status, Some(0), "{stdout}");
    assert!(
        stdout.contains("warning: the policy grants nothing"),
        "{stdout}"
    );
    let (status, _, _) = policy_check(&empty, &["--strict"]);
    assert_eq!(status, Some(1), "--strict fails on warnings");

    let wide = policy_file(
        "check-wide",
        "protocols = [\"tcp\"]\n[grants]\n\
         connect = [{ addr = \"0.0.0.0/0\", ports = \"443\" }, { addr = \"10.0.0.0/8\" }]\n",
    );
    let (status, stdout, _) = policy_check(&wide, &[]);
    assert_eq!(status, Some(0), "{stdout}");
    assert!(
        stdout.contains("covers every address of its family"),
        "{stdout}"
    );
    assert!(stdout.contains("`connect` grants overlap"), "{stdout}");
    assert!(
        stdout.contains("allows every port of more than one host"),
        "{stdout}"
    );
}

#[test]
fn policy_check_refuses_an_invalid_policy_with_status_2() {
    let invalid = policy_file(
        "check-invalid",
        "protocols = [\"tcp\"]\n[grants]\nconect = []\n",
    );
    let (status, stdout, stderr) = policy_check(&invalid, &[]);
    assert_eq!(status, Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("unknown field `conect`"), "{stderr}");
}

#[test]
fn the_plugin_sees_only_the_environment_it_is_given() {
    let output = run_to_end(
        wasp_run("probe", &echo_policy())
            .env("WASP_TEST_SECRET", "host-only")
            .args(["--env", "GREETING=hello", "--env", "EMPTY=", "--", "env"]),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("ok EMPTY= GREETING=hello"), "{stdout}");
    assert!(!stdout.contains("WASP_TEST_SECRET"), "{stdout}");
    assert!(!stdout.contains("HOME="), "{stdout}");

    let output =
        run_to_end(wasp_run("probe", &echo_policy()).args(["--env", "NOEQUALS", "--", "env"]));
    assert_eq!(
        output.status.code(),
        Some(2),
        "a malformed --env is a usage error"
    );
}

#[test]
fn wasp_logs_a_start_and_an_end_line_without_colour_when_piped() {
    let output = run_to_end(wasp_run("probe", &echo_policy()).args(["--", "echo hi"]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("plugin starting"), "{stderr}");
    assert!(stderr.contains("plugin ended"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "no ANSI escapes in a pipe: {stderr:?}"
    );

    // WASP_LOG=debug is wasp's own debug lines, not the compiler's.
    let output = run_to_end(
        wasp_run("probe", &echo_policy())
            .env("WASP_LOG", "debug")
            .args(["--no-cache", "--", "echo hi"]),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("cranelift"),
        "{}",
        &stderr[..stderr.len().min(2000)]
    );
    assert!(
        stderr.lines().count() < 100,
        "{} lines",
        stderr.lines().count()
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let output = run_to_end(
        wasp()
            .args(["--log-format", "json", "run"])
            .arg(guest("probe"))
            .arg("--policy")
            .arg(echo_policy())
            .args(["--", "echo hi"]),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let logged: Vec<&str> = stderr.lines().filter(|l| l.starts_with('{')).collect();
    assert!(logged.len() >= 2, "{stderr}");
    for line in logged {
        let object: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        assert!(object["fields"].is_object(), "{line}");
    }
    assert!(
        stderr.contains("plugin starting") && stderr.contains("plugin ended"),
        "{stderr}"
    );
}

#[test]
fn wasp_compile_fills_the_cache_that_run_then_loads() {
    let dir = cache_dir("compile");
    let output = run_to_end(
        wasp()
            .arg("compile")
            .arg(guest("conformance"))
            .arg("--cache-dir")
            .arg(&dir),
    );
    assert!(output.status.success(), "{output:?}");
    let entries = cache_entries(&dir);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let (stdout, _) = run_cached("conformance", &dir);
    assert!(stdout.starts_with("connect: 10013 WSAEACCES"), "{stdout}");
    assert_eq!(
        cache_entries(&dir),
        entries,
        "run found the compiled plugin"
    );

    let core = wasm_file("compile-core", r#"(module (func (export "_start")))"#);
    let output = run_to_end(wasp().arg("compile").arg(core).arg("--cache-dir").arg(&dir));
    assert_eq!(output.status.code(), Some(8), "{output:?}");
}
