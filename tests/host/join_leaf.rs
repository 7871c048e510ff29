//! WSPJoinLeaf for IP multicast: SPEC JL-1..JL-9 through the probe guest.
//!
//! Network safety: every group is joined and sent to over 127.0.0.1 with
//! TTL 0 (the policy's default ceiling), so nothing leaves this machine.
//! Each test uses its own group and port.

use crate::common::{expect, policy, run_guest};

fn multicast_policy(extra: &str) -> String {
    format!(
        r#"
protocols = ["udp"]
[grants]
bind = [{{ addr = "127.0.0.0/8" }}, {{ addr = "0.0.0.0", ports = "0" }}]
multicast = [{{ group = "239.255.77.0/24", ports = "40000-40999" }}{extra}]
"#
    )
}

const LEAF: &str = "socket 2 2 17 flags=c-leaf,d-leaf";

#[test]
fn jl_1_jl_3_a_c_leaf_joins_the_group_bound_to_its_port_and_is_its_own_leaf() {
    expect(
        &multicast_policy(""),
        &[
            LEAF,
            "name s0",
            "join s0 239.255.77.1:40001",
            "name s0",
            "getopt s0 mcast-ttl",
        ],
        &[
            "ok s0",
            "err WSAEINVAL",
            "ok s0 callee=0",
            "ok 239.255.77.1:40001",
            "ok 0",
        ],
    );
}

#[test]
fn jl_3_the_leaf_is_the_socket_itself_and_sends_to_its_session() {
    // For IP multicast the returned leaf is the socket the call was made
    // on, and a plain send goes to the joined group.
    expect(
        &multicast_policy(""),
        &[
            LEAF,
            LEAF,
            "join s0 239.255.77.20:40020",
            "join s1 239.255.77.20:40020 receiver",
            "send s0 to-the-group",
            "recvfrom s1 100",
        ],
        &[
            "ok s0",
            "ok s1",
            "ok s0 callee=0",
            "ok s1 callee=0",
            "ok 12",
            "ok \"to-the-group\" 127.0.0.1:*",
        ],
    );
}

#[test]
fn jl_1_a_leafs_implicit_bind_shares_the_group_port_with_the_guests_own_socket() {
    // Issue 9 point 8: s0 is bound to the wildcard on the group port and
    // joins; s1 joins unbound (bound implicitly to the group's address and
    // port). Both receive what a third member sends; s0, which hears
    // unicast on its port too, still refuses a sender the policy's
    // `recv-from` grants do not name (its filter tells the group's
    // datagrams from unicast ones by their destination).
    let policy = r#"
protocols = ["udp"]
[grants]
bind = [{ addr = "127.0.0.0/8" }, { addr = "0.0.0.0", ports = "0" }, { addr = "0.0.0.0", ports = "40031" }]
send-to = [{ addr = "127.0.0.1", ports = "40031" }]
multicast = [{ group = "239.255.77.31", ports = "40031" }]
"#;
    expect(
        policy,
        &[
            LEAF,
            "bind s0 0.0.0.0:40031",
            "join s0 239.255.77.31:40031 receiver",
            LEAF,
            "join s1 239.255.77.31:40031 receiver",
            LEAF,
            "join s2 239.255.77.31:40031 sender",
            "socket 2 2 17",
            "sendto s3 127.0.0.1:40031 unicast",
            "send s2 to-both",
            "recvfrom s0 100",
            "recvfrom s1 100",
            "name s1",
        ],
        &[
            "ok s0",
            "ok",
            "ok s0 callee=0",
            "ok s1",
            "ok s1 callee=0",
            "ok s2",
            "ok s2 callee=0",
            "ok s3",
            "ok 7",
            "ok 7",
            "ok \"to-both\" 127.0.0.1:*",
            "ok \"to-both\" 127.0.0.1:*",
            "ok 239.255.77.31:40031",
        ],
    );
}

#[test]
fn jl_2_members_send_to_the_group_and_all_receivers_get_it() {
    expect(
        &multicast_policy(""),
        &[
            LEAF,
            "join s0 239.255.77.2:40002",
            LEAF,
            "join s1 239.255.77.2:40002",
            "send s1 hello",
            "recvfrom s0 100",
            "recvfrom s1 100",
            "sendto s0 239.255.77.2:40002 again",
            "recv s1 100",
        ],
        &[
            "*",
            "ok s0 callee=0",
            "*",
            "ok s1 callee=0",
            "ok 5",
            "ok \"hello\" 127.0.0.1:40002",
            "ok \"hello\" 127.0.0.1:40002",
            "ok 5",
            "ok \"again\"",
        ],
    );
}

