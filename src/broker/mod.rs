//! The broker core: connections' protocol state, sessions, the topic tree, retained messages,
//! wills, keep-alive and every QoS flow.
//!
//! Contract: `Broker` is driven by calls from the event loop — a connection was accepted, a
//! packet arrived, a decode failed, a socket closed, time passed, a loop pass ended — each
//! with `now` passed in. It answers only through the [`Outbox`] (packets to send, connections
//! to close). It owns no socket, reads no clock and runs no SQL, so it is tested by hand-driven
//! calls. Every collection is bounded by [`Limits`]; at a limit the client gets a protocol
//! answer and a log line.

mod access;
mod ack;
mod alias;
mod backpressure;
mod bridge;
mod connect;
mod connection;
mod deliver;
mod deque;
mod disconnect;
mod limits;
mod logging;
mod message;
mod origin;
mod outgoing;
pub mod output_budget;
mod packet_ids;
mod publish;
mod restore;
mod retain;
mod session;
mod session_index;
mod shared;
mod stats;
mod status;
mod subscribe;
mod sys;
mod timers;
mod topic_tree;

#[cfg(test)]
mod tests;

use std::rc::Rc;
use std::time::Instant;

use crate::codec::{
    DecodeContext, DecodeError, Disconnect, Packet, ProtocolVersion, ReasonCode, Role,
};

pub use access::Identity;
pub use backpressure::{OUTPUT_HARD_FACTOR, QUEUE_HARD_FACTOR};
pub use bridge::{bridge_client_id, BridgeSpec, LinkParams, BRIDGE_CLIENT_PREFIX};
pub use connection::Phase;
pub use limits::{Limits, OutboundTopicAlias, SharedPolicy, SlowSubscriber};
pub use message::{Delivery, Message};
pub use origin::{ListenerId, Origin};
pub use output_budget::OutputTotal;
pub use restore::Restored;
pub use session::{SessionExpiry, SessionId};
pub use stats::{Gauges, Stats};
pub use status::{Backlog, Backlogs};
pub use sys::{BridgeMetrics, Figure, Kind, Load, Metrics, Process, FIGURES};

use crate::codec::PubAck;
use crate::slab::Slab;
use crate::store::{Commit, Failure, Store};
use connection::Conn;
use logging::More;
use outgoing::Transmitted;
use retain::RetainedStore;
use session::Session;
use timers::Timers;
use topic_tree::{SubscriberEntry, TopicTree};

/// An acknowledgement waiting for the end of the pass.
#[derive(Debug)]
struct PendingAck {
    conn: ConnId,
    packet: Packet,
    /// Its message was written to the store: refuse it if the commit fails.
    needs_store: bool,
}

/// A connection, named by the event loop (its slab index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u32);

/// Where the broker's answers go. The event loop implements it over real sockets; tests
/// record the calls.
pub trait Outbox {
    /// Queue `packet` for `conn`, encoded for `version`.
    fn send(&mut self, conn: ConnId, version: ProtocolVersion, packet: &Packet);
    /// Close `conn` once what is queued for it has been written (best effort).
    fn close(&mut self, conn: ConnId);
    /// Bytes queued for `conn` and not yet written to its socket.
    fn backlog(&self, conn: ConnId) -> usize;
    /// Input from `conn` was paused (back-pressure) and may be read again.
    fn resume(&mut self, conn: ConnId);
    /// The unwritten output of every connection together (`output_budget.rs`). An outbox
    /// without connections (restoring the store, a fuzz target) holds none.
    fn output_total(&self) -> OutputTotal {
        OutputTotal::default()
    }
}

