//! The HTTP side of the event loop (`[http]`): `/metrics`, `/health` and the status page (`/`
//! and `/api/v1/status`), served by the same mio loop as MQTT, without threads.
//!
//! Contract: this file owns the HTTP sockets; what is answered is `routes.rs` (a response is a
//! value built from the broker's state), the Prometheus text is `metrics.rs`, and requests are
//! parsed by `httparse` (a vetted parser, never a hand-written one); the status page and its
//! JSON are `status.rs` (written by `json.rs`). One request per
//! connection: the response says `Connection: close`, the write side is shut after it, and the
//! connection goes when the client closes or its time is up.
//!
//! Bounded against hostile or broken clients: at most `http.max_connections` open (more are
//! closed at accept), a request head of at most `http.max_request_size` bytes (more: 431 and
//! close), and `http.timeout` from accept to the end (a client that trickles its headers, never
//! finishes them, or never reads the answer is closed). Garbage gets 400. Nothing a client sends
//! allocates more than `max_request_size`; nothing here blocks the loop. With no HTTP
//! connection open there is no deadline, so an idle broker still never wakes.

mod json;
mod metrics;
mod routes;
mod status;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Instant;

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use crate::broker::{Broker, Load, Process};
use crate::config::HttpConfig;
use routes::{Context, Response, ResponseCache};

/// Headers parsed per request; a request with more gets 431.
const MAX_HEADERS: usize = 32;
/// Bytes read per `read` call (the head is capped separately by `max_request_size`).
const READ_CHUNK: usize = 4096;

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the whole request head.
    ReadRequest,
    /// Writing the response.
    WriteResponse,
    /// Response written and the write side shut: waiting for the client to close.
    AwaitClose,
}

struct HttpConn {
    socket: TcpStream,
    peer: SocketAddr,
    phase: Phase,
    rx: Vec<u8>,
    tx: Vec<u8>,
    written: usize,
    deadline: Instant,
    write_interest: bool,
}

/// The HTTP listener and its connections. Tokens: the listener is `base`, connection `i` is
/// `base + 1 + i`.
pub struct HttpServer {
    listener: TcpListener,
    base: usize,
    conns: Vec<Option<HttpConn>>,
    config: HttpConfig,
    /// The status page's message rates (`status.rs`).
    rates: Load,
    /// Recent answers of the routes that walk every session (`routes.rs`).
    cache: ResponseCache,
}

impl HttpServer {
    /// Binds `config.bind` (which must be set) and registers it with tokens from `base` on.
    pub fn bind(config: &HttpConfig, registry: &Registry, base: usize) -> io::Result<HttpServer> {
        let addr = config.bind.ok_or_else(|| io::Error::other("http.bind is not set"))?;
        let mut listener = TcpListener::bind(addr).map_err(|e| {
            io::Error::new(e.kind(), format!("http.bind: cannot listen on {addr}: {e}"))
        })?;
        registry.register(&mut listener, Token(base), Interest::READABLE)?;
        Ok(HttpServer {
            listener,
            base,
            conns: std::iter::repeat_with(|| None).take(config.max_connections).collect(),
            config: config.clone(),
            rates: Load::starting_at(Instant::now()),
            cache: ResponseCache::default(),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Whether `token` is this server's.
    pub fn owns(&self, token: Token) -> bool {
        token.0 >= self.base && token.0 <= self.base + self.conns.len()
    }

    /// The earliest connection deadline (none without connections).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.conns.iter().flatten().map(|c| c.deadline).min()
    }

    /// A readiness event on one of this server's tokens.
    pub fn ready(&mut self, token: Token, registry: &Registry, broker: &Broker, now: Instant) {
        if token.0 == self.base {
            self.accept(registry, now);
            return;
        }
        let index = token.0 - self.base - 1;
        self.serve(index, registry, broker, now);
    }

    /// Closes every connection whose time is up.
    pub fn expire(&mut self, registry: &Registry, now: Instant) {
        for index in 0..self.conns.len() {
            let expired = self.conns[index].as_ref().is_some_and(|c| c.deadline <= now);
            if expired {
                if let Some(conn) = &self.conns[index] {
                    if conn.phase == Phase::ReadRequest {
                        log::info!(
                            "http: {} sent no complete request within {:?}; closing",
                            conn.peer,
                            self.config.timeout
                        );
                    }
                }
                self.close(index, registry);
            }
        }
    }

    fn accept(&mut self, registry: &Registry, now: Instant) {
        loop {
            let (mut socket, peer) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("http: accept failed: {e}");
                    return;
                }
            };
            let Some(index) = self.conns.iter().position(Option::is_none) else {
                log::info!(
                    "http: {peer} refused: http.max_connections ({}) are open",
                    self.conns.len()
                );
                continue; // Dropping the socket closes it.
            };
            let token = Token(self.base + 1 + index);
            if let Err(e) = registry.register(&mut socket, token, Interest::READABLE) {
                log::warn!("http: {peer}: cannot register socket: {e}");
                continue;
            }
            log::debug!("http: {peer} connected");
            self.conns[index] = Some(HttpConn {
                socket,
                peer,
                phase: Phase::ReadRequest,
                rx: Vec::new(),
                tx: Vec::new(),
                written: 0,
                deadline: now + self.config.timeout,
                write_interest: false,
            });
        }
    }

