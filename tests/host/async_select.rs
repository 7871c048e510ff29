//! WSPAsyncSelect end to end: SPEC AS rules through the probe guest, on
//! real loopback sockets. Waits are bounded by `get` time-outs; a message
//! that should come gets up to 10 s, one that must not come 200 ms.

use crate::common::{LOOPBACK, TCP_PAIR, after, expect_on_both as expect, skipping};

/// q0 is a queue, then the TCP pair: s0 listens, s1 connects, s2 is
/// accepted.
fn script<'a>(rest: &[&'a str]) -> Vec<&'a str> {
    after(&after(&["queue 64"], &TCP_PAIR), rest)
}

fn want<'a>(rest: &[&'a str]) -> Vec<&'a str> {
    skipping(&after(&["queue 64"], &TCP_PAIR), rest)
}

#[test]
fn as_1_a_message_carries_msg_socket_event_error_and_lparam() {
    expect(
        LOOPBACK,
        &[
            "queue 8",
            "socket 2 2 17",
            "bind s0 127.0.0.1:0",
            "select s0 q0 77 read",
            "socket 2 2 17",
            "sendto s1 @s0 hi",
            "get q0 10000",
        ],
        &[
            "ok q0",
            "*",
            "*",
            "ok",
            "*",
            "ok 2",
            "ok msg=77 s=s0 event=read error=none lparam=0x1",
        ],
    );
}

#[test]
fn as_3_bad_socket_is_wsaenotsock_and_a_closed_queue_wsaeinval() {
    expect(
        LOOPBACK,
        &[
            "queue 8",
            "select #4242 q0 1 read",
            "socket 2 1 6",
            "qclose q0",
            "select s0 q0 1 read",
        ],
        &["ok q0", "err WSAENOTSOCK", "ok s0", "ok", "err WSAEINVAL"],
    );
}

#[test]
fn as_4_registration_makes_the_socket_non_blocking() {
    expect(
        LOOPBACK,
        &script(&[
            "select s2 q0 1",
            "recv s2 10",
            "nonblock s2 off",
            "select s2 q0 1 read",
            "nonblock s2 off",
        ]),
        &want(&["ok", "err WSAEWOULDBLOCK", "ok", "ok", "err WSAEINVAL"]),
    );
}

#[test]
fn as_5_a_new_registration_replaces_the_old_one() {
    expect(
        LOOPBACK,
        &script(&[
            "select s2 q0 1 read",
            "select s2 q0 2 close",
            "send s1 data",
            "get q0 200",
            "close s1",
            "recv s2 10",
            "get q0 10000",
        ]),
        &want(&[
            "ok",
            "ok",
            "ok 4",
            "ok none",
            "ok",
            "ok \"data\"",
            "ok msg=2 s=s2 event=close error=none lparam=0x20",
        ]),
    );
}

#[test]
fn as_6_an_empty_mask_cancels_notification() {
    expect(
        LOOPBACK,
        &script(&[
            "select s2 q0 1 read close",
            "select s2 q0 1",
            "send s1 data",
            "close s1",
            "get q0 200",
        ]),
        &want(&["ok", "ok", "ok 4", "ok", "ok none"]),
    );
}

#[test]
fn as_7_accepted_sockets_inherit_the_registration() {
    expect(
        LOOPBACK,
        &[
            "queue 16",
            "socket 2 1 6",
            "bind s0 127.0.0.1:0",
            "listen s0 4",
            "select s0 q0 5 accept read write",
            "socket 2 1 6",
            "connect s1 @s0",
            "get q0 10000",
            "accept s0",
            "get q0 10000",
            "send s1 hi",
            "get q0 10000",
        ],
        &[
            "*",
            "*",
            "*",
            "*",
            "ok",
            "*",
            "ok",
            "ok msg=5 s=s0 event=accept error=none lparam=0x8",
            "ok s2 127.0.0.1:*",
            "ok msg=5 s=s2 event=write error=none lparam=0x2",
            "ok 2",
            "ok msg=5 s=s2 event=read error=none lparam=0x1",
        ],
    );
}