pub struct Broker {
    limits: Limits,
    conns: Vec<Option<Conn>>,
    /// Connections that completed CONNECT and are not closed.
    active_connections: usize,
    /// Shrinks again when sessions end (see `slab.rs`).
    sessions: Slab<Session>,
    /// Sessions by client id and by store row.
    index: session_index::SessionIndex,
    tree: TopicTree,
    /// Shared subscription groups (their members are tree entries).
    shared: shared::SharedGroups,
    /// Reused by every shared-group choice.
    share_scratch: Vec<usize>,
    /// State of the `random` shared policy's generator (0 until first used).
    random_state: u64,
    /// Group messages of ended sessions waiting to move to another member, and whether the
    /// move loop is running (`shared.rs`, `reroute_shared`).
    reroutes: std::collections::VecDeque<(shared::ShareId, Delivery)>,
    rerouting: bool,
    /// The topic of a PUBLISH that carries a known outbound alias: one shared empty string
    /// instead of an allocation per message.
    empty_topic: Rc<str>,
    retained: RetainedStore,
    timers: Timers,
    /// PUBACK/PUBREC/PUBCOMP held until the end of the pass (and its store commit).
    pending_acks: Vec<PendingAck>,
    /// The connections whose held acknowledgements (PUBACK, PUBREC, PUBCOMP) the last pass
    /// that had any released (sorted, once each): the loop expects their next messages (see
    /// `net`'s group commit). At most one entry per connection.
    answered: Vec<ConnId>,
    /// Whether the last `end_of_pass` replaced `answered`.
    answered_now: bool,
    /// All connections' unwritten output after the last loop pass's writes (for `$SYS` and
    /// `/metrics`; `relieve_congestion` notes it).
    output_after_pass: OutputTotal,
    /// Reused by every publish so routing allocates nothing.
    match_scratch: Vec<SubscriberEntry>,
    store: Store,
    /// What routing the current publish did (read by the publish handler for its ack).
    route_outcome: publish::RouteOutcome,
    /// Store-backed sessions whose send mark moved during this pass.
    send_marks_dirty: Vec<SessionId>,
    /// The connection whose PUBLISH is being routed (the one to pause on congestion).
    current_publisher: Option<ConnId>,
    /// Sessions over a soft queue or output limit, and the publishers paused for them.
    congested: Vec<SessionId>,
    paused: Vec<ConnId>,
    /// Rate limits of the lines clients can repeat at will.
    logs: logging::Logs,
    next_assigned_id: u64,
    next_timer_generation: u32,
    stats: Stats,
    /// Auth rules (swapped whole on reload), login back-off, their log limiters.
    access: access::AccessState,
    /// The `$SYS` publisher (`sys.rs`).
    sys: sys::SysTree,
}

impl Broker {
    /// A broker over `store`; call [`Broker::restore`] to bring back what the store holds.
    pub fn new(limits: Limits, store: Store) -> Broker {
        let retained = RetainedStore::new(limits.max_retained_messages, limits.max_retained_bytes);
        Broker {
            conns: Vec::with_capacity(limits.max_connections),
            active_connections: 0,
            sessions: Slab::new(limits.max_sessions),
            index: session_index::SessionIndex::with_capacity(limits.max_sessions),
            tree: TopicTree::new(),
            shared: shared::SharedGroups::default(),
            share_scratch: Vec::new(),
            random_state: 0,
            empty_topic: Rc::from(""),
            reroutes: std::collections::VecDeque::new(),
            rerouting: false,
            retained,
            timers: Timers::default(),
            pending_acks: Vec::new(),
            answered: Vec::new(),
            answered_now: false,
            output_after_pass: OutputTotal::default(),
            match_scratch: Vec::new(),
            store,
            route_outcome: publish::RouteOutcome::default(),
            send_marks_dirty: Vec::new(),
            current_publisher: None,
            congested: Vec::new(),
            paused: Vec::new(),
            logs: logging::Logs::default(),
            next_assigned_id: 0,
            next_timer_generation: 0,
            stats: Stats::default(),
            access: access::AccessState::default(),
            sys: sys::SysTree::default(),
            limits,
        }
    }

