//! The `wasp` command line: runs a network plugin under a policy file.
//!
//! ```text
//! wasp run PLUGIN.wasm --policy POLICY.toml [-- ARGS...]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use wasp_host::Policy;
use wasp_host::run::{GuestOptions, PluginHost};

/// wasp: run untrusted WebAssembly network plugins behind a Winsock-style
/// socket provider and a deny-by-default capability policy.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a plugin (a WASI command component) under a policy.
    Run {
        /// The plugin's `.wasm` component.
        plugin: PathBuf,
        /// The policy file (TOML) granting the plugin its network access.
        #[arg(long)]
        policy: PathBuf,
        /// Memory ceiling of the plugin, in MiB.
        #[arg(long, default_value_t = 64)]
        memory_mib: usize,
        /// Arguments passed to the plugin.
        #[arg(last = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WASP_LOG")
                .unwrap_or_else(|_| "warn,wasp_host=info".into()),
        )
        .init();
    match cli.command {
        Command::Run {
            plugin,
            policy,
            memory_mib,
            args,
        } => match run(plugin, policy, memory_mib, args) {
            Ok(0) => ExitCode::SUCCESS,
            Ok(status) => {
                eprintln!("wasp: plugin exited with status {status}");
                ExitCode::from(u8::try_from(status).unwrap_or(1).max(1))
            }
            Err(err) => {
                eprintln!("wasp: error: {err:#}");
                ExitCode::from(2)
            }
        },
    }
}

fn run(
    plugin: PathBuf,
    policy: PathBuf,
    memory_mib: usize,
    args: Vec<String>,
) -> anyhow::Result<i32> {
    let policy = Arc::new(Policy::from_file(&policy)?);
    // One plugin, one thread: the guest and the engine tasks that post its
    // messages share it, so delivering an event wakes no other thread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let host = PluginHost::new().map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let component = host
        .load(&plugin)
        .map_err(|e| anyhow::anyhow!("{e:#}"))
        .with_context(|| format!("cannot load plugin {}", plugin.display()))?;
    let name = plugin
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".into());
    let mut options = GuestOptions::new(name, policy);
    options.args = args;
    options.memory_limit = memory_mib << 20;
    runtime
        .block_on(host.run(&component, options))
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .context("plugin trapped")
}
