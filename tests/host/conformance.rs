//! One conformance world for all languages: the scenarios of
//! `tests/conformance/SCENARIOS.md`, implemented by a guest in Rust, C,
//! Python and JavaScript, each built from source with its SDK and run under
//! the `wasp` CLI with `tests/conformance/policy.toml`. Every language must
//! print the same lines: a difference between languages is a failing test.
//!
//! A language whose toolchain is not installed (its `build.sh` exits 77)
//! says SKIPPED with the reason; `guest-sdk/install-toolchains.sh` installs
//! them all.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::cli::{finish_within, wasp};
use crate::common::{guest, root, skipped};

/// Time for one scenario once the plugin is compiled.
const SCENARIO_DEADLINE: Duration = Duration::from_secs(60);
/// Time for the first run, which compiles a 12 to 19 MB plugin (a debug
/// host on a loaded machine).
const COMPILE_DEADLINE: Duration = Duration::from_secs(300);

/// A language with a wasp SDK.
#[derive(Clone, Copy, Debug)]
enum Language {
    Rust,
    C,
    Python,
    /// componentize-js's StarlingMonkey engine.
    JavaScript,
    /// The QuickJS engine (componentize-qjs), built from the same source.
    JavaScriptQuickJs,
}

impl Language {
    /// The directory of its guest under `tests/conformance/`.
    fn dir(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::C => "c",
            Language::Python => "python",
            Language::JavaScript | Language::JavaScriptQuickJs => "js",
        }
    }

    /// The name of its built guest under `target/conformance/`.
    fn output(self) -> &'static str {
        match self {
            Language::JavaScriptQuickJs => "js-quickjs.wasm",
            Language::Rust => "rust.wasm",
            Language::C => "c.wasm",
            Language::Python => "python.wasm",
            Language::JavaScript => "js.wasm",
        }
    }

    /// The multicast group and port of its guest (each its own, so that
    /// the languages may run at once).
    fn group(self) -> (&'static str, u16) {
        match self {
            Language::Rust => ("239.255.77.1", 40961),
            Language::C => ("239.255.77.2", 40962),
            Language::Python => ("239.255.77.3", 40963),
            Language::JavaScript => ("239.255.77.4", 40964),
            Language::JavaScriptQuickJs => ("239.255.77.5", 40965),
        }
    }
}

/// The guest of `language` built from source, or why it cannot be built
/// here.
fn build(language: Language) -> Result<PathBuf, String> {
    if let Language::Rust = language {
        return Ok(guest("conformance"));
    }
    let out = root().join("target/conformance").join(language.output());
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let script = root()
        .join("tests/conformance")
        .join(language.dir())
        .join("build.sh");
    let output = Command::new("sh")
        .arg(&script)
        .arg(&out)
        .env(
            "WASP_JS_ENGINE",
            match language {
                Language::JavaScriptQuickJs => "quickjs",
                _ => "starlingmonkey",
            },
        )
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => Ok(out),
        Some(77) => Err(stderr.trim().to_string()),
        _ => panic!(
            "{} failed ({}):\n{}\n{stderr}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout)
        ),
    }
}

/// `wasp run PLUGIN --policy tests/conformance/policy.toml -- ARGS`.
fn scenario(plugin: &Path, args: &[&str]) -> Command {
    let mut command = wasp();
    command
        .arg("run")
        .arg(plugin)
        .arg("--policy")
        .arg(root().join("tests/conformance/policy.toml"))
        .arg("--")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// The stdout lines of a scenario that ended (it must have succeeded).
fn succeeded(output: &Output, args: &[&str]) -> Vec<String> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{args:?}: {}\n{stdout}\n{stderr}",
        output.status
    );
    stdout.lines().map(str::to_string).collect()
}

/// Runs a scenario to its end: its stdout lines (it must succeed).
fn run(plugin: &Path, args: &[&str], deadline: Duration) -> Vec<String> {
    let output = finish_within(scenario(plugin, args).spawn().unwrap(), deadline);
    succeeded(&output, args)
}

/// A port free on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `tcp-echo PORT`: a client sends 18 bytes, reads them back and shuts
/// its side down.
fn tcp_echo(plugin: &Path) -> (Vec<String>, u16) {
    let port = free_port();
    let args = ["tcp-echo", &port.to_string()];
    let child = scenario(plugin, &args).spawn().unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let start = Instant::now();
    let mut client = loop {
        match TcpStream::connect(addr) {
            Ok(client) => break client,
            Err(_) if start.elapsed() < SCENARIO_DEADLINE => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("the tcp-echo guest never listened: {e}"),
        }
    };
    client.set_read_timeout(Some(SCENARIO_DEADLINE)).unwrap();
    client.write_all(b"hello, conformance").unwrap();
    let mut echoed = [0; 18];
    client.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"hello, conformance");
    client.shutdown(Shutdown::Write).unwrap();
    let output = finish_within(child, SCENARIO_DEADLINE);
    (succeeded(&output, &args), port)
}

/// `udp PORT`: a peer at PORT answers the guest's datagram with `pong`.
fn udp(plugin: &Path) -> (Vec<String>, u16) {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(SCENARIO_DEADLINE)).unwrap();
    let port = peer.local_addr().unwrap().port();
    let answering = std::thread::spawn(move || {
        let mut buf = [0; 64];
        let (n, from) = peer.recv_from(&mut buf).expect("the guest's datagram");
        assert_eq!(&buf[..n], b"ping");
        peer.send_to(b"pong", from).unwrap();
    });
    let lines = run(plugin, &["udp", &port.to_string()], SCENARIO_DEADLINE);
    answering.join().unwrap();
    (lines, port)
}

/// Every scenario for `language`, each compared with SCENARIOS.md.
fn conformance(language: Language) {
    let plugin = match build(language) {
        Ok(plugin) => plugin,
        Err(reason) => {
            skipped(&format!("{language:?} conformance"), &reason);
            return;
        }
    };
    let closed = free_port().to_string();
    // The first run compiles the plugin into the compile cache.
    assert_eq!(
        run(&plugin, &["denied", &closed], COMPILE_DEADLINE),
        [
            "connect: 10013 WSAEACCES".to_string(),
            format!("denial: no `connect` grant covers 127.0.0.1:{closed}"),
        ],
        "{language:?}: denied"
    );

    let (lines, port) = udp(&plugin);
    assert_eq!(
        lines,
        [format!("received 4 bytes \"pong\" from 127.0.0.1:{port}")],
        "{language:?}: udp"
    );

    let (lines, port) = tcp_echo(&plugin);
    assert_eq!(
        lines,
        [
            format!("listening on 127.0.0.1:{port}"),
            "accepted".to_string(),
            "closed after 18 bytes".to_string(),
        ],
        "{language:?}: tcp-echo"
    );

    let (group, port) = language.group();
    let lines = run(
        &plugin,
        &["multicast", group, &port.to_string()],
        SCENARIO_DEADLINE,
    );
    assert_eq!(
        lines,
        [
            format!("joined {group}:{port}"),
            "received 5 bytes \"hello\"".to_string(),
        ],
        "{language:?}: multicast"
    );
}

#[test]
fn rust_guest_conforms() {
    conformance(Language::Rust);
}

#[test]
fn c_guest_conforms() {
    conformance(Language::C);
}

#[test]
fn python_guest_conforms() {
    conformance(Language::Python);
}

#[test]
fn javascript_guest_conforms() {
    conformance(Language::JavaScript);
}

#[test]
fn javascript_quickjs_guest_conforms() {
    conformance(Language::JavaScriptQuickJs);
}
