//! End to end with a real containerd: the test starts Debian's
//! `containerd` with its root, state and socket under a temporary
//! directory (the CRI plugin disabled), puts `containerd-shim-wasp-v1` on
//! its `PATH`, and runs wasp plugins with `ctr`:
//!
//! - (a) `ctr run --rootfs` of a directory holding the echo plugin and its
//!   policy, on the host's network: a client echoes through it on
//!   127.0.0.1; a second container's connect that its policy does not
//!   grant is refused and logged; `ctr task kill` (SIGTERM) ends the
//!   plugin with status 143.
//! - (b) an OCI image (an ordinary layer holding the plugin and a policy
//!   that grants it nothing) imported with `ctr images import` and run with
//!   its policy mounted as a Kubernetes ConfigMap is (a directory of
//!   symbolic links) and named by `WASP_POLICY`.
//! - (c) a container without a policy does not start.
//!
//! Where containerd cannot start on the machine, the test says
//! `SKIPPED containerd shim: <reason>` and passes. Everything it starts is
//! stopped by its PID (containerd, and the shims containerd started for
//! its socket); every wait is bounded.

use std::fs;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

/// The runtime name containerd maps to `containerd-shim-wasp-v1`.
const RUNTIME: &str = "io.containerd.wasp.v1";
/// The containerd namespace of the test.
const NAMESPACE: &str = "wasp-shim-test";
/// Longest a `ctr` command (or containerd's start) may take.
const CTR_DEADLINE: Duration = Duration::from_secs(60);
/// Longest a plugin may take to start listening (it is compiled first).
const START_DEADLINE: Duration = Duration::from_secs(120);

/// The echo plugin's policy: listen and accept on loopback.
const ECHO_POLICY: &str = r#"protocols = ["tcp"]
[limits]
max-sockets = 8
[grants]
bind = [{ addr = "127.0.0.1", ports = "*" }]
listen = [{ addr = "127.0.0.1", ports = "*" }]
accept = [{ addr = "127.0.0.1" }]
"#;

/// A policy that lets a plugin create TCP sockets and nothing else.
const NOTHING_POLICY: &str = r#"protocols = ["tcp"]
[grants]
bind = [{ addr = "0.0.0.0", ports = "0" }]
"#;

fn skipped(reason: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED containerd shim: {reason}");
}

/// The workspace root (the shim's parent directory).
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// Builds the echo plugin and the probe guest for `wasm32-wasip2` and
/// returns where the `.wasm` files are.
fn guests() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("guests");
    let status = Command::new(option_env!("CARGO").unwrap_or("cargo"))
        .current_dir(root())
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .args([
            "-p",
            "rust-echo",
            "-p",
            "wasp-test-programs",
            "--bin",
            "probe",
        ])
        .args(["--bin", "rust-echo"])
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .status()
        .expect("running cargo to build the guests");
    assert!(status.success(), "building the guests failed");
    target.join("wasm32-wasip2").join("release")
}

