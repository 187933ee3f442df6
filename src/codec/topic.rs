//! Topic names and topic filters (MQTT 5.0 §4.7, 3.1.1 §4.7): syntax and matching.
//!
//! Contract: pure functions over `&str`, no allocation, no panics for any input. Validity is
//! purely syntactic; shared subscriptions (`$share/group/filter`) are NOT special here — a
//! `$share/...` string is checked like any other filter and the broker splits and validates
//! the share name itself. Length limits (65,535 bytes) follow from the wire encoding.

/// A valid topic name for PUBLISH: non-empty (MQTT-4.7.3-1), no `+`/`#` (MQTT-3.3.2-2,
/// MQTT-4.7.0-1) and no U+0000 (MQTT-4.7.3-2).
pub fn is_valid_topic_name(topic: &str) -> bool {
    !topic.is_empty() && !topic.bytes().any(|b| matches!(b, b'+' | b'#' | 0))
}

/// A valid topic filter: non-empty (MQTT-4.7.3-1), `#` only last and alone in its level
/// (MQTT-4.7.1-1), `+` alone in its level (MQTT-4.7.1-2), no U+0000 (MQTT-4.7.3-2).
pub fn is_valid_topic_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.as_bytes().contains(&0) {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        let valid = match level {
            "#" => is_last,
            "+" => true,
            other => !other.bytes().any(|b| b == b'+' || b == b'#'),
        };
        if !valid {
            return false;
        }
    }
    true
}

/// Levels of a topic name or filter: one more than its `/` separators (MQTT 4.7.1.1; empty
/// levels count, so `/` has two). What `mqtt.max_topic_levels` bounds.
pub fn level_count(topic: &str) -> usize {
    topic.bytes().filter(|&b| b == b'/').count() + 1
}

/// Whether `topic` (a valid name) matches `filter` (a valid filter), including the rules that
/// `a/#` matches `a` (MQTT 5.0 §4.7.1.2) and a leading wildcard does not match a `$` topic
/// (MQTT-4.7.2-1). `+` matches one level, which may be empty (`+/x` matches `/x`).
///
/// Invalid inputs give an unspecified answer but never panic.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false; // MQTT-4.7.2-1
    }
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            // `#` matches the parent level and any number of child levels.
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) => {
                if f != t {
                    return false;
                }
            }
            (None, None) => return true,
            (Some(_), None) | (None, Some(_)) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        let valid = ["a", "/", "a/b", "/a", "a/", "sport/tennis/player1", "$SYS/x", " ", "a//b"];
        for t in valid {
            assert!(is_valid_topic_name(t), "{t:?} should be valid");
        }
        let invalid = ["", "+", "#", "a/+", "a/#", "a+", "a#b", "a\0b"];
        for t in invalid {
            assert!(!is_valid_topic_name(t), "{t:?} should be invalid");
        }
    }

    #[test]
    fn topic_filters() {
        let valid = [
            "#",
            "+",
            "/",
            "a",
            "a/b",
            "a/#",
            "a/+",
            "+/+",
            "+/#",
            "/#",
            "a/+/b",
            "a//#",
            "+/",
            "/+",
            "$SYS/#",
            "$share/group/a/#", // not special here
            "sport/tennis/#",
        ];
        for f in valid {
            assert!(is_valid_topic_filter(f), "{f:?} should be valid");
        }
        let invalid =
            ["", "a/#/b", "#/a", "a+", "+a", "#a", "a#", "a/b#", "a/+b", "##", "++", "a/#/", "a\0"];
        for f in invalid {
            assert!(!is_valid_topic_filter(f), "{f:?} should be invalid");
        }
    }

    #[test]
    fn matching_table() {
        // (filter, topic, matches)
        let table = [
            ("sport/tennis/player1/#", "sport/tennis/player1", true),
            ("sport/tennis/player1/#", "sport/tennis/player1/ranking", true),
            ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true),
            ("sport/#", "sport", true),
            ("sport/#", "sports", false),
            ("#", "sport", true),
            ("#", "/", true),
            ("#", "a/b/c", true),
            ("sport/tennis/+", "sport/tennis/player1", true),
            ("sport/tennis/+", "sport/tennis/player1/ranking", false),
            ("sport/+", "sport", false),
            ("sport/+", "sport/", true),
            ("+", "sport", true),
            ("+", "/finance", false),
            ("+/+", "/finance", true),
            ("/+", "/finance", true),
            ("+/tennis/#", "sport/tennis/player1", true),
            ("+/tennis/#", "sport/tennis", true),
            ("a/+/c", "a//c", true),
            ("a/+/c", "a/b/d", false),
            ("a/b", "a/b", true),
            ("a/b", "a/b/", false),
            ("a/b", "a", false),
            ("a", "a/b", false),
            ("a/b/", "a/b/", true),
            // `$` topics are not matched by leading wildcards (MQTT-4.7.2-1) ...
            ("#", "$SYS/uptime", false),
            ("+/monitor/Clients", "$SYS/monitor/Clients", false),
            // ... but by explicit `$` levels.
            ("$SYS/#", "$SYS/uptime", true),
            ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
            ("$SYS", "$SYS", true),
            // Not special: matched literally.
            ("$share/g/a", "a", false),
            // Case-sensitive.
            ("A", "a", false),
        ];
        for (filter, topic, expected) in table {
            assert_eq!(matches(filter, topic), expected, "{filter:?} vs {topic:?}");
        }
    }

    #[test]
    fn level_counts() {
        // (topic, levels): empty levels count (MQTT 4.7.1.1: `/finance` has two).
        let table = [("a", 1), ("a/b/c", 3), ("/", 2), ("/finance", 2), ("a//b", 3), ("#", 1)];
        for (topic, levels) in table {
            assert_eq!(level_count(topic), levels, "{topic:?}");
        }
        assert_eq!(level_count(&"/".repeat(40_000)), 40_001);
    }

    #[test]
    fn invalid_inputs_do_not_panic() {
        for f in ["", "#/a", "a+", "//", "+#"] {
            for t in ["", "/", "a", "$", "#"] {
                let _ = matches(f, t);
            }
        }
    }
}
