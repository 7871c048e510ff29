//! The one `bindgen!` of the host: the `wasp:spi/plugin` world.
//!
//! Every import is `async` on the host (a blocking call suspends only its
//! guest). Socket calls are not trappable: guest input only ever produces a
//! Winsock error. Message-queue calls trap a guest that exceeds its queue
//! quota.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "wasp:spi/plugin",
    // Message-queue calls can trap: only for a guest that exceeds its
    // queue quota (a misbehaving guest stops alone, DESIGN §4).
    imports: {
        "wasp:spi/messages": async | trappable,
        default: async,
    },
    with: {
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasp:spi/messages.message-queue": crate::host::messages::GuestQueue,
    },
});

pub use wasp::spi::{messages, sockets, types};
