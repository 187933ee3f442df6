//! The password file, in Mosquitto's format, read as is: one `user:hash` per line, where the
//! hash is what `mosquitto_passwd` writes.
//!
//! - `$7$ITERATIONS$SALT$HASH`: PBKDF2-HMAC-SHA512 (mosquitto_passwd 2.x, the default):
//!   `HASH = PBKDF2(password, SALT, ITERATIONS, 64 bytes)`.
//! - `$6$SALT$HASH`: salted SHA-512 (mosquitto_passwd 1.x, or 2.x with `-H sha512`):
//!   `HASH = SHA-512(password || SALT)`.
//!
//! SALT and HASH are standard base64 with padding, the salt 12 bytes when mosquitto_passwd made
//! it. Blank lines and lines starting with `#` are skipped; blanks around the user name and the
//! hash are trimmed, as Mosquitto does.
//!
//! Contract: [`parse`] is pure (text in, [`PasswordFile`] or one [`ParseError`] naming the line
//! out), never panics, and is bounded: lines, users, salt and iterations all have caps, so a
//! hostile or mistaken file costs bounded memory and a login costs bounded time (verification
//! runs on the event loop). Stricter than Mosquitto where Mosquitto would silently skip: a line
//! without `:`, an unknown hash format (a plain-text password) or a user given twice is an error,
//! so a mistake in an access-control file never goes unnoticed. Verification compares in
//! constant time and does the same work for an unknown user as for a known one.

use std::collections::HashMap;
use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

/// Longest line accepted (user name, `:` and hash). User names are MQTT strings (65,535 bytes).
pub const MAX_LINE_BYTES: usize = 65_535 + 1 + 256;
/// Users in one file. The whole table lives in memory on a small gateway.
pub const MAX_USERS: usize = 100_000;
/// PBKDF2 iterations accepted: every login runs them on the single event-loop thread, so a
/// file asking for millions would stall every client on each CONNECT. mosquitto_passwd uses
/// 101 (and [`DEFAULT_ITERATIONS`] is the same).
pub const MAX_ITERATIONS: u32 = 10_000;
/// Salt bytes accepted (mosquitto_passwd writes 12).
pub const MAX_SALT_BYTES: usize = 64;
/// What `edgemq passwd` writes: the same as mosquitto_passwd 2.x.
pub const DEFAULT_ITERATIONS: u32 = 101;
/// Salt bytes `edgemq passwd` writes: the same as mosquitto_passwd 2.x.
pub const SALT_BYTES: usize = 12;
/// SHA-512 output, the only hash length mosquitto_passwd writes.
const HASH_BYTES: usize = 64;

/// One stored password hash.
#[derive(Clone, PartialEq, Eq)]
pub enum Hash {
    /// `$7$`: PBKDF2-HMAC-SHA512.
    Pbkdf2Sha512 { iterations: u32, salt: Vec<u8>, hash: [u8; HASH_BYTES] },
    /// `$6$`: SHA-512(password || salt).
    Sha512 { salt: Vec<u8>, hash: [u8; HASH_BYTES] },
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print hashes, not even in a debug log.
        match self {
            Hash::Pbkdf2Sha512 { iterations, .. } => write!(f, "$7$ ({iterations} iterations)"),
            Hash::Sha512 { .. } => f.write_str("$6$"),
        }
    }
}

impl Hash {
    /// A new `$7$` hash of `password` with a fresh random salt.
    pub fn new(password: &[u8]) -> Result<Hash, String> {
        let mut salt = vec![0u8; SALT_BYTES];
        getrandom::getrandom(&mut salt).map_err(|e| format!("no random salt: {e}"))?;
        Ok(Hash::pbkdf2(password, salt, DEFAULT_ITERATIONS))
    }

    /// A `$7$` hash of `password` with the given salt and iterations.
    pub fn pbkdf2(password: &[u8], salt: Vec<u8>, iterations: u32) -> Hash {
        let mut hash = [0u8; HASH_BYTES];
        pbkdf2::pbkdf2_hmac::<Sha512>(password, &salt, iterations, &mut hash);
        Hash::Pbkdf2Sha512 { iterations, salt, hash }
    }

