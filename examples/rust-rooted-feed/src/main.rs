//! A rooted multipoint session: one root fans a feed out to its leaves.
//!
//! ```text
//! wasp run rust-rooted-feed.wasm --policy examples/policies/rooted-feed.toml -- root ADDR LEAVES LINES
//! wasp run rust-rooted-feed.wasm --policy examples/policies/rooted-feed.toml -- leaf ROOT-ADDR NAME
//! ```
//!
//! The root (a c_root/d_root socket of wasp's protocol 253) listens on ADDR
//! and prints `root: listening on ADDR`. Each leaf joins it with
//! WSPJoinLeaf, sending its NAME as caller data and getting the root's
//! greeting back as callee data. The root admits LEAVES leaves as FD_ACCEPT
//! arrives, then sends LINES lines once: every leaf receives each of them.
//! A leaf prints what it receives until the root ends the session.

use std::net::SocketAddr;
use std::process::ExitCode;

use wasp_guest::raw::sockets as wsp;
use wasp_guest::raw::types::JoinFlags;
use wasp_guest::{
    ErrorCode, EventQueue, FdEvents, Socket, SocketFlags, Sockopt, SockoptName, WsaError, consts,
    last_denial, socket_address,
};

/// wasp's rooted multipoint protocol.
const IPPROTO_WASP_RMP: i32 = 253;
const WM_ROOT: u32 = 1;
const GREETING: &[u8] = b"welcome to the feed";

fn rooted_socket(addr: &SocketAddr, flags: SocketFlags) -> Result<Socket, WsaError> {
    let af = if addr.is_ipv4() {
        consts::AF_INET
    } else {
        consts::AF_INET6
    };
    Socket::new(af, consts::SOCK_STREAM, IPPROTO_WASP_RMP, flags)
}

fn root(addr: SocketAddr, leaves: usize, lines: usize) -> Result<(), Box<dyn std::error::Error>> {
    let root = rooted_socket(
        &addr,
        SocketFlags::MULTIPOINT_C_ROOT | SocketFlags::MULTIPOINT_D_ROOT,
    )?;
    root.set_option(Sockopt::ConnectData(GREETING.to_vec()))?;
    root.bind(addr)?;
    root.listen(64)?;
    let queue = EventQueue::new(64);
    queue.select(&root, WM_ROOT, FdEvents::ACCEPT)?;
    println!("root: listening on {}", root.local_addr()?);
    let mut admitted = Vec::new();
    while admitted.len() < leaves {
        let Some(event) = queue.get(None) else { break };
        if !event.is(FdEvents::ACCEPT) {
            continue;
        }
        loop {
            match root.accept() {
                Ok((leaf, peer)) => {
                    let name = match leaf.option(SockoptName::ConnectData)? {
                        Sockopt::ConnectData(data) => String::from_utf8_lossy(&data).into_owned(),
                        _ => String::new(),
                    };
                    println!("root: {name} joined from {peer}");
                    admitted.push(leaf);
                }
                Err(WsaError(ErrorCode::Wsaewouldblock)) => break,
                Err(e) => return Err(e.into()),
            }
        }
    }
    for n in 1..=lines {
        root.send_all(format!("line {n}\n").as_bytes())?;
    }
    println!("root: sent {lines} lines to {} leaves", admitted.len());
    // Closing the c_leaf descriptors drops the leaves: each sees FD_CLOSE.
    drop(admitted);
    Ok(())
}

fn leaf(root_addr: SocketAddr, name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let leaf = rooted_socket(
        &root_addr,
        SocketFlags::MULTIPOINT_C_LEAF | SocketFlags::MULTIPOINT_D_LEAF,
    )?;
    let joined = wsp::wsp_join_leaf(
        leaf.raw(),
        socket_address(root_addr),
        Some(name.as_bytes()),
        256,
        None,
        None,
        JoinFlags::Both,
    )
    .map_err(WsaError)?;
    println!(
        "{name}: joined, the root says {:?}",
        String::from_utf8_lossy(&joined.callee_data)
    );
    let mut received = Vec::new();
    loop {
        let data = leaf.recv(4096)?;
        if data.is_empty() {
            break;
        }
        received.extend_from_slice(&data);
    }
    for line in String::from_utf8_lossy(&received).lines() {
        println!("{name}: got {line}");
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["root", addr, leaves, lines] => match (addr.parse(), leaves.parse(), lines.parse()) {
            (Ok(addr), Ok(leaves), Ok(lines)) => root(addr, leaves, lines),
            _ => Err("usage: root ADDR LEAVES LINES".into()),
        },
        ["leaf", addr, name] => match addr.parse() {
            Ok(addr) => leaf(addr, name),
            Err(_) => Err("usage: leaf ROOT-ADDR NAME".into()),
        },
        _ => Err("usage: root ADDR LEAVES LINES | leaf ROOT-ADDR NAME".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("rooted-feed: {err}");
            if let Some(reason) = last_denial() {
                eprintln!("rooted-feed: denied because {reason}");
            }
            ExitCode::FAILURE
        }
    }
}
