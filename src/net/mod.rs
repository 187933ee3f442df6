//! The event loop: the only user of mio and of sockets.
//!
//! One `mio::Poll` carries the listeners and every connection. Each pass: wait until a
//! socket is ready or the broker's next deadline; read every readable socket until
//! `WouldBlock` into one shared buffer and decode packets into `Broker::handle`; run due
//! timers; before a commit that is fsync'd for acknowledgements, read what arrives within a
//! tenth of an fsync (group commit, `gather_before_sync`); end the pass (store commit, held
//! acknowledgements); write all queued output with
//! one `write` per connection where possible. WRITABLE interest is registered only while a
//! connection has output the kernel or its transport would not take. The unwritten output of
//! all connections together is kept as a running total where buffers grow and shrink
//! (`Slots::output`), for the broker's global output budget (`mqtt.tx_buffer_total`).
//!
//! Listeners are plain TCP (`listener.bind`, `[listeners.NAME] kind = "tcp"`), TLS, or MQTT
//! over WebSockets over either (`ws`, `wss`); a connection owns its [`transport::Transport`],
//! so reading, decoding and flushing are the same for all. SIGHUP re-reads the TLS and WSS
//! listeners' certificate files.

mod admission;
mod connection;
pub mod http;
mod outbound;
pub mod transport;

pub use outbound::{plan_bridges, BridgePlan};

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::broker::output_budget::{self, Budget};
use crate::broker::{Broker, ConnId, Limits, ListenerId, Origin, Outbox, OutputTotal};
use crate::codec::{self, Packet, ProtocolVersion};
use crate::config::Config;
use crate::heap::{self, TrimPolicy};
use crate::log_limit::More;
use crate::slab::Slab;
use admission::Admission;
use connection::{Connection, Flush};
use transport::{TlsError, TlsServer, Transport, WsSettings, WsStream};

/// Size of the one read buffer shared by every connection.
pub const READ_BUFFER_SIZE: usize = 64 * 1024;
/// Bytes read from one connection in one pass before the others get their turn (and
/// everyone's output is written); the rest is read in the next pass.
const READ_BUDGET_PER_PASS: usize = 4 * READ_BUFFER_SIZE;
/// Connections accepted from one listener in one pass before the connected clients get their
/// turn; the rest of the kernel's queue (up to `listener.backlog`) is accepted in the next
/// passes, which do not wait for readiness. A reconnect storm of thousands thus goes in slices
/// of this many CONNECTs, each followed by reading and answering everyone already in.
const ACCEPT_PER_PASS: usize = 256;

/// One readiness event, copied out of mio's event list.
#[derive(Debug, Clone, Copy)]
struct Readiness {
    token: Token,
    readable: bool,
    /// The peer closed its side or the socket failed.
    closed: bool,
    writable: bool,
}

/// When a readable connection has been read enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadUntil {
    /// Until the socket says `WouldBlock`.
    WouldBlock,
    /// Until a read returns less than the buffer: a short TCP read means the receive queue was
    /// empty at that moment, and anything arriving later raises a new edge-triggered event.
    /// Saves the `WouldBlock` read, one system call per readable connection per pass.
    ShortRead,
}
/// Before an fsync'd commit the loop waits for more input up to this share of a typical
/// fsync (see [`EventLoop::gather_before_sync`]).
const GATHER_SHARE: u32 = 10;
/// ... in at most this many polls.
const GATHER_POLLS: usize = 32;
/// Extra connection slots beyond `max_connections`, so a client over the limit still gets a
/// CONNACK "server unavailable" instead of a bare reset.
pub const OVERFLOW_SLOTS: usize = 16;
/// Listener tokens live at the top of the token space, connections at the bottom.
const LISTENER_TOKEN_BASE: usize = usize::MAX - 64;
/// What [`EventLoop::run`] returns for SIGHUP: the caller reloads what it reloads (the auth
/// files) and calls `run` again; connections are untouched.
pub const RELOAD_SIGNAL: i32 = SIGHUP;

/// SIGTERM / SIGINT / SIGHUP arrive as readiness on this token.
const SIGNAL_TOKEN: Token = Token(LISTENER_TOKEN_BASE - 1);
/// The HTTP listener's token; its connections follow it (at most 1,024 of them), far above
/// any MQTT connection's slab index.
const HTTP_TOKEN_BASE: usize = LISTENER_TOKEN_BASE - 4096;

/// A listener to open: where, and what its clients get. Built from the config by
/// [`plan_listeners`], which reads the TLS files (so a bad one stops start-up, exit 2).
pub struct ListenerPlan {
    /// `listener.bind` or `listeners.NAME`, for log lines and errors.
    pub name: String,
    pub addr: SocketAddr,
    /// `None`: plain TCP.
    pub tls: Option<TlsServer>,
    /// `Some`: WebSocket frames over TCP or (with `tls`) TLS.
    pub websocket: Option<Rc<WsSettings>>,
    pub allow_anonymous: Option<bool>,
    pub use_identity_as_username: bool,
    /// `listener.backlog`, as configured (the kernel may cap it: see [`effective_backlog`]).
    pub backlog: u32,
}

