//! Arbitrary bytes as a policy file: never a panic; accepted policies are
//! canonical and checkable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wasp_fuzz::harness::policy_loader(data));
