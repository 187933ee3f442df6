//! Target `topic`: topic name and filter validation, level counts and matching
//! (`codec::topic`) against a reference written here in another way (per byte and per
//! whole level list instead of level by level), for any string, including 65 KB deep ones.
//!
//! Input: byte 0 is the mode, the rest is `filter 0xFF topic` (0xFF never occurs in UTF-8, so
//! both halves keep any UTF-8 the fuzzer makes; invalid UTF-8 is replaced, not dropped). Mode
//! bit 0 / bit 1: repeat the filter / topic up to a length that bits 2-3 pick (255 bytes,
//! 4 KiB, or 65,535 bytes: the most a wire string holds), so that deep inputs (`a/a/a/...`,
//! `+/+/...`, `////...`) are tried all the time without making every run slow.
//!
//! Checked: nothing panics for any pair; validity and level counts equal the reference's;
//! for a valid filter and a valid name, `matches` equals the reference's answer; a valid
//! name is also a valid filter and matches itself.

use edgemq::codec::topic::{is_valid_topic_filter, is_valid_topic_name, level_count, matches};

/// The longest string a 2-byte length prefix can carry.
const MAX_WIRE_STRING: usize = 65_535;

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (filter, topic) = match rest.iter().position(|&b| b == 0xFF) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &rest[..0]),
    };
    let deep = [255, 4096, MAX_WIRE_STRING, MAX_WIRE_STRING][usize::from((mode >> 2) & 3)];
    let filter = text(filter, (mode & 1 != 0).then_some(deep));
    let topic = text(topic, (mode & 2 != 0).then_some(deep));
    check(&filter, &topic);
    // The halves swapped: filters are tried as names and names as filters too.
    check(&topic, &filter);
}

/// The bytes as a string, repeated up to `repeat_to` bytes if given.
fn text(bytes: &[u8], repeat_to: Option<usize>) -> String {
    let s = String::from_utf8_lossy(bytes).into_owned();
    let Some(len) = repeat_to.filter(|_| !s.is_empty()) else {
        return s;
    };
    let mut long = s.repeat(len / s.len() + 1);
    let mut cut = len;
    while !long.is_char_boundary(cut) {
        cut -= 1;
    }
    long.truncate(cut);
    long
}

fn check(filter: &str, topic: &str) {
    let filter_ok = is_valid_topic_filter(filter);
    let topic_ok = is_valid_topic_name(topic);
    assert_eq!(filter_ok, reference::valid_filter(filter), "is_valid_topic_filter({filter:?})");
    assert_eq!(topic_ok, reference::valid_name(topic), "is_valid_topic_name({topic:?})");
    assert_eq!(level_count(filter), reference::levels(filter).len(), "level_count({filter:?})");
    let answer = matches(filter, topic); // must not panic, whatever the inputs
    if filter_ok && topic_ok {
        assert_eq!(answer, reference::matches(filter, topic), "matches({filter:?}, {topic:?})");
    }
    if topic_ok {
        assert!(is_valid_topic_filter(topic), "valid name {topic:?} is not a valid filter");
        assert!(matches(topic, topic), "{topic:?} does not match itself");
    }
}

/// The rules of MQTT 5.0 §4.7 stated directly; slow and simple on purpose.
pub mod reference {
    /// Non-empty, no wildcard character, no U+0000 (MQTT-4.7.3-1, MQTT-4.7.0-1, MQTT-4.7.3-2).
    pub fn valid_name(topic: &str) -> bool {
        !topic.is_empty() && !topic.contains(['+', '#', '\0'])
    }

    /// Judged per byte: `+` must have a separator (or an end) on both sides, `#` a separator
    /// (or the start) before it and the end after it (MQTT-4.7.1-1, MQTT-4.7.1-2).
    pub fn valid_filter(filter: &str) -> bool {
        let b = filter.as_bytes();
        if b.is_empty() || b.contains(&0) {
            return false;
        }
        (0..b.len()).all(|i| {
            let before_ok = i == 0 || b[i - 1] == b'/';
            let after = b.get(i + 1).copied();
            match b[i] {
                b'+' => before_ok && matches!(after, None | Some(b'/')),
                b'#' => before_ok && after.is_none(),
                _ => true,
            }
        })
    }

    pub fn levels(s: &str) -> Vec<&str> {
        s.split('/').collect()
    }

    /// Whole level lists compared at once: without `#` the lists have the same length and
    /// agree level by level (`+` agrees with anything); with a trailing `#` the topic has at
    /// least the levels before it, which agree (so `a/#` matches `a`). A filter starting with
    /// a wildcard does not match a `$` topic (MQTT-4.7.2-1).
    pub fn matches(filter: &str, topic: &str) -> bool {
        if topic.starts_with('$') && filter.starts_with(['+', '#']) {
            return false;
        }
        let f = levels(filter);
        let t = levels(topic);
        match f.split_last() {
            Some((&"#", before)) => t.len() >= before.len() && agree(before, &t),
            _ => f.len() == t.len() && agree(&f, &t),
        }
    }

    /// Level by level over the shorter list: `+` agrees with any level, else equal.
    fn agree(filter: &[&str], topic: &[&str]) -> bool {
        filter.iter().zip(topic).all(|(f, t)| *f == "+" || f == t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_agrees_with_the_spec_examples() {
        assert!(reference::matches("sport/tennis/player1/#", "sport/tennis/player1"));
        assert!(reference::matches("sport/#", "sport"));
        assert!(!reference::matches("sport/+", "sport"));
        assert!(reference::matches("+/+", "/finance"));
        assert!(!reference::matches("+", "/finance"));
        assert!(!reference::matches("#", "$SYS/x"));
        assert!(reference::matches("$SYS/#", "$SYS"));
        assert!(reference::valid_filter("+/#") && !reference::valid_filter("a/#/b"));
        assert!(!reference::valid_filter("a+") && !reference::valid_filter("#/"));
    }

    #[test]
    fn deep_inputs_run() {
        for seed in [&b"\x0Fa/\xffa/"[..], b"\x0F+/\xff/", b"\x09/\xff", b"\x0B#\xff$"] {
            run(seed);
        }
    }
}
