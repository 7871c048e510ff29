//! `wasp serve MANIFEST.toml`: several plugins in one process, each under
//! its own policy and limits, each restarted with backoff when it ends (as
//! its manifest entry says), their policies reloaded on SIGHUP, all of them
//! stopped on SIGTERM or SIGINT.
//!
//! ```toml
//! metrics = "127.0.0.1:9464"          # optional: the metrics endpoint
//!
//! [[plugin]]
//! name = "echo"                       # unique; its name in logs and metrics
//! path = "plugins/echo.wasm"          # relative to the manifest's directory
//! policy = "policies/echo.toml"
//! args = ["127.0.0.1:7000"]
//! env = { GREETING = "hello" }
//! memory-mib = 64                     # and max-cpu-seconds, max-wall-seconds,
//!                                     # max-cpu-share, as `wasp run`'s flags
//! restart = "on-failure"              # or "always", "never"
//! backoff-initial-seconds = 0.5       # doubled after each quick end,
//! backoff-max-seconds = 30            # up to this
//! ```
//!
//! Plugins share nothing: each has its own store, memory budget, sockets
//! and policy (the sandbox's isolation holds between them as between any
//! two guests); one that traps, goes over a limit or exits is restarted on
//! its own while the others keep serving.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Deserialize;
use tokio::sync::watch;
use wasp_host::run::{GuestOptions, PluginHost, PreparedPlugin};

use super::metrics::Plugins;
use crate::{Failure, LimitFlags};

/// A manifest: the plugins to run, and where to serve their metrics.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    /// The metrics endpoint's address (none unless given).
    metrics: Option<SocketAddr>,
    /// The plugins.
    #[serde(rename = "plugin", default)]
    plugins: Vec<Entry>,
}

/// One plugin of a manifest.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Entry {
    name: String,
    path: PathBuf,
    policy: PathBuf,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default = "default_memory_mib")]
    memory_mib: usize,
    max_cpu_seconds: Option<f64>,
    max_wall_seconds: Option<f64>,
    max_cpu_share: Option<u8>,
    #[serde(default)]
    restart: Restart,
    #[serde(default = "default_backoff_initial")]
    backoff_initial_seconds: f64,
    #[serde(default = "default_backoff_max")]
    backoff_max_seconds: f64,
}

fn default_memory_mib() -> usize {
    64
}

fn default_backoff_initial() -> f64 {
    0.5
}

fn default_backoff_max() -> f64 {
    30.0
}

/// When a plugin that ended is started again.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum Restart {
    /// Never: it stays ended.
    Never,
    /// When it failed: a status other than 0, a trap, a limit.
    #[default]
    OnFailure,
    /// Whenever it ends.
    Always,
}

impl Restart {
    fn after(self, status: u8) -> bool {
        match self {
            Restart::Never => false,
            Restart::OnFailure => status != 0,
            Restart::Always => true,
        }
    }
}

/// The delays between the restarts of one plugin: `initial`, doubled after
/// each run that ended within `max`, up to `max`; a run that lasted longer
/// than `max` was healthy, and the next delay is `initial` again.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial,
        }
    }

    /// The delay before the next start, after a run that lasted `ran`.
    fn delay_after(&mut self, ran: Duration) -> Duration {
        if ran > self.max {
            self.next = self.initial;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }
}

/// One plugin ready to run: checked, compiled, its imports resolved, its
/// policy read.
struct Prepared {
    options: GuestOptions,
    policy: crate::PolicySource,
    plugin: PreparedPlugin,
    restart: Restart,
    backoff: Backoff,
}

/// Seconds of a manifest field, greater than zero.
fn seconds(field: &str, value: f64) -> anyhow::Result<Duration> {
    match Duration::try_from_secs_f64(value) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => anyhow::bail!("`{field}` must be a number of seconds greater than 0"),
    }
}

