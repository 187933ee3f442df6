//! The socket side of bridges: outbound connections driven by the same loop as every accepted
//! one.
//!
//! Contract: a bridge link's socket is an ordinary [`Connection`] in the same slab (so its
//! `ConnId` is the broker's name for it and the broker's answers reach it through the same
//! `Outbox`), marked with its bridge's index. This file owns what differs: the non-blocking
//! connect (WRITABLE, then `take_error` / `peer_addr`, as mio's docs say), decoding with
//! `Role::Client`, handing the CONNACK / SUBACK / PINGRESP to the link state machine
//! (`src/bridge`), mapping inbound topics before the broker sees a PUBLISH, and the links'
//! timers. It never blocks the loop:
//!
//! Name resolution. `getaddrinfo` blocks, for seconds when DNS is down, so host names are
//! resolved by a short-lived thread per attempt (IP literals never start one). The thread
//! sends its one answer through a channel and wakes the loop with a `mio::Waker`; the loop
//! reads the channel when the waker's token is ready. At most one resolver runs per bridge
//! (the link waits in `Resolving` and starts no other attempt), and a thread that outlives
//! its answer's use only finds its send ignored. This is the one thread edgemq starts besides
//! the loop; it touches no broker state.
//!
//! TLS. A bridge with `tls` gets a [`TlsClient`] at start-up ([`plan_bridges`]: the CA file,
//! or the system's CA bundle, and an optional client certificate are read then, so a bad file
//! stops start-up naming its key; SIGHUP reads them again for the next attempts). Each attempt
//! wraps its socket in a client [`Transport::Tls`] as soon as the non-blocking connect starts;
//! the CONNECT is written into it like into any transport, and rustls sends it once the
//! handshake is done. The handshake therefore runs inside the link's `AwaitConnack` time
//! (at most 10 s), and a certificate the CA does not vouch for, or a remote that does not
//! speak TLS, ends the attempt with one log line and the usual backoff.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::num::NonZeroU16;
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Token, Waker};

use super::connection::Connection;
use super::transport::{TlsClient, TlsClientSettings, TlsError, Transport};
use super::{EventLoop, LISTENER_TOKEN_BASE};
use crate::bridge::{Link, State, Step};
use crate::broker::{BridgeSpec, ConnId, ListenerId, Outbox};
use crate::codec::{self, DecodeContext, Packet, Role};
use crate::config::BridgeConfig;

/// The resolver threads wake the loop on this token.
pub(super) const WAKER_TOKEN: Token = Token(LISTENER_TOKEN_BASE - 2);

/// One resolver answer: the bridge's index and the address to use, the first IPv4 one if any
/// (or why there is none).
type Resolved = (usize, Result<SocketAddr, String>);

/// A bridge to start: its config and, for `tls`, its TLS client (files already read).
pub struct BridgePlan {
    pub config: BridgeConfig,
    pub tls: Option<BridgeTlsClient>,
}

/// A bridge's TLS client, with what it was loaded from (for SIGHUP) and the name to verify.
pub struct BridgeTlsClient {
    settings: TlsClientSettings,
    client: TlsClient,
    server_name: String,
}

/// Reads every bridge's TLS files (before anything starts: a bad file is a configuration
/// error, named by its key, e.g. `bridges.NAME.tls.cafile`, and its path).
pub fn plan_bridges(configs: &[BridgeConfig]) -> Result<Vec<BridgePlan>, TlsError> {
    let mut plans = Vec::with_capacity(configs.len());
    for config in configs {
        let tls = match &config.tls {
            None => None,
            Some(tls) => {
                let settings = TlsClientSettings {
                    prefix: format!("bridges.{}.tls", config.name),
                    cafile: tls.cafile.as_ref().map(Into::into),
                    certfile: tls.certfile.as_ref().map(Into::into),
                    keyfile: tls.keyfile.as_ref().map(Into::into),
                };
                let client = TlsClient::load(&settings)?;
                let server_name = tls.server_name.clone().unwrap_or_else(|| config.host.clone());
                Some(BridgeTlsClient { settings, client, server_name })
            }
        };
        plans.push(BridgePlan { config: config.clone(), tls });
    }
    Ok(plans)
}

/// Every configured bridge's link, and the resolver channel.
pub(super) struct Bridges {
    links: Vec<Link>,
    /// `tls[i]` is link `i`'s TLS client (`None`: plain TCP).
    tls: Vec<Option<BridgeTlsClient>>,
    waker: Option<Arc<Waker>>,
    answers_tx: mpsc::Sender<Resolved>,
    answers: mpsc::Receiver<Resolved>,
}

impl Default for Bridges {
    fn default() -> Self {
        let (answers_tx, answers) = mpsc::channel();
        Bridges { links: Vec::new(), tls: Vec::new(), waker: None, answers_tx, answers }
    }
}

