//! The capacities and protocol options the broker core is built with, fixed at start-up
//! except for the few that SIGHUP applies ([`Limits::apply_live`], `config::LIVE_KEYS`).
//!
//! A plain struct so the core can be constructed in tests without a config file; `main`
//! derives it from the validated `Config`.

use std::time::Duration;

use crate::codec::QoS;
pub use crate::config::{OutboundTopicAlias, SharedPolicy, SlowSubscriber};

#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections that may complete CONNECT at once (more get CONNACK "server unavailable").
    pub max_connections: usize,
    /// Open connections from one IP address, checked by `net` at accept (0 = no limit).
    pub max_connections_per_address: usize,
    /// Accepted connections without a CONNECT yet, checked by `net` at accept (0 = no limit).
    pub max_pending_connections: usize,
    /// Sessions held at once, online and offline (more get CONNACK "quota exceeded").
    pub max_sessions: usize,
    pub max_subscriptions_per_session: usize,
    /// Levels a topic filter, topic name or will topic may have.
    pub max_topic_levels: usize,
    /// Bytes of one session's topic filters together.
    pub max_subscription_bytes: usize,
    /// Largest packet accepted from clients, fixed header included.
    pub max_packet_size: u32,
    /// Largest CONNECT (before a connection has one, `max_packet_size` is the smaller of the
    /// two).
    pub max_connect_packet_size: u32,
    /// Outbound QoS 1/2 window per session, and the Receive Maximum we advertise.
    pub max_inflight: u16,
    /// Messages queued per session behind a full inflight window or while offline.
    pub max_queued_messages: usize,
    pub connect_timeout: Duration,
    /// The broker closes a connection silent for keep-alive × this (MQTT-3.1.2-24 says 1.5).
    pub keepalive_multiplier: f64,
    /// 0 = no limit. v5 clients asking more (or 0) are told Server Keep Alive; 3.1.1 clients
    /// asking more are refused, as Mosquitto does.
    pub max_keepalive: u16,
    pub retain_available: bool,
    pub max_retained_messages: usize,
    pub max_retained_bytes: usize,
    /// Topic aliases a v5 client may use towards us (0 = none).
    pub max_topic_alias: u16,
    pub allow_zero_length_clientid: bool,
    pub max_qos: QoS,
    /// Queue QoS 0 messages for offline persistent sessions too.
    pub queue_qos0: bool,
    /// How long an abandoned 3.1/3.1.1 persistent session lives (`None` = forever).
    pub persistent_session_expiry: Option<Duration>,
    /// Cap on a v5 Session Expiry Interval (`None` = no cap).
    pub max_session_expiry: Option<Duration>,
    /// Output bytes queued per connection before QoS 0 messages to it are dropped.
    pub tx_buffer_limit: usize,
    /// Output bytes queued for all connections together before QoS 0 messages to those over
    /// their share are held back or dropped (`output_budget.rs`; 0 = no global budget).
    pub tx_buffer_total: usize,
    pub wildcard_subscription_available: bool,
    pub subscription_identifiers_available: bool,
    /// MQTT 3.1.1 only: re-send unacknowledged messages on a live connection after this long
    /// (`None` = only on reconnect, as MQTT 5.0 requires).
    pub resend_interval: Option<Duration>,
    /// Longest one client's congestion may pause another client's input.
    pub max_pause: Duration,
    /// What happens to a subscriber congested for longer than `max_pause`.
    pub slow_subscriber: SlowSubscriber,
    /// `$share/GROUP/FILTER` subscriptions are offered.
    pub shared_subscription_available: bool,
    /// Which member of a shared group gets a message.
    pub shared_policy: SharedPolicy,
    /// Topic aliases on PUBLISH packets to v5 clients (at most min(theirs, `max_topic_alias`)).
    pub outbound_topic_alias: OutboundTopicAlias,
    /// Response Information for v5 clients that request it.
    pub response_information: Option<std::rc::Rc<str>>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 1024,
            max_connections_per_address: 64,
            max_pending_connections: 256,
            max_sessions: 4096,
            max_subscriptions_per_session: 128,
            max_topic_levels: 200,
            max_subscription_bytes: 64 * 1024,
            max_packet_size: 1024 * 1024,
            max_connect_packet_size: 100 * 1024,
            max_inflight: 32,
            max_queued_messages: 1000,
            connect_timeout: Duration::from_secs(10),
            keepalive_multiplier: 1.5,
            max_keepalive: 65535,
            retain_available: true,
            max_retained_messages: 10_000,
            max_retained_bytes: 16 * 1024 * 1024,
            max_topic_alias: 16,
            allow_zero_length_clientid: true,
            max_qos: QoS::ExactlyOnce,
            queue_qos0: false,
            persistent_session_expiry: None,
            max_session_expiry: None,
            tx_buffer_limit: 256 * 1024,
            tx_buffer_total: 16 * 1024 * 1024,
            wildcard_subscription_available: true,
            subscription_identifiers_available: true,
            resend_interval: None,
            max_pause: Duration::from_secs(1),
            slow_subscriber: SlowSubscriber::Drop,
            shared_subscription_available: true,
            shared_policy: SharedPolicy::RoundRobin,
            outbound_topic_alias: OutboundTopicAlias::Lru,
            response_information: None,
        }
    }
}

