//! Streams bytes to a peer at a flow rate the host enforces: SIO_SET_QOS
//! with a controlled-load sending flow (SPEC JL-8), and overlapped sends
//! whose completions arrive in the plugin's message queue (SPEC SE-7).
//!
//! `wasp run rust-rate-streamer.wasm --policy examples/policies/rate-streamer.toml -- ADDR RATE BYTES`
//!
//! Connects to ADDR, asks for RATE bytes per second (bucket: a tenth of a
//! second's worth), and keeps up to four overlapped sends of 16 KiB
//! outstanding until BYTES are sent: each completion submits the next
//! send. Prints `rate-streamer: sent BYTES bytes in SECONDS s (RATE B/s)`.
//! A rate above the policy's `max-send-rate` cannot be met: the plugin
//! says so and fails (WASI 0.2 commands end with success or failure, 1).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Instant;

use wasp_guest::{
    ErrorCode, EventQueue, Overlapped, Socket, SocketFlags, WsaError, consts, last_denial,
};

/// Message id of the completions.
const WM_SENT: u32 = 1;
/// Bytes per overlapped send.
const CHUNK: usize = 16 * 1024;
/// Sends outstanding at once.
const IN_FLIGHT: u64 = 4;

struct Streamer {
    socket: Socket,
    queue: EventQueue,
    chunk: Vec<u8>,
    /// Bytes not yet submitted.
    left: u64,
    /// Bytes whose sends completed.
    done: u64,
    next_token: u64,
    outstanding: u64,
}

impl Streamer {
    /// Submits sends until `IN_FLIGHT` are outstanding or nothing is left.
    fn submit(&mut self) -> Result<(), WsaError> {
        while self.outstanding < IN_FLIGHT && self.left > 0 {
            let n = self.left.min(CHUNK as u64) as usize;
            let token = self.next_token;
            self.next_token += 1;
            let overlapped = Overlapped {
                queue: &self.queue,
                msg: WM_SENT,
                token,
            };
            // Completed at once or pending: its completion comes either way.
            self.socket.send_overlapped(&self.chunk[..n], overlapped)?;
            self.left -= n as u64;
            self.outstanding += 1;
        }
        Ok(())
    }

    fn run(&mut self) -> Result<(), WsaError> {
        self.submit()?;
        while self.outstanding > 0 {
            let Some(event) = self.queue.get(None) else {
                break;
            };
            let Some(completion) = event.completion else {
                continue;
            };
            self.outstanding -= 1;
            if let Some(e) = event.error {
                return Err(e);
            }
            self.done += u64::from(completion.bytes);
            self.submit()?;
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(addr), Some(rate), Some(bytes)) = (
        args.get(1).and_then(|a| a.parse::<SocketAddr>().ok()),
        args.get(2).and_then(|a| a.parse::<u32>().ok()),
        args.get(3).and_then(|a| a.parse::<u64>().ok()),
    ) else {
        eprintln!("usage: rust-rate-streamer ADDR RATE BYTES");
        return ExitCode::FAILURE;
    };
    let af = if addr.is_ipv4() {
        consts::AF_INET
    } else {
        consts::AF_INET6
    };
    let socket = match Socket::new(
        af,
        consts::SOCK_STREAM,
        consts::IPPROTO_TCP,
        SocketFlags::OVERLAPPED,
    )
    .and_then(|s| s.connect(addr).map(|()| s))
    {
        Ok(socket) => socket,
        Err(e) => {
            let why = last_denial().unwrap_or_default();
            eprintln!("rate-streamer: connect {addr}: {e} {why}");
            return ExitCode::FAILURE;
        }
    };
    match socket.set_send_rate(rate, 0) {
        Ok(()) => {}
        Err(WsaError(ErrorCode::Wsaeopnotsupp)) => {
            eprintln!("rate-streamer: {rate} B/s cannot be met under this policy");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("rate-streamer: SIO_SET_QOS: {e}");
            return ExitCode::FAILURE;
        }
    }
    let mut streamer = Streamer {
        socket,
        queue: EventQueue::new(64),
        chunk: vec![b'r'; CHUNK],
        left: bytes,
        done: 0,
        next_token: 1,
        outstanding: 0,
    };
    let started = Instant::now();
    if let Err(e) = streamer.run() {
        eprintln!("rate-streamer: send: {e}");
        return ExitCode::FAILURE;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "rate-streamer: sent {} bytes in {seconds:.3} s ({:.0} B/s)",
        streamer.done,
        streamer.done as f64 / seconds.max(f64::EPSILON)
    );
    ExitCode::SUCCESS
}
