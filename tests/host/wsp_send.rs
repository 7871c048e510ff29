//! WSPSend: SPEC SE-1..SE-8, through the probe guest.

use std::io::Read;
use std::net::TcpListener;
use std::time::Duration;

use crate::common::{LOOPBACK, TCP_PAIR, after, expect, policy, probe, skipping};

fn with_pair<'a>(rest: &[&'a str]) -> Vec<&'a str> {
    after(&TCP_PAIR, rest)
}

fn skip_pair<'a>(rest: &[&'a str]) -> Vec<&'a str> {
    skipping(&TCP_PAIR, rest)
}

#[test]
fn se_1_stream_buffers_go_out_in_order_as_one_stream() {
    expect(
        LOOPBACK,
        &with_pair(&["sendv s1 ab|cd|ef", "recv s2 6 waitall"]),
        &skip_pair(&["ok 6", "ok \"abcdef\""]),
    );
}

#[test]
fn se_1_datagram_buffers_go_out_as_one_datagram() {
    expect(
        LOOPBACK,
        &[
            "socket 2 2 17",
            "bind s0 127.0.0.1:0",
            "socket 2 2 17",
            "sendto s1 @s0 ab|cd|",
            "recvfrom s0 100",
            "nonblock s0 on",
            "recv s0 100",
        ],
        &[
            "*",
            "*",
            "*",
            "ok 4",
            "ok \"abcd\" 127.0.0.1:*",
            "ok",
            "err WSAEWOULDBLOCK",
        ],
    );
}

#[test]
fn se_1_connectionless_send_uses_the_default_peer() {
    expect(
        LOOPBACK,
        &[
            "socket 2 2 17",
            "bind s0 127.0.0.1:0",
            "socket 2 2 17",
            "send s1 nopeer",
            "connect s1 @s0",
            "sendv s1 de|fault",
            "recv s0 100",
        ],
        &[
            "*",
            "*",
            "*",
            "err WSAENOTCONN",
            "ok",
            "ok 7",
            "ok \"default\"",
        ],
    );
}

#[test]
fn se_2_success_returns_the_bytes_sent() {
    expect(
        LOOPBACK,
        &with_pair(&["send s1 @1000", "send s1 @1", "drain s2 1001"]),
        &skip_pair(&["ok 1000", "ok 1", "ok 1001"]),
    );
}

