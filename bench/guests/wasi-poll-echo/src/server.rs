//! The server: a listener and a slab of connections, served by one
//! `wasi:io/poll.poll` loop.

use std::io::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::process::ExitCode;

use wasi::io::poll::{Pollable, poll};
use wasi::io::streams::{InputStream, OutputStream, StreamError};
use wasi::sockets::instance_network::instance_network;
use wasi::sockets::network::{
    ErrorCode, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress,
};
use wasi::sockets::tcp::TcpSocket;
use wasi::sockets::tcp_create_socket::create_tcp_socket;

/// Largest read, as the native servers of the benchmark.
const CHUNK: u64 = 64 * 1024;
/// Most reads of one connection per wake-up, so one busy stream cannot
/// starve the others.
const READS_PER_WAKE: usize = 16;
/// The listener's backlog (wasmtime-wasi's default is 128; the benchmark
/// opens up to 1,000 connections at once).
const BACKLOG: u64 = 1024;

/// One accepted connection.
///
/// Fields drop in declaration order: the pollables (children of the
/// streams) before the streams, the streams before the socket.
struct Connection {
    /// Ready when the input stream has data or has ended.
    readable: Pollable,
    /// Ready when the output stream accepts a write (`check-write` > 0).
    writable: Pollable,
    /// The receiving half.
    input: InputStream,
    /// The sending half.
    output: OutputStream,
    /// The socket itself, kept open while its streams are.
    _socket: TcpSocket,
    /// The last bytes read.
    pending: Vec<u8>,
    /// How many of `pending` have been written.
    written: usize,
}

/// What a connection's service left it waiting for.
enum Next {
    /// Poll the connection again (its input or output pollable).
    Keep,
    /// Done (the peer ended its stream and everything was echoed, or an
    /// error): close it.
    Close,
}

impl Connection {
    /// Whether bytes read are still waiting to be written.
    fn has_pending(&self) -> bool {
        self.written < self.pending.len()
    }

    /// The pollable this connection is waiting on.
    fn interest(&self) -> &Pollable {
        if self.has_pending() {
            &self.writable
        } else {
            &self.readable
        }
    }

    /// Writes what is pending as far as the stream's permits allow;
    /// `Ok(false)` when some remains (wait for `writable`).
    fn flush(&mut self) -> Result<bool, StreamError> {
        while self.has_pending() {
            let permit = self.output.check_write()?;
            if permit == 0 {
                return Ok(false);
            }
            let remaining = self.pending.len() - self.written;
            let n = remaining.min(usize::try_from(permit).unwrap_or(usize::MAX));
            self.output
                .write(&self.pending[self.written..self.written + n])?;
            self.written += n;
        }
        Ok(true)
    }

    /// Called when the pollable from [`Connection::interest`] is ready.
    fn service(&mut self) -> Next {
        match self.flush() {
            Ok(true) => {}
            Ok(false) => return Next::Keep,
            Err(_) => return Next::Close,
        }
        for _ in 0..READS_PER_WAKE {
            match self.input.read(CHUNK) {
                // Nothing there (any more): wait for `readable`.
                Ok(data) if data.is_empty() => break,
                Ok(data) => {
                    let full = data.len() as u64 == CHUNK;
                    self.pending = data;
                    self.written = 0;
                    match self.flush() {
                        Ok(true) => {}
                        Ok(false) => return Next::Keep,
                        Err(_) => return Next::Close,
                    }
                    // A short read most likely emptied the socket: do not
                    // spend a call to learn that, `poll` will say.
                    if !full {
                        break;
                    }
                }
                // The peer's end of stream; everything read has been
                // written (the flush above), so the echo is complete.
                Err(StreamError::Closed) => return Next::Close,
                Err(StreamError::LastOperationFailed(_)) => return Next::Close,
            }
        }
        Next::Keep
    }
}

/// The listener and its connections.
struct Server {
    /// Ready when a connection can be accepted. Declared before `listener`
    /// so that it drops first.
    acceptable: Pollable,
    /// The listening socket.
    listener: TcpSocket,
    /// Connections by slot; `None` is a free slot.
    slots: Vec<Option<Connection>>,
    /// Free slots.
    free: Vec<usize>,
}