    /// Reads what there is, answers a complete request, writes what the socket takes.
    fn serve(&mut self, index: usize, registry: &Registry, broker: &Broker, now: Instant) {
        let max_request = self.config.max_request_size;
        let Some(conn) = self.conns.get_mut(index).and_then(Option::as_mut) else { return };
        let mut chunk = [0u8; READ_CHUNK];
        // Edge-triggered: read until WouldBlock, whatever the phase.
        loop {
            match conn.socket.read(&mut chunk) {
                Ok(0) => {
                    // The client closed (or half-closed before its request was complete).
                    if conn.phase != Phase::WriteResponse {
                        return self.close(index, registry);
                    }
                    break;
                }
                Ok(n) => {
                    if conn.phase != Phase::ReadRequest {
                        continue; // Anything after the request is ignored.
                    }
                    let room = max_request.saturating_sub(conn.rx.len());
                    conn.rx.extend_from_slice(&chunk[..n.min(room)]);
                    let overflow = n > room;
                    let state = (&mut self.rates, &mut self.cache);
                    let answer = parse(&conn.rx, max_request, overflow, broker, state, now);
                    if let Some(response) = answer {
                        conn.queue(response);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("http: {}: {e}", conn.peer);
                    return self.close(index, registry);
                }
            }
        }
        if conn.phase == Phase::WriteResponse {
            match conn.write() {
                Ok(true) => {
                    // All written: no more output, the client closes when it has read it.
                    let _ = conn.socket.shutdown(Shutdown::Write);
                    conn.phase = Phase::AwaitClose;
                    conn.tx = Vec::new();
                    conn.set_write_interest(registry, index + 1 + self.base, false);
                }
                Ok(false) => conn.set_write_interest(registry, index + 1 + self.base, true),
                Err(e) => {
                    log::debug!("http: {}: write failed: {e}", conn.peer);
                    self.close(index, registry);
                }
            }
        }
    }

    fn close(&mut self, index: usize, registry: &Registry) {
        if let Some(mut conn) = self.conns.get_mut(index).and_then(Option::take) {
            let _ = registry.deregister(&mut conn.socket);
            log::debug!("http: {} closed", conn.peer);
        }
    }
}

impl HttpConn {
    fn queue(&mut self, response: (Response, bool)) {
        let (response, head_only) = response;
        log::debug!("http: {} -> {}", self.peer, response.status);
        self.tx = response.encode(head_only);
        self.rx = Vec::new();
        self.phase = Phase::WriteResponse;
    }

