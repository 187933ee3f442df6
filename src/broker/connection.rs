//! Per-connection protocol state: what the connection waits for, its keep-alive and what the
//! client told us in CONNECT. Owns no socket (that is `net`'s).

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::alias::OutboundAliases;
use super::backpressure::Pause;
use super::bridge::LinkParams;
use super::origin::Origin;
use super::session::SessionId;
use crate::codec::ProtocolVersion;

/// A connection's lifecycle; the only transitions are `AwaitConnect -> Active -> Closed` and
/// `AwaitConnect -> Closed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Accepted; nothing but CONNECT is valid, within the connect timeout.
    AwaitConnect,
    /// CONNACK sent; bound to a session.
    Active(SessionId),
    /// The broker decided to close; input is ignored until `net` reports the socket gone.
    Closed,
}

#[derive(Debug)]
pub struct Conn {
    pub phase: Phase,
    /// Peer, listener, TLS identity.
    pub origin: Origin,
    /// The username this connection authenticated as (from CONNECT, or the client
    /// certificate's CN under `use_identity_as_username`); set when CONNECT is handled.
    pub username: Option<Rc<str>>,
    pub version: Option<ProtocolVersion>,
    /// When the last packet arrived; until CONNECT, when the connection was accepted (no
    /// other packet is handled before CONNECT, so the connect timeout counts from it).
    pub last_seen: Instant,
    /// Silence after which the connection is dropped (keep-alive × multiplier); `None` = off.
    pub keep_alive: Option<Duration>,
    pub timer_generation: u32,
    /// When this connection's timer entry is due, while one is armed.
    pub timer_at: Option<Instant>,
    /// MQTT 5.0 Receive Maximum the client asked for (65535 when absent).
    pub client_receive_maximum: u16,
    /// MQTT 5.0 Maximum Packet Size the client accepts (`u32::MAX` when absent).
    pub client_max_packet_size: u32,
    /// MQTT 5.0 topic aliases, both ways; boxed, and only once a client uses or asks for
    /// them: 8 bytes in every connection instead of 24.
    pub aliases: Option<Box<TopicAliases>>,
    /// MQTT 5.0 Request Problem Information (reason strings allowed); default true.
    pub problem_information: bool,
    /// A 3.1.1 resend timer is pending for this connection.
    pub resend_armed: bool,
    /// Not read for now: it publishes into a congested subscriber (back-pressure).
    /// Boxed: every connection has the field, few are ever paused (48 bytes per connection).
    pub pause: Option<Box<Pause>>,
    /// Set for a bridge's outbound link (see `bridge.rs`): the remote's terms.
    pub link: Option<Rc<LinkParams>>,
}

/// A connection's MQTT 5.0 topic aliases.
#[derive(Debug, Default)]
pub struct TopicAliases {
    /// Aliases the client set on what it publishes (index = alias - 1), sized once to
    /// `mqtt.max_topic_alias` on first use.
    pub inbound: Box<[Option<Rc<str>>]>,
    /// Aliases the broker assigns on what it sends (`alias.rs`); `None`: off, or the client
    /// announced no Topic Alias Maximum.
    pub outbound: Option<OutboundAliases>,
}

impl Conn {
    pub fn new(origin: Origin, now: Instant, generation: u32) -> Conn {
        Conn {
            phase: Phase::AwaitConnect,
            origin,
            username: None,
            version: None,
            last_seen: now,
            keep_alive: None,
            timer_generation: generation,
            timer_at: None,
            client_receive_maximum: u16::MAX,
            client_max_packet_size: u32::MAX,
            aliases: None,
            problem_information: true,
            resend_armed: false,
            pause: None,
            link: None,
        }
    }

    /// When this connection must be dropped if nothing more happens.
    pub fn deadline(&self, connect_timeout: Duration) -> Option<Instant> {
        match self.phase {
            Phase::AwaitConnect => Some(self.last_seen + connect_timeout),
            Phase::Active(_) => self.keep_alive.map(|k| self.last_seen + k),
            Phase::Closed => None,
        }
    }

    pub fn session(&self) -> Option<SessionId> {
        match self.phase {
            Phase::Active(session) => Some(session),
            Phase::AwaitConnect | Phase::Closed => None,
        }
    }
}
