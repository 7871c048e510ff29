//! Quality of service (SPEC JL-8, AS-12): SIO_SET_QOS / SIO_GET_QOS, the
//! shaping of a socket's sends to its sending flow and to the policy's
//! `max-send-rate`, and FD_WRITE when a throttled socket may send again.
//! Rates are checked from below only (a send is never faster than its
//! flow allows), so a slow machine cannot fail them.

use std::time::{Duration, Instant};

use crate::common::{LOOPBACK, expect, policy, probe, reading_peer};

#[test]
fn jl_8_sio_set_qos_takes_what_wasp_can_meet_and_sio_get_qos_reports_it() {
    let ceiling = format!("{LOOPBACK}\n[limits]\nmax-send-rate = 100000\n");
    expect(
        &ceiling,
        &[
            "socket 2 1 6",
            "qos s0 get",
            "qos s0 set 50000 8000",
            "qos s0 get",
            "qos s0 set 1000 1000 guaranteed",
            "qos s0 set 200000 8000",
            "qos s0 get",
            "qos #99 get",
        ],
        &[
            "ok s0",
            "ok rate=0 bucket=0 service=ServiceType::BestEffort",
            "ok",
            "ok rate=50000 bucket=8000 service=ServiceType::ControlledLoad",
            "err WSAEOPNOTSUPP",
            "err WSAEOPNOTSUPP",
            "ok rate=50000 bucket=8000 service=ServiceType::ControlledLoad",
            "err WSAENOTSOCK",
        ],
    );
}

/// Sends `bytes` through a guest socket shaped to `rate` B/s with a
/// bucket of `bucket` bytes (by its flow, or by the policy's ceiling when
/// `by_policy`), to a reader outside the guest; returns how long the
/// guest's blocking send took and how many bytes the reader got.
fn shaped_send(rate: u32, bucket: u32, bytes: u32, by_policy: bool) -> (Duration, usize) {
    let (addr, reader) = reading_peer();
    let (policy_text, set) = match by_policy {
        true => (
            format!("{LOOPBACK}\n[limits]\nmax-send-rate = {rate}\n"),
            "name s0".to_string(),
        ),
        false => (LOOPBACK.to_string(), format!("qos s0 set {rate} {bucket}")),
    };
    let connect = format!("connect s0 {addr}");
    let send = format!("send s0 @{bytes}");
    let started = Instant::now();
    let lines = probe(
        policy(&policy_text),
        &["socket 2 1 6", &connect, &set, &send, "close s0"],
    );
    let elapsed = started.elapsed();
    assert_eq!(lines[3], format!("ok {bytes}"), "{lines:?}");
    (elapsed, reader.join().unwrap().0)
}

#[test]
fn jl_8_a_controlled_load_flow_holds_a_blocking_stream_to_its_token_rate() {
    // 60,000 bytes at 100,000 B/s with a 10,000-byte bucket: the bucket
    // goes at once, the other 50,000 bytes take at least 0.5 s.
    let (elapsed, got) = shaped_send(100_000, 10_000, 60_000, false);
    assert_eq!(got, 60_000);
    assert!(
        elapsed >= Duration::from_millis(480),
        "sent in {elapsed:?}, faster than the flow allows"
    );
}

#[test]
fn the_policys_max_send_rate_holds_every_socket_without_a_flow() {
    // 30,000 bytes at 50,000 B/s (bucket: a tenth of a second, 5,000
    // bytes): at least 0.5 s.
    let (elapsed, got) = shaped_send(50_000, 0, 30_000, true);
    assert_eq!(got, 30_000);
    assert!(
        elapsed >= Duration::from_millis(480),
        "sent in {elapsed:?}, faster than the policy allows"
    );
}

#[test]
fn as_15_a_throttled_send_is_wsaewouldblock_and_fd_write_follows_when_tokens_return() {
    // A non-blocking stream shaped to 100 B/s with a 1,000-byte bucket:
    // sends take the bucket, then WSAEWOULDBLOCK; FD_WRITE comes once
    // tokens are back (one message, not one per refused send), and the
    // next send goes.
    expect(
        LOOPBACK,
        &[
            "socket 2 1 6",
            "bind s0 127.0.0.1:0",
            "listen s0 4",
            "socket 2 1 6",
            "connect s1 @s0",
            "accept s0",
            "qos s1 set 100 1000",
            "queue 8",
            "select s1 q0 5 write",
            "get q0 5000",
            "fill s1",
            "send s1 @100",
            "send s1 @100",
            "get q0 10000",
            "qlen q0",
            "send s1 x",
        ],
        &[
            "*",
            "*",
            "*",
            "*",
            "*",
            "*",
            "ok",
            "ok q0",
            "ok",
            "ok msg=5 s=s1 event=write error=none lparam=0x2",
            "ok total>0=true partial>0=true then WSAEWOULDBLOCK",
            // Refused, or a token or two if the machine paused here.
            "*",
            "*",
            "ok msg=5 s=s1 event=write error=none lparam=0x2",
            "ok 0",
            "ok 1",
        ],
    );
}

