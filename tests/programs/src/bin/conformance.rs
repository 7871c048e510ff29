//! The Rust guest of the four-language conformance scenarios
//! (`tests/conformance/SCENARIOS.md`): the C, Python and JavaScript guests
//! print exactly what this one prints.

use std::net::SocketAddr;
use std::process::ExitCode;

use wasp_guest::{
    ErrorCode, EventQueue, FdEvents, JoinFlags, Socket, SocketType, WsaError, last_denial,
};

/// The message id of the listener's events.
const WM_LISTENER: u32 = 1;
/// The message id of the connection's events.
const WM_CONNECTION: u32 = 2;

/// An unexpected failure: what failed and its Winsock error.
struct Failure(&'static str, WsaError);

type Outcome = Result<(), Failure>;

trait Context<T> {
    fn on(self, what: &'static str) -> Result<T, Failure>;
}

impl<T> Context<T> for wasp_guest::Result<T> {
    fn on(self, what: &'static str) -> Result<T, Failure> {
        self.map_err(|e| Failure(what, e))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |n: usize| args.get(n).map(String::as_str).unwrap_or_default();
    let port = |n: usize| arg(n).parse::<u16>().expect("a port number");
    let outcome = match arg(0) {
        "tcp-echo" => tcp_echo(port(1)),
        "udp" => udp(port(1)),
        "denied" => denied(port(1)),
        "multicast" => multicast(
            format!("{}:{}", arg(1), arg(2))
                .parse()
                .expect("GROUP PORT"),
        ),
        other => {
            eprintln!("unknown scenario {other:?}");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(what, e)) => {
            println!("error: {what} {} {}", e.code(), e.name());
            ExitCode::FAILURE
        }
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Receives what is waiting on `connection` and sends it back; the bytes
/// echoed (0 when nothing was waiting).
fn echo_waiting(connection: &Socket) -> Result<usize, Failure> {
    let data = match connection.recv(4096) {
        Err(WsaError(ErrorCode::Wsaewouldblock)) => return Ok(0),
        received => received.on("recv")?,
    };
    connection.send_all(&data).on("send")?;
    Ok(data.len())
}

fn tcp_echo(port: u16) -> Outcome {
    let listener = Socket::for_addr(&loopback(port), SocketType::Stream).on("socket")?;
    listener.bind(loopback(port)).on("bind")?;
    listener.listen(8).on("listen")?;
    let queue = EventQueue::new(16);
    queue
        .select(&listener, WM_LISTENER, FdEvents::ACCEPT)
        .on("async-select")?;
    println!("listening on {}", loopback(port));
    let mut connection = None;
    let mut total = 0;
    loop {
        let Some(event) = queue.get(None) else {
            return Err(Failure("queue", WsaError(ErrorCode::Wsaeinval)));
        };
        match (event.msg, connection.as_ref()) {
            (WM_LISTENER, None) if event.is(FdEvents::ACCEPT) => {
                let (accepted, _) = listener.accept().on("accept")?;
                queue
                    .select(&accepted, WM_CONNECTION, FdEvents::READ | FdEvents::CLOSE)
                    .on("async-select")?;
                println!("accepted");
                connection = Some(accepted);
            }
            (WM_CONNECTION, Some(accepted)) if event.is(FdEvents::READ) => {
                total += echo_waiting(accepted)?;
            }
            (WM_CONNECTION, Some(accepted)) if event.is(FdEvents::CLOSE) => {
                loop {
                    match echo_waiting(accepted)? {
                        0 => break,
                        n => total += n,
                    }
                }
                println!("closed after {total} bytes");
                connection
                    .take()
                    .map(Socket::close)
                    .transpose()
                    .on("close")?;
                return listener.close().on("close");
            }
            _ => {}
        }
    }
}

fn udp(port: u16) -> Outcome {
    let socket = Socket::udp_bound(loopback(0)).on("bind")?;
    socket.send_to(b"ping", loopback(port)).on("sendto")?;
    let (data, from) = socket.recv_from(64).on("recvfrom")?;
    println!(
        "received {} bytes \"{}\" from {from}",
        data.len(),
        String::from_utf8_lossy(&data)
    );
    Ok(())
}

fn denied(port: u16) -> Outcome {
    let socket = Socket::for_addr(&loopback(port), SocketType::Stream).on("socket")?;
    match socket.connect(loopback(port)) {
        Ok(()) => Err(Failure("connect succeeded", WsaError(ErrorCode::Wsaeinval))),
        Err(e) => {
            println!("connect: {} {}", e.code(), e.name());
            println!("denial: {}", last_denial().unwrap_or_default());
            Ok(())
        }
    }
}

fn multicast(group: SocketAddr) -> Outcome {
    let socket = Socket::multicast(group.is_ipv6()).on("socket")?;
    socket.join_leaf(group, JoinFlags::Both).on("join-leaf")?;
    println!("joined {group}");
    socket.send(b"hello").on("send")?;
    let (data, _) = socket.recv_from(64).on("recvfrom")?;
    println!(
        "received {} bytes \"{}\"",
        data.len(),
        String::from_utf8_lossy(&data)
    );
    Ok(())
}
