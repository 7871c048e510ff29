//! The deny matrix: every use of the network, once with its grant and once
//! without it (all other grants present). A denial is `WSAEACCES` with the
//! missing grant named; refused inbound peers are never seen at all.

use crate::common::{expect, policy, probe};

/// Every grant a loopback test can need, by name.
const GRANTS: [(&str, &str); 8] = [
    ("bind", r#"bind = [{ addr = "127.0.0.0/8" }]"#),
    (
        "implicit-bind",
        r#"bind = [{ addr = "0.0.0.0", ports = "0" }]"#,
    ),
    ("listen", r#"listen = [{ addr = "127.0.0.1" }]"#),
    ("accept", r#"accept = [{ addr = "127.0.0.1" }]"#),
    ("connect", r#"connect = [{ addr = "127.0.0.1" }]"#),
    ("send-to", r#"send-to = [{ addr = "127.0.0.1" }]"#),
    ("recv-from", r#"recv-from = [{ addr = "127.0.0.1" }]"#),
    ("broadcast", r#"broadcast = [{ addr = "255.255.255.255" }]"#),
];

/// A policy with every grant but `without`. TOML forbids repeating a key,
/// so grants of one use are merged.
fn policy_without(without: &str) -> String {
    let mut by_use: Vec<(String, Vec<String>)> = Vec::new();
    for (name, line) in GRANTS {
        if name == without {
            continue;
        }
        let (key, value) = line.split_once(" = ").unwrap();
        let items = value
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        match by_use.iter_mut().find(|(k, _)| k == key) {
            Some((_, list)) => list.push(items),
            None => by_use.push((key.to_string(), vec![items])),
        }
    }
    let mut text = String::from("protocols = [\"tcp\", \"udp\"]\n[grants]\n");
    for (key, items) in by_use {
        text.push_str(&format!("{key} = [{}]\n", items.join(", ")));
    }
    text
}

struct Row {
    grant: &'static str,
    script: &'static [&'static str],
    /// Index of the line that shows the decision.
    at: usize,
    allowed: &'static str,
    denied: &'static str,
    /// The `denial` text when denied (None: the guest never learns).
    reason: Option<&'static str>,
}

const ROWS: &[Row] = &[
    Row {
        grant: "bind",
        script: &["socket 2 1 6", "bind s0 127.0.0.1:0", "denial"],
        at: 1,
        allowed: "ok",
        denied: "err WSAEACCES",
        reason: Some("ok no `bind` grant covers 127.0.0.1:0"),
    },
    Row {
        grant: "implicit-bind",
        script: &[
            "socket 2 2 17",
            "socket 2 2 17",
            "bind s1 127.0.0.1:0",
            "sendto s0 @s1 x",
            "denial",
        ],
        at: 3,
        allowed: "ok 1",
        denied: "err WSAEACCES",
        reason: Some("ok no `bind` grant covers 0.0.0.0:0"),
    },
    Row {
        grant: "listen",
        script: &[
            "socket 2 1 6",
            "bind s0 127.0.0.1:0",
            "listen s0 1",
            "denial",
        ],
        at: 2,
        allowed: "ok",
        denied: "err WSAEACCES",
        reason: Some("ok no `listen` grant covers 127.0.0.1:*"),
    },
    Row {
        grant: "accept",
        script: &[
            "socket 2 1 6",
            "bind s0 127.0.0.1:0",
            "listen s0 1",
            "nonblock s0 on",
            "socket 2 1 6",
            "connect s1 @s0",
            "accept s0",
            "denial",
        ],
        at: 6,
        allowed: "ok s2 127.0.0.1:*",
        denied: "err WSAEWOULDBLOCK",
        reason: Some("ok no `accept` grant covers 127.0.0.1:*"),
    },
    Row {
        grant: "connect",
        script: &[
            "socket 2 1 6",
            "bind s0 127.0.0.1:0",
            "listen s0 1",
            "socket 2 1 6",
            "connect s1 @s0",
            "denial",
        ],
        at: 4,
        allowed: "ok",
        denied: "err WSAEACCES",
        reason: Some("ok no `connect` grant covers 127.0.0.1:*"),
    },
    Row {
        grant: "send-to",
        script: &[
            "socket 2 2 17",
            "bind s0 127.0.0.1:0",
            "socket 2 2 17",
            "bind s1 127.0.0.1:0",
            "sendto s1 @s0 x",
            "denial",
        ],
        at: 4,
        allowed: "ok 1",
        denied: "err WSAEACCES",
        reason: Some("ok no `send-to` grant covers 127.0.0.1:*"),
    },
    Row {
        grant: "recv-from",
        script: &[
            "socket 2 2 17",
            "bind s0 127.0.0.1:0",
            "socket 2 2 17",
            "bind s1 127.0.0.1:0",
            "sendto s1 @s0 x",
            "nonblock s0 on",
            "recvfrom s0 10",
        ],
        at: 6,
        allowed: "ok \"x\" 127.0.0.1:*",
        denied: "err WSAEWOULDBLOCK",
        reason: None,
    },
];

#[test]
fn every_use_is_allowed_with_its_grant_and_denied_without_it() {
    let everything = policy_without("");
    for row in ROWS {
        let mut allowed = vec!["*"; row.script.len()];
        allowed[row.at] = row.allowed;
        expect(&everything, row.script, &allowed);

        let mut denied = vec!["*"; row.script.len()];
        denied[row.at] = row.denied;
        if let Some(reason) = row.reason {
            *denied.last_mut().unwrap() = reason;
        }
        expect(&policy_without(row.grant), row.script, &denied);
    }
}

#[test]
fn broadcast_is_denied_without_its_grant() {
    // Only the denial is exercised: an allowed broadcast would leave this
    // machine. That the grant admits the address is a policy unit test.
    expect(
        &policy_without("broadcast"),
        &[
            "socket 2 2 17",
            "setopt s0 broadcast on",
            "sendto s0 255.255.255.255:9 x",
            "denial",
        ],
        &[
            "*",
            "ok",
            "err WSAEACCES",
            "ok no `broadcast` grant covers 255.255.255.255:9",
        ],
    );
    let granted = policy(&policy_without(""));
    assert!(
        granted
            .check(
                wasp_host::NetUse::Broadcast,
                "255.255.255.255:9".parse().unwrap()
            )
            .is_ok()
    );
}

#[test]
fn each_protocol_needs_its_place_in_the_allow_list() {
    for (protocols, tcp, udp) in [
        ("[\"tcp\", \"udp\"]", "ok s0", "ok s1"),
        ("[\"tcp\"]", "ok s0", "err WSAEACCES"),
        ("[\"udp\"]", "err WSAEACCES", "ok s0"),
        ("[]", "err WSAEACCES", "err WSAEACCES"),
    ] {
        let lines = probe(
            policy(&format!("protocols = {protocols}")),
            &["socket 2 1 6", "socket 2 2 17"],
        );
        assert_eq!(lines, [tcp, udp], "protocols = {protocols}");
    }
}
