//! The container's exit status: the plugin's own when it ends by itself,
//! otherwise the status `wasp run` gives for the same end (README,
//! "Operating wasp"), each with one line on the container's stderr saying
//! why.

use wasp_host::check::PluginError;
use wasp_host::run::{GuestStopped, InstantiationFailed};

/// Invalid configuration (no policy, a policy that does not parse, a bad
/// setting) or a failure of wasp's own set-up.
pub const CONFIGURATION: i32 = 2;
/// The plugin trapped.
pub const TRAP: i32 = 3;
/// The plugin went over its memory limit.
pub const MEMORY: i32 = 4;
/// The plugin went over its CPU time limit.
pub const CPU_TIME: i32 = 5;
/// The plugin went over its wall-clock time limit.
pub const WALL_TIME: i32 = 6;
/// The plugin went over its CPU share limit.
pub const CPU_SHARE: i32 = 7;
/// Not a component (a core module).
pub const NOT_A_COMPONENT: i32 = 8;
/// Not a WASI command.
pub const NOT_A_COMMAND: i32 = 9;
/// It imports an interface wasp does not provide.
pub const UNKNOWN_IMPORT: i32 = 10;
/// The plugin cannot be loaded or instantiated otherwise.
pub const CANNOT_LOAD: i32 = 11;
/// Ended by SIGINT (128 + 2).
pub const INTERRUPTED: i32 = 130;
/// Ended by SIGTERM (128 + 15), as a process killed by it.
pub const TERMINATED: i32 = 143;

/// The status of a plugin that ran: its own, or the limit or trap that
/// stopped it.
pub fn of_run(result: wasmtime::Result<i32>) -> i32 {
    match result {
        Ok(0) => 0,
        Ok(status) => {
            eprintln!("wasp: plugin exited with status {status}");
            // A WASI 0.2 command reports 0 or 1; wasi:cli/exit's
            // `exit-with-code` may give others. A container's status is a
            // byte, and a failure never reads as success.
            if (1..=255).contains(&status) {
                status
            } else {
                1
            }
        }
        Err(err) => {
            if let Some(stop) = err.downcast_ref::<GuestStopped>() {
                eprintln!("wasp: plugin stopped: {stop}");
                return match stop {
                    GuestStopped::Memory(_) => MEMORY,
                    GuestStopped::CpuTime(_) => CPU_TIME,
                    GuestStopped::WallTime(_) => WALL_TIME,
                    GuestStopped::CpuShare(_) => CPU_SHARE,
                };
            }
            if err.downcast_ref::<InstantiationFailed>().is_some() {
                eprintln!(
                    "wasp: error: cannot instantiate the plugin: {}",
                    err.root_cause()
                );
                return CANNOT_LOAD;
            }
            eprintln!("wasp: plugin trapped: {}", err.root_cause());
            TRAP
        }
    }
}

/// The status of a plugin that could not be loaded: not a plugin wasp
/// runs (8 to 10), or unreadable or not compilable (11).
pub fn of_load(err: wasmtime::Error, plugin: &str) -> i32 {
    match err.downcast::<PluginError>() {
        Ok(not_a_plugin) => {
            eprintln!("wasp: error: cannot run this plugin: {not_a_plugin}");
            match not_a_plugin {
                PluginError::NotWasm(_) | PluginError::NotAComponent => NOT_A_COMPONENT,
                PluginError::NotACommand { .. } => NOT_A_COMMAND,
                PluginError::UnknownImport(_) => UNKNOWN_IMPORT,
            }
        }
        Err(err) => {
            eprintln!("wasp: error: cannot load plugin {plugin}: {err:#}");
            CANNOT_LOAD
        }
    }
}

/// What a status means, for the end line of the log.
pub fn reason(status: i32) -> &'static str {
    match status {
        0 => "success",
        1 => "the plugin failed",
        CONFIGURATION => "invalid configuration",
        TRAP => "the plugin trapped",
        MEMORY => "memory limit",
        CPU_TIME => "CPU time limit",
        WALL_TIME => "wall-clock time limit",
        CPU_SHARE => "CPU share limit",
        NOT_A_COMPONENT => "not a component",
        NOT_A_COMMAND => "not a WASI command",
        UNKNOWN_IMPORT => "unknown import",
        CANNOT_LOAD => "cannot load the plugin",
        INTERRUPTED => "SIGINT",
        TERMINATED => "SIGTERM",
        _ => "the plugin's own status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugins_status_is_the_containers() {
        assert_eq!(of_run(Ok(0)), 0);
        assert_eq!(of_run(Ok(1)), 1);
        assert_eq!(of_run(Ok(42)), 42);
        assert_eq!(of_run(Ok(-1)), 1);
        assert_eq!(of_run(Ok(256)), 1);
    }

    #[test]
    fn limits_and_traps_have_wasps_statuses() {
        let stopped = |stop| of_run(Err(wasmtime::Error::new(stop)));
        assert_eq!(stopped(GuestStopped::Memory(1 << 20)), MEMORY);
        let second = std::time::Duration::from_secs(1);
        assert_eq!(stopped(GuestStopped::CpuTime(second)), CPU_TIME);
        assert_eq!(stopped(GuestStopped::WallTime(second)), WALL_TIME);
        assert_eq!(stopped(GuestStopped::CpuShare(50)), CPU_SHARE);
        assert_eq!(of_run(Err(wasmtime::format_err!("unreachable"))), TRAP);
        let not_a_component = wasmtime::Error::new(PluginError::NotAComponent);
        assert_eq!(of_load(not_a_component, "p.wasm"), NOT_A_COMPONENT);
        assert_eq!(
            of_load(wasmtime::format_err!("no such file"), "p.wasm"),
            CANNOT_LOAD
        );
    }
}
