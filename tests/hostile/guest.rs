//! Attacks by guests (issue 8, points 1 and 4, "CPU and time"): memory
//! multiplied over memories, instances and tables; spinning; deep
//! recursion; stalled stdout; pollable and queue leaks; huge requests; and
//! the CPU and wall-clock limits. Hand-written components are WAT that
//! export `wasi:cli/run` directly.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio as ProcessStdio};
use std::time::{Duration, Instant};

use wasmtime::Trap;
use wasp_host::run::{GuestStopped, Stdio};

use super::{Attacker, Report, beside_echo, exclusive, run_beside_echo};
use crate::common::{GUEST_DEADLINE, LOOPBACK, policy, root};

const MIB: usize = 1 << 20;
/// The memory limit of the memory attacks.
const LIMIT: usize = 16 * MIB;
/// What the host may grow by beyond the guest's limit during an attack
/// (compiled code, stacks, allocator slack, the neighbour's traffic).
const RSS_MARGIN: u64 = 48 << 20;

/// A component whose `run` is the core function `run` of `module` (WAT
/// text of one core module), wrapped in `extra` core definitions before it.
fn command(extra: &str, module: &str) -> String {
    format!(
        r#"(component
  {extra}
  (core module $main {module})
  (core instance $main (instantiate $main))
  (func $run (result (result)) (canon lift (core func $main "run")))
  (instance $run (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $run)))"#
    )
}

/// The guest's error, asserting that it is the memory limit.
#[track_caller]
fn assert_memory_limit(report: &Report<wasmtime::Result<i32>>) {
    let err = match &report.outcome {
        Ok(status) => panic!("the attacker ran to its end (status {status})"),
        Err(err) => err,
    };
    assert_eq!(
        err.downcast_ref::<GuestStopped>(),
        Some(&GuestStopped::Memory(LIMIT)),
        "{err:?}"
    );
    assert!(
        format!("{err:#}").contains("guest memory limit of 16 MiB exceeded"),
        "{err:#}"
    );
    assert!(
        report.rss_growth() < LIMIT as u64 + RSS_MARGIN,
        "the host grew by {} MiB",
        report.rss_growth() >> 20
    );
}

fn limited(mut attacker: Attacker) -> Attacker {
    attacker.options.memory_limit = LIMIT;
    attacker
}

/// The guest's error, asserting that it was stopped for `why`.
#[track_caller]
fn assert_stopped(outcome: &wasmtime::Result<i32>, why: GuestStopped) {
    match outcome {
        Ok(status) => panic!("the attacker ran to its end (status {status})"),
        Err(err) => assert_eq!(err.downcast_ref::<GuestStopped>(), Some(&why), "{err:?}"),
    }
}

/// The guest's error, asserting that its message contains `text`.
#[track_caller]
fn assert_error_contains(outcome: &wasmtime::Result<i32>, text: &str) {
    match outcome {
        Ok(status) => panic!("the attacker ran to its end (status {status})"),
        Err(err) => assert!(format!("{err:?}").contains(text), "{err:?}"),
    }
}

#[test]
fn eight_linear_memories_count_against_one_memory_limit() {
    // Each memory is within the limit; together they are 8 times it.
    let memories: String = (0..8).map(|i| format!("(memory $m{i} 256)")).collect();
    let fills: String = (0..8)
        .map(|i| format!("(memory.fill $m{i} (i32.const 0) (i32.const 1) (i32.const {LIMIT}))"))
        .collect();
    let text = command(
        "",
        &format!(r#"{memories} (func (export "run") (result i32) {fills} (i32.const 0))"#),
    );
    let report = run_beside_echo("8 memories", limited(Attacker::wat("memories", &text)));
    assert_memory_limit(&report);
}

#[test]
fn eight_instances_count_against_one_memory_limit() {
    let instances: String = (0..8)
        .map(|i| format!("(core instance $big{i} (instantiate $big))"))
        .collect();
    let text = command(
        &format!(
            r#"(core module $big (memory 256)
    (func $touch (memory.fill (i32.const 0) (i32.const 1) (i32.const {LIMIT})))
    (start $touch))
  {instances}"#
        ),
        r#"(func (export "run") (result i32) (i32.const 0))"#,
    );
    let report = run_beside_echo("8 instances", limited(Attacker::wat("instances", &text)));
    assert_memory_limit(&report);
}

