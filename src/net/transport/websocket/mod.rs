//! MQTT over WebSockets (RFC 6455, MQTT 5.0 chapter 6 / 3.1.1 section 6) over a plain or TLS
//! transport: `ws` and `wss` listeners.
//!
//! Contract: a [`WsStream`] wraps the connection's underlying [`Transport`] (TCP, or TLS for
//! `wss`) and has the same non-blocking semantics as every transport (see `transport/mod.rs`).
//! It only turns client frames into the MQTT byte stream and that byte stream into binary
//! frames; the codec and the broker never learn a client came over WebSocket.
//! - `ExpectRequest`: the HTTP upgrade request is read into a buffer of at most
//!   [`handshake::REQUEST_LIMIT`] bytes (grown with what arrives); a bad request is answered
//!   with an HTTP error and the connection ends (`InvalidData`). No deadline of its own: the
//!   connection waits for its CONNECT from accept on, so `mqtt.connect_timeout` ends a
//!   handshake that never finishes, and it counts against `mqtt.max_pending_connections`
//!   meanwhile, exactly like a TLS handshake.
//! - `Open`: frames are decoded in place in the loop's read buffer ([`frame::Decoder`]), with
//!   no per-message buffer: a packet split over frames is joined by the MQTT decoder as if it
//!   had come in several TCP reads. Pings are answered (only the latest unanswered one, RFC
//!   6455 5.5.2), a close frame is answered and ends the stream (`Ok(0)`), a frame that breaks
//!   the rules is answered with a close frame carrying its code, then `InvalidData`.
//! - Output: each `write` becomes one binary frame; frames wait in an output buffer of at most
//!   [`WS_BUFFER_LIMIT`] bytes (plus one pong and one close frame, 127 bytes each).
//! - Closing: [`WsStream::close`] sends a close frame (1000) unless one was sent already.

pub mod frame;
pub mod handshake;

use std::io;
use std::rc::Rc;

use mio::net::TcpStream;

use super::Transport;
use frame::{CloseCode, Control, Decoder};

/// This build speaks WebSocket.
pub const AVAILABLE: bool = true;

/// Most bytes of framed output a connection holds beyond what the socket took.
pub const WS_BUFFER_LIMIT: usize = 64 * 1024;
/// Output buffers larger than this are released once written.
const KEEP_OUT_CAPACITY: usize = 16 * 1024;

/// Why the WebSocket layer ended a connection (an `InvalidData` error's payload), so the loop
/// can tell it from a TLS failure under it.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn refused(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, Refused(why))
}

/// Whether `error` is the WebSocket layer refusing a peer (a bad handshake or frame).
pub fn is_refusal(error: &io::Error) -> bool {
    error.get_ref().is_some_and(|inner| inner.is::<Refused>())
}

/// What a `ws`/`wss` listener's connections need to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsSettings {
    /// The HTTP path that is upgraded (`listeners.NAME.path`).
    pub path: String,
    /// Longest frame and longest fragmented message (`mqtt.max_packet_size`).
    pub max_message: u64,
}

fn inner_short_read_drains(inner: &Transport) -> bool {
    matches!(inner, Transport::Tcp(_))
}

/// What the stream waits for.
enum State {
    /// The HTTP upgrade request; the bytes so far.
    ExpectRequest { request: Vec<u8> },
    /// Frames.
    Open,
}

/// One WebSocket connection over a plain or TLS transport.
pub struct WsStream {
    inner: Transport,
    settings: Rc<WsSettings>,
    state: State,
    decoder: Decoder,
    /// Frames (and the handshake answer) not yet taken by `inner`; `out[written..]` is pending.
    out: Vec<u8>,
    written: usize,
    /// The answer to the latest ping not yet answered.
    pong: Option<Vec<u8>>,
    /// A close frame is in `out` (or written): no more data frames.
    close_sent: bool,
    /// The peer sent a close frame: reads return `Ok(0)`.
    peer_closed: bool,
    /// The last read of a plain TCP `inner` returned less than the buffer: the socket was
    /// drained then (see [`WsStream::short_read_drains`]).
    inner_drained: bool,
}

impl WsStream {
    /// A server-side stream over a freshly accepted transport (plain, or TLS for `wss`).
    /// Never fails in this build (the signature is shared with the build without WebSocket).
    pub fn accept(inner: Transport, settings: Rc<WsSettings>) -> io::Result<WsStream> {
        let decoder = Decoder::new(settings.max_message);
        Ok(WsStream {
            inner,
            settings,
            state: State::ExpectRequest { request: Vec::new() },
            decoder,
            out: Vec::new(),
            written: 0,
            pong: None,
            close_sent: false,
            peer_closed: false,
            inner_drained: false,
        })
    }

    pub fn socket(&self) -> &TcpStream {
        self.inner.socket()
    }

    /// After a read: whether it proved the socket drained. Our answer is always shorter than
    /// what the socket gave (frame headers), so the loop cannot tell from its length; a short
    /// read of a plain TCP socket under us can (TLS cannot, see `Transport`).
    pub fn short_read_drains(&self) -> bool {
        self.inner_drained
    }

    pub fn socket_mut(&mut self) -> &mut TcpStream {
        self.inner.socket_mut()
    }

    pub fn take_identity(&mut self) -> Option<Rc<str>> {
        self.inner.take_identity()
    }

