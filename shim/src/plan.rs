//! What a container asks wasp to run: its plugin, its policy, its
//! arguments and environment, read from the OCI spec (through
//! containerd-shim-wasm's [`RuntimeContext`]) and from the container's own
//! filesystem (the shim reads them inside the container, after its root
//! and mounts are in place).
//!
//! The policy is looked up in this order, and a container without one does
//! not start (wasp fails closed):
//!
//! 1. the file named by the container's `WASP_POLICY` variable (a
//!    ConfigMap mounted in a Pod); a name that cannot be read is an error,
//!    never a fall-back to another policy;
//! 2. a policy layer of the image ([`POLICY_LAYER`]), where containerd
//!    hands the shim the image's layers;
//! 3. `/policy.toml` in the container's root.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use containerd_shim_wasm::sandbox::context::{RuntimeContext, Source, WasmLayer};
use wasp_host::Policy;
use wasp_host::run::DEFAULT_MEMORY_LIMIT;

/// The container variable naming the policy file.
pub const POLICY_ENV: &str = "WASP_POLICY";
/// The container variable setting the plugin's memory ceiling in MiB (its
/// linear memories and tables together; default 64, as `wasp run`'s
/// `--memory-mib`).
pub const MEMORY_ENV: &str = "WASP_MEMORY_MIB";
/// The container variable filtering wasp's log lines (as `wasp run`'s
/// `WASP_LOG`).
pub const LOG_ENV: &str = "WASP_LOG";
/// The policy file used when `WASP_POLICY` is not set and the image has no
/// policy layer.
pub const DEFAULT_POLICY: &str = "/policy.toml";
/// The media type of a WebAssembly component layer (the wasm OCI artifact
/// format).
pub const COMPONENT_LAYER: &str = "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm";
/// The media type of a plain WebAssembly layer.
pub const WASM_LAYER: &str = "application/wasm";
/// The media type of a wasp policy layer: the policy file's TOML.
pub const POLICY_LAYER: &str = "application/vnd.wasp.policy.layer.v1+toml";
/// The layer types the shim asks containerd for.
pub const LAYER_TYPES: &[&str] = &[COMPONENT_LAYER, WASM_LAYER, POLICY_LAYER];

/// The sentence a container without a policy fails with.
pub const NO_POLICY: &str = "no policy: wasp runs no plugin without one. Set WASP_POLICY to a \
     policy file mounted in the container (a Kubernetes ConfigMap), add a policy layer \
     (application/vnd.wasp.policy.layer.v1+toml) to the image, or put /policy.toml in it";

/// Where the plugin comes from.
pub enum PluginSource {
    /// A `.wasm` file in the container (its entrypoint).
    File(PathBuf),
    /// A component layer of the image: its bytes.
    Layer(Vec<u8>),
}

/// Where the policy came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicySource {
    /// A file in the container: `WASP_POLICY`'s or `/policy.toml`. It is
    /// read again on SIGHUP.
    File(PathBuf),
    /// A policy layer of the image (its digest).
    Layer(String),
}

impl std::fmt::Display for PolicySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Layer(digest) => write!(f, "image layer {digest}"),
        }
    }
}

/// Everything needed to run a container's plugin.
pub struct Plan {
    /// The plugin.
    pub plugin: PluginSource,
    /// Its name in logs and its `argv[0]`.
    pub name: String,
    /// Its arguments after `argv[0]`: the OCI process arguments after the
    /// entrypoint.
    pub args: Vec<String>,
    /// Its environment: the OCI process environment without the shim's own
    /// settings ([`POLICY_ENV`], [`MEMORY_ENV`], [`LOG_ENV`]).
    pub env: Vec<(String, String)>,
    /// Its policy.
    pub policy: Arc<Policy>,
    /// Where the policy came from.
    pub policy_source: PolicySource,
    /// Its memory ceiling in bytes.
    pub memory_limit: usize,
    /// `WASP_LOG` of the container, if set.
    pub log_filter: Option<String>,
}