#[test]
fn as_8_as_9_one_read_message_until_recv() {
    expect(
        LOOPBACK,
        &script(&[
            "select s2 q0 3 read",
            "send s1 one",
            "get q0 10000",
            "send s1 two",
            "get q0 200",
            "recv s2 100",
            "get q0 200",
            "send s1 three",
            "get q0 10000",
        ]),
        &want(&[
            "ok",
            "ok 3",
            "ok msg=3 s=s2 event=read error=none lparam=0x1",
            "ok 3",
            "ok none",
            "ok \"onetwo\"",
            "ok none",
            "ok 5",
            "ok msg=3 s=s2 event=read error=none lparam=0x1",
        ]),
    );
}

#[test]
fn as_10_a_failed_recv_still_reenables() {
    expect(
        LOOPBACK,
        &script(&[
            "select s2 q0 3 read",
            "send s1 x",
            "get q0 10000",
            "recv s2 10 oob",
            "get q0 10000",
        ]),
        &want(&[
            "ok",
            "ok 1",
            "ok msg=3 s=s2 event=read*",
            "err WSAEWOULDBLOCK",
            "ok msg=3 s=s2 event=read*",
        ]),
    );
}

#[test]
fn as_11_read_is_level_triggered() {
    expect(
        LOOPBACK,
        &script(&[
            "select s2 q0 3 read",
            "send s1 0123456789",
            "get q0 10000",
            "recv s2 5",
            "get q0 10000",
            "recv s2 5",
            "get q0 200",
        ]),
        &want(&[
            "ok",
            "ok 10",
            "ok msg=3 s=s2 event=read*",
            "ok \"01234\"",
            "ok msg=3 s=s2 event=read*",
            "ok \"56789\"",
            "ok none",
        ]),
    );
}

#[test]
fn as_14_conditions_already_true_are_posted_at_registration() {
    expect(
        LOOPBACK,
        &[
            "queue 8",
            "socket 2 1 6",
            "bind s0 127.0.0.1:0",
            "listen s0 4",
            "socket 2 1 6",
            "connect s1 @s0",
            "select s0 q0 9 accept",
            "get q0 10000",
        ],
        &[
            "*",
            "*",
            "*",
            "*",
            "*",
            "ok",
            "ok",
            "ok msg=9 s=s0 event=accept error=none lparam=0x8",
        ],
    );
}

#[test]
fn as_15_write_after_connect_then_after_would_block() {
    expect(
        LOOPBACK,
        &[
            "queue 8",
            "socket 2 1 6",
            "setopt s0 rcvbuf 4096",
            "bind s0 127.0.0.1:0",
            "listen s0 4",
            "socket 2 1 6",
            "setopt s1 sndbuf 4096",
            "select s1 q0 4 connect write",
            "connect s1 @s0",
            "get q0 10000",
            "get q0 10000",
            "send s1 x",
            "get q0 200",
            "fill s1",
            "get q0 200",
            "accept s0",
            "nonblock s2 on",
            "drain s2 100000000",
            "get q0 10000",
        ],
        &[
            "*",
            "*",
            "*",
            "*",
            "*",
            "*",
            "*",
            "ok",
            "err WSAEWOULDBLOCK",
            "ok msg=4 s=s1 event=connect error=none lparam=0x10",
            "ok msg=4 s=s1 event=write error=none lparam=0x2",
            "ok 1",
            "ok none",
            "ok total>0=true partial>0=true then WSAEWOULDBLOCK",
            "ok none",
            "ok s2 127.0.0.1:*",
            "ok",
            "*",
            "ok msg=4 s=s1 event=write error=none lparam=0x2",
        ],
    );
}

