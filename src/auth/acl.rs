//! The ACL file, in Mosquitto's format, and the decisions it gives.
//!
//! ```text
//! # comment
//! topic read sensors/#          <- before any `user` line: rules for anonymous clients
//! user alice
//! topic readwrite alice/#       <- rules for the user named alice
//! topic deny alice/secret
//! pattern write devices/%c/up   <- anywhere: rules for every client, %c = client id, %u = user
//! ```
//!
//! `topic` and `pattern` take an optional access (`read`, `write`, `readwrite`, `deny`;
//! `readwrite` when left out) and a topic filter, the rest of the line (it may hold spaces).
//! A client's rules are its user's (or the anonymous ones) plus every pattern.
//!
//! Decisions (the same as Mosquitto's ACL file):
//! - PUBLISH to a topic (`write`) and delivery of a message to a subscriber (`read`): denied if
//!   a `deny` rule matches the topic; allowed if a rule with that access matches it; denied
//!   otherwise.
//! - SUBSCRIBE to a filter: denied if a `deny` rule covers the whole filter; allowed if a `read`
//!   rule covers the whole filter (every topic the filter matches, the rule matches too: `a/+`
//!   covers `a/b`, `#` covers everything, `a/b` does not cover `a/#`); denied otherwise. Topics
//!   inside a granted filter that a rule denies are filtered out at delivery.
//! - A pattern with `%u` does not apply to a client without a user name, and a pattern does
//!   not apply when the substituted id or name contains `/`, `+` or `#`: a client cannot widen
//!   its own rule by choosing its id.
//!
//! Contract: [`parse`] is pure and bounded (line length, rule count, filter levels); matching
//! walks the levels in a loop (no recursion), allocates nothing, and costs at most the length
//! of the rules plus the topic.

use std::collections::HashMap;
use std::fmt;

use crate::codec::topic;

/// Longest line accepted: a topic filter is at most 65,535 bytes (an MQTT string).
pub const MAX_LINE_BYTES: usize = 65_535 + 64;
/// Rules in one file (all users together).
pub const MAX_RULES: usize = 100_000;
/// Levels in one rule's filter. Rules deeper than any real topic tree are a mistake.
pub const MAX_RULE_LEVELS: usize = 256;

/// What a rule grants (or, for `Deny`, takes away).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl Access {
    fn grants(self, wanted: Want) -> bool {
        matches!(
            (self, wanted),
            (Access::ReadWrite, _) | (Access::Read, Want::Read) | (Access::Write, Want::Write)
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Read,
    Write,
}

/// One `topic` or `pattern` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub access: Access,
    pub filter: Box<str>,
    /// A `pattern` line: `%c` and `%u` are substituted.
    pub pattern: bool,
    /// The line it came from, for log lines.
    pub line: usize,
}

/// Who is asking: the client's id and user name (`None`: anonymous).
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
}

/// An ACL decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny(Denied),
}

/// Why access was denied, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// A `deny` rule on this line matched.
    DenyRule { line: usize },
    /// No rule grants it.
    NoRule,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denied::DenyRule { line } => write!(f, "denied by the ACL rule on line {line}"),
            Denied::NoRule => f.write_str("no ACL rule allows it"),
        }
    }
}

/// A parsed ACL file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Acl {
    /// `topic` lines before the first `user` line.
    anonymous: Vec<Rule>,
    users: HashMap<Box<str>, Vec<Rule>>,
    patterns: Vec<Rule>,
}

