//! Mechanism: real sockets on tokio and socket2, one [`Provider`] per
//! guest. No WebAssembly types appear here (DESIGN §2).

pub mod admission;
pub mod buffers;
pub mod catalog;
pub mod engine;
pub mod gate;
pub mod meter;
pub mod overlapped;
pub mod provider;
pub mod qos;
pub mod queue;
mod reactor;
pub mod rooted;
mod routes;
pub mod select;
pub mod socket;
mod sys;

pub use provider::{IoctlCommand, IoctlReply, JoinRole, OptName, OptValue, Provider, ShutdownHow};
pub use qos::{Flowspec, Qos, ServiceType};
pub use socket::MsgFlags;
