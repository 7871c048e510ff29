//! wasp's rooted multipoint protocol over TCP (SPEC JL-4, JL-7): a root
//! (c_root/d_root) and its leaves (c_leaf/d_leaf), one TCP connection per
//! leaf. Joining is a TCP connect followed by a handshake: the initiator
//! sends its caller data, the responder answers with its callee data, each
//! as a 16-bit big-endian length and the bytes. After that the connection
//! carries the session's data: what the root sends goes to every leaf, what
//! a leaf sends reaches the root on that leaf's c_leaf descriptor.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;

use super::catalog::MAX_CONNECT_DATA;
use super::engine::EventLink;
use super::select::Input;
use crate::error::WsaError;

/// Longest a root's send waits for one leaf to take its copy before that
/// leaf is dropped from the session.
pub const FANOUT_STALL: Duration = Duration::from_secs(5);

/// Longest a join handshake may take before it fails with WSAETIMEDOUT.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A socket's place in a rooted session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rooted {
    /// The c_root: the descriptors of its leaves' c_leaf sockets.
    Root {
        /// c_leaf descriptors, in the order the leaves joined.
        leaves: Vec<u32>,
        /// The c_leaf descriptor of a root-initiated join in progress.
        pending: Option<u32>,
    },
    /// A c_leaf descriptor on the root's side, for one leaf.
    LeafOfRoot {
        /// The root's descriptor.
        root: u32,
    },
}

/// The outcome of a join whose handshake runs in a task: the callee data,
/// or the error.
#[derive(Default)]
pub struct JoinCell {
    outcome: Mutex<Option<Result<Vec<u8>, WsaError>>>,
}

impl JoinCell {
    /// A join in progress.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The outcome, once the join has finished.
    pub fn outcome(&self) -> Option<Result<Vec<u8>, WsaError>> {
        self.outcome
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn finish(&self, outcome: Result<Vec<u8>, WsaError>) {
        *self.outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
    }
}

async fn write_all(stream: &TcpStream, mut data: &[u8]) -> Result<(), WsaError> {
    while !data.is_empty() {
        stream.writable().await?;
        match stream.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn read_exact(stream: &TcpStream, buf: &mut [u8]) -> Result<(), WsaError> {
    let mut filled = 0;
    while filled < buf.len() {
        stream.readable().await?;
        match stream.try_read(&mut buf[filled..]) {
            Ok(0) => return Err(WsaError::ConnAborted),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// One block of connect data: its 16-bit big-endian length and the bytes.
fn connect_data_block(data: &[u8]) -> Result<Vec<u8>, WsaError> {
    let len = u16::try_from(data.len()).map_err(|_| WsaError::Fault)?;
    let mut block = len.to_be_bytes().to_vec();
    block.extend_from_slice(data);
    Ok(block)
}

/// Sends one block of connect data.
async fn send_block(stream: &TcpStream, data: &[u8]) -> Result<(), WsaError> {
    write_all(stream, &connect_data_block(data)?).await
}

/// Receives one block of connect data (at most [`MAX_CONNECT_DATA`]).
async fn receive_block(stream: &TcpStream) -> Result<Vec<u8>, WsaError> {
    let mut len = [0u8; 2];
    read_exact(stream, &mut len).await?;
    let len = usize::from(u16::from_be_bytes(len));
    if len > MAX_CONNECT_DATA {
        return Err(WsaError::ConnAborted);
    }
    let mut data = vec![0u8; len];
    read_exact(stream, &mut data).await?;
    Ok(data)
}

/// The initiator's side of a join, run as a task: waits for the connect,
/// sends the caller data, receives the callee data (WSAEFAULT if it exceeds
/// `callee_capacity`), records the outcome in `cell` and reports it as
/// FD_CONNECT on `original`, the socket WSPJoinLeaf was called on (SPEC
/// JL-5, AS-20); `own` is the link of the joining socket.
pub async fn initiate(
    stream: Arc<TcpStream>,
    caller_data: Vec<u8>,
    callee_capacity: usize,
    cell: Arc<JoinCell>,
    original: Arc<EventLink>,
    own: Arc<EventLink>,
) {
    let handshake = async {
        // Readiness fires on success and on failure alike.
        stream.writable().await?;
        if let Some(err) = stream.take_error()? {
            return Err(WsaError::from(err));
        }
        stream.peer_addr()?;
        send_block(&stream, &caller_data).await?;
        let callee = receive_block(&stream).await?;
        if callee.len() > callee_capacity {
            return Err(WsaError::Fault);
        }
        Ok(callee)
    };
    let outcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .unwrap_or(Err(WsaError::TimedOut));
    let error = outcome.as_ref().err().copied();
    cell.finish(outcome);
    original.feed(Input::ConnectFinished(error));
    if !Arc::ptr_eq(&original, &own) {
        // Wake the joining socket's own engine too.
        own.wake();
    }
}

/// The responder's first half, run in the background by the listener's
/// admission: receives the joining peer's caller data (within
/// [`HANDSHAKE_TIMEOUT`]). The join stays outstanding until the guest
/// accepts it and [`answer`] sends the callee data.
pub async fn receive_caller(stream: &TcpStream) -> Result<Vec<u8>, WsaError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, receive_block(stream))
        .await
        .unwrap_or(Err(WsaError::TimedOut))
}

/// The responder's second half, run by accept: answers with
/// `callee_data` without waiting (a fresh connection has room for it);
/// a connection that cannot take it whole is not usable.
pub fn answer(stream: &TcpStream, callee_data: &[u8]) -> Result<(), WsaError> {
    let block = connect_data_block(callee_data)?;
    match stream.try_write(&block) {
        Ok(n) if n == block.len() => Ok(()),
        Ok(_) => Err(WsaError::ConnAborted),
        Err(e) => Err(e.into()),
    }
}
