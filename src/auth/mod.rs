//! Authentication and authorisation: who may connect (anonymous clients, the password file)
//! and what they may publish, subscribe to and receive (the ACL file).
//!
//! Contract: decisions are values ([`Login`], [`acl::Verdict`]) with the reason; the broker
//! maps them to reason codes in one place (`broker/access.rs`). Parsing is pure
//! ([`password::parse`], [`acl::parse`]: `&str` in, struct or one error naming the line out,
//! bounded, never panicking: the fuzzing entry points). [`Auth::load`] is the only code here
//! that touches the disk: it reads the two files whole (size-capped) and builds a new `Auth`;
//! reloading (SIGHUP) builds a new one and swaps it in only if it loaded, so a bad file keeps
//! the old rules. Nothing here logs or keeps global state.

pub mod acl;
pub mod backoff;
pub mod password;

use std::fmt;
use std::path::{Path, PathBuf};

pub use acl::{Acl, Client, Verdict};
pub use password::PasswordFile;

/// Largest password or ACL file read. Both live in memory, whole, on a small gateway.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// What the `[auth]` section says, with `allow_anonymous` already resolved.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthSettings {
    pub allow_anonymous: bool,
    pub password_file: Option<PathBuf>,
    pub acl_file: Option<PathBuf>,
}

/// The rules in force.
#[derive(Debug, Clone)]
pub struct Auth {
    allow_anonymous: bool,
    passwords: Option<PasswordFile>,
    acl: Option<Acl>,
}

impl Default for Auth {
    /// Everything allowed: anonymous clients, every topic (no files).
    fn default() -> Auth {
        Auth::new(true, None, None)
    }
}

/// A login decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    Allow,
    Deny(LoginDenied),
}

/// Why a login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginDenied {
    /// No user name, and anonymous clients are not accepted.
    AnonymousNotAllowed,
    /// A user name that is not in the password file.
    UnknownUser,
    /// The user is known; the password is missing or wrong.
    WrongPassword,
    /// A user name was given, there is no password file to check it against, and anonymous
    /// clients are not accepted (an unchecked name is no better than none).
    NoPasswordFile,
    /// The will's topic is not writable for this client (Mosquitto refuses the same way).
    WillNotAllowed(acl::Denied),
}

impl LoginDenied {
    /// Whether the client's credentials were wrong (as opposed to not allowed at all).
    pub fn is_bad_credentials(self) -> bool {
        match self {
            LoginDenied::UnknownUser | LoginDenied::WrongPassword => true,
            LoginDenied::AnonymousNotAllowed
            | LoginDenied::NoPasswordFile
            | LoginDenied::WillNotAllowed(_) => false,
        }
    }
}

impl fmt::Display for LoginDenied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoginDenied::AnonymousNotAllowed => {
                f.write_str("anonymous clients are not accepted (auth.allow_anonymous)")
            }
            LoginDenied::UnknownUser => f.write_str("unknown user"),
            LoginDenied::WrongPassword => f.write_str("wrong password"),
            LoginDenied::NoPasswordFile => {
                f.write_str("a user name but no auth.password_file, and anonymous not accepted")
            }
            LoginDenied::WillNotAllowed(why) => write!(f, "will topic not allowed: {why}"),
        }
    }
}

