//! A TCP echo server on stock `wasi:sockets` 0.2 that serves many
//! connections from ONE `wasi:io/poll.poll` loop (a benchmark guest of
//! `wasp-bench`, the stock counterpart of wasp's `rust-event-echo`).
//!
//! `cargo build --release --target wasm32-wasip2 -p wasi-poll-echo`, then
//! run it under any WASI 0.2 host that grants TCP, with one argument, the
//! address to listen on (default `127.0.0.1:0`; port 0 picks one). It prints
//! `wasi-poll-echo: listening on ADDR` once listening.
//!
//! One `poll` call per round waits on the listener's pollable and, for each
//! connection, either its input stream's pollable (nothing left to echo) or
//! its output stream's (echo bytes still pending): the pollables are made
//! once per socket and kept. Reads are at most 64 KiB; a connection is not
//! read while its previous read is not fully written (partial writes wait
//! for `check-write` permits), so memory per connection stays bounded. On
//! the peer's end of stream the pending bytes are written and the
//! connection is closed.
//!
//! On a target other than WASI the program only says how to build it (so
//! `cargo clippy --workspace --all-targets` can check it on the host).

#[cfg(target_os = "wasi")]
mod server;

#[cfg(target_os = "wasi")]
fn main() -> std::process::ExitCode {
    server::main()
}

/// Not a WASI target: there is nothing to serve with.
#[cfg(not(target_os = "wasi"))]
fn main() -> std::process::ExitCode {
    eprintln!(
        "wasi-poll-echo is a WASI 0.2 guest: cargo build --release --target wasm32-wasip2 -p wasi-poll-echo"
    );
    std::process::ExitCode::from(2)
}