impl Server {
    /// Accepts until the listener would block.
    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((socket, input, output)) => {
                    let connection = Connection {
                        readable: input.subscribe(),
                        writable: output.subscribe(),
                        input,
                        output,
                        _socket: socket,
                        pending: Vec::new(),
                        written: 0,
                    };
                    match self.free.pop() {
                        Some(slot) => self.slots[slot] = Some(connection),
                        None => self.slots.push(Some(connection)),
                    }
                }
                Err(ErrorCode::WouldBlock) => return,
                Err(e) => {
                    // E.g. a connection reset before it was accepted: the
                    // next poll tries again.
                    eprintln!("wasi-poll-echo: accept: {e}");
                    return;
                }
            }
        }
    }

    /// Serves forever.
    fn run(&mut self) -> ! {
        // Which slot each pollable of the last `poll` belongs to; the
        // listener is `usize::MAX`.
        let mut owners: Vec<usize> = Vec::new();
        loop {
            owners.clear();
            let ready = {
                let mut pollables: Vec<&Pollable> = Vec::with_capacity(self.slots.len() + 1);
                pollables.push(&self.acceptable);
                owners.push(usize::MAX);
                for (slot, connection) in self.slots.iter().enumerate() {
                    if let Some(connection) = connection {
                        pollables.push(connection.interest());
                        owners.push(slot);
                    }
                }
                poll(&pollables)
            };
            for index in ready {
                let slot = owners[index as usize];
                if slot == usize::MAX {
                    self.accept_all();
                    continue;
                }
                let Some(connection) = self.slots[slot].as_mut() else {
                    continue;
                };
                if let Next::Close = connection.service() {
                    // Dropping the output stream lets the host finish a
                    // write still in progress before the socket closes.
                    self.slots[slot] = None;
                    self.free.push(slot);
                }
            }
        }
    }
}

/// Waits for a two-phase socket operation (`finish-bind`, `finish-listen`).
fn finish(
    ready: &Pollable,
    mut attempt: impl FnMut() -> Result<(), ErrorCode>,
) -> Result<(), ErrorCode> {
    loop {
        match attempt() {
            Err(ErrorCode::WouldBlock) => ready.block(),
            other => return other,
        }
    }
}

/// A `std` address as a `wasi:sockets` one.
fn to_wasi(addr: SocketAddr) -> IpSocketAddress {
    match addr {
        SocketAddr::V4(a) => {
            let [b0, b1, b2, b3] = a.ip().octets();
            IpSocketAddress::Ipv4(Ipv4SocketAddress {
                port: a.port(),
                address: (b0, b1, b2, b3),
            })
        }
        SocketAddr::V6(a) => {
            let [s0, s1, s2, s3, s4, s5, s6, s7] = a.ip().segments();
            IpSocketAddress::Ipv6(Ipv6SocketAddress {
                port: a.port(),
                flow_info: a.flowinfo(),
                address: (s0, s1, s2, s3, s4, s5, s6, s7),
                scope_id: a.scope_id(),
            })
        }
    }
}

/// A `wasi:sockets` address as a `std` one.
fn from_wasi(addr: IpSocketAddress) -> SocketAddr {
    match addr {
        IpSocketAddress::Ipv4(a) => {
            let (b0, b1, b2, b3) = a.address;
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(b0, b1, b2, b3), a.port))
        }
        IpSocketAddress::Ipv6(a) => {
            let (s0, s1, s2, s3, s4, s5, s6, s7) = a.address;
            SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::new(s0, s1, s2, s3, s4, s5, s6, s7),
                a.port,
                a.flow_info,
                a.scope_id,
            ))
        }
    }
}

/// Binds and listens on `addr`; returns the server and its bound address.
fn listen(addr: SocketAddr) -> Result<(Server, SocketAddr), String> {
    let family = if addr.is_ipv4() {
        IpAddressFamily::Ipv4
    } else {
        IpAddressFamily::Ipv6
    };
    let network = instance_network();
    let listener = create_tcp_socket(family).map_err(|e| format!("create-tcp-socket: {e}"))?;
    let acceptable = listener.subscribe();
    listener
        .start_bind(&network, to_wasi(addr))
        .map_err(|e| format!("start-bind {addr}: {e}"))?;
    finish(&acceptable, || listener.finish_bind()).map_err(|e| format!("bind {addr}: {e}"))?;
    listener
        .set_listen_backlog_size(BACKLOG)
        .map_err(|e| format!("set-listen-backlog-size: {e}"))?;
    listener
        .start_listen()
        .map_err(|e| format!("start-listen: {e}"))?;
    finish(&acceptable, || listener.finish_listen()).map_err(|e| format!("listen: {e}"))?;
    let bound = listener
        .local_address()
        .map_err(|e| format!("local-address: {e}"))?;
    let server = Server {
        acceptable,
        listener,
        slots: Vec::new(),
        free: Vec::new(),
    };
    Ok((server, from_wasi(bound)))
}

/// Parses the argument, listens, announces the address and serves.
pub fn main() -> ExitCode {
    let arg = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_string());
    let addr: SocketAddr = match arg.parse() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("wasi-poll-echo: bad address {arg:?}: {e}");
            return ExitCode::from(2);
        }
    };
    let (mut server, bound) = match listen(addr) {
        Ok(listening) => listening,
        Err(e) => {
            eprintln!("wasi-poll-echo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    if writeln!(stdout, "wasi-poll-echo: listening on {bound}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    server.run()
}
