//! The `wasp` command line: runs a network plugin under a policy file, and
//! checks policy files.
//!
//! ```text
//! wasp run PLUGIN.wasm --policy POLICY.toml [LIMITS] [--env KEY=VALUE] [-- ARGS...]
//! wasp serve MANIFEST.toml [--cache-dir DIR]
//! wasp compile PLUGIN.wasm [--cache-dir DIR]
//! wasp policy check POLICY.toml [--strict]
//! ```
//!
//! Exit status of `wasp run`: the plugin's own when it ends by itself (0 for
//! success, 1 for failure: a WASI 0.2 command reports only these);
//! otherwise wasp's, with one line on stderr saying why:
//!
//! | status | meaning |
//! | --- | --- |
//! | 2 | usage error or invalid configuration (policy file, `--env`) |
//! | 3 | the plugin trapped |
//! | 4 | the plugin went over its memory limit |
//! | 5 | the plugin went over its CPU time limit |
//! | 6 | the plugin went over its wall-clock time limit |
//! | 7 | the plugin went over its CPU share limit |
//! | 8 | not a component (a core module) |
//! | 9 | not a WASI command (no `wasi:cli/run` export) |
//! | 10 | it imports an interface wasp does not provide |
//! | 11 | the plugin cannot be loaded or instantiated otherwise |
//!
//! SIGHUP reloads the policy file into the running plugin (SPEC AS-24,
//! AS-25).

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use wasp_host::cache::CompileCache;
use wasp_host::check::PluginError;
use wasp_host::exit;
use wasp_host::policy::Mode;
use wasp_host::run::{GuestOptions, PluginHost};
use wasp_host::{Policy, PolicyHandle};

use cli::logging::{self, LogFormat};
use cli::policy_check;

/// How `wasp run` ends, for `--help`.
const EXIT_STATUS_HELP: &str = "\
Exit status: the plugin's own when it ends by itself (0 for success, 1 for
failure); otherwise:
  2  usage error or invalid configuration (policy file, --env)
  3  the plugin trapped
  4  memory limit (--memory-mib) exceeded
  5  CPU time limit exceeded
  6  wall-clock time limit exceeded
  7  CPU share limit exceeded
  8  not a component (a core module: the message says how to wrap it)
  9  not a WASI command (it does not export wasi:cli/run)
  10 it imports an interface wasp does not provide (the message names it)
  11 the plugin cannot be loaded or instantiated otherwise (unreadable,
     invalid, failed to compile or instantiate)

SIGHUP reloads the policy file into the running plugin (its sockets get FD_QOS
where their send rate changed, FD_ADDRESS_LIST_CHANGE where armed); a file
that does not parse is reported and the policy in force is kept.";

