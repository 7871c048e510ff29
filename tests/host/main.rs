//! Host tests: real guests built from source, real loopback sockets.
//! Test names cite the SPEC rule they check (`so_2_...`, `se_4_...`).

mod common;

mod async_select;
mod cli;
mod companions;
mod conformance;
mod deny_matrix;
mod deny_sockets;
mod embedding;
mod fuzz_replay;
mod hostile_net;
mod isolation;
mod join_leaf;
mod operators;
mod overlapped;
mod qos;
mod scale;
mod traceability;
mod wasi_door;
mod wsp_send;
mod wsp_socket;
