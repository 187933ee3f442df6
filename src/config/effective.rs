//! The effective configuration: every key with the value it ended up with (defaults filled in,
//! then the environment and the command line applied), as TOML values.
//!
//! Contract: built only by the parser (`Section` records each key it reads, default or not), so
//! a key added to the parser is shown by `edgemq check` and compared on SIGHUP without anyone
//! listing it here. [`Effective::to_toml`] writes TOML that parses back to the same config
//! (secrets excepted: they are written as a comment); [`Effective::changed_keys`] compares two
//! configs key by key. Which keys a running broker applies on SIGHUP is [`LIVE_KEYS`]; every
//! other key needs a restart, new keys included until someone decides otherwise. Pure: no I/O.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use toml::{Table, Value};

use super::SECTIONS;

/// Keys a running broker applies on SIGHUP (`*` stands for one `NAME`). Each only affects what
/// comes next: new connections, new packets, new log lines, the next login. Every other key
/// needs a restart, and a reload that changes one says so in one warning line.
pub const LIVE_KEYS: [&str; 15] = [
    "log.level",
    "mqtt.max_connections_per_address",
    "mqtt.max_pending_connections",
    "mqtt.connect_timeout",
    "mqtt.max_connect_packet_size",
    "mqtt.max_subscriptions_per_session",
    "mqtt.max_topic_levels",
    "mqtt.max_subscription_bytes",
    "mqtt.allow_zero_length_clientid",
    "mqtt.max_keepalive",
    "mqtt.keepalive_multiplier",
    "auth.allow_anonymous",
    "auth.password_file",
    "auth.acl_file",
    "sys.interval",
];

/// Keys whose values `edgemq check` does not print (matched on the last part of the key).
const SECRET_KEYS: [&str; 1] = ["password"];

/// Whether `key` (`section.key` or `section.NAME.key`) is applied on SIGHUP.
pub fn is_live(key: &str) -> bool {
    LIVE_KEYS.iter().any(|pattern| {
        let mut want = pattern.split('.');
        let mut have = key.split('.');
        loop {
            match (want.next(), have.next()) {
                (None, None) => return true,
                (Some(w), Some(h)) if w == "*" || w == h => {}
                _ => return false,
            }
        }
    })
}

/// Every key of a validated config with its value. See the module comment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Effective {
    /// `section` -> `key` -> value; `listeners` and `bridges` -> `NAME` -> `key` -> value.
    pub(super) root: Table,
    /// The keys of the flat sections as `section.key`, in the order the parser reads them.
    pub(super) order: Vec<String>,
    /// Keys set outside the config file -> what set them (`EDGEMQ_MQTT_MAX_CONNECTIONS`,
    /// `--listen`).
    pub(super) sources: BTreeMap<String, String>,
}

