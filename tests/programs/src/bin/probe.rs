//! A scripted wasp guest: each argument is one command; each command prints
//! one line, `ok ...` or `err WSAE...`. The host tests give it a policy and
//! a script, then check the lines (one test per SPEC rule).
//!
//! Sockets are named `s0`, `s1`, ... in the order they are created (by
//! `socket` or `accept`); `#N` is a raw descriptor (for forged values);
//! `@sN` in an address position is the local address of `sN`.
//! See `run` for the commands.

use std::net::SocketAddr;

use wasp_guest::raw::messages::{Message, MessageQueue};
use wasp_guest::raw::sockets as wsp;
use wasp_guest::raw::types::FdEvents;
use wasp_guest::raw::types::ProtocolInfo;
use wasp_guest::raw::wasi::io::poll::Pollable;
use wasp_guest::{
    IoctlCommand, IoctlResult, MessageFlags, ShutdownHow, SocketFlags, Sockopt, SockoptName,
    WsaError,
};
use wasp_guest::{socket_address as to_wit, std_socket_addr as from_wit, wsabuf};

struct Probe {
    sockets: Vec<u32>,
    queues: Vec<Option<MessageQueue>>,
    pollables: Vec<Pollable>,
    /// Messages `await` took while looking for another.
    stash: Vec<Message>,
}

type Outcome = Result<String, WsaError>;

fn main() {
    let mut probe = Probe {
        sockets: Vec::new(),
        queues: Vec::new(),
        pollables: Vec::new(),
        stash: Vec::new(),
    };
    for command in std::env::args().skip(1) {
        // Which command a probe that stalls is in (a test prints the
        // probe's stderr when it misses its deadline).
        eprintln!("> {command}");
        let words: Vec<&str> = command.split_whitespace().collect();
        let line = match probe.run(&words) {
            Ok(text) if text.is_empty() => "ok".to_string(),
            Ok(text) => format!("ok {text}"),
            Err(err) => format!("err {}", err.name()),
        };
        println!("{line}");
    }
}

/// A `std::net` outcome as a probe line: what it gave, or `io-error KIND`.
fn std_outcome(outcome: std::io::Result<String>) -> String {
    outcome.unwrap_or_else(|e| format!("io-error {:?}", e.kind()))
}

fn flags_of(words: &[&str]) -> MessageFlags {
    let mut flags = MessageFlags::empty();
    for w in words {
        match *w {
            "oob" => flags |= MessageFlags::OOB,
            "peek" => flags |= MessageFlags::PEEK,
            "dontroute" => flags |= MessageFlags::DONT_ROUTE,
            "partial" => flags |= MessageFlags::PARTIAL,
            "waitall" => flags |= MessageFlags::WAIT_ALL,
            _ => {}
        }
    }
    flags
}

const EVENT_NAMES: [(&str, FdEvents); 10] = [
    ("read", FdEvents::READ),
    ("write", FdEvents::WRITE),
    ("oob", FdEvents::OOB),
    ("accept", FdEvents::ACCEPT),
    ("connect", FdEvents::CONNECT),
    ("close", FdEvents::CLOSE),
    ("qos", FdEvents::QOS),
    ("group-qos", FdEvents::GROUP_QOS),
    (
        "routing-interface-change",
        FdEvents::ROUTING_INTERFACE_CHANGE,
    ),
    ("address-list-change", FdEvents::ADDRESS_LIST_CHANGE),
];

fn events_of(words: &[&str]) -> FdEvents {
    words.iter().fold(FdEvents::empty(), |acc, w| {
        acc | EVENT_NAMES
            .iter()
            .find(|(name, _)| name == w)
            .map(|(_, e)| *e)
            .unwrap_or_else(|| panic!("unknown event {w}"))
    })
}

fn event_name(event: FdEvents) -> String {
    let names: Vec<&str> = EVENT_NAMES
        .iter()
        .filter(|(_, e)| event.contains(*e))
        .map(|(name, _)| *name)
        .collect();
    names.join("+")
}

/// Message id of the completions the probe asks for.
const COMPLETION_MSG: u32 = 77;

/// `@N` is N bytes of `x`; anything else is the text itself.
fn payload(text: &str) -> Vec<u8> {
    match text.strip_prefix('@').and_then(|n| n.parse::<usize>().ok()) {
        Some(n) => vec![b'x'; n],
        None => text.as_bytes().to_vec(),
    }
}

