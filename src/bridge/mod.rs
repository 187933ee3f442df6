//! Bridges: outbound MQTT client links from this broker to upstream brokers.
//!
//! Contract: this module is the pure client side of one link, sans-I/O like the broker core.
//! A [`Link`] is a state machine driven with `now` by the event loop (`src/net/outbound.rs`,
//! the only code that touches its socket): it says what to do next — resolve the host, connect
//! to an address, send a packet, close — and when it next needs to be woken
//! ([`Link::deadline`]). It reads no clock, opens no socket, runs no SQL. What is carried over
//! the link (queueing, re-sending, acknowledgements) is the broker core's bridge session (see
//! `broker/bridge.rs`); this module only gets the link up, keeps it alive, maps the topics of
//! inbound messages, and takes it down.
//!
//! States, named after what they wait for: `Backoff` (the next attempt's time) -> `Resolving`
//! (host names only: a resolver thread) -> `Connecting` (TCP connect, with a timeout) ->
//! `AwaitConnack` (CONNECT sent — with TLS, queued behind the handshake —, with a timeout that
//! bounds the TLS handshake too) -> `Active` -> `Backoff`. Every failure goes to
//! `Backoff` with an exponential, jittered delay between `backoff_min` and `backoff_max`, so a
//! link that keeps failing never spins. A remote that stops answering without closing is caught
//! by keep-alive: a PINGREQ when it was silent for half the keep-alive (and at least once per
//! keep-alive, so the remote hears from us), and the link is dropped after 1.5 x keep-alive of
//! silence.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU16;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::broker::{ConnId, LinkParams};
use crate::codec::{
    topic, Connack, Connect, ConnectProperties, Packet, ProtocolVersion, Publish, QoS, ReasonCode,
    RetainHandling, Subscribe, SubscriptionOptions,
};
use crate::config::BridgeConfig;

/// Longest wait for the TCP connect and for CONNACK (the keep-alive bounds it too).
const MAX_HANDSHAKE: Duration = Duration::from_secs(10);

/// What a link waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// The next attempt starts at `until`.
    Backoff { until: Instant },
    /// A resolver thread looks the host name up.
    Resolving,
    /// Non-blocking TCP connect to the remote in progress.
    Connecting { conn: ConnId, deadline: Instant },
    /// CONNECT sent; CONNACK due by `deadline`.
    AwaitConnack { conn: ConnId, deadline: Instant },
    /// Accepted by the remote.
    Active {
        conn: ConnId,
        since: Instant,
        last_received: Instant,
        last_ping: Instant,
        ping_outstanding: bool,
    },
}

/// What the event loop must do for a link.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Resolve `host:port` off the loop and call [`Link::resolved`].
    Resolve {
        host: String,
        port: u16,
    },
    /// Open a non-blocking TCP connection and call [`Link::connecting`] (or
    /// [`Link::failed`]).
    Connect(SocketAddr),
    Send(ConnId, Packet),
    /// Close the link's socket; [`Link::closed`] follows when it is gone.
    Close(ConnId),
}

/// What an accepted CONNACK gives the event loop.
#[derive(Debug)]
pub struct Accepted {
    pub params: LinkParams,
    pub session_present: bool,
}

pub struct Link {
    pub config: Rc<BridgeConfig>,
    state: State,
    /// Consecutive failed attempts (0 after a link that stayed up for a keep-alive).
    failures: u32,
    /// xorshift state for the backoff jitter.
    rng: u64,
    /// Why the link is being closed, from our side (a timeout, a refusal), for the log line.
    close_reason: Option<String>,
    /// Connection attempts started (for logs and tests).
    pub attempts: u64,
    forwards: Rc<[(String, crate::config::TopicMap)]>,
    /// The broker is stopping: no further attempt.
    stopping: bool,
    /// The remote filters of the subscriptions, for mapping inbound topics.
    remote_filters: Vec<String>,
    keepalive: Duration,
}

