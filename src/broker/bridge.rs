//! Bridge sessions in the broker core: a bridge to a remote broker is an ordinary persistent
//! session named `$bridge/NAME` whose subscriptions are the bridge's `forwards`, and whose
//! "connection" is an outbound link the event loop opened (see `src/bridge/`).
//!
//! Contract: everything a bridge needs from the core is the session machinery clients use —
//! queueing in the store's ring under the caps and overflow policy (per-session caps from the
//! bridge config), the one commit per pass, packet ids derived from ring rows (so re-sends
//! after a restart keep their ids), re-sending with DUP=1 after a reconnect, rows freed by the
//! remote's PUBACK / PUBCOMP, expiry. What this file adds: creating the session from the config
//! at start-up, binding a link once the remote's CONNACK accepted it ([`Broker::bridge_up`]),
//! the per-link adaptations of an outgoing PUBLISH ([`LinkParams::adapt`]: topic prefix
//! mapping, the remote's Maximum QoS and Retain Available) and the retained
//! `$SYS/broker/connection/NAME/state`. Client ids starting `$bridge/` are refused at CONNECT,
//! so no client can take a bridge's session. No socket, no clock read, no SQL here.

use super::session::filter_bytes;
use std::rc::Rc;
use std::time::Instant;

use super::message::Message;
use super::session::{OutboundState, SessionExpiry, SessionId, Subscription};
use super::topic_tree::SubscriberEntry;
use super::{Broker, ConnId, Outbox};
use crate::codec::{topic, ProtocolVersion, Publish, QoS, RetainHandling, SubscriptionOptions};
use crate::config::{Overflow, TopicMap};
use crate::store::{QueueCaps, SessionRow};

pub use crate::config::BRIDGE_CLIENT_PREFIX;

/// The local client id of bridge `name`.
pub fn bridge_client_id(name: &str) -> String {
    format!("{BRIDGE_CLIENT_PREFIX}{name}")
}

/// What the core needs to know of a configured bridge.
#[derive(Debug, Clone)]
pub struct BridgeSpec {
    pub name: String,
    pub version: ProtocolVersion,
    pub forwards: Vec<TopicMap>,
    pub queue_qos0: bool,
    pub max_queued: u64,
    pub max_queued_bytes: u64,
    pub overflow: Overflow,
}

/// One link's terms: what the remote's CONNACK allowed and how outgoing messages are mapped.
#[derive(Debug, Clone)]
pub struct LinkParams {
    pub name: String,
    pub version: ProtocolVersion,
    /// Our `max_inflight` narrowed by the remote's Receive Maximum.
    pub window: u16,
    /// The remote's Maximum Packet Size (`u32::MAX` when absent).
    pub max_packet_size: u32,
    /// The remote's Maximum QoS: QoS 2 messages go out as QoS 1 when it is 1.
    pub max_qos: QoS,
    pub retain_available: bool,
    /// The bridge's forwards, each with its local filter (see [`LinkParams::forwards_of`]).
    pub forwards: Rc<[(String, TopicMap)]>,
    /// Some forward changes the topic (its local and remote prefixes differ); without one,
    /// outgoing topics are not matched against the forwards at all (see [`LinkParams::adapt`]).
    pub remaps: bool,
}

impl LinkParams {
    /// The forwards with their local filters, built once per bridge.
    pub fn forwards_of(maps: &[TopicMap]) -> Rc<[(String, TopicMap)]> {
        maps.iter().map(|m| (m.local_filter(), m.clone())).collect()
    }

    /// Whether any of `forwards` maps a local topic to a different remote one.
    pub fn remaps_of(forwards: &[(String, TopicMap)]) -> bool {
        forwards.iter().any(|(_, m)| m.local_prefix != m.remote_prefix)
    }