/// wasp: run untrusted WebAssembly network plugins behind a Winsock-style
/// socket provider and a deny-by-default capability policy.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Format of wasp's own log lines on stderr (filtered by WASP_LOG: a
    /// level such as `debug` applies to wasp's lines only).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a plugin (a WASI command component) under a policy.
    #[command(after_help = EXIT_STATUS_HELP)]
    Run {
        /// The plugin's `.wasm` component.
        plugin: PathBuf,
        /// The policy file (TOML) granting the plugin its network access.
        #[arg(long)]
        policy: PathBuf,
        /// Memory ceiling of the plugin, in MiB: all its linear memories
        /// and tables together.
        #[arg(long, default_value_t = 64)]
        memory_mib: usize,
        /// CPU time the plugin may use in all, in seconds (overrides the
        /// policy's `max-cpu-seconds`).
        #[arg(long, value_name = "SECONDS", value_parser = positive_seconds)]
        max_cpu_seconds: Option<Duration>,
        /// Wall-clock time the plugin may run, in seconds (overrides the
        /// policy's `max-wall-seconds`).
        #[arg(long, value_name = "SECONDS", value_parser = positive_seconds)]
        max_wall_seconds: Option<Duration>,
        /// Share of one core the plugin may use over 10 s, in percent
        /// (overrides the policy's `max-cpu-share`).
        #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(1..=100))]
        max_cpu_share: Option<u8>,
        /// Where compiled plugins are kept, so that a plugin is compiled
        /// once (default: $WASP_CACHE_DIR, else $XDG_CACHE_HOME/wasp, else
        /// ~/.cache/wasp).
        #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
        cache_dir: Option<PathBuf>,
        /// Compile the plugin without reading or writing the compile cache.
        #[arg(long)]
        no_cache: bool,
        /// An environment variable given to the plugin (repeatable); the
        /// plugin sees no other.
        #[arg(long = "env", value_name = "KEY=VALUE", value_parser = env_var)]
        env: Vec<(String, String)>,
        /// Audit the policy instead of enforcing it: every use of the
        /// network is checked and recorded, what the policy does not grant
        /// is logged ("audit: would deny") but allowed; at the end, the
        /// smallest policy that allows what the plugin did is printed
        /// (limits still hold). Also `mode = "audit"` in the policy file.
        #[arg(long)]
        audit: bool,
        /// Write the suggested policy of an audited run to FILE instead of
        /// printing it (implies --audit).
        #[arg(long, value_name = "FILE")]
        suggest_policy: Option<PathBuf>,
        /// Serve the plugin's metrics (Prometheus text format) at
        /// http://ADDR/metrics: sockets, bytes, messages, queue depth,
        /// denials by reason, CPU time, memory. Off by default.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
        /// Arguments passed to the plugin.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Check and compile a plugin into the compile cache, so that its first
    /// `wasp run` (with the same cache directory) starts without compiling.
    /// Exit status as `wasp run`'s for a plugin that cannot be loaded.
    Compile {
        /// The plugin's `.wasm` component.
        plugin: PathBuf,
        /// The cache directory (default: $WASP_CACHE_DIR, else
        /// $XDG_CACHE_HOME/wasp, else ~/.cache/wasp).
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
    },
    /// Run the plugins of a manifest in one process, each under its own
    /// policy and limits, restarted with backoff as its entry says;
    /// SIGHUP reloads their policies, SIGTERM or SIGINT stops them all
    /// (status 0). The manifest's format is in the README.
    Serve {
        /// The manifest (TOML): `[[plugin]]` entries and an optional
        /// `metrics` address.
        manifest: PathBuf,
        /// Where compiled plugins are kept (as for `wasp run`).
        #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
        cache_dir: Option<PathBuf>,
        /// Compile the plugins without the compile cache.
        #[arg(long)]
        no_cache: bool,
    },
    /// Work with policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate a policy file, print what it grants in plain words and warn
    /// about what looks like a mistake (it grants nothing, grants overlap,
    /// a grant of every address or of every port). Exit status 0 when
    /// valid, 2 when not (1 with --strict when there are warnings).
    Check {
        /// The policy file (TOML).
        file: PathBuf,
        /// Exit with status 1 when there are warnings.
        #[arg(long)]
        strict: bool,
    },
}

/// `KEY=VALUE` of `--env`.
fn env_var(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err("expected KEY=VALUE".into()),
    }
}

/// Where `wasp run` keeps compiled plugins: `None` with `--no-cache`.
fn cache_dir_of(flag: Option<PathBuf>, no_cache: bool) -> Option<PathBuf> {
    if no_cache {
        None
    } else {
        flag.or_else(CompileCache::default_dir)
    }
}

/// The limits given on the command line, each overriding the policy's.
struct LimitFlags {
    memory_mib: usize,
    cpu_time: Option<Duration>,
    wall_time: Option<Duration>,
    cpu_share: Option<u8>,
}

/// A number of seconds greater than zero.
fn positive_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text.parse().map_err(|e| format!("{e}"))?;
    match Duration::try_from_secs_f64(seconds) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        _ => Err("expected a number of seconds greater than 0".into()),
    }
}

/// How a run failed: before the plugin ran, or while it ran.
enum Failure {
    /// Invalid configuration or a failure of wasp's own set-up (status 2).
    Setup(anyhow::Error),
    /// The plugin cannot be read or compiled (status 11).
    CannotLoad(anyhow::Error),
    /// The file is not a plugin wasp can run (statuses 8 to 10).
    NotAPlugin(PluginError),
    /// The plugin trapped or was stopped at a limit.
    Run(wasmtime::Error),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    match cli.command {
        Command::Policy(PolicyCommand::Check { file, strict }) => {
            policy_check::check(&file, strict)
        }
        Command::Serve {
            manifest,
            cache_dir,
            no_cache,
        } => ExitCode::from(exit_status(cli::serve::serve(
            &manifest,
            cache_dir_of(cache_dir, no_cache),
        ))),
        Command::Compile { plugin, cache_dir } => ExitCode::from(exit_status(compile(
            &plugin,
            cache_dir_of(cache_dir, false),
        ))),
        Command::Run {
            plugin,
            policy,
            memory_mib,
            max_cpu_seconds,
            max_wall_seconds,
            max_cpu_share,
            cache_dir: cache_flag,
            no_cache,
            env,
            metrics,
            audit,
            suggest_policy,
            args,
        } => {
            let request = RunRequest {
                metrics,
                audit: audit || suggest_policy.is_some(),
                suggest_policy,
                plugin,
                policy,
                limits: LimitFlags {
                    memory_mib,
                    cpu_time: max_cpu_seconds,
                    wall_time: max_wall_seconds,
                    cpu_share: max_cpu_share,
                },
                cache: cache_dir_of(cache_flag, no_cache),
                env,
                args,
            };
            let started = Instant::now();
            let name = request.name();
            let status = exit_status(run(request, &name));
            tracing::info!(
                plugin = %name,
                status,
                reason = exit::reason(status),
                seconds = started.elapsed().as_secs_f64(),
                "plugin ended"
            );
            ExitCode::from(status)
        }
    }
}