    /// SIGHUP: see [`Limits::apply_live`].
    pub fn apply_live_limits(&mut self, new: &Limits) {
        self.limits.apply_live(new);
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The event loop read `received` and wrote `sent` bytes on MQTT connections.
    pub fn count_io(&mut self, received: usize, sent: usize) {
        self.stats.bytes_received += received as u64;
        self.stats.bytes_sent += sent as u64;
    }

    /// One more connection is active: the high-water mark follows.
    fn connection_activated(&mut self) {
        self.active_connections += 1;
        self.stats.max_connected = self.stats.max_connected.max(self.active_connections as u64);
    }

    /// Current sizes of what the broker holds, for `$SYS` and logs.
    pub fn gauges(&self) -> Gauges {
        let sessions = self.index.len();
        Gauges {
            connections: self.active_connections,
            sessions,
            subscriptions: self.tree.len(),
            retained_messages: self.retained.len(),
            retained_bytes: self.retained.bytes(),
            queued_messages: self.sessions.values().map(|s| s.queue.len()).sum(),
            inflight_messages: self.sessions.values().map(|s| s.inflight.len()).sum(),
        }
    }

    /// How the event loop must decode the next packet of `conn`. Before CONNECT the size
    /// limit is also `max_connect_packet_size`: an unknown peer gets a small buffer only.
    pub fn decode_context(&self, conn: ConnId) -> DecodeContext {
        let version = self.conn(conn).and_then(|c| c.version);
        let max_packet_size = match version {
            None => self.limits.max_packet_size.min(self.limits.max_connect_packet_size),
            Some(_) => self.limits.max_packet_size,
        };
        DecodeContext { version, max_packet_size, role: Role::Server }
    }

    /// Whether `conn` is still waiting for its CONNECT (what `net` counts as pending).
    pub fn awaits_connect(&self, conn: ConnId) -> bool {
        self.conn(conn).is_some_and(|c| c.phase == Phase::AwaitConnect)
    }

    /// Whether input from `conn` should still be read and handled.
    pub fn wants_input(&self, conn: ConnId) -> bool {
        self.conn(conn).is_some_and(|c| c.phase != Phase::Closed)
    }

    /// A new connection from `origin`; it must send CONNECT within the connect timeout (a TLS
    /// handshake included).
    pub fn on_accept(&mut self, conn: ConnId, origin: Origin, now: Instant) {
        let index = conn.0 as usize;
        if self.conns.len() <= index {
            self.conns.resize_with(index + 1, || None);
        }
        let generation = self.next_generation();
        self.conns[index] = Some(Conn::new(origin, now, generation));
        self.arm_conn_timer(conn, now + self.limits.connect_timeout);
        self.stats.connections_accepted += 1;
    }

    /// One decoded packet from `conn`.
    pub fn handle(&mut self, conn: ConnId, packet: Packet, now: Instant, out: &mut dyn Outbox) {
        let Some(state) = self.conn_mut(conn) else {
            return;
        };
        if state.phase == Phase::Closed {
            return;
        }
        // Before CONNECT `last_seen` is the accept time the connect timeout counts from: only
        // CONNECT itself moves it (anything else there is refused, and must not extend it).
        if state.phase != Phase::AwaitConnect || matches!(packet, Packet::Connect(_)) {
            state.last_seen = now;
        }
        log::trace!("{conn:?} <- {}", packet.name());
        self.stats.packets_received += 1;
        match packet {
            Packet::Connect(connect) => self.handle_connect(conn, *connect, now, out),
            Packet::Publish(publish) => self.handle_publish(conn, publish, now, out),
            Packet::Puback(ack) => self.handle_puback(conn, ack, now, out),
            Packet::Pubrec(ack) => self.handle_pubrec(conn, ack, now, out),
            Packet::Pubrel(ack) => self.handle_pubrel(conn, ack),
            Packet::Pubcomp(ack) => self.handle_pubcomp(conn, ack, now, out),
            Packet::Subscribe(subscribe) => self.handle_subscribe(conn, subscribe, now, out),
            Packet::Unsubscribe(unsubscribe) => {
                self.handle_unsubscribe(conn, unsubscribe, now, out)
            }
            // Answered after the pass's commit like the acks, so a PINGRESP tells the client
            // that everything it sent before is as durable as it will be.
            Packet::Pingreq => self.queue_ack(conn, Packet::Pingresp, false),
            Packet::Disconnect(disconnect) => self.handle_disconnect(conn, disconnect, now, out),
            Packet::Auth(_) => {
                // No authentication method is offered, so AUTH is never expected (MQTT-4.12.0-1).
                self.protocol_error(conn, ReasonCode::ProtocolError, "unexpected AUTH", now, out)
            }
            // The codec refuses server-to-client packets from clients (Role::Server).
            Packet::Connack(_) | Packet::Suback(_) | Packet::Unsuback(_) | Packet::Pingresp => self
                .protocol_error(
                    conn,
                    ReasonCode::ProtocolError,
                    "server-only packet from a client",
                    now,
                    out,
                ),
        }
    }

    /// The bytes from `conn` are not a valid packet (`version` is what a failed CONNECT
    /// declared, if it got that far). The spec's reaction, a log line, and the connection
    /// goes (MQTT-4.13.1-1).
    pub fn on_decode_error(
        &mut self,
        conn: ConnId,
        error: &DecodeError,
        connect_version: Option<ProtocolVersion>,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let Some(phase) = self.conn(conn).map(|c| c.phase) else {
            return;
        };
        self.stats.malformed_packets += 1;
        match phase {
            Phase::Closed => {}
            Phase::AwaitConnect => {
                if let Some(more) = self.logs.invalid_connect.allow(now) {
                    let peer = self.peer_of(conn).map(|p| format!(" from {p}")).unwrap_or_default();
                    log::info!("{conn:?}{peer}: invalid CONNECT: {error}; closing{}", More(more));
                }
                let reason = error.reason_code();
                // MQTT-3.1.2-2: an unsupported level gets CONNACK 0x01 in the 3.1.1 format,
                // also a level above 5: a client of a future version cannot be assumed to read
                // a 5.0 CONNACK, while the 4-byte 3.1.1 one is what Mosquitto sends and what
                // every client understands. A v5 CONNECT that failed gets its reason code
                // (MQTT 5.0 §4.13.1).
                let reply_version = match (error, connect_version) {
                    (DecodeError::UnsupportedProtocolVersion(_), _) => Some(ProtocolVersion::V311),
                    (DecodeError::InvalidProtocolName, _) => None,
                    (_, Some(ProtocolVersion::V5)) => Some(ProtocolVersion::V5),
                    (_, _) => None,
                };
                if let Some(version) = reply_version {
                    let connack = Packet::Connack(crate::codec::Connack {
                        session_present: false,
                        reason,
                        properties: Default::default(),
                    });
                    out.send(conn, version, &connack);
                }
                self.close_conn(conn, now, out);
            }
            Phase::Active(_) => {
                let reason = error.reason_code();
                self.protocol_error(conn, reason, &error.to_string(), now, out);
            }
        }
    }

    /// The socket of `conn` is gone (peer closed, I/O error, or after `Outbox::close`).
    /// Always called exactly once per accepted connection.
    pub fn on_closed(&mut self, conn: ConnId, now: Instant, out: &mut dyn Outbox) {
        self.detach(conn, now, out);
        self.cancel_conn_timer(conn);
        if let Some(slot) = self.conns.get_mut(conn.0 as usize) {
            *slot = None;
        }
        // `net` reuses its lowest free ids, so the tail empties as clients leave.
        crate::slab::trim_tail(&mut self.conns);
    }

    /// End of one event-loop pass: commit this pass's store writes (as the durability mode
    /// says), then release the acknowledgements that promised them — or, if the commit
    /// failed, refuse them (v5 reason code; 3.1.1 publishers are disconnected unacknowledged
    /// so they send again).
    pub fn end_of_pass(&mut self, now: Instant, out: &mut dyn Outbox) {
        self.save_send_marks();
        let failure = match self.store.commit_if_due(now) {
            Commit::Failed(error) => Some(error),
            Commit::Idle | Commit::Deferred | Commit::Committed { .. } => None,
        };
        if failure.is_some() {
            self.resync_after_failed_commit();
        }
        let mut pending = std::mem::take(&mut self.pending_acks);
        let publish_ack = |a: &PendingAck| {
            matches!(a.packet, Packet::Puback(_) | Packet::Pubrec(_) | Packet::Pubcomp(_))
        };
        self.answered_now = pending.iter().any(publish_ack);
        if self.answered_now {
            self.answered.clear();
            self.answered.extend(pending.iter().filter(|a| publish_ack(a)).map(|a| a.conn));
            self.answered.sort_unstable();
            self.answered.dedup();
        }
        for ack in &pending {
            let Some(state) = self.conn(ack.conn).filter(|c| c.phase != Phase::Closed) else {
                continue;
            };
            let Some(version) = state.version else { continue };
            match (&failure, ack.needs_store) {
                (Some(error), true) => self.refuse_ack(ack, version, error, now, out),
                _ => {
                    self.transmit(out, ack.conn, version, &ack.packet, now);
                }
            }
        }
        pending.clear();
        if self.pending_acks.is_empty() {
            self.pending_acks = pending;
        }
    }

    /// The connections whose held acknowledgements the last pass that had any released, and
    /// whether that was the last pass (see the `answered` field).
    pub fn answered(&self) -> (&[ConnId], bool) {
        (&self.answered, self.answered_now)
    }

    /// One write per session whose messages were sent this pass (not one per message).
    fn save_send_marks(&mut self) {
        let dirty = std::mem::take(&mut self.send_marks_dirty);
        for &session_id in &dirty {
            let Some(session) = self.sessions.get_mut(session_id.0) else {
                continue;
            };
            let Some(stored) = session.stored.as_mut() else { continue };
            if stored.first_unsent != stored.saved_first_unsent {
                stored.saved_first_unsent = stored.first_unsent;
                self.store.save_send_mark(stored.id, stored.first_unsent);
            }
        }
        let mut dirty = dirty;
        dirty.clear();
        self.send_marks_dirty = dirty;
    }

    /// A graceful stop: every client is disconnected (MQTT 5.0 clients are told "Server
    /// shutting down"), sessions go offline as on any disconnect (wills follow the usual
    /// rules), and the store commits whatever is open, also in `batch` mode.
    pub fn shutdown(&mut self, now: Instant, out: &mut dyn Outbox) {
        let active: Vec<ConnId> = (0..self.conns.len())
            .map(|i| ConnId(i as u32))
            .filter(|&c| self.wants_input(c))
            .collect();
        for conn in active {
            // A bridge link is our client connection: it ends with a normal DISCONNECT
            // ("Server shutting down" is for servers to send).
            let link = self.conn(conn).is_some_and(|c| c.link.is_some());
            let version = self.conn(conn).and_then(|c| c.version);
            if version == Some(ProtocolVersion::V5) || link {
                let reason =
                    if link { ReasonCode::Success } else { ReasonCode::ServerShuttingDown };
                let disconnect = Disconnect { reason, properties: Default::default() };
                self.send(out, conn, &Packet::Disconnect(disconnect), now);
            }
            self.close_conn(conn, now, out);
        }
        self.end_of_pass(now, out);
        if let Commit::Failed(error) = self.store.commit() {
            log::error!("final store commit failed: {error}");
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn queue_ack(&mut self, conn: ConnId, packet: Packet, needs_store: bool) {
        self.pending_acks.push(PendingAck { conn, packet, needs_store });
    }

    fn refuse_ack(
        &mut self,
        ack: &PendingAck,
        version: ProtocolVersion,
        error: &Failure,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let reason =
            if error.disk_full { ReasonCode::QuotaExceeded } else { ReasonCode::UnspecifiedError };
        let client = self.client_label(ack.conn);
        // A full store logs once per episode itself: one line per refused message would flood.
        let level = if error.disk_full { log::Level::Debug } else { log::Level::Warn };
        match (&ack.packet, version) {
            (Packet::Puback(a), ProtocolVersion::V5) => {
                log::log!(level, "{client}: message not stored ({error}); PUBACK {reason:?}");
                let refused = PubAck::with_reason(a.packet_id, reason);
                self.transmit(out, ack.conn, version, &Packet::Puback(refused), now);
            }
            (Packet::Pubrec(a), ProtocolVersion::V5) => {
                log::log!(level, "{client}: message not stored ({error}); PUBREC {reason:?}");
                self.forget_inbound_qos2(ack.conn, a.packet_id.get());
                let refused = PubAck::with_reason(a.packet_id, reason);
                self.transmit(out, ack.conn, version, &Packet::Pubrec(refused), now);
            }
            _ => {
                log::log!(
                    level,
                    "{client}: message not stored ({error}); disconnecting without \
                     acknowledgement so the client sends it again"
                );
                if let Packet::Pubrec(a) = &ack.packet {
                    self.forget_inbound_qos2(ack.conn, a.packet_id.get());
                }
                self.close_conn(ack.conn, now, out);
            }
        }
    }

    fn forget_inbound_qos2(&mut self, conn: ConnId, packet_id: u16) {
        if let Some(session_id) = self.conn(conn).and_then(Conn::session) {
            if let Some(session) = self.session_mut(session_id) {
                session.inbound_qos2.remove(&packet_id);
            }
        }
    }

    /// After a rollback the memory caches may hold rows that no longer exist: drop them and
    /// read the queues again from the store.
    fn resync_after_failed_commit(&mut self) {
        for session in self.sessions.values_mut() {
            if let Some(stored) = session.stored.as_mut() {
                session.queue.clear();
                stored.cached_upto = stored.first_unsent;
            }
        }
    }

    // ---- helpers shared by the handlers -------------------------------------------------

    fn conn(&self, conn: ConnId) -> Option<&Conn> {
        self.conns.get(conn.0 as usize).and_then(Option::as_ref)
    }

    fn conn_mut(&mut self, conn: ConnId) -> Option<&mut Conn> {
        self.conns.get_mut(conn.0 as usize).and_then(Option::as_mut)
    }

    /// The session of `client_id` (tests).
    #[cfg(test)]
    fn session_of(&self, client_id: &str) -> Option<SessionId> {
        self.index.client(&self.sessions, client_id)
    }

    fn session(&self, id: SessionId) -> Option<&Session> {
        self.sessions.get(id.0)
    }

    fn session_mut(&mut self, id: SessionId) -> Option<&mut Session> {
        self.sessions.get_mut(id.0)
    }

    fn next_generation(&mut self) -> u32 {
        self.next_timer_generation = self.next_timer_generation.wrapping_add(1);
        self.next_timer_generation
    }

    /// Sends `packet` to `conn` in its negotiated version (no-op if the connection is gone).
    fn send(&mut self, out: &mut dyn Outbox, conn: ConnId, packet: &Packet, now: Instant) {
        if let Some(version) = self.conn(conn).and_then(|c| c.version) {
            log::trace!("{conn:?} -> {}", packet.name());
            self.transmit(out, conn, version, packet, now);
        }
    }

    /// A protocol violation on an established connection: v5 gets DISCONNECT with `reason`
    /// (MQTT-4.13.2-1), 3.1/3.1.1 just lose the connection (MQTT-4.8.0-1); the will is
    /// published.
    fn protocol_error(
        &mut self,
        conn: ConnId,
        reason: ReasonCode,
        what: &str,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        if let Some(more) = self.logs.protocol_error.allow(now) {
            let client = self.client_label(conn);
            log::info!("{client}: {what}; disconnecting with {reason:?}{}", More(more));
        }
        self.stats.protocol_errors += 1;
        if self.conn(conn).and_then(|c| c.version) == Some(ProtocolVersion::V5) {
            let disconnect = Disconnect { reason, properties: Default::default() };
            self.send(out, conn, &Packet::Disconnect(disconnect), now);
        }
        self.close_conn(conn, now, out);
    }

    /// Marks `conn` closed, detaches its session (will per the rules) and asks the loop to
    /// close the socket.
    fn close_conn(&mut self, conn: ConnId, now: Instant, out: &mut dyn Outbox) {
        self.detach(conn, now, out);
        out.close(conn);
    }

    /// "client-id (ConnId)" for log lines.
    fn client_label(&self, conn: ConnId) -> String {
        match self.conn(conn).and_then(Conn::session).and_then(|s| self.session(s)) {
            Some(session) => format!("client {:?} ({conn:?})", session.client_id),
            None => format!("{conn:?}"),
        }
    }
}
