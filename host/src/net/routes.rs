//! FD_ROUTING_INTERFACE_CHANGE (SPEC AS-13, AS-25, AS-26): which local
//! address the kernel would use to reach a destination, and a watch of the
//! kernel's routes, addresses and links that tells each guest's armed
//! sockets when that answer changes.
//!
//! One thread per process listens on a netlink socket (it wakes only when
//! the kernel reports a change); each guest that armed a destination has
//! one task that, after each change, asks the route of its armed
//! destinations again and posts to the sockets whose answer changed.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use rustix::net::netlink::SocketAddrNetlink;
use rustix::net::{AddressFamily, SocketFlags, SocketType};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::engine::EventLink;
use super::gate::Gate;
use super::select::Input;
use crate::error::WsaError;

/// Netlink multicast groups: links, IPv4 and IPv6 addresses and routes.
const GROUPS: u32 = 0x1 // RTMGRP_LINK
    | 0x10 // RTMGRP_IPV4_IFADDR
    | 0x40 // RTMGRP_IPV4_ROUTE
    | 0x100 // RTMGRP_IPV6_IFADDR
    | 0x400; // RTMGRP_IPV6_ROUTE

/// The local address the kernel would send from to reach `to` (a UDP
/// connect on a probe socket: nothing is sent), or why it cannot
/// (WSAENETUNREACH; WSAENETDOWN when it cannot even ask).
pub(crate) fn route_to(to: SocketAddr) -> Result<IpAddr, WsaError> {
    let domain = match to {
        SocketAddr::V4(_) => socket2::Domain::IPV4,
        SocketAddr::V6(_) => socket2::Domain::IPV6,
    };
    let probe =
        socket2::Socket::new(domain, socket2::Type::DGRAM, None).map_err(|_| WsaError::NetDown)?;
    let unreachable = |_| WsaError::NetUnreach;
    probe.connect(&to.into()).map_err(unreachable)?;
    let local = probe.local_addr().map_err(|_| WsaError::NetDown)?;
    local.as_socket().map(|a| a.ip()).ok_or(WsaError::NetDown)
}

/// Changes the kernel reported so far (a counter), from the process's
/// netlink thread, started at the first call.
fn changes() -> Option<watch::Receiver<u64>> {
    static CHANGES: OnceLock<Option<watch::Sender<u64>>> = OnceLock::new();
    let sender = CHANGES.get_or_init(|| {
        let socket = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            None, // NETLINK_ROUTE
        )
        .ok()?;
        rustix::net::bind(&socket, &SocketAddrNetlink::new(0, GROUPS)).ok()?;
        let (sender, _) = watch::channel(0u64);
        let reports = sender.clone();
        std::thread::Builder::new()
            .name("wasp-routes".into())
            .spawn(move || {
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    match rustix::net::recv(&socket, &mut buf[..], rustix::net::RecvFlags::empty())
                    {
                        Ok(_) => reports.send_modify(|n| *n += 1),
                        Err(rustix::io::Errno::INTR) => {}
                        // An overrun still means something changed.
                        Err(rustix::io::Errno::NOBUFS) => reports.send_modify(|n| *n += 1),
                        Err(_) => return,
                    }
                }
            })
            .ok()?;
        Some(sender)
    });
    sender.as_ref().map(watch::Sender::subscribe)
}

/// One socket's armed destination and the answer it was armed with.
struct Armed {
    link: Weak<EventLink>,
    to: SocketAddr,
    route: Result<IpAddr, WsaError>,
}

/// The armed destinations of one guest's sockets, and the task that
/// re-checks them after each change the kernel reports.
#[derive(Default)]
pub(crate) struct RouteWatches {
    armed: Arc<Mutex<Vec<Armed>>>,
    task: Option<AbortHandle>,
}

impl RouteWatches {
    /// SIO_ROUTING_INTERFACE_CHANGE on the socket of `link` for `to`: one
    /// FD_ROUTING_INTERFACE_CHANGE when the answer of [`route_to`] changes
    /// (the select state posts it only while armed). WSAENETDOWN when the
    /// kernel's changes cannot be watched.
    pub(crate) fn arm(&mut self, link: &Arc<EventLink>, to: SocketAddr) -> Result<(), WsaError> {
        if self.task.is_none() {
            let changes = changes().ok_or(WsaError::NetDown)?;
            let armed = Arc::downgrade(&self.armed);
            self.task = Some(tokio::spawn(recheck_on_changes(changes, armed)).abort_handle());
        }
        let mut armed = self.armed.lock().unwrap_or_else(|p| p.into_inner());
        armed.retain(|a| a.link.strong_count() > 0 && !std::ptr::eq(a.link.as_ptr(), &**link));
        armed.push(Armed {
            link: Arc::downgrade(link),
            to,
            route: route_to(to),
        });
        Ok(())
    }
}

impl Drop for RouteWatches {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// After each reported change, asks the route of every armed destination
/// again; a socket whose answer changed is told (with WSAENETUNREACH when
/// it became unreachable).
async fn recheck_on_changes(mut changes: watch::Receiver<u64>, armed: Weak<Mutex<Vec<Armed>>>) {
    while changes.changed().await.is_ok() {
        let Some(armed) = armed.upgrade() else {
            return;
        };
        let mut armed = armed.lock().unwrap_or_else(|p| p.into_inner());
        armed.retain(|a| a.link.strong_count() > 0);
        for entry in armed.iter_mut() {
            let now = route_to(entry.to);
            if now != entry.route {
                entry.route = now;
                if let Some(link) = entry.link.upgrade() {
                    link.feed(Input::RouteChanged(now.err()));
                }
            }
        }
    }
}

/// Watches the machine's interfaces for one guest (SPEC AS-25): after each
/// change the kernel reports, its gate compares the addresses the guest
/// may bind. Started at the guest's first SIO_ADDRESS_LIST_CHANGE.
#[derive(Default)]
pub(crate) struct InterfaceWatch {
    task: Option<AbortHandle>,
}

impl InterfaceWatch {
    /// Starts watching for `gate` (once); WSAENETDOWN when the kernel's
    /// changes cannot be watched.
    pub(crate) fn start(&mut self, gate: &Arc<Gate>) -> Result<(), WsaError> {
        if self.task.is_some() {
            return Ok(());
        }
        let mut changes = changes().ok_or(WsaError::NetDown)?;
        // The list as it is now: later changes are compared with it.
        gate.interfaces_changed();
        let gate = Arc::downgrade(gate);
        let task = tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                match gate.upgrade() {
                    Some(gate) => gate.interfaces_changed(),
                    None => return,
                }
            }
        });
        self.task = Some(task.abort_handle());
        Ok(())
    }
}

impl Drop for InterfaceWatch {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