/// Why an ACL file was refused: the 1-based line and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Parses an ACL file; see the module documentation for the format and the limits.
pub fn parse(text: &str) -> Result<Acl, ParseError> {
    let mut acl = Acl::default();
    let mut rules = 0usize;
    // None: still in the anonymous part, before any `user` line.
    let mut current_user: Option<Box<str>> = None;
    for (index, line) in text.split('\n').enumerate() {
        let number = index + 1;
        let error = |message: &str| ParseError { line: number, message: message.to_string() };
        if line.len() > MAX_LINE_BYTES {
            return Err(error("line too long (a topic filter is at most 65535 bytes)"));
        }
        let line = line.trim_matches(is_blank);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (keyword, rest) = split_word(line);
        match keyword {
            "user" => {
                if rest.is_empty() {
                    return Err(error("`user` needs a user name"));
                }
                if rest.contains('\0') {
                    return Err(error("user name contains U+0000"));
                }
                acl.users.entry(rest.into()).or_default();
                current_user = Some(rest.into());
            }
            "topic" | "pattern" => {
                let (access, filter) = match split_word(rest) {
                    ("read", f) => (Access::Read, f),
                    ("write", f) => (Access::Write, f),
                    ("readwrite", f) => (Access::ReadWrite, f),
                    ("deny", f) => (Access::Deny, f),
                    _ => (Access::ReadWrite, rest),
                };
                if filter.is_empty() {
                    return Err(error("missing topic filter"));
                }
                if !topic::is_valid_topic_filter(filter) {
                    return Err(error("not a valid topic filter (`#` last and alone in its level, `+` alone in its level, no U+0000)"));
                }
                if filter.split('/').nth(MAX_RULE_LEVELS).is_some() {
                    return Err(error("topic filter deeper than 256 levels"));
                }
                rules += 1;
                if rules > MAX_RULES {
                    return Err(error("more than 100000 rules"));
                }
                let pattern = keyword == "pattern";
                let rule = Rule { access, filter: filter.into(), pattern, line: number };
                match (&current_user, pattern) {
                    (_, true) => acl.patterns.push(rule),
                    (None, false) => acl.anonymous.push(rule),
                    (Some(user), false) => acl.users.entry(user.clone()).or_default().push(rule),
                }
            }
            _ => return Err(error("expected `user`, `topic` or `pattern`")),
        }
    }
    Ok(acl)
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\r'
}

/// The first word and the rest of the line, blanks trimmed.
fn split_word(text: &str) -> (&str, &str) {
    match text.find(is_blank) {
        Some(i) => (&text[..i], text[i..].trim_matches(is_blank)),
        None => (text, ""),
    }
}

