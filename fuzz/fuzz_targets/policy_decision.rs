//! Grants and queries: `Policy::check` against a naive reference model.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wasp_fuzz::harness::policy_decision(data));