impl Effective {
    /// Every key as `section.key` (or `section.NAME.key`) with its value, sorted by key.
    pub fn flatten(&self) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        for (section, value) in &self.root {
            let Value::Table(keys) = value else { continue };
            for (key, value) in keys {
                match value {
                    Value::Table(named) if is_named(section) => {
                        for (k, v) in named {
                            out.insert(format!("{section}.{key}.{k}"), v.clone());
                        }
                    }
                    _ => {
                        out.insert(format!("{section}.{key}"), value.clone());
                    }
                }
            }
        }
        out
    }

    /// The keys whose values differ between `self` and `other`, a key present in only one of
    /// them included (a `[listeners.NAME]` added or removed shows as its keys), sorted.
    pub fn changed_keys(&self, other: &Effective) -> Vec<String> {
        let (a, b) = (self.flatten(), other.flatten());
        let mut changed: Vec<String> =
            a.iter().filter(|(k, v)| b.get(*k) != Some(*v)).map(|(k, _)| k.clone()).collect();
        changed.extend(b.keys().filter(|k| !a.contains_key(*k)).cloned());
        changed.sort();
        changed
    }

    /// The value of `key` (`section.key` or `section.NAME.key`), as TOML text.
    pub fn show(&self, key: &str) -> Option<String> {
        let value = self.flatten().remove(key)?;
        let mut out = String::new();
        write_value(&mut out, &value);
        Some(out)
    }

    /// The configuration as a TOML file: sections in the documented order, each key with its
    /// value; a key set by an environment variable or a flag says so in a comment. Parsing the
    /// text gives the same config, except that secrets are written as comments.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        for section in SECTIONS {
            let Some(Value::Table(keys)) = self.root.get(section) else { continue };
            if is_named(section) {
                for (name, value) in keys {
                    let Value::Table(named) = value else { continue };
                    let _ = writeln!(out, "\n[{section}.{}]", toml_key(name));
                    for (key, value) in named {
                        self.write_entry(&mut out, &format!("{section}.{name}.{key}"), key, value);
                    }
                }
                continue;
            }
            let _ = writeln!(out, "\n[{section}]");
            // Reading order first (the order of conf/edgemq.toml), then anything else.
            let prefix = format!("{section}.");
            let ordered = self.order.iter().filter_map(|k| k.strip_prefix(&prefix));
            let mut written = Vec::new();
            for key in ordered.chain(keys.keys().map(String::as_str)) {
                if written.contains(&key) {
                    continue;
                }
                if let Some(value) = keys.get(key) {
                    self.write_entry(&mut out, &format!("{section}.{key}"), key, value);
                    written.push(key);
                }
            }
        }
        out
    }

    fn write_entry(&self, out: &mut String, full: &str, key: &str, value: &Value) {
        let secret = SECRET_KEYS.contains(&key) && value.as_str().is_some_and(|s| !s.is_empty());
        if secret {
            let _ = write!(out, "# {} = (set, not shown)", toml_key(key));
        } else {
            let _ = write!(out, "{} = ", toml_key(key));
            write_value(out, value);
        }
        if let Some(source) = self.sources.get(full) {
            let _ = write!(out, "  # from {source}");
        }
        out.push('\n');
    }
}

/// Sections made of `[section.NAME]` tables.
fn is_named(section: &str) -> bool {
    matches!(section, "listeners" | "bridges")
}

fn toml_key(key: &str) -> String {
    let bare =
        !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_string()
    } else {
        let mut out = String::new();
        write_string(&mut out, key);
        out
    }
}

/// A TOML basic string: quotes, backslashes and control characters escaped.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::String(s) => write_string(out, s),
        Value::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(x) if x.is_nan() => out.push_str("nan"),
        Value::Float(x) if x.is_infinite() => out.push_str(if *x > 0.0 { "inf" } else { "-inf" }),
        Value::Float(x) => {
            let _ = write!(out, "{x:?}");
        }
        Value::Boolean(b) => {
            let _ = write!(out, "{b}");
        }
        Value::Datetime(d) => {
            let _ = write!(out, "{d}");
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Table(t) => {
            out.push('{');
            for (i, (k, v)) in t.iter().enumerate() {
                out.push_str(if i > 0 { ", " } else { " " });
                let _ = write!(out, "{} = ", toml_key(k));
                write_value(out, v);
            }
            out.push_str(if t.is_empty() { "}" } else { " }" });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_patterns_match_whole_keys_only() {
        assert!(is_live("log.level"));
        assert!(is_live("auth.acl_file"));
        assert!(!is_live("mqtt.max_connections"));
        assert!(!is_live("log.level.x"));
        assert!(!is_live("log"));
        assert!(!is_live("listeners.a.certfile"));
    }

    #[test]
    fn values_are_written_as_toml() {
        let mut out = String::new();
        let mut t = Table::new();
        t.insert("a b".into(), Value::String("x\"y\\z\n\u{1}".into()));
        t.insert("n".into(), Value::Array(vec![Value::Integer(-3), Value::Float(2.0)]));
        write_value(&mut out, &Value::Table(t));
        assert_eq!(out, r#"{ "a b" = "x\"y\\z\n\u0001", n = [-3, 2.0] }"#);
        let parsed: Table = format!("v = {out}").parse().unwrap();
        let Some(Value::Table(back)) = parsed.get("v") else { panic!("{parsed:?}") };
        assert_eq!(back.get("a b").and_then(Value::as_str), Some("x\"y\\z\n\u{1}"));
    }
}