#[test]
fn as_15_datagram_sockets_get_write_on_registration_bound_or_not() {
    // Issue 9 point 3: a send is possible on an unbound datagram socket
    // (send-to binds it implicitly), so registration posts FD_WRITE; the
    // bind that follows posts no second one (optional per AS-15) until a
    // send re-enables it.
    expect(
        LOOPBACK,
        &[
            "queue 8",
            "socket 2 2 17",
            "select s0 q0 6 write",
            "get q0 10000",
            "bind s0 127.0.0.1:0",
            "get q0 200",
        ],
        &[
            "*",
            "*",
            "ok",
            "ok msg=6 s=s0 event=write error=none lparam=0x2",
            "ok",
            "ok none",
        ],
    );
}

#[test]
fn as_16_oob_is_its_own_event_unless_oobinline() {
    expect(
        LOOPBACK,
        &script(&[
            "select s2 q0 8 oob",
            "send s1 U oob",
            "get q0 10000",
            "recv s2 1 oob",
            "setopt s2 oob-inline on",
            "select s2 q0 8 oob read",
            "send s1 V oob",
            "get q0 10000",
            "get q0 200",
        ]),
        &want(&[
            "ok",
            "ok 1",
            "ok msg=8 s=s2 event=oob error=none lparam=0x4",
            "ok \"U\"",
            "ok",
            "ok",
            "ok 1",
            "ok msg=8 s=s2 event=read error=none lparam=0x1",
            "ok none",
        ]),
    );
}

#[test]
fn as_17_as_18_close_comes_after_the_data_with_its_error() {
    expect(
        LOOPBACK,
        &script(&[
            "select s2 q0 2 read close",
            "send s1 last",
            "close s1",
            "get q0 10000",
            "get q0 200",
            "recv s2 100",
            "get q0 10000",
            "get q0 200",
        ]),
        &want(&[
            "ok",
            "ok 4",
            "ok",
            "ok msg=2 s=s2 event=read error=none lparam=0x1",
            "ok none",
            "ok \"last\"",
            "ok msg=2 s=s2 event=close error=none lparam=0x20",
            "ok none",
        ]),
    );
}

#[test]
fn as_18_after_our_shutdown_fd_close_waits_for_the_peers_fin() {
    // Issue 9 point 5 (seed FD_CLOSE case 3): our own half-close, in any
    // direction, is no close indication; the peer's FIN is.
    for how in ["send", "receive", "both"] {
        let shut = format!("shutdown s1 {how}");
        expect(
            LOOPBACK,
            &script(&[
                "select s1 q0 2 close",
                &shut,
                "get q0 300",
                "close s2",
                "get q0 10000",
                "get q0 200",
            ]),
            &want(&[
                "ok",
                "ok",
                "ok none",
                "ok",
                "ok msg=2 s=s1 event=close error=none lparam=0x20",
                "ok none",
            ]),
        );
    }
}

#[test]
fn as_18_data_after_our_receive_shutdown_aborts_the_connection() {
    // Windows resets a connection whose data can no longer be received
    // (shutdown SD_RECEIVE / SD_BOTH): the local FD_CLOSE says
    // WSAECONNABORTED, the peer sees the reset, and the connection ends
    // whether the data was queued at the shutdown or came later.
    for queued_first in [true, false] {
        let mut steps = vec!["select s1 q0 2 read close"];
        let mut answers = vec!["ok"];
        if queued_first {
            steps.extend(["send s2 early", "get q0 10000", "shutdown s1 both"]);
            answers.extend(["ok 5", "ok msg=2 s=s1 event=read*", "ok"]);
        } else {
            steps.extend(["shutdown s1 receive", "get q0 300", "send s2 late"]);
            answers.extend(["ok", "ok none", "ok 4"]);
        }
        steps.extend(["get q0 10000", "recv s1 10", "recv s2 10"]);
        answers.extend([
            "ok msg=2 s=s1 event=close error=WSAECONNABORTED lparam=0x27450020",
            "err WSAESHUTDOWN",
            "err WSAECONNRESET",
        ]);
        expect(LOOPBACK, &script(&steps), &want(&answers));
    }
}

