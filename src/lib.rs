//! edgemq: a small, fast, crash-safe single-threaded MQTT broker for edge gateways.
//!
//! Layers, dependencies pointing one way: `net -> broker -> codec`, `broker -> store`;
//! `config` and `cli` are leaves used by `main`; `capacity` (the memory the limits allow) reads
//! `config` and the sizes `broker` and `net` use; `log_limit` is a leaf used by `net` and
//! `broker`; `slab` is a leaf used by both; `heap` (giving freed memory back) is a leaf used by `net` and
//! `main`, and the one module allowed an `unsafe` call (glibc's `malloc_trim`).
#![deny(unsafe_code)]

pub mod auth;
pub mod bridge;
pub mod broker;
pub mod capacity;
pub mod cli;
pub mod codec;
pub mod config;
pub mod heap;
pub mod log_limit;
pub mod net;
pub mod passwd;
pub mod slab;
pub mod store;

#[cfg(test)]
mod test_support;