#[test]
fn jl_8_an_overlapped_stream_keeps_to_its_flow() {
    // 40,000 bytes pending at 100,000 B/s with a 10,000-byte bucket: the
    // completion cannot come before 0.3 s.
    let (addr, reader) = reading_peer();
    let connect = format!("connect s0 {addr}");
    let started = Instant::now();
    let lines = probe(
        policy(LOOPBACK),
        &[
            "queue 4",
            "socket 2 1 6 flags=overlapped",
            &connect,
            "qos s0 set 100000 10000",
            "send s0 @40000 ov=q0:1",
            "get q0 30000",
            "close s0",
        ],
    );
    let elapsed = started.elapsed();
    assert_eq!(lines[4], "err WSA_IO_PENDING", "{lines:?}");
    assert_eq!(
        lines[5], "ok msg=77 s=s0 done=1 bytes=40000 error=none",
        "{lines:?}"
    );
    assert!(elapsed >= Duration::from_millis(280), "sent in {elapsed:?}");
    assert_eq!(reader.join().unwrap().0, 40_000);
}

/// Runs the probe with `script` under `before`; once its stderr shows
/// that it is in the command `waiting_in`, replaces its policy with
/// `after` through the embedder's handle. Returns the probe's lines.
fn probe_replacing_policy(
    before: &str,
    after: &str,
    script: &[&str],
    waiting_in: &str,
) -> Vec<String> {
    use std::sync::Arc;
    use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
    use wasp_host::run::{GuestOptions, Stdio};

    let component = crate::common::component("probe");
    let stdout = MemoryOutputPipe::new(1 << 20);
    let stderr = MemoryOutputPipe::new(1 << 20);
    let mut options = GuestOptions::new("probe", Arc::new(policy(before)));
    options.args = script.iter().map(|a| a.to_string()).collect();
    options.stdio = Stdio::Capture {
        stdout: stdout.clone(),
        stderr: stderr.clone(),
    };
    let live = options.policy.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let guest = runtime.spawn(async move { crate::common::host().run(&component, options).await });
    let marker = format!("> {waiting_in}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !String::from_utf8_lossy(&stderr.contents()).contains(&marker) {
        assert!(
            Instant::now() < deadline,
            "the probe never reached `{waiting_in}`"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    live.replace(Arc::new(policy(after)));
    let status = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(60), guest).await })
        .expect("the probe finishes")
        .expect("the probe task")
        .expect("the probe runs");
    assert_eq!(status, 0, "{}", String::from_utf8_lossy(&stderr.contents()));
    String::from_utf8_lossy(&stdout.contents())
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn as_24_a_policy_replaced_while_the_guest_runs_posts_fd_qos_and_fd_address_list_change() {
    // The operator lowers the guest's send rate below its flow's and
    // takes an address from its bind grants: FD_QOS (the socket is held
    // to the new rate) and FD_ADDRESS_LIST_CHANGE (armed by the ioctl) are
    // posted once each; SIO_GET_QOS shows the lowered rate and re-arms
    // FD_QOS, but no new change means no new message.
    let lowered = LOOPBACK.replace(
        r#"bind = [{ addr = "127.0.0.0/8" }, "#,
        r#"bind = [{ addr = "127.0.0.1" }, "#,
    ) + "\n[limits]\nmax-send-rate = 10000\n";
    assert_ne!(lowered, LOOPBACK);
    let lines = probe_replacing_policy(
        LOOPBACK,
        &lowered,
        &[
            "queue 8",
            "socket 2 2 17",
            "bind s0 127.0.0.1:0",
            "qos s0 set 50000 5000",
            "select s0 q0 9 qos address-list-change",
            "addrlist s0",
            "qlen q0",
            "get q0 30000",
            "get q0 30000",
            "qos s0 get",
            "get q0 300",
        ],
        "get q0 30000",
    );
    assert_eq!(lines[6], "ok 0", "nothing before the change: {lines:?}");
    let mut changes = vec![lines[7].clone(), lines[8].clone()];
    changes.sort();
    assert_eq!(
        changes,
        [
            "ok msg=9 s=s0 event=address-list-change error=none lparam=0x200",
            "ok msg=9 s=s0 event=qos error=none lparam=0x40",
        ],
        "{lines:?}"
    );
    assert_eq!(
        lines[9], "ok rate=10000 bucket=5000 service=ServiceType::ControlledLoad",
        "{lines:?}"
    );
    assert_eq!(lines[10], "ok none", "one message per change: {lines:?}");
}

#[test]
fn as_13_an_unarmed_address_list_change_and_an_unchanged_rate_post_nothing() {
    // Without SIO_ADDRESS_LIST_CHANGE nothing is posted for the address
    // list; a flow below the new ceiling is not changed, so no FD_QOS.
    let lowered = LOOPBACK.replace(
        r#"bind = [{ addr = "127.0.0.0/8" }, "#,
        r#"bind = [{ addr = "127.0.0.1" }, "#,
    ) + "\n[limits]\nmax-send-rate = 100000\n";
    let lines = probe_replacing_policy(
        LOOPBACK,
        &lowered,
        &[
            "queue 8",
            "socket 2 2 17",
            "bind s0 127.0.0.1:0",
            "qos s0 set 50000 5000",
            "select s0 q0 9 qos address-list-change",
            "get q0 1000",
            "qos s0 get",
        ],
        "get q0 1000",
    );
    assert_eq!(lines[5], "ok none", "{lines:?}");
    assert_eq!(
        lines[6], "ok rate=50000 bucket=5000 service=ServiceType::ControlledLoad",
        "{lines:?}"
    );
}
