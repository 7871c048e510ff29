//! The few socket calls that need `unsafe`: receives into caller buffers,
//! and handing a listener to the reactor.
//!
//! socket2 receives into `&mut [MaybeUninit<u8>]`; the host always has an
//! initialised `&mut [u8]`, which is a valid `MaybeUninit<u8>` slice as
//! long as nothing writes uninitialised bytes into it, and the kernel only
//! writes received bytes.
#![allow(unsafe_code)]

use std::io;
use std::mem::MaybeUninit;
use std::net::IpAddr;

use socket2::{SockAddr, Socket};

fn as_uninit(buf: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: `u8` and `MaybeUninit<u8>` have the same layout; the slice is
    // initialised and the callee only stores initialised bytes in it.
    unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) }
}

/// `recv(2)` with `flags` into an initialised buffer.
pub fn recv(socket: &Socket, buf: &mut [u8], flags: i32) -> io::Result<usize> {
    socket.recv_with_flags(as_uninit(buf), flags)
}

/// `recvfrom(2)` with `flags` into an initialised buffer.
pub fn recv_from(socket: &Socket, buf: &mut [u8], flags: i32) -> io::Result<(usize, SockAddr)> {
    socket.recv_from_with_flags(as_uninit(buf), flags)
}

/// `recv(2)` with `flags`, appending at most `max` bytes to `buf` without
/// zeroing them first (a guest's receive may ask for 64 KiB and get 64
/// bytes). Returns what the kernel returned, which with `MSG_TRUNC` on a
/// datagram socket may exceed `max` (only `max` bytes are kept).
pub fn recv_append(
    socket: &Socket,
    buf: &mut Vec<u8>,
    max: usize,
    flags: i32,
) -> io::Result<usize> {
    buf.reserve(max);
    let n = socket.recv_with_flags(&mut buf.spare_capacity_mut()[..max], flags)?;
    // SAFETY: the kernel wrote the first `min(n, max)` bytes of the spare
    // capacity, which `reserve` made at least `max` long.
    unsafe { buf.set_len(buf.len() + n.min(max)) };
    Ok(n)
}

/// `recvfrom(2)` as [`recv_append`], with the sender's address.
pub fn recv_from_append(
    socket: &Socket,
    buf: &mut Vec<u8>,
    max: usize,
    flags: i32,
) -> io::Result<(usize, SockAddr)> {
    buf.reserve(max);
    let (n, from) = socket.recv_from_with_flags(&mut buf.spare_capacity_mut()[..max], flags)?;
    // SAFETY: as in `recv_append`.
    unsafe { buf.set_len(buf.len() + n.min(max)) };
    Ok((n, from))
}

/// Registers a listening socket with tokio's reactor (for accept
/// readiness); on failure the socket comes back with the error.
pub fn register_listener(
    socket: Socket,
) -> Result<tokio::io::unix::AsyncFd<Socket>, (Socket, io::Error)> {
    // SAFETY: the `AsyncFd` takes ownership of `socket`, whose descriptor
    // therefore stays open and the same for the whole life of the
    // `AsyncFd`; `Socket::as_raw_fd` always returns that descriptor.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(socket, tokio::io::Interest::READABLE)
    }
    .map_err(|e| e.into_parts())
}

/// Registers a descriptor the caller hands over (an epoll set) with
/// tokio's reactor for readability.
pub fn register_readable(
    fd: std::os::fd::OwnedFd,
) -> io::Result<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    // SAFETY: the `AsyncFd` owns `fd`, a descriptor of its own that stays
    // open and the same for the whole life of the `AsyncFd`.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(io::Error::from)
}

