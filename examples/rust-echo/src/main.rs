//! A TCP echo server plugin for wasp.
//!
//! `wasp run rust-echo.wasm --policy examples/policies/echo.toml -- ADDR [COUNT]`
//!
//! Listens on ADDR (default `127.0.0.1:7000`; port 0 picks one), prints the
//! address it listens on, and echoes each connection back until its peer
//! closes, one connection at a time (blocking `WSPAccept`/`WSPRecv`/
//! `WSPSend`). With COUNT it exits after serving that many connections.

use std::net::SocketAddr;
use std::process::ExitCode;

use wasp_guest::{Socket, last_denial};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7000".into());
    let count: Option<u64> = args.next().and_then(|c| c.parse().ok());
    match serve(&addr, count) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("echo: {err}");
            if let Some(reason) = last_denial() {
                eprintln!("echo: denied because {reason}");
            }
            ExitCode::FAILURE
        }
    }
}

fn serve(addr: &str, count: Option<u64>) -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = addr.parse()?;
    let listener = Socket::listen_on(addr, 16)?;
    println!("echo: listening on {}", listener.local_addr()?);
    let mut served = 0;
    while count.is_none_or(|c| served < c) {
        let (conn, peer) = listener.accept()?;
        println!("echo: connection from {peer}");
        let mut echoed = 0usize;
        loop {
            let data = match conn.recv(64 * 1024) {
                Ok(data) => data,
                Err(err) => {
                    eprintln!("echo: {peer}: {err}");
                    break;
                }
            };
            if data.is_empty() {
                break;
            }
            conn.send_all(&data)?;
            echoed += data.len();
        }
        println!("echo: {peer} closed after {echoed} bytes");
        served += 1;
    }
    Ok(())
}
