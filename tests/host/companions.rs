//! The companion calls that make a socket usable: bind, listen, accept,
//! connect, recv, recv-from, shutdown, close, ioctl, options, names.

use crate::common::{LOOPBACK, closed_port, expect};

#[test]
fn listen_needs_a_bound_socket() {
    expect(
        LOOPBACK,
        &[
            "socket 2 1 6",
            "listen s0 4",
            "socket 2 2 17",
            "bind s1 127.0.0.1:0",
            "listen s1 4",
        ],
        &["*", "err WSAEINVAL", "*", "ok", "err WSAEOPNOTSUPP"],
    );
}

#[test]
fn bind_twice_and_family_mismatch_are_refused() {
    expect(
        LOOPBACK,
        &[
            "socket 2 1 6",
            "bind s0 127.0.0.1:0",
            "bind s0 127.0.0.1:0",
            "bind s0 [::1]:0",
            "socket 23 1 6",
            "bind s1 127.0.0.1:0",
        ],
        &[
            "*",
            "ok",
            "err WSAEINVAL",
            "err WSAEAFNOSUPPORT",
            "*",
            "err WSAEAFNOSUPPORT",
        ],
    );
}

#[test]
fn an_address_in_use_is_wsaeaddrinuse() {
    expect(
        LOOPBACK,
        &[
            "socket 2 1 6",
            "bind s0 127.0.0.1:0",
            "listen s0 1",
            "socket 2 1 6",
            "bind s1 @s0",
        ],
        &["*", "ok", "ok", "*", "err WSAEADDRINUSE"],
    );
}

#[test]
fn accepted_peers_outside_the_accept_grants_are_reset_before_the_guest_sees_them() {
    let only_127_0_0_1 = r#"
protocols = ["tcp"]
[grants]
bind = [{ addr = "127.0.0.0/8" }, { addr = "0.0.0.0", ports = "0" }]
listen = [{ addr = "127.0.0.1" }]
connect = [{ addr = "127.0.0.1" }]
accept = [{ addr = "127.0.0.1" }]
"#;
    expect(
        only_127_0_0_1,
        &[
            "socket 2 1 6",
            "bind s0 127.0.0.1:0",
            "listen s0 4",
            "nonblock s0 on",
            "socket 2 1 6",
            "bind s1 127.0.0.2:0",
            "connect s1 @s0",
            "accept s0",
            "denial",
            "recv s1 10",
            "socket 2 1 6",
            "connect s2 @s0",
            "accept s0",
        ],
        &[
            "*",
            "*",
            "*",
            "ok",
            "*",
            "ok",
            "ok",
            "err WSAEWOULDBLOCK",
            "ok no `accept` grant covers 127.0.0.2:*",
            "err WSAECONNRESET",
            "ok s2",
            "ok",
            "ok s3 127.0.0.1:*",
        ],
    );
}

#[test]
fn accept_past_the_socket_quota_is_wsaemfile_and_the_connection_waits() {
    let three = format!("{LOOPBACK}\n[limits]\nmax-sockets = 3\n");
    expect(
        &three,
        &[
            "socket 2 1 6",
            "bind s0 127.0.0.1:0",
            "listen s0 4",
            "socket 2 1 6",
            "socket 2 1 6",
            "connect s1 @s0",
            "accept s0",
            "close s2",
            "accept s0",
        ],
        &[
            "*",
            "*",
            "*",
            "ok s1",
            "ok s2",
            "ok",
            "err WSAEMFILE",
            "ok",
            "ok s3 127.0.0.1:*",
        ],
    );
}

#[test]
fn a_blocking_connect_to_a_closed_port_is_wsaeconnrefused_and_may_be_retried() {
    let closed = closed_port();
    let refused = format!("connect s0 127.0.0.1:{}", closed.port);
    expect(
        LOOPBACK,
        &[
            "socket 2 1 6",
            &refused,
            "socket 2 1 6",
            "bind s1 127.0.0.1:0",
            "listen s1 1",
            "connect s0 @s1",
            "peer s0",
        ],
        &[
            "*",
            "err WSAECONNREFUSED",
            "*",
            "*",
            "*",
            "ok",
            "ok 127.0.0.1:*",
        ],
    );
}

