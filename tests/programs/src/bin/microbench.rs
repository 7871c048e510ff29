//! Per-call costs of the wasp SPI as a guest sees them, timed inside the
//! guest (wasi:clocks): one `name value` line per figure, in nanoseconds.

use std::time::Instant;

use wasp_guest::raw::messages::MessageQueue;
use wasp_guest::raw::sockets as wsp;
use wasp_guest::raw::types::{FdEvents, MessageFlags, SocketAddress};
use wasp_guest::{SocketFlags, consts};

fn udp_socket() -> (u32, SocketAddress) {
    let s = wsp::wsp_socket(
        consts::AF_INET,
        consts::SOCK_DGRAM,
        consts::IPPROTO_UDP,
        None,
        0,
        SocketFlags::empty(),
    )
    .expect("socket");
    let any = SocketAddress::Ipv4(wasp_guest::raw::types::Ipv4SocketAddress {
        port: 0,
        address: (127, 0, 0, 1),
    });
    wsp::wsp_bind(s, any).expect("bind");
    let name = wsp::wsp_get_sock_name(s).expect("name");
    (s, name)
}

fn per_op(iters: u32, start: Instant) -> u128 {
    start.elapsed().as_nanos() / u128::from(iters)
}

fn main() {
    let iters: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let (s, name) = udp_socket();
    let payload = [7u8; 64];
    let length = [payload.len() as u32];

    // The cheapest SPI call: a descriptor lookup and an address back.
    let start = Instant::now();
    for _ in 0..iters {
        let _ = wsp::wsp_get_sock_name(s);
    }
    println!("spi-call-ns {}", per_op(iters, start));

    // A datagram to itself and back, no events registered.
    let start = Instant::now();
    for _ in 0..iters {
        wsp::wsp_send_to(s, &payload, &length, MessageFlags::empty(), name, None).expect("send");
        wsp::wsp_recv(s, 64, MessageFlags::empty(), None).expect("recv");
    }
    let plain = per_op(iters, start);
    println!("send-recv-ns {plain}");

    // The same with FD_READ registered: each datagram is also a message
    // that the guest takes from its queue.
    let queue = MessageQueue::new(1024);
    wsp::wsp_async_select(s, &queue, 1, FdEvents::READ).expect("select");
    let start = Instant::now();
    for _ in 0..iters {
        wsp::wsp_send_to(s, &payload, &length, MessageFlags::empty(), name, None).expect("send");
        queue.get(None).expect("message");
        wsp::wsp_recv(s, 64, MessageFlags::empty(), None).expect("recv");
    }
    let evented = per_op(iters, start);
    println!("send-event-recv-ns {evented}");
    println!("event-delivery-ns {}", evented.saturating_sub(plain));

    // Batched: 64 sockets each get a datagram, then all 64 messages are
    // taken with one drain.
    let sockets: Vec<(u32, SocketAddress)> = (0..64).map(|_| udp_socket()).collect();
    for (socket, _) in &sockets {
        wsp::wsp_async_select(*socket, &queue, 2, FdEvents::READ).expect("select");
    }
    let rounds = (iters / 64).max(1);
    let start = Instant::now();
    for _ in 0..rounds {
        for (_, to) in &sockets {
            wsp::wsp_send_to(s, &payload, &length, MessageFlags::empty(), *to, None).expect("send");
        }
        let mut got = 0;
        while got < sockets.len() {
            match queue.drain(64).len() {
                0 => {
                    queue.get(None).expect("message");
                    got += 1;
                }
                n => got += n,
            }
        }
        for (socket, _) in &sockets {
            wsp::wsp_recv(*socket, 64, MessageFlags::empty(), None).expect("recv");
        }
    }
    let batched = per_op(rounds * 64, start);
    println!("batched-message-ns {batched}");
    // What one message costs beyond the send and receive it reports.
    println!("batched-delivery-ns {}", batched.saturating_sub(plain));

    // The cheapest call of all: no system call, a lock and a number back.
    let start = Instant::now();
    for _ in 0..iters {
        let _ = queue.len();
    }
    println!("queue-len-ns {}", per_op(iters, start));
}