/// Bytes a stream socket has not yet had acknowledged by its peer
/// (`SIOCOUTQ`).
pub fn unsent_bytes(socket: &impl std::os::fd::AsFd) -> io::Result<u32> {
    use std::os::fd::AsRawFd;
    let mut unsent: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one `int` through the pointer, which points
    // to a live local `c_int`; the descriptor is borrowed for the call.
    let rc = unsafe {
        libc::ioctl(
            socket.as_fd().as_raw_fd(),
            libc::TIOCOUTQ,
            &mut unsent as *mut libc::c_int,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u32::try_from(unsent).unwrap_or(0))
}

/// Asks the kernel to report the destination address of each datagram
/// (`IP_PKTINFO` / `IPV6_RECVPKTINFO`), which [`peek_sender_and_destination`]
/// then reads.
pub fn report_destinations(socket: &Socket, v6: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (level, name) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)
    } else {
        (libc::IPPROTO_IP, libc::IP_PKTINFO)
    };
    let on: libc::c_int = 1;
    // SAFETY: the option value is one live `c_int`, of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Peeks at the datagram at the head of the receive queue without waiting:
/// its sender and, where [`report_destinations`] is on, the address it was
/// sent to (a group's address, or one of the machine's).
pub fn peek_sender_and_destination(socket: &Socket) -> io::Result<(SockAddr, Option<IpAddr>)> {
    use std::os::fd::AsRawFd;
    // Room for one IPv6 packet-info message, aligned for `cmsghdr`.
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    };
    let mut storage = socket2::SockAddrStorage::zeroed();
    // SAFETY: an all-zero `msghdr` is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_namelen = storage.size_of();
    msg.msg_name = (&mut storage as *mut socket2::SockAddrStorage).cast();
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: every pointer in `msg` points to a live local of the size
    // given beside it; the kernel writes only within those sizes.
    let rc = unsafe {
        libc::recvmsg(
            socket.as_raw_fd(),
            &mut msg,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel filled `storage` with an address of
    // `msg_namelen` bytes.
    let from = unsafe { SockAddr::new(storage, msg.msg_namelen) };
    let mut to = None;
    // SAFETY: the CMSG_* walk stays within `msg_control`/`msg_controllen`
    // as the kernel set them, and each packet-info payload is read
    // unaligned from inside its control message.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let header = &*cmsg;
            let data = libc::CMSG_DATA(cmsg);
            if header.cmsg_level == libc::IPPROTO_IP && header.cmsg_type == libc::IP_PKTINFO {
                let info = std::ptr::read_unaligned(data.cast::<libc::in_pktinfo>());
                to = Some(IpAddr::from(
                    u32::from_be(info.ipi_addr.s_addr).to_be_bytes(),
                ));
            } else if header.cmsg_level == libc::IPPROTO_IPV6
                && header.cmsg_type == libc::IPV6_PKTINFO
            {
                let info = std::ptr::read_unaligned(data.cast::<libc::in6_pktinfo>());
                to = Some(IpAddr::from(info.ipi6_addr.s6_addr));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((from, to))
}

/// The IP addresses of the machine's interfaces (`getifaddrs`).
pub fn local_addresses() -> io::Result<Vec<IpAddr>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head through the pointer, which
    // points to a live local; on success the list is freed below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut addresses = Vec::new();
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: `entry` is a node of the list getifaddrs returned, which
        // stays valid until freeifaddrs.
        let node = unsafe { &*entry };
        if !node.ifa_addr.is_null() {
            // SAFETY: a non-null `ifa_addr` points to a sockaddr whose
            // family says its real type, read as that type only.
            let family = i32::from(unsafe { (*node.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let v4 = unsafe { &*(node.ifa_addr as *const libc::sockaddr_in) };
                let octets = v4.sin_addr.s_addr.to_ne_bytes();
                addresses.push(IpAddr::from(octets));
            } else if family == libc::AF_INET6 {
                // SAFETY: an AF_INET6 address is a sockaddr_in6.
                let v6 = unsafe { &*(node.ifa_addr as *const libc::sockaddr_in6) };
                addresses.push(IpAddr::from(v6.sin6_addr.s6_addr));
            }
        }
        entry = node.ifa_next;
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    Ok(addresses)
}