/// Waits for `child` at most `deadline`; past it, kills it by its PID.
fn wait_bounded(child: &mut Child, deadline: Duration, what: &str) -> ExitStatus {
    let end = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for a child") {
            return status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end within {deadline:?}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `command` to its end (at most [`CTR_DEADLINE`]) and returns its
/// output.
fn output_bounded(command: &mut Command, what: &str) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {what}: {e}"));
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let status = wait_bounded(&mut child, CTR_DEADLINE, what);
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Reads a pipe to its end on a thread.
fn drain(mut pipe: impl std::io::Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// A containerd of the test's own.
struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
    socket: PathBuf,
    /// Containers to remove at the end.
    containers: Vec<String>,
}

impl Containerd {
    /// Starts containerd with `shim_dir` first on its `PATH`; `Err` with
    /// the reason where it cannot start here.
    fn start(shim_dir: &Path) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("wasp-ctrd")
            .tempdir()
            .map_err(|e| format!("no temporary directory: {e}"))?;
        let socket = dir.path().join("containerd.sock");
        let config = dir.path().join("config.toml");
        fs::write(
            &config,
            format!(
                "version = 2\nroot = {root:?}\nstate = {state:?}\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = {socket:?}\n\
                 [ttrpc]\n  address = {ttrpc:?}\n",
                root = dir.path().join("root"),
                state = dir.path().join("state"),
                ttrpc = dir.path().join("containerd.sock.ttrpc"),
            ),
        )
        .map_err(|e| format!("writing containerd's configuration: {e}"))?;
        let log = fs::File::create(dir.path().join("containerd.log"))
            .map_err(|e| format!("containerd's log: {e}"))?;
        let path = format!(
            "{}:{}",
            shim_dir.display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into())
        );
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("containerd cannot be started ({e}); shim/test.sh installs it"))?;
        let mut containerd = Self {
            child,
            dir,
            socket,
            containers: Vec::new(),
        };
        let end = Instant::now() + CTR_DEADLINE;
        loop {
            if let Ok(Some(status)) = containerd.child.try_wait() {
                return Err(format!(
                    "containerd exited at its start ({status}): {}",
                    containerd.log_tail()
                ));
            }
            let version = output_bounded(containerd.ctr().arg("version"), "ctr version");
            if version.status.success() {
                return Ok(containerd);
            }
            if Instant::now() > end {
                return Err(format!(
                    "containerd did not answer within {CTR_DEADLINE:?}: {}",
                    containerd.log_tail()
                ));
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// `ctr` talking to this containerd, in the test's namespace.
    fn ctr(&self) -> Command {
        let mut ctr = Command::new("ctr");
        ctr.arg("--address")
            .arg(&self.socket)
            .args(["--namespace", NAMESPACE]);
        ctr
    }

    /// `ctr run` of container `id` (removed after it ends), on the host's
    /// network, with the wasp runtime.
    fn run(&mut self, id: &str) -> Command {
        self.containers.push(id.to_string());
        let mut run = self.ctr();
        run.args(["run", "--rm", "--net-host", "--runtime", RUNTIME]);
        run
    }

    /// The last lines of containerd's log (the shims' lines included).
    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// `ctr` of `args` to its end; panics when it fails.
    fn ctr_ok(&self, args: &[&str]) -> Output {
        let output = output_bounded(self.ctr().args(args), &format!("ctr {args:?}"));
        assert!(
            output.status.success(),
            "ctr {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// PIDs of the processes started for this containerd's socket (the
    /// shims) other than containerd itself.
    fn shim_pids(&self) -> Vec<i32> {
        let needle = self.socket.to_string_lossy().into_owned();
        let mut pids = Vec::new();
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if pid == self.child.id() as i32 {
                continue;
            }
            let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains("containerd-shim-wasp-v1") && cmdline.contains(&needle) {
                pids.push(pid);
            }
        }
        pids
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for id in std::mem::take(&mut self.containers) {
            let _ = output_bounded(
                self.ctr()
                    .args(["task", "kill", "--signal", "SIGKILL", &id]),
                "ctr task kill",
            );
            let _ = output_bounded(self.ctr().args(["task", "delete", &id]), "ctr task delete");
            let _ = output_bounded(
                self.ctr().args(["container", "delete", &id]),
                "ctr container delete",
            );
        }
        // The shims outlive containerd by design: stop those of this
        // socket by their PIDs, then containerd by its own.
        for pid in self.shim_pids() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // The shim keeps its containers' state under
        // /run/containerd/wasp/NAMESPACE: remove the namespace's directory
        // once it is empty.
        let _ = fs::remove_dir(Path::new("/run/containerd/wasp").join(NAMESPACE));
    }
}

/// Sends each line of `pipe` on a channel, from a thread.
fn lines_of(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (send, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if send.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// A running `ctr run` whose stdout and stderr lines arrive on channels.
struct Attached {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    /// The stderr lines taken so far.
    said: Vec<String>,
}

impl Attached {
    fn spawn(command: &mut Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting ctr run");
        let stdout = lines_of(child.stdout.take().unwrap());
        let stderr = lines_of(child.stderr.take().unwrap());
        Self {
            child,
            stdout,
            stderr,
            said: Vec::new(),
        }
    }

    /// Kills `ctr run` and panics with `why` and what it said.
    fn fail(&mut self, why: &str) -> ! {
        let status = self.child.try_wait().ok().flatten();
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.said.extend(self.stderr.try_iter());
        panic!("{why} (ctr: {status:?}): {}", self.said.join("\n"));
    }

    /// The address of the echo plugin's `echo: listening on ADDR` line.
    fn listening(&mut self) -> SocketAddr {
        let end = Instant::now() + START_DEADLINE;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("echo: listening on ") {
                        return addr.trim().parse().expect("the plugin's address");
                    }
                }
                Err(_) => break,
            }
        }
        self.fail(&format!(
            "the plugin did not listen within {START_DEADLINE:?}"
        ))
    }

    /// Waits (at most [`CTR_DEADLINE`]) for a stderr line containing
    /// `text`.
    fn wait_stderr(&mut self, text: &str) {
        let end = Instant::now() + CTR_DEADLINE;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(text);
                    self.said.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        self.fail(&format!("no {text:?} on stderr within {CTR_DEADLINE:?}"))
    }

    /// Waits for `ctr run` to end: its status and everything on its stderr.
    fn end(mut self) -> (ExitStatus, String) {
        let status = wait_bounded(&mut self.child, CTR_DEADLINE, "ctr run");
        // The pipe's writer is gone: the thread sends what is left and
        // ends.
        let end = Instant::now() + CTR_DEADLINE;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.stderr.recv_timeout(left) {
                Ok(line) => self.said.push(line),
                Err(_) => break,
            }
        }
        (status, self.said.join("\n"))
    }

    /// Waits for `ctr run` of container `id` to end after a `ctr task
    /// kill`: the task's exit status and everything on its stderr.
    ///
    /// containerd-shim-wasm holds the task's state while it kills the
    /// container, so a `ctr run` that sees the exit during the kill may
    /// find the task still running and fail to delete it (`task must be
    /// stopped before deletion`). Then `ctr task delete`, once the kill is
    /// over, reports the exit status instead.
    fn end_killed(self, containerd: &Containerd, id: &str) -> (Option<i32>, String) {
        let (status, said) = self.end();
        if status.code() != Some(1) || !said.contains("task must be stopped before deletion") {
            return (status.code(), said);
        }
        let end = Instant::now() + CTR_DEADLINE;
        loop {
            let deleted = output_bounded(
                containerd.ctr().args(["task", "delete", id]),
                "ctr task delete",
            );
            let told = String::from_utf8_lossy(&deleted.stderr).into_owned();
            if deleted.status.success() {
                let code = told
                    .split("exit with non-zero exit code ")
                    .nth(1)
                    .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|digits| digits.parse().ok())
                    .unwrap_or(0);
                println!("(ctr run lost the race with the kill; ctr task delete: {code})");
                return (Some(code), said);
            }
            assert!(Instant::now() < end, "ctr task delete {id}: {told}");
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Sends `message` through the echo plugin at `addr` and checks that it
/// comes back.
fn echo_through(addr: SocketAddr, message: &[u8]) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(message).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::new();
    stream.read_to_end(&mut back).expect("the echo");
    assert_eq!(back, message);
}

/// Connects to `addr` and checks that the plugin never echoes: the peer
/// is refused (reset or closed before any data).
fn refused(addr: SocketAddr) {
    let mut stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
        Ok(stream) => stream,
        // Reset as soon as the kernel completed the handshake.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
        Err(e) => panic!("connect: {e}"),
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(b"anyone there?");
    let mut back = Vec::new();
    match stream.read_to_end(&mut back) {
        Ok(_) => assert!(back.is_empty(), "echoed to a refused peer"),
        Err(e) => assert_ne!(
            e.kind(),
            std::io::ErrorKind::WouldBlock,
            "no reset within 10 s"
        ),
    }
}

/// A container root holding `files`.
fn rootfs(dir: &Path, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
    let root = dir.join(name);
    fs::create_dir_all(&root).unwrap();
    for (file, bytes) in files {
        fs::write(root.join(file), bytes).unwrap();
    }
    root
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An OCI image layout in a tar: one ordinary layer of `files`, the
/// entrypoint `/plugin.wasm` with `args`, named `name`.
fn oci_image_tar(files: &[(&str, &[u8])], args: &[&str], name: &str) -> Vec<u8> {
    let tar_of = |entries: &[(&str, &[u8])]| {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, bytes) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_cksum();
            builder.append_data(&mut header, path, *bytes).unwrap();
        }
        builder.into_inner().unwrap()
    };
    let layer = tar_of(files);
    let layer_digest = sha256(&layer);
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config = format!(
        r#"{{"architecture":"{arch}","os":"linux","config":{{"Entrypoint":["/plugin.wasm"],"Cmd":[{cmd}],"Env":["PATH=/"]}},"rootfs":{{"type":"layers","diff_ids":["sha256:{layer_digest}"]}}}}"#,
        cmd = args
            .iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(",")
    )
    .into_bytes();
    let config_digest = sha256(&config);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{layer_digest}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    )
    .into_bytes();
    let manifest_digest = sha256(&manifest);
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{manifest_digest}","size":{},"platform":{{"architecture":"{arch}","os":"linux"}},"annotations":{{"io.containerd.image.name":"{name}","org.opencontainers.image.ref.name":"test"}}}}]}}"#,
        manifest.len()
    )
    .into_bytes();
    let blob = |digest: &str| format!("blobs/sha256/{digest}");
    tar_of(&[
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
        ("index.json", &index),
        (&blob(&layer_digest), &layer),
        (&blob(&config_digest), &config),
        (&blob(&manifest_digest), &manifest),
    ])
}