#[test]
fn a_huge_table_grow_counts_against_the_memory_limit() {
    // 2^24 elements of 8 bytes: 128 MiB of host memory for one instruction.
    let text = command(
        "",
        r#"(table $t 0 funcref)
    (func (export "run") (result i32)
      (drop (table.grow $t (ref.null func) (i32.const 0x1000000)))
      (i32.const 0))"#,
    );
    let report = run_beside_echo("table.grow", limited(Attacker::wat("table", &text)));
    assert_memory_limit(&report);
}

#[test]
fn a_memory_grow_loop_traps_at_the_memory_limit() {
    // Grows 1 MiB at a time and touches it; a refused grow would end the
    // loop quietly, so only a trap stops it with an error.
    let text = command(
        "",
        r#"(memory 1)
    (func (export "run") (result i32) (local $page i32)
      (loop $grow
        (local.set $page (memory.grow (i32.const 16)))
        (if (i32.eq (local.get $page) (i32.const -1)) (then (return (i32.const 0))))
        (memory.fill (i32.mul (local.get $page) (i32.const 65536)) (i32.const 1) (i32.const 0x100000))
        (br $grow))
      (i32.const 0))"#,
    );
    let report = run_beside_echo("memory.grow loop", limited(Attacker::wat("grow", &text)));
    assert_memory_limit(&report);
}

#[test]
fn an_allocating_rust_guest_traps_at_the_memory_limit() {
    let report = run_beside_echo(
        "hog",
        limited(Attacker::guest("hog", policy(LOOPBACK), &[])),
    );
    assert_memory_limit(&report);
}

#[test]
fn hundreds_of_small_instances_hit_the_instance_count() {
    let instances: String = (0..300)
        .map(|i| format!("(core instance $small{i} (instantiate $small))"))
        .collect();
    let text = command(
        &format!("(core module $small (global i32 (i32.const 0))) {instances}"),
        r#"(func (export "run") (result i32) (i32.const 0))"#,
    );
    let report = run_beside_echo("300 instances", Attacker::wat("small-instances", &text));
    assert_error_contains(&report.outcome, "instance count too high");
}

#[test]
fn dozens_of_empty_memories_hit_the_memory_count() {
    // Empty memories cost nothing against the byte limit, but each one
    // reserves gigabytes of address space: 64 of them, 8 in each of 8
    // modules, are counted across the guest's modules.
    let memories: String = (0..8).map(|i| format!("(memory $m{i} 0)")).collect();
    let instances: String = (0..8)
        .map(|i| format!("(core instance $mems{i} (instantiate $mems))"))
        .collect();
    let text = command(
        &format!("(core module $mems {memories}) {instances}"),
        r#"(func (export "run") (result i32) (i32.const 0))"#,
    );
    let report = run_beside_echo("64 memories", Attacker::wat("empty-memories", &text));
    assert_error_contains(&report.outcome, "memory count too high");
}

