//! WSPSocket: SPEC SO-1..SO-9, through the probe guest.

use crate::common::{LOOPBACK, expect, policy, probe};

#[test]
fn so_1_creates_tcp_and_udp_sockets_of_both_families() {
    expect(
        LOOPBACK,
        &[
            "socket 2 1 6",
            "socket 2 2 17",
            "socket 23 1 6",
            "socket 23 2 17",
            "getopt s0 type",
            "getopt s1 type",
            "getopt s3 protocol-info",
        ],
        &[
            "ok s0",
            "ok s1",
            "ok s2",
            "ok s3",
            "ok 1",
            "ok 2",
            "ok 1004 wasp UDP/IPv6",
        ],
    );
}

#[test]
fn so_1_a_failed_call_leaves_no_descriptor() {
    // With room for one socket, failures must not use it up.
    let one = format!("{LOOPBACK}\n[limits]\nmax-sockets = 1\n");
    expect(
        &one,
        &[
            "socket 99 1 6",
            "socket 2 1 17",
            "socket 2 1 6",
            "socket 2 1 6",
        ],
        &[
            "err WSAEAFNOSUPPORT",
            "err WSAEPROTOTYPE",
            "ok s0",
            "err WSAEMFILE",
        ],
    );
}

#[test]
fn so_2_unknown_family_is_wsaeafnosupport() {
    expect(
        LOOPBACK,
        &["socket 99 1 6", "socket 1 1 0"],
        &["err WSAEAFNOSUPPORT", "err WSAEAFNOSUPPORT"],
    );
}

#[test]
fn so_2_unsupported_type_is_wsaesocktnosupport() {
    expect(
        LOOPBACK,
        &["socket 2 42 0", "socket 2 4 0", "socket 2 5 0"],
        &["err WSAESOCKTNOSUPPORT"; 3],
    );
}

#[test]
fn so_2_unknown_protocol_is_wsaeprotonosupport() {
    expect(
        LOOPBACK,
        &["socket 2 1 132", "socket 2 2 1"],
        &["err WSAEPROTONOSUPPORT"; 2],
    );
}

#[test]
fn so_2_protocol_of_the_wrong_type_is_wsaeprototype() {
    expect(
        LOOPBACK,
        &["socket 2 1 17", "socket 2 2 6", "socket 23 1 17"],
        &["err WSAEPROTOTYPE"; 3],
    );
}

#[test]
fn so_2_nonzero_group_is_wsaeinval() {
    expect(
        LOOPBACK,
        &["socket 2 1 6 g=1", "socket 2 2 17 g=7"],
        &["err WSAEINVAL"; 2],
    );
}

#[test]
fn so_2_socket_quota_is_wsaemfile_and_closing_frees_a_slot() {
    let two = format!("{LOOPBACK}\n[limits]\nmax-sockets = 2\n");
    expect(
        &two,
        &[
            "socket 2 1 6",
            "socket 2 2 17",
            "socket 2 1 6",
            "close s0",
            "socket 2 1 6",
        ],
        &["ok s0", "ok s1", "err WSAEMFILE", "ok", "ok s2"],
    );
}

#[test]
fn so_2_protocol_outside_the_policy_is_wsaeacces_with_a_reason() {
    let tcp_only = r#"protocols = ["tcp"]"#;
    expect(
        tcp_only,
        &["socket 2 2 17", "denial", "socket 2 1 6"],
        &[
            "err WSAEACCES",
            "ok protocol `udp` is not in the policy's `protocols`",
            "ok s0",
        ],
    );
}

#[test]
fn so_3_sockets_are_not_overlapped_unless_asked() {
    expect(
        LOOPBACK,
        &[
            "queue 8",
            "socket 2 2 17",
            "bind s0 127.0.0.1:0",
            "sendto s0 @s0 hi ov=q0:1",
            "socket 2 2 17 flags=overlapped",
            "sendto s1 @s0 hi ov=q0:1",
            "overlapped s1 1",
        ],
        &[
            "ok q0",
            "ok s0",
            "ok",
            "err WSAEINVAL",
            "ok s1",
            "ok 2",
            "ok 2",
        ],
    );
}

#[test]
fn so_4_wildcard_family_and_type_resolve_from_the_catalogue() {
    expect(
        LOOPBACK,
        &[
            "socket 0 0 0",
            "getopt s0 protocol-info",
            "socket 0 2 0",
            "getopt s1 protocol-info",
            "socket 23 0 17",
            "getopt s2 protocol-info",
            "socket 0 0 17",
            "getopt s3 protocol-info",
        ],
        &[
            "ok s0",
            "ok 1001 wasp TCP/IPv4",
            "ok s1",
            "ok 1002 wasp UDP/IPv4",
            "ok s2",
            "ok 1004 wasp UDP/IPv6",
            "ok s3",
            "ok 1002 wasp UDP/IPv4",
        ],
    );
}