fn show(data: &[u8]) -> String {
    if data.len() > 64 {
        format!("len={}", data.len())
    } else {
        format!("{:?}", String::from_utf8_lossy(data))
    }
}

fn on(word: &str) -> bool {
    matches!(word, "on" | "true" | "1")
}

impl Probe {
    fn sock(&self, word: &str) -> u32 {
        if let Some(raw) = word.strip_prefix('#') {
            return raw.parse().expect("descriptor number");
        }
        let index: usize = word
            .strip_prefix('s')
            .and_then(|i| i.parse().ok())
            .expect("socket name sN");
        self.sockets[index]
    }

    fn addr(&self, word: &str) -> SocketAddr {
        match word.strip_prefix('@') {
            Some(name) => {
                from_wit(wsp::wsp_get_sock_name(self.sock(name)).expect("named socket is bound"))
            }
            None => word.parse().expect("socket address"),
        }
    }

    fn add(&mut self, s: u32) -> String {
        self.sockets.push(s);
        format!("s{}", self.sockets.len() - 1)
    }

    fn run(&mut self, w: &[&str]) -> Outcome {
        let arg = |i: usize| w.get(i).copied().unwrap_or("");
        match w[0] {
            // socket AF TYPE PROTO [g=N] [flags=overlapped,c-root,c-leaf,d-root,d-leaf] [info=ID[:AF:TYPE:PROTO]]
            "socket" => {
                let num = |i: usize| arg(i).parse::<i32>().expect("number");
                let mut group = 0;
                let mut flags = SocketFlags::empty();
                let mut info = None;
                for word in &w[4..] {
                    if let Some(g) = word.strip_prefix("g=") {
                        group = g.parse().expect("group");
                    } else if let Some(list) = word.strip_prefix("flags=") {
                        for f in list.split(',') {
                            flags |= match f {
                                "overlapped" => SocketFlags::OVERLAPPED,
                                "c-root" => SocketFlags::MULTIPOINT_C_ROOT,
                                "c-leaf" => SocketFlags::MULTIPOINT_C_LEAF,
                                "d-root" => SocketFlags::MULTIPOINT_D_ROOT,
                                "d-leaf" => SocketFlags::MULTIPOINT_D_LEAF,
                                other => panic!("unknown flag {other}"),
                            };
                        }
                    } else if let Some(spec) = word.strip_prefix("info=") {
                        info = Some(self.protocol_info(spec));
                    }
                }
                let s = wsp::wsp_socket(num(1), num(2), num(3), info.as_ref(), group, flags)?;
                Ok(self.add(s))
            }
            "bind" => Ok(wsp::wsp_bind(self.sock(arg(1)), to_wit(self.addr(arg(2))))
                .map(|()| String::new())?),
            "listen" => Ok(
                wsp::wsp_listen(self.sock(arg(1)), arg(2).parse().unwrap_or(8))
                    .map(|()| String::new())?,
            ),
            "accept" => {
                let (s, peer) = wsp::wsp_accept(self.sock(arg(1)))?;
                let name = self.add(s);
                Ok(format!("{name} {}", from_wit(peer)))
            }
            "connect" => Ok(
                wsp::wsp_connect(self.sock(arg(1)), to_wit(self.addr(arg(2))))
                    .map(|()| String::new())?,
            ),
            // send S TEXT|@N [oob] [partial] [token=N]
            "send" => {
                let data = payload(arg(2));
                let sent = wsp::wsp_send(
                    self.sock(arg(1)),
                    &data,
                    &[data.len() as u32],
                    flags_of(&w[3..]),
                    self.overlapped_of(&w[3..]).as_ref(),
                )?;
                Ok(sent.to_string())
            }
            // sendv S a|b|c: several buffers, one call
            "sendv" => {
                let buffers: Vec<Vec<u8>> = arg(2).split('|').map(payload).collect();
                let slices: Vec<&[u8]> = buffers.iter().map(Vec::as_slice).collect();
                let (data, lengths) = wsabuf(&slices);
                let flags = flags_of(&w[3..]);
                Ok(wsp::wsp_send(self.sock(arg(1)), &data, &lengths, flags, None)?.to_string())
            }
            // sendmany S N: one send of N one-byte buffers
            "sendmany" => {
                let n: usize = arg(2).parse().expect("count");
                let (data, lengths) = (vec![b'm'; n], vec![1u32; n]);
                let flags = MessageFlags::empty();
                Ok(wsp::wsp_send(self.sock(arg(1)), &data, &lengths, flags, None)?.to_string())
            }
            // sendto S ADDR TEXT|@N [flags]
            "sendto" => {
                let buffers: Vec<Vec<u8>> = arg(3).split('|').map(payload).collect();
                let slices: Vec<&[u8]> = buffers.iter().map(Vec::as_slice).collect();
                let (data, lengths) = wsabuf(&slices);
                let to = to_wit(self.addr(arg(2)));
                Ok(wsp::wsp_send_to(
                    self.sock(arg(1)),
                    &data,
                    &lengths,
                    flags_of(&w[4..]),
                    to,
                    self.overlapped_of(&w[4..]).as_ref(),
                )?
                .to_string())
            }
            // recv S MAX [peek] [oob] [waitall] [ov=qN:TOKEN]
            "recv" => {
                let data = wsp::wsp_recv(
                    self.sock(arg(1)),
                    arg(2).parse().expect("max"),
                    flags_of(&w[3..]),
                    self.overlapped_of(&w[3..]).as_ref(),
                )?;
                Ok(show(&data))
            }
            "recvfrom" => {
                let (data, from) = wsp::wsp_recv_from(
                    self.sock(arg(1)),
                    arg(2).parse().expect("max"),
                    flags_of(&w[3..]),
                    self.overlapped_of(&w[3..]).as_ref(),
                )?;
                Ok(format!("{} {}", show(&data), from_wit(from)))
            }
            "shutdown" => {
                let how = match arg(2) {
                    "send" => ShutdownHow::Send,
                    "receive" => ShutdownHow::Receive,
                    _ => ShutdownHow::Both,
                };
                Ok(wsp::wsp_shutdown(self.sock(arg(1)), how).map(|()| String::new())?)
            }
            "close" => Ok(wsp::wsp_close_socket(self.sock(arg(1))).map(|()| String::new())?),
            "nonblock" => {
                wsp::wsp_ioctl(self.sock(arg(1)), &IoctlCommand::Fionbio(on(arg(2))))?;
                Ok(String::new())
            }
            "fionread" | "atmark" => {
                let command = if w[0] == "fionread" {
                    IoctlCommand::Fionread
                } else {
                    IoctlCommand::Siocatmark
                };
                Ok(match wsp::wsp_ioctl(self.sock(arg(1)), &command)? {
                    IoctlResult::Bytes(n) => n.to_string(),
                    IoctlResult::Flag(f) => f.to_string(),
                    IoctlResult::None | IoctlResult::Qos(_) => String::new(),
                })
            }
            // setopt S NAME VALUE
            "setopt" => {
                let value = arg(3);
                let option = match arg(2) {
                    "broadcast" => Sockopt::Broadcast(on(value)),
                    "oob-inline" => Sockopt::OobInline(on(value)),
                    "reuse" => Sockopt::ReuseAddress(on(value)),
                    "keepalive" => Sockopt::KeepAlive(on(value)),
                    "nodelay" => Sockopt::TcpNoDelay(on(value)),
                    "linger" => Sockopt::Linger(value.parse().ok()),
                    "rcvbuf" => Sockopt::ReceiveBuffer(value.parse().expect("size")),
                    "sndbuf" => Sockopt::SendBuffer(value.parse().expect("size")),
                    "max-msg-size" => Sockopt::MaxMessageSize(value.parse().expect("size")),
                    "mcast-ttl" => Sockopt::MulticastTtl(value.parse().expect("ttl")),
                    "mcast-loop" => Sockopt::MulticastLoop(on(value)),
                    "conndata" => Sockopt::ConnectData(payload(value)),
                    other => panic!("unknown option {other}"),
                };
                Ok(wsp::wsp_set_sock_opt(self.sock(arg(1)), &option).map(|()| String::new())?)
            }
            "getopt" => {
                let name = match arg(2) {
                    "broadcast" => SockoptName::Broadcast,
                    "oob-inline" => SockoptName::OobInline,
                    "reuse" => SockoptName::ReuseAddress,
                    "keepalive" => SockoptName::KeepAlive,
                    "nodelay" => SockoptName::TcpNoDelay,
                    "linger" => SockoptName::Linger,
                    "rcvbuf" => SockoptName::ReceiveBuffer,
                    "sndbuf" => SockoptName::SendBuffer,
                    "max-msg-size" => SockoptName::MaxMessageSize,
                    "error" => SockoptName::Error,
                    "type" => SockoptName::SocketType,
                    "acceptconn" => SockoptName::AcceptConn,
                    "protocol-info" => SockoptName::ProtocolInfo,
                    "mcast-ttl" => SockoptName::MulticastTtl,
                    "mcast-loop" => SockoptName::MulticastLoop,
                    "conndata" => SockoptName::ConnectData,
                    other => panic!("unknown option {other}"),
                };
                Ok(match wsp::wsp_get_sock_opt(self.sock(arg(1)), name)? {
                    Sockopt::Broadcast(v)
                    | Sockopt::OobInline(v)
                    | Sockopt::ReuseAddress(v)
                    | Sockopt::KeepAlive(v)
                    | Sockopt::TcpNoDelay(v)
                    | Sockopt::AcceptConn(v) => v.to_string(),
                    Sockopt::Linger(v) => format!("{v:?}"),
                    Sockopt::ReceiveBuffer(v)
                    | Sockopt::SendBuffer(v)
                    | Sockopt::MaxMessageSize(v) => v.to_string(),
                    Sockopt::Error(None) => "none".into(),
                    Sockopt::Error(Some(e)) => WsaError(e).name(),
                    Sockopt::SocketType(t) => t.to_string(),
                    Sockopt::ProtocolInfo(p) => format!("{} {}", p.catalog_entry_id, p.name),
                    Sockopt::MulticastTtl(t) => t.to_string(),
                    Sockopt::MulticastLoop(v) => v.to_string(),
                    Sockopt::ConnectData(data) => show(&data),
                })
            }
            "name" => Ok(from_wit(wsp::wsp_get_sock_name(self.sock(arg(1)))?).to_string()),
            "peer" => Ok(from_wit(wsp::wsp_get_peer_name(self.sock(arg(1)))?).to_string()),
            // overlapped S TOKEN [wait]: BYTES, then the bytes and sender
            // of a receive that completed after its call
            "overlapped" => {
                let outcome = wsp::wsp_get_overlapped_result(
                    self.sock(arg(1)),
                    arg(2).parse().expect("token"),
                    arg(3) == "wait",
                )?;
                let mut line = outcome.bytes.to_string();
                if !outcome.data.is_empty() {
                    line = format!("{line} {}", show(&outcome.data));
                }
                if let Some(from) = outcome.sender {
                    line = format!("{line} {}", from_wit(from));
                }
                Ok(line)
            }
            "denial" => Ok(wsp::last_denial().unwrap_or_else(|| "none".into())),
            // ovflood S N SIZE qN: N overlapped sends of SIZE bytes (tokens
            // 1..=N) with completions to qN: how many completed at once, how
            // many pend, and the errors by name
            "ovflood" => {
                let s = self.sock(arg(1));
                let n: u64 = arg(2).parse().expect("count");
                let data = vec![b'o'; arg(3).parse().expect("size")];
                let (mut done, mut pending) = (0, 0);
                let mut errors = std::collections::BTreeMap::<String, u32>::new();
                for token in 1..=n {
                    let overlapped = wsp::Overlapped {
                        token,
                        queue: self.queue(arg(4)),
                        msg: COMPLETION_MSG,
                    };
                    let length = [data.len() as u32];
                    let flags = MessageFlags::empty();
                    match wsp::wsp_send(s, &data, &length, flags, Some(&overlapped)) {
                        Ok(_) => done += 1,
                        Err(wasp_guest::ErrorCode::WsaIoPending) => pending += 1,
                        Err(e) => *errors.entry(WsaError(e).name()).or_default() += 1,
                    }
                }
                Ok(format!("done={done} pending={pending} errors={errors:?}"))
            }
            // routing S ADDR: SIO_ROUTING_INTERFACE_CHANGE for ADDR
            "routing" => {
                let to = to_wit(self.addr(arg(2)));
                let command = IoctlCommand::SioRoutingInterfaceChange(to);
                wsp::wsp_ioctl(self.sock(arg(1)), &command)?;
                Ok(String::new())
            }
            // flush S: SIO_FLUSH (discards pending overlapped sends)
            "flush" => {
                wsp::wsp_ioctl(self.sock(arg(1)), &IoctlCommand::SioFlush)?;
                Ok(String::new())
            }
            // addrlist S: SIO_ADDRESS_LIST_CHANGE (arms FD_ADDRESS_LIST_CHANGE)
            "addrlist" => {
                wsp::wsp_ioctl(self.sock(arg(1)), &IoctlCommand::SioAddressListChange)?;
                Ok(String::new())
            }
            // qos S set RATE BUCKET [SERVICE]: SIO_SET_QOS of a sending flow;
            // qos S get: SIO_GET_QOS as `rate=R bucket=B service=S`
            "qos" => {
                use wasp_guest::raw::types::{Flowspec, Qos, ServiceType};
                let s = self.sock(arg(1));
                if arg(2) == "get" {
                    return match wsp::wsp_ioctl(s, &IoctlCommand::SioGetQos)? {
                        wasp_guest::IoctlResult::Qos(q) => Ok(format!(
                            "rate={} bucket={} service={:?}",
                            q.sending.token_rate,
                            q.sending.token_bucket_size,
                            q.sending.service_type
                        )),
                        other => Ok(format!("{other:?}")),
                    };
                }
                let service_type = match arg(5) {
                    "guaranteed" => ServiceType::Guaranteed,
                    "best-effort" => ServiceType::BestEffort,
                    _ => ServiceType::ControlledLoad,
                };
                let sending = Flowspec {
                    token_rate: arg(3).parse().expect("rate"),
                    token_bucket_size: arg(4).parse().expect("bucket"),
                    peak_bandwidth: 0,
                    latency: 0,
                    delay_variation: 0,
                    service_type,
                    max_sdu_size: 0,
                    minimum_policed_size: 0,
                };
                let receiving = Flowspec {
                    service_type: ServiceType::BestEffort,
                    token_rate: 0,
                    token_bucket_size: 0,
                    ..sending
                };
                let qos = Qos {
                    sending,
                    receiving,
                    provider_specific: Vec::new(),
                };
                wsp::wsp_ioctl(s, &IoctlCommand::SioSetQos(qos))?;
                Ok(String::new())
            }
            // protocols [PROTO,...]: catalogue ids
            "protocols" => {
                let filter: Option<Vec<i32>> = w
                    .get(1)
                    .map(|l| l.split(',').map(|p| p.parse().expect("protocol")).collect());
                let ids: Vec<String> = wsp::wsp_enum_protocols(filter.as_deref())
                    .iter()
                    .map(|p| p.catalog_entry_id.to_string())
                    .collect();
                Ok(ids.join(","))
            }
            // fill S: non-blocking sends of 64 KiB until one fails
            "fill" => {
                let s = self.sock(arg(1));
                let chunk = vec![b'f'; 64 * 1024];
                let (mut total, mut partial) = (0u64, 0u32);
                for _ in 0..100_000 {
                    match wsp::wsp_send(
                        s,
                        &chunk,
                        &[chunk.len() as u32],
                        MessageFlags::empty(),
                        None,
                    ) {
                        Ok(n) => {
                            total += u64::from(n);
                            if (n as usize) < chunk.len() {
                                partial += 1;
                            }
                        }
                        Err(e) => {
                            return Ok(format!(
                                "total>0={} partial>0={} then {}",
                                total > 0,
                                partial > 0,
                                WsaError(e).name()
                            ));
                        }
                    }
                }
                Ok("never blocked".into())
            }
            // drain S N: receives until N bytes, the end of the stream, or
            // (non-blocking) WSAEWOULDBLOCK
            "drain" => {
                let s = self.sock(arg(1));
                let want: u64 = arg(2).parse().expect("count");
                let mut got = 0u64;
                while got < want {
                    let max = (want - got).min(65536) as u32;
                    let data = match wsp::wsp_recv(s, max, MessageFlags::empty(), None) {
                        Ok(data) => data,
                        Err(wasp_guest::ErrorCode::Wsaewouldblock) => break,
                        Err(e) => return Err(e.into()),
                    };
                    if data.is_empty() {
                        break;
                    }
                    got += data.len() as u64;
                }
                Ok(got.to_string())
            }
            // await-connect S: polls a non-blocking connect to its outcome
            "await-connect" => {
                let s = self.sock(arg(1));
                for _ in 0..1_000_000 {
                    if wsp::wsp_get_peer_name(s).is_ok() {
                        return Ok(String::new());
                    }
                    if let Sockopt::Error(Some(e)) = wsp::wsp_get_sock_opt(s, SockoptName::Error)? {
                        return Err(WsaError(e));
                    }
                }
                Ok("still connecting".into())
            }
            // queue CAP: a message queue qN
            "queue" => {
                self.queues
                    .push(Some(MessageQueue::new(arg(1).parse().expect("capacity"))));
                Ok(format!("q{}", self.queues.len() - 1))
            }
            // select S qN MSG [read] [write] [oob] [accept] [connect] [close] [qos] ...
            "select" => {
                let events = events_of(&w[4..]);
                let queue = self.queue(arg(2));
                wsp::wsp_async_select(
                    self.sock(arg(1)),
                    queue,
                    arg(3).parse().expect("msg"),
                    events,
                )?;
                Ok(String::new())
            }
            // get qN TIMEOUT_MS: one message, or `none`
            "get" => {
                let message = self
                    .queue(arg(1))
                    .get(Some(arg(2).parse().expect("timeout")));
                Ok(message.map_or_else(|| "none".into(), |m| self.show_message(&m)))
            }
            "peek" => Ok(self
                .queue(arg(1))
                .peek()
                .map_or_else(|| "none".into(), |m| self.show_message(&m))),
            // qdrain qN MAX: messages separated by ` | `
            "qdrain" => {
                let messages = self.queue(arg(1)).drain(arg(2).parse().expect("max"));
                let shown: Vec<String> = messages.iter().map(|m| self.show_message(m)).collect();
                Ok(shown.join(" | "))
            }
            // collect qN N TIMEOUT_MS: waits for N messages, prints them sorted
            "collect" => {
                let want: usize = arg(2).parse().expect("count");
                let timeout: u64 = arg(3).parse().expect("timeout");
                let mut shown = Vec::new();
                while shown.len() < want {
                    match self.queue(arg(1)).get(Some(timeout)) {
                        Some(m) => shown.push(self.show_message(&m)),
                        None => break,
                    }
                }
                shown.sort();
                Ok(shown.join(" | "))
            }
            // await qN sK EVENT TIMEOUT_MS: the first message of sK with
            // EVENT; other messages are kept for later awaits
            "await" => {
                let want = self.sock(arg(2));
                let event = events_of(&[arg(3)]);
                let timeout: u64 = arg(4).parse().expect("timeout");
                let matches = |m: &Message| m.socket == want && m.event == event;
                if let Some(i) = self.stash.iter().position(matches) {
                    let m = self.stash.remove(i);
                    return Ok(self.show_message(&m));
                }
                while let Some(m) = self.queue(arg(1)).get(Some(timeout)) {
                    if matches(&m) {
                        return Ok(self.show_message(&m));
                    }
                    self.stash.push(m);
                }
                Ok("none".into())
            }
            "qlen" => Ok(self.queue(arg(1)).len().to_string()),
            "overflowed" => Ok((self.queue(arg(1)).overflows() > 0).to_string()),
            // await-overflow qN: waits (up to 10 s) until a post found qN full
            "await-overflow" => {
                let pause = MessageQueue::new(1);
                for _ in 0..1000 {
                    if self.queue(arg(1)).overflows() > 0 {
                        return Ok("true".into());
                    }
                    pause.get(Some(10));
                }
                Ok("false".into())
            }
            "qclose" => {
                self.queue(arg(1)).close();
                Ok(String::new())
            }
            "qdrop" => {
                let index: usize = arg(1).trim_start_matches('q').parse().expect("queue");
                self.queues[index] = None;
                Ok(String::new())
            }
            // subscribe qN: a pollable pN; ready pN: whether it is ready now;
            // block pN: waits for it
            "subscribe" => {
                let pollable = wasp_guest::raw::readiness::subscribe(self.queue(arg(1)));
                self.pollables.push(pollable);
                Ok(format!("p{}", self.pollables.len() - 1))
            }
            // subscribe-many qN N: N pollables of qN, kept
            "subscribe-many" => {
                for _ in 0..arg(2).parse::<usize>().expect("count") {
                    let pollable = wasp_guest::raw::readiness::subscribe(self.queue(arg(1)));
                    self.pollables.push(pollable);
                }
                Ok(self.pollables.len().to_string())
            }
            "drop-pollables" => {
                self.pollables.clear();
                Ok(String::new())
            }
            "ready" => Ok(self.pollable(arg(1)).ready().to_string()),
            "block" => {
                self.pollable(arg(1)).block();
                Ok(String::new())
            }
            // udp-many N qN: N datagram sockets on 127.0.0.1, each registered
            // for FD_READ on qN
            "udp-many" => {
                let count: usize = arg(1).parse().expect("count");
                for _ in 0..count {
                    let s = wsp::wsp_socket(2, 2, 17, None, 0, SocketFlags::empty())?;
                    wsp::wsp_bind(s, to_wit("127.0.0.1:0".parse().expect("address")))?;
                    wsp::wsp_async_select(s, self.queue(arg(2)), 1, FdEvents::READ)?;
                    self.sockets.push(s);
                }
                Ok(self.sockets.len().to_string())
            }
            // join S ADDR [sender|receiver|both] [data=TEXT] [sqos=SERVICE]
            "join" => {
                use wasp_guest::raw::types::{Flowspec, JoinFlags, Qos, ServiceType};
                let mut role = JoinFlags::Both;
                let mut data = None;
                let mut sqos = None;
                for word in &w[3..] {
                    match *word {
                        "sender" => role = JoinFlags::SenderOnly,
                        "receiver" => role = JoinFlags::ReceiverOnly,
                        "both" => role = JoinFlags::Both,
                        other => {
                            if let Some(text) = other.strip_prefix("data=") {
                                data = Some(text.as_bytes().to_vec());
                            } else if let Some(service) = other.strip_prefix("sqos=") {
                                let service_type = match service {
                                    "guaranteed" => ServiceType::Guaranteed,
                                    "controlled-load" => ServiceType::ControlledLoad,
                                    _ => ServiceType::BestEffort,
                                };
                                let flow = Flowspec {
                                    token_rate: 1000,
                                    token_bucket_size: 1000,
                                    peak_bandwidth: 1000,
                                    latency: 0,
                                    delay_variation: 0,
                                    service_type,
                                    max_sdu_size: 1500,
                                    minimum_policed_size: 0,
                                };
                                sqos = Some(Qos {
                                    sending: flow,
                                    receiving: flow,
                                    provider_specific: Vec::new(),
                                });
                            }
                        }
                    }
                }
                let to = to_wit(self.addr(arg(2)));
                let result = wsp::wsp_join_leaf(
                    self.sock(arg(1)),
                    to,
                    data.as_deref(),
                    64,
                    sqos.as_ref(),
                    None,
                    role,
                )?;
                let name = match self.sockets.iter().position(|&s| s == result.socket) {
                    Some(i) => format!("s{i}"),
                    None => self.add(result.socket),
                };
                if result.callee_data.is_empty() {
                    Ok(format!("{name} callee=0"))
                } else {
                    Ok(format!("{name} callee={}", show(&result.callee_data)))
                }
            }
            // sleep MS: waits on an empty queue
            "sleep" => {
                MessageQueue::new(1).get(Some(arg(1).parse().expect("milliseconds")));
                Ok(String::new())
            }
            // call S ADDR TEXT REPLY N MS: sends TEXT to ADDR up to N times,
            // MS apart, until REPLY arrives on S (non-blocking receives)
            "call" => {
                let s = self.sock(arg(1));
                let to = to_wit(self.addr(arg(2)));
                let times: usize = arg(5).parse().expect("count");
                let pause = MessageQueue::new(1);
                wsp::wsp_ioctl(s, &IoctlCommand::Fionbio(true))?;
                for attempt in 1..=times {
                    let data = payload(arg(3));
                    let length = [data.len() as u32];
                    wsp::wsp_send_to(s, &data, &length, MessageFlags::empty(), to, None)?;
                    pause.get(Some(arg(6).parse().expect("milliseconds")));
                    while let Ok((data, from)) =
                        wsp::wsp_recv_from(s, 1024, MessageFlags::empty(), None)
                    {
                        if data == arg(4).as_bytes() {
                            return Ok(format!(
                                "{} from {} after {attempt}",
                                show(&data),
                                from_wit(from)
                            ));
                        }
                    }
                }
                Ok("no reply".into())
            }
            // repeat N CMD...: runs CMD N times, prints the last outcome
            "repeat" => {
                let times: usize = arg(1).parse().expect("count");
                let mut last = Ok(String::new());
                for _ in 0..times {
                    last = self.run(&w[2..]);
                }
                last
            }
            "echo" => Ok(w[1..].join(" ")),
            // std-connect ADDR / std-bind ADDR / std-send-to ADDR: the same
            // through Rust's std::net, i.e. wasi:sockets (the second door)
            "std-connect" => Ok(std_outcome(
                std::net::TcpStream::connect(arg(1)).map(|_| "connected".into()),
            )),
            "std-bind" => Ok(std_outcome(
                std::net::UdpSocket::bind(arg(1)).and_then(|s| Ok(s.local_addr()?.to_string())),
            )),
            "std-send-to" => Ok(std_outcome(
                std::net::UdpSocket::bind("127.0.0.1:0")
                    .and_then(|s| s.send_to(b"door", arg(1)))
                    .map(|n| format!("sent {n}")),
            )),
            // env: the plugin's environment variables, KEY=VALUE sorted
            "env" => {
                let mut vars: Vec<String> =
                    std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
                vars.sort();
                Ok(vars.join(" "))
            }
            other => panic!("unknown command {other}"),
        }
    }

