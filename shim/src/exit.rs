//! The container's exit status: the plugin's own when it ends by itself,
//! otherwise the status `wasp run` gives for the same end
//! (`wasp_host::exit`), each with one line on the container's stderr
//! saying why; and the statuses of the signals that end it.

use wasp_host::check::PluginError;
use wasp_host::exit;

/// Invalid configuration (no policy, a policy that does not parse, a bad
/// setting) or a failure of wasp's own set-up.
pub const CONFIGURATION: i32 = exit::CONFIGURATION as i32;
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
            exit::of_plugin(status).into()
        }
        Err(err) => {
            let (status, why) = exit::of_stop(&err);
            eprintln!("wasp: {why}");
            status.into()
        }
    }
}

/// The status of a plugin that could not be loaded: not a plugin wasp
/// runs (8 to 10), or unreadable or not compilable (11).
pub fn of_load(err: wasmtime::Error, plugin: &str) -> i32 {
    match err.downcast::<PluginError>() {
        Ok(not_a_plugin) => {
            eprintln!("wasp: error: cannot run this plugin: {not_a_plugin}");
            exit::of_not_a_plugin(&not_a_plugin).into()
        }
        Err(err) => {
            eprintln!("wasp: error: cannot load plugin {plugin}: {err:#}");
            exit::CANNOT_LOAD.into()
        }
    }
}

/// What a status means, for the end line of the log.
pub fn reason(status: i32) -> &'static str {
    match status {
        INTERRUPTED => "SIGINT",
        TERMINATED => "SIGTERM",
        _ => u8::try_from(status).map_or("the plugin's own status", exit::reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasp_host::run::GuestStopped;

    #[test]
    fn the_plugins_status_is_the_containers() {
        assert_eq!(of_run(Ok(0)), 0);
        assert_eq!(of_run(Ok(1)), 1);
        assert_eq!(of_run(Ok(42)), 42);
        assert_eq!(of_run(Ok(-1)), 1);
        assert_eq!(of_run(Ok(256)), 1);
    }

    #[test]
    fn limits_traps_and_signals_have_wasps_statuses() {
        let stopped = |stop| of_run(Err(wasmtime::Error::new(stop)));
        assert_eq!(stopped(GuestStopped::Memory(1 << 20)), 4);
        assert_eq!(of_run(Err(wasmtime::format_err!("unreachable"))), 3);
        let not_a_component = wasmtime::Error::new(PluginError::NotAComponent);
        assert_eq!(of_load(not_a_component, "p.wasm"), 8);
        assert_eq!(of_load(wasmtime::format_err!("no such file"), "p.wasm"), 11);
        assert_eq!(reason(TERMINATED), "SIGTERM");
        assert_eq!(reason(4), "memory limit");
    }
}