#[test]
fn so_4_an_info_with_no_or_an_unknown_family_is_refused() {
    // Issue 9 point 7: a value taken from the protocol info is never a
    // wildcard resolved from the catalogue's defaults.
    expect(
        LOOPBACK,
        &[
            "socket -1 -1 -1 info=1001:0:1:6",
            "socket -1 -1 -1 info=1001:99:1:6",
            "socket -1 1 6 info=1003:0:1:6",
            "socket 2 -1 6 info=1001:2:0:6",
            "socket 2 1 -1 info=1001:2:1:0",
            "socket 0 0 0 info=1001:0:0:0",
        ],
        &[
            "err WSAEAFNOSUPPORT",
            "err WSAEAFNOSUPPORT",
            "err WSAEAFNOSUPPORT",
            "err WSAESOCKTNOSUPPORT",
            "err WSAEPROTONOSUPPORT",
            "ok s0",
        ],
    );
}

#[test]
fn so_4_from_protocol_info_takes_the_values_of_the_info() {
    expect(
        LOOPBACK,
        &[
            "socket -1 -1 -1 info=1003",
            "getopt s0 protocol-info",
            "socket -1 2 -1 info=1001:23:2:17",
            "getopt s1 protocol-info",
            "socket -1 1 6",
            "socket 2 1 6 info=9999",
        ],
        &[
            "ok s0",
            "ok 1003 wasp TCP/IPv6",
            "ok s1",
            "ok 1004 wasp UDP/IPv6",
            "err WSAEFAULT",
            "err WSAEINVAL",
        ],
    );
}

#[test]
fn so_5_multipoint_flags_are_checked_against_the_catalogue() {
    expect(
        LOOPBACK,
        &[
            "socket 2 2 17 flags=c-leaf,d-leaf",
            "socket 2 2 17 flags=c-root,d-leaf",
            "socket 2 2 17 flags=c-leaf,d-root",
            "socket 2 2 17 flags=c-leaf",
            "socket 2 2 17 flags=c-leaf,c-root,d-leaf",
            "socket 2 1 6 flags=c-leaf,d-leaf",
            "socket 2 1 6 flags=overlapped",
        ],
        &[
            "ok s0",
            "err WSAEINVAL",
            "err WSAEINVAL",
            "err WSAEINVAL",
            "err WSAEINVAL",
            "err WSAEINVAL",
            "ok s1",
        ],
    );
}

#[test]
fn so_6_stream_sockets_move_data_only_when_connected_and_in_both_directions() {
    expect(
        LOOPBACK,
        &[
            "socket 2 1 6",
            "send s0 early",
            "recv s0 10",
            "bind s0 127.0.0.1:0",
            "listen s0 4",
            "socket 2 1 6",
            "connect s1 @s0",
            "accept s0",
            "send s1 ping",
            "recv s2 4 waitall",
            "send s2 pong",
            "recv s1 4 waitall",
        ],
        &[
            "ok s0",
            "err WSAENOTCONN",
            "err WSAENOTCONN",
            "ok",
            "ok",
            "ok s1",
            "ok",
            "ok s2 127.0.0.1:*",
            "ok 4",
            "ok \"ping\"",
            "ok 4",
            "ok \"pong\"",
        ],
    );
}

#[test]
fn so_7_datagram_sockets_talk_to_any_peer_until_connected() {
    expect(
        LOOPBACK,
        &[
            "socket 2 2 17",
            "bind s0 127.0.0.1:0",
            "socket 2 2 17",
            "bind s1 127.0.0.1:0",
            "socket 2 2 17",
            "bind s2 127.0.0.1:0",
            // Unconnected: both peers reach s0.
            "sendto s1 @s0 one",
            "sendto s2 @s0 two",
            "recvfrom s0 100",
            "recvfrom s0 100",
            // Connected to s1: send and recv go to and come from s1 only.
            "connect s0 @s1",
            "sendto s2 @s0 ignored",
            "sendto s1 @s0 three",
            "recv s0 100",
            "send s0 four",
            "recv s1 100",
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
            "ok 3",
            "ok 3",
            "ok \"one\" 127.0.0.1:*",
            "ok \"two\" 127.0.0.1:*",
            "ok",
            "ok 7",
            "ok 5",
            "ok \"three\"",
            "ok 4",
            "ok \"four\"",
            "ok",
            "err WSAEWOULDBLOCK",
        ],
    );
}

#[test]
fn so_8_raw_sockets_are_not_offered() {
    expect(
        LOOPBACK,
        &["socket 2 3 0", "socket 23 3 255"],
        &["err WSAESOCKTNOSUPPORT"; 2],
    );
}

#[test]
fn so_9_the_catalogue_is_published_and_filterable() {
    let lines = probe(
        policy(LOOPBACK),
        &[
            "protocols",
            "protocols 17",
            "protocols 6",
            "protocols 99",
            "protocols 253",
        ],
    );
    assert_eq!(
        lines,
        [
            "ok 1001,1002,1003,1004,1005,1006",
            "ok 1002,1004",
            "ok 1001,1003",
            "ok",
            "ok 1005,1006"
        ]
    );
}
