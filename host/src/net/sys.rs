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

/// Registers a duplicate of a stream's descriptor with tokio's reactor for
/// urgent-data (`EPOLLPRI`) readiness, which tokio's own registration of
/// the stream does not include.
pub fn register_urgent(
    stream: &impl std::os::fd::AsFd,
) -> io::Result<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    let duplicate = rustix::io::dup(stream)?;
    // SAFETY: the `AsyncFd` owns `duplicate`, a descriptor of its own that
    // stays open and the same for the whole life of the `AsyncFd`.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(duplicate, tokio::io::Interest::PRIORITY)
    }
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
