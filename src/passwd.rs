//! `edgemq passwd`: writes password-file entries as mosquitto_passwd 2.x does (`$7$`,
//! PBKDF2-SHA512, 101 iterations, 12-byte random salt), so either tool can manage the file.
//!
//! Contract: the only file written is the one named; it is replaced through a temporary file
//! and a rename (a crash leaves the old or the new file, never half of one); a new file gets
//! mode 0600, an existing one keeps its mode and owner. Every other line of an existing file is
//! kept as it was. The password comes from `-b`,
//! from a prompt without echo when standard input is a terminal (asked twice), or from one line
//! of standard input otherwise (for scripts).

use std::fs;
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::auth::password::{self, Hash};
use crate::cli::{PasswdMode, PasswdOptions};

/// Longest password accepted: an MQTT password is binary data of at most 65,535 bytes.
const MAX_PASSWORD_BYTES: usize = 65_535;

/// Runs the command; the error is one line for stderr.
pub fn run(options: &PasswdOptions) -> Result<(), String> {
    let path = &options.file;
    let existing = match options.mode {
        PasswdMode::Create => String::new(),
        PasswdMode::Set | PasswdMode::Delete => read(path)?,
    };
    let hash = match options.mode {
        PasswdMode::Delete => None,
        PasswdMode::Set | PasswdMode::Create => {
            let password = match &options.password {
                Some(p) => p.clone(),
                None => ask_password()?,
            };
            if password.is_empty() {
                return Err("empty password".to_string());
            }
            if password.len() > MAX_PASSWORD_BYTES {
                return Err(format!("a password is at most {MAX_PASSWORD_BYTES} bytes"));
            }
            Some(Hash::new(password.as_bytes())?)
        }
    };
    let (text, found) = password::edit(&existing, &options.user, hash.as_ref())
        .map_err(|e| format!("{}: {e}; not changed", path.display()))?;
    if options.mode == PasswdMode::Delete && !found {
        return Err(format!("{}: user {:?} not found", path.display(), options.user));
    }
    write(path, &text)
}

fn read(path: &Path) -> Result<String, String> {
    let bytes = fs::read(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => {
            format!("{}: no such file (use -c to create it)", path.display())
        }
        _ => format!("{}: {e}", path.display()),
    })?;
    String::from_utf8(bytes)
        .map_err(|_| format!("{}: not valid UTF-8; not changed", path.display()))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    let fail = |e: io::Error| format!("{}: {e}", path.display());
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = Path::new(&tmp_name);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(tmp)
        .map_err(fail)?;
    file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(fail)?;
    // An existing file keeps its mode and owner (the broker may run as another user who was
    // given read access); only a new file gets 0600 and the caller as owner.
    if let Ok(old) = fs::metadata(path) {
        use std::os::unix::fs::MetadataExt;
        fs::set_permissions(tmp, old.permissions()).map_err(fail)?;
        // Only root may give a file away; anyone else writes a file they own anyway.
        let _ = std::os::unix::fs::chown(tmp, Some(old.uid()), Some(old.gid()));
    }
    fs::rename(tmp, path).map_err(fail)
}

fn ask_password() -> Result<String, String> {
    if io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").map_err(|e| e.to_string())?;
        let again = rpassword::prompt_password("Reenter password: ").map_err(|e| e.to_string())?;
        if first != again {
            return Err("passwords do not match".to_string());
        }
        return Ok(first);
    }
    let mut line = String::new();
    let limit = MAX_PASSWORD_BYTES as u64 + 2;
    io::stdin()
        .lock()
        .take(limit)
        .read_line(&mut line)
        .map_err(|e| format!("standard input: {e}"))?;
    let line = line.strip_suffix('\n').unwrap_or(&line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    Ok(line.to_string())
}