#[test]
fn a_module_with_more_memories_than_a_guest_may_have_is_refused() {
    // One module declaring 64 memories: the instance pool refuses it when
    // it is compiled (an engine without the pool stops it at the count).
    let memories: String = (0..64).map(|i| format!("(memory $m{i} 0)")).collect();
    let text = command(
        "",
        &format!(r#"{memories} (func (export "run") (result i32) (i32.const 0))"#),
    );
    let bytes = wat::parse_str(&text).expect("the attack's WAT parses");
    match wasmtime::component::Component::new(crate::common::host().engine(), bytes) {
        Err(err) => assert!(
            format!("{err:?}").contains("defined memories count of 64 exceeds"),
            "{err:?}"
        ),
        Ok(_) => {
            let report = run_beside_echo("64 memories", Attacker::wat("memories", &text));
            assert_error_contains(&report.outcome, "memory count too high");
        }
    }
}

#[test]
fn unbounded_recursion_traps_alone() {
    let text = command(
        "",
        r#"(func $deeper (param i64) (result i64)
      (call $deeper (i64.add (local.get 0) (i64.const 1))))
    (func (export "run") (result i32)
      (drop (call $deeper (i64.const 0)))
      (i32.const 0))"#,
    );
    let report = run_beside_echo("recursion", Attacker::wat("recursion", &text));
    match &report.outcome {
        Ok(status) => panic!("the recursion returned {status}"),
        Err(err) => assert_eq!(
            err.downcast_ref::<Trap>(),
            Some(&Trap::StackOverflow),
            "{err:?}"
        ),
    }
}

#[test]
fn a_huge_random_request_traps_alone() {
    // get-random-bytes(2^40): the host must refuse, not allocate.
    let text = r#"(component
  (import "wasi:random/random@0.2.0" (instance $random
    (export "get-random-bytes" (func (param "len" u64) (result (list u8))))))
  (core module $libc
    (memory (export "memory") 1)
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) (i32.const 64)))
  (core instance $libc (instantiate $libc))
  (core func $get (canon lower (func $random "get-random-bytes")
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core module $main
    (import "wasi" "get" (func $get (param i64 i32)))
    (func (export "run") (result i32)
      (call $get (i64.const 0x10000000000) (i32.const 0))
      (i32.const 0)))
  (core instance $main (instantiate $main (with "wasi" (instance (export "get" (func $get))))))
  (func $run (result (result)) (canon lift (core func $main "run")))
  (instance $run (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $run)))"#;
    let report = run_beside_echo("random 2^40", Attacker::wat("random", text));
    assert_error_contains(&report.outcome, "exceeds limit");
    assert!(
        report.rss_growth() < RSS_MARGIN,
        "+{} MiB",
        report.rss_growth() >> 20
    );
}

#[test]
fn a_spinning_guest_leaves_its_neighbour_served() {
    // No limits: the spinner is preempted, never stopped; the neighbour
    // answers throughout (its round-trip times are printed, not asserted).
    let spin = Attacker::guest("spin", policy(LOOPBACK), &[]);
    let report = beside_echo("spin", move || {
        Box::pin(async move { tokio::time::timeout(Duration::from_secs(3), spin.run()).await })
    });
    assert!(report.outcome.is_err(), "the spinner was still spinning");
    assert!(report.round_trips.len() > 10);
}

#[test]
fn a_spinning_guest_is_stopped_at_its_cpu_time_limit() {
    let mut spin = Attacker::guest("spin", policy(LOOPBACK), &[]);
    spin.options.time_limits.cpu_time = Some(Duration::from_secs(1));
    let report = run_beside_echo("CPU time", spin);
    assert_stopped(
        &report.outcome,
        GuestStopped::CpuTime(Duration::from_secs(1)),
    );
    let err = report.outcome.unwrap_err();
    assert_eq!(
        err.to_string(),
        "guest CPU time limit of 1s exceeded",
        "the error itself names the limit"
    );
}

#[test]
fn a_spinning_guest_is_stopped_above_its_cpu_share() {
    let mut spin = Attacker::guest("spin", policy(LOOPBACK), &[]);
    spin.options.time_limits.cpu_share = Some(10);
    let report = run_beside_echo("CPU share", spin);
    assert_stopped(&report.outcome, GuestStopped::CpuShare(10));
}

#[test]
fn a_blocked_guest_is_stopped_at_its_wall_time_limit_and_not_before() {
    // An idle echo server: within its CPU limits, past its wall-clock one.
    let mut idle = Attacker::guest(
        "rust-echo",
        wasp_host::Policy::from_file(root().join("examples/policies/echo.toml")).unwrap(),
        &["127.0.0.1:0"],
    );
    idle.options.time_limits.wall_time = Some(Duration::from_secs(1));
    idle.options.time_limits.cpu_time = Some(Duration::from_secs(5));
    idle.options.time_limits.cpu_share = Some(5);
    let start = Instant::now();
    let report = run_beside_echo("wall time", idle);
    assert_stopped(
        &report.outcome,
        GuestStopped::WallTime(Duration::from_secs(1)),
    );
    assert!(start.elapsed() >= Duration::from_secs(1));
}

