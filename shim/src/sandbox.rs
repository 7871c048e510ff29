//! containerd-shim-wasm's [`Sandbox`]: it runs inside the container's
//! process, after containerd-shim-wasm (through youki's libcontainer) has
//! entered the container's namespaces and cgroup, set up its root and
//! mounts, and applied its seccomp profile and capabilities.

use anyhow::Context as _;
use containerd_shim_wasm::sandbox::Sandbox;
use containerd_shim_wasm::sandbox::context::RuntimeContext;

use crate::exit;
use crate::plan::Plan;

/// Runs a container's plugin with wasp's `PluginHost` under its policy.
#[derive(Default)]
pub struct WaspSandbox;

impl Sandbox for WaspSandbox {
    /// Runs the plugin to its end on a thread of its own (a current-thread
    /// tokio runtime, as `wasp run`) and returns the container's exit
    /// status. Every way to fail is a status with a line on stderr
    /// (`exit`), as with `wasp run`.
    async fn run_wasi(&self, ctx: &impl RuntimeContext) -> anyhow::Result<i32> {
        let plan = match Plan::resolve(ctx) {
            Ok(plan) => plan,
            Err(err) => {
                eprintln!("wasp: error: {err:#}");
                return Ok(exit::CONFIGURATION);
            }
        };
        // containerd-shim-wasm polls this future with a multi-thread
        // runtime's `block_on`; the plugin's runtime is its own, on a
        // thread of its own, as `wasp run` has it.
        let (status, ended) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("wasp-plugin".into())
            .spawn(move || {
                let _ = status.send(crate::runner::run(plan));
            })
            .context("starting the plugin's thread")?;
        ended
            .await
            .context("the plugin's thread ended without a status")
    }

    /// Decides before the container starts whether it can run: its plugin
    /// and its policy must be there and valid. A container that cannot
    /// run (no policy above all) fails to be created, with the reason on
    /// its stderr and in the shim's log.
    async fn can_handle(&self, ctx: &impl RuntimeContext) -> anyhow::Result<()> {
        let checked = Plan::resolve(ctx).and_then(|plan| plan.check_plugin());
        if let Err(err) = &checked {
            eprintln!("wasp: error: {err:#}");
            log::error!("wasp: the container cannot run: {err:#}");
        }
        checked
    }
}