/// Reads and checks a manifest; paths in it are made relative to its
/// directory.
fn read_manifest(path: &Path) -> anyhow::Result<Manifest> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read manifest {}", path.display()))?;
    let mut manifest: Manifest =
        toml::from_str(&text).with_context(|| format!("invalid manifest {}", path.display()))?;
    if manifest.plugins.is_empty() {
        anyhow::bail!("manifest {} names no [[plugin]]", path.display());
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let mut names = HashSet::new();
    for entry in &mut manifest.plugins {
        if entry.name.is_empty() || !names.insert(entry.name.clone()) {
            anyhow::bail!(
                "manifest {}: plugin names must be given and unique ({:?})",
                path.display(),
                entry.name
            );
        }
        entry.path = base.join(&entry.path);
        entry.policy = base.join(&entry.policy);
        if entry.max_cpu_share.is_some_and(|p| p == 0 || p > 100) {
            anyhow::bail!("plugin {}: `max-cpu-share` must be 1 to 100", entry.name);
        }
        let initial = seconds("backoff-initial-seconds", entry.backoff_initial_seconds)?;
        let max = seconds("backoff-max-seconds", entry.backoff_max_seconds)?;
        if initial > max {
            anyhow::bail!(
                "plugin {}: `backoff-initial-seconds` is above `backoff-max-seconds`",
                entry.name
            );
        }
    }
    Ok(manifest)
}

/// Checks, compiles and reads the policy of `entry`.
fn prepare(
    entry: Entry,
    host: &PluginHost,
    cache: Option<&wasp_host::cache::CompileCache>,
) -> Result<Prepared, Failure> {
    let setup = |e: anyhow::Error| Failure::Setup(e.context(format!("plugin {}", entry.name)));
    let optional = |field: &str, value: Option<f64>| value.map(|v| seconds(field, v)).transpose();
    let flags = LimitFlags {
        memory_mib: entry.memory_mib,
        cpu_time: optional("max-cpu-seconds", entry.max_cpu_seconds).map_err(setup)?,
        wall_time: optional("max-wall-seconds", entry.max_wall_seconds).map_err(setup)?,
        cpu_share: entry.max_cpu_share,
    };
    let source = crate::PolicySource {
        path: entry.policy.clone(),
        audit: false,
    };
    let policy = source.read().map_err(|e| Failure::Setup(e.into()))?;
    let component = crate::load(host, &entry.path, cache)?;
    let plugin = host.prepare(&component).map_err(Failure::Run)?;
    let env = entry.env.into_iter().collect();
    let options = crate::guest_options(&entry.name, policy, &flags, env, entry.args);
    let backoff = Backoff::new(
        Duration::from_secs_f64(entry.backoff_initial_seconds),
        Duration::from_secs_f64(entry.backoff_max_seconds),
    );
    Ok(Prepared {
        options,
        policy: source,
        plugin,
        restart: entry.restart,
        backoff,
    })
}

/// `wasp serve`: runs every plugin of the manifest at `path` until each has
/// ended for good, or until SIGTERM or SIGINT stops them all (status 0).
/// A manifest, policy or plugin that is not valid stops wasp before any
/// plugin starts, with the status `wasp run` would give.
pub fn serve(path: &Path, cache: Option<PathBuf>) -> Result<i32, Failure> {
    let manifest = read_manifest(path).map_err(Failure::Setup)?;
    let host = Arc::new(crate::new_host()?);
    let cache = crate::open_cache(cache);
    let plugins: Vec<Prepared> = manifest
        .plugins
        .into_iter()
        .map(|entry| prepare(entry, &host, cache.as_ref()))
        .collect::<Result<_, _>>()?;
    // The plugins' futures are spawned onto the workers (PluginHost::run
    // wants to be polled on one); epoch yields keep a spinning plugin from
    // holding a worker.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(Failure::Setup)?;
    let entered = runtime.enter();
    let board = Arc::new(Plugins::default());
    for plugin in &plugins {
        board.watch(&plugin.options.name, plugin.options.meter.clone());
    }
    if let Some(addr) = manifest.metrics {
        let bound = runtime
            .block_on(super::metrics::serve(addr, board.clone()))
            .with_context(|| format!("serving metrics at {addr}"))
            .map_err(Failure::Setup)?;
        tracing::info!("metrics at http://{bound}/metrics");
    }
    use tokio::signal::unix::{SignalKind, signal};
    let signals = (|| {
        Ok::<_, std::io::Error>((
            signal(SignalKind::hangup())?,
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        ))
    })();
    let (hangups, mut terms, mut interrupts) = signals
        .context("catching signals")
        .map_err(Failure::Setup)?;
    let live = plugins
        .iter()
        .map(|p| (p.policy.clone(), p.options.policy.clone()))
        .collect();
    runtime.spawn(crate::reload_on_hangup(hangups, live));
    let (stop, stopped) = watch::channel(false);
    let tasks: Vec<_> = plugins
        .into_iter()
        .map(|plugin| {
            runtime.spawn(supervise(
                host.clone(),
                plugin,
                board.clone(),
                stopped.clone(),
            ))
        })
        .collect();
    runtime.block_on(async {
        let all_ended = futures_all(tasks);
        tokio::select! {
            () = all_ended => {}
            _ = terms.recv() => stop_all(&stop, "SIGTERM"),
            _ = interrupts.recv() => stop_all(&stop, "SIGINT"),
        }
    });
    drop(entered);
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(0)
}

