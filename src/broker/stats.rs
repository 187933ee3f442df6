//! Counters the broker keeps for logs, `$SYS` and benchmarks. Plain integers: one thread.

#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub connections_accepted: u64,
    pub packets_received: u64,
    /// MQTT packets of any type handed to connections.
    pub packets_sent: u64,
    /// Bytes read from and written to MQTT connections (counted by the event loop).
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// Most connections active at once since the start.
    pub max_connected: u64,
    pub messages_received: u64,
    pub messages_sent: u64,
    /// Messages not delivered because a queue or output buffer was full.
    pub messages_dropped: u64,
    pub messages_expired: u64,
    pub malformed_packets: u64,
    pub protocol_errors: u64,
    pub wills_published: u64,
    pub sessions_expired: u64,
    /// Times a subscriber stayed congested for longer than `mqtt.max_pause`.
    pub slow_subscribers: u64,
    /// Slow subscribers disconnected (`mqtt.slow_subscriber = "disconnect"`).
    pub slow_disconnects: u64,
    /// Topic bytes not sent because a PUBLISH carried a known outbound topic alias instead.
    pub topic_bytes_aliased: u64,
}

/// Sizes at one moment (computed on demand, not maintained on the hot path).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Gauges {
    pub connections: usize,
    pub sessions: usize,
    pub subscriptions: usize,
    pub retained_messages: usize,
    pub retained_bytes: usize,
    pub queued_messages: usize,
    pub inflight_messages: usize,
}