    /// Maps a PUBLISH going to the remote: the first forward whose local filter matches gives
    /// the topic (local prefix replaced by the remote one); QoS capped by the remote's Maximum
    /// QoS; RETAIN cleared if the remote does not take retained messages. Every forwarded
    /// message comes here: when no forward has prefixes, the topic stays as it is and is not
    /// matched (that matching was 13 % of a replay's CPU).
    pub fn adapt(&self, publish: &mut Publish) {
        let forward = if self.remaps {
            self.forwards.iter().find(|(filter, _)| topic::matches(filter, &publish.topic))
        } else {
            None
        };
        if let Some((_, map)) = forward {
            if let Some(rest) = publish.topic.strip_prefix(map.local_prefix.as_str()) {
                if map.local_prefix != map.remote_prefix {
                    publish.topic = Rc::from(format!("{}{rest}", map.remote_prefix));
                }
            }
        }
        if publish.qos > self.max_qos {
            publish.qos = self.max_qos;
            if publish.qos == QoS::AtMostOnce {
                publish.packet_id = None;
                publish.dup = false;
            }
        }
        if !self.retain_available {
            publish.retain = false;
        }
    }
}

/// The local subscription options of a forward: No Local (a message that came from the remote
/// is never sent back to it) and Retain As Published (RETAIN crosses the bridge as it was
/// published, as in Mosquitto).
fn forward_options(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        no_local: true,
        retain_as_published: true,
        retain_handling: RetainHandling::DoNotSend,
    }
}

impl Broker {
    /// At start-up, after [`Broker::restore`]: makes sure bridge `spec` has its persistent
    /// session with exactly the configured forwards as subscriptions (a restored session keeps
    /// its queue), and publishes its state as "0". Returns false if no session could be made
    /// (`max_sessions`).
    pub fn add_bridge(&mut self, spec: &BridgeSpec, now: Instant, out: &mut dyn Outbox) -> bool {
        let client_id: Rc<str> = Rc::from(bridge_client_id(&spec.name));
        let session_id = match self.index.client(&self.sessions, &client_id) {
            Some(id) => id,
            None => {
                match self.create_session(client_id.clone(), spec.version, SessionExpiry::Never) {
                    Some(id) => id,
                    None => {
                        log::error!(
                            "bridge {}: no session left (mqtt.max_sessions); not started",
                            spec.name
                        );
                        return false;
                    }
                }
            }
        };
        let row =
            SessionRow { client_id: &client_id, protocol: spec.version, expiry: None, will: None };
        match self.store.save_session(&row) {
            Some(stored_id) => self.bind_store_id(session_id, stored_id),
            None => log::warn!("bridge {}: session not saved; it is kept in memory", spec.name),
        }
        let Some(session) = self.session_mut(session_id) else { return false };
        session.expiry = SessionExpiry::Never;
        session.expires_at = None;
        session.will = None;
        session.will_due = None;
        session.queue_qos0 = Some(spec.queue_qos0);
        let stored = session.stored.as_deref().copied();
        let wanted: Vec<(String, SubscriptionOptions)> =
            spec.forwards.iter().map(|f| (f.local_filter(), forward_options(f.qos))).collect();
        let stale: Vec<String> = session
            .subscriptions
            .keys()
            .filter(|filter| !wanted.iter().any(|(w, _)| w == filter))
            .map(String::from)
            .collect();
        for filter in stale {
            if let Some(session) = self.session_mut(session_id) {
                session.subscriptions.remove(&filter);
                session.subscription_bytes =
                    session.subscription_bytes.saturating_sub(filter_bytes(&filter));
            }
            self.tree_unsubscribe(&filter, session_id);
            if let Some(stored) = stored {
                self.store.delete_subscription(stored.id, &filter);
            }
        }
        for (filter, options) in wanted {
            let Some(session) = self.session_mut(session_id) else { return false };
            let subscription = Subscription { options, subscription_id: None };
            if session.subscriptions.insert(&filter, subscription).is_none() {
                session.subscription_bytes =
                    session.subscription_bytes.saturating_add(filter_bytes(&filter));
            }
            self.tree_subscribe(
                &filter,
                SubscriberEntry {
                    session: session_id,
                    options,
                    subscription_id: None,
                    share: None,
                },
            );
            if let Some(stored) = stored {
                self.store.save_subscription(stored.id, &filter, &options, None);
            }
        }
        self.set_bridge_caps(session_id, spec);
        self.publish_bridge_state(&spec.name, false, now, out);
        true
    }

