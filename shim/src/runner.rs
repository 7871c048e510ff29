//! Running one plugin as `wasp run` does: a current-thread tokio runtime
//! shared by the guest and its sockets, SIGHUP to reload a policy file,
//! and SIGTERM or SIGINT to end the plugin cleanly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::signal::unix::{Signal, SignalKind, signal};
use wasmtime::component::Component;
use wasp_host::run::{GuestOptions, PluginHost};
use wasp_host::{Policy, PolicyHandle};

use crate::exit;
use crate::plan::{Plan, PluginSource, PolicySource};

/// Runs `plan`'s plugin to its end (or to SIGTERM or SIGINT) and returns
/// the container's exit status.
pub fn run(plan: Plan) -> i32 {
    init_logging(plan.log_filter.as_deref());
    let started = Instant::now();
    let name = plan.name.clone();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("wasp: error: starting the async runtime: {err}");
            return exit::CONFIGURATION;
        }
    };
    let status = runtime.block_on(supervise(plan));
    // A write to a stalled stdout may still hold a blocking thread: do not
    // wait for it past a moment.
    runtime.shutdown_timeout(Duration::from_millis(500));
    tracing::info!(
        target: "wasp",
        plugin = %name,
        status,
        reason = exit::reason(status),
        seconds = started.elapsed().as_secs_f64(),
        "plugin ended"
    );
    status
}

/// A signal stream, or `None` with a warning when it cannot be caught.
fn catch(kind: SignalKind, what: &str) -> Option<Signal> {
    signal(kind)
        .inspect_err(|e| eprintln!("wasp: warning: {what} cannot be caught ({e})"))
        .ok()
}

/// The next signal of `stream`; never, without one.
async fn next(stream: &mut Option<Signal>) {
    match stream {
        Some(stream) => {
            stream.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Loads and runs the plugin under its policy until it ends or a signal
/// ends it; the container's exit status.
async fn supervise(plan: Plan) -> i32 {
    // Caught before anything else: the container's process is the init of
    // its PID namespace, which a signal without a handler does not end.
    let mut terminate = catch(SignalKind::terminate(), "SIGTERM");
    let mut interrupt = catch(SignalKind::interrupt(), "SIGINT");
    let host = match PluginHost::new() {
        Ok(host) => host,
        Err(err) => {
            eprintln!("wasp: error: {err:#}");
            return exit::CONFIGURATION;
        }
    };
    let component = match load(&host, &plan.plugin) {
        Ok(component) => component,
        Err(err) => return exit::of_load(err, &plan.name),
    };
    let mut options = GuestOptions::new(plan.name.clone(), plan.policy.clone());
    options.args = plan.args;
    options.env = plan.env;
    options.memory_limit = plan.memory_limit;
    if let PolicySource::File(path) = &plan.policy_source
        && let Some(hangups) = catch(SignalKind::hangup(), "SIGHUP")
    {
        tokio::spawn(reload_on_hangup(
            hangups,
            path.clone(),
            options.policy.clone(),
        ));
    }
    options.log_start(&plan.policy_source);
    tokio::select! {
        biased;
        () = next(&mut terminate) => {
            // Dropping the run stops the guest and closes its sockets.
            eprintln!("wasp: SIGTERM: plugin stopped");
            exit::TERMINATED
        }
        () = next(&mut interrupt) => {
            eprintln!("wasp: SIGINT: plugin stopped");
            exit::INTERRUPTED
        }
        result = host.run(&component, options) => exit::of_run(result),
    }
}

/// Checks and compiles the plugin (no compile cache: see the README's
/// "Precompilation").
fn load(host: &PluginHost, plugin: &PluginSource) -> wasmtime::Result<Component> {
    match plugin {
        PluginSource::File(path) => host.load(path),
        PluginSource::Layer(bytes) => host.load_bytes(bytes),
    }
}

/// Reloads the policy file on each SIGHUP into the running plugin, as
/// `wasp run` does; a file that does not parse is reported and the policy
/// in force is kept.
async fn reload_on_hangup(mut hangups: Signal, path: std::path::PathBuf, live: PolicyHandle) {
    while hangups.recv().await.is_some() {
        match Policy::from_file(&path) {
            Ok(policy) => {
                live.replace(Arc::new(policy));
                eprintln!("wasp: policy reloaded from {}", path.display());
            }
            Err(e) => eprintln!(
                "wasp: error: policy reload from {} failed, keeping the policy in force: {e}",
                path.display()
            ),
        }
    }
}

/// wasp's log lines (start, denials, end) on the container's stderr, as
/// `wasp run` writes them: `WASP_LOG` as a bare level applies to wasp's
/// lines only, a directive is taken as written.
fn init_logging(wasp_log: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let directives = wasp_host::run::log_directives(wasp_log);
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|e| {
        eprintln!(
            "wasp: warning: WASP_LOG={directives:?} is not a filter ({e}); using the default"
        );
        EnvFilter::new(wasp_host::run::DEFAULT_LOG_DIRECTIVES)
    });
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init();
}