#[test]
fn as_17_an_abortive_close_is_wsaeconnreset() {
    expect(
        LOOPBACK,
        &script(&[
            "select s2 q0 2 close",
            "setopt s1 linger 0",
            "close s1",
            "get q0 10000",
        ]),
        &want(&[
            "ok",
            "ok",
            "ok",
            "ok msg=2 s=s2 event=close error=WSAECONNRESET lparam=0x27460020",
        ]),
    );
}

#[test]
fn as_19_no_close_message_after_the_guests_own_close() {
    expect(
        LOOPBACK,
        &script(&[
            "select s2 q0 2 close",
            "select s1 q0 2 close",
            "close s2",
            "get q0 10000",
            "get q0 200",
        ]),
        &want(&[
            "ok",
            "ok",
            "ok",
            "ok msg=2 s=s1 event=close error=none lparam=0x20",
            "ok none",
        ]),
    );
}

#[test]
fn as_20_connect_reports_refusal_and_datagram_connects_at_once() {
    let closed = crate::common::closed_port();
    let refused = format!("connect s0 127.0.0.1:{}", closed.port);
    expect(
        LOOPBACK,
        &[
            "queue 8",
            "socket 2 1 6",
            "select s0 q0 4 connect",
            &refused,
            "get q0 10000",
            "getopt s0 error",
            "socket 2 2 17",
            "select s1 q0 4 connect",
            "connect s1 127.0.0.1:9",
            "get q0 10000",
        ],
        &[
            "*",
            "*",
            "ok",
            "err WSAEWOULDBLOCK",
            "ok msg=4 s=s0 event=connect error=WSAECONNREFUSED lparam=0x274d0010",
            "ok WSAECONNREFUSED",
            "*",
            "ok",
            "ok",
            "ok msg=4 s=s1 event=connect error=none lparam=0x10",
        ],
    );
}

#[test]
fn as_20_a_connect_that_fails_at_once_posts_fd_connect_with_its_error() {
    // Issue 9 point 2: an AF_INET socket given an IPv6 address.
    expect(
        LOOPBACK,
        &[
            "queue 8",
            "socket 2 1 6",
            "select s0 q0 4 connect",
            "connect s0 [::1]:80",
            "get q0 10000",
        ],
        &[
            "*",
            "*",
            "ok",
            "err WSAEAFNOSUPPORT",
            "ok msg=4 s=s0 event=connect error=WSAEAFNOSUPPORT lparam=0x273f0010",
        ],
    );
}

#[test]
fn as_20_an_accepted_socket_never_gets_fd_connect() {
    // Issue 9 point 1: FD_CONNECT is for a connection the socket initiated;
    // an accepted socket gets none, inherited (AS-7) or registered.
    expect(
        LOOPBACK,
        &[
            "queue 8",
            "socket 2 1 6",
            "bind s0 127.0.0.1:0",
            "listen s0 4",
            "select s0 q0 1 accept connect write",
            "socket 2 1 6",
            "connect s1 @s0",
            "await q0 s0 accept 10000",
            "accept s0",
            "await q0 s2 write 10000",
            "select s2 q0 2 connect read write",
            "get q0 300",
        ],
        &[
            "*",
            "*",
            "*",
            "*",
            "ok",
            "*",
            "ok",
            "ok msg=1 s=s0 event=accept error=none lparam=0x8",
            "ok s2 127.0.0.1:*",
            "ok msg=1 s=s2 event=write error=none lparam=0x2",
            "ok",
            "ok msg=2 s=s2 event=write error=none lparam=0x2",
        ],
    );
}