impl Acl {
    /// Rules in the file.
    pub fn len(&self) -> usize {
        self.anonymous.len()
            + self.patterns.len()
            + self.users.values().map(Vec::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// May `client` publish to `topic` (a valid topic name)?
    pub fn check_publish(&self, client: Client<'_>, topic: &str) -> Verdict {
        self.check_topic(client, topic, Want::Write)
    }

    /// May a message on `topic` be delivered to `client`?
    pub fn check_deliver(&self, client: Client<'_>, topic: &str) -> Verdict {
        self.check_topic(client, topic, Want::Read)
    }

    /// May `client` subscribe to `filter` (a valid topic filter)?
    pub fn check_subscribe(&self, client: Client<'_>, filter: &str) -> Verdict {
        let mut granted = false;
        for (rule, subst) in self.rules_for(client) {
            if !covers(&rule.filter, filter, subst) {
                continue;
            }
            match rule.access {
                Access::Deny => return Verdict::Deny(Denied::DenyRule { line: rule.line }),
                access => granted |= access.grants(Want::Read),
            }
        }
        if granted {
            Verdict::Allow
        } else {
            Verdict::Deny(Denied::NoRule)
        }
    }

    fn check_topic(&self, client: Client<'_>, topic: &str, wanted: Want) -> Verdict {
        let mut granted = false;
        for (rule, subst) in self.rules_for(client) {
            if !matches(&rule.filter, topic, subst) {
                continue;
            }
            match rule.access {
                Access::Deny => return Verdict::Deny(Denied::DenyRule { line: rule.line }),
                access => granted |= access.grants(wanted),
            }
        }
        if granted {
            Verdict::Allow
        } else {
            Verdict::Deny(Denied::NoRule)
        }
    }

    /// The rules that apply to `client`, each with the substitution it needs (`None` for
    /// `topic` rules, which are literal).
    fn rules_for<'s, 'c>(
        &'s self,
        client: Client<'c>,
    ) -> impl Iterator<Item = (&'s Rule, Option<Substitution<'c>>)> + 's
    where
        'c: 's,
    {
        let own = match client.username {
            Some(user) => self.users.get(user).map_or(&[][..], Vec::as_slice),
            None => self.anonymous.as_slice(),
        };
        let subst = Substitution::of(client);
        let patterns = self.patterns.iter().filter_map(move |rule| {
            let s = subst?;
            let uses_user = rule.filter.contains("%u");
            (!uses_user || s.username.is_some()).then_some((rule, Some(s)))
        });
        own.iter().map(|rule| (rule, None)).chain(patterns)
    }
}

/// The values a pattern's `%c` and `%u` stand for.
#[derive(Debug, Clone, Copy)]
struct Substitution<'a> {
    client_id: &'a str,
    username: Option<&'a str>,
}

impl<'a> Substitution<'a> {
    /// `None` when the id or the name could change the shape of a filter (`/`, `+`, `#`): no
    /// pattern applies to such a client (Mosquitto also refuses `+` and `#` there).
    fn of(client: Client<'a>) -> Option<Substitution<'a>> {
        let unsafe_text = |s: &str| s.contains(['/', '+', '#']);
        if unsafe_text(client.client_id) || client.username.is_some_and(unsafe_text) {
            return None;
        }
        Some(Substitution { client_id: client.client_id, username: client.username })
    }
}

/// Whether one level of a rule (`%c`/`%u` substituted when `subst` is given) equals `level`.
fn level_eq(rule_level: &str, mut level: &str, subst: Option<Substitution<'_>>) -> bool {
    let Some(subst) = subst else {
        return rule_level == level;
    };
    let mut rest = rule_level;
    loop {
        let Some(i) = rest.find('%') else {
            return level == rest;
        };
        let Some(after_literal) = level.strip_prefix(&rest[..i]) else {
            return false;
        };
        let after_percent = &rest[i + 1..];
        let (value, skip) = match after_percent.as_bytes().first() {
            Some(b'c') => (subst.client_id, 1),
            Some(b'u') => (subst.username.unwrap_or(""), 1),
            // A lone `%` is literal.
            _ => ("%", 0),
        };
        let Some(after_value) = after_literal.strip_prefix(value) else {
            return false;
        };
        level = after_value;
        rest = &after_percent[skip..];
    }
}

/// Whether the rule filter matches `topic`: MQTT matching (`+` one level, `#` this level and
/// everything below, wildcards first do not match `$` topics), levels compared with
/// [`level_eq`].
fn matches(rule: &str, topic: &str, subst: Option<Substitution<'_>>) -> bool {
    if topic.starts_with('$') && rule.starts_with(['+', '#']) {
        return false; // MQTT-4.7.2-1
    }
    let mut rule_levels = rule.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        match (rule_levels.next(), topic_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(r), Some(t)) => {
                if !level_eq(r, t, subst) {
                    return false;
                }
            }
            (None, None) => return true,
            (Some(_), None) | (None, Some(_)) => return false,
        }
    }
}

