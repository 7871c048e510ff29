//! `wasp policy check FILE`: validates a policy file and says what it
//! grants and what in it looks like a mistake, before any plugin runs.

use std::path::Path;
use std::process::ExitCode;

use wasp_host::Policy;
use wasp_host::policy::review;

/// Checks the policy at `path`: 0 when it is valid (warnings printed), 2
/// when it is not, 1 with `strict` when it has warnings.
pub fn check(path: &Path, strict: bool) -> ExitCode {
    let policy = match Policy::from_file(path) {
        Ok(policy) => policy,
        Err(e) => {
            eprintln!("wasp: error: {e}");
            return ExitCode::from(wasp_host::exit::CONFIGURATION);
        }
    };
    println!("{}: valid policy", path.display());
    for line in review::describe(&policy) {
        println!("  {line}");
    }
    let warnings = review::warnings(&policy);
    for warning in &warnings {
        println!("warning: {warning}");
    }
    if strict && !warnings.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