    /// Whether `password` is the one this hash was made from; compared in constant time.
    pub fn verify(&self, password: &[u8]) -> bool {
        let mut computed = [0u8; HASH_BYTES];
        let stored = match self {
            Hash::Pbkdf2Sha512 { iterations, salt, hash } => {
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, *iterations, &mut computed);
                hash
            }
            Hash::Sha512 { salt, hash } => {
                let mut digest = Sha512::new();
                digest.update(password);
                digest.update(salt);
                computed.copy_from_slice(&digest.finalize());
                hash
            }
        };
        bool::from(computed.ct_eq(stored))
    }

    /// The text after `user:` in the file.
    pub fn encode(&self) -> String {
        match self {
            Hash::Pbkdf2Sha512 { iterations, salt, hash } => {
                format!("$7${iterations}${}${}", BASE64.encode(salt), BASE64.encode(hash))
            }
            Hash::Sha512 { salt, hash } => {
                format!("$6${}${}", BASE64.encode(salt), BASE64.encode(hash))
            }
        }
    }

    /// Parses the text after `user:`.
    pub fn decode(text: &str) -> Result<Hash, String> {
        if let Some(rest) = text.strip_prefix("$7$") {
            let mut fields = rest.split('$');
            let (Some(iterations), Some(salt), Some(hash), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return Err("a $7$ hash must be $7$ITERATIONS$SALT$HASH".to_string());
            };
            let iterations = match iterations.parse::<u32>() {
                Ok(n) if (1..=MAX_ITERATIONS).contains(&n) => n,
                _ => {
                    return Err(format!(
                        "$7$ iterations must be a number from 1 to {MAX_ITERATIONS}, got \
                         {:?}",
                        cut(iterations)
                    ))
                }
            };
            let (salt, hash) = (decode_salt(salt)?, decode_hash(hash)?);
            Ok(Hash::Pbkdf2Sha512 { iterations, salt, hash })
        } else if let Some(rest) = text.strip_prefix("$6$") {
            let mut fields = rest.split('$');
            let (Some(salt), Some(hash), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err("a $6$ hash must be $6$SALT$HASH".to_string());
            };
            let (salt, hash) = (decode_salt(salt)?, decode_hash(hash)?);
            Ok(Hash::Sha512 { salt, hash })
        } else {
            Err("not a $7$ or $6$ hash (a plain-text password? hash it with `edgemq passwd` \
                 or `mosquitto_passwd -U`)"
                .to_string())
        }
    }
}

fn decode_salt(text: &str) -> Result<Vec<u8>, String> {
    // Base64 of MAX_SALT_BYTES is at most 4 * ceil(64 / 3) = 88 characters: refuse longer
    // text before decoding it.
    if text.len() > 88 {
        return Err(format!("salt longer than {MAX_SALT_BYTES} bytes"));
    }
    match BASE64.decode(text) {
        Ok(salt) if !salt.is_empty() && salt.len() <= MAX_SALT_BYTES => Ok(salt),
        Ok(_) => Err(format!("salt must be 1 to {MAX_SALT_BYTES} bytes")),
        Err(_) => Err("salt is not base64".to_string()),
    }
}

fn decode_hash(text: &str) -> Result<[u8; HASH_BYTES], String> {
    if text.len() != 88 {
        return Err("hash is not 64 bytes of base64".to_string());
    }
    let bytes = BASE64.decode(text).map_err(|_| "hash is not base64".to_string())?;
    <[u8; HASH_BYTES]>::try_from(bytes.as_slice())
        .map_err(|_| "hash is not 64 bytes of base64".to_string())
}

/// At most 40 characters of `text`, for error messages.
fn cut(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

/// A parsed password file: user name -> hash.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PasswordFile {
    users: HashMap<Box<str>, Hash>,
    /// The users in file order, for writing the file back as it was.
    order: Vec<Box<str>>,
}

/// Why a password file was refused: the 1-based line and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 0 for errors about the whole file.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

/// A hash nobody has a password for, verified when the user is unknown, so that an unknown
/// user costs a CONNECT the same time as a wrong password.
fn dummy_hash() -> Hash {
    Hash::Pbkdf2Sha512 { iterations: DEFAULT_ITERATIONS, salt: vec![0; SALT_BYTES], hash: [0; 64] }
}