/// Whether the rule filter covers the subscription `filter`: every topic `filter` matches,
/// `rule` matches too.
fn covers(rule: &str, filter: &str, subst: Option<Substitution<'_>>) -> bool {
    if filter.starts_with('$') && rule.starts_with(['+', '#']) {
        return false; // The rule matches no `$` topic, the filter only `$` topics.
    }
    let mut rule_levels = rule.split('/');
    let mut filter_levels = filter.split('/');
    loop {
        match (rule_levels.next(), filter_levels.next()) {
            // `#` covers whatever is left, wildcards included.
            (Some("#"), _) => return true,
            // `+` covers one level, but not `#` (which also matches the parent and deeper).
            (Some("+"), Some(f)) => {
                if f == "#" {
                    return false;
                }
            }
            (Some(r), Some(f)) => {
                if f == "+" || f == "#" || !level_eq(r, f, subst) {
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

    const ANON: Client<'static> = Client { client_id: "anon-1", username: None };

    fn alice(client_id: &'static str) -> Client<'static> {
        Client { client_id, username: Some("alice") }
    }

    fn allowed(v: Verdict) -> bool {
        v == Verdict::Allow
    }

    const FILE: &str = "\
# sensors are public
topic read sensors/#

user alice
topic readwrite alice/#
topic deny alice/secret
topic write  cmd/with space

user bob
topic bob/#

pattern write devices/%c/up
pattern read users/%u/inbox/#
pattern readwrite x-%c-%u-%/y
";

    #[test]
    fn anonymous_user_and_pattern_rules() {
        let acl = parse(FILE).unwrap();
        assert_eq!(acl.len(), 8);
        // Anonymous: only the rules before the first user line, and patterns without %u.
        assert!(allowed(acl.check_deliver(ANON, "sensors/t1")));
        assert!(!allowed(acl.check_publish(ANON, "sensors/t1")));
        assert!(!allowed(acl.check_deliver(ANON, "alice/x")));
        assert!(allowed(acl.check_publish(ANON, "devices/anon-1/up")));
        assert!(!allowed(acl.check_deliver(ANON, "users/anon-1/inbox/a")));
        // alice: her rules, not the anonymous ones.
        let a = alice("a1");
        assert!(allowed(acl.check_publish(a, "alice/x/y")));
        assert!(allowed(acl.check_deliver(a, "alice")));
        assert!(!allowed(acl.check_deliver(a, "sensors/t1")));
        assert_eq!(
            acl.check_publish(a, "alice/secret"),
            Verdict::Deny(Denied::DenyRule { line: 6 })
        );
        assert!(allowed(acl.check_publish(a, "cmd/with space")));
        assert!(!allowed(acl.check_deliver(a, "cmd/with space")));
        // Patterns: %c and %u substituted per client.
        assert!(allowed(acl.check_publish(a, "devices/a1/up")));
        assert!(!allowed(acl.check_publish(a, "devices/a2/up")));
        assert!(!allowed(acl.check_deliver(a, "devices/a1/up")));
        assert!(allowed(acl.check_deliver(a, "users/alice/inbox/1")));
        assert!(!allowed(acl.check_deliver(a, "users/bob/inbox/1")));
        assert!(allowed(acl.check_publish(a, "x-a1-alice-%/y")));
        // bob's `topic bob/#` has no access word: readwrite.
        let b = Client { client_id: "b", username: Some("bob") };
        assert!(allowed(acl.check_publish(b, "bob/1")) && allowed(acl.check_deliver(b, "bob/1")));
        // A user without a section gets only the patterns.
        let c = Client { client_id: "c", username: Some("carol") };
        assert!(!allowed(acl.check_deliver(c, "sensors/t1")));
        assert!(allowed(acl.check_publish(c, "devices/c/up")));
    }

    #[test]
    fn ids_that_would_widen_a_pattern_get_no_pattern() {
        let acl = parse("pattern readwrite devices/%c/#\npattern read u/%u").unwrap();
        for id in ["+", "#", "a/b", "a+"] {
            let client = Client { client_id: id, username: None };
            assert!(!allowed(acl.check_publish(client, &format!("devices/{id}/x"))), "{id}");
        }
        let client = Client { client_id: "ok", username: Some("#") };
        assert!(!allowed(acl.check_publish(client, "devices/ok/x")));
        assert!(allowed(
            acl.check_publish(Client { client_id: "ok", username: None }, "devices/ok/x")
        ));
    }

    #[test]
    fn subscribe_needs_a_read_rule_covering_the_whole_filter() {
        let acl = parse(FILE).unwrap();
        assert!(allowed(acl.check_subscribe(ANON, "sensors/#")));
        assert!(allowed(acl.check_subscribe(ANON, "sensors/+/temp")));
        assert!(allowed(acl.check_subscribe(ANON, "sensors")));
        assert!(!allowed(acl.check_subscribe(ANON, "#")));
        assert!(!allowed(acl.check_subscribe(ANON, "+/t1")));
        let a = alice("a1");
        assert!(allowed(acl.check_subscribe(a, "alice/#")));
        // Overlaps a deny rule only in part: granted; the denied topic is filtered at delivery.
        assert!(allowed(acl.check_subscribe(a, "alice/+")));
        assert_eq!(
            acl.check_subscribe(a, "alice/secret"),
            Verdict::Deny(Denied::DenyRule { line: 6 })
        );
        // write-only rules do not grant subscriptions.
        assert!(!allowed(acl.check_subscribe(a, "cmd/with space")));
        assert!(allowed(acl.check_subscribe(a, "users/alice/inbox/+")));
        assert!(!allowed(acl.check_subscribe(a, "users/+/inbox/#")));
    }

    #[test]
    fn covers_and_matches_follow_mqtt_filter_semantics() {
        let yes = [
            ("#", "a/b"),
            ("#", "#"),
            ("a/#", "a"),
            ("a/#", "a/#"),
            ("a/#", "a/+/c"),
            ("a/+", "a/b"),
            ("a/+", "a/+"),
            ("+/+", "a/+"),
            ("$SYS/#", "$SYS/x"),
        ];
        for (rule, filter) in yes {
            assert!(covers(rule, filter, None), "{rule} should cover {filter}");
        }
        let no = [
            ("a/+", "a/#"),
            ("a/b", "a/+"),
            ("a/b", "a/#"),
            ("a", "a/b"),
            ("a/b", "a"),
            ("#", "$SYS/x"),
            ("+/x", "$SYS/x"),
            ("a/+/c", "a/#"),
        ];
        for (rule, filter) in no {
            assert!(!covers(rule, filter, None), "{rule} should not cover {filter}");
        }
        assert!(matches("a/#", "a", None));
        assert!(matches("+/b", "/b", None));
        assert!(!matches("#", "$SYS/x", None));
        assert!(matches("$SYS/#", "$SYS/x", None));
    }

    #[test]
    fn deep_topics_are_matched_without_recursion() {
        // 100,000 levels: a recursive matcher would overflow the stack on a small thread.
        let topic = "a/".repeat(100_000) + "b";
        let acl = parse("topic read a/#\ntopic deny a/+/+/x").unwrap();
        let result = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                (acl.check_deliver(ANON, &topic), acl.check_subscribe(ANON, &(topic + "/#")))
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(result, (Verdict::Allow, Verdict::Allow));
    }

    fn error(text: &[u8]) -> ParseError {
        parse(&String::from_utf8_lossy(text)).expect_err("must be refused")
    }

    #[test]
    fn broken_and_hostile_lines_are_refused_with_their_line() {
        let cases: &[(&[u8], usize, &str)] = &[
            (b"topic", 1, "missing topic filter"),
            (b"topic read", 1, "missing topic filter"),
            (b"# c\nuser", 2, "needs a user name"),
            (b"topic read a/#/b", 1, "not a valid topic filter"),
            (b"topic read a\0b", 1, "not a valid topic filter"),
            (b"pattern deny +x", 1, "not a valid topic filter"),
            (b"allow read a", 1, "expected `user`, `topic` or `pattern`"),
            (b"\xff\xfe topic", 1, "expected `user`"),
            (b"user a\0", 1, "U+0000"),
        ];
        for (text, line, needle) in cases {
            let e = error(text);
            assert_eq!(e.line, *line, "{text:?}: {e}");
            assert!(e.message.contains(needle), "{text:?}: {e}");
        }
        let deep = format!("topic {}", "a/".repeat(MAX_RULE_LEVELS) + "b");
        assert!(error(deep.as_bytes()).message.contains("deeper than 256"));
        let long = format!("topic {}", "a".repeat(MAX_LINE_BYTES));
        assert!(error(long.as_bytes()).message.contains("too long"));
    }

    #[test]
    fn rule_count_is_capped() {
        let mut text = String::new();
        for i in 0..=MAX_RULES {
            text.push_str(&format!("user u{i}\ntopic t/{i}\n"));
        }
        let e = parse(&text).unwrap_err();
        assert_eq!(e.line, 2 * (MAX_RULES + 1));
        assert!(e.message.contains("more than 100000 rules"));
    }

    #[test]
    fn an_empty_file_denies_everything() {
        let acl = parse("# nothing\n\n").unwrap();
        assert!(acl.is_empty());
        assert_eq!(acl.check_publish(ANON, "a"), Verdict::Deny(Denied::NoRule));
        assert_eq!(acl.check_subscribe(alice("x"), "#"), Verdict::Deny(Denied::NoRule));
    }
}
