//! What an operator sees of running plugins (issue 13): the metrics
//! endpoint, scraped with a real HTTP client while a plugin serves.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{ChildStderr, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::cli::{finish_within, wasp_run};
use crate::common::{guest, root};

const DEADLINE: Duration = Duration::from_secs(60);

/// Forwards each line of `stderr` to the returned channel (and keeps
/// draining it, so wasp never blocks on a full pipe).
pub(crate) fn stderr_lines(stderr: ChildStderr) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// The first line of `lines` containing `needle`, within the deadline.
pub(crate) fn line_with(lines: &mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(e) => panic!("no line with {needle:?} on stderr: {e}"),
        }
    }
}

/// The address of the metrics endpoint, from wasp's log line.
fn metrics_url(lines: &mpsc::Receiver<String>) -> String {
    let line = line_with(lines, "metrics at http://");
    let url = &line[line.find("http://").unwrap()..];
    url.split_whitespace().next().unwrap().to_string()
}

/// `GET url` with a bounded wait: the status and the body.
fn http_get(url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(DEADLINE))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent.get(url).call().expect("the metrics endpoint answers");
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}

/// The value of the sample `name{labels}` in a scrape.
fn sample(scrape: &str, name_and_labels: &str) -> f64 {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name_and_labels} in\n{scrape}"))
}

