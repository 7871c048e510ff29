//! The build tool of the wasp C SDK (`guest-sdk/c/`).
//!
//! - [`generate_bindings`]: the C bindings of the world `wasp:spi/plugin`
//!   (`plugin.h`, `plugin.c`, `plugin_component_type.o`), generated with
//!   `wit-bindgen-c` and checked in under `guest-sdk/c/bindings/`.
//! - [`componentize`]: wraps a `wasm32-wasi` core module (linked with
//!   `plugin_component_type.o`) with the WASI command adapter into the
//!   component `wasp run` loads.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use wit_bindgen_core::Files;
use wit_parser::Resolve;

/// The world the C bindings are generated for: the imports of a plugin
/// (the command adapter provides `wasi:cli/run` around `main`).
pub const WORLD: &str = "wasp:spi/plugin";

/// The `wit/` directory of this repository.
pub fn default_wit_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../wit")
}

/// The checked-in bindings directory, `guest-sdk/c/bindings/`.
pub fn checked_in_bindings_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../bindings")
}

/// Generates the C bindings of [`WORLD`] from `wit_dir`: file names and
/// contents, sorted by name.
pub fn generate_bindings(wit_dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut resolve = Resolve::default();
    let (pkg, _) = resolve
        .push_dir(wit_dir)
        .with_context(|| format!("parsing the WIT in {}", wit_dir.display()))?;
    let world = resolve.select_world(&[pkg], Some(WORLD))?;
    let mut files = Files::default();
    let opts = wit_bindgen_c::Opts::default();
    opts.build().generate(&mut resolve, world, &mut files)?;
    let mut out: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|(name, bytes)| (name.to_string(), bytes.to_vec()))
        .collect();
    out.sort();
    if out.is_empty() {
        bail!("wit-bindgen-c generated no files");
    }
    Ok(out)
}

/// Writes the bindings of [`WORLD`] from `wit_dir` into `out_dir`
/// (created if missing); returns the paths written.
pub fn write_bindings(wit_dir: &Path, out_dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut written = Vec::new();
    for (name, bytes) in generate_bindings(wit_dir)? {
        let path = out_dir.join(&name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Turns a core module (built for `wasm32-wasi`, linked with
/// `plugin_component_type.o`) into a component with the WASI command
/// adapter of wasmtime 48: its `main` becomes `wasi:cli/run`.
///
/// A module whose exports wasm-ld wrapped with `__wasm_call_dtors` (a
/// command linked with the old `crt1-command.o` of Debian's wasi-libc,
/// not with the SDK's `wasp_start.c`) is refused: its `cabi_realloc` would
/// flush stdio each time the host hands the guest a string or a list.
pub fn componentize(core: &[u8]) -> Result<Vec<u8>> {
    if let Some(name) = wrapped_export(core)? {
        bail!(
            "the core module's export `{}` is wrapped with __wasm_call_dtors by wasm-ld: \
             link with guest-sdk/c/wasp_start.c and -nostartfiles (as wasp.mk does), \
             not with wasi-libc's crt1-command.o",
            name.trim_end_matches(".command_export")
        );
    }
    use wasi_preview1_component_adapter_provider::{
        WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
    };
    wit_component::ComponentEncoder::default()
        .module(core)
        .context("reading the core module (was it linked with plugin_component_type.o?)")?
        .validate(true)
        .adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
        )
        .context("loading the WASI command adapter")?
        .encode()
        .context("encoding the component")
}

/// The name of a function wasm-ld generated to wrap an export of a command
/// with constructors and destructors (`<export>.command_export` in the
/// name section), other than `_start`'s, if there is one.
fn wrapped_export(core: &[u8]) -> Result<Option<String>> {
    use wasmparser::{KnownCustom, Name, Parser, Payload};
    for payload in Parser::new(0).parse_all(core) {
        let Payload::CustomSection(section) = payload.context("reading the core module")? else {
            continue;
        };
        let KnownCustom::Name(names) = section.as_known() else {
            continue;
        };
        for name in names {
            let Ok(Name::Function(functions)) = name else {
                continue;
            };
            for naming in functions.into_iter().flatten() {
                if naming.name.ends_with(".command_export")
                    && naming.name != "_start.command_export"
                {
                    return Ok(Some(naming.name.to_string()));
                }
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use wasm_encoder::{
        CodeSection, ExportKind, ExportSection, Function, FunctionSection, Instruction, Module,
        NameMap, NameSection, TypeSection,
    };

    /// A core module with one exported function per name, each named so
    /// in the name section.
    fn module(names: &[&str]) -> Vec<u8> {
        let mut types = TypeSection::new();
        types.ty().function([], []);
        let mut functions = FunctionSection::new();
        let mut exports = ExportSection::new();
        let mut code = CodeSection::new();
        let mut map = NameMap::new();
        for (i, name) in (0u32..).zip(names) {
            functions.function(0);
            exports.export(&format!("f{i}"), ExportKind::Func, i);
            let mut body = Function::new([]);
            body.instruction(&Instruction::End);
            code.function(&body);
            map.append(i, name);
        }
        let mut section = NameSection::new();
        section.functions(&map);
        let mut m = Module::new();
        m.section(&types)
            .section(&functions)
            .section(&exports)
            .section(&code)
            .section(&section);
        m.finish()
    }

    #[test]
    fn a_wrapped_cabi_realloc_is_found() {
        let core = module(&["_start.command_export", "cabi_realloc.command_export"]);
        assert_eq!(
            super::wrapped_export(&core).unwrap().as_deref(),
            Some("cabi_realloc.command_export")
        );
        let err = super::componentize(&core).unwrap_err().to_string();
        assert!(err.contains("wasp_start.c"), "{err}");
    }

    #[test]
    fn start_alone_or_no_wrapper_is_fine() {
        let core = module(&["_start.command_export", "cabi_realloc", "main"]);
        assert_eq!(super::wrapped_export(&core).unwrap(), None);
    }
}