    /// MQTT bytes from the peer's frames; see the module documentation.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.peer_closed || self.decoder.is_closed() {
                return Ok(0);
            }
            self.inner_drained = false;
            let n = self.inner.read(buf)?;
            self.inner_drained = n < buf.len() && inner_short_read_drains(&self.inner);
            if n == 0 {
                return Ok(0);
            }
            let end = match self.state {
                State::ExpectRequest { .. } => match self.handshake(buf, n)? {
                    Some(leftover) => leftover,
                    None => continue,
                },
                State::Open => n,
            };
            let data = self.decode(buf.get_mut(..end).unwrap_or_default())?;
            if data > 0 || self.peer_closed {
                return Ok(data);
            }
        }
    }

    /// Feeds `buf[..n]` to the upgrade request. `Some(len)`: the handshake is done and the
    /// bytes after the request (frames sent without waiting for our answer) are at `buf[..len]`.
    fn handshake(&mut self, buf: &mut [u8], n: usize) -> io::Result<Option<usize>> {
        let State::ExpectRequest { request } = &mut self.state else { return Ok(Some(n)) };
        let room = handshake::REQUEST_LIMIT.saturating_sub(request.len());
        let take = n.min(room);
        request.extend_from_slice(buf.get(..take).unwrap_or_default());
        let upgrade = match handshake::parse(request, &self.settings.path) {
            Ok(Some(upgrade)) => upgrade,
            Ok(None) => return Ok(None),
            Err(refusal) => {
                self.state = State::ExpectRequest { request: Vec::new() };
                self.out.extend_from_slice(&refusal.response());
                self.close_sent = true;
                let _ = self.flush();
                return Err(refused(format!("WebSocket handshake refused with {refusal}")));
            }
        };
        let request = match std::mem::replace(&mut self.state, State::Open) {
            State::ExpectRequest { request } => request,
            State::Open => Vec::new(),
        };
        // The request's tail that is not part of it, then what was not appended, moved to
        // the front of `buf` (the tail is shorter than `take`, so nothing is overwritten
        // before it is moved).
        let tail = request.get(upgrade.consumed..).unwrap_or_default();
        let (tail_len, rest) = (tail.len(), n - take);
        buf.copy_within(take..n, tail_len);
        buf.get_mut(..tail_len).unwrap_or_default().copy_from_slice(tail);
        self.out.extend_from_slice(&upgrade.response);
        match self.flush() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(Some(tail_len + rest))
    }

    /// Decodes frames in `buf` in place; returns the MQTT bytes now at its front.
    fn decode(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (mut out, mut pos) = (0, 0);
        loop {
            let progress = match self.decoder.decode(buf, out, pos) {
                Ok(progress) => progress,
                Err(error) => {
                    self.queue_close(error.close_code().value());
                    let _ = self.flush();
                    let code = error.close_code().value();
                    return Err(refused(format!("WebSocket: {error}; closed with code {code}")));
                }
            };
            out = progress.out;
            pos = progress.pos;
            match progress.control {
                None => return Ok(out),
                Some(Control::Ping(payload)) => self.pong = Some(payload.as_slice().to_vec()),
                Some(Control::Pong) => {}
                Some(Control::Close { code }) => {
                    // Echo the code (RFC 6455 5.5.1); a close without one gets 1000.
                    self.queue_close(code.unwrap_or(CloseCode::Normal.value()));
                    self.peer_closed = true;
                    return Ok(out);
                }
            }
        }
    }

    fn queue_close(&mut self, code: u16) {
        if !self.close_sent && matches!(self.state, State::Open) {
            self.pong = None;
            frame::close_frame(code, &mut self.out);
            self.close_sent = true;
        }
    }

    /// Frames MQTT bytes into one binary frame (as many as fit in the output buffer).
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.close_sent || !matches!(self.state, State::Open) {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "WebSocket is not open"));
        }
        // Older frames first, so the buffer has room.
        let drained = self.flush_out()?;
        if buf.is_empty() {
            return Ok(0);
        }
        let pending = self.out.len() - self.written;
        let room = WS_BUFFER_LIMIT.saturating_sub(pending + frame::MAX_SERVER_HEADER);
        let take = buf.len().min(room);
        if take == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let (header, header_len) = frame::binary_header(take);
        self.out.reserve(header_len + take);
        self.out.extend_from_slice(header.get(..header_len).unwrap_or_default());
        self.out.extend_from_slice(buf.get(..take).unwrap_or_default());
        if drained {
            match self.flush_out() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(take)
    }

    /// Writes our frames to `inner` until none is left (`true`) or it is full (`false`); a
    /// pending pong goes out once the frames before it are written.
    fn flush_out(&mut self) -> io::Result<bool> {
        loop {
            while self.written < self.out.len() {
                let pending = self.out.get(self.written..).unwrap_or_default();
                match self.inner.write(pending) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => self.written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if self.written > 0 {
                            self.out.drain(..self.written);
                            self.written = 0;
                        }
                        return Ok(false);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.written = 0;
            if self.out.capacity() > KEEP_OUT_CAPACITY {
                self.out = Vec::new();
            } else {
                self.out.clear();
            }
            match self.pong.take() {
                Some(payload) if !self.close_sent => {
                    frame::control_frame(frame::opcode::PONG, &payload, &mut self.out);
                }
                _ => return Ok(true),
            }
        }
    }

    /// Writes what this stream and the transport under it hold; `Ok(false)` if some is left.
    pub fn flush(&mut self) -> io::Result<bool> {
        let ours = self.flush_out()?;
        let theirs = self.inner.flush()?;
        Ok(ours && theirs)
    }

    pub fn wants_write(&self) -> bool {
        self.written < self.out.len() || self.pong.is_some() || self.inner.wants_write()
    }

    /// A close frame (1000) unless one was sent, best effort; then the transport's own close.
    pub fn close(&mut self) {
        self.queue_close(CloseCode::Normal.value());
        let _ = self.flush();
        self.inner.close();
    }
}

#[cfg(test)]
mod tests;