impl ListenerPlan {
    /// `tcp`, `tls`, `ws` or `wss`.
    pub fn kind(&self) -> &'static str {
        match (self.tls.is_some(), self.websocket.is_some()) {
            (false, false) => "tcp",
            (true, false) => "tls",
            (false, true) => "ws",
            (true, true) => "wss",
        }
    }
}

/// Every listener of `config`: `listener.bind` (plain TCP) first, then the `[listeners.NAME]`
/// tables. TLS certificates and keys are read here; the error names the key and the file.
pub fn plan_listeners(config: &Config) -> Result<Vec<ListenerPlan>, TlsError> {
    let mut plans = Vec::with_capacity(config.listener.bind.len() + config.listeners.len());
    for addr in &config.listener.bind {
        plans.push(ListenerPlan {
            name: "listener.bind".to_string(),
            addr: *addr,
            tls: None,
            websocket: None,
            allow_anonymous: None,
            use_identity_as_username: false,
            backlog: config.listener.backlog,
        });
    }
    for named in &config.listeners {
        let prefix = format!("listeners.{}", named.name);
        let websocket = match &named.websocket {
            Some(_) if !transport::WEBSOCKET_AVAILABLE => {
                return Err(TlsError {
                    key: format!("{prefix}.kind"),
                    file: None,
                    reason: format!(
                        "\"{}\" needs WebSocket, and this edgemq was built without it (cargo \
                         feature `websocket`)",
                        named.kind.name()
                    ),
                })
            }
            Some(ws) => Some(Rc::new(WsSettings {
                path: ws.path.clone(),
                max_message: u64::from(config.mqtt.max_packet_size),
            })),
            None => None,
        };
        // The config guarantees TLS files exactly on `tls` and `wss` listeners.
        let tls = match &named.tls {
            Some(files) if named.kind.uses_tls() => Some(TlsServer::load(&prefix, files)?),
            Some(_) | None => None,
        };
        plans.push(ListenerPlan {
            name: prefix,
            addr: named.bind,
            use_identity_as_username: named
                .tls
                .as_ref()
                .is_some_and(|t| t.use_identity_as_username),
            tls,
            websocket,
            allow_anonymous: named.allow_anonymous,
            backlog: config.listener.backlog,
        });
    }
    Ok(plans)
}

/// A listening socket on `addr` with room for `backlog` connections not yet accepted (mio's
/// and std's `bind` fix 128): non-blocking, `SO_REUSEADDR` as mio sets it.
fn listen(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    // The kernel silently caps it at somaxconn; `i32::MAX` cannot be reached (<= 65535).
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(TcpListener::from_std(socket.into()))
}

/// The backlog the kernel grants a listener asked for `configured`: capped by
/// `/proc/sys/net/core/somaxconn` (when readable), and what that file said.
pub fn effective_backlog(configured: u32) -> (u32, Option<u32>) {
    let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    (somaxconn.map_or(configured, |cap| configured.min(cap)), somaxconn)
}

/// An open listening socket and what its connections get.
struct Listener {
    socket: TcpListener,
    plan: ListenerPlan,
}

pub struct EventLoop {
    poll: Poll,
    events: Events,
    /// (token, readable, writable) of this pass's events.
    ready: Vec<Readiness>,
    listeners: Vec<Listener>,
    sockets: Sockets,
    read_buffer: Box<[u8]>,
    signals: Signals,
    stop_signal: Option<i32>,
    /// SIGHUP arrived: `run` returns [`RELOAD_SIGNAL`] after this pass.
    reload_requested: bool,
    /// Listeners whose queue was not drained last pass (`ACCEPT_PER_PASS`): accepted from
    /// again in the next pass without waiting for an event (edge-triggered: none would come).
    accept_more: Vec<usize>,
    /// A connection with this much unwritten output is not read until it drains.
    output_limit: usize,
    /// ... nor one over its share of this budget for all connections (0: none).
    output_budget: usize,
    /// Outbound links to other brokers (`outbound.rs`).
    bridges: outbound::Bridges,
    /// Per-address and pending-connection limits, checked at accept; `net`'s log limits.
    admission: Admission,
    /// The `[http]` listener, if configured (`http/`).
    http: Option<http::HttpServer>,
    /// When to give the heap's free pages back after many connections have left (`heap.rs`).
    heap_trim: TrimPolicy,
    broker: Broker,
}

/// The connection slab: `ConnId` is the index; the limit is fixed at start-up, and the
/// table shrinks again when connections leave (see `slab.rs`).
struct Slots {
    table: Slab<Connection>,
    /// The unwritten output of every connection together: updated wherever an output buffer
    /// grows ([`Outbox::send`]), shrinks ([`Slots::flush`]) or goes ([`Slots::remove`]), and
    /// read by the broker and the read throttle (`mqtt.tx_buffer_total`).
    output: OutputTotal,
}

impl Slots {
    fn get_mut(&mut self, id: ConnId) -> Option<&mut Connection> {
        self.table.get_mut(id.0)
    }

    fn get(&self, id: ConnId) -> Option<&Connection> {
        self.table.get(id.0)
    }

    fn is_full(&self) -> bool {
        self.table.is_full()
    }

