//! Parts of the `wasp` command line: logging, `wasp policy check`, and the
//! exit statuses every command shares.

pub mod logging;
pub mod metrics;
pub mod policy_check;
pub mod serve;

/// Usage error (clap's own) or a configuration that is not valid: an
/// invalid policy file, a malformed `--env`.
pub const EXIT_CONFIGURATION: u8 = 2;
/// The plugin trapped.
pub const EXIT_TRAP: u8 = 3;
/// The plugin went over its memory limit.
pub const EXIT_MEMORY: u8 = 4;
/// The plugin went over its CPU time limit.
pub const EXIT_CPU_TIME: u8 = 5;
/// The plugin went over its wall-clock time limit.
pub const EXIT_WALL_TIME: u8 = 6;
/// The plugin went over its CPU share limit.
pub const EXIT_CPU_SHARE: u8 = 7;
/// Not a component (a core module).
pub const EXIT_NOT_A_COMPONENT: u8 = 8;
/// Not a WASI command (no `wasi:cli/run` export).
pub const EXIT_NOT_A_COMMAND: u8 = 9;
/// It imports an interface wasp does not provide.
pub const EXIT_UNKNOWN_IMPORT: u8 = 10;
/// The plugin cannot be loaded or instantiated for another reason: an
/// unreadable file, invalid WebAssembly, a failed compile or instantiation.
pub const EXIT_CANNOT_LOAD: u8 = 11;

/// What an exit status of `wasp run` means, in a few words (the end line).
pub fn exit_reason(status: u8) -> &'static str {
    match status {
        0 => "success",
        1 => "the plugin failed",
        EXIT_CONFIGURATION => "invalid configuration",
        EXIT_TRAP => "trapped",
        EXIT_MEMORY => "memory limit",
        EXIT_CPU_TIME => "CPU time limit",
        EXIT_WALL_TIME => "wall-clock time limit",
        EXIT_CPU_SHARE => "CPU share limit",
        EXIT_NOT_A_COMPONENT => "not a component",
        EXIT_NOT_A_COMMAND => "not a WASI command",
        EXIT_UNKNOWN_IMPORT => "imports what wasp does not provide",
        EXIT_CANNOT_LOAD => "cannot be loaded",
        _ => "the plugin's own status",
    }
}