#[test]
fn as_10_an_accept_refused_with_wsaemfile_re_enables_fd_accept() {
    // Issue 9 point 10. At the quota, FD_ACCEPT is posted again once there
    // is room (see the SDK's "where wasp differs from Windows").
    let three = format!("{LOOPBACK}\n[limits]\nmax-sockets = 3\n");
    expect(
        &three,
        &[
            "queue 8",
            "socket 2 1 6",
            "bind s0 127.0.0.1:0",
            "listen s0 4",
            "select s0 q0 1 accept",
            "socket 2 1 6",
            "connect s1 @s0",
            "get q0 10000",
            "socket 2 2 17",
            "accept s0",
            "get q0 300",
            "close s2",
            "get q0 10000",
            "accept s0",
        ],
        &[
            "*",
            "*",
            "*",
            "*",
            "ok",
            "*",
            "ok",
            "ok msg=1 s=s0 event=accept error=none lparam=0x8",
            "ok s2",
            "err WSAEMFILE",
            "ok none",
            "ok",
            "ok msg=1 s=s0 event=accept error=none lparam=0x8",
            "ok s3 127.0.0.1:*",
        ],
    );
}

#[test]
fn as_14_fd_close_persists_a_new_registration_posts_it_again() {
    // Issue 9 point 4 (seed FD_CLOSE case 1), graceful and reset.
    expect(
        LOOPBACK,
        &after(
            &TCP_PAIR,
            &[
                "queue 8",
                "select s2 q0 1 close",
                "close s1",
                "get q0 10000",
                "select s2 q0 2 close read",
                "get q0 10000",
                "socket 2 1 6",
                "connect s3 @s0",
                "accept s0",
                "select s4 q0 3 close",
                "setopt s3 linger 0",
                "close s3",
                "get q0 10000",
                "select s4 q0 4 close",
                "get q0 10000",
            ],
        ),
        &skipping(
            &TCP_PAIR,
            &[
                "ok q0",
                "ok",
                "ok",
                "ok msg=1 s=s2 event=close error=none lparam=0x20",
                "ok",
                "ok msg=2 s=s2 event=close error=none lparam=0x20",
                "ok s3",
                "ok",
                "ok s4 127.0.0.1:*",
                "ok",
                "ok",
                "ok",
                "ok msg=3 s=s4 event=close error=WSAECONNRESET*",
                "ok",
                "ok msg=4 s=s4 event=close error=WSAECONNRESET*",
            ],
        ),
    );
}

#[test]
fn as_26_messages_carry_the_error_of_their_event() {
    // FD_CONNECT carries the connect's error (AS-20), FD_CLOSE the close's
    // (AS-17), others none: WSAMAKESELECTREPLY(event, error) in lParam.
    let closed = crate::common::closed_port();
    let refused = format!("connect s0 127.0.0.1:{}", closed.port);
    expect(
        LOOPBACK,
        &after(
            &TCP_PAIR,
            &[
                "queue 8",
                "select s2 q0 1 read close",
                "send s1 x",
                "get q0 10000",
                "setopt s1 linger 0",
                "close s1",
                "recv s2 10",
                "get q0 10000",
                "socket 2 1 6",
                "select s3 q0 2 connect",
                &refused.replace("s0", "s3"),
                "get q0 10000",
            ],
        ),
        &skipping(
            &TCP_PAIR,
            &[
                "ok q0",
                "ok",
                "ok 1",
                "ok msg=1 s=s2 event=read error=none lparam=0x1",
                "ok",
                "ok",
                "ok \"x\"",
                "ok msg=1 s=s2 event=close error=WSAECONNRESET lparam=0x27460020",
                "ok s3",
                "ok",
                "err WSAEWOULDBLOCK",
                "ok msg=2 s=s3 event=connect error=WSAECONNREFUSED lparam=0x274d0010",
            ],
        ),
    );
}

#[test]
fn as_22_accept_is_level_triggered() {
    expect(
        LOOPBACK,
        &[
            "queue 8",
            "socket 2 1 6",
            "bind s0 127.0.0.1:0",
            "listen s0 4",
            "select s0 q0 1 accept",
            "socket 2 1 6",
            "connect s1 @s0",
            "socket 2 1 6",
            "connect s2 @s0",
            "get q0 10000",
            "get q0 200",
            "accept s0",
            "get q0 10000",
            "accept s0",
            "get q0 200",
        ],
        &[
            "*",
            "*",
            "*",
            "*",
            "ok",
            "*",
            "ok",
            "*",
            "ok",
            "ok msg=1 s=s0 event=accept*",
            "ok none",
            "ok s3*",
            "ok msg=1 s=s0 event=accept*",
            "ok s4*",
            "ok none",
        ],
    );
}

