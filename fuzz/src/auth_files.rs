//! `auth_files`: Mosquitto password and ACL files as an operator (or an attacker who can write
//! one) might hand them to edgemq.
//!
//! Input: the first byte picks the parser (even: password file, odd: ACL file); the rest is
//! the file's text (invalid UTF-8 is replaced, as `Auth::load` would refuse it before parsing).
//! For an ACL that parses, every line of the text is also used as a topic and as a filter,
//! for two clients (anonymous, and one named after the first line), through both checks.
//!
//! Promises: neither parser nor check panics, however deep or long the lines; a parse error
//! names a line that exists (or 0, the whole file); checks of a topic and of the same string as a filter are made
//! without recursion (a 65 KB line of `/` is a 65,536-level topic).

use edgemq::auth::{acl, password, Client};

pub fn run(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    let lines = text.split('\n').count();
    if selector % 2 == 0 {
        if let Err(error) = password::parse(&text) {
            // Line 0 stands for the whole file (e.g. too many users).
            assert!(error.line <= lines, "error on line {} of {lines}", error.line);
        }
        // Hash verification is left out: PBKDF2 with up to 10,000 iterations per entry would
        // make every input slow, and it runs vetted code (RustCrypto) on parsed values only.
        return;
    }
    let rules = match acl::parse(&text) {
        Ok(rules) => rules,
        Err(error) => {
            assert!(error.line >= 1 && error.line <= lines, "error on line {} of {lines}", error.line);
            return;
        }
    };
    let name = text.split('\n').next().unwrap_or_default();
    let clients = [
        Client { client_id: "fuzz", username: None },
        Client { client_id: name, username: Some(name) },
    ];
    for line in text.split('\n').take(64) {
        for client in clients {
            let _ = rules.check_publish(client, line);
            let _ = rules.check_subscribe(client, line);
        }
    }
}