#[test]
fn a_guest_leaking_100k_queue_pollables_is_stopped_alone() {
    let report = run_beside_echo(
        "100k pollables",
        Attacker::guest(
            "probe",
            policy(LOOPBACK),
            &["queue 4", "subscribe-many q0 100000"],
        ),
    );
    assert_error_contains(&report.outcome, "more than 4096 queue pollables");
}

#[test]
fn a_guest_leaking_message_queues_is_stopped_alone() {
    let script = vec!["queue 1"; 17];
    let report = run_beside_echo(
        "queue leak",
        Attacker::guest("probe", policy(LOOPBACK), &script),
    );
    assert_error_contains(&report.outcome, "quota of 16 message queues");
}

/// The marker the child of the stdout test prints when it passed.
const STALL_CHILD_PASSED: &str = "stall child: the neighbour was served";

#[test]
fn a_guest_on_a_stalled_stdout_blocks_only_itself() {
    // This test binary again, as a child whose stdout is a pipe nobody
    // reads: its flooding guest inherits that stdout.
    let _one_at_a_time = exclusive();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "guest::stalled_stdout_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .stdout(ProcessStdio::piped())
        .stderr(ProcessStdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("  child: {line}");
            let _ = lines_tx.send(line);
        }
    });
    let start = Instant::now();
    let passed = loop {
        match lines.recv_timeout(Duration::from_millis(100)) {
            Ok(line) if line.contains(STALL_CHILD_PASSED) => break true,
            Ok(_) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break false,
        }
        if start.elapsed() > GUEST_DEADLINE {
            break false;
        }
    };
    if !passed {
        let _ = child.kill();
    }
    // Now unstall it so that it can finish.
    let mut flood = Vec::new();
    let _ = child.stdout.take().unwrap().read_to_end(&mut flood);
    let status = child.wait().unwrap();
    assert!(passed, "the child did not pass (see its stderr above)");
    assert!(status.success(), "the child failed: {status}");
    assert!(flood.len() > 64 << 10, "the guest filled the pipe");
}

#[test]
#[ignore = "run as a child process by a_guest_on_a_stalled_stdout_blocks_only_itself"]
fn stalled_stdout_child() {
    let mut flood = Attacker::guest("flood", policy(LOOPBACK), &[]);
    flood.options.stdio = Stdio::Inherit;
    flood.options.time_limits.wall_time = Some(Duration::from_secs(3));
    let report = run_beside_echo("stalled stdout", flood);
    assert_stopped(
        &report.outcome,
        GuestStopped::WallTime(Duration::from_secs(3)),
    );
    eprintln!("{STALL_CHILD_PASSED}");
}

#[test]
fn an_import_the_host_lacks_fails_to_instantiate_and_says_so() {
    // Preparing a plugin (resolving its imports once) must keep telling an
    // import the host lacks from a trap: InstantiationFailed is the context.
    let text = r#"(component
  (import "wasp:nowhere/nothing@0.1.0" (instance $nothing
    (export "call" (func))))
  (core module $main (func (export "run") (result i32) (i32.const 0)))
  (core instance $main (instantiate $main))
  (func $run (result (result)) (canon lift (core func $main "run")))
  (instance $run (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $run)))"#;
    let report = run_beside_echo("missing import", Attacker::wat("missing", text));
    let err = report
        .outcome
        .expect_err("a plugin with a missing import ran");
    assert!(
        err.downcast_ref::<wasp_host::run::InstantiationFailed>()
            .is_some(),
        "{err:?}"
    );
    assert!(
        format!("{err:?}").contains("wasp:nowhere/nothing"),
        "{err:?}"
    );
}
