//! edgemq: a small, fast, crash-safe single-threaded MQTT broker for edge gateways.
//!
//! Layers, dependencies pointing one way: `net -> broker -> codec`, `broker -> store`.
//! `config` and `cli` sit on top: main turns the command line and the config file into a
//! validated `Config` before anything else starts.
#![forbid(unsafe_code)]

pub mod cli;
pub mod codec;
pub mod config;