#[test]
fn jl_2_sender_only_and_receiver_only_roles() {
    expect(
        &multicast_policy(""),
        &[
            LEAF,
            "join s0 239.255.77.3:40003 receiver",
            LEAF,
            "join s1 239.255.77.3:40003 sender",
            "name s1",
            "send s1 one-way",
            "recv s0 100",
            "send s0 back",
            "nonblock s1 on",
            "recv s1 100",
        ],
        &[
            "*",
            "ok s0 callee=0",
            "*",
            "ok s1 callee=0",
            "ok 127.0.0.1:*",
            "ok 7",
            "ok \"one-way\"",
            "err WSAESHUTDOWN",
            "ok",
            "err WSAEWOULDBLOCK",
        ],
    );
}

#[test]
fn jl_5_a_registered_socket_gets_fd_connect_when_the_join_completes() {
    expect(
        &multicast_policy(""),
        &[
            "queue 8",
            LEAF,
            "select s0 q0 3 connect",
            "join s0 239.255.77.5:40005",
            "get q0 10000",
        ],
        &[
            "*",
            "*",
            "ok",
            "ok s0 callee=0",
            "ok msg=3 s=s0 event=connect error=none lparam=0x10",
        ],
    );
}

#[test]
fn jl_6_a_second_join_is_wsaeisconn() {
    expect(
        &multicast_policy(""),
        &[
            LEAF,
            "join s0 239.255.77.6:40006",
            "join s0 239.255.77.6:40006",
            "join s0 239.255.77.7:40006",
        ],
        &["*", "ok s0 callee=0", "err WSAEISCONN", "err WSAEISCONN"],
    );
}

#[test]
fn jl_7_caller_data_is_not_supported_by_ip_multicast() {
    expect(
        &multicast_policy(""),
        &[
            LEAF,
            "join s0 239.255.77.7:40007 data=hello",
            "join s0 239.255.77.7:40007",
        ],
        &["*", "err WSAEPROTONOSUPPORT", "ok s0 callee=0"],
    );
}

#[test]
fn jl_8_the_sending_qos_is_met_when_wasp_can_shape_it_and_overrides_sio_set_qos() {
    // Guaranteed service needs a reservation wasp cannot make; controlled
    // load at 1,000 B/s is shaped, and replaces the flow set before.
    expect(
        &multicast_policy(""),
        &[
            LEAF,
            "qos s0 set 5000 5000",
            "join s0 239.255.77.8:40008 sqos=guaranteed",
            "qos s0 get",
            "join s0 239.255.77.8:40008 sqos=controlled-load",
            "qos s0 get",
        ],
        &[
            "*",
            "ok",
            "err WSAEOPNOTSUPP",
            "ok rate=5000 bucket=5000 service=ServiceType::ControlledLoad",
            "ok s0 callee=0",
            "ok rate=1000 bucket=1000 service=ServiceType::ControlledLoad",
        ],
    );
}

#[test]
fn jl_8_a_sending_flow_above_the_policys_send_rate_cannot_be_met() {
    let policy = format!("{}\n[limits]\nmax-send-rate = 500\n", multicast_policy(""));
    expect(
        &policy,
        &[
            LEAF,
            "join s0 239.255.77.8:40008 sqos=controlled-load",
            "join s0 239.255.77.8:40008 sqos=best-effort",
        ],
        &["*", "err WSAEOPNOTSUPP", "ok s0 callee=0"],
    );
}

#[test]
fn jl_9_errors_of_the_call() {
    expect(
        &multicast_policy(""),
        &[
            "join #4242 239.255.77.9:40009",
            LEAF,
            "join s0 0.0.0.0:40009",
            "join s0 239.255.77.9:0",
            "join s0 127.0.0.1:40009",
            "join s0 [ff15::9]:40009",
            "socket 2 2 17",
            "join s1 239.255.77.9:40009",
        ],
        &[
            "err WSAENOTSOCK",
            "ok s0",
            "err WSAEADDRNOTAVAIL",
            "err WSAEADDRNOTAVAIL",
            "err WSAEADDRNOTAVAIL",
            "err WSAEAFNOSUPPORT",
            "ok s1",
            "err WSAEOPNOTSUPP",
        ],
    );
}

#[test]
fn a_group_outside_the_grants_is_wsaeacces_and_nothing_is_joined() {
    expect(
        &multicast_policy(""),
        &[
            LEAF,
            "join s0 239.1.2.3:40010",
            "denial",
            "name s0",
            "join s0 239.255.77.10:41000",
            "denial",
        ],
        &[
            "*",
            "err WSAEACCES",
            "ok no `multicast` grant covers 239.1.2.3:40010",
            "err WSAEINVAL",
            "err WSAEACCES",
            "ok no `multicast` grant covers 239.255.77.10:41000",
        ],
    );
}