    fn set_bridge_caps(&mut self, session_id: SessionId, spec: &BridgeSpec) {
        if let Some(stored) = self.session(session_id).and_then(|s| s.stored.as_deref().copied()) {
            let caps = QueueCaps {
                max_messages: spec.max_queued,
                max_bytes: spec.max_queued_bytes,
                overflow: spec.overflow,
            };
            self.store.set_queue_caps(stored.id, caps);
        }
    }

    /// At start-up: ends the stored sessions of bridges no longer configured (their queues
    /// would otherwise grow for a remote nobody connects to).
    pub fn remove_stale_bridges(
        &mut self,
        configured: &[String],
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let stale: Vec<(Rc<str>, SessionId)> = self
            .index
            .clients()
            .filter_map(|s| Some((self.session(s)?.client_id.clone(), s)))
            .filter(|(id, _)| {
                id.strip_prefix(BRIDGE_CLIENT_PREFIX)
                    .is_some_and(|name| !configured.iter().any(|c| c == name))
            })
            .collect();
        for (client_id, session_id) in stale {
            log::warn!(
                "{client_id:?}: bridge no longer configured; its session and queue are deleted"
            );
            self.end_session(session_id, now, out);
        }
    }

    /// The link `conn` of bridge `params.name` was accepted by the remote (CONNACK 0): bind it
    /// to the bridge's session, re-send what is unacknowledged (DUP=1, same packet ids), send
    /// what is queued, and publish the state "1". `session_present` is the remote's flag: when
    /// it forgot our session, the inbound QoS 2 ids we kept for it are forgotten too.
    pub fn bridge_up(
        &mut self,
        conn: ConnId,
        remote: std::net::SocketAddr,
        params: LinkParams,
        session_present: bool,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let client_id = bridge_client_id(&params.name);
        let Some(session_id) = self.index.client(&self.sessions, &client_id) else {
            log::error!("bridge {}: no session; closing the link", params.name);
            return out.close(conn);
        };
        let index = conn.0 as usize;
        if self.conns.len() <= index {
            self.conns.resize_with(index + 1, || None);
        }
        let generation = self.next_generation();
        let mut state =
            super::connection::Conn::new(super::Origin::outbound(remote), now, generation);
        state.phase = super::connection::Phase::Active(session_id);
        state.version = Some(params.version);
        state.keep_alive = None; // the link watches the remote itself (src/bridge)
        state.client_receive_maximum = params.window;
        state.client_max_packet_size = params.max_packet_size;
        let max_qos = params.max_qos;
        let name = params.name.clone();
        state.link = Some(Rc::new(params));
        self.conns[index] = Some(state);
        self.connection_activated();

        let Some(session) = self.session_mut(session_id) else { return };
        session.conn = Some(conn);
        let stored = session.stored.as_deref().copied();
        if max_qos < QoS::ExactlyOnce {
            // Restored QoS 2 messages not yet received by the remote go as QoS 1 now.
            for entry in session.inflight.iter_mut() {
                if let OutboundState::AwaitPubrec(delivery) = &entry.state {
                    let mut delivery = delivery.clone();
                    delivery.qos = delivery.qos.min(max_qos).max(QoS::AtLeastOnce);
                    entry.state = OutboundState::AwaitPuback(delivery);
                }
            }
        }
        if !session_present && !session.inbound_qos2.is_empty() {
            let ids: Vec<u16> = std::mem::take(&mut session.inbound_qos2).into_iter().collect();
            if let Some(stored) = stored {
                for id in ids {
                    self.store.remove_inbound_qos2(stored.id, id);
                }
            }
        }
        self.resend_inflight(session_id, now, out);
        self.pump(session_id, now, out);
        self.publish_bridge_state(&name, true, now, out);
    }

    /// The link of bridge `name` is gone (after [`Broker::on_closed`] for its connection, or a
    /// connect attempt that failed): publish the state "0".
    pub fn bridge_down(&mut self, name: &str, now: Instant, out: &mut dyn Outbox) {
        self.publish_bridge_state(name, false, now, out);
    }

