//! # wasp — a WebAssembly socket provider
//!
//! A Wasmtime host that gives guest components a Winsock service-provider
//! interface (`WSPSocket`, `WSPSend`, and the calls that make a socket
//! usable), mirrored in WIT as `wasp:spi`, implemented natively on tokio
//! and checked against the guest's capability [`Policy`] before anything
//! touches the network.
//!
//! Layers (each calls only downward):
//! - [`policy`]: grants, quotas, the policy file — pure decisions;
//! - [`net`]: the mechanism — real sockets, one [`net::Provider`] per guest;
//! - the glue (private `host` module): WIT values in and out.
//!
//! Embedding: put a [`WaspCtx`] in your store data, implement [`WaspView`],
//! and call [`add_to_linker`]; or let [`run::PluginHost`] do all of it for
//! plugins that are WASI commands.

pub mod cache;
pub mod check;
pub mod error;
pub mod exit;
/// The mechanism: public only with the `internals` feature (wasp's own
/// tests and fuzz targets); embedders use the items re-exported here.
#[cfg(feature = "internals")]
pub mod net;
#[cfg(not(feature = "internals"))]
mod net;
pub mod policy;
pub mod run;

mod bindings;
mod host;

use std::sync::Arc;

use wasmtime::component::{HasData, Linker, ResourceTable};

pub use error::WsaError;
pub use net::gate::{DenialCounts, DenialHook, PolicyHandle};
pub use net::meter::{Meter, MeterReading};
pub use policy::{Denial, NetUse, Policy, PolicyBuilder, PolicyError, Transport};

/// The wasp state of one guest: its sockets and the policy they live under.
pub struct WaspCtx {
    provider: net::Provider,
    open_queues: u32,
    /// Live queue pollables (bounded by `host::messages::MAX_QUEUE_POLLABLES`).
    pollables: Arc<std::sync::atomic::AtomicU32>,
}

impl WaspCtx {
    /// A context for one guest under `policy`; `label` names the guest in
    /// log lines (for example the plugin's file name).
    pub fn new(policy: Arc<Policy>, label: impl Into<Arc<str>>) -> Self {
        Self::with_policy(PolicyHandle::new(policy), label)
    }

    /// A context for one guest whose policy `handle` may replace while it
    /// runs (SPEC AS-24, AS-25: the guest's sockets are told).
    pub fn with_policy(handle: PolicyHandle, label: impl Into<Arc<str>>) -> Self {
        Self::metered(handle, label, net::meter::Meter::new())
    }

    /// A context whose guest's activity `meter` counts (read it from
    /// another thread with [`net::meter::Meter::reading`]).
    pub fn metered(
        handle: PolicyHandle,
        label: impl Into<Arc<str>>,
        meter: Arc<net::meter::Meter>,
    ) -> Self {
        Self {
            provider: net::Provider::metered(handle, label, meter),
            open_queues: 0,
            pollables: Arc::default(),
        }
    }

    /// A new message queue, within the policy's `max-queues`; past it the
    /// guest is stopped (a trap: it is leaking queues).
    fn open_queue(
        &mut self,
        capacity: u32,
    ) -> wasmtime::Result<std::sync::Arc<net::queue::MessageQueue>> {
        let max = self.provider.policy().limits().max_queues;
        if self.open_queues >= max {
            wasmtime::bail!("the guest exceeded its quota of {max} message queues");
        }
        self.open_queues += 1;
        Ok(net::queue::MessageQueue::metered(
            capacity,
            self.provider.meter(),
        ))
    }

    fn close_queue(&mut self) {
        self.open_queues = self.open_queues.saturating_sub(1);
    }

    /// Calls `hook` with each denial of this guest as it happens (the
    /// same denials that are logged and counted), for an embedder's own
    /// telemetry.
    pub fn on_denial(&self, hook: net::gate::DenialHook) {
        self.provider.gate().set_denial_hook(hook);
    }

    /// The guest's provider: its sockets and last denial.
    pub(crate) fn provider(&self) -> &net::Provider {
        &self.provider
    }

    /// The guest's most recent denial, naming the missing grant (what
    /// its `last-denial` call returns).
    pub fn last_denial(&self) -> Option<Denial> {
        self.provider.last_denial()
    }

    /// The guest's denials so far, by reason.
    pub fn denial_counts(&self) -> DenialCounts {
        self.provider.denial_counts()
    }

    /// The guest's live counts (sockets, bytes, messages, denials, and
    /// under [`run::PluginHost`] CPU time and memory), readable from any
    /// thread.
    pub fn meter(&self) -> &Arc<Meter> {
        self.provider.meter()
    }

    /// Tells the provider the guest's memory limit, which bounds every
    /// receive buffer as well (DESIGN §4).
    pub fn set_memory_limit(&mut self, bytes: usize) {
        self.provider.set_memory_limit(bytes);
    }
}

/// What the wasp imports work on: the guest's [`WaspCtx`] and the
/// resource table it shares with WASI (message queues and their pollables
/// live there, so `wasi:io/poll` can wait on them).
pub struct WaspCtxView<'a> {
    /// The guest's wasp state.
    pub ctx: &'a mut WaspCtx,
    /// The store's resource table (the one WASI uses).
    pub table: &'a mut ResourceTable,
}

/// Access to the wasp state inside an embedder's store data.
pub trait WaspView: Send {
    /// The guest's wasp state and resource table.
    fn wasp(&mut self) -> WaspCtxView<'_>;
}

struct HasWasp;

impl HasData for HasWasp {
    type Data<'a> = WaspCtxView<'a>;
}

/// Adds the `wasp:spi` imports (`types`, `messages`, `sockets`) to
/// `linker`.
///
/// Only wasp's own interfaces are added; add WASI separately (for example
/// with `wasmtime_wasi::p2::add_to_linker_async`), which also provides the
/// `wasi:io/poll` that message-queue pollables are used with.
///
/// The imports are async host functions: instantiate and call the guest
/// with wasmtime's `*_async` methods. Wasmtime 48 has no store setting
/// that tells a synchronous store here (`Config::async_support` no longer
/// has any effect), so a synchronous instantiation is what fails, with
/// wasmtime's "store configuration requires that `*_async` functions are
/// used instead".
pub fn add_to_linker<T: WaspView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    bindings::types::add_to_linker::<T, HasWasp>(linker, T::wasp)?;
    bindings::messages::add_to_linker::<T, HasWasp>(linker, T::wasp)?;
    bindings::readiness::add_to_linker::<T, HasWasp>(linker, T::wasp)?;
    bindings::sockets::add_to_linker::<T, HasWasp>(linker, T::wasp)?;
    Ok(())
}
