//! One policy for both doors: a guest's `wasi:sockets` (Rust's `std::net`)
//! is checked by the same grants as its wasp calls, with the same denial
//! telemetry (issue 13, embedding without a back door).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use crate::cli::wasp_run;
use crate::common::{expect, root};

const LOOPBACK_TCP: &str = r#"
protocols = ["tcp"]
[grants]
# A connect's implicit bind is checked as the wildcard address, port 0.
bind = [{ addr = "127.0.0.1", ports = "*" }, { addr = "0.0.0.0", ports = "0" }]
listen = [{ addr = "127.0.0.1", ports = "*" }]
accept = [{ addr = "127.0.0.1" }]
connect = [{ addr = "127.0.0.1", ports = "1-1023" }]
"#;

#[test]
fn a_std_net_connect_outside_the_grants_is_denied_and_told() {
    expect(
        LOOPBACK_TCP,
        &[
            "std-connect 127.0.0.1:40999",
            "denial",
            "std-bind 127.0.0.1:0",
            "denial",
        ],
        &[
            "ok io-error PermissionDenied",
            "ok no `connect` grant covers 127.0.0.1:40999",
            // TCP only: a UDP socket's bind is refused by the protocol list.
            "ok io-error PermissionDenied",
            "ok protocol `udp` is not in the policy's `protocols`",
        ],
    );
}

#[test]
fn std_net_udp_sends_only_where_the_grants_allow() {
    let udp = r#"
protocols = ["udp"]
[grants]
bind = [{ addr = "127.0.0.1", ports = "*" }]
send-to = [{ addr = "127.0.0.1", ports = "9" }]
"#;
    expect(
        udp,
        &[
            "std-send-to 127.0.0.1:9",
            "std-send-to 127.0.0.1:10",
            "denial",
        ],
        &[
            "ok sent 4",
            "ok io-error PermissionDenied",
            "ok no `send-to` grant covers 127.0.0.1:10",
        ],
    );
}

#[test]
fn a_std_net_server_serves_under_the_policy_through_the_cli() {
    let policy = root().join("examples/policies/echo.toml");
    let mut child = wasp_run("std-echo", &policy)
        .args(["--", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a line").unwrap();
    let addr = first
        .strip_prefix("std-echo: listening on ")
        .unwrap_or_else(|| panic!("{first}"));
    let mut client = TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    client.write_all(b"second door").unwrap();
    let mut echoed = [0; 11];
    client.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"second door");
    child.kill().unwrap();
    child.wait().unwrap();

    // The same guest may not listen where the policy does not grant it.
    let output = wasp_run("std-echo", &policy)
        .args(["--", "127.0.0.2:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("denied: no `bind` grant covers 127.0.0.2:0"),
        "{stderr}"
    );
}

#[test]
fn an_embedders_denial_hook_hears_both_doors() {
    use std::sync::{Arc, Mutex};

    let heard: Arc<Mutex<Vec<String>>> = Arc::default();
    let (mut options, _) = crate::common::captured(
        "probe",
        LOOPBACK_TCP,
        &[
            "socket 2 1 6",
            "connect s0 127.0.0.1:40998",
            "std-connect 127.0.0.1:40997",
        ],
    );
    let log = heard.clone();
    options.on_denial = Some(Arc::new(move |denial| {
        log.lock().unwrap().push(denial.to_string());
    }));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let component = crate::common::component("probe");
    let status = runtime
        .block_on(async {
            tokio::time::timeout(
                crate::common::GUEST_DEADLINE,
                crate::common::host().run(&component, options),
            )
            .await
        })
        .expect("the probe ended in time")
        .expect("the probe ran");
    assert_eq!(status, 0);
    assert_eq!(
        *heard.lock().unwrap(),
        [
            "no `connect` grant covers 127.0.0.1:40998",
            "no `connect` grant covers 127.0.0.1:40997",
        ]
    );
}