#[test]
fn the_metrics_endpoint_counts_what_a_serving_plugin_does() {
    let policy = root().join("examples/policies/echo.toml");
    let mut child = wasp_run("rust-event-echo", &policy)
        .args(["--metrics", "127.0.0.1:0", "--", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = stderr_lines(child.stderr.take().unwrap());
    let url = metrics_url(&lines);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let addr: SocketAddr = first.trim().rsplit(' ').next().unwrap().parse().unwrap();

    // One echo, held open while the plugin is scraped.
    let payload = vec![7u8; 5000];
    let mut conn = TcpStream::connect_timeout(&addr, DEADLINE).unwrap();
    conn.set_read_timeout(Some(DEADLINE)).unwrap();
    conn.write_all(&payload).unwrap();
    let mut back = vec![0; payload.len()];
    conn.read_exact(&mut back).unwrap();
    // A peer outside the accept grant: refused unseen, counted.
    let refused = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    refused
        .bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    refused.connect(&addr.into()).unwrap();
    let _ = line_with(&lines, "127.0.0.2");

    let (status, scrape) = http_get(&url);
    assert_eq!(status, 200, "{scrape}");
    let plugin = r#"{plugin="rust-event-echo.wasm"}"#;
    let of = |name: &str| sample(&scrape, &format!("{name}{plugin}"));
    // The listener and the connection held open.
    assert_eq!(of("wasp_open_sockets"), 2.0, "{scrape}");
    assert_eq!(of("wasp_received_bytes_total"), 5000.0, "{scrape}");
    assert_eq!(of("wasp_sent_bytes_total"), 5000.0, "{scrape}");
    // FD_ACCEPT, then FD_READ and FD_WRITE for the connection.
    assert!(of("wasp_messages_posted_total") >= 3.0, "{scrape}");
    assert_eq!(of("wasp_messages_held_back_total"), 0.0, "{scrape}");
    assert_eq!(of("wasp_queue_depth"), 0.0, "{scrape}");
    assert!(of("wasp_cpu_seconds_total") > 0.0, "{scrape}");
    assert!(of("wasp_memory_bytes") >= 65536.0, "{scrape}");
    let denied = r#"wasp_denials_total{plugin="rust-event-echo.wasm",reason="address:accept"}"#;
    assert_eq!(sample(&scrape, denied), 1.0, "{scrape}");

    // Only /metrics is served.
    let (status, _) = http_get(&url.replace("/metrics", "/"));
    assert_eq!(status, 404);

    // The event echo serves until it is stopped.
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_metrics_address_that_cannot_be_bound_is_a_configuration_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let policy = root().join("examples/policies/echo.toml");
    let child = wasp_run("probe", &policy)
        .args(["--metrics", &addr, "--", "echo hi"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = finish_within(child, DEADLINE);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("serving metrics at {addr}")),
        "{stderr}"
    );
}

/// A free loopback port (bound, then let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Echoes `payload` through the server at `addr`.
fn echoes(addr: &str, payload: &[u8]) -> bool {
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        return false;
    };
    let Ok(mut conn) = TcpStream::connect_timeout(&addr, DEADLINE) else {
        return false;
    };
    conn.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut back = vec![0; payload.len()];
    conn.write_all(payload).is_ok() && conn.read_exact(&mut back).is_ok() && back == payload
}

#[test]
fn serve_runs_three_plugins_restarts_the_one_that_fails_and_stops_on_sigterm() {
    let dir = root().join("target/guests/serve");
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let echo = root().join("examples/policies/echo.toml");
    std::fs::copy(&echo, dir.join("echo-a.toml")).unwrap();
    let manifest = format!(
        r#"
metrics = "127.0.0.1:0"

[[plugin]]
name = "echo-a"
path = "{event_echo}"
policy = "echo-a.toml"
args = ["{a}"]

[[plugin]]
name = "echo-b"
path = "{event_echo}"
policy = "{echo}"
args = ["{b}"]

# Allocates until its memory limit stops it: it ends itself, again and
# again, and is restarted each time.
[[plugin]]
name = "hog"
path = "{hog}"
policy = "{echo}"
memory-mib = 4
backoff-initial-seconds = 0.05
backoff-max-seconds = 0.2
"#,
        event_echo = guest("rust-event-echo").display(),
        hog = guest("hog").display(),
        echo = echo.display(),
    );
    let manifest_path = dir.join("serve.toml");
    std::fs::write(&manifest_path, manifest).unwrap();
    let mut child = crate::cli::wasp()
        .arg("serve")
        .arg(&manifest_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = stderr_lines(child.stderr.take().unwrap());
    let metrics = metrics_url(&lines);
    // The hog is stopped at its limit and started again, three times over.
    for _ in 0..3 {
        line_with(&lines, "restarting in");
    }
    // Meanwhile both echo plugins serve.
    let deadline = std::time::Instant::now() + DEADLINE;
    while !(echoes(&a, b"to a") && echoes(&b, b"to b")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the echo plugins do not serve"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, scrape) = http_get(&metrics);
    assert!(
        sample(&scrape, r#"wasp_restarts_total{plugin="hog"}"#) >= 2.0,
        "{scrape}"
    );
    assert_eq!(
        sample(&scrape, r#"wasp_restarts_total{plugin="echo-a"}"#),
        0.0
    );
    assert_eq!(
        sample(&scrape, r#"wasp_received_bytes_total{plugin="echo-b"}"#),
        4.0
    );

    // SIGHUP reloads each plugin's policy: echo-a's now refuses 127.0.0.1.
    std::fs::write(
        dir.join("echo-a.toml"),
        std::fs::read_to_string(&echo).unwrap().replace(
            r#"accept = [{ addr = "127.0.0.1" }]"#,
            r#"accept = [{ addr = "127.0.0.9" }]"#,
        ),
    )
    .unwrap();
    let signal = |name: &str| {
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    signal("HUP");
    let reloaded = format!("policy reloaded from {}", dir.join("echo-a.toml").display());
    line_with(&lines, &reloaded);
    assert!(!echoes(&a, b"refused now"), "echo-a still admits 127.0.0.1");
    assert!(echoes(&b, b"still served"));

    // SIGTERM stops them all: status 0, every socket closed.
    signal("TERM");
    let output = finish_within(child, DEADLINE);
    assert_eq!(output.status.code(), Some(0));
    assert!(TcpStream::connect(&b).is_err(), "echo-b still listens");
}

/// `wasp run probe` with `flags` and the probe's `script`: its exit status,
/// stdout lines and stderr.
fn run_probe(
    policy: &std::path::Path,
    flags: &[&str],
    script: &[&str],
) -> (Option<i32>, Vec<String>, String) {
    let child = wasp_run("probe", policy)
        .args(flags)
        .arg("--")
        .args(script)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = finish_within(child, DEADLINE);
    let stdout = String::from_utf8_lossy(&output.stdout);
    (
        output.status.code(),
        stdout.lines().map(str::to_string).collect(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn an_audited_run_allows_everything_and_its_suggested_policy_allows_exactly_that() {
    let dir = root().join("target/guests/audit");
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.toml");
    std::fs::write(&empty, "# grants nothing\n").unwrap();
    let suggested = dir.join("suggested.toml");
    let _ = std::fs::remove_file(&suggested);
    let tcp_target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let udp_target = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp_target.set_read_timeout(Some(DEADLINE)).unwrap();
    let connect = format!("connect s1 {}", tcp_target.local_addr().unwrap());
    let send_to = format!("sendto s2 {} audited", udp_target.local_addr().unwrap());
    let script = [
        "socket 2 1 6",
        "bind s0 127.0.0.1:0",
        "listen s0 1",
        "socket 2 1 6",
        &connect,
        "socket 2 2 17",
        &send_to,
    ];

    // Enforced, the empty policy refuses the first call.
    let (status, lines, _) = run_probe(&empty, &[], &script[..1]);
    assert_eq!(status, Some(0));
    assert_eq!(lines[0], "err WSAEACCES", "{lines:?}");

    // Audited: every call goes through, each logged as a denial it would
    // have been; the suggestion is written.
    let flags = ["--suggest-policy", suggested.to_str().unwrap()];
    let (status, lines, stderr) = run_probe(&empty, &flags, &script);
    assert_eq!(status, Some(0), "{stderr}");
    assert!(lines.iter().all(|l| l.starts_with("ok")), "{lines:?}");
    assert!(
        stderr.contains("audit: would deny: protocol `tcp` is not in the policy's `protocols`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("audit: would deny: no `connect` grant covers"),
        "{stderr}"
    );
    let mut datagram = [0u8; 16];
    let (n, _) = udp_target.recv_from(&mut datagram).unwrap();
    assert_eq!(&datagram[..n], b"audited");
    assert!(tcp_target.accept().is_ok());

    // The suggestion is a valid policy, and enforced it allows the same
    // run...
    let check = crate::cli::wasp()
        .args(["policy", "check"])
        .arg(&suggested)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let checked = finish_within(check, DEADLINE);
    assert!(
        checked.status.success(),
        "{}",
        std::fs::read_to_string(&suggested).unwrap()
    );
    let (status, again, stderr) = run_probe(&suggested, &[], &script);
    assert_eq!(status, Some(0), "{stderr}");
    assert_eq!(again, lines, "{stderr}");
    assert!(!stderr.contains("denied"), "{stderr}");

    // ...and nothing more: another port of the same host is refused.
    let elsewhere = format!("sendto s2 127.0.0.1:{} x", free_port());
    let more: Vec<&str> = script.iter().copied().chain([elsewhere.as_str()]).collect();
    let (_, lines, _) = run_probe(&suggested, &[], &more);
    assert_eq!(lines.last().unwrap(), "err WSAEACCES", "{lines:?}");
}
