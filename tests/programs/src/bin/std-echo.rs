//! A TCP echo server on Rust's `std::net`, i.e. on stock `wasi:sockets`:
//! the baseline the benchmark compares wasp with. One connection at a
//! time (blocking calls, as std offers them on wasip2).

use std::io::{Read, Write};
use std::net::TcpListener;

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = TcpListener::bind(addr)?;
    println!("std-echo: listening on {}", listener.local_addr()?);
    for conn in listener.incoming() {
        let mut conn = conn?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if conn.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    }
    Ok(())
}
