//! `websocket`: the upgrade-request parser and the frame decoder of `ws`/`wss` listeners, the
//! first code a WebSocket peer's bytes reach.
//!
//! Input: byte 0 is the chunk size (1..=256) the rest is cut into, as reads would cut it; the
//! rest is given whole to `handshake::parse` and chunk by chunk to a `frame::Decoder` with a
//! 1 KiB limit. Checks: nothing panics; `parse` refuses anything over its 8 KiB limit and a
//! request it accepts was consumed within the input; the decoder's progress stays in bounds
//! (`out <= pos <= len`), MQTT bytes out never exceed bytes in, nothing is decoded after a
//! close frame or an error, and a declared length over the limit is an error, not a wait.

use edgemq::net::transport::websocket::frame::{Control, Decoder};
use edgemq::net::transport::websocket::handshake::{self, REQUEST_LIMIT};

const LIMIT: u64 = 1024;

pub fn run(data: &[u8]) {
    let Some((&step, rest)) = data.split_first() else { return };
    match handshake::parse(rest, "/mqtt") {
        Ok(Some(upgrade)) => {
            assert!(upgrade.consumed <= rest.len(), "consumed past the input");
            assert!(upgrade.consumed <= REQUEST_LIMIT, "accepted a request over the limit");
            assert!(upgrade.response.starts_with(b"HTTP/1.1 101 "));
        }
        Ok(None) => assert!(rest.len() < REQUEST_LIMIT, "waits for more past the limit"),
        Err(refusal) => assert!((400..=431).contains(&refusal.status), "{refusal}"),
    }

    let mut decoder = Decoder::new(LIMIT);
    let (mut bytes_in, mut bytes_out) = (0usize, 0usize);
    for chunk in rest.chunks(usize::from(step) + 1) {
        let mut buf = chunk.to_vec();
        bytes_in += buf.len();
        let (mut out, mut pos) = (0, 0);
        loop {
            let closed_before = decoder.is_closed();
            match decoder.decode(&mut buf, out, pos) {
                Ok(progress) => {
                    assert!(progress.out <= progress.pos && progress.pos <= buf.len());
                    assert!(progress.out >= out && progress.pos >= pos, "went backwards");
                    if closed_before {
                        assert_eq!(progress.out, out, "payload decoded after a close frame");
                    }
                    out = progress.out;
                    pos = progress.pos;
                    match progress.control {
                        None => break,
                        Some(Control::Close { .. }) => assert!(decoder.is_closed()),
                        Some(Control::Ping(payload)) => assert!(payload.as_slice().len() <= 125),
                        Some(Control::Pong) => {}
                    }
                    if pos == buf.len() {
                        break;
                    }
                }
                Err(error) => {
                    // Every error has a close code that may go on the wire.
                    let code = error.close_code().value();
                    assert!(matches!(code, 1002 | 1003 | 1007 | 1009), "{code}");
                    return;
                }
            }
        }
        bytes_out += out;
        assert!(bytes_out <= bytes_in, "more MQTT bytes out than socket bytes in");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_and_hand_written_inputs_pass() {
        for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/seeds/websocket"))
            .expect("fuzz/seeds/websocket")
        {
            run(&std::fs::read(entry.unwrap().path()).unwrap());
        }
        run(&[]);
        run(&[0]);
    }
}
