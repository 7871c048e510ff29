//! A single-threaded echo server that serves many connections from one
//! message queue with WSPAsyncSelect.
//!
//! `wasp run rust-event-echo.wasm --policy examples/policies/event-echo.toml -- ADDR`
//!
//! Listens on ADDR (default `127.0.0.1:7001`; port 0 picks one) and prints
//! `event-echo: listening on ADDR`. FD_ACCEPT on the listener accepts until
//! WSAEWOULDBLOCK; each connection is registered for FD_READ, FD_WRITE and
//! FD_CLOSE. Data that cannot be sent at once waits in a bounded buffer
//! until FD_WRITE; while a connection's buffer is full it is not read
//! (FD_READ is re-enabled by the next recv, SPEC AS-9), so a slow client
//! never makes the plugin grow without bound.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;

use wasp_guest::{ErrorCode, Event, EventQueue, FdEvents, Socket, WsaError, last_denial};

/// Message id of the listener.
const WM_ACCEPT: u32 = 1;
/// Message id of the connections.
const WM_CONNECTION: u32 = 2;
/// Largest receive.
const CHUNK: usize = 64 * 1024;
/// Most bytes waiting to be echoed per connection before reading pauses.
const MAX_PENDING: usize = 256 * 1024;

struct Connection {
    socket: Socket,
    pending: Vec<u8>,
}

impl Connection {
    /// Sends what is pending; `Ok(false)` when the socket is full (an
    /// FD_WRITE will follow).
    fn flush(&mut self) -> Result<bool, WsaError> {
        while !self.pending.is_empty() {
            match self.socket.send(&self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(WsaError(ErrorCode::Wsaewouldblock)) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Reads what is there and echoes it; stops reading while too much is
    /// pending. `Ok(false)` when the peer has closed its side.
    fn on_read(&mut self) -> Result<bool, WsaError> {
        while self.pending.len() < MAX_PENDING {
            match self.socket.recv(CHUNK) {
                Ok(data) if data.is_empty() => return Ok(false),
                Ok(data) => {
                    let drained = data.len() < CHUNK;
                    self.pending.extend_from_slice(&data);
                    // A receive that got less than it asked for emptied the
                    // socket: FD_READ comes again when more data arrives
                    // (SPEC AS-11), so no receive is spent on WSAEWOULDBLOCK.
                    if !self.flush()? || drained {
                        break;
                    }
                }
                Err(WsaError(ErrorCode::Wsaewouldblock)) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

struct Server {
    queue: EventQueue,
    listener: Socket,
    connections: HashMap<u32, Connection>,
}

impl Server {
    fn on_accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((socket, _peer)) => {
                    let events = FdEvents::READ | FdEvents::WRITE | FdEvents::CLOSE;
                    if let Err(e) = self.queue.select(&socket, WM_CONNECTION, events) {
                        eprintln!("event-echo: select: {e}");
                        continue;
                    }
                    let connection = Connection {
                        socket,
                        pending: Vec::new(),
                    };
                    self.connections.insert(connection.socket.raw(), connection);
                }
                Err(WsaError(ErrorCode::Wsaewouldblock)) => return,
                Err(e) => {
                    // WSAEMFILE and the like: the connection stays pending;
                    // FD_ACCEPT comes again after the next accept call.
                    eprintln!("event-echo: accept: {e}");
                    return;
                }
            }
        }
    }

    fn on_connection(&mut self, event: Event) {
        let Some(connection) = self.connections.get_mut(&event.socket) else {
            return;
        };
        let outcome = match event.event {
            e if e == FdEvents::READ => connection.on_read(),
            // Room again: send what waits, then read what was held back.
            e if e == FdEvents::WRITE => connection.flush().and_then(|flushed| {
                if flushed {
                    connection.on_read()
                } else {
                    Ok(true)
                }
            }),
            e if e == FdEvents::CLOSE => Ok(false),
            _ => Ok(true),
        };
        match outcome {
            Ok(true) => {}
            Ok(false) => {
                // Closed by the peer: echo what is left, then close.
                let _ = connection.flush();
                self.connections.remove(&event.socket);
            }
            Err(_) => {
                self.connections.remove(&event.socket);
            }
        }
    }
}

fn main() -> ExitCode {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7001".into());
    match serve(&addr) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("event-echo: {err}");
            if let Some(reason) = last_denial() {
                eprintln!("event-echo: denied because {reason}");
            }
            ExitCode::FAILURE
        }
    }
}

fn serve(addr: &str) -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = addr.parse()?;
    let queue = EventQueue::new(4096);
    let listener = Socket::listen_on(addr, 1024)?;
    queue.select(&listener, WM_ACCEPT, FdEvents::ACCEPT)?;
    println!("event-echo: listening on {}", listener.local_addr()?);
    let mut server = Server {
        queue,
        listener,
        connections: HashMap::new(),
    };
    loop {
        let batch = server.queue.wait(wasp_guest::DEFAULT_BATCH);
        if batch.is_empty() {
            return Ok(());
        }
        for event in batch {
            match event.msg {
                WM_ACCEPT => server.on_accept(),
                WM_CONNECTION => server.on_connection(event),
                _ => {}
            }
        }
    }
}