impl EventLoop {
    /// Creates each bridge's session in the broker (after the store was restored) and its link,
    /// which makes its first attempt in the first pass. Sessions of bridges no longer
    /// configured are deleted.
    pub fn start_bridges(&mut self, plans: Vec<BridgePlan>) -> io::Result<()> {
        let now = Instant::now();
        let names: Vec<String> = plans.iter().map(|p| p.config.name.clone()).collect();
        self.broker.remove_stale_bridges(&names, now, &mut self.sockets);
        for (i, BridgePlan { config, tls }) in plans.into_iter().enumerate() {
            let spec = BridgeSpec {
                name: config.name.clone(),
                version: config.version,
                forwards: config.forwards.clone(),
                queue_qos0: config.queue_qos0,
                max_queued: config.max_queued,
                max_queued_bytes: config.max_queued_bytes,
                overflow: config.overflow,
            };
            if !self.broker.add_bridge(&spec, now, &mut self.sockets) {
                continue;
            }
            let seed = now.elapsed().as_nanos() as u64
                ^ ((i as u64 + 1) << 32)
                ^ u64::from(std::process::id());
            self.bridges.links.push(Link::new(Rc::new(config), now, seed));
            self.bridges.tls.push(tls);
            // Its link needs a slot of its own, beyond the clients' ones.
            self.sockets.slots.table.raise_limit(1);
        }
        if !self.bridges.links.is_empty() {
            self.bridges.waker = Some(Arc::new(Waker::new(self.poll.registry(), WAKER_TOKEN)?));
            log::info!("{} bridge(s) configured", self.bridges.links.len());
        }
        self.broker.end_of_pass(now, &mut self.sockets);
        Ok(())
    }

    /// SIGHUP: reads the bridges' TLS files again, for the next connection attempts (a link that
    /// is up keeps its session); a file that fails to load keeps the old ones with a warning.
    pub(super) fn reload_bridges(&mut self) {
        for tls in self.bridges.tls.iter_mut().flatten() {
            match TlsClient::load(&tls.settings) {
                Ok(client) => {
                    tls.client = client;
                    log::info!("{}: TLS files reloaded", tls.settings.prefix);
                }
                Err(e) => log::warn!("TLS files not reloaded, the old ones stay in use: {e}"),
            }
        }
    }

    /// Graceful stop: links close for good (the broker's shutdown sends their DISCONNECT).
    pub(super) fn stop_bridges(&mut self) {
        for link in &mut self.bridges.links {
            link.stop();
        }
    }

    /// The earliest deadline of any link.
    pub(super) fn bridges_deadline(&self) -> Option<Instant> {
        self.bridges.links.iter().filter_map(Link::deadline).min()
    }

    /// Runs every link's due timers.
    pub(super) fn bridge_timers(&mut self, now: Instant) {
        for index in 0..self.bridges.links.len() {
            let step = self.bridges.links.get_mut(index).and_then(|l| l.on_timer(now));
            if let Some(step) = step {
                self.bridge_step(index, step, now);
            }
        }
    }

    /// Reads the resolver answers that woke the loop.
    pub(super) fn bridge_resolved(&mut self, now: Instant) {
        while let Ok((index, answer)) = self.bridges.answers.try_recv() {
            let step = self.bridges.links.get_mut(index).and_then(|l| l.resolved(answer, now));
            if let Some(step) = step {
                self.bridge_step(index, step, now);
            }
        }
    }