#[test]
fn a_full_queue_holds_events_back_without_losing_any() {
    expect(
        LOOPBACK,
        &[
            "queue 1",
            "socket 2 2 17",
            "bind s0 127.0.0.1:0",
            "socket 2 2 17",
            "bind s1 127.0.0.1:0",
            "socket 2 2 17",
            "select s0 q0 1 read",
            "select s1 q0 1 read",
            "sendto s2 @s0 a",
            "sendto s2 @s1 b",
            "await-overflow q0",
            "collect q0 2 10000",
        ],
        &[
            "*",
            "*",
            "*",
            "*",
            "*",
            "*",
            "ok",
            "ok",
            "ok 1",
            "ok 1",
            "ok true",
            "ok msg=1 s=s0 event=read error=none lparam=0x1 | msg=1 s=s1 event=read error=none lparam=0x1",
        ],
    );
}

#[test]
fn connect_and_close_pass_a_full_queue() {
    expect(
        LOOPBACK,
        &script(&[
            "select s2 q0 1 read close",
            "queue 1",
            "select s2 q1 1 read close",
            "send s1 x",
            "close s1",
            "get q1 10000",
            "recv s2 10",
            "get q1 10000",
        ]),
        &want(&[
            "ok",
            "ok q1",
            "ok",
            "ok 1",
            "ok",
            "ok msg=1 s=s2 event=read*",
            "ok \"x\"",
            "ok msg=1 s=s2 event=close error=none lparam=0x20",
        ]),
    );
}

#[test]
fn peek_and_drain_do_not_wait() {
    expect(
        LOOPBACK,
        &[
            "queue 8",
            "peek q0",
            "qdrain q0 5",
            "socket 2 2 17",
            "bind s0 127.0.0.1:0",
            "select s0 q0 1 read write",
            "get q0 10000",
            "sendto s0 @s0 x",
            "get q0 10000",
            "qdrain q0 5",
        ],
        &[
            "ok q0",
            "ok none",
            "ok",
            "*",
            "ok",
            "ok",
            "ok msg=1 s=s0 event=write*",
            "ok 1",
            "ok msg=1 s=s0 event=read*",
            "ok",
        ],
    );
}

#[test]
fn the_queue_pollable_is_ready_when_a_message_waits() {
    expect(
        LOOPBACK,
        &[
            "queue 8",
            "subscribe q0",
            "ready p0",
            "socket 2 2 17",
            "bind s0 127.0.0.1:0",
            "select s0 q0 1 read",
            "sendto s0 @s0 x",
            "block p0",
            "ready p0",
            "peek q0",
            "qlen q0",
            "qdrain q0 5",
            "ready p0",
        ],
        &[
            "ok q0",
            "ok p0",
            "ok false",
            "*",
            "*",
            "ok",
            "ok 1",
            "ok",
            "ok true",
            "ok msg=1 s=s0 event=read*",
            "ok 1",
            "ok msg=1 s=s0 event=read*",
            "ok false",
        ],
    );
}

#[test]
fn a_dropped_queue_stops_delivery() {
    expect(
        LOOPBACK,
        &script(&[
            "select s2 q0 1 read",
            "qdrop q0",
            "send s1 x",
            "recv s2 10",
            "nonblock s2 off",
            "queue 4",
            "select s2 q1 1 read",
            "send s1 y",
            "get q1 10000",
        ]),
        &want(&[
            "ok",
            "ok",
            "ok 1",
            "ok \"x\"",
            "ok",
            "ok q1",
            "ok",
            "ok 1",
            "ok msg=1 s=s2 event=read*",
        ]),
    );
}
