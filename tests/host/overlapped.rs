//! Overlapped sends and receives (SPEC SO-3, SE-6..SE-11): operations that
//! complete at once or pend, their completions posted to the guest's
//! queue, `wsp-get-overlapped-result`, submission order, cancellation, and
//! the policy's limits on what they hold.

use std::io::Read;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::common::{LOOPBACK, expect, policy, probe};

/// A completion queue, then a connected pair whose client `s1` is
/// overlapped and has a small send buffer, and whose server side `s2`
/// has a small receive buffer: a send of 200,000 bytes cannot go out at
/// once.
const OVERLAPPED_PAIR: [&str; 9] = [
    "queue 16",
    "socket 2 1 6",
    "setopt s0 rcvbuf 4096",
    "bind s0 127.0.0.1:0",
    "listen s0 4",
    "socket 2 1 6 flags=overlapped",
    "setopt s1 sndbuf 4096",
    "connect s1 @s0",
    "accept s0",
];

fn with_pair<'a>(rest: &[&'a str]) -> Vec<&'a str> {
    OVERLAPPED_PAIR
        .iter()
        .copied()
        .chain(rest.iter().copied())
        .collect()
}

fn skip_pair<'a>(rest: &[&'a str]) -> Vec<&'a str> {
    std::iter::repeat_n("*", OVERLAPPED_PAIR.len())
        .chain(rest.iter().copied())
        .collect()
}

#[test]
fn se_7_an_overlapped_send_that_completes_at_once_is_queued_and_recorded() {
    expect(
        LOOPBACK,
        &with_pair(&[
            "send s1 hello ov=q0:7",
            "get q0 5000",
            "overlapped s1 7",
            "overlapped s1 8",
            "send s1 x ov=q0:7",
            "overlapped s1 7",
            "recv s2 6 waitall",
        ]),
        &skip_pair(&[
            "ok 5",
            "ok msg=77 s=s1 done=7 bytes=5 error=none",
            "ok 5",
            "err WSA_INVALID_HANDLE",
            "ok 1",
            "ok 1",
            "ok \"hellox\"",
        ]),
    );
}

#[test]
fn se_7_a_send_that_does_not_fit_pends_and_its_completion_is_posted_when_sent() {
    expect(
        LOOPBACK,
        &with_pair(&[
            "send s1 @200000 ov=q0:7",
            "overlapped s1 7",
            "qlen q0",
            "drain s2 200000",
            "get q0 10000",
            "overlapped s1 7",
        ]),
        &skip_pair(&[
            "err WSA_IO_PENDING",
            "err WSA_IO_INCOMPLETE",
            "ok 0",
            "ok 200000",
            "ok msg=77 s=s1 done=7 bytes=200000 error=none",
            "ok 200000",
        ]),
    );
}

#[test]
fn se_7_get_overlapped_result_with_wait_waits_for_the_completion() {
    // The receive pends; a peer outside the guest sends later, while the
    // guest waits in wsp-get-overlapped-result.
    let peer = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = peer.local_addr().unwrap().to_string();
    let sender = std::thread::spawn(move || {
        use std::io::Write;
        let (mut conn, _) = peer.accept().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        conn.write_all(b"late").unwrap();
        let mut rest = Vec::new();
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let _ = conn.read_to_end(&mut rest);
    });
    let lines = probe(
        policy(LOOPBACK),
        &[
            "queue 4",
            "socket 2 1 6 flags=overlapped",
            &format!("connect s0 {addr}"),
            "recv s0 16 ov=q0:3",
            "overlapped s0 3 wait",
            "get q0 5000",
            "overlapped s0 3",
        ],
    );
    assert_eq!(
        lines[3..],
        [
            "err WSA_IO_PENDING",
            "ok 4 \"late\"",
            "ok msg=77 s=s0 done=3 bytes=4 error=none",
            "ok 4",
        ],
        "the received bytes are handed over once"
    );
    sender.join().unwrap();
}

#[test]
fn se_7_an_overlapped_recv_with_data_there_completes_at_once_and_datagrams_keep_their_sender() {
    expect(
        LOOPBACK,
        &[
            "queue 4",
            "socket 2 2 17 flags=overlapped",
            "bind s0 127.0.0.1:0",
            "socket 2 2 17",
            "bind s1 127.0.0.1:0",
            "recvfrom s0 64 ov=q0:1",
            "sendto s1 @s0 ping",
            "get q0 5000",
            "overlapped s0 1",
            "sendto s1 @s0 pong",
            "recv s0 64 ov=q0:2",
            "get q0 5000",
        ],
        &[
            "*",
            "*",
            "*",
            "*",
            "*",
            "err WSA_IO_PENDING",
            "ok 4",
            "ok msg=77 s=s0 done=1 bytes=4 error=none",
            "ok 4 \"ping\" 127.0.0.1:*",
            "ok 4",
            "ok \"pong\"",
            "ok msg=77 s=s0 done=2 bytes=4 error=none",
        ],
    );
}

