//! The one `bindgen!` of the host: the `wasp:spi/plugin` world.
//!
//! Every import that may wait is `async` on the host (a blocking call
//! suspends only its guest); the message-queue calls that never wait are
//! synchronous. Socket calls are not trappable: guest input only ever produces a
//! Winsock error. Message-queue calls trap a guest that exceeds its queue
//! quota.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "wasp:spi/plugin",
    // Message-queue calls can trap: only for a guest that exceeds its
    // queue quota (a misbehaving guest stops alone, DESIGN §4).
    imports: {
        // Calls that never wait are synchronous: no future and no fiber
        // switch per call (the message loop's hot path).
        "wasp:spi/messages.[method]message-queue.drain": trappable,
        "wasp:spi/messages.[method]message-queue.peek": trappable,
        "wasp:spi/messages.[method]message-queue.len": trappable,
        "wasp:spi/messages.[method]message-queue.overflows": trappable,
        "wasp:spi/messages": async | trappable,
        "wasp:spi/readiness": async | trappable,
        default: async,
    },
    with: {
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasp:spi/messages.message-queue": crate::host::messages::GuestQueue,
    },
});

pub use wasp::spi::{messages, readiness, sockets, types};