impl Link {
    /// A link that makes its first attempt at `now`. `seed` varies the jitter between links.
    pub fn new(config: Rc<BridgeConfig>, now: Instant, seed: u64) -> Link {
        let forwards = LinkParams::forwards_of(&config.forwards);
        let remote_filters = config.subscriptions.iter().map(|s| s.remote_filter()).collect();
        let keepalive = Duration::from_secs(u64::from(config.keepalive.max(1)));
        Link {
            config,
            state: State::Backoff { until: now },
            failures: 0,
            rng: seed | 1,
            close_reason: None,
            attempts: 0,
            forwards,
            stopping: false,
            remote_filters,
            keepalive,
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The link's connection, once a socket exists.
    pub fn conn(&self) -> Option<ConnId> {
        match self.state {
            State::Connecting { conn, .. }
            | State::AwaitConnack { conn, .. }
            | State::Active { conn, .. } => Some(conn),
            State::Backoff { .. } | State::Resolving => None,
        }
    }

    pub fn is_active(&self) -> bool {
        matches!(self.state, State::Active { .. })
    }

    /// The MQTT version the link's packets are decoded and encoded with.
    pub fn version(&self) -> ProtocolVersion {
        self.config.version
    }

    /// When [`Link::on_timer`] must run next.
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Backoff { until } => Some(until),
            State::Resolving => None,
            State::Connecting { deadline, .. } | State::AwaitConnack { deadline, .. } => {
                Some(deadline)
            }
            State::Active { last_received, last_ping, ping_outstanding, .. } => {
                let dead = last_received + self.keepalive.mul_f64(1.5);
                Some(dead.min(self.ping_due(last_received, last_ping, ping_outstanding)))
            }
        }
    }

    fn ping_due(&self, last_received: Instant, last_ping: Instant, outstanding: bool) -> Instant {
        let every = last_ping + self.keepalive;
        if outstanding {
            every
        } else {
            every.min(last_received + self.keepalive / 2)
        }
    }

    fn handshake_timeout(&self) -> Duration {
        self.keepalive.min(MAX_HANDSHAKE)
    }

    /// Time passed: start an attempt, give up a handshake, ping, or drop a silent remote.
    pub fn on_timer(&mut self, now: Instant) -> Option<Step> {
        if self.stopping {
            return None;
        }
        match self.state {
            State::Backoff { until } if until <= now => {
                self.attempts += 1;
                let host = self.config.host.as_str();
                match host.parse::<IpAddr>() {
                    Ok(ip) => Some(Step::Connect(SocketAddr::new(ip, self.config.port))),
                    Err(_) => {
                        self.state = State::Resolving;
                        Some(Step::Resolve { host: host.to_string(), port: self.config.port })
                    }
                }
            }
            State::Backoff { .. } | State::Resolving => None,
            State::Connecting { conn, deadline } | State::AwaitConnack { conn, deadline }
                if deadline <= now =>
            {
                let what = match self.state {
                    State::Connecting { .. } => "TCP connect",
                    _ if self.config.tls.is_some() => "TLS handshake and CONNACK",
                    _ => "CONNACK",
                };
                self.close_reason =
                    Some(format!("no {what} within {:?}", self.handshake_timeout()));
                Some(Step::Close(conn))
            }
            State::Connecting { .. } | State::AwaitConnack { .. } => None,
            State::Active { conn, since, last_received, last_ping, ping_outstanding } => {
                if now >= last_received + self.keepalive.mul_f64(1.5) {
                    self.close_reason = Some(format!(
                        "remote silent for 1.5 x keepalive ({}s)",
                        self.keepalive.as_secs()
                    ));
                    return Some(Step::Close(conn));
                }
                if now >= self.ping_due(last_received, last_ping, ping_outstanding) {
                    self.state = State::Active {
                        conn,
                        since,
                        last_received,
                        last_ping: now,
                        ping_outstanding: true,
                    };
                    return Some(Step::Send(conn, Packet::Pingreq));
                }
                None
            }
        }
    }

    /// The resolver's answer (the first address is used).
    pub fn resolved(&mut self, result: Result<SocketAddr, String>, now: Instant) -> Option<Step> {
        if self.state != State::Resolving {
            return None;
        }
        match result {
            Ok(addr) => Some(Step::Connect(addr)),
            Err(why) => {
                self.failed(&format!("cannot resolve {:?}: {why}", self.config.host), now);
                None
            }
        }
    }

    /// A non-blocking connect to the remote was started on `conn`.
    pub fn connecting(&mut self, conn: ConnId, now: Instant) {
        self.state = State::Connecting { conn, deadline: now + self.handshake_timeout() };
    }

