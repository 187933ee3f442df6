//! The checks behind edgemq's fuzz targets, as plain functions so that a crashing input can
//! also be replayed from a unit test or a debugger (`cargo fuzz run TARGET ARTIFACT` does the
//! same through libFuzzer). Each `fuzz_targets/*.rs` is one line calling into here.
//!
//! Every check panics on a broken promise; the panic message says which promise.

pub mod auth_files;
pub mod broker_sequence;
pub mod decode;
pub mod topic;
pub mod websocket;
