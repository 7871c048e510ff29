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

pub mod error;
pub mod net;
pub mod policy;
pub mod run;

mod bindings;
mod host;

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

pub use error::WsaError;
pub use policy::{Denial, NetUse, Policy, PolicyBuilder, PolicyError, Transport};

/// The wasp state of one guest: its sockets and the policy they live under.
pub struct WaspCtx {
    provider: net::Provider,
}

impl WaspCtx {
    /// A context for one guest under `policy`; `label` names the guest in
    /// log lines (for example the plugin's file name).
    pub fn new(policy: Arc<Policy>, label: impl Into<Arc<str>>) -> Self {
        Self {
            provider: net::Provider::new(policy, label),
        }
    }

    /// The guest's provider: its sockets and last denial.
    pub fn provider(&self) -> &net::Provider {
        &self.provider
    }
}

/// Access to the [`WaspCtx`] inside an embedder's store data.
pub trait WaspView: Send {
    /// The guest's wasp state.
    fn wasp(&mut self) -> &mut WaspCtx;
}

/// Adds the `wasp:spi` imports (`types`, `sockets`) to `linker`.
///
/// Only wasp's own interfaces are added; add WASI separately (for example
/// with `wasmtime_wasi::p2::add_to_linker_async`).
pub fn add_to_linker<T: WaspView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    bindings::types::add_to_linker::<T, HasSelf<WaspCtx>>(linker, T::wasp)?;
    bindings::sockets::add_to_linker::<T, HasSelf<WaspCtx>>(linker, T::wasp)?;
    Ok(())
}
