//! How close a guest streams to its QoS flow (SPEC JL-8): `wasp run` of
//! `examples/rust-rate-streamer` (overlapped sends, SIO_SET_QOS) against a
//! native reader, at several rates, each repeated; reports the median of
//! achieved / asked per rate, and the highest.
//!
//! `cargo build --release -p wasp-host -p wasp-bench && cargo build --release --target wasm32-wasip2 -p rust-rate-streamer && target/release/rate-bench`
//!
//! The achieved rate is measured by the reader, from the first byte to
//! the end of the stream, over the bytes after the first bucket (which
//! goes at once): `(bytes - bucket) / elapsed`.

use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// The `wasp` binary.
    #[arg(long, default_value = "target/release/wasp")]
    wasp: PathBuf,
    /// The streamer plugin.
    #[arg(
        long,
        default_value = "target/wasm32-wasip2/release/rust-rate-streamer.wasm"
    )]
    plugin: PathBuf,
    /// Its policy (`max-send-rate` 10 MB/s).
    #[arg(long, default_value = "examples/policies/rate-streamer.toml")]
    policy: PathBuf,
    /// Repetitions per rate.
    #[arg(long, default_value_t = 5)]
    repetitions: usize,
    /// Seconds each stream lasts at its rate.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
}

/// One stream at `rate` B/s: the achieved rate, as the reader saw it.
fn stream_once(args: &Args, rate: u64) -> Result<f64> {
    let bytes = rate * args.seconds;
    let bucket = (rate / 10).max(1500);
    let peer = TcpListener::bind("127.0.0.1:0")?;
    let addr = peer.local_addr()?.to_string();
    let reader = std::thread::spawn(move || -> std::io::Result<(u64, Duration)> {
        let (mut conn, _) = peer.accept()?;
        let mut buf = vec![0u8; 1 << 16];
        let (mut total, mut first) = (0u64, None);
        loop {
            match conn.read(&mut buf)? {
                0 => break,
                n => {
                    first.get_or_insert_with(Instant::now);
                    total += n as u64;
                }
            }
        }
        Ok((total, first.map_or(Duration::ZERO, |f| f.elapsed())))
    });
    let status = Command::new(&args.wasp)
        .arg("run")
        .arg(&args.plugin)
        .arg("--policy")
        .arg(&args.policy)
        .arg("--")
        .args([addr, rate.to_string(), bytes.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .context("running wasp")?;
    ensure!(status.success(), "the streamer failed: {status}");
    let (total, elapsed) = reader.join().expect("reader thread")?;
    ensure!(total == bytes, "{total} of {bytes} bytes arrived");
    Ok((total - bucket) as f64 / elapsed.as_secs_f64())
}

fn main() -> Result<()> {
    let args = Args::parse();
    println!("| asked (B/s) | median achieved / asked | highest / asked |");
    println!("| --- | --- | --- |");
    for rate in [1_000_000u64, 4_000_000, 10_000_000] {
        let mut ratios = Vec::new();
        for _ in 0..args.repetitions {
            ratios.push(stream_once(&args, rate)? / rate as f64);
        }
        ratios.sort_by(f64::total_cmp);
        println!(
            "| {rate} | {:.4} | {:.4} |",
            ratios[ratios.len() / 2],
            ratios[ratios.len() - 1]
        );
    }
    Ok(())
}
