//! edgemq: a small, fast, crash-safe single-threaded MQTT broker for edge gateways.
//!
//! Layers, dependencies pointing one way: `net -> broker -> codec`, `broker -> store`.
#![forbid(unsafe_code)]

pub mod broker;
pub mod codec;
pub mod net;