/// A directory laid out as the kubelet mounts a ConfigMap: the file is a
/// symbolic link through `..data` to a timestamped directory.
fn configmap(dir: &Path, key: &str, text: &str) -> PathBuf {
    let volume = dir.join("configmap");
    let stamped = volume.join("..2026_01_01_00_00_00.000000001");
    fs::create_dir_all(&stamped).unwrap();
    fs::write(stamped.join(key), text).unwrap();
    symlink("..2026_01_01_00_00_00.000000001", volume.join("..data")).unwrap();
    symlink(format!("..data/{key}"), volume.join(key)).unwrap();
    volume
}

#[test]
fn containerd_runs_wasp_plugins_under_their_policy() {
    for tool in ["containerd", "ctr"] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if found.is_err() {
            return skipped(&format!("no `{tool}` on PATH (shim/test.sh installs it)"));
        }
    }
    let shim = PathBuf::from(env!("CARGO_BIN_EXE_containerd-shim-wasp-v1"));
    let mut containerd = match Containerd::start(shim.parent().unwrap()) {
        Ok(containerd) => containerd,
        Err(reason) => return skipped(&reason),
    };
    let guests = guests();
    let echo = fs::read(guests.join("rust-echo.wasm")).unwrap();
    let probe = fs::read(guests.join("probe.wasm")).unwrap();
    let work = containerd.dir.path().to_path_buf();

    // (a) A root directory with the plugin and its policy (and one with a
    // wall-clock limit).
    let wall_policy =
        ECHO_POLICY.replace("max-sockets = 8", "max-sockets = 8\nmax-wall-seconds = 1");
    let root_a = rootfs(
        &work,
        "echo-rootfs",
        &[
            ("plugin.wasm", &echo),
            ("policy.toml", ECHO_POLICY.as_bytes()),
            ("wall-policy.toml", wall_policy.as_bytes()),
        ],
    );
    let mut echo_a = Attached::spawn(containerd.run("echo-a").arg("--rootfs").arg(&root_a).args([
        "echo-a",
        "/plugin.wasm",
        "127.0.0.1:0",
    ]));
    let addr = echo_a.listening();
    echo_through(addr, b"hello through containerd");
    echo_through(addr, &vec![7u8; 100_000]);
    println!("(a) echoed through the plugin at {addr}");

    // A second container's connect to it, which its policy does not
    // grant: refused before any system call, and logged.
    let root_probe = rootfs(
        &work,
        "probe-rootfs",
        &[
            ("probe.wasm", &probe),
            ("policy.toml", NOTHING_POLICY.as_bytes()),
        ],
    );
    let connect = format!("connect s0 {addr}");
    let denied = output_bounded(
        containerd
            .run("probe-a")
            .arg("--rootfs")
            .arg(&root_probe)
            .args(["probe-a", "/probe.wasm", "socket 2 1 6", &connect, "denial"]),
        "ctr run probe",
    );
    let stdout = String::from_utf8_lossy(&denied.stdout);
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(denied.status.success(), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().map(str::trim_end).collect();
    assert_eq!(lines.get(1), Some(&"err WSAEACCES"), "{stdout}");
    let covers = format!("no `connect` grant covers {addr}");
    assert!(
        lines.get(2).is_some_and(|l| l.contains(&covers)),
        "{stdout}"
    );
    assert!(stderr.contains(&format!("denied: {covers}")), "{stderr}");
    println!("(a) the probe's connect was refused and logged:\n{stderr}");

    // SIGHUP reloads the policy file into the running plugin: a policy
    // that accepts no peer on 127.0.0.1 refuses the next client.
    let no_accept = ECHO_POLICY.replace(
        "accept = [{ addr = \"127.0.0.1\" }]",
        "accept = [{ addr = \"127.0.0.2\" }]",
    );
    fs::write(root_a.join("policy.toml"), &no_accept).unwrap();
    containerd.ctr_ok(&["task", "kill", "--signal", "SIGHUP", "echo-a"]);
    echo_a.wait_stderr("wasp: policy reloaded from /policy.toml");
    refused(addr);
    echo_a.wait_stderr("no `accept` grant covers 127.0.0.1:");
    fs::write(root_a.join("policy.toml"), ECHO_POLICY).unwrap();
    containerd.ctr_ok(&["task", "kill", "--signal", "SIGHUP", "echo-a"]);
    echo_a.wait_stderr("wasp: policy reloaded from /policy.toml");
    echo_through(addr, b"welcome back");
    println!("(a) SIGHUP reloaded the policy: a peer refused, then served again");

    // SIGTERM ends the plugin cleanly: 143.
    containerd.ctr_ok(&["task", "kill", "echo-a"]);
    let (status, stderr) = echo_a.end_killed(&containerd, "echo-a");
    assert_eq!(status, Some(143), "{stderr}");
    assert!(stderr.contains("wasp: SIGTERM: plugin stopped"), "{stderr}");
    assert!(stderr.contains("plugin starting"), "{stderr}");
    println!("(a) ctr task kill: status 143; the plugin's stderr:\n{stderr}");

    // The plugin's own status is the container's; the policy's limits
    // and the memory ceiling apply inside.
    let own = output_bounded(
        containerd
            .run("status-a")
            .arg("--rootfs")
            .arg(&root_a)
            .args(["status-a", "/plugin.wasm", "not-an-address"]),
        "ctr run with a bad argument",
    );
    assert_eq!(own.status.code(), Some(1), "{own:?}");
    let walled = output_bounded(
        containerd
            .run("wall-a")
            .args(["--env", "WASP_POLICY=/wall-policy.toml"])
            .arg("--rootfs")
            .arg(&root_a)
            .args(["wall-a", "/plugin.wasm", "127.0.0.1:0"]),
        "ctr run with a wall-clock limit",
    );
    let stderr = String::from_utf8_lossy(&walled.stderr);
    assert_eq!(walled.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains("wall-clock time limit of 1s exceeded"),
        "{stderr}"
    );
    let starved = output_bounded(
        containerd
            .run("memory-a")
            .args(["--env", "WASP_MEMORY_MIB=1"])
            .arg("--rootfs")
            .arg(&root_a)
            .args(["memory-a", "/plugin.wasm", "127.0.0.1:0"]),
        "ctr run with 1 MiB",
    );
    let stderr = String::from_utf8_lossy(&starved.stderr);
    assert_eq!(starved.status.code(), Some(4), "{stderr}");
    println!("(a) statuses: the plugin's own 1, wall-clock limit 6, memory limit 4");

    // (b) An OCI image: an ordinary layer with the plugin and a policy
    // that grants nothing; the policy that runs it comes from a
    // ConfigMap-like mount named by WASP_POLICY.
    let image = "docker.io/library/wasp-echo:test";
    let tar = oci_image_tar(
        &[
            ("plugin.wasm", &echo),
            ("policy.toml", NOTHING_POLICY.as_bytes()),
        ],
        &["127.0.0.1:0"],
        image,
    );
    let tar_path = work.join("wasp-echo.tar");
    fs::write(&tar_path, tar).unwrap();
    containerd.ctr_ok(&[
        "images",
        "import",
        "--snapshotter",
        "native",
        tar_path.to_str().unwrap(),
    ]);
    let config = configmap(&work, "policy.toml", ECHO_POLICY);
    let mount = format!(
        "type=bind,src={},dst=/etc/wasp,options=rbind:ro",
        config.display()
    );
    let mut echo_b = Attached::spawn(
        containerd
            .run("echo-b")
            .args(["--snapshotter", "native", "--mount", &mount])
            .args(["--env", "WASP_POLICY=/etc/wasp/policy.toml"])
            .args([image, "echo-b"]),
    );
    let addr = echo_b.listening();
    echo_through(addr, b"hello from an image");
    containerd.ctr_ok(&["task", "kill", "echo-b"]);
    let (status, stderr) = echo_b.end_killed(&containerd, "echo-b");
    assert_eq!(status, Some(143), "{stderr}");
    assert!(stderr.contains("policy=/etc/wasp/policy.toml"), "{stderr}");
    println!("(b) the image ran under the mounted policy, then 143:\n{stderr}");

    // (c) No policy: the container does not start.
    let root_c = rootfs(&work, "bare-rootfs", &[("plugin.wasm", &echo)]);
    let bare = output_bounded(
        containerd.run("bare-c").arg("--rootfs").arg(&root_c).args([
            "bare-c",
            "/plugin.wasm",
            "127.0.0.1:0",
        ]),
        "ctr run without a policy",
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&bare.stdout),
        String::from_utf8_lossy(&bare.stderr)
    );
    assert!(!bare.status.success(), "{said}");
    assert!(!said.contains("listening"), "{said}");
    let log = containerd.log();
    assert!(
        said.contains("no policy") || log.contains("no policy"),
        "ctr: {said}\ncontainerd: {}",
        containerd.log_tail()
    );
    println!(
        "(c) without a policy, ctr run failed ({}):\n{said}",
        bare.status
    );
}
