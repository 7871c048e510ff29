//! Glue: one module per WIT interface. Looks up, converts, calls the
//! mechanism; decides nothing.

pub(crate) mod messages;
mod sockets;
mod types;
mod wasi_sockets;