/// Tells every plugin to stop (each is dropped where it is: its sockets
/// close) and waits for them.
fn stop_all(stop: &watch::Sender<bool>, signal: &str) {
    tracing::info!("{signal}: stopping every plugin");
    let _ = stop.send(true);
}

/// Waits for every task to end.
async fn futures_all(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for task in tasks {
        let _ = task.await;
    }
}

/// Runs one plugin, again and again as its restart policy says, until it
/// ends for good or `stopped` says to stop.
async fn supervise(
    host: Arc<PluginHost>,
    mut plugin: Prepared,
    board: Arc<Plugins>,
    mut stopped: watch::Receiver<bool>,
) {
    let name = plugin.options.name.clone();
    loop {
        plugin.options.log_start(&plugin.policy.path.display());
        let started = Instant::now();
        let run = host.run_prepared(&plugin.plugin, plugin.options.clone());
        let result = tokio::select! {
            result = run => result,
            _ = stopped.wait_for(|stop| *stop) => {
                tracing::info!(plugin = %name, "plugin stopped");
                return;
            }
        };
        let ran = started.elapsed();
        let status = match &result {
            Ok(status) => wasp_host::exit::of_plugin(*status),
            Err(e) => {
                let (status, why) = crate::stop_status(e);
                tracing::warn!(plugin = %name, "{why}");
                status
            }
        };
        tracing::info!(
            plugin = %name,
            status,
            reason = wasp_host::exit::reason(status),
            seconds = ran.as_secs_f64(),
            "plugin ended"
        );
        if !plugin.restart.after(status) {
            return;
        }
        let delay = plugin.backoff.delay_after(ran);
        tracing::info!(plugin = %name, "restarting in {:.3}s", delay.as_secs_f64());
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        board.restarted(&name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_maximum_and_starts_again_after_a_healthy_run() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let quick = Duration::from_millis(10);
        let delays: Vec<_> = (0..6).map(|_| backoff.delay_after(quick)).collect();
        let ms = |n| Duration::from_millis(n);
        assert_eq!(
            delays,
            [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
        );
        assert_eq!(backoff.delay_after(Duration::from_secs(2)), ms(100));
    }

    #[test]
    fn restart_policies_say_which_ends_start_the_plugin_again() {
        assert!(!Restart::Never.after(3));
        assert!(!Restart::OnFailure.after(0));
        assert!(Restart::OnFailure.after(1) && Restart::OnFailure.after(4));
        assert!(Restart::Always.after(0));
    }

    #[test]
    fn a_manifest_with_duplicate_names_or_bad_backoff_is_refused() {
        let dir = std::env::temp_dir().join(format!("wasp-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |text: &str| {
            let path = dir.join("serve.toml");
            std::fs::write(&path, text).unwrap();
            read_manifest(&path)
                .map(|_| ())
                .map_err(|e| format!("{e:#}"))
        };
        let entry = |name: &str, extra: &str| {
            format!(
                "[[plugin]]\nname = \"{name}\"\npath = \"p.wasm\"\npolicy = \"p.toml\"\n{extra}\n"
            )
        };
        let twice = entry("a", "") + &entry("a", "");
        assert!(write(&twice).unwrap_err().contains("unique"));
        let backwards = entry("a", "backoff-initial-seconds = 5\nbackoff-max-seconds = 1");
        assert!(write(&backwards).unwrap_err().contains("backoff"));
        assert!(write("").unwrap_err().contains("no [[plugin]]"));
        assert!(
            write(&entry("a", "colour = 1"))
                .unwrap_err()
                .contains("colour")
        );
        assert_eq!(write(&entry("a", "restart = \"always\"")), Ok(()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