#[test]
fn se_9_sends_go_out_in_the_order_they_were_submitted() {
    // A pending send holds the lane: a later overlapped send queues behind
    // it, a non-overlapped one on a non-blocking socket would block.
    expect(
        LOOPBACK,
        &with_pair(&[
            "send s1 @200000 ov=q0:1",
            "send s1 END ov=q0:2",
            "nonblock s1 on",
            "send s1 never",
            "drain s2 200000",
            "recv s2 3 waitall",
            "get q0 10000",
            "get q0 10000",
        ]),
        &skip_pair(&[
            "err WSA_IO_PENDING",
            "err WSA_IO_PENDING",
            "ok",
            "err WSAEWOULDBLOCK",
            "ok 200000",
            "ok \"END\"",
            "ok msg=77 s=s1 done=1 bytes=200000 error=none",
            "ok msg=77 s=s1 done=2 bytes=3 error=none",
        ]),
    );
}

#[test]
fn se_10_a_send_issued_on_a_completion_works() {
    // The guest takes the completion of one send and sends again from its
    // handler: completions are messages, never nested calls into it.
    expect(
        LOOPBACK,
        &with_pair(&[
            "send s1 one ov=q0:1",
            "get q0 5000",
            "send s1 two ov=q0:2",
            "get q0 5000",
            "recv s2 6 waitall",
        ]),
        &skip_pair(&[
            "ok 3",
            "ok msg=77 s=s1 done=1 bytes=3 error=none",
            "ok 3",
            "ok msg=77 s=s1 done=2 bytes=3 error=none",
            "ok \"onetwo\"",
        ]),
    );
}

#[test]
fn se_11_closing_a_socket_aborts_its_pending_operations() {
    expect(
        LOOPBACK,
        &with_pair(&[
            "recv s1 16 ov=q0:5",
            "send s1 @200000 ov=q0:6",
            "close s1",
            "qdrain q0 8",
        ]),
        &skip_pair(&[
            "err WSA_IO_PENDING",
            "err WSA_IO_PENDING",
            "ok",
            "ok msg=77 s=s1 done=6 bytes=0 error=WSA_OPERATION_ABORTED | msg=77 s=s1 done=5 bytes=0 error=WSA_OPERATION_ABORTED",
        ]),
    );
}

#[test]
fn se_6_sio_flush_aborts_the_pending_sends_but_not_the_receives() {
    expect(
        LOOPBACK,
        &with_pair(&[
            "send s1 @200000 ov=q0:1",
            "send s1 END ov=q0:2",
            "recv s1 16 ov=q0:3",
            "flush s1",
            "qdrain q0 8",
            "overlapped s1 2",
            "overlapped s1 3",
        ]),
        &skip_pair(&[
            "err WSA_IO_PENDING",
            "err WSA_IO_PENDING",
            "err WSA_IO_PENDING",
            "ok",
            "ok msg=77 s=s1 done=1 bytes=0 error=WSA_OPERATION_ABORTED | msg=77 s=s1 done=2 bytes=0 error=WSA_OPERATION_ABORTED",
            "err WSA_OPERATION_ABORTED",
            "err WSA_IO_INCOMPLETE",
        ]),
    );
}

#[test]
fn se_11_a_guest_that_ends_with_pending_operations_leaves_nothing_running() {
    // The guest leaves a send pending and ends: the host drops the
    // operation and its socket, so the peer sees the connection end
    // instead of bytes trickling in for ever.
    let peer = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = peer.local_addr().unwrap().to_string();
    let lines = probe(
        policy(LOOPBACK),
        &[
            "queue 4",
            "socket 2 1 6 flags=overlapped",
            "setopt s0 sndbuf 4096",
            &format!("connect s0 {addr}"),
            "send s0 @1000000 ov=q0:1",
        ],
    );
    assert_eq!(lines[4], "err WSA_IO_PENDING");
    let (mut conn, _) = peer.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut total = 0;
    let mut buf = [0u8; 65536];
    loop {
        assert!(Instant::now() < deadline, "the connection never ended");
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
    assert!(total < 1_000_000, "the pending send went on: {total} bytes");
}

#[test]
fn se_6_overlapped_arguments_need_an_open_queue_and_a_token_not_in_use() {
    expect(
        LOOPBACK,
        &with_pair(&[
            "recv s1 16 ov=q0:5",
            "recv s1 16 ov=q0:5",
            "queue 4",
            "qclose q1",
            "send s1 hi ov=q1:6",
            "nonblock s2 on",
            "recv s2 16",
            "recv s1 16 oob ov=q0:7",
        ]),
        &skip_pair(&[
            "err WSA_IO_PENDING",
            "err WSAEINVAL",
            "ok q1",
            "ok",
            "err WSAEINVAL",
            "ok",
            "err WSAEWOULDBLOCK",
            "err WSAEOPNOTSUPP",
        ]),
    );
}

#[test]
fn overlapped_operations_beyond_the_policys_limits_are_wsaenobufs() {
    let limited = format!(
        "{LOOPBACK}\n[limits]\nmax-overlapped-operations = 2\nmax-overlapped-bytes = 100000\n"
    );
    expect(
        &limited,
        &with_pair(&[
            "recv s1 16 ov=q0:1",
            "recv s1 16 ov=q0:2",
            "recv s1 16 ov=q0:3",
            "close s1",
            "socket 2 1 6 flags=overlapped",
            "connect s3 @s0",
            "send s3 @100001 ov=q0:4",
            "send s3 @1000 ov=q0:5",
        ]),
        &skip_pair(&[
            "err WSA_IO_PENDING",
            "err WSA_IO_PENDING",
            "err WSAENOBUFS",
            "ok",
            "ok s3",
            "ok",
            "err WSAENOBUFS",
            "ok 1000",
        ]),
    );
}