    /// A packet id bridge `name`'s session has not in flight, for its SUBSCRIBE (ids are shared
    /// with its PUBLISHes, MQTT-2.3.1-2); searched from the top, far from the ring's ids.
    pub fn bridge_free_packet_id(&self, name: &str) -> Option<std::num::NonZeroU16> {
        let id = self.index.client(&self.sessions, &bridge_client_id(name))?;
        let session = self.session(id)?;
        (1..=u16::MAX)
            .rev()
            .filter_map(std::num::NonZeroU16::new)
            .find(|p| session.inflight_position(*p).is_none())
    }

    /// Messages queued (or in flight) for bridge `name` in the store; `None` if it has no
    /// session.
    pub fn bridge_queued(&self, name: &str) -> Option<u64> {
        let id = self.index.client(&self.sessions, &bridge_client_id(name))?;
        let session = self.session(id)?;
        Some(match session.stored.as_deref() {
            Some(stored) => self.store.usage(stored.id).messages,
            None => session.queue.len() as u64,
        })
    }

    /// `$SYS/broker/connection/NAME/state`, retained, "1" up and "0" down (Mosquitto's topic),
    /// through the ordinary route path.
    fn publish_bridge_state(&mut self, name: &str, up: bool, now: Instant, out: &mut dyn Outbox) {
        let payload: &[u8] = if up { b"1" } else { b"0" };
        let publish = Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: true,
            topic: Rc::from(format!("$SYS/broker/connection/{name}/state")),
            packet_id: None,
            properties: Default::default(),
            payload: Rc::from(payload),
        };
        let saved = std::mem::take(&mut self.route_outcome);
        self.route(Rc::new(Message::from_publish(publish, now)), None, now, out);
        self.route_outcome = saved;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(forwards: Vec<TopicMap>) -> LinkParams {
        let forwards = LinkParams::forwards_of(&forwards);
        LinkParams {
            name: "up".into(),
            version: ProtocolVersion::V5,
            window: 10,
            max_packet_size: u32::MAX,
            max_qos: QoS::AtLeastOnce,
            retain_available: false,
            remaps: LinkParams::remaps_of(&forwards),
            forwards,
        }
    }

    fn map(topic: &str, local: &str, remote: &str) -> TopicMap {
        TopicMap {
            topic: topic.into(),
            qos: QoS::ExactlyOnce,
            local_prefix: local.into(),
            remote_prefix: remote.into(),
        }
    }

    fn publish(topic: &str) -> Publish {
        Publish {
            dup: false,
            qos: QoS::ExactlyOnce,
            retain: true,
            topic: Rc::from(topic),
            packet_id: std::num::NonZeroU16::new(7),
            properties: Default::default(),
            payload: Rc::from(&b"x"[..]),
        }
    }

    #[test]
    fn outgoing_topics_swap_the_prefix_of_the_forward_that_matched() {
        let p = params(vec![map("a/#", "", "site/"), map("#", "l/", "r/"), map("", "x/y", "z")]);
        let mut m = publish("a/b");
        p.adapt(&mut m);
        assert_eq!(&*m.topic, "site/a/b");
        // Maximum QoS 1 and Retain Available 0.
        assert_eq!(m.qos, QoS::AtLeastOnce);
        assert!(!m.retain);
        let mut m = publish("l/q");
        p.adapt(&mut m);
        assert_eq!(&*m.topic, "r/q");
        let mut m = publish("x/y");
        p.adapt(&mut m);
        assert_eq!(&*m.topic, "z");
    }

    #[test]
    fn forwards_without_prefixes_leave_the_topic_alone() {
        let p = params(vec![map("a/#", "", ""), map("#", "l/", "l/")]);
        assert!(!p.remaps);
        let mut m = publish("l/q");
        p.adapt(&mut m);
        assert_eq!(&*m.topic, "l/q");
        // Still capped by the remote's Maximum QoS and Retain Available.
        assert_eq!(m.qos, QoS::AtLeastOnce);
        assert!(!m.retain);
        // One forward with prefixes is enough to match them all, in order: `a/#` comes first
        // and keeps "a/b" as it is.
        let p = params(vec![map("a/#", "", ""), map("#", "", "r/")]);
        assert!(p.remaps);
        let mut m = publish("a/b");
        p.adapt(&mut m);
        assert_eq!(&*m.topic, "a/b");
        let mut m = publish("c");
        p.adapt(&mut m);
        assert_eq!(&*m.topic, "r/c");
    }
}
