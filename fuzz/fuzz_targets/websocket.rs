//! See `src/websocket.rs` for the input format and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edgemq_fuzz::websocket::run(data));