    fn queue(&self, word: &str) -> &MessageQueue {
        let index: usize = word.trim_start_matches('q').parse().expect("queue name qN");
        self.queues[index].as_ref().expect("queue not dropped")
    }

    fn pollable(&self, word: &str) -> &Pollable {
        let index: usize = word
            .trim_start_matches('p')
            .parse()
            .expect("pollable name pN");
        &self.pollables[index]
    }

    /// The overlapped argument `ov=qN:TOKEN` among `words`, if any.
    fn overlapped_of(&self, words: &[&str]) -> Option<wsp::Overlapped<'_>> {
        let spec = words.iter().find_map(|w| w.strip_prefix("ov="))?;
        let (queue, token) = spec.split_once(':').expect("ov=qN:TOKEN");
        Some(wsp::Overlapped {
            token: token.parse().expect("token"),
            queue: self.queue(queue),
            msg: COMPLETION_MSG,
        })
    }

    /// `msg=M s=sK event=E error=X lparam=L`, sockets by their probe name;
    /// a completion is `msg=M s=sK done=TOKEN bytes=N error=X`.
    fn show_message(&self, m: &Message) -> String {
        let socket = match self.sockets.iter().position(|&s| s == m.socket) {
            Some(i) => format!("s{i}"),
            None => format!("#{}", m.socket),
        };
        let error = m
            .error
            .map_or_else(|| "none".into(), |e| WsaError(e).name());
        if let Some(c) = m.completion {
            return format!(
                "msg={} s={socket} done={} bytes={} error={error}",
                m.msg, c.token, c.bytes
            );
        }
        format!(
            "msg={} s={socket} event={} error={error} lparam={:#x}",
            m.msg,
            event_name(m.event),
            m.lparam
        )
    }

    /// `ID` takes the catalogue entry as the host publishes it;
    /// `ID:AF:TYPE:PROTO` overrides its triple.
    fn protocol_info(&self, spec: &str) -> ProtocolInfo {
        let mut parts = spec.split(':');
        let id: u32 = parts
            .next()
            .and_then(|p| p.parse().ok())
            .expect("catalogue id");
        let mut info = wsp::wsp_enum_protocols(None)
            .into_iter()
            .find(|p| p.catalog_entry_id == id)
            .unwrap_or_else(|| {
                let mut any = wsp::wsp_enum_protocols(None).remove(0);
                any.catalog_entry_id = id;
                any
            });
        let rest: Vec<i32> = parts.map(|p| p.parse().expect("number")).collect();
        if let [af, ty, proto] = rest[..] {
            info.address_family = af;
            info.socket_type = ty;
            info.protocol = proto;
        }
        info
    }
}