/// Why the auth files could not be loaded: one line naming the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError(pub String);

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the listener a client came through says about its login (`[listeners.NAME]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenerPolicy {
    /// The listener's `allow_anonymous`: overrides `auth.allow_anonymous` when set.
    pub allow_anonymous: Option<bool>,
    /// The user name is the Common Name of a client certificate the TLS layer verified
    /// (`use_identity_as_username`).
    pub certified_username: bool,
}

impl Auth {
    pub fn new(allow_anonymous: bool, passwords: Option<PasswordFile>, acl: Option<Acl>) -> Auth {
        Auth { allow_anonymous, passwords, acl }
    }

    /// Reads the files `settings` names and builds the rules from them.
    pub fn load(settings: &AuthSettings) -> Result<Auth, LoadError> {
        let passwords = match &settings.password_file {
            Some(path) => Some(read(path, "auth.password_file", |text| {
                password::parse(text).map_err(|e| e.to_string())
            })?),
            None => None,
        };
        let acl = match &settings.acl_file {
            Some(path) => Some(read(path, "auth.acl_file", |text| {
                acl::parse(text).map_err(|e| e.to_string())
            })?),
            None => None,
        };
        Ok(Auth::new(settings.allow_anonymous, passwords, acl))
    }

    pub fn allow_anonymous(&self) -> bool {
        self.allow_anonymous
    }

    pub fn passwords(&self) -> Option<&PasswordFile> {
        self.passwords.as_ref()
    }

    pub fn acl(&self) -> Option<&Acl> {
        self.acl.as_ref()
    }

    /// Whether a CONNECT with these credentials may log in. The will, if any, is checked
    /// separately ([`Auth::check_will`]) once the login itself passed.
    pub fn check_login(&self, username: Option<&str>, password: Option<&[u8]>) -> Login {
        self.check_login_on(username, password, ListenerPolicy::default())
    }

    /// [`Auth::check_login`] for a client of a listener with its own `policy`.
    pub fn check_login_on(
        &self,
        username: Option<&str>,
        password: Option<&[u8]>,
        policy: ListenerPolicy,
    ) -> Login {
        let allow_anonymous = policy.allow_anonymous.unwrap_or(self.allow_anonymous);
        let Some(username) = username else {
            // A password without a user name (MQTT 5.0 allows it) proves nothing.
            return if allow_anonymous {
                Login::Allow
            } else {
                Login::Deny(LoginDenied::AnonymousNotAllowed)
            };
        };
        if policy.certified_username {
            // The TLS layer verified a client certificate with this name (Mosquitto's
            // `use_identity_as_username`): the certificate is the proof, not a password.
            return Login::Allow;
        }
        let Some(passwords) = &self.passwords else {
            return if allow_anonymous {
                Login::Allow
            } else {
                Login::Deny(LoginDenied::NoPasswordFile)
            };
        };
        let known = passwords.contains(username);
        // Verified even for an unknown user or a missing password, so the time taken does not
        // tell which one it was.
        let matched = passwords.verify(username, password.unwrap_or(&[]));
        match (known, matched && password.is_some()) {
            (_, true) => Login::Allow,
            (false, false) => Login::Deny(LoginDenied::UnknownUser),
            (true, false) => Login::Deny(LoginDenied::WrongPassword),
        }
    }

    /// Whether `client` may have a will on `topic`.
    pub fn check_will(&self, client: Client<'_>, topic: &str) -> Login {
        match self.check_publish(client, topic) {
            Verdict::Allow => Login::Allow,
            Verdict::Deny(why) => Login::Deny(LoginDenied::WillNotAllowed(why)),
        }
    }

    /// May `client` publish to `topic`? Without an ACL file, yes.
    pub fn check_publish(&self, client: Client<'_>, topic: &str) -> Verdict {
        self.acl.as_ref().map_or(Verdict::Allow, |acl| acl.check_publish(client, topic))
    }

    /// May `client` subscribe to `filter`? Without an ACL file, yes.
    pub fn check_subscribe(&self, client: Client<'_>, filter: &str) -> Verdict {
        self.acl.as_ref().map_or(Verdict::Allow, |acl| acl.check_subscribe(client, filter))
    }

    /// May a message on `topic` reach `client`? Without an ACL file, yes.
    pub fn check_deliver(&self, client: Client<'_>, topic: &str) -> Verdict {
        self.acl.as_ref().map_or(Verdict::Allow, |acl| acl.check_deliver(client, topic))
    }

    /// One line for the start-up log and after a reload.
    pub fn describe(&self) -> String {
        let anonymous = if self.allow_anonymous {
            "anonymous clients accepted"
        } else {
            "anonymous clients refused"
        };
        let passwords = match &self.passwords {
            Some(p) => format!("{} users in the password file", p.len()),
            None => "no password file".to_string(),
        };
        let acl = match &self.acl {
            Some(a) => format!("{} ACL rules", a.len()),
            None => "no ACL file (every topic allowed)".to_string(),
        };
        format!("auth: {anonymous}; {passwords}; {acl}")
    }
}

/// Reads `path` whole (at most [`MAX_FILE_BYTES`], UTF-8) and parses it.
fn read<T>(
    path: &Path,
    key: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, LoadError> {
    use std::io::Read;
    let fail = |why: String| LoadError(format!("{key} {}: {why}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| fail(e.to_string()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(fail(format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
        fail(format!("line {line}: not valid UTF-8"))
    })?;
    parse(text).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "alice:$7$101$ZFFRz7R3aWx10UoD$8daPUqzzZWv7qsu4pQgUnofS1EDxS+nBs0F0OUg\
                         +Z86MCRMG5BL1vikN71T5V8JdifUEqZxL01XvXkWslCLshg==";

    fn with_passwords(allow_anonymous: bool) -> Auth {
        Auth::new(allow_anonymous, Some(password::parse(ALICE).unwrap()), None)
    }

    #[test]
    fn login_decisions() {
        let auth = with_passwords(false);
        assert_eq!(auth.check_login(Some("alice"), Some(b"secret")), Login::Allow);
        assert_eq!(
            auth.check_login(Some("alice"), Some(b"nope")),
            Login::Deny(LoginDenied::WrongPassword)
        );
        assert_eq!(auth.check_login(Some("alice"), None), Login::Deny(LoginDenied::WrongPassword));
        assert_eq!(
            auth.check_login(Some("bob"), Some(b"secret")),
            Login::Deny(LoginDenied::UnknownUser)
        );
        assert_eq!(auth.check_login(None, None), Login::Deny(LoginDenied::AnonymousNotAllowed));
        assert_eq!(
            auth.check_login(None, Some(b"secret")),
            Login::Deny(LoginDenied::AnonymousNotAllowed)
        );
        // Anonymous allowed: clients without a name pass; named ones are still checked.
        let auth = with_passwords(true);
        assert_eq!(auth.check_login(None, None), Login::Allow);
        assert_eq!(
            auth.check_login(Some("alice"), Some(b"x")),
            Login::Deny(LoginDenied::WrongPassword)
        );
        // No password file: a name is unchecked, so only as good as anonymous.
        let open = Auth::new(true, None, None);
        assert_eq!(open.check_login(Some("x"), None), Login::Allow);
        let closed = Auth::new(false, None, None);
        assert_eq!(closed.check_login(Some("x"), None), Login::Deny(LoginDenied::NoPasswordFile));
        // A listener's own allow_anonymous wins over the global one, both ways.
        let open_listener = ListenerPolicy { allow_anonymous: Some(true), ..Default::default() };
        assert_eq!(closed.check_login_on(None, None, open_listener), Login::Allow);
        let shut_listener = ListenerPolicy { allow_anonymous: Some(false), ..Default::default() };
        assert_eq!(
            open.check_login_on(None, None, shut_listener),
            Login::Deny(LoginDenied::AnonymousNotAllowed)
        );
    }

    #[test]
    fn without_an_acl_file_every_topic_is_allowed() {
        let auth = Auth::default();
        let client = Client { client_id: "c", username: None };
        assert_eq!(auth.check_publish(client, "a"), Verdict::Allow);
        assert_eq!(auth.check_subscribe(client, "#"), Verdict::Allow);
        assert_eq!(auth.check_deliver(client, "$SYS/x"), Verdict::Allow);
        assert_eq!(auth.check_will(client, "a"), Login::Allow);
    }

    #[test]
    fn load_names_the_key_the_file_and_the_line() {
        let dir = std::env::temp_dir().join(format!("edgemq-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pw = dir.join("pw");
        let acl = dir.join("acl");
        std::fs::write(&pw, format!("{ALICE}\n")).unwrap();
        std::fs::write(&acl, "user alice\ntopic alice/#\n").unwrap();
        let settings = AuthSettings {
            allow_anonymous: false,
            password_file: Some(pw.clone()),
            acl_file: Some(acl.clone()),
        };
        let auth = Auth::load(&settings).unwrap();
        assert_eq!(
            auth.describe(),
            "auth: anonymous clients refused; 1 users in the password file; 1 ACL rules"
        );

        std::fs::write(&acl, b"user alice\ntopic \xff\n").unwrap();
        let e = Auth::load(&settings).unwrap_err().to_string();
        assert_eq!(e, format!("auth.acl_file {}: line 2: not valid UTF-8", acl.display()));
        std::fs::write(&pw, "alice:plain\n").unwrap();
        let e = Auth::load(&settings).unwrap_err().to_string();
        assert!(e.starts_with(&format!("auth.password_file {}: line 1: ", pw.display())), "{e}");
        let missing = AuthSettings { password_file: Some(dir.join("none")), ..settings };
        assert!(Auth::load(&missing).unwrap_err().to_string().contains("auth.password_file"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
