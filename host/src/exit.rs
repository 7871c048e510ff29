//! The exit statuses of a plugin run, shared by every front end (`wasp run`,
//! `wasp serve`, the containerd shim): the plugin's own when it ends by
//! itself, otherwise one that says why wasp ended it, each with a line
//! saying it in words.
//!
//! | status | meaning |
//! | --- | --- |
//! | 0, 1 | the plugin's own (a WASI 0.2 command reports only these) |
//! | 2 | usage error or invalid configuration |
//! | 3 | the plugin trapped |
//! | 4 | it went over its memory limit |
//! | 5 | it went over its CPU time limit |
//! | 6 | it went over its wall-clock time limit |
//! | 7 | it went over its CPU share limit |
//! | 8 | not a component (a core module) |
//! | 9 | not a WASI command (no `wasi:cli/run` export) |
//! | 10 | it imports an interface wasp does not provide |
//! | 11 | it cannot be loaded or instantiated otherwise |

use crate::check::PluginError;
use crate::run::{GuestStopped, InstantiationFailed};

/// Usage error or a configuration that is not valid (a policy file, a
/// setting), or a failure of wasp's own set-up.
pub const CONFIGURATION: u8 = 2;
/// The plugin trapped.
pub const TRAP: u8 = 3;
/// The plugin went over its memory limit.
pub const MEMORY: u8 = 4;
/// The plugin went over its CPU time limit.
pub const CPU_TIME: u8 = 5;
/// The plugin went over its wall-clock time limit.
pub const WALL_TIME: u8 = 6;
/// The plugin went over its CPU share limit.
pub const CPU_SHARE: u8 = 7;
/// Not a component (a core module).
pub const NOT_A_COMPONENT: u8 = 8;
/// Not a WASI command (no `wasi:cli/run` export).
pub const NOT_A_COMMAND: u8 = 9;
/// It imports an interface wasp does not provide.
pub const UNKNOWN_IMPORT: u8 = 10;
/// The plugin cannot be loaded or instantiated for another reason: an
/// unreadable file, invalid WebAssembly, a failed compile or instantiation.
pub const CANNOT_LOAD: u8 = 11;

/// The status of a plugin that ended by itself with `status`: a byte, and
/// a failure never reads as success (`wasi:cli/exit`'s `exit-with-code`
/// may give any number).
pub fn of_plugin(status: i32) -> u8 {
    u8::try_from(status).unwrap_or(1)
}

/// The status of a run that ended in `err` (a trap, a limit, a failed
/// instantiation: see [`crate::run::PluginHost::run`]), and a line saying
/// why.
pub fn of_stop(err: &wasmtime::Error) -> (u8, String) {
    if let Some(stop) = err.downcast_ref::<GuestStopped>() {
        let status = match stop {
            GuestStopped::Memory(_) => MEMORY,
            GuestStopped::CpuTime(_) => CPU_TIME,
            GuestStopped::WallTime(_) => WALL_TIME,
            GuestStopped::CpuShare(_) => CPU_SHARE,
        };
        return (status, format!("plugin stopped: {stop}"));
    }
    if err.downcast_ref::<InstantiationFailed>().is_some() {
        let why = format!("error: cannot instantiate the plugin: {}", err.root_cause());
        return (CANNOT_LOAD, why);
    }
    (TRAP, format!("plugin trapped: {}", err.root_cause()))
}

/// The status of a file that is not a plugin wasp runs.
pub fn of_not_a_plugin(err: &PluginError) -> u8 {
    match err {
        PluginError::NotWasm(_) | PluginError::NotAComponent => NOT_A_COMPONENT,
        PluginError::NotACommand { .. } => NOT_A_COMMAND,
        PluginError::UnknownImport(_) => UNKNOWN_IMPORT,
    }
}

/// What a status means, in a few words (for an end line in the log).
pub fn reason(status: u8) -> &'static str {
    match status {
        0 => "success",
        1 => "the plugin failed",
        CONFIGURATION => "invalid configuration",
        TRAP => "trapped",
        MEMORY => "memory limit",
        CPU_TIME => "CPU time limit",
        WALL_TIME => "wall-clock time limit",
        CPU_SHARE => "CPU share limit",
        NOT_A_COMPONENT => "not a component",
        NOT_A_COMMAND => "not a WASI command",
        UNKNOWN_IMPORT => "imports what wasp does not provide",
        CANNOT_LOAD => "cannot be loaded",
        _ => "the plugin's own status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugins_own_status_is_a_byte_and_a_failure_stays_one() {
        assert_eq!(of_plugin(0), 0);
        assert_eq!(of_plugin(42), 42);
        assert_eq!(of_plugin(-1), 1);
        assert_eq!(of_plugin(256), 1);
    }

    #[test]
    fn limits_traps_and_files_that_are_not_plugins_have_their_statuses() {
        let stopped = |stop| of_stop(&wasmtime::Error::new(stop)).0;
        assert_eq!(stopped(GuestStopped::Memory(1 << 20)), MEMORY);
        let second = std::time::Duration::from_secs(1);
        assert_eq!(stopped(GuestStopped::CpuTime(second)), CPU_TIME);
        assert_eq!(stopped(GuestStopped::WallTime(second)), WALL_TIME);
        assert_eq!(stopped(GuestStopped::CpuShare(50)), CPU_SHARE);
        let trap = of_stop(&wasmtime::format_err!("unreachable"));
        assert_eq!(trap, (TRAP, "plugin trapped: unreachable".to_string()));
        let failed = wasmtime::format_err!("no import").context(InstantiationFailed);
        assert_eq!(of_stop(&failed).0, CANNOT_LOAD);
        assert_eq!(
            of_not_a_plugin(&PluginError::NotAComponent),
            NOT_A_COMPONENT
        );
    }
}
