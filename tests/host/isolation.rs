//! A misbehaving guest is stopped or limited alone: the host and the other
//! guests carry on.

use std::time::Duration;

use crate::common::{GUEST_DEADLINE, LOOPBACK, captured, component, host, policy, probe};

#[test]
fn a_spinning_guest_does_not_starve_other_guests_on_the_same_thread() {
    // One thread for everything: only epoch yields let the second guest run.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let spin = component("spin");
    let probe_component = component("probe");
    let (spin_options, spin_out) = captured("spin", LOOPBACK, &[]);
    let script = [
        "socket 2 1 6",
        "bind s0 127.0.0.1:0",
        "listen s0 1",
        "socket 2 1 6",
        "connect s1 @s0",
        "accept s0",
        "send s1 alive",
        "recv s2 5 waitall",
    ];
    let (probe_options, probe_out) = captured("probe", LOOPBACK, &script);
    runtime.block_on(async {
        let spinner = tokio::spawn(async move { host().run(&spin, spin_options).await });
        // Let the spinner start first.
        while spin_out.contents().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let status =
            tokio::time::timeout(GUEST_DEADLINE, host().run(&probe_component, probe_options))
                .await
                .expect("the probe ran beside the spinner")
                .expect("the probe did not trap");
        assert_eq!(status, 0);
        assert!(!spinner.is_finished(), "the spinner is still spinning");
        spinner.abort();
        assert!(spinner.await.unwrap_err().is_cancelled());
    });
    let lines = String::from_utf8_lossy(&probe_out.contents()).into_owned();
    assert!(lines.ends_with("ok \"alive\"\n"), "{lines}");
}

#[test]
fn a_guest_that_exhausts_its_memory_traps_alone() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (mut options, out) = captured("hog", LOOPBACK, &[]);
    options.memory_limit = 16 << 20;
    let result = runtime.block_on(async {
        tokio::time::timeout(GUEST_DEADLINE, host().run(&component("hog"), options))
            .await
            .expect("the hog was stopped within the deadline")
    });
    assert!(
        result.is_err(),
        "running out of memory is a trap of the guest"
    );
    let text = String::from_utf8_lossy(&out.contents()).into_owned();
    let held: usize = text
        .lines()
        .filter_map(|l| {
            l.strip_prefix("holding ")?
                .strip_suffix(" MiB")?
                .parse()
                .ok()
        })
        .max()
        .unwrap_or(0);
    assert!(held < 16, "the limit held: {held} MiB");
    // The host carries on.
    assert_eq!(probe(policy(LOOPBACK), &["socket 2 1 6"]), ["ok s0"]);
}

#[test]
fn sockets_left_open_are_closed_when_the_guest_ends() {
    let lines = probe(
        policy(LOOPBACK),
        &[
            "socket 2 1 6",
            "bind s0 127.0.0.1:0",
            "listen s0 8",
            "name s0",
        ],
    );
    let addr: std::net::SocketAddr = lines[3].strip_prefix("ok ").unwrap().parse().unwrap();
    let err = std::net::TcpStream::connect(addr).expect_err("the listener died with its guest");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[test]
fn a_guest_leaking_queue_pollables_is_stopped_alone() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (options, out) = captured(
        "probe",
        LOOPBACK,
        &["queue 4", "subscribe-many q0 100", "subscribe-many q0 5000"],
    );
    let result = runtime.block_on(async {
        tokio::time::timeout(GUEST_DEADLINE, host().run(&component("probe"), options))
            .await
            .expect("the leaking guest was stopped within the deadline")
    });
    let err = result.expect_err("leaking pollables stops the guest");
    assert!(
        format!("{err:?}").contains("more than 4096 queue pollables"),
        "{err:?}"
    );
    let text = String::from_utf8_lossy(&out.contents()).into_owned();
    assert!(text.contains("ok 100"), "{text}");
    // The host carries on.
    assert_eq!(
        probe(policy(LOOPBACK), &["queue 4", "subscribe q0"]),
        ["ok q0", "ok p0"]
    );
}

/// An embedder cancels a guest by dropping (or aborting) the future of
/// `PluginHost::run`: a guest computing in wasm stops at its next epoch
/// yield, one blocked in a host call at once, and its sockets are closed.
#[test]
fn aborting_the_run_task_stops_a_spinning_or_a_blocked_guest() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (spin_options, spin_out) = captured("spin", LOOPBACK, &[]);
        let spin = component("spin");
        let spinning = tokio::spawn(async move { host().run(&spin, spin_options).await });
        // A guest holding a listener and waiting for a message forever.
        let (probe_options, probe_out) = captured(
            "probe",
            LOOPBACK,
            &[
                "socket 2 1 6",
                "bind s0 127.0.0.1:0",
                "listen s0 1",
                "name s0",
                "queue 4",
                "get q0 3600000",
            ],
        );
        let probe_component = component("probe");
        let blocked =
            tokio::spawn(async move { host().run(&probe_component, probe_options).await });
        let started = tokio::time::Instant::now();
        while !(String::from_utf8_lossy(&spin_out.contents()).contains("spinning")
            && String::from_utf8_lossy(&probe_out.contents())
                .lines()
                .count()
                >= 5)
        {
            assert!(
                started.elapsed() < GUEST_DEADLINE,
                "the guests never started"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let listening = String::from_utf8_lossy(&probe_out.contents())
            .lines()
            .nth(3)
            .and_then(|l| l.strip_prefix("ok "))
            .expect("the listener's address")
            .to_string();
        spinning.abort();
        blocked.abort();
        for task in [spinning, blocked] {
            let ended = tokio::time::timeout(GUEST_DEADLINE, task)
                .await
                .expect("the aborted guest ended");
            assert!(ended.unwrap_err().is_cancelled());
        }
        // The blocked guest's listener is closed with it.
        let refused = std::net::TcpStream::connect(listening.as_str());
        assert!(
            refused.is_err(),
            "{listening} still accepts after the abort"
        );
    });
}
