//! Stand-in for `websocket/` in a build without the `websocket` feature: the same names, but
//! no value of [`WsStream`] can exist (a `ws`/`wss` listener is refused at start-up, see
//! `net::plan_listeners`), so the loop's `match` arms over WebSocket transports compile and are
//! unreachable by construction.

use std::io;
use std::rc::Rc;

use mio::net::TcpStream;

use super::Transport;

/// This build does not speak WebSocket.
pub const AVAILABLE: bool = false;

/// The same settings as with the feature, so the listener plan is built alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsSettings {
    pub path: String,
    pub max_message: u64,
}

/// Never: this build has no WebSocket layer to refuse anything.
pub fn is_refusal(_error: &io::Error) -> bool {
    false
}

/// An empty enum: no value exists.
enum Never {}

pub struct WsStream {
    never: Never,
}

impl WsStream {
    pub fn accept(_inner: Transport, _settings: Rc<WsSettings>) -> io::Result<WsStream> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "built without WebSocket"))
    }

    pub fn socket(&self) -> &TcpStream {
        match self.never {}
    }

    pub fn socket_mut(&mut self) -> &mut TcpStream {
        match self.never {}
    }

    pub fn take_identity(&mut self) -> Option<Rc<str>> {
        match self.never {}
    }

    pub fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        match self.never {}
    }

    pub fn write(&mut self, _buf: &[u8]) -> io::Result<usize> {
        match self.never {}
    }

    pub fn flush(&mut self) -> io::Result<bool> {
        match self.never {}
    }

    pub fn wants_write(&self) -> bool {
        match self.never {}
    }

    pub fn short_read_drains(&self) -> bool {
        match self.never {}
    }

    pub fn close(&mut self) {
        match self.never {}
    }
}
