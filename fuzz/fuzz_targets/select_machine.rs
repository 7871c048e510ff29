//! Operation sequences on the WSPAsyncSelect state machine and its queue.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wasp_fuzz::harness::select_machine(data));