#[test]
fn se_3_a_blocking_send_returns_only_when_every_byte_is_taken() {
    // A host peer that reads slowly, in small pieces, until end of stream.
    let peer = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = peer.local_addr().unwrap().to_string();
    let reader = std::thread::spawn(move || {
        let (mut conn, _) = peer.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut total = 0usize;
        let mut buf = [0u8; 1024];
        loop {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    });
    let lines = probe(
        policy(LOOPBACK),
        &[
            "socket 2 1 6",
            "setopt s0 sndbuf 4096",
            &format!("connect s0 {addr}"),
            "send s0 @4000000",
        ],
    );
    assert_eq!(lines[3], "ok 4000000");
    assert_eq!(reader.join().unwrap(), 4_000_000);
}

#[test]
fn se_3_a_non_blocking_stream_send_takes_what_fits_then_would_block() {
    expect(
        LOOPBACK,
        &[
            "socket 2 1 6",
            "setopt s0 rcvbuf 4096",
            "bind s0 127.0.0.1:0",
            "listen s0 4",
            "socket 2 1 6",
            "setopt s1 sndbuf 4096",
            "connect s1 @s0",
            "accept s0",
            "nonblock s1 on",
            "fill s1",
            "send s1 x",
        ],
        &[
            "*",
            "*",
            "*",
            "*",
            "*",
            "*",
            "*",
            "*",
            "ok",
            "ok total>0=true partial>0=true then WSAEWOULDBLOCK",
            "err WSAEWOULDBLOCK",
        ],
    );
}

#[test]
fn se_4_a_datagram_over_so_max_msg_size_is_wsaemsgsize_and_nothing_is_sent() {
    expect(
        LOOPBACK,
        &[
            "socket 2 2 17",
            "bind s0 127.0.0.1:0",
            "socket 2 2 17",
            "getopt s1 max-msg-size",
            "sendto s1 @s0 @65508",
            "sendto s1 @s0 @65000|@508",
            "connect s1 @s0",
            "send s1 @65508",
            "nonblock s0 on",
            "recv s0 70000",
            "sendto s1 @s0 @65507",
            "recv s0 70000",
        ],
        &[
            "*",
            "*",
            "*",
            "ok 65507",
            "err WSAEMSGSIZE",
            "err WSAEMSGSIZE",
            "ok",
            "err WSAEMSGSIZE",
            "ok",
            "err WSAEWOULDBLOCK",
            "ok 65507",
            "ok len=65507",
        ],
    );
}

#[test]
fn se_4_ipv6_datagram_limit_is_its_own() {
    expect(
        LOOPBACK,
        &[
            "socket 23 2 17",
            "bind s0 [::1]:0",
            "getopt s0 max-msg-size",
            "sendto s0 @s0 @65528",
            "sendto s0 @s0 @65527",
        ],
        &["*", "*", "ok 65527", "err WSAEMSGSIZE", "ok 65527"],
    );
}

#[test]
fn se_5_msg_oob_sends_urgent_data_on_stream_sockets() {
    expect(
        LOOPBACK,
        &with_pair(&[
            "send s1 data",
            "send s1 U oob",
            "recv s2 4 waitall",
            "recv s2 1 oob",
            "getopt s2 oob-inline",
        ]),
        &skip_pair(&["ok 4", "ok 1", "ok \"data\"", "ok \"U\"", "ok false"]),
    );
}

#[test]
fn se_5_msg_oob_elsewhere_and_msg_partial_are_wsaeopnotsupp() {
    expect(
        LOOPBACK,
        &with_pair(&[
            "send s1 x partial",
            "socket 2 2 17",
            "connect s3 @s0",
            "send s3 x oob",
            "sendto s3 127.0.0.1:9 x oob",
            "send s1 ok dontroute",
        ]),
        &skip_pair(&[
            "err WSAEOPNOTSUPP",
            "ok s3",
            "ok",
            "err WSAEOPNOTSUPP",
            "err WSAEOPNOTSUPP",
            "ok 2",
        ]),
    );
}

#[test]
fn se_6_broadcast_without_so_broadcast_is_wsaeacces() {
    // Never sends: without SO_BROADCAST the send is refused, and with it
    // the policy has no broadcast grant.
    expect(
        LOOPBACK,
        &[
            "socket 2 2 17",
            "bind s0 127.0.0.1:0",
            "sendto s0 255.255.255.255:9 x",
            "denial",
            "setopt s0 broadcast on",
            "sendto s0 255.255.255.255:9 x",
            "denial",
        ],
        &[
            "*",
            "*",
            "err WSAEACCES",
            "ok SO_BROADCAST is not set for broadcast address 255.255.255.255:9",
            "ok",
            "err WSAEACCES",
            "ok no `broadcast` grant covers 255.255.255.255:9",
        ],
    );
}

#[test]
fn se_6_send_after_shutdown_is_wsaeshutdown() {
    expect(
        LOOPBACK,
        &with_pair(&[
            "shutdown s1 send",
            "send s1 x",
            "shutdown s2 both",
            "send s2 x",
            "recv s2 1",
        ]),
        &skip_pair(&[
            "ok",
            "err WSAESHUTDOWN",
            "ok",
            "err WSAESHUTDOWN",
            "err WSAESHUTDOWN",
        ]),
    );
}

#[test]
fn se_6_send_on_an_unconnected_socket_is_wsaenotconn() {
    expect(
        LOOPBACK,
        &[
            "socket 2 1 6",
            "send s0 x",
            "socket 2 2 17",
            "send s1 x",
            "bind s0 127.0.0.1:0",
            "listen s0 1",
            "send s0 x",
        ],
        &[
            "*",
            "err WSAENOTCONN",
            "*",
            "err WSAENOTCONN",
            "ok",
            "ok",
            "err WSAENOTCONN",
        ],
    );
}

#[test]
fn se_6_a_bad_or_stale_descriptor_is_wsaenotsock() {
    expect(
        LOOPBACK,
        &[
            "send #4242 x",
            "send #0 x",
            "socket 2 1 6",
            "close s0",
            "send s0 x",
            "close s0",
            "socket 2 1 6",
            "send s0 x",
        ],
        &[
            "err WSAENOTSOCK",
            "err WSAENOTSOCK",
            "ok s0",
            "ok",
            "err WSAENOTSOCK",
            "err WSAENOTSOCK",
            "ok s1",
            "err WSAENOTSOCK",
        ],
    );
}

#[test]
fn se_8_the_buffers_are_captured_during_the_call() {
    // The probe drops each buffer as soon as the call returns; what arrives
    // is what was passed, in order.
    expect(
        LOOPBACK,
        &with_pair(&[
            "sendv s1 first|second",
            "sendv s1 third",
            "recv s2 16 waitall",
        ]),
        &skip_pair(&["ok 11", "ok 5", "ok \"firstsecondthird\""]),
    );
}

#[test]
fn se_1_se_2_more_buffers_than_the_kernel_takes_go_out_as_one_write_and_one_datagram() {
    // Issue 9 point 9: 2,000 buffers (the kernel takes 1,024 per call) are
    // one stream write and one datagram.
    let buffers = vec!["ab"; 2000].join("|");
    let send = format!("sendv s1 {buffers}");
    let send_to = format!("sendto s3 @s4 {buffers}");
    expect(
        LOOPBACK,
        &after(
            &TCP_PAIR,
            &[
                &send,
                "drain s2 4000",
                "socket 2 2 17",
                "socket 2 2 17",
                "bind s4 127.0.0.1:0",
                &send_to,
                "recvfrom s4 8000",
            ],
        ),
        &skipping(
            &TCP_PAIR,
            &[
                "ok 4000",
                "ok 4000",
                "*",
                "*",
                "ok",
                "ok 4000",
                "ok len=4000 127.0.0.1:*",
            ],
        ),
    );
}

#[test]
fn se_6_a_send_after_the_peers_reset_is_wsaeconnreset_also_when_registered() {
    // Issue 9 point 6: the event engine's look at the reset socket took its
    // pending error, and the next send said WSAESHUTDOWN.
    expect(
        LOOPBACK,
        &after(
            &TCP_PAIR,
            &[
                "queue 8",
                "select s2 q0 1 close",
                "setopt s1 linger 0",
                "close s1",
                "get q0 10000",
                "send s2 x",
            ],
        ),
        &skipping(
            &TCP_PAIR,
            &[
                "ok q0",
                "ok",
                "ok",
                "ok",
                "ok msg=1 s=s2 event=close error=WSAECONNRESET*",
                "err WSAECONNRESET",
            ],
        ),
    );
}