/// Parses a password file; see the module documentation for the format and the limits.
pub fn parse(text: &str) -> Result<PasswordFile, ParseError> {
    let mut file = PasswordFile::default();
    for (index, line) in text.split('\n').enumerate() {
        let number = index + 1;
        let error = |message: String| ParseError { line: number, message };
        if line.len() > MAX_LINE_BYTES {
            return Err(error(format!("longer than {MAX_LINE_BYTES} bytes")));
        }
        let line = line.strip_suffix('\r').unwrap_or(line);
        let trimmed = line.trim_matches(is_blank);
        if trimmed.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, hash)) = trimmed.split_once(':') else {
            return Err(error("expected user:hash".to_string()));
        };
        let user = user.trim_matches(is_blank);
        if user.is_empty() {
            return Err(error("empty user name".to_string()));
        }
        if user.contains('\0') {
            return Err(error("user name contains U+0000".to_string()));
        }
        let hash = Hash::decode(hash.trim_matches(is_blank))
            .map_err(|message| error(format!("user {:?}: {message}", cut(user))))?;
        file.insert(user, hash).map_err(error)?;
    }
    Ok(file)
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

impl PasswordFile {
    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn contains(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// Adds a user; refuses a second entry for the same name and more than [`MAX_USERS`].
    fn insert(&mut self, user: &str, hash: Hash) -> Result<(), String> {
        if self.users.contains_key(user) {
            return Err(format!("user {:?} given twice", cut(user)));
        }
        if self.users.len() >= MAX_USERS {
            return Err(format!("more than {MAX_USERS} users"));
        }
        self.users.insert(user.into(), hash);
        self.order.push(user.into());
        Ok(())
    }

    /// Adds or replaces a user (`edgemq passwd`); the user's line keeps its place.
    pub fn set(&mut self, user: &str, hash: Hash) -> Result<(), String> {
        if user.is_empty() || user.contains([':', '\0', '\n', '\r']) {
            return Err("a user name must be non-empty, without ':' or line breaks".to_string());
        }
        if user.trim_matches(is_blank) != user {
            return Err("a user name must not start or end with blanks".to_string());
        }
        if user.len() > 65_535 {
            return Err("a user name is at most 65535 bytes".to_string());
        }
        match self.users.get_mut(user) {
            Some(existing) => {
                *existing = hash;
                Ok(())
            }
            None => self.insert(user, hash),
        }
    }

    /// Removes a user; false if there was none.
    pub fn remove(&mut self, user: &str) -> bool {
        let existed = self.users.remove(user).is_some();
        self.order.retain(|u| &**u != user);
        existed
    }

    /// Whether `user` is in the file with `password`. An unknown user costs the same hashing
    /// as a known one.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.users.get(user) {
            Some(hash) => hash.verify(password),
            None => {
                let _ = dummy_hash().verify(password);
                false
            }
        }
    }

    /// The file's text, one `user:hash` line per user in file order.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for user in &self.order {
            if let Some(hash) = self.users.get(user) {
                out.push_str(user);
                out.push(':');
                out.push_str(&hash.encode());
                out.push('\n');
            }
        }
        out
    }
}