impl Plan {
    /// Reads the container's plugin, policy, arguments and environment.
    /// Every error says what is missing and how to give it.
    pub fn resolve(ctx: &impl RuntimeContext) -> anyhow::Result<Self> {
        let env = split_env(ctx.envs());
        let var = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let entrypoint = ctx.entrypoint();
        let arg0 = entrypoint
            .arg0
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        if entrypoint.func != "_start" {
            bail!(
                "the entrypoint {arg0:?} names the function `{}`: wasp runs WASI commands \
                 (their `wasi:cli/run`), so give the plugin's path without `#{}`",
                entrypoint.func,
                entrypoint.func
            );
        }
        let layers: &[WasmLayer] = match &entrypoint.source {
            Source::Oci(layers) => layers,
            Source::File(_) => &[],
        };
        let (plugin, name) = match entrypoint.source {
            Source::File(path) => {
                if path.as_os_str().is_empty() {
                    bail!(
                        "the container has no command: give the plugin's path \
                         (such as /plugin.wasm) as its entrypoint"
                    );
                }
                let name = file_name(&path);
                (PluginSource::File(path), name)
            }
            Source::Oci(layers) => {
                let bytes = component_layer(layers)?;
                let name = entrypoint
                    .name
                    .map(|n| format!("{n}.wasm"))
                    .unwrap_or_else(|| "plugin.wasm".into());
                (PluginSource::Layer(bytes.to_vec()), name)
            }
        };
        let (policy, policy_source) = resolve_policy(var(POLICY_ENV), layers, |path| {
            std::fs::exists(path).unwrap_or(true)
        })?;
        let memory_limit = match var(MEMORY_ENV) {
            None => DEFAULT_MEMORY_LIMIT,
            Some(text) => match text.trim().parse::<usize>() {
                Ok(mib) if mib > 0 => mib.saturating_mul(1 << 20),
                _ => bail!("{MEMORY_ENV}={text:?} is not a number of MiB greater than 0"),
            },
        };
        let log_filter = var(LOG_ENV).map(str::to_string);
        let shim_settings = [POLICY_ENV, MEMORY_ENV, LOG_ENV];
        let env = env
            .into_iter()
            .filter(|(k, _)| !shim_settings.contains(&k.as_str()))
            .collect();
        Ok(Self {
            plugin,
            name,
            args: ctx.args().iter().skip(1).cloned().collect(),
            env,
            policy: Arc::new(policy),
            policy_source,
            memory_limit,
            log_filter,
        })
    }

    /// Checks, without compiling, that the plugin is one wasp can run (a
    /// WASI command component importing only what wasp provides).
    pub fn check_plugin(&self) -> anyhow::Result<()> {
        match &self.plugin {
            PluginSource::File(path) => {
                let bytes = std::fs::read(path).with_context(|| {
                    format!(
                        "cannot read the plugin {} in the container (the entrypoint)",
                        path.display()
                    )
                })?;
                wasp_host::check::check_plugin(&bytes)
                    .with_context(|| format!("cannot run the plugin {}", path.display()))
            }
            PluginSource::Layer(bytes) => wasp_host::check::check_plugin(bytes)
                .context("cannot run the image's component layer"),
        }
    }
}

/// `KEY=VALUE` entries of an OCI environment as pairs (an entry without
/// `=` is a variable with an empty value).
fn split_env(entries: &[String]) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|entry| match entry.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (entry.clone(), String::new()),
        })
        .collect()
}

/// A path's file name, for logs and `argv[0]`.
fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin.wasm".into())
}

/// The media type of a layer.
fn media_type(layer: &WasmLayer) -> String {
    layer.config.media_type().to_string()
}

/// The one component layer of an image.
fn component_layer(layers: &[WasmLayer]) -> anyhow::Result<&[u8]> {
    let components: Vec<&WasmLayer> = layers
        .iter()
        .filter(|l| [COMPONENT_LAYER, WASM_LAYER].contains(&media_type(l).as_str()))
        .collect();
    match components.as_slice() {
        [one] => Ok(&one.layer),
        [] => bail!("the image has no component layer ({COMPONENT_LAYER})"),
        many => bail!(
            "the image has {} component layers: wasp runs one plugin per container",
            many.len()
        ),
    }
}

