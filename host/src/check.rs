//! What a plugin file must be, checked from its bytes before anything is
//! compiled (compiling a large plugin takes seconds): a component, not a
//! core module; a WASI command (it exports `wasi:cli/run`); importing only
//! what the host provides (WASI 0.2 and `wasp:spi`). Each failure is an
//! error of its own that says what to do, never called a trap.

use std::fmt;

use wasmparser::{Encoding, Parser, Payload};

/// The interface packages a plugin may import: WASI 0.2 as wasmtime-wasi
/// provides it (its network denied: wasp's policy is the only door), and
/// wasp's own.
const PROVIDED: &[&str] = &[
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:io/",
    "wasi:random/",
    "wasi:sockets/",
    "wasp:spi/",
];

/// Why a file is not a plugin wasp can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginError {
    /// Not WebAssembly at all (or damaged).
    NotWasm(String),
    /// A core WebAssembly module: it has to be wrapped as a component.
    NotAComponent,
    /// A component that does not export `wasi:cli/run`.
    NotACommand {
        /// What it exports instead.
        exports: Vec<String>,
    },
    /// A component that imports an interface the host does not provide.
    UnknownImport(String),
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotWasm(why) => write!(f, "not a WebAssembly file: {why}"),
            Self::NotAComponent => f.write_str(
                "a core WebAssembly module, not a component: wrap it as a WASI command \
                 with `cargo run -p wasp-c-tool -- componentize MODULE.wasm -o PLUGIN.wasm` \
                 (the C SDK's tool, guest-sdk/c) or `wasm-tools component new MODULE.wasm \
                 --adapt wasi_snapshot_preview1.command.wasm -o PLUGIN.wasm` \
                 (or build for the wasm32-wasip2 target)",
            ),
            Self::NotACommand { exports } => write!(
                f,
                "not a WASI command: it does not export `wasi:cli/run` (it exports: {}); \
                 build it as a command, with a `main`, not as a library or reactor",
                if exports.is_empty() {
                    "nothing".to_string()
                } else {
                    exports.join(", ")
                }
            ),
            Self::UnknownImport(name) => write!(
                f,
                "it imports `{name}`, which wasp does not provide (only WASI 0.2 \
                 and wasp:spi are)"
            ),
        }
    }
}

impl std::error::Error for PluginError {}

/// Checks that `bytes` are a plugin wasp can run, without compiling them.
pub fn check_plugin(bytes: &[u8]) -> Result<(), PluginError> {
    let mut depth = 0usize;
    let mut exports = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| PluginError::NotWasm(e.message().to_string()))?;
        match payload {
            Payload::Version {
                encoding: Encoding::Module,
                ..
            } if depth == 0 => return Err(PluginError::NotAComponent),
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(imports) if depth == 0 => {
                for import in imports {
                    let import = import.map_err(|e| PluginError::NotWasm(e.message().into()))?;
                    let name = import.name.name;
                    if !PROVIDED.iter().any(|p| name.starts_with(p)) {
                        return Err(PluginError::UnknownImport(name.to_string()));
                    }
                }
            }
            Payload::ComponentExportSection(section) if depth == 0 => {
                for export in section {
                    let export = export.map_err(|e| PluginError::NotWasm(e.message().into()))?;
                    exports.push(export.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    if !exports.iter().any(|e| e.starts_with("wasi:cli/run@0.2.")) {
        return Err(PluginError::NotACommand { exports });
    }
    Ok(())
}
