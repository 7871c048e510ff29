//! The one `bindgen!` of the host: the `wasp:spi/plugin` world.
//!
//! Every import is `async` on the host (a blocking call suspends only its
//! guest) and none is trappable: guest input can only ever produce a
//! Winsock error, never a trap.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "wasp:spi/plugin",
    imports: { default: async },
});

pub use wasp::spi::{sockets, types};