    /// No connection could even be started (or the name did not resolve): back off.
    pub fn failed(&mut self, why: &str, now: Instant) {
        let delay = self.next_delay();
        log::warn!(
            "bridge {}: cannot connect to {}: {why}; next attempt in {}",
            self.config.name,
            self.config.address,
            crate::config::format_duration(delay)
        );
        self.state = State::Backoff { until: now + delay };
    }

    /// The TCP connection is up: the CONNECT to send.
    pub fn tcp_connected(
        &mut self,
        now: Instant,
        receive_maximum: u16,
        max_packet_size: u32,
    ) -> Option<Step> {
        let State::Connecting { conn, .. } = self.state else { return None };
        self.state = State::AwaitConnack { conn, deadline: now + self.handshake_timeout() };
        let c = &self.config;
        let v5 = c.version == ProtocolVersion::V5;
        let properties = if v5 {
            ConnectProperties {
                // Keep our session on the remote unless a clean start is asked for.
                session_expiry_interval: Some(if c.clean_start { 0 } else { u32::MAX }),
                receive_maximum: Some(receive_maximum),
                maximum_packet_size: Some(max_packet_size),
                ..ConnectProperties::default()
            }
        } else {
            ConnectProperties::default()
        };
        let connect = Connect {
            protocol: Some(c.version),
            clean_start: c.clean_start,
            keep_alive: c.keepalive,
            client_id: c.clientid.clone(),
            will: None,
            username: c.username.clone(),
            password: c.password.as_ref().map(|p| p.as_bytes().to_vec()),
            properties,
        };
        Some(Step::Send(conn, Packet::Connect(Box::new(connect))))
    }

    /// Any packet from the remote: it is alive.
    pub fn received(&mut self, packet: &Packet, now: Instant) {
        if let State::Active { conn, since, last_ping, ping_outstanding, .. } = self.state {
            let ping_outstanding = ping_outstanding && !matches!(packet, Packet::Pingresp);
            self.state =
                State::Active { conn, since, last_received: now, last_ping, ping_outstanding };
        }
    }

    /// The remote's CONNACK. Accepted: the link's terms for the broker core. Refused (or not
    /// expected now): `None` — the caller closes the link; the reason (with the reason code) is
    /// logged by [`Link::closed`], which also starts the backoff.
    pub fn on_connack(&mut self, connack: &Connack, now: Instant) -> Option<Accepted> {
        let State::AwaitConnack { conn, .. } = self.state else {
            self.closing_because("unexpected CONNACK");
            return None;
        };
        if connack.reason != ReasonCode::Success {
            let code = match self.config.version {
                ProtocolVersion::V5 => connack.reason.to_byte(),
                ProtocolVersion::V31 | ProtocolVersion::V311 => {
                    connack.reason.connack_return_code_v3()
                }
            };
            self.closing_because(&format!(
                "CONNECT refused by the remote: {:?} (0x{code:02x})",
                connack.reason
            ));
            return None;
        }
        let p = &connack.properties;
        if let Some(secs) = p.server_keep_alive.filter(|s| *s > 0) {
            self.keepalive = Duration::from_secs(u64::from(secs));
        }
        self.state = State::Active {
            conn,
            since: now,
            last_received: now,
            last_ping: now,
            ping_outstanding: false,
        };
        let max_qos = p.maximum_qos.and_then(QoS::from_bits).unwrap_or(QoS::ExactlyOnce);
        let params = LinkParams {
            name: self.config.name.clone(),
            version: self.config.version,
            window: self.config.max_inflight.min(p.receive_maximum.unwrap_or(u16::MAX)),
            max_packet_size: p.maximum_packet_size.unwrap_or(u32::MAX),
            max_qos,
            retain_available: p.retain_available != Some(0),
            remaps: LinkParams::remaps_of(&self.forwards),
            forwards: self.forwards.clone(),
        };
        log::info!(
            "bridge {}: connected to {} as {:?} ({:?}, session present: {}, window {}, \
             maximum QoS {}, retain {})",
            self.config.name,
            self.config.address,
            self.config.clientid,
            self.config.version,
            connack.session_present,
            params.window,
            max_qos.bits(),
            if params.retain_available { "available" } else { "unavailable" }
        );
        Some(Accepted { params, session_present: connack.session_present })
    }

