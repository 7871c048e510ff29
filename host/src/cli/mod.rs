//! Parts of the `wasp` command line: logging, metrics, `wasp policy
//! check`, `wasp serve` (the exit statuses are the library's
//! `wasp_host::exit`).

pub mod logging;
pub mod metrics;
pub mod policy_check;
pub mod serve;
