//! How bytes reach a connection: plain TCP, TLS, or WebSocket frames over either.
//!
//! Contract: a connection owns one [`Transport`]; above it everything reads and writes the same
//! MQTT byte stream, so the codec and the broker never learn which transport a client used.
//! The semantics are those of a non-blocking socket, so the event loop drives every kind alike:
//! - [`Transport::read`] gives plaintext, `Ok(0)` at the end, `WouldBlock` when the socket has
//!   nothing more (a TLS handshake in progress included: its answers are queued, see
//!   `wants_write`), `InvalidData` when the peer spoke something else than the transport
//!   expects (garbage or plain MQTT on a TLS port; one log line and the connection goes).
//! - [`Transport::write`] takes plaintext, possibly fewer bytes than given, `WouldBlock` when
//!   nothing more fits; [`Transport::flush`] writes what the transport itself still holds
//!   (TLS records), and [`Transport::wants_write`] says whether it holds any. The loop keeps
//!   WRITABLE interest while either it or the transport has output.
//! - Everything is bounded, before and after the handshake. Outgoing: plaintext waiting to be
//!   encrypted and records waiting for the socket, [`TLS_BUFFER_LIMIT`] each
//!   (`set_buffer_limit`). Incoming, by rustls itself (0.23): the record buffer grows 4 KB at a
//!   time to one record (about 18 KB), or to 64 KB while a handshake message spans records
//!   (a larger one fails the handshake); decrypted plaintext not yet read, 16 KB (the loop reads
//!   it out at once). A handshake that never finishes is ended by the broker's connect timeout,
//!   since a connection becomes a client only with its CONNECT, and counts against
//!   `mqtt.max_pending_connections` meanwhile (no rustls state exists before admission).
//!
//! The TLS implementation (rustls, `ring` provider) lives in `tls.rs` behind the `tls` cargo
//! feature; without it `no_tls.rs` stands in with types that cannot be built, so the loop and
//! this file have no `#[cfg]` of their own beyond the lines below. WebSocket (`websocket/`,
//! feature `websocket`, stand-in `no_websocket.rs`) is the same: a [`WsStream`] wraps a TCP or
//! TLS transport (`ws`, `wss`) and keeps these semantics, so it composes with TLS instead of
//! knowing about it.

#[cfg(feature = "tls")]
mod tls;
#[cfg(not(feature = "tls"))]
#[path = "no_tls.rs"]
mod tls;
// Public for the fuzz targets (`fuzz/src/websocket.rs`): the handshake and frame codec.
#[cfg(feature = "websocket")]
pub mod websocket;
#[cfg(not(feature = "websocket"))]
#[path = "no_websocket.rs"]
pub mod websocket;

use std::io::{self, Read, Write};
use std::net::Shutdown;

use mio::net::TcpStream;

pub use tls::{TlsClient, TlsClientSettings, TlsServer, TlsStream, AVAILABLE as TLS_AVAILABLE};
pub use websocket::{
    is_refusal as is_websocket_refusal, WsSettings, WsStream, AVAILABLE as WEBSOCKET_AVAILABLE,
};

/// Most bytes rustls buffers per connection and direction (plaintext waiting to be encrypted,
/// decrypted plaintext not yet read).
pub const TLS_BUFFER_LIMIT: usize = 64 * 1024;

/// Why TLS material could not be loaded: one line naming the config key and the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    /// The config key that names the file (`listeners.NAME.certfile`), or what is configured.
    pub key: String,
    /// The file, when one is at fault.
    pub file: Option<std::path::PathBuf>,
    pub reason: String,
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}: {}: {}", self.key, file.display(), self.reason),
            None => write!(f, "{}: {}", self.key, self.reason),
        }
    }
}

impl std::error::Error for TlsError {}

/// The byte stream of one connection.
pub enum Transport {
    Tcp(TcpStream),
    /// Boxed: a rustls connection is a few KB, a plain TCP one a file descriptor.
    Tls(Box<TlsStream>),
    /// WebSocket frames over a `Tcp` or `Tls` transport (`ws`, `wss` listeners).
    Ws(Box<WsStream>),
}

impl Transport {
    /// The socket, for mio registration, shutdown and the peer address.
    pub fn socket_mut(&mut self) -> &mut TcpStream {
        match self {
            Transport::Tcp(stream) => stream,
            Transport::Tls(tls) => tls.socket_mut(),
            Transport::Ws(ws) => ws.socket_mut(),
        }
    }

    pub fn socket(&self) -> &TcpStream {
        match self {
            Transport::Tcp(stream) => stream,
            Transport::Tls(tls) => tls.socket(),
            Transport::Ws(ws) => ws.socket(),
        }
    }

    /// Plaintext from the peer; see the module documentation.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(stream) => stream.read(buf),
            Transport::Tls(tls) => tls.read(buf),
            Transport::Ws(ws) => ws.read(buf),
        }
    }

    /// Takes plaintext to send; see the module documentation.
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(stream) => stream.write(buf),
            Transport::Tls(tls) => tls.write(buf),
            Transport::Ws(ws) => ws.write(buf),
        }
    }

    /// Writes what the transport itself holds (TLS records); `Ok(false)` if some is left
    /// because the socket is full.
    pub fn flush(&mut self) -> io::Result<bool> {
        match self {
            Transport::Tcp(_) => Ok(true),
            Transport::Tls(tls) => tls.flush(),
            Transport::Ws(ws) => ws.flush(),
        }
    }

    /// The transport holds output of its own (handshake messages, encrypted records).
    pub fn wants_write(&self) -> bool {
        match self {
            Transport::Tcp(_) => false,
            Transport::Tls(tls) => tls.wants_write(),
            Transport::Ws(ws) => ws.wants_write(),
        }
    }

    /// Asked right after a read that returned less than the buffer: whether that proves the
    /// socket is drained. True for TCP; not for TLS, where one record's plaintext can be short
    /// while more records wait in the socket, and edge-triggered readiness would not say so
    /// again; for WebSocket, whether the socket read under the frames was short (over TCP).
    pub fn short_read_drains(&self) -> bool {
        match self {
            Transport::Tcp(_) => true,
            Transport::Tls(_) => false,
            // Frame headers make the MQTT bytes fewer than the socket's: it knows whether
            // the socket read under it was short.
            Transport::Ws(ws) => ws.short_read_drains(),
        }
    }

    /// The verified client certificate's Common Name, once, right after the handshake.
    pub fn take_identity(&mut self) -> Option<std::rc::Rc<str>> {
        match self {
            Transport::Tcp(_) => None,
            Transport::Tls(tls) => tls.take_identity(),
            Transport::Ws(ws) => ws.take_identity(),
        }
    }

    /// Ends the stream: a WebSocket close frame and a TLS close_notify (best effort), then
    /// the write side of the socket.
    pub fn close(&mut self) {
        match self {
            Transport::Tcp(_) => {}
            Transport::Tls(tls) => tls.close_notify(),
            // Closes what it wraps too.
            Transport::Ws(ws) => return ws.close(),
        }
        let _ = self.socket().shutdown(Shutdown::Write);
    }

    /// Reads and discards raw socket bytes (before a close, so it does not turn into a reset).
    pub fn drain_socket(&mut self, scratch: &mut [u8]) {
        let socket = self.socket_mut();
        for _ in 0..16 {
            match socket.read(scratch) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }
}
