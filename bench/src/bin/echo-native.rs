//! A native tokio echo server: a task per connection, each reading up to
//! 64 KiB and writing it back with `write_all` (the baseline of the
//! benchmark, as `native tokio` in `host/benches/echo.rs`).
//!
//! `echo-native --runtime current-thread|multi-thread [--addr 127.0.0.1:0]`
//!
//! Prints `echo-native: listening on ADDR` once listening, then serves
//! until killed. The multi-thread runtime has one worker (the process is
//! pinned to one core); the accept loop runs on that worker too.

use std::io::Write as _;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest read.
const CHUNK: usize = 64 * 1024;

/// The tokio runtime flavour.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Flavor {
    /// `Builder::new_current_thread`.
    CurrentThread,
    /// `Builder::new_multi_thread` with one worker thread.
    MultiThread,
}

/// Command line.
#[derive(Parser)]
#[command(about = "A native tokio echo server (wasp-bench)")]
struct Args {
    /// The runtime flavour.
    #[arg(long, value_enum)]
    runtime: Flavor,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
}

/// Echoes one connection until it ends or fails.
async fn echo(mut conn: TcpStream) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if conn.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Listens, announces the address, and serves forever.
async fn serve(addr: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let bound = listener.local_addr()?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "echo-native: {}{bound}", wasp_bench::LISTENING)?;
    stdout.flush()?;
    loop {
        match listener.accept().await {
            Ok((conn, _)) => {
                tokio::spawn(echo(conn));
            }
            // E.g. a connection reset before it was accepted, or out of
            // descriptors for a moment: the client sees it, not the server.
            Err(e) => eprintln!("echo-native: accept: {e}"),
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = match args.runtime {
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        Flavor::MultiThread => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?,
    };
    // Spawned, so that with the multi-thread flavour the server runs on the
    // worker, not on this thread.
    runtime.block_on(async move { tokio::spawn(serve(args.addr)).await? })
}