/// `text` (a password file) with `user`'s line replaced by `user:HASH`, appended if absent, or
/// removed when `hash` is `None`: what `edgemq passwd` writes. Every other line (comments,
/// other users) stays byte for byte. Returns the new text and whether `user` was in the file.
/// The file must parse first: a broken file is not edited.
pub fn edit(text: &str, user: &str, hash: Option<&Hash>) -> Result<(String, bool), ParseError> {
    parse(text)?;
    let mut out = String::with_capacity(text.len() + 128);
    let mut found = false;
    let body = text.strip_suffix('\n').unwrap_or(text);
    for line in body.split('\n').filter(|_| !text.is_empty()) {
        let is_entry = !line.starts_with('#')
            && line.split_once(':').is_some_and(|(u, _)| u.trim_matches(is_blank) == user);
        if !is_entry {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        found = true;
        if let Some(hash) = hash {
            out.push_str(&format!("{user}:{}\n", hash.encode()));
        }
    }
    if let (false, Some(hash)) = (found, hash) {
        out.push_str(&format!("{user}:{}\n", hash.encode()));
    }
    Ok((out, found))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by Debian's mosquitto_passwd 2.0.11: `mosquitto_passwd -c -b pw alice secret`.
    const ALICE_7: &str = "alice:$7$101$ZFFRz7R3aWx10UoD$8daPUqzzZWv7qsu4pQgUnofS1EDxS+nBs0F0OUg\
                           +Z86MCRMG5BL1vikN71T5V8JdifUEqZxL01XvXkWslCLshg==";

    #[test]
    fn mosquitto_passwd_pbkdf2_entry_verifies() {
        let file = parse(ALICE_7).unwrap();
        assert_eq!(file.len(), 1);
        assert!(file.verify("alice", b"secret"));
        assert!(!file.verify("alice", b"Secret"));
        assert!(!file.verify("alice", b""));
        assert!(!file.verify("bob", b"secret"));
    }

    #[test]
    fn the_mosquitto_passwd_fixture_verifies_both_formats() {
        // tests/data/mosquitto.passwd says how Debian's mosquitto_passwd made it.
        let file = parse(include_str!("../../tests/data/mosquitto.passwd")).unwrap();
        assert_eq!(file.len(), 3);
        assert!(file.verify("alice", b"alice-secret")); // $7$
        assert!(file.verify("carol", b"carol-secret")); // $6$
        assert!(file.verify("dave smith", b"pass:with spaces"));
        assert!(!file.verify("carol", b"alice-secret"));
    }

    #[test]
    fn sha512_entry_verifies() {
        // SHA-512(b"secret" || salt) for the 12-byte salt 00 01 .. 0b, made here with the same
        // formula mosquitto_passwd -H sha512 uses (the fixture file in tests/ is the real one).
        let salt: Vec<u8> = (0..12).collect();
        let mut digest = Sha512::new();
        digest.update(b"secret");
        digest.update(&salt);
        let hash: [u8; 64] = digest.finalize().into();
        let line = format!("carol:$6${}${}", BASE64.encode(&salt), BASE64.encode(hash));
        let file = parse(&line).unwrap();
        assert!(file.verify("carol", b"secret"));
        assert!(!file.verify("carol", b"secreT"));
    }

    #[test]
    fn new_hash_round_trips_through_the_file_format() {
        let hash = Hash::new(b"p@ss:w rd").unwrap();
        let mut file = PasswordFile::default();
        file.set("dave", hash).unwrap();
        let text = file.to_text();
        assert!(text.starts_with("dave:$7$101$"), "{text}");
        let again = parse(&text).unwrap();
        assert!(again.verify("dave", b"p@ss:w rd"));
        assert!(!again.verify("dave", b"p@ss:w r"));
        assert_eq!(again.to_text(), text);
    }

    #[test]
    fn comments_blank_lines_crlf_and_blanks_are_accepted() {
        let text = format!("# users\n\n  \r\n{ALICE_7}\r\n\t\n");
        assert!(parse(&text).unwrap().verify("alice", b"secret"));
        let spaced = ALICE_7.replacen(':', " : ", 1);
        assert!(parse(&spaced).unwrap().verify("alice", b"secret"));
    }

    fn error(text: &[u8]) -> ParseError {
        // The loader refuses invalid UTF-8 before parse; lossy conversion keeps the bytes' shape.
        parse(&String::from_utf8_lossy(text)).expect_err("must be refused")
    }

    #[test]
    fn hostile_and_broken_lines_are_refused_with_their_line() {
        let cases: &[(&[u8], usize, &str)] = &[
            (b"alice", 1, "expected user:hash"),
            (b"\n:$6$AAAA$", 2, "empty user name"),
            (b"alice:secret", 1, "not a $7$ or $6$ hash"),
            (b"alice:$7$101$AAAA", 1, "$7$ITERATIONS$SALT$HASH"),
            (b"alice:$7$0$AAAA$AAAA", 1, "iterations must be"),
            (b"alice:$7$99999999999999999999$AAAA$AAAA", 1, "iterations must be"),
            (b"alice:$7$10001$AAAA$AAAA", 1, "iterations must be"),
            (b"alice:$7$101$!!!!$AAAA", 1, "salt is not base64"),
            (b"alice:$7$101$AAAA$AAAA", 1, "hash is not 64 bytes"),
            (b"alice:$6$AAAA$AAAA$AAAA", 1, "$6$SALT$HASH"),
            (b"a\0b:$6$AAAA$AAAA", 1, "U+0000"),
            (b"\xff\xfe:$6$", 1, "a $6$ hash must be"),
            (b"alice:$6$$", 1, "salt must be"),
        ];
        for (text, line, needle) in cases {
            let e = error(text);
            assert_eq!(e.line, *line, "{text:?}: {e}");
            assert!(e.message.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn duplicate_users_are_refused() {
        let e = parse(&format!("{ALICE_7}\n{ALICE_7}\n")).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("given twice"), "{e}");
    }

    #[test]
    fn huge_lines_are_refused_without_parsing_them() {
        let mut text = "a".repeat(MAX_LINE_BYTES + 1);
        text.push_str(":$6$AAAA$AAAA");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("longer than"), "{e}");
        // A long salt is refused before base64 decoding.
        let e = parse(&format!("a:$6${}$x", "A".repeat(10_000))).unwrap_err();
        assert!(e.message.contains("salt longer"), "{e}");
    }

    #[test]
    fn a_million_users_is_refused_at_the_cap() {
        let entry = ALICE_7.split_once(':').unwrap().1;
        let mut text = String::with_capacity(1_000_000 * 120);
        for i in 0..1_000_000 {
            text.push_str(&format!("u{i}:{entry}\n"));
        }
        let e = parse(&text).unwrap_err();
        assert_eq!(e.line, MAX_USERS + 1);
        assert!(e.message.contains("more than 100000 users"), "{e}");
    }

    #[test]
    fn set_and_remove_keep_the_order() {
        let mut file = parse(ALICE_7).unwrap();
        file.set("bob", Hash::new(b"x").unwrap()).unwrap();
        file.set("alice", Hash::new(b"y").unwrap()).unwrap();
        let text = file.to_text();
        assert!(text.starts_with("alice:") && text.contains("\nbob:"), "{text}");
        assert!(file.verify("alice", b"y"));
        assert!(file.remove("alice"));
        assert!(!file.remove("alice"));
        assert!(file.to_text().starts_with("bob:"));
        for bad in ["", "a:b", "a\nb", " a", "a\0"] {
            assert!(file.set(bad, Hash::new(b"x").unwrap()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn edit_keeps_every_other_line() {
        let text =
            format!("# made by hand\n{ALICE_7}\n\nbob:{}\n", Hash::new(b"b").unwrap().encode());
        let new = Hash::new(b"new").unwrap();
        let (replaced, found) = edit(&text, "alice", Some(&new)).unwrap();
        assert!(found);
        assert!(replaced.starts_with("# made by hand\nalice:$7$101$"), "{replaced}");
        assert_eq!(replaced.lines().count(), 4);
        let file = parse(&replaced).unwrap();
        assert!(file.verify("alice", b"new") && file.verify("bob", b"b"));
        let (added, found) = edit(&replaced, "carol", Some(&new)).unwrap();
        assert!(!found && added.ends_with('\n') && parse(&added).unwrap().verify("carol", b"new"));
        let (deleted, found) = edit(&added, "alice", None).unwrap();
        assert!(found && !parse(&deleted).unwrap().contains("alice"));
        assert_eq!(edit(&deleted, "alice", None).unwrap(), (deleted.clone(), false));
        let (first, _) = edit("", "dave", Some(&new)).unwrap();
        assert_eq!(first.lines().count(), 1);
        assert!(edit("broken line", "dave", Some(&new)).is_err());
    }

    #[test]
    fn debug_never_shows_the_hash() {
        let file = parse(ALICE_7).unwrap();
        let shown = format!("{file:?}");
        assert!(!shown.contains("8daPU") && !shown.contains("ZFFR"), "{shown}");
    }
}
