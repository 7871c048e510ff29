//! Service discovery over IP multicast with WSPJoinLeaf.
//!
//! `wasp run rust-multicast.wasm --policy examples/policies/multicast.toml -- NAME [GROUP] [ROUNDS]`
//!
//! Joins GROUP (default `239.255.70.1:47000`) as a c_leaf/d_leaf socket,
//! announces `hello NAME` every 200 ms for ROUNDS rounds (default 25; 0:
//! for ever), and prints `discovered PEER at ADDR` the first time it hears
//! each other peer. Run it twice (two `wasp` processes, or two guests of
//! one host) and each finds the other. The policy keeps the TTL at 0 on
//! 127.0.0.1: the announcements never leave the machine.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use wasp_guest::{ErrorCode, EventQueue, FdEvents, JoinFlags, Socket, WsaError, last_denial};

const WM_GROUP: u32 = 1;
const ROUND: Duration = Duration::from_millis(200);

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "peer".into());
    let group = args.next().unwrap_or_else(|| "239.255.70.1:47000".into());
    let rounds: u32 = args.next().and_then(|r| r.parse().ok()).unwrap_or(25);
    match discover(&name, &group, rounds) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("multicast: {err}");
            if let Some(reason) = last_denial() {
                eprintln!("multicast: denied because {reason}");
            }
            ExitCode::FAILURE
        }
    }
}

fn discover(name: &str, group: &str, rounds: u32) -> Result<(), Box<dyn std::error::Error>> {
    let group: SocketAddr = group.parse()?;
    let socket = Socket::multicast(group.is_ipv6())?;
    let queue = EventQueue::new(64);
    queue.select(&socket, WM_GROUP, FdEvents::READ)?;
    socket.join_leaf(group, JoinFlags::Both)?;
    println!("multicast: {name} joined {group}");
    let hello = format!("hello {name}");
    let mut known = BTreeSet::new();
    let mut round = 0;
    while rounds == 0 || round < rounds {
        socket.send(hello.as_bytes())?;
        round += 1;
        // Listen until the next round is due.
        let next = Instant::now() + ROUND;
        while let Some(left) = next.checked_duration_since(Instant::now()) {
            if queue.get(Some(left)).is_none() {
                break;
            }
            loop {
                match socket.recv_from(512) {
                    Ok((data, from)) => {
                        let text = String::from_utf8_lossy(&data);
                        if let Some(peer) = text.strip_prefix("hello ")
                            && peer != name
                            && known.insert(peer.to_string())
                        {
                            println!("multicast: discovered {peer} at {from}");
                        }
                    }
                    Err(WsaError(ErrorCode::Wsaewouldblock)) => break,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    println!("multicast: {name} knows {} peer(s)", known.len());
    Ok(())
}
