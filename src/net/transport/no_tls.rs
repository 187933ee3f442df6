//! Stand-in for `tls.rs` in a build without the `tls` feature: the same names, but no value of
//! [`TlsStream`] can exist, and loading a configuration says the build has no TLS. The loop's
//! `match` arms over TLS transports compile and are unreachable by construction.

use std::io;
use std::path::PathBuf;
use std::rc::Rc;

use mio::net::TcpStream;

use super::TlsError;
use crate::config::ListenerTls;

/// This build does not speak TLS.
pub const AVAILABLE: bool = false;

/// An empty enum: no value exists.
enum Never {}

fn not_built(key: &str) -> TlsError {
    TlsError {
        key: key.to_string(),
        file: None,
        reason: "this edgemq was built without TLS (cargo feature `tls`)".to_string(),
    }
}

pub struct TlsServer {
    never: Never,
}

impl TlsServer {
    pub fn load(prefix: &str, _files: &ListenerTls) -> Result<TlsServer, TlsError> {
        Err(not_built(&format!("{prefix}.kind")))
    }

    pub fn reload(&mut self) -> Result<(), TlsError> {
        match self.never {}
    }

    pub fn files(&self) -> &ListenerTls {
        match self.never {}
    }

    pub fn accept(&self, _socket: TcpStream) -> io::Result<TlsStream> {
        match self.never {}
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsClientSettings {
    pub prefix: String,
    pub cafile: Option<PathBuf>,
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
}

pub struct TlsClient {
    never: Never,
}

impl TlsClient {
    pub fn load(settings: &TlsClientSettings) -> Result<TlsClient, TlsError> {
        Err(not_built(&settings.prefix))
    }

    pub fn connect(&self, _socket: TcpStream, _host: &str) -> io::Result<TlsStream> {
        match self.never {}
    }
}

pub struct TlsStream {
    never: Never,
}

impl TlsStream {
    pub fn socket(&self) -> &TcpStream {
        match self.never {}
    }

    pub fn socket_mut(&mut self) -> &mut TcpStream {
        match self.never {}
    }

    pub fn is_established(&self) -> bool {
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

    pub fn take_identity(&mut self) -> Option<Rc<str>> {
        match self.never {}
    }

    pub fn close_notify(&mut self) {
        match self.never {}
    }
}
