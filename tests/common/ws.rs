//! The client side of MQTT over WebSockets for the end-to-end tests, written from RFC 6455 and
//! sharing no code with the broker's `websocket` module: the opening handshake, masked client
//! frames, and the server's frames turned back into the MQTT byte stream.
//!
//! [`super::TestClient::connect_ws`] gives a `TestClient` whose every helper (CONNECT, publish,
//! expect_message, expect_closed...) runs over WebSocket frames, so a test written for TCP runs
//! over `ws://` by changing how its clients connect.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use super::timeout;

/// What a server frame says, for tests that look at frames themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

pub const CONTINUATION: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// A masked client frame (`mask: None` builds an unmasked one, which servers must refuse).
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut frame = vec![if fin { 0x80 } else { 0 } | opcode];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => frame.push(mask_bit | n as u8),
        n @ 126..=65535 => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(mask_bit | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            frame.extend_from_slice(&key);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => frame.extend_from_slice(payload),
    }
    frame
}

/// The upgrade request for `path` offering `protocols` (none: no Sec-WebSocket-Protocol).
pub fn upgrade_request(path: &str, protocols: &[&str]) -> Vec<u8> {
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    if !protocols.is_empty() {
        request.push_str(&format!("Sec-WebSocket-Protocol: {}\r\n", protocols.join(", ")));
    }
    request.push_str("\r\n");
    request.into_bytes()
}

/// `Sec-WebSocket-Accept` for the key [`upgrade_request`] sends (RFC 6455 1.3's example).
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Reads an HTTP response head (to the blank line) and returns it with the bytes after it.
pub fn read_response(stream: &mut TcpStream) -> io::Result<(String, Vec<u8>)> {
    stream.set_read_timeout(Some(timeout()))?;
    let deadline = Instant::now() + timeout();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end + 4]).into_owned();
            return Ok((head, got[end + 4..].to_vec()));
        }
        if Instant::now() > deadline {
            return Err(io::ErrorKind::TimedOut.into());
        }
        match stream.read(&mut buf)? {
            0 => {
                let so_far = String::from_utf8_lossy(&got).into_owned();
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, so_far));
            }
            n => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Opens the WebSocket: sends the upgrade request, checks the 101 answer (accept value and
/// the `mqtt` subprotocol). Returns bytes that came after the answer.
pub fn open(stream: &mut TcpStream, path: &str) -> Vec<u8> {
    stream.write_all(&upgrade_request(path, &["mqtt"])).expect("send the upgrade request");
    let (head, rest) = read_response(stream).expect("the upgrade answer");
    assert!(head.starts_with("HTTP/1.1 101 "), "upgrade refused: {head}");
    assert!(head.contains(&format!("Sec-WebSocket-Accept: {ACCEPT}\r\n")), "{head}");
    assert!(head.contains("Sec-WebSocket-Protocol: mqtt\r\n"), "{head}");
    rest
}

/// Server frames in, MQTT bytes out; MQTT bytes in, masked client frames out.
#[derive(Debug, Default)]
pub struct Framing {
    /// Bytes of an incomplete server frame.
    raw: Vec<u8>,
    /// The close frame's status code once one arrived (`Some(None)`: a close without code).
    pub close: Option<Option<u16>>,
    /// Frames other than binary and close, in order (pings, text: a test may check for none).
    pub others: Vec<Frame>,
    /// Client frames carry at most this many payload bytes (0: no limit): one packet spans
    /// several frames.
    pub split: usize,
    counter: u32,
}

impl Framing {
    /// `bytes` as masked binary frames (several if `split` says so).
    pub fn wrap(&mut self, bytes: &[u8]) -> Vec<u8> {
        let size = if self.split == 0 { bytes.len().max(1) } else { self.split };
        let mut out = Vec::new();
        for chunk in bytes.chunks(size) {
            self.counter = self.counter.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            out.extend(client_frame(true, BINARY, chunk, Some(self.counter.to_be_bytes())));
        }
        out
    }

    /// Takes raw bytes from the socket; appends complete binary frames' payloads to `mqtt`.
    pub fn unwrap(&mut self, input: &[u8], mqtt: &mut Vec<u8>) {
        self.raw.extend_from_slice(input);
        while let Some((frame, used)) = parse_server_frame(&self.raw) {
            self.raw.drain(..used);
            match frame.opcode {
                BINARY | CONTINUATION => mqtt.extend_from_slice(&frame.payload),
                CLOSE => {
                    let code = (frame.payload.len() >= 2)
                        .then(|| u16::from_be_bytes([frame.payload[0], frame.payload[1]]));
                    self.close = Some(code);
                }
                _ => self.others.push(frame),
            }
        }
    }
}

/// One complete server frame at the start of `raw` and its size. Panics on a masked server
/// frame (RFC 6455 5.1: a client must fail such a connection; here, the test).
pub fn parse_server_frame(raw: &[u8]) -> Option<(Frame, usize)> {
    let (&b0, &b1) = (raw.first()?, raw.get(1)?);
    assert_eq!(b1 & 0x80, 0, "the server masked a frame: {:02x?}", &raw[..2]);
    assert_eq!(b0 & 0x70, 0, "the server set RSV bits: {b0:#04x}");
    let (len, header) = match b1 & 0x7F {
        126 => (u16::from_be_bytes([*raw.get(2)?, *raw.get(3)?]) as usize, 4),
        127 => {
            let bytes: [u8; 8] = raw.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(bytes) as usize, 10)
        }
        n => (n as usize, 2),
    };
    let payload = raw.get(header..header + len)?.to_vec();
    Some((Frame { fin: b0 & 0x80 != 0, opcode: b0 & 0x0F, payload }, header + len))
}

/// Reads whole server frames until `want` of them arrived or the connection ends; returns
/// them and whether the connection ended (EOF or reset). `raw` holds the bytes of a frame not
/// complete yet, from one call to the next (start with what came after the 101 answer).
pub fn read_frames(stream: &mut TcpStream, raw: &mut Vec<u8>, want: usize) -> (Vec<Frame>, bool) {
    stream.set_read_timeout(Some(timeout())).expect("set_read_timeout");
    let deadline = Instant::now() + timeout();
    let mut frames = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        while let Some((frame, used)) = parse_server_frame(raw) {
            raw.drain(..used);
            frames.push(frame);
        }
        if frames.len() >= want || Instant::now() > deadline {
            return (frames, false);
        }
        match stream.read(&mut buf) {
            Ok(0) => return (frames, true),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return (frames, true),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("read failed: {e}"),
        }
    }
}