impl Limits {
    /// SIGHUP: takes from `new` the limits that only affect what comes next (the `mqtt.*` keys
    /// of `config::LIVE_KEYS`): checks at accept, at CONNECT and on each SUBSCRIBE or PUBLISH.
    /// The rest (what CONNACK promised to connected clients, what sized the buffers and the
    /// store) stays until a restart.
    pub fn apply_live(&mut self, new: &Limits) {
        self.max_connections_per_address = new.max_connections_per_address;
        self.max_pending_connections = new.max_pending_connections;
        self.connect_timeout = new.connect_timeout;
        self.max_connect_packet_size = new.max_connect_packet_size;
        self.max_subscriptions_per_session = new.max_subscriptions_per_session;
        self.max_topic_levels = new.max_topic_levels;
        self.max_subscription_bytes = new.max_subscription_bytes;
        self.allow_zero_length_clientid = new.allow_zero_length_clientid;
        self.max_keepalive = new.max_keepalive;
        self.keepalive_multiplier = new.keepalive_multiplier;
    }
}

impl From<&crate::config::Config> for Limits {
    fn from(config: &crate::config::Config) -> Limits {
        let mqtt = &config.mqtt;
        let resend = config.sqlite.resend_interval;
        Limits {
            max_connections: mqtt.max_connections,
            max_connections_per_address: mqtt.max_connections_per_address,
            max_pending_connections: mqtt.max_pending_connections,
            max_sessions: mqtt.max_sessions,
            max_subscriptions_per_session: mqtt.max_subscriptions_per_session,
            max_topic_levels: mqtt.max_topic_levels,
            max_subscription_bytes: mqtt.max_subscription_bytes,
            max_packet_size: mqtt.max_packet_size,
            max_connect_packet_size: mqtt.max_connect_packet_size,
            max_inflight: mqtt.max_inflight,
            max_queued_messages: mqtt.max_queued_messages,
            connect_timeout: mqtt.connect_timeout,
            keepalive_multiplier: mqtt.keepalive_multiplier,
            max_keepalive: mqtt.max_keepalive,
            retain_available: mqtt.retain_available,
            max_retained_messages: usize::try_from(mqtt.max_retained_messages)
                .unwrap_or(usize::MAX),
            max_retained_bytes: usize::try_from(mqtt.max_retained_bytes).unwrap_or(usize::MAX),
            max_topic_alias: mqtt.max_topic_alias,
            allow_zero_length_clientid: mqtt.allow_zero_length_clientid,
            max_qos: mqtt.max_qos,
            queue_qos0: mqtt.queue_qos0,
            persistent_session_expiry: mqtt.persistent_session_expiry,
            max_session_expiry: mqtt.max_session_expiry,
            tx_buffer_limit: mqtt.tx_buffer_limit,
            tx_buffer_total: mqtt.tx_buffer_total,
            wildcard_subscription_available: mqtt.wildcard_subscription_available,
            subscription_identifiers_available: mqtt.subscription_identifiers_available,
            resend_interval: (!resend.is_zero()).then_some(resend),
            max_pause: mqtt.max_pause,
            slow_subscriber: mqtt.slow_subscriber,
            shared_subscription_available: mqtt.shared_subscription_available,
            shared_policy: mqtt.shared_policy,
            outbound_topic_alias: mqtt.outbound_topic_alias,
            response_information: mqtt.response_information.as_deref().map(std::rc::Rc::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, LIVE_KEYS};

    /// `apply_live` takes exactly the `mqtt.*` keys of `LIVE_KEYS`: applying a config where
    /// every key differs gives the old limits with just those keys' new values.
    #[test]
    fn apply_live_takes_exactly_the_live_mqtt_keys() {
        // Every [mqtt] key with a value other than its default.
        let changed: &[(&str, &str)] = &[
            ("max_connections", "10"),
            ("max_connections_per_address", "3"),
            ("max_pending_connections", "4"),
            ("max_sessions", "20"),
            ("max_subscriptions_per_session", "30"),
            ("max_topic_levels", "31"),
            ("max_subscription_bytes", "\"32KB\""),
            ("max_packet_size", "\"64KB\""),
            ("max_connect_packet_size", "\"2KB\""),
            ("max_inflight", "40"),
            ("max_queued_messages", "50"),
            ("connect_timeout", "\"1500ms\""),
            ("keepalive_multiplier", "2.5"),
            ("max_keepalive", "60"),
            ("retain_available", "false"),
            ("max_retained_messages", "70"),
            ("max_retained_bytes", "\"2MB\""),
            ("max_topic_alias", "0"),
            ("allow_zero_length_clientid", "false"),
            ("max_qos", "1"),
            ("queue_qos0", "true"),
            ("persistent_session_expiry", "\"7d\""),
            ("max_session_expiry", "3600"),
            ("tx_buffer_limit", "\"128KB\""),
            ("tx_buffer_total", "\"8MB\""),
            ("wildcard_subscription_available", "false"),
            ("subscription_identifiers_available", "false"),
            ("max_pause", "\"250ms\""),
            ("slow_subscriber", "\"disconnect\""),
        ];
        let text = |keys: &mut dyn Iterator<Item = &(&str, &str)>| {
            let body: String = keys.map(|(k, v)| format!("{k} = {v}\n")).collect();
            format!("[mqtt]\n{body}")
        };
        let all = Config::from_toml_str(&text(&mut changed.iter()), "all").unwrap();
        let live = |k: &str| LIVE_KEYS.contains(&format!("mqtt.{k}").as_str());
        let only_live =
            Config::from_toml_str(&text(&mut changed.iter().filter(|(k, _)| live(k))), "live")
                .unwrap();
        let mut limits = Limits::from(&Config::default_values());
        limits.apply_live(&Limits::from(&all));
        assert_eq!(format!("{limits:?}"), format!("{:?}", Limits::from(&only_live)));
        // The table above has every [mqtt] key, so no live key was left out of the test.
        let defaults = Config::default_values();
        let default_limits = format!("{:?}", Limits::from(&defaults));
        for key in LIVE_KEYS.iter().filter_map(|k| k.strip_prefix("mqtt.")) {
            assert!(changed.iter().any(|(k, _)| *k == key), "{key} not in the table");
            let one = changed.iter().filter(|(k, _)| *k == key);
            let config = Config::from_toml_str(&text(&mut one.into_iter()), "one").unwrap();
            assert_ne!(format!("{:?}", Limits::from(&config)), default_limits, "{key}");
        }
    }
}
