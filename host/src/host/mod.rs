//! Glue: one module per WIT interface. Looks up, converts, calls the
//! mechanism; decides nothing.

mod sockets;
mod types;