    fn insert(&mut self, connection: Connection) -> Option<ConnId> {
        self.table.insert(connection).map(ConnId)
    }

    fn remove(&mut self, id: ConnId) -> Option<Connection> {
        let connection = self.table.remove(id.0)?;
        self.output.update(connection.pending_output(), 0);
        Some(connection)
    }

    /// Writes `id`'s pending output ([`Connection::flush`]); returns what the write achieved
    /// and how many bytes it took.
    fn flush(&mut self, id: ConnId) -> Option<(io::Result<Flush>, usize)> {
        let connection = self.table.get_mut(id.0)?;
        let before = connection.pending_output();
        let flushed = connection.flush();
        let after = connection.pending_output();
        self.output.update(before, after);
        Some((flushed, before.saturating_sub(after)))
    }

    /// Whether `connection` has more unwritten output than it may have and still be read:
    /// its own `mqtt.tx_buffer_limit`, or its share of `mqtt.tx_buffer_total` while all
    /// connections together are over twice that (`broker::output_budget`: only what the broker
    /// does not drop, such as acknowledgements a client does not read, gets the total there;
    /// below it a subscriber that reads, with a window of QoS 1 messages unwritten at the end
    /// of a pass, is not held up).
    fn over_output_limit(&self, id: ConnId, limit: usize, budget: usize) -> bool {
        let backlog = self.get(id).map_or(0, Connection::pending_output);
        backlog >= limit || output_budget::judge(budget, self.output, backlog) == Budget::HardFull
    }

    /// Whether a connection not read for its output has drained enough to be read again: to
    /// half its limit, and to half its share while the total is over half the budget.
    fn drained(&self, id: ConnId, limit: usize, budget: usize) -> bool {
        let backlog = self.get(id).map_or(0, Connection::pending_output);
        backlog <= limit / 2 && !output_budget::still_full(budget, self.output, backlog)
    }

    /// The sum of every connection's unwritten output, counted afresh: what `output` must
    /// equal (checked in debug builds after each flush of all connections).
    fn recount_output(&self) -> OutputTotal {
        let mut total = OutputTotal::default();
        for connection in self.table.values() {
            total.update(0, connection.pending_output());
        }
        total
    }
}

/// The connections and the work queued on them during a pass. It is the broker's `Outbox`:
/// packets are encoded straight into the connections' output buffers.
struct Sockets {
    slots: Slots,
    /// Connections with output queued during this pass.
    to_flush: Vec<ConnId>,
    /// Connections to drop at the end of this pass.
    to_close: Vec<ConnId>,
    /// Paused connections that were resumed: read them without waiting for readiness (their
    /// readiness event was consumed while they were paused).
    to_read: Vec<ConnId>,
}

impl Outbox for Sockets {
    fn send(&mut self, conn: ConnId, version: ProtocolVersion, packet: &Packet) {
        let Slots { table, output } = &mut self.slots;
        let Some(connection) = table.get_mut(conn.0) else {
            return;
        };
        if connection.closing {
            return;
        }
        let before = connection.pending_output();
        codec::encode(packet, version, connection.output());
        output.update(before, connection.pending_output());
        if !connection.flush_queued {
            connection.flush_queued = true;
            self.to_flush.push(conn);
        }
    }

    fn close(&mut self, conn: ConnId) {
        let Some(connection) = self.slots.get_mut(conn) else {
            return;
        };
        if !connection.closing {
            connection.closing = true;
            self.to_close.push(conn);
        }
    }

    fn backlog(&self, conn: ConnId) -> usize {
        self.slots.get(conn).map_or(0, Connection::pending_output)
    }

    fn resume(&mut self, conn: ConnId) {
        self.to_read.push(conn);
    }

    fn output_total(&self) -> OutputTotal {
        self.slots.output
    }
}

impl EventLoop {
    /// Binds every planned listener (port 0 picks a free port; see `local_addrs`).
    pub fn bind(plans: Vec<ListenerPlan>, broker: Broker) -> io::Result<EventLoop> {
        let poll = Poll::new()?;
        let mut listeners = Vec::with_capacity(plans.len());
        for (i, plan) in plans.into_iter().enumerate() {
            let addr = plan.addr;
            let mut socket = listen(addr, plan.backlog).map_err(|e| {
                io::Error::new(e.kind(), format!("{}: cannot listen on {addr}: {e}", plan.name))
            })?;
            poll.registry().register(
                &mut socket,
                Token(LISTENER_TOKEN_BASE + i),
                Interest::READABLE,
            )?;
            listeners.push(Listener { socket, plan });
        }
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
        poll.registry().register(&mut signals, SIGNAL_TOKEN, Interest::READABLE)?;
        let capacity = broker.limits().max_connections + OVERFLOW_SLOTS;
        Ok(EventLoop {
            poll,
            events: Events::with_capacity(1024),
            ready: Vec::with_capacity(1024),
            listeners,
            sockets: Sockets {
                slots: Slots { table: Slab::new(capacity), output: OutputTotal::default() },
                to_flush: Vec::new(),
                to_close: Vec::new(),
                to_read: Vec::new(),
            },
            read_buffer: vec![0u8; READ_BUFFER_SIZE].into_boxed_slice(),
            signals,
            stop_signal: None,
            reload_requested: false,
            accept_more: Vec::new(),
            output_limit: broker.limits().tx_buffer_limit,
            output_budget: broker.limits().tx_buffer_total,
            bridges: outbound::Bridges::default(),
            admission: Admission::new(
                broker.limits().max_connections_per_address,
                broker.limits().max_pending_connections,
                capacity,
            ),
            http: None,
            heap_trim: TrimPolicy::default(),
            broker,
        })
    }

