//! Topic names and filters (STUB).

/// A valid topic name for PUBLISH: non-empty, no `+`/`#` (MQTT-3.3.2-2, MQTT-4.7.3-1).
pub fn is_valid_topic_name(topic: &str) -> bool {
    let _ = topic;
    todo!("codec")
}

/// A valid topic filter: non-empty, `#` only last and alone in its level, `+` alone in its level.
pub fn is_valid_topic_filter(filter: &str) -> bool {
    let _ = filter;
    todo!("codec")
}

/// Whether `topic` (a valid name) matches `filter` (a valid filter), including the rules that
/// `a/#` matches `a` and a leading wildcard does not match a `$` topic (MQTT-4.7.2-1).
pub fn matches(filter: &str, topic: &str) -> bool {
    let _ = (filter, topic);
    todo!("codec")
}