#[test]
fn a_non_blocking_connect_completes_in_the_background() {
    let closed = closed_port();
    let refused = format!("connect s3 127.0.0.1:{}", closed.port);
    expect(
        LOOPBACK,
        &[
            "socket 2 1 6",
            "bind s0 127.0.0.1:0",
            "listen s0 4",
            "socket 2 1 6",
            "nonblock s1 on",
            "connect s1 @s0",
            "await-connect s1",
            "connect s1 @s0",
            "send s1 hi",
            "socket 2 1 6",
            "nonblock s2 on",
            "socket 2 1 6",
            "nonblock s3 on",
            &refused,
            "await-connect s3",
            "getopt s3 error",
        ],
        &[
            "*",
            "*",
            "*",
            "*",
            "ok",
            "err WSAEWOULDBLOCK",
            "ok",
            "err WSAEISCONN",
            "ok 2",
            "*",
            "*",
            "*",
            "*",
            "err WSAEWOULDBLOCK",
            "err WSAECONNREFUSED",
            "ok none",
        ],
    );
}

#[test]
fn connecting_to_the_wildcard_address_is_wsaeaddrnotavail() {
    expect(
        LOOPBACK,
        &[
            "socket 2 1 6",
            "connect s0 0.0.0.0:80",
            "connect s0 127.0.0.1:0",
        ],
        &["*", "err WSAEADDRNOTAVAIL", "err WSAEADDRNOTAVAIL"],
    );
}

#[test]
fn recv_reports_graceful_close_as_empty_and_peeks_without_consuming() {
    expect(
        LOOPBACK,
        &[
            "socket 2 1 6",
            "bind s0 127.0.0.1:0",
            "listen s0 4",
            "socket 2 1 6",
            "connect s1 @s0",
            "accept s0",
            "nonblock s2 on",
            "recv s2 10",
            "send s1 hello",
            "nonblock s2 off",
            "recv s2 5 peek waitall",
            "fionread s2",
            "recv s2 5 waitall",
            "close s1",
            "recv s2 10",
        ],
        &[
            "*",
            "*",
            "*",
            "*",
            "*",
            "*",
            "ok",
            "err WSAEWOULDBLOCK",
            "ok 5",
            "ok",
            "ok \"hello\"",
            "ok 5",
            "ok \"hello\"",
            "ok",
            "ok \"\"",
        ],
    );
}

#[test]
fn recv_after_shutdown_receive_is_wsaeshutdown() {
    expect(
        LOOPBACK,
        &[
            "socket 2 1 6",
            "bind s0 127.0.0.1:0",
            "listen s0 4",
            "socket 2 1 6",
            "connect s1 @s0",
            "shutdown s1 receive",
            "recv s1 1",
            "send s1 still",
        ],
        &["*", "*", "*", "*", "*", "ok", "err WSAESHUTDOWN", "ok 5"],
    );
}

#[test]
fn datagrams_from_peers_outside_the_recv_from_grants_are_dropped() {
    let from_127_0_0_1 = r#"
protocols = ["udp"]
[grants]
bind = [{ addr = "127.0.0.0/8" }]
send-to = [{ addr = "127.0.0.1" }]
recv-from = [{ addr = "127.0.0.1" }]
"#;
    expect(
        from_127_0_0_1,
        &[
            "socket 2 2 17",
            "bind s0 127.0.0.1:0",
            "socket 2 2 17",
            "bind s1 127.0.0.2:0",
            "socket 2 2 17",
            "bind s2 127.0.0.1:0",
            "sendto s1 @s0 stranger",
            "sendto s2 @s0 friend",
            "recvfrom s0 100",
            "nonblock s0 on",
            "recv s0 100",
        ],
        &[
            "*",
            "*",
            "*",
            "*",
            "*",
            "*",
            "ok 8",
            "ok 6",
            "ok \"friend\" 127.0.0.1:*",
            "ok",
            "err WSAEWOULDBLOCK",
        ],
    );
}