    /// Opens the `[http]` listener (`/metrics`, `/health`) if `http.bind` is set; returns its
    /// address.
    pub fn bind_http(
        &mut self,
        config: &crate::config::HttpConfig,
    ) -> io::Result<Option<SocketAddr>> {
        if config.bind.is_none() {
            return Ok(None);
        }
        let server = http::HttpServer::bind(config, self.poll.registry(), HTTP_TOKEN_BASE)?;
        let addr = server.local_addr()?;
        self.http = Some(server);
        Ok(Some(addr))
    }

    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().filter_map(|l| l.socket.local_addr().ok()).collect()
    }

    /// Each listener's bound address with its name and kind (`tcp`, `tls`, `ws`, `wss`), in
    /// plan order.
    pub fn listening(&self) -> Vec<(SocketAddr, &str, &'static str)> {
        self.listeners
            .iter()
            .filter_map(|l| {
                Some((l.socket.local_addr().ok()?, l.plan.name.as_str(), l.plan.kind()))
            })
            .collect()
    }

    /// SIGHUP: every TLS listener re-reads its certificate, key and CA files. New connections
    /// get the new ones; a file that fails keeps the old configuration, with a log line.
    pub fn reload(&mut self) {
        for listener in &mut self.listeners {
            let Some(tls) = listener.plan.tls.as_mut() else { continue };
            match tls.reload() {
                Ok(()) => log::info!("{}: TLS certificate and key reloaded", listener.plan.name),
                Err(e) => log::warn!("TLS files not reloaded, the old ones stay in use: {e}"),
            }
        }
        self.reload_bridges();
    }

    /// SIGHUP: applies the limits that only affect what comes next ([`Limits::apply_live`]) to
    /// the broker and to admission at accept. Open connections keep working.
    pub fn apply_live_limits(&mut self, new: &Limits) {
        self.broker.apply_live_limits(new);
        let limits = self.broker.limits();
        self.admission
            .set_limits(limits.max_connections_per_address, limits.max_pending_connections);
    }

    /// Runs until SIGTERM or SIGINT (returned), SIGHUP (returns [`RELOAD_SIGNAL`]; call `run`
    /// again after reloading) or an unrecoverable poll error.
    pub fn run(&mut self) -> io::Result<i32> {
        loop {
            self.run_once()?;
            if let Some(signal) = self.stop_signal {
                return Ok(signal);
            }
            if std::mem::take(&mut self.reload_requested) {
                return Ok(RELOAD_SIGNAL);
            }
        }
    }

    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    pub fn broker_mut(&mut self) -> &mut Broker {
        &mut self.broker
    }

    /// A graceful stop: clients are disconnected (v5 with "Server shutting down"), sessions
    /// go offline as on any disconnect, the store commits, output is flushed.
    pub fn shutdown(&mut self) {
        let now = Instant::now();
        self.stop_bridges();
        self.broker.shutdown(now, &mut self.sockets);
        self.flush_all();
        self.close_pending(now);
        self.broker.end_of_pass(now, &mut self.sockets);
    }

    /// One pass: wait until something is ready or the broker's next deadline (not at all if
    /// connections are still waiting to be read), then handle everything that is ready.
    fn run_once(&mut self) -> io::Result<()> {
        let now = Instant::now();
        let timeout = if self.sockets.to_read.is_empty() && self.accept_more.is_empty() {
            let deadline = [
                self.broker.next_deadline(),
                self.bridges_deadline(),
                self.admission.logs.next_summary(),
                self.http.as_ref().and_then(http::HttpServer::next_deadline),
            ]
            .into_iter()
            .flatten()
            .min();
            deadline.map(|d| d.saturating_duration_since(now))
        } else {
            Some(Duration::ZERO)
        };
        self.poll_and_handle(timeout)?;
        let now = Instant::now();
        self.bridge_timers(now);
        self.broker.on_timers(now, &mut self.sockets);
        if self.broker.sys_due(now) {
            let process = http::process_figures();
            self.broker.publish_sys(now, &process, &mut self.sockets);
        }
        if let Some(server) = self.http.as_mut() {
            server.expire(self.poll.registry(), now);
        }
        // Deliveries go out before the commit, so subscribers work while it runs; answers to
        // a client's own packets (PUBACK, PUBREC, PUBCOMP, PINGRESP) wait for it.
        self.flush_all();
        // A commit that is fsync'd for acknowledgements stalls the loop for one fsync: what
        // else is already on its way is read first, so that one fsync covers it too.
        if self.gather_before_sync()? {
            self.flush_all();
        }
        let fsyncs = self.broker.store().stats().fsyncs;
        self.broker.end_of_pass(now, &mut self.sockets);
        let (answered, now_answered) = self.broker.answered();
        if now_answered {
            for &conn in answered {
                if let Some(connection) = self.sockets.slots.get_mut(conn) {
                    connection.read_since_acks = false;
                }
            }
        }
        self.flush_all();
        if self.broker.store().stats().fsyncs != fsyncs {
            self.serve_links_after_sync();
        }
        self.close_pending(now);
        self.broker.relieve_congestion(now, &mut self.sockets);
        self.admission.logs.write_summaries(now);
        Ok(())
    }

    /// Before a commit that is fsync'd for acknowledgements (`durability = "sync"`): reads
    /// what arrives within [`GATHER_SHARE`] of a typical fsync, so that one fsync covers it.
    ///
    /// Why: the fsync stalls the loop. The clients answer the acknowledgements of the previous
    /// commit within a fraction of a millisecond of each other, but the loop wakes for the
    /// first of them; committing at once puts the others behind a whole fsync, and from then
    /// on the clients are committed in two or three groups in turn, each waiting for the
    /// others' fsync as well as its own. Waiting a tenth of an fsync keeps them in one group;
    /// the wait ends early once every client answered by the last commit was read since.
    /// With fast storage (fsync under 10 ms) the wait rounds to none: only what is already
    /// readable is read. Returns whether anything was read.
    fn gather_before_sync(&mut self) -> io::Result<bool> {
        let Some(fsync) = self.broker.store().pending_sync() else { return Ok(false) };
        if !self.sockets.to_read.is_empty() {
            // Connections over their read budget: the loop is busy anyway.
            return Ok(false);
        }
        let until = Instant::now() + fsync / GATHER_SHARE;
        let mut any = false;
        for _ in 0..GATHER_POLLS {
            if self.all_answered() {
                break;
            }
            // Whole milliseconds (what epoll waits in); under one, only what is there now.
            let left = until.saturating_duration_since(Instant::now());
            let left = Duration::from_millis(left.as_millis() as u64);
            if !self.poll_and_handle(Some(left))? {
                break;
            }
            any = true;
            if self.stop_signal.is_some()
                || self.reload_requested
                || !self.sockets.to_read.is_empty()
            {
                break;
            }
        }
        Ok(any)
    }

    /// Whether every client answered by the last commit (and still connected) was read since.
    /// False if there were none: then nobody in particular is expected, and the whole wait
    /// is spent.
    fn all_answered(&self) -> bool {
        let (answered, _) = self.broker.answered();
        let read_since =
            |conn: ConnId| self.sockets.slots.get(conn).is_none_or(|c| c.read_since_acks);
        !answered.is_empty() && answered.iter().all(|&conn| read_since(conn))
    }

    /// Waits up to `timeout` for readiness, then reads and handles everything that is ready.
    /// Returns whether any event came.
    fn poll_and_handle(&mut self, timeout: Option<Duration>) -> io::Result<bool> {
        if let Err(e) = self.poll.poll(&mut self.events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        let now = Instant::now();
        // Copied out so handling an event may borrow the loop mutably; the vector is reused.
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        ready.extend(self.events.iter().map(|e| {
            let closed = e.is_read_closed() || e.is_error();
            Readiness {
                token: e.token(),
                readable: e.is_readable() || closed,
                closed,
                writable: e.is_writable(),
            }
        }));
        for conn in std::mem::take(&mut self.sockets.to_read) {
            // No event says whether the peer has closed since: read until `WouldBlock`.
            self.read(conn, ReadUntil::WouldBlock, now);
        }
        for listener in std::mem::take(&mut self.accept_more) {
            self.accept(listener, now);
        }
        for &Readiness { token, readable, closed, writable } in &ready {
            if token == SIGNAL_TOKEN {
                let pending: Vec<i32> = self.signals.pending().collect();
                for signal in pending {
                    if signal == SIGHUP {
                        // TLS files here; `run` then returns RELOAD_SIGNAL so the caller
                        // reloads the rest (the auth files).
                        log::info!("SIGHUP received: reloading");
                        self.reload();
                        self.reload_requested = true;
                        continue;
                    }
                    log::info!("signal {signal} received: stopping");
                    self.stop_signal = Some(signal);
                }
                continue;
            }
            if token == outbound::WAKER_TOKEN {
                self.bridge_resolved(now);
                continue;
            }
            if token.0 >= LISTENER_TOKEN_BASE {
                self.accept(token.0 - LISTENER_TOKEN_BASE, now);
                continue;
            }
            if let Some(server) = self.http.as_mut().filter(|h| h.owns(token)) {
                server.ready(token, self.poll.registry(), &self.broker, now);
                continue;
            }
            let conn = ConnId(token.0 as u32);
            if (writable || closed) && self.link_connect_ready(conn, closed, now) {
                continue;
            }
            if writable {
                self.queue_flush(conn);
            }
            if readable {
                // A closed or failed peer must be read to its end: no later event announces it.
                let until = if closed { ReadUntil::WouldBlock } else { ReadUntil::ShortRead };
                self.read(conn, until, now);
            }
        }
        let any = !ready.is_empty();
        self.ready = ready;
        Ok(any)
    }

    /// Accepts up to `ACCEPT_PER_PASS` connections from `listener`; if its queue may hold
    /// more, it is noted in `accept_more` for the next pass.
    fn accept(&mut self, listener: usize, now: Instant) {
        for _ in 0..ACCEPT_PER_PASS {
            let Some(l) = self.listeners.get(listener) else {
                return;
            };
            let (stream, peer) = match l.socket.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: log and retry on the next readiness event.
                    if let Some(more) = self.admission.logs.accept_failed.allow(now) {
                        log::warn!("accept failed: {e}{}", More(more));
                    }
                    return;
                }
            };
            // Before anything is spent on it (TLS state, buffers, a slot): dropping the stream
            // closes it.
            if let Err(refusal) = self.admission.admit(peer.ip()) {
                self.admission.log_refusal(refusal, peer, now);
                continue;
            }
            if self.sockets.slots.is_full() {
                self.admission.closed(peer.ip(), true);
                if let Some(more) = self.admission.logs.refused_full.allow(now) {
                    log::warn!(
                        "{peer}: connection refused, all {} slots in use{}",
                        self.sockets.slots.table.limit(),
                        More(more)
                    );
                }
                continue;
            }
            if let Err(e) = stream.set_nodelay(true) {
                log::debug!("{peer}: set_nodelay failed: {e}");
            }
            let id = ListenerId(u16::try_from(listener).unwrap_or(u16::MAX));
            let plan = &l.plan;
            let origin = Origin {
                peer,
                listener: id,
                allow_anonymous: plan.allow_anonymous,
                use_identity_as_username: plan.use_identity_as_username,
                tls_identity: None,
            };
            let transport = match &plan.tls {
                None => Transport::Tcp(stream),
                Some(tls) => match tls.accept(stream) {
                    Ok(stream) => Transport::Tls(Box::new(stream)),
                    Err(e) => {
                        log::warn!("{peer}: {}: cannot start TLS: {e}", plan.name);
                        self.admission.closed(peer.ip(), true);
                        continue;
                    }
                },
            };
            // WebSocket frames over the plain or TLS stream (`ws`, `wss`).
            let transport = match &plan.websocket {
                None => transport,
                Some(settings) => match WsStream::accept(transport, Rc::clone(settings)) {
                    Ok(ws) => Transport::Ws(Box::new(ws)),
                    Err(e) => {
                        log::warn!("{peer}: {}: cannot start WebSocket: {e}", plan.name);
                        self.admission.closed(peer.ip(), true);
                        continue;
                    }
                },
            };
            self.register(transport, origin, now);
        }
        // The pass's budget is spent before `WouldBlock`: the queue may hold more.
        if !self.accept_more.contains(&listener) {
            self.accept_more.push(listener);
        }
    }

    fn register(&mut self, transport: Transport, origin: Origin, now: Instant) {
        let peer = origin.peer;
        let connection = Connection::new(transport, peer, origin.listener);
        let Some(conn) = self.sockets.slots.insert(connection) else {
            // `accept` checked for a free slot; dropping the stream closes it.
            self.admission.closed(peer.ip(), true);
            return;
        };
        let Some(connection) = self.sockets.slots.get_mut(conn) else {
            return;
        };
        if let Err(e) = self.poll.registry().register(
            connection.transport.socket_mut(),
            Token(conn.0 as usize),
            Interest::READABLE,
        ) {
            log::warn!("{peer}: cannot register socket: {e}");
            self.sockets.slots.remove(conn);
            self.admission.closed(peer.ip(), true);
            return;
        }
        self.heap_trim.opened(self.sockets.slots.table.len());
        log::debug!("{conn:?}: accepted from {peer} on {}", self.listener_name(origin.listener));
        self.broker.on_accept(conn, origin, now);
    }

    /// Reads as `until` says (or until this pass's budget is spent), decoding and handling
    /// each complete packet as it arrives.
    fn read(&mut self, conn: ConnId, until: ReadUntil, now: Instant) {
        // Lent out for the duration so decoding can borrow it while the broker runs.
        let mut buffer = std::mem::take(&mut self.read_buffer);
        self.read_into(conn, &mut buffer, until, now);
        self.read_buffer = buffer;
    }

    fn read_into(&mut self, conn: ConnId, buffer: &mut [u8], until: ReadUntil, now: Instant) {
        // Bytes kept back by a pause are handled before anything new is read.
        if !self.decode_pending(conn, now) {
            return;
        }
        let mut budget = READ_BUDGET_PER_PASS;
        loop {
            if !self.wants_input(conn) || self.broker.is_paused(conn) {
                return;
            }
            let slots = &mut self.sockets.slots;
            let over = slots.over_output_limit(conn, self.output_limit, self.output_budget);
            let Some(connection) = slots.get_mut(conn) else {
                return;
            };
            if over {
                if !connection.throttled {
                    log::info!("{conn:?}: not reading, the client does not read its output");
                    connection.throttled = true;
                }
                return;
            }
            if connection.closing {
                return;
            }
            let n = match connection.transport.read(buffer) {
                Ok(0) => return self.peer_closed(conn, "closed by peer"),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // A TLS handshake answer the socket did not take yet, or output TLS held
                    // back until the handshake finished: write it now, as no WRITABLE edge
                    // may come for it.
                    if connection.transport.wants_write() || connection.pending_output() > 0 {
                        self.queue_flush(conn);
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    // Not TLS (plain MQTT or garbage on a TLS port), a failed handshake (no or
                    // a wrong client certificate), or a broken record: this client only.
                    // For a bridge link: the remote's certificate failed verification, or
                    // the remote does not speak TLS; the link logs it and backs off.
                    // On a ws/wss listener: a bad upgrade request or frame, answered with an
                    // HTTP status or a close frame already queued.
                    let (peer, listener, link) =
                        (connection.peer, connection.listener, connection.link);
                    let limiter = if transport::is_websocket_refusal(&e) {
                        &mut self.admission.logs.websocket_refused
                    } else {
                        &mut self.admission.logs.tls_failed
                    };
                    if link.is_some() {
                        self.note_link_close(conn, &e.to_string());
                    } else if let Some(more) = limiter.allow(now) {
                        log::info!(
                            "{conn:?} from {peer} on {}: {e}; closing{}",
                            self.listener_name(listener),
                            More(more)
                        );
                    }
                    // The alert rustls queued, if the socket takes it.
                    self.queue_flush(conn);
                    return self.mark_closing(conn);
                }
                Err(e) => return self.peer_closed(conn, &e.to_string()),
            };
            connection.read_since_acks = true;
            let short_read_drains = connection.transport.short_read_drains();
            self.broker.count_io(n, 0);
            if let Some(cn) = connection.transport.take_identity() {
                self.broker.on_tls_identity(conn, cn);
            }
            if !self.decode_input(conn, &buffer[..n], now) {
                // A decode error: the broker already asked for the close.
                return;
            }
            if until == ReadUntil::ShortRead && n < buffer.len() && short_read_drains {
                return;
            }
            budget = budget.saturating_sub(n);
            if budget == 0 {
                // Edge-triggered readiness will not fire again for bytes already waiting.
                self.sockets.to_read.push(conn);
                return;
            }
        }
    }

    /// Decodes `input` (fresh bytes in the shared read buffer) after the incomplete packet the
    /// connection holds, if any: that packet takes only the bytes it still lacks, so the
    /// connection's buffer never holds more than one packet; the rest is decoded in place and
    /// only its incomplete tail is copied. False after a decode error (or if the connection
    /// is gone).
    fn decode_input(&mut self, conn: ConnId, mut input: &[u8], now: Instant) -> bool {
        loop {
            let Some(connection) = self.sockets.slots.get_mut(conn) else { return false };
            if connection.rx.is_empty() {
                break;
            }
            let take = connection.wanted().min(input.len());
            connection.append_input(&input[..take]);
            input = &input[take..];
            let pending = std::mem::take(&mut connection.rx);
            let Some(used) = self.decode_all(conn, &pending, now) else { return false };
            self.note_connected(conn);
            let Some(connection) = self.sockets.slots.get_mut(conn) else { return false };
            if used == pending.len() {
                // Complete (or not wanted any more): released, the rest is decoded in place.
                break;
            }
            connection.rx = pending;
            if used > 0 {
                connection.rx.drain(..used);
            }
            if input.is_empty() {
                return true;
            }
            if take == 0 {
                // Paused with a whole packet waiting: keep everything for the resume.
                connection.append_input(input);
                return true;
            }
        }
        if input.is_empty() {
            return true;
        }
        let Some(used) = self.decode_all(conn, input, now) else { return false };
        self.note_connected(conn);
        let rest = input.get(used..).unwrap_or_default();
        match self.sockets.slots.get_mut(conn) {
            Some(connection) => {
                connection.keep_input(rest.to_vec());
                true
            }
            None => false,
        }
    }

    /// Once the broker no longer waits for the CONNECT of `conn` (it came, or the connection
    /// was refused), it stops counting as pending for admission.
    fn note_connected(&mut self, conn: ConnId) {
        if self.broker.awaits_connect(conn) {
            return;
        }
        if let Some(connection) = self.sockets.slots.get_mut(conn) {
            if std::mem::take(&mut connection.pending) && connection.link.is_none() {
                self.admission.connected();
            }
        }
    }

    /// Decodes what is left in the connection's input buffer. Returns false if the
    /// connection must not be read further now (paused, closed, or invalid input).
    fn decode_pending(&mut self, conn: ConnId, now: Instant) -> bool {
        let Some(connection) = self.sockets.slots.get_mut(conn) else { return false };
        if connection.rx.is_empty() {
            return true;
        }
        let mut pending = std::mem::take(&mut connection.rx);
        let Some(used) = self.decode_all(conn, &pending, now) else { return false };
        pending.drain(..used);
        match self.sockets.slots.get_mut(conn) {
            Some(connection) => connection.keep_input(pending),
            None => return false,
        }
        !self.broker.is_paused(conn)
    }

    /// Decodes and handles every complete packet in `input`; returns the bytes consumed, or
    /// `None` after a decode error.
    fn decode_all(&mut self, conn: ConnId, input: &[u8], now: Instant) -> Option<usize> {
        if let Some(index) = self.link_of(conn) {
            return self.decode_link(index, conn, input, now);
        }
        let mut used = 0;
        while used < input.len() {
            if !self.broker.wants_input(conn) {
                return Some(input.len());
            }
            if self.broker.is_paused(conn) {
                // Keep the rest for when the connection is resumed.
                return Some(used);
            }
            let context = self.broker.decode_context(conn);
            match codec::decode(&input[used..], &context) {
                Ok(Some((packet, size))) => {
                    used += size;
                    self.broker.handle(conn, packet, now, &mut self.sockets);
                }
                Ok(None) => break,
                Err(error) => {
                    let declared = context
                        .version
                        .is_none()
                        .then(|| codec::sniff_connect_version(&input[used..]))
                        .flatten();
                    self.broker.on_decode_error(conn, &error, declared, now, &mut self.sockets);
                    return None;
                }
            }
        }
        Some(used)
    }

    fn queue_flush(&mut self, conn: ConnId) {
        if let Some(connection) = self.sockets.slots.get_mut(conn) {
            if !connection.flush_queued {
                connection.flush_queued = true;
                self.sockets.to_flush.push(conn);
            }
        }
    }

    /// Writes every connection's queued output; registers WRITABLE where the kernel is full.
    fn flush_all(&mut self) {
        let to_flush = std::mem::take(&mut self.sockets.to_flush);
        for &conn in &to_flush {
            let Some(connection) = self.sockets.slots.get_mut(conn) else {
                continue;
            };
            connection.flush_queued = false;
            let Some((flushed, written)) = self.sockets.slots.flush(conn) else {
                continue;
            };
            self.broker.count_io(0, written);
            let want_write = match flushed {
                Ok(Flush::Done) => false,
                Ok(Flush::Blocked) => true,
                Err(e) => {
                    log::debug!("{conn:?}: write failed: {e}");
                    self.mark_closing(conn);
                    continue;
                }
            };
            let slots = &mut self.sockets.slots;
            let drained = slots.drained(conn, self.output_limit, self.output_budget);
            let Some(connection) = slots.get_mut(conn) else {
                continue;
            };
            // A client that stopped reading was no longer read either (its requests would
            // only queue more answers); once its output drains, read it again.
            if connection.throttled && drained {
                connection.throttled = false;
                self.sockets.to_read.push(conn);
            }
            if want_write != connection.write_interest {
                let interest = if want_write {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                let token = Token(conn.0 as usize);
                if let Err(e) = self.poll.registry().reregister(
                    connection.transport.socket_mut(),
                    token,
                    interest,
                ) {
                    log::warn!("{conn:?}: reregister failed: {e}");
                }
                connection.write_interest = want_write;
            }
        }
        debug_assert_eq!(self.sockets.slots.output, self.sockets.slots.recount_output());
        // Reuse the allocation.
        let mut to_flush = to_flush;
        to_flush.clear();
        if self.sockets.to_flush.is_empty() {
            self.sockets.to_flush = to_flush;
        }
    }

    fn listener_name(&self, id: ListenerId) -> &str {
        if id == ListenerId::OUTBOUND {
            return "an outbound bridge link";
        }
        self.listeners.get(usize::from(id.0)).map_or("?", |l| l.plan.name.as_str())
    }

    fn mark_closing(&mut self, conn: ConnId) {
        if let Some(connection) = self.sockets.slots.get_mut(conn) {
            if !connection.closing {
                connection.closing = true;
                self.sockets.to_close.push(conn);
            }
        }
    }

    fn peer_closed(&mut self, conn: ConnId, why: &str) {
        if let Some(connection) = self.sockets.slots.get(conn) {
            log::debug!("{conn:?} ({}): {why}", connection.peer);
        }
        self.note_link_close(conn, why);
        self.mark_closing(conn);
    }

    /// Drops every connection marked closing: one last write attempt, then the socket goes
    /// and the broker hears of it (will, session detach).
    fn close_pending(&mut self, now: Instant) {
        let closing = !self.sockets.to_close.is_empty();
        while let Some(conn) = self.sockets.to_close.pop() {
            let Some(mut connection) = self.sockets.slots.remove(conn) else {
                continue;
            };
            if connection.link.is_none() {
                // Accepted, so admitted (bridge links are ours, not counted).
                self.admission.closed(connection.peer.ip(), connection.pending);
            }
            let _ = connection.flush();
            connection.drain_input(&mut self.read_buffer);
            connection.transport.close();
            let _ = self.poll.registry().deregister(connection.transport.socket_mut());
            let link = connection.link;
            drop(connection);
            self.broker.on_closed(conn, now, &mut self.sockets);
            if let Some(index) = link {
                self.link_closed(index as usize, now);
            }
        }
        // A will published by `on_closed` may have queued output for others.
        if !self.sockets.to_flush.is_empty() {
            self.flush_all();
        }
        let live = self.sockets.slots.table.len();
        if closing && self.heap_trim.closed(live) {
            let started = Instant::now();
            let released = heap::release_free_memory();
            let took = started.elapsed();
            log::debug!("heap: trimmed at {live} connections in {took:?} (released: {released})");
        }
    }
}