    fn bridge_step(&mut self, index: usize, step: Step, now: Instant) {
        let Some(link) = self.bridges.links.get(index) else { return };
        match step {
            Step::Resolve { host, port } => {
                let tx = self.bridges.answers_tx.clone();
                let waker = self.bridges.waker.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("resolve-{}", link.name()))
                    .spawn(move || {
                        // IPv4 first: "localhost" often lists ::1 first while brokers
                        // commonly listen on IPv4 only.
                        let answer = match (host.as_str(), port).to_socket_addrs() {
                            Ok(addrs) => addrs
                                .min_by_key(SocketAddr::is_ipv6)
                                .ok_or_else(|| "no address".to_string()),
                            Err(e) => Err(e.to_string()),
                        };
                        let _ = tx.send((index, answer));
                        if let Some(waker) = waker {
                            let _ = waker.wake();
                        }
                    });
                if let Err(e) = spawned {
                    if let Some(link) = self.bridges.links.get_mut(index) {
                        link.failed(&format!("cannot start a resolver thread: {e}"), now);
                    }
                }
            }
            Step::Connect(addr) => self.bridge_connect(index, addr, now),
            Step::Send(conn, packet) => {
                let version = link.version();
                self.sockets.send(conn, version, &packet);
            }
            Step::Close(conn) => self.sockets.close(conn),
        }
    }

    /// Starts a non-blocking connect; the socket reports WRITABLE when it is done.
    fn bridge_connect(&mut self, index: usize, addr: SocketAddr, now: Instant) {
        let fail = |this: &mut EventLoop, why: String| {
            if let Some(link) = this.bridges.links.get_mut(index) {
                link.failed(&why, now);
            }
        };
        let stream = match TcpStream::connect(addr) {
            Ok(stream) => stream,
            Err(e) => return fail(self, format!("{addr}: {e}")),
        };
        let transport = match self.bridges.tls.get(index).and_then(Option::as_ref) {
            None => Transport::Tcp(stream),
            Some(tls) => match tls.client.connect(stream, &tls.server_name) {
                Ok(stream) => Transport::Tls(Box::new(stream)),
                Err(e) => return fail(self, format!("{addr}: cannot start TLS: {e}")),
            },
        };
        let mut connection = Connection::new(transport, addr, ListenerId::OUTBOUND);
        connection.link = u32::try_from(index).ok();
        let Some(conn) = self.sockets.slots.insert(connection) else {
            return fail(self, "no connection slot free".to_string());
        };
        let Some(connection) = self.sockets.slots.get_mut(conn) else { return };
        let interest = Interest::READABLE | Interest::WRITABLE;
        let socket = connection.transport.socket_mut();
        if let Err(e) = self.poll.registry().register(socket, Token(conn.0 as usize), interest) {
            self.sockets.slots.remove(conn);
            return fail(self, format!("cannot register the socket: {e}"));
        }
        connection.write_interest = true;
        let over = if matches!(connection.transport, Transport::Tls(_)) { " (TLS)" } else { "" };
        log::debug!("bridge link {conn:?}: connecting to {addr}{over}");
        if let Some(link) = self.bridges.links.get_mut(index) {
            link.connecting(conn, now);
        }
    }

    /// After a commit that waited for an fsync: the remotes have mostly acknowledged the
    /// window sent before it by now, and those acknowledgements would otherwise wait for the
    /// next pass (which starts with the next fsync'd commit behind it). Reading every active
    /// link once more here frees the window and refills it in this pass, so a link moves up to
    /// two windows per fsync instead of one. What this reading changes in the store (rows the
    /// remote acknowledged) and the answers it queues (a PUBREL for a PUBREC) wait for the next
    /// pass's commit, as in any pass: the links are put on the to-read list, so that pass
    /// starts at once instead of waiting for the next event, and the loop never sleeps with
    /// the transaction open.
    pub(super) fn serve_links_after_sync(&mut self) {
        let now = Instant::now();
        let mut served = false;
        for index in 0..self.bridges.links.len() {
            let conn = match self.bridges.links.get(index) {
                Some(link) if link.is_active() => link.conn(),
                _ => None,
            };
            if let Some(conn) = conn {
                self.read(conn, super::ReadUntil::ShortRead, now);
                self.sockets.to_read.push(conn);
                served = true;
            }
        }
        if served {
            self.flush_all();
        }
    }

    /// The bridge index of `conn`, if it is a link.
    pub(super) fn link_of(&self, conn: ConnId) -> Option<usize> {
        self.sockets.slots.get(conn).and_then(|c| c.link).map(|index| index as usize)
    }

    /// Whether input from `conn` is still read: a link is read until it closes (the broker
    /// knows it only once it is accepted); anything else as the broker says.
    pub(super) fn wants_input(&self, conn: ConnId) -> bool {
        match self.sockets.slots.get(conn) {
            Some(c) if c.link.is_some() => !c.closing,
            _ => self.broker.wants_input(conn),
        }
    }

    /// Readiness of a link still connecting. Returns true if the event was consumed here (the
    /// connect is still in progress, or failed); false once connected, so the event's
    /// readable and writable parts take the ordinary path.
    pub(super) fn link_connect_ready(&mut self, conn: ConnId, closed: bool, now: Instant) -> bool {
        let Some(index) = self.link_of(conn) else { return false };
        let Some(link) = self.bridges.links.get(index) else { return false };
        if !matches!(link.state(), State::Connecting { conn: c, .. } if c == conn) {
            return false;
        }
        let Some(connection) = self.sockets.slots.get_mut(conn) else { return true };
        let socket = connection.transport.socket();
        let error = match socket.take_error() {
            Ok(Some(e)) | Err(e) => Some(e.to_string()),
            Ok(None) => match socket.peer_addr() {
                Ok(_) => None,
                Err(e) if e.kind() == io::ErrorKind::NotConnected && !closed => return true,
                Err(e) => Some(e.to_string()),
            },
        };
        if let Some(why) = error {
            if let Some(link) = self.bridges.links.get_mut(index) {
                link.closing_because(&why);
            }
            self.mark_closing(conn);
            return true;
        }
        if let Err(e) = socket.set_nodelay(true) {
            log::debug!("bridge link {conn:?}: set_nodelay failed: {e}");
        }
        let limits = self.broker.limits();
        let (receive_maximum, max_packet_size) = (limits.max_inflight, limits.max_packet_size);
        let step = self
            .bridges
            .links
            .get_mut(index)
            .and_then(|l| l.tcp_connected(now, receive_maximum, max_packet_size));
        if let Some(step) = step {
            self.bridge_step(index, step, now);
        }
        // Connected: the same event may also say readable or closed (a remote that accepted
        // and hung up at once), which the ordinary path reads now; edge-triggered readiness
        // would not say it again.
        false
    }

    /// Decodes a link's input as a client does; returns the bytes consumed, or `None` after
    /// invalid input (the link is closing).
    pub(super) fn decode_link(
        &mut self,
        index: usize,
        conn: ConnId,
        input: &[u8],
        now: Instant,
    ) -> Option<usize> {
        let Some(version) = self.bridges.links.get(index).map(Link::version) else {
            return Some(input.len());
        };
        let context = DecodeContext {
            version: Some(version),
            max_packet_size: self.broker.limits().max_packet_size,
            role: Role::Client,
        };
        let mut used = 0;
        while used < input.len() {
            if !self.wants_input(conn) {
                return Some(input.len());
            }
            if self.broker.is_paused(conn) {
                return Some(used);
            }
            match codec::decode(&input[used..], &context) {
                Ok(Some((packet, size))) => {
                    used += size;
                    self.link_packet(index, conn, packet, now);
                }
                Ok(None) => break,
                Err(error) => {
                    if let Some(link) = self.bridges.links.get_mut(index) {
                        link.closing_because(&format!("invalid packet from the remote: {error}"));
                    }
                    self.sockets.close(conn);
                    return None;
                }
            }
        }
        Some(used)
    }

    fn link_packet(&mut self, index: usize, conn: ConnId, packet: Packet, now: Instant) {
        let Some(link) = self.bridges.links.get_mut(index) else { return };
        log::trace!("bridge {} <- {}", link.name(), packet.name());
        link.received(&packet, now);
        let active = link.is_active();
        match packet {
            Packet::Connack(connack) => match link.on_connack(&connack, now) {
                Some(accepted) => {
                    let name = accepted.params.name.clone();
                    let version = accepted.params.version;
                    let session_present = accepted.session_present;
                    let Some(remote) = self.sockets.slots.get(conn).map(|c| c.peer) else {
                        return;
                    };
                    self.broker.bridge_up(
                        conn,
                        remote,
                        accepted.params,
                        session_present,
                        now,
                        &mut self.sockets,
                    );
                    let id = self.broker.bridge_free_packet_id(&name).unwrap_or(NonZeroU16::MAX);
                    let subscribe = self.bridges.links.get(index).and_then(|l| l.subscribe(id));
                    if let Some(subscribe) = subscribe {
                        self.sockets.send(conn, version, &subscribe);
                    }
                }
                None => self.sockets.close(conn),
            },
            Packet::Publish(mut publish) if active => {
                link.map_inbound(&mut publish);
                self.broker.handle(conn, Packet::Publish(publish), now, &mut self.sockets);
            }
            packet @ (Packet::Puback(_)
            | Packet::Pubrec(_)
            | Packet::Pubrel(_)
            | Packet::Pubcomp(_))
                if active =>
            {
                self.broker.handle(conn, packet, now, &mut self.sockets);
            }
            Packet::Suback(suback) if active => link.on_suback(&suback.reasons),
            Packet::Unsuback(_) | Packet::Pingresp if active => {}
            Packet::Disconnect(disconnect) => {
                link.closing_because(&format!(
                    "DISCONNECT from the remote: {:?}",
                    disconnect.reason
                ));
                self.sockets.close(conn);
            }
            other => {
                link.closing_because(&format!("unexpected {} from the remote", other.name()));
                self.sockets.close(conn);
            }
        }
    }

    /// A peer-side reason for a link's close, kept for its log line.
    pub(super) fn note_link_close(&mut self, conn: ConnId, why: &str) {
        if let Some(index) = self.link_of(conn) {
            if let Some(link) = self.bridges.links.get_mut(index) {
                link.closing_because(why);
            }
        }
    }

    /// A link's socket is gone (after `Broker::on_closed`): back off, and publish the state
    /// "0" if it had been up.
    pub(super) fn link_closed(&mut self, index: usize, now: Instant) {
        let Some(link) = self.bridges.links.get_mut(index) else { return };
        if link.closed("connection closed", now) {
            let name = link.name().to_string();
            self.broker.bridge_down(&name, now, &mut self.sockets);
        }
    }
}
