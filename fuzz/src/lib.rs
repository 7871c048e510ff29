//! The wasp fuzz targets' logic; `fuzz_targets/` only wraps it in
//! `fuzz_target!`. The same file is compiled into the host integration
//! tests, which replay the committed corpora (`tests/host/fuzz_replay.rs`).

pub mod harness;
