//! Replays the committed fuzz inputs (`fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/`) through the very harness the `cargo fuzz`
//! targets run (`fuzz/src/harness.rs`, compiled in here), so that
//! `cargo test --workspace` checks every input the fuzzers kept and every
//! input that once found a bug.

#[path = "../../fuzz/src/harness.rs"]
mod harness;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// The files of `fuzz/<dir>`, sorted (none when the directory is absent).
fn inputs(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every file of `fuzz/corpus/<target>` and `fuzz/regressions/<target>`
/// through `run`; fails naming each file that panicked.
fn replay(target: &str, run: fn(&[u8])) {
    let corpus = inputs(&format!("corpus/{target}"));
    assert!(!corpus.is_empty(), "the {target} corpus is missing");
    let files = corpus
        .iter()
        .chain(&inputs(&format!("regressions/{target}")))
        .cloned()
        .collect::<Vec<_>>();
    let mut failed = Vec::new();
    for file in &files {
        let data = std::fs::read(file).expect("a readable corpus file");
        if catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} {target} inputs fail (messages above):\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

#[test]
fn policy_loader() {
    replay("policy_loader", harness::policy_loader);
}

#[test]
fn policy_decision() {
    replay("policy_decision", harness::policy_decision);
}

#[test]
fn select_machine() {
    replay("select_machine", harness::select_machine);
}