#[test]
fn a_datagram_larger_than_the_receive_buffer_is_wsaemsgsize() {
    expect(
        LOOPBACK,
        &[
            "socket 2 2 17",
            "bind s0 127.0.0.1:0",
            "sendto s0 @s0 toolong",
            "recv s0 3",
            "sendto s0 @s0 ok",
            "recv s0 3",
        ],
        &["*", "*", "ok 7", "err WSAEMSGSIZE", "ok 2", "ok \"ok\""],
    );
}

#[test]
fn recv_on_an_unbound_datagram_socket_is_wsaeinval() {
    expect(
        LOOPBACK,
        &["socket 2 2 17", "recv s0 10", "recvfrom s0 10"],
        &["*", "err WSAEINVAL", "err WSAEINVAL"],
    );
}

#[test]
fn options_read_back_and_read_only_options_are_wsaenoprotoopt() {
    expect(
        LOOPBACK,
        &[
            "socket 2 1 6",
            "getopt s0 nodelay",
            "setopt s0 nodelay on",
            "getopt s0 nodelay",
            "setopt s0 linger 3",
            "getopt s0 linger",
            "getopt s0 broadcast",
            "setopt s0 max-msg-size 10",
            "getopt s0 max-msg-size",
            "getopt s0 error",
            "getopt s0 acceptconn",
            "socket 2 2 17",
            "setopt s1 broadcast on",
            "getopt s1 broadcast",
            "setopt s1 nodelay on",
            "setopt s1 oob-inline on",
            "setopt #999 max-msg-size 1",
        ],
        &[
            "*",
            "ok false",
            "ok",
            "ok true",
            "ok",
            "ok Some(3)",
            "err WSAENOPROTOOPT",
            "err WSAENOPROTOOPT",
            "ok 0",
            "ok none",
            "ok false",
            "*",
            "ok",
            "ok true",
            "err WSAENOPROTOOPT",
            "err WSAENOPROTOOPT",
            "err WSAENOTSOCK",
        ],
    );
}

#[test]
fn names_of_unbound_and_unconnected_sockets_are_errors() {
    expect(
        LOOPBACK,
        &[
            "socket 2 1 6",
            "name s0",
            "peer s0",
            "bind s0 127.0.0.1:0",
            "name s0",
        ],
        &[
            "*",
            "err WSAEINVAL",
            "err WSAENOTCONN",
            "ok",
            "ok 127.0.0.1:*",
        ],
    );
}

#[test]
fn oob_data_is_read_apart_unless_so_oobinline() {
    expect(
        LOOPBACK,
        &[
            "socket 2 1 6",
            "bind s0 127.0.0.1:0",
            "listen s0 4",
            "socket 2 1 6",
            "connect s1 @s0",
            "accept s0",
            "setopt s2 oob-inline on",
            "send s1 ab",
            "send s1 U oob",
            "recv s2 3 waitall",
            "recv s2 1 oob",
        ],
        &[
            "*",
            "*",
            "*",
            "*",
            "*",
            "*",
            "ok",
            "ok 2",
            "ok 1",
            "ok \"abU\"",
            "err WSAEINVAL",
        ],
    );
}

#[test]
fn ipv6_loopback_works_end_to_end() {
    expect(
        LOOPBACK,
        &[
            "socket 23 1 6",
            "bind s0 [::1]:0",
            "listen s0 4",
            "socket 23 1 6",
            "connect s1 @s0",
            "accept s0",
            "send s1 six",
            "recv s2 3 waitall",
        ],
        &[
            "*",
            "ok",
            "ok",
            "*",
            "ok",
            "ok s2 [::1]:*",
            "ok 3",
            "ok \"six\"",
        ],
    );
}
