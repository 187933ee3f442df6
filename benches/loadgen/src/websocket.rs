//! A minimal MQTT-over-WebSocket client framing for the `_ws` scenarios (RFC 6455): the
//! upgrade request with subprotocol `mqtt`, masked binary frames out, the server's frames
//! streamed back into MQTT bytes. Written for the load generator, apart from the broker's own
//! WebSocket code, so a bug there cannot hide in a shared implementation.
//!
//! Contract: nothing here grows without bound: a server frame header is at most 10 bytes, its
//! payload is copied straight to the caller's buffer as it arrives; control frames (the
//! servers under test send none but close) are skipped, a close frame is an error.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::Error;

/// The path both brokers serve MQTT on in the scenarios.
pub const PATH: &str = "/mqtt";

/// Sends the upgrade request and reads the `101` answer. Bytes the server sent after the
/// answer (none in practice: it waits for CONNECT) would be frames and are returned.
pub fn upgrade(stream: &mut TcpStream, host: &str, timeout: Duration) -> Result<Vec<u8>, Error> {
    let request = format!(
        "GET {PATH} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: mqtt\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(|e| Error::new(format!("upgrade: {e}")))?;
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]);
            // RFC 6455 1.3's example key and its accept value.
            if !head.starts_with("HTTP/1.1 101") || !head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") {
                return Err(Error::new(format!("upgrade refused: {head}")));
            }
            return Ok(got[end + 4..].to_vec());
        }
        if Instant::now() >= deadline || got.len() > 16 * 1024 {
            return Err(Error::new("no WebSocket upgrade answer"));
        }
        match stream.read(&mut buf) {
            Ok(0) => return Err(Error::new("closed during the WebSocket upgrade")),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if crate::client::nothing_yet(&e) => {}
            Err(e) => return Err(Error::new(format!("upgrade: {e}"))),
        }
    }
}

/// Frames MQTT bytes out and unframes the server's frames in.
#[derive(Debug, Default)]
pub struct Framing {
    /// Bytes of a server frame header not complete yet.
    header: Vec<u8>,
    /// Payload bytes left in the current server frame.
    remaining: u64,
    /// The current frame is a control frame (skipped).
    control: bool,
    /// Masking key generator state (a fresh key per frame, as RFC 6455 5.3 asks).
    seed: u64,
    /// The outgoing frame is built here (reused).
    out: Vec<u8>,
}

impl Framing {
    /// `payload` as one masked binary frame, ready to write.
    pub fn frame(&mut self, payload: &[u8]) -> &[u8] {
        // xorshift64: cheap, and every frame gets another key.
        self.seed ^= 0x9E37_79B9_7F4A_7C15;
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let key = (self.seed as u32).to_be_bytes();
        self.out.clear();
        self.out.push(0x82);
        match payload.len() {
            n @ 0..=125 => self.out.push(0x80 | n as u8),
            n @ 126..=65535 => {
                self.out.push(0x80 | 126);
                self.out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                self.out.push(0x80 | 127);
                self.out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        self.out.extend_from_slice(&key);
        let start = self.out.len();
        self.out.extend_from_slice(payload);
        let wide =
            u64::from_ne_bytes([key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]]);
        let body = &mut self.out[start..];
        let mut chunks = body.chunks_exact_mut(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
        }
        for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
        &self.out
    }

    /// Takes raw bytes from the socket and appends the MQTT bytes in them to `out`, which has
    /// room for `input.len()` more (payload is never longer than the frames carrying it).
    pub fn unframe(&mut self, input: &[u8], out: &mut [u8]) -> Result<usize, Error> {
        let mut written = 0;
        let mut pos = 0;
        while pos < input.len() {
            if self.remaining > 0 {
                let n = (self.remaining.min((input.len() - pos) as u64)) as usize;
                if !self.control {
                    out[written..written + n].copy_from_slice(&input[pos..pos + n]);
                    written += n;
                }
                pos += n;
                self.remaining -= n as u64;
                continue;
            }
            self.header.push(input[pos]);
            pos += 1;
            if self.header.len() < 2 {
                continue;
            }
            let need = match self.header[1] & 0x7F {
                126 => 4,
                127 => 10,
                _ => 2,
            };
            if self.header[1] & 0x80 != 0 {
                return Err(Error::new("the server masked a frame"));
            }
            if self.header.len() < need {
                continue;
            }
            let len = match need {
                4 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
                10 => {
                    let mut be = [0u8; 8];
                    be.copy_from_slice(&self.header[2..10]);
                    u64::from_be_bytes(be)
                }
                _ => u64::from(self.header[1] & 0x7F),
            };
            let opcode = self.header[0] & 0x0F;
            self.header.clear();
            if opcode == 0x8 {
                return Err(Error::new("the server closed the WebSocket"));
            }
            self.control = opcode >= 0x8;
            self.remaining = len;
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_masked_and_unframing_streams_payloads() {
        let mut f = Framing::default();
        let frame = f.frame(&[0xc0, 0x00]).to_vec();
        assert_eq!(&frame[..2], &[0x82, 0x82]);
        let key = &frame[2..6];
        assert_eq!([frame[6] ^ key[0], frame[7] ^ key[1]], [0xc0, 0x00]);
        let big: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let frame = f.frame(&big).to_vec();
        let key = [frame[4], frame[5], frame[6], frame[7]];
        let unmasked: Vec<u8> =
            frame[8..].iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect();
        assert_eq!(unmasked, big);

        // Server side: a pong (skipped), then PINGRESP split in two binary frames, fed bytewise.
        let input = [0x8a, 0x01, b'x', 0x82, 0x01, 0xd0, 0x82, 0x01, 0x00];
        let mut g = Framing::default();
        let mut out = vec![0u8; 16];
        let mut n = 0;
        for b in input {
            n += g.unframe(&[b], &mut out[n..]).unwrap();
        }
        assert_eq!(&out[..n], &[0xd0, 0x00]);
        assert!(g.unframe(&[0x88, 0x00], &mut out).is_err());
    }
}