/// The container's policy: `WASP_POLICY`'s file, else the image's policy
/// layer, else [`DEFAULT_POLICY`] if `exists` says it does; none is an
/// error ([`NO_POLICY`]).
fn resolve_policy(
    named: Option<&str>,
    layers: &[WasmLayer],
    exists: impl Fn(&Path) -> bool,
) -> anyhow::Result<(Policy, PolicySource)> {
    if let Some(path) = named {
        if path.trim().is_empty() {
            bail!("{POLICY_ENV} is set but empty: it names the policy file");
        }
        let policy = Policy::from_file(path).with_context(|| {
            format!("{POLICY_ENV}={path}: the policy cannot be used (is its ConfigMap mounted?)")
        })?;
        return Ok((policy, PolicySource::File(PathBuf::from(path))));
    }
    let policies: Vec<&WasmLayer> = layers
        .iter()
        .filter(|l| media_type(l) == POLICY_LAYER)
        .collect();
    match policies.as_slice() {
        [] => {}
        [layer] => {
            let digest = layer.config.digest().to_string();
            let text = std::str::from_utf8(&layer.layer)
                .with_context(|| format!("the policy layer {digest} is not UTF-8 text"))?;
            let policy = Policy::from_toml(text)
                .with_context(|| format!("the policy layer {digest} cannot be used"))?;
            return Ok((policy, PolicySource::Layer(digest)));
        }
        many => bail!("the image has {} policy layers: wasp takes one", many.len()),
    }
    let default = Path::new(DEFAULT_POLICY);
    if exists(default) {
        let policy = Policy::from_file(default)
            .with_context(|| format!("the policy {DEFAULT_POLICY} cannot be used"))?;
        return Ok((policy, PolicySource::File(default.to_path_buf())));
    }
    bail!(NO_POLICY)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use containerd_shim_wasm::sandbox::context::Entrypoint;
    use oci_spec::image::{Descriptor, Digest, MediaType};

    use super::*;

    /// A context as containerd-shim-wasm gives one, from arguments,
    /// environment and layers.
    struct Ctx {
        args: Vec<String>,
        env: Vec<String>,
        layers: Vec<WasmLayer>,
    }

    impl RuntimeContext for Ctx {
        fn args(&self) -> &[String] {
            &self.args
        }
        fn envs(&self) -> &[String] {
            &self.env
        }
        fn entrypoint(&self) -> Entrypoint<'_> {
            let arg0 = self.args.first().map(String::as_str).unwrap_or("");
            let (path, func) = arg0.split_once('#').unwrap_or((arg0, "_start"));
            Entrypoint {
                func: func.into(),
                name: Path::new(path)
                    .file_stem()
                    .map(|n| n.to_string_lossy().into_owned()),
                arg0: self.args.first().map(Path::new),
                source: if self.layers.is_empty() {
                    Source::File(path.into())
                } else {
                    Source::Oci(&self.layers)
                },
            }
        }
    }

    fn layer(media: &str, bytes: &[u8]) -> WasmLayer {
        let digest: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        WasmLayer {
            config: Descriptor::new(MediaType::Other(media.into()), bytes.len() as u64, digest),
            precompiled: false,
            layer: bytes.to_vec(),
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    const POLICY: &str = "protocols = [\"tcp\"]\n[grants]\nlisten = [{ addr = \"127.0.0.1\" }]\n";

    fn policy_file() -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(POLICY.as_bytes()).unwrap();
        file
    }

    #[test]
    fn arguments_environment_and_the_named_policy_come_from_the_spec() {
        let file = policy_file();
        let ctx = Ctx {
            args: strings(&["/plugin.wasm", "127.0.0.1:7000", "3"]),
            env: strings(&[
                "PATH=/bin",
                &format!("WASP_POLICY={}", file.path().display()),
                "WASP_MEMORY_MIB=16",
                "WASP_LOG=debug",
                "GREETING=a=b",
            ]),
            layers: vec![],
        };
        let plan = Plan::resolve(&ctx).unwrap();
        assert!(matches!(&plan.plugin, PluginSource::File(p) if p == Path::new("/plugin.wasm")));
        assert_eq!(plan.name, "plugin.wasm");
        assert_eq!(plan.args, strings(&["127.0.0.1:7000", "3"]));
        assert_eq!(
            plan.env,
            vec![
                ("PATH".into(), "/bin".into()),
                ("GREETING".into(), "a=b".into())
            ]
        );
        assert_eq!(plan.policy_source, PolicySource::File(file.path().into()));
        assert_eq!(plan.memory_limit, 16 << 20);
        assert_eq!(plan.log_filter.as_deref(), Some("debug"));
    }

    #[test]
    fn no_policy_is_an_error_that_says_how_to_give_one() {
        let err = resolve_policy(None, &[], |_| false).err().unwrap();
        assert_eq!(err.to_string(), NO_POLICY);
    }

    #[test]
    fn a_named_policy_that_is_missing_is_an_error_not_a_fall_back() {
        let err = resolve_policy(Some("/nonexistent/policy.toml"), &[], |_| true)
            .err()
            .unwrap();
        let message = format!("{err:#}");
        assert!(
            message.contains("WASP_POLICY=/nonexistent/policy.toml"),
            "{message}"
        );
        let err = resolve_policy(Some(""), &[], |_| true).err().unwrap();
        assert!(err.to_string().contains("empty"), "{err}");
    }

    #[test]
    fn a_policy_that_does_not_parse_is_an_error() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"protocols = [\"carrier-pigeon\"]\n")
            .unwrap();
        let path = file.path().display().to_string();
        assert!(resolve_policy(Some(&path), &[], |_| false).is_err());
        let layers = [layer(POLICY_LAYER, b"[grants]\nnonsense = 1\n")];
        let err = resolve_policy(None, &layers, |_| false).err().unwrap();
        assert!(format!("{err:#}").contains("policy layer"), "{err:#}");
    }

    #[test]
    fn the_named_policy_comes_before_a_layer_and_a_layer_before_the_default() {
        let file = policy_file();
        let path = file.path().display().to_string();
        let layers = [
            layer(COMPONENT_LAYER, b"\0asm"),
            layer(POLICY_LAYER, POLICY.as_bytes()),
        ];
        let (_, source) = resolve_policy(Some(&path), &layers, |_| true).unwrap();
        assert_eq!(source, PolicySource::File(file.path().into()));
        let (_, source) = resolve_policy(None, &layers, |_| true).unwrap();
        assert!(matches!(source, PolicySource::Layer(_)));
        let two = [
            layer(POLICY_LAYER, POLICY.as_bytes()),
            layer(POLICY_LAYER, POLICY.as_bytes()),
        ];
        assert!(resolve_policy(None, &two, |_| true).is_err());
    }

    #[test]
    fn an_image_gives_one_component_layer_and_its_policy() {
        let ctx = Ctx {
            args: strings(&["/echo.wasm", "127.0.0.1:7000"]),
            env: vec![],
            layers: vec![
                layer(COMPONENT_LAYER, b"\0asm\x0d\0\x01\0"),
                layer(POLICY_LAYER, POLICY.as_bytes()),
            ],
        };
        let plan = Plan::resolve(&ctx).unwrap();
        assert!(matches!(&plan.plugin, PluginSource::Layer(b) if b.starts_with(b"\0asm")));
        assert_eq!(plan.name, "echo.wasm");
        assert!(matches!(plan.policy_source, PolicySource::Layer(_)));
        let two = [layer(COMPONENT_LAYER, b"a"), layer(WASM_LAYER, b"b")];
        assert!(component_layer(&two).is_err());
        assert!(component_layer(&[layer(POLICY_LAYER, b"")]).is_err());
    }

    #[test]
    fn a_function_entrypoint_or_none_is_refused() {
        let file = policy_file();
        let env = vec![format!("WASP_POLICY={}", file.path().display())];
        for args in [vec!["/plugin.wasm#main".to_string()], vec![]] {
            let ctx = Ctx {
                args,
                env: env.clone(),
                layers: vec![],
            };
            assert!(Plan::resolve(&ctx).is_err());
        }
    }

    #[test]
    fn the_readmes_configmap_policy_is_valid() {
        let readme = include_str!("../README.md");
        let start = readme.find("policy.toml: |\n").expect("the ConfigMap") + 15;
        let end = start
            + readme[start..]
                .find("---")
                .expect("the end of the ConfigMap");
        let text: String = readme[start..end]
            .lines()
            .map(|line| line.strip_prefix("    ").unwrap_or(line))
            .collect::<Vec<_>>()
            .join("\n");
        let policy = Policy::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(policy.limits().max_cpu_share, Some(50));
    }

    #[test]
    fn a_bad_memory_setting_is_refused() {
        let file = policy_file();
        for bad in ["0", "lots", "-1"] {
            let ctx = Ctx {
                args: strings(&["/plugin.wasm"]),
                env: vec![
                    format!("WASP_POLICY={}", file.path().display()),
                    format!("WASP_MEMORY_MIB={bad}"),
                ],
                layers: vec![],
            };
            let err = Plan::resolve(&ctx).err().unwrap();
            assert!(err.to_string().contains("WASP_MEMORY_MIB"), "{err}");
        }
    }
}