    /// The SUBSCRIBE for the bridge's `subscriptions` (none if it has none), with `packet_id`
    /// (one its session has not in flight). 5.0: No Local, so the remote does not send back
    /// what we forward; Retain As Published, so RETAIN arrives as published.
    pub fn subscribe(&self, packet_id: NonZeroU16) -> Option<Packet> {
        let v5 = self.config.version == ProtocolVersion::V5;
        let filters: Vec<(String, SubscriptionOptions)> = self
            .config
            .subscriptions
            .iter()
            .map(|s| {
                let options = SubscriptionOptions {
                    qos: s.qos,
                    no_local: v5,
                    retain_as_published: v5,
                    // 5.0: retained messages only when the remote had no such subscription for
                    // us yet, not again on every reconnect of a kept session.
                    retain_handling: RetainHandling::SendAtNewSubscribe,
                };
                (s.remote_filter(), options)
            })
            .collect();
        if filters.is_empty() {
            return None;
        }
        Some(Packet::Subscribe(Subscribe { packet_id, filters, properties: Default::default() }))
    }

    /// The remote's SUBACK: one warning per refused filter.
    pub fn on_suback(&self, reasons: &[ReasonCode]) {
        for (sub, reason) in self.config.subscriptions.iter().zip(reasons) {
            if reason.is_error() {
                log::warn!(
                    "bridge {}: the remote refused subscription {:?}: {reason:?}",
                    self.config.name,
                    sub.remote_filter()
                );
            }
        }
    }

    /// Maps an inbound PUBLISH's topic: the first subscription whose remote filter matches
    /// gives the topic here (remote prefix replaced by the local one).
    pub fn map_inbound(&self, publish: &mut Publish) {
        let found = self
            .remote_filters
            .iter()
            .zip(&self.config.subscriptions)
            .find(|(filter, _)| topic::matches(filter, &publish.topic));
        if let Some((_, map)) = found {
            if map.local_prefix != map.remote_prefix {
                if let Some(rest) = publish.topic.strip_prefix(map.remote_prefix.as_str()) {
                    publish.topic = Rc::from(format!("{}{rest}", map.local_prefix));
                }
            }
        }
    }

    /// The broker is stopping: the link closes for good (no backoff, no further attempt).
    pub fn stop(&mut self) {
        self.stopping = true;
        self.closing_because("edgemq is stopping");
    }

    /// Remembers why we are closing the link (for the log line when it is gone).
    pub fn closing_because(&mut self, why: &str) {
        if self.close_reason.is_none() {
            self.close_reason = Some(why.to_string());
        }
    }

    /// The link's socket is gone (`why` as the event loop saw it). Returns whether the link had
    /// been accepted (its state must be published as "0").
    pub fn closed(&mut self, why: &str, now: Instant) -> bool {
        let was_active = match self.state {
            State::Active { since, .. } => {
                // A link that stayed up for a keep-alive starts the backoff from the bottom.
                if now.saturating_duration_since(since) >= self.keepalive {
                    self.failures = 0;
                }
                true
            }
            _ => false,
        };
        let reason = self.close_reason.take().unwrap_or_else(|| why.to_string());
        if self.stopping {
            log::info!(
                "bridge {}: disconnected from {}: {reason}",
                self.config.name,
                self.config.address
            );
            // Never due: the loop is ending.
            self.state = State::Resolving;
            return was_active;
        }
        let delay = self.next_delay();
        let verb = if was_active { "disconnected from" } else { "connection to" };
        let tail = if was_active { "" } else { " failed" };
        log::warn!(
            "bridge {}: {verb} {}{tail}: {reason}; next attempt in {}",
            self.config.name,
            self.config.address,
            crate::config::format_duration(delay)
        );
        self.state = State::Backoff { until: now + delay };
        was_active
    }

    /// The next backoff: `backoff_min * 2^(failures - 1)` capped at `backoff_max`, then a random
    /// part of it between a half and all, never below `backoff_min`.
    fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let (min, max) = (self.config.backoff_min, self.config.backoff_max);
        let doublings = self.failures.saturating_sub(1).min(32);
        let base = min.saturating_mul(1u32 << doublings.min(31)).min(max);
        // xorshift64: jitter only, no need for a better generator.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let fraction = 0.5 + (self.rng % 1000) as f64 / 2000.0;
        // Whole milliseconds: the log line shows "159ms", not "159.812345ms".
        let delay = Duration::from_millis(base.mul_f64(fraction).as_millis() as u64);
        delay.clamp(min, max)
    }
}

#[cfg(test)]
mod tests;