#[test]
fn the_ttl_stays_under_the_policy_ceiling() {
    expect(
        &multicast_policy(r#", { group = "239.255.78.0/24", max-ttl = 2 }"#),
        &[
            LEAF,
            "join s0 239.255.77.11:40011",
            "setopt s0 mcast-ttl 1",
            "denial",
            "setopt s0 mcast-ttl 0",
            "socket 2 2 17",
            "sendto s1 239.255.77.11:40011 x",
            "getopt s1 mcast-ttl",
            "setopt s1 mcast-ttl 3",
            "setopt s1 mcast-ttl 2",
            LEAF,
            "join s2 239.255.78.1:40011",
            "setopt s2 mcast-ttl 2",
            "setopt s2 mcast-ttl 3",
        ],
        &[
            "*",
            "ok s0 callee=0",
            "err WSAEACCES",
            "ok multicast TTL 1 is above the ceiling 0",
            "ok",
            "*",
            "ok 1",
            "ok 0",
            "err WSAEACCES",
            "ok",
            "*",
            "ok s2 callee=0",
            "ok",
            "err WSAEACCES",
        ],
    );
}

#[test]
fn the_grants_source_filter_drops_other_senders() {
    let only_127_0_0_2 = r#"
protocols = ["udp"]
[grants]
bind = [{ addr = "127.0.0.0/8" }]
multicast = [{ group = "239.255.77.12", ports = "40012", source = "127.0.0.2" }]
"#;
    expect(
        only_127_0_0_2,
        &[
            LEAF,
            "join s0 239.255.77.12:40012 receiver",
            "socket 2 2 17",
            "bind s1 127.0.0.1:0",
            "sendto s1 239.255.77.12:40012 stranger",
            "socket 2 2 17",
            "bind s2 127.0.0.2:0",
            "sendto s2 239.255.77.12:40012 friend",
            "recvfrom s0 100",
        ],
        &[
            "*",
            "ok s0 callee=0",
            "*",
            "ok",
            "ok 8",
            "*",
            "ok",
            "ok 6",
            "ok \"friend\" 127.0.0.2:*",
        ],
    );
}

#[test]
fn two_guests_find_each_other_over_a_loopback_group() {
    let toml = multicast_policy("");
    let group = "239.255.77.13:40013";
    let listener_policy = policy(&toml);
    let listener = std::thread::spawn(move || {
        run_guest(
            "probe",
            listener_policy,
            &[
                LEAF,
                "join s0 239.255.77.13:40013",
                "recvfrom s0 100",
                "sendto s0 239.255.77.13:40013 ack",
            ],
        )
    });
    // The caller repeats until the listener has joined, heard and answered.
    let call = format!("call s0 {group} hello ack 200 50");
    let caller = run_guest(
        "probe",
        policy(&toml),
        &[LEAF, "join s0 239.255.77.13:40013", &call],
    );
    assert_eq!(caller.status, 0, "{}", caller.stderr);
    assert!(
        caller.stdout[2].starts_with("ok \"ack\" from 127.0.0.1:40013"),
        "{:?}",
        caller.stdout
    );
    let heard = listener.join().unwrap();
    assert_eq!(heard.status, 0, "{}", heard.stderr);
    assert!(
        heard.stdout[2].starts_with("ok \"hello\" 127.0.0.1:40013"),
        "{:?}",
        heard.stdout
    );
}

/// A rooted multipoint socket (wasp's protocol 253 over TCP).
const ROOT: &str = "socket 2 1 253 flags=c-root,d-root";
const RLEAF: &str = "socket 2 1 253 flags=c-leaf,d-leaf";

#[test]
fn jl_4_jl_5_jl_7_a_rooted_session_with_three_leaves() {
    expect(
        crate::common::LOOPBACK,
        &[
            "queue 32",
            ROOT,
            "setopt s0 conndata welcome",
            "bind s0 127.0.0.1:0",
            "listen s0 8",
            "select s0 q0 1 accept",
            RLEAF,
            RLEAF,
            RLEAF,
            // Leaf one joins without blocking: the descriptor comes back at
            // once, the outcome later as FD_CONNECT (JL-5).
            "select s1 q0 2 connect read close",
            "join s1 @s0 data=leaf-one",
            "join s1 @s0",
            "get q0 10000",
            "accept s0",
            "getopt s4 conndata",
            "get q0 10000",
            "getopt s1 conndata",
            "join s1 @s0",
            // Leaves two and three.
            // FD_ACCEPT comes once a joiner's caller data is in.
            "select s2 q0 3 connect read",
            "join s2 @s0 data=leaf-two",
            "await q0 s0 accept 10000",
            "accept s0",
            "select s3 q0 4 connect read",
            "join s3 @s0 data=leaf-three",
            "await q0 s0 accept 10000",
            "accept s0",
            "getopt s5 conndata",
            "getopt s6 conndata",
            "await q0 s2 connect 10000",
            "await q0 s3 connect 10000",
            // The root's data reaches every leaf.
            "send s0 feed",
            "await q0 s1 read 10000",
            "recv s1 4",
            "await q0 s2 read 10000",
            "recv s2 4",
            "await q0 s3 read 10000",
            "recv s3 4",
            // A leaf's data reaches the root on its c_leaf descriptor.
            "select s5 q0 5 read close",
            "send s2 up",
            "await q0 s5 read 10000",
            "recv s5 10",
            // A leaf leaves: its c_leaf descriptor gets FD_CLOSE.
            "close s2",
            "await q0 s5 close 10000",
            // The root drops a leaf: the leaf gets FD_CLOSE.
            "close s4",
            "await q0 s1 close 10000",
        ],
        &[
            "ok q0",
            "ok s0",
            "ok",
            "ok",
            "ok",
            "ok",
            "ok s1",
            "ok s2",
            "ok s3",
            "ok",
            "ok s1 callee=0",
            "err WSAEALREADY",
            "ok msg=1 s=s0 event=accept error=none lparam=0x8",
            "ok s4 127.0.0.1:*",
            "ok \"leaf-one\"",
            "ok msg=2 s=s1 event=connect error=none lparam=0x10",
            "ok \"welcome\"",
            "err WSAEISCONN",
            "ok",
            "ok s2 callee=0",
            "ok msg=1 s=s0 event=accept error=none lparam=0x8",
            "ok s5 127.0.0.1:*",
            "ok",
            "ok s3 callee=0",
            "ok msg=1 s=s0 event=accept error=none lparam=0x8",
            "ok s6 127.0.0.1:*",
            "ok \"leaf-two\"",
            "ok \"leaf-three\"",
            "ok msg=3 s=s2 event=connect error=none lparam=0x10",
            "ok msg=4 s=s3 event=connect error=none lparam=0x10",
            "ok 4",
            "ok msg=2 s=s1 event=read error=none lparam=0x1",
            "ok \"feed\"",
            "ok msg=3 s=s2 event=read error=none lparam=0x1",
            "ok \"feed\"",
            "ok msg=4 s=s3 event=read error=none lparam=0x1",
            "ok \"feed\"",
            "ok",
            "ok 2",
            "ok msg=5 s=s5 event=read error=none lparam=0x1",
            "ok \"up\"",
            "ok",
            "ok msg=5 s=s5 event=close error=none lparam=0x20",
            "ok",
            "ok msg=2 s=s1 event=close error=none lparam=0x20",
        ],
    );
}

#[test]
fn jl_4_a_root_adds_a_leaf_and_gets_a_new_c_leaf_descriptor() {
    expect(
        crate::common::LOOPBACK,
        &[
            "queue 8",
            RLEAF,
            "setopt s0 conndata leaf-hello",
            "bind s0 127.0.0.1:0",
            "listen s0 4",
            ROOT,
            "select s1 q0 1 connect",
            "join s1 @s0 data=root-hello",
            "join s1 @s0",
            "accept s0",
            "getopt s3 conndata",
            "get q0 10000",
            "getopt s2 conndata",
            "send s1 feed",
            "recv s3 4 waitall",
        ],
        &[
            "ok q0",
            "ok s0",
            "ok",
            "ok",
            "ok",
            "ok s1",
            "ok",
            "ok s2 callee=0",
            "err WSAEALREADY",
            "ok s3 127.0.0.1:*",
            "ok \"root-hello\"",
            "ok msg=1 s=s1 event=connect error=none lparam=0x10",
            "ok \"leaf-hello\"",
            "ok 4",
            "ok \"feed\"",
        ],
    );
}

#[test]
fn jl_6_a_failed_rooted_join_may_be_retried_and_jl_9_callee_data_too_large_is_wsaefault() {
    let closed = crate::common::closed_port();
    let refused = format!("join s1 127.0.0.1:{}", closed.port);
    expect(
        crate::common::LOOPBACK,
        &[
            "queue 8",
            ROOT,
            "bind s0 127.0.0.1:0",
            "listen s0 4",
            RLEAF,
            "select s1 q0 2 connect",
            &refused,
            "get q0 10000",
            "join s1 @s0",
            "accept s0",
            "get q0 10000",
            // A root whose callee data is larger than the leaf can take.
            ROOT,
            "setopt s3 conndata @100",
            "bind s3 127.0.0.1:0",
            "listen s3 4",
            RLEAF,
            "select s4 q0 4 connect",
            "join s4 @s3",
            "accept s3",
            "get q0 10000",
            "join s4 127.0.0.1:0",
            "socket 2 1 6",
            "join s6 @s0",
        ],
        &[
            "ok q0",
            "ok s0",
            "ok",
            "ok",
            "ok s1",
            "ok",
            "ok s1 callee=0",
            "ok msg=2 s=s1 event=connect error=WSAECONNREFUSED lparam=0x274d0010",
            "ok s1 callee=0",
            "ok s2 127.0.0.1:*",
            "ok msg=2 s=s1 event=connect error=none lparam=0x10",
            "ok s3",
            "ok",
            "ok",
            "ok",
            "ok s4",
            "ok",
            "ok s4 callee=0",
            "ok s5 127.0.0.1:*",
            "ok msg=4 s=s4 event=connect error=WSAEFAULT lparam=0x271e0010",
            "err WSAEADDRNOTAVAIL",
            "ok s6",
            "err WSAEOPNOTSUPP",
        ],
    );
}

#[test]
fn a_rooted_join_needs_a_connect_grant() {
    let no_connect = r#"
protocols = ["tcp"]
[grants]
bind = [{ addr = "127.0.0.1" }, { addr = "0.0.0.0", ports = "0" }]
listen = [{ addr = "127.0.0.1" }]
"#;
    expect(
        no_connect,
        &[
            ROOT,
            "bind s0 127.0.0.1:0",
            "listen s0 4",
            RLEAF,
            "join s1 @s0 data=x",
            "denial",
            "getopt s1 conndata",
        ],
        &[
            "ok s0",
            "ok",
            "ok",
            "ok s1",
            "err WSAEACCES",
            "ok no `connect` grant covers 127.0.0.1:*",
            "ok \"\"",
        ],
    );
}

#[test]
fn jl_5_closing_the_returned_descriptor_cancels_the_join() {
    expect(
        crate::common::LOOPBACK,
        &[
            "queue 8",
            RLEAF,
            "bind s0 127.0.0.1:0",
            "listen s0 4",
            ROOT,
            "select s1 q0 1 connect",
            "join s1 @s0",
            "join s1 @s0",
            "close s2",
            "join s1 @s0",
            // The cancelled join's connection was reset: an accept may still
            // take it (its handshake data arrived first) or drop it unseen.
            "nonblock s0 on",
            "sleep 100",
            "accept s0",
            "accept s0",
            "await q0 s1 connect 10000",
        ],
        &[
            "ok q0",
            "ok s0",
            "ok",
            "ok",
            "ok s1",
            "ok",
            "ok s2 callee=0",
            "err WSAEALREADY",
            "ok",
            "ok s3 callee=0",
            "ok",
            "ok",
            "*",
            "*",
            "ok msg=1 s=s1 event=connect error=none lparam=0x10",
        ],
    );
}

#[test]
fn a_stalled_leaf_is_dropped_from_the_root_s_fan_out() {
    expect(
        crate::common::LOOPBACK,
        &[
            "queue 8",
            ROOT,
            "setopt s0 rcvbuf 4096",
            "bind s0 127.0.0.1:0",
            "listen s0 4",
            RLEAF,
            "setopt s1 rcvbuf 4096",
            "select s1 q0 2 connect close",
            "join s1 @s0",
            "accept s0",
            "await q0 s1 connect 10000",
            // The leaf does not read: after FANOUT_STALL the root gives up
            // on it (it was the only leaf) and resets it; once the leaf has
            // read what arrived, it sees FD_CLOSE.
            "send s0 @8000000",
            "drain s1 100000000",
            "await q0 s1 close 10000",
        ],
        &[
            "*",
            "*",
            "ok",
            "ok",
            "ok",
            "*",
            "ok",
            "ok",
            "ok s1 callee=0",
            "ok s2 127.0.0.1:*",
            "ok msg=2 s=s1 event=connect error=none lparam=0x10",
            "err WSAENOTCONN",
            "*",
            "ok msg=2 s=s1 event=close error=*",
        ],
    );
}