    /// Writes until done (true) or the socket is full (false).
    fn write(&mut self) -> io::Result<bool> {
        while let Some(rest) = self.tx.get(self.written..).filter(|r| !r.is_empty()) {
            match self.socket.write(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn set_write_interest(&mut self, registry: &Registry, token: usize, on: bool) {
        if self.write_interest == on {
            return;
        }
        let interest =
            if on { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
        if registry.reregister(&mut self.socket, Token(token), interest).is_ok() {
            self.write_interest = on;
        }
    }
}

/// The answer to the request head in `rx`, once there is one: the route's response for a
/// complete request, 400 for bytes that are not HTTP, 431 for a head over `max_request` bytes
/// (`overflow`: more arrived than fit) or with too many headers. `None`: wait for more.
fn parse(
    rx: &[u8],
    max_request: usize,
    overflow: bool,
    broker: &Broker,
    (rates, cache): (&mut Load, &mut ResponseCache),
    now: Instant,
) -> Option<(Response, bool)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(rx) {
        Ok(httparse::Status::Complete(_)) => {
            let method = request.method.unwrap_or_default();
            let path = request.path.unwrap_or_default();
            let mut context = Context { broker, now, process: process_figures(), rates, cache };
            Some((routes::respond(method, path, &mut context), method == "HEAD"))
        }
        Ok(httparse::Status::Partial) if overflow || rx.len() >= max_request => {
            Some((Response::text(431, "request head too large\n"), false))
        }
        Ok(httparse::Status::Partial) => None,
        Err(httparse::Error::TooManyHeaders) => {
            Some((Response::text(431, "too many headers\n"), false))
        }
        Err(e) => Some((Response::text(400, format!("bad request: {e}\n")), false)),
    }
}

/// What `/proc` says of this process now (for `$SYS` and `/metrics`).
pub fn process_figures() -> Process {
    Process { rss_bytes: rss_bytes() }
}

/// `VmRSS` of `/proc/self/status`, in bytes.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::Limits;
    use crate::config::{Durability, SqliteConfig};
    use crate::store::Store;

    /// A broker on an in-memory store, for the route tests too.
    pub(super) fn broker() -> Broker {
        let config = SqliteConfig { durability: Durability::Memory, ..SqliteConfig::default() };
        let store = Store::open(std::path::Path::new("unused"), config).unwrap();
        Broker::new(Limits::default(), store)
    }

    fn status(rx: &[u8], max: usize, overflow: bool) -> Option<u16> {
        let state = (&mut Load::default(), &mut ResponseCache::default());
        parse(rx, max, overflow, &broker(), state, Instant::now()).map(|(r, _)| r.status)
    }

    #[test]
    fn requests_are_answered_once_their_head_is_complete() {
        assert_eq!(status(b"GET /health HTTP/1.1\r\nHost: x\r\n", 8192, false), None);
        assert_eq!(status(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", 8192, false), Some(200));
        assert_eq!(status(b"GET /metrics HTTP/1.0\r\n\r\n", 8192, false), Some(200));
        assert_eq!(status(b"GET /nope HTTP/1.1\r\n\r\n", 8192, false), Some(404));
        assert_eq!(status(b"PUT /health HTTP/1.1\r\n\r\n", 8192, false), Some(405));
        let state = (&mut Load::default(), &mut ResponseCache::default());
        let head =
            parse(b"HEAD /health HTTP/1.1\r\n\r\n", 8192, false, &broker(), state, Instant::now());
        assert!(head.is_some_and(|(r, head_only)| r.status == 200 && head_only));
    }

    #[test]
    fn garbage_oversized_heads_and_header_floods_are_refused() {
        assert_eq!(status(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c", 8192, false), Some(400));
        assert_eq!(status(b"GET /health HTTP/1.1\r\nHost x\r\n\r\n", 8192, false), Some(400));
        // The head reached the cap without ending, or more arrived than the cap.
        let mut long = b"GET /health HTTP/1.1\r\nX: ".to_vec();
        long.resize(1024, b'a');
        assert_eq!(status(&long, 1024, false), Some(431));
        assert_eq!(status(&long[..100], 1024, true), Some(431));
        let mut many = b"GET /health HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(status(&many, 8192, false), Some(431));
    }

    #[test]
    fn rss_is_read_from_proc() {
        // Linux (and qemu-user, which shows the emulated process's figures).
        let rss = rss_bytes().expect("VmRSS");
        assert!(rss > 100 * 1024, "{rss}");
    }
}
