//! `containerd-shim-wasp-v1`: a containerd shim that runs wasp plugins
//! (WASI 0.2 command components) as containers, each under its policy.
//!
//! containerd starts it for the runtime `io.containerd.wasp.v1` (found as
//! `containerd-shim-wasp-v1` in containerd's `PATH`). It is built on
//! containerd-shim-wasm (runwasi): the container is set up as any other
//! (namespaces, cgroup, root, mounts, seccomp), and inside it wasp's
//! `PluginHost` runs the plugin named by the container's entrypoint under
//! the policy its `WASP_POLICY` names (else the image's policy layer, else
//! `/policy.toml`). Without a policy the container does not start. See
//! `shim/README.md`.

mod exit;
mod plan;
mod runner;
mod sandbox;

use containerd_shim_wasm::shim::{Cli as _, Config, Shim, Version, version};

/// The shim: its name, version and the image layers it takes.
struct WaspShim;

impl Shim for WaspShim {
    fn name() -> &'static str {
        "wasp"
    }

    fn version() -> Version {
        version!()
    }

    type Sandbox = sandbox::WaspSandbox;

    /// Component layers and wasp policy layers (where containerd hands
    /// the shim an image's layers: 1.6.25, 1.7.7 and later). No compiler:
    /// the shim compiles each plugin when its container starts (README,
    /// "Precompilation").
    fn supported_layers_types() -> &'static [&'static str] {
        plan::LAYER_TYPES
    }
}

fn main() {
    WaspShim::run(Config::default());
}