/// The exit status of a run (or a compile), after one line on stderr
/// saying why when it is not the plugin's own.
fn exit_status(result: Result<i32, Failure>) -> u8 {
    match result {
        Ok(0) => 0,
        Ok(status) => {
            eprintln!("wasp: plugin exited with status {status}");
            exit::of_plugin(status)
        }
        Err(Failure::Setup(err)) => {
            eprintln!("wasp: error: {err:#}");
            exit::CONFIGURATION
        }
        Err(Failure::CannotLoad(err)) => {
            eprintln!("wasp: error: {err:#}");
            exit::CANNOT_LOAD
        }
        Err(Failure::Run(err)) => report_stop(&err),
        Err(Failure::NotAPlugin(err)) => {
            eprintln!("wasp: error: cannot run this plugin: {err}");
            exit::of_not_a_plugin(&err)
        }
    }
}

/// Why `plugin` could not be loaded: not a plugin wasp runs, or unreadable
/// or not compilable.
fn load_failure(e: wasmtime::Error, plugin: &std::path::Path) -> Failure {
    match e.downcast::<PluginError>() {
        Ok(not_a_plugin) => Failure::NotAPlugin(not_a_plugin),
        Err(e) => Failure::CannotLoad(anyhow::anyhow!(
            "cannot load plugin {}: {e:#}",
            plugin.display()
        )),
    }
}

/// `wasp compile`: checks and compiles `plugin` into the compile cache.
fn compile(plugin: &std::path::Path, cache: Option<PathBuf>) -> Result<i32, Failure> {
    let dir = cache.ok_or_else(|| {
        Failure::Setup(anyhow::anyhow!(
            "no cache directory: give --cache-dir, or set WASP_CACHE_DIR or HOME"
        ))
    })?;
    let cache = CompileCache::open(dir).map_err(|e| Failure::Setup(e.into()))?;
    let host = new_host()?;
    host.load_cached(plugin, &cache)
        .map_err(|e| load_failure(e, plugin))?;
    println!(
        "{} compiled into {}",
        plugin.display(),
        cache.dir().display()
    );
    Ok(0)
}

/// Prints one line saying why the plugin ended and returns the status that
/// says it (see [`EXIT_STATUS_HELP`]).
fn report_stop(err: &wasmtime::Error) -> u8 {
    let (status, why) = stop_status(err);
    eprintln!("wasp: {why}");
    status
}

/// The exit status that says why a plugin run ended in `err`, and a line
/// saying it (see [`EXIT_STATUS_HELP`]).
fn stop_status(err: &wasmtime::Error) -> (u8, String) {
    tracing::debug!("the plugin ended with {err:?}");
    exit::of_stop(err)
}

/// What `wasp run` was asked to do.
struct RunRequest {
    metrics: Option<std::net::SocketAddr>,
    audit: bool,
    suggest_policy: Option<PathBuf>,
    plugin: PathBuf,
    policy: PathBuf,
    limits: LimitFlags,
    cache: Option<PathBuf>,
    env: Vec<(String, String)>,
    args: Vec<String>,
}

impl RunRequest {
    /// The plugin's name in logs and its `argv[0]`: its file name.
    fn name(&self) -> String {
        self.plugin
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "plugin".into())
    }
}

/// `wasp run` of the plugin called `name` (its [`RunRequest::name`]).
fn run(request: RunRequest, name: &str) -> Result<i32, Failure> {
    let RunRequest {
        plugin,
        policy: policy_path,
        limits: flags,
        cache,
        env,
        args,
        metrics,
        audit,
        suggest_policy,
    } = request;
    let source = PolicySource {
        path: policy_path.clone(),
        audit,
    };
    let policy = source.read().map_err(|e| Failure::Setup(e.into()))?;
    // One plugin, one thread: the guest, its reactor (turned inline by its
    // queue calls) and the tasks beside it (admission, rooted joins,
    // lingering closes) share it, so an event wakes no other thread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(Failure::Setup)?;
    let host = new_host()?;
    let cache = open_cache(cache);
    let component = load(&host, &plugin, cache.as_ref())?;
    let options = guest_options(name, policy, &flags, env, args);
    // SIGHUP reloads the policy file into the running plugin (caught from
    // here on: a SIGHUP during the start does not end wasp).
    let hangups = {
        let _runtime = runtime.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    };
    match hangups {
        Ok(hangups) => {
            let live = vec![(source, options.policy.clone())];
            runtime.spawn(reload_on_hangup(hangups, live));
        }
        Err(e) => eprintln!("wasp: warning: SIGHUP cannot be caught ({e}): no policy reload"),
    }
    if let Some(addr) = metrics {
        let plugins = Arc::new(cli::metrics::Plugins::default());
        plugins.watch(name, options.meter.clone());
        let bound = runtime
            .block_on(cli::metrics::serve(addr, plugins))
            .with_context(|| format!("serving metrics at {addr}"))
            .map_err(Failure::Setup)?;
        tracing::info!(plugin = %name, "metrics at http://{bound}/metrics");
    }
    options.log_start(&policy_path.display());
    let (live, meter) = (options.policy.clone(), options.meter.clone());
    let result = runtime.block_on(host.run(&component, options));
    if live.current().mode() == Mode::Audit {
        let suggestion = wasp_host::policy::suggest::suggest(&meter.activities());
        report_suggestion(&suggestion, suggest_policy.as_deref()).map_err(Failure::Setup)?;
    }
    // A write to a stalled stdout may still hold a blocking thread: do not
    // wait for it past a moment.
    runtime.shutdown_timeout(Duration::from_millis(500));
    result.map_err(Failure::Run)
}

/// Reloads the policy file on each SIGHUP and replaces the running
/// plugin's policy with it (its sockets are told: FD_QOS, and
/// FD_ADDRESS_LIST_CHANGE where armed); a file that does not parse is
/// reported and the policy in force is kept.
async fn reload_on_hangup(
    mut hangups: tokio::signal::unix::Signal,
    live: Vec<(PolicySource, PolicyHandle)>,
) {
    while hangups.recv().await.is_some() {
        for (source, handle) in &live {
            let path = source.path.display();
            match source.read() {
                Ok(policy) => {
                    handle.replace(policy);
                    eprintln!("wasp: policy reloaded from {path}");
                }
                Err(e) => eprintln!(
                    "wasp: error: policy reload from {path} failed, keeping the policy in force: {e}"
                ),
            }
        }
    }
}

/// Where a plugin's policy comes from: its file, audited by `--audit`
/// whatever the file's mode.
#[derive(Clone)]
struct PolicySource {
    path: PathBuf,
    audit: bool,
}

impl PolicySource {
    /// Reads the policy file.
    fn read(&self) -> Result<Arc<Policy>, wasp_host::PolicyError> {
        let policy = Policy::from_file(&self.path)?;
        Ok(Arc::new(match self.audit {
            true => policy.in_mode(Mode::Audit),
            false => policy,
        }))
    }
}

/// Prints the policy an audited run suggests, or writes it to `file`.
fn report_suggestion(suggestion: &str, file: Option<&std::path::Path>) -> anyhow::Result<()> {
    match file {
        Some(file) => {
            std::fs::write(file, suggestion)
                .with_context(|| format!("writing the suggested policy to {}", file.display()))?;
            tracing::info!("audit: suggested policy written to {}", file.display());
        }
        None => eprintln!(
            "wasp: audit: the smallest policy that allows what the plugin did:\n{suggestion}"
        ),
    }
    Ok(())
}

/// The engine every plugin of this process runs on.
fn new_host() -> Result<PluginHost, Failure> {
    PluginHost::new()
        .map_err(|e| anyhow::anyhow!("{e:#}"))
        .map_err(Failure::Setup)
}

/// The compile cache in `dir`, if one is asked for and can be used: one
/// that cannot is a slower start, not a failure.
fn open_cache(dir: Option<PathBuf>) -> Option<CompileCache> {
    dir.and_then(|dir| {
        CompileCache::open(dir)
            .inspect_err(|e| eprintln!("wasp: warning: {e}; compiling without a cache"))
            .ok()
    })
}

/// Loads (checks and compiles, or takes from the cache) `plugin`.
fn load(
    host: &PluginHost,
    plugin: &std::path::Path,
    cache: Option<&CompileCache>,
) -> Result<wasmtime::component::Component, Failure> {
    let loaded = match cache {
        Some(cache) => host.load_cached(plugin, cache),
        None => host.load(plugin),
    };
    loaded.map_err(|e| load_failure(e, plugin))
}

/// The options of one plugin run: its policy, the limits given (each
/// overriding the policy's), its environment and arguments.
fn guest_options(
    name: &str,
    policy: Arc<Policy>,
    flags: &LimitFlags,
    env: Vec<(String, String)>,
    args: Vec<String>,
) -> GuestOptions {
    let mut options = GuestOptions::new(name, policy);
    options.args = args;
    options.env = env;
    options.memory_limit = flags.memory_mib.saturating_mul(1 << 20);
    let limits = &mut options.time_limits;
    limits.cpu_time = flags.cpu_time.or(limits.cpu_time);
    limits.wall_time = flags.wall_time.or(limits.wall_time);
    limits.cpu_share = flags.cpu_share.or(limits.cpu_share);
    options
}
