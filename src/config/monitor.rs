//! `[sys]` and `[http]`: how the broker shows its state while it runs — the `$SYS` topic tree
//! (`src/broker/sys.rs`) and the HTTP listener with `/metrics` and `/health` (`src/net/http/`).
//!
//! Contract: like the rest of `config`, every key has a type, a range and a default, and an
//! unknown key is refused with one line naming `sys.key` / `http.key`. Nothing is opened here.

use std::net::SocketAddr;
use std::time::Duration;

use toml::{Table, Value};

use super::{parse_socket_addr, ConfigError, DurationRange, Section, KIB, MIB};

/// `[sys]`: the `$SYS` topic tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysConfig {
    /// How often `$SYS` is published; `None` (`0`) = never (and no wake-up for it).
    pub interval: Option<Duration>,
}

impl Default for SysConfig {
    fn default() -> Self {
        SysConfig { interval: Some(Duration::from_secs(10)) }
    }
}

/// `[http]`: the optional HTTP listener (`/metrics`, `/health`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// Where to listen; `None` (`""`, the default) = no HTTP listener.
    pub bind: Option<SocketAddr>,
    /// HTTP connections open at once; more are closed at accept. 1..=1024.
    pub max_connections: usize,
    /// Bytes of a request's head (request line and headers); more gets 431 and a close.
    /// 1KB..=1MB.
    pub max_request_size: usize,
    /// Time from accept to the last byte of the response; a slower client is closed.
    /// 100ms..=1h.
    pub timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            bind: None,
            max_connections: 16,
            max_request_size: 8 * KIB as usize,
            timeout: Duration::from_secs(5),
        }
    }
}

/// What one section's [`Section::finish`] returns: its known keys and effective values.
type Finished = (Vec<String>, Table);

/// Reads `[sys]` into `sys` and `[http]` into `http`; returns each section's name with its
/// known keys and effective values.
pub(super) fn parse_monitor(
    root: &mut Table,
    origin: &str,
    sys: &mut SysConfig,
    http: &mut HttpConfig,
) -> Result<Vec<(String, Finished)>, ConfigError> {
    let mut sections = Vec::new();

    let mut s = Section::open(root, "sys", origin)?;
    let mut interval = sys.interval.unwrap_or(Duration::ZERO);
    s.duration(&mut interval, "interval", DurationRange::whole_seconds(0, 86_400))?;
    sys.interval = (!interval.is_zero()).then_some(interval);
    let name = s.name.clone();
    sections.push((name, s.finish()?));

    let mut s = Section::open(root, "http", origin)?;
    s.optional_addr(&mut http.bind, "bind")?;
    s.integer(&mut http.max_connections, "max_connections", 1, 1024)?;
    s.size(&mut http.max_request_size, "max_request_size", KIB, MIB)?;
    s.duration(
        &mut http.timeout,
        "timeout",
        DurationRange::any(Duration::from_millis(100), Duration::from_secs(3600)),
    )?;
    let name = s.name.clone();
    sections.push((name, s.finish()?));
    Ok(sections)
}

impl Section<'_> {
    /// An `"IP:port"` string, or `""` for none.
    fn optional_addr(
        &mut self,
        field: &mut Option<SocketAddr>,
        key: &'static str,
    ) -> Result<(), ConfigError> {
        if let Some(value) = self.take(key) {
            self.parse_optional_addr(field, key, value)?;
        }
        let shown = field.map_or_else(String::new, |addr| addr.to_string());
        self.record(key, Value::String(shown));
        Ok(())
    }

    fn parse_optional_addr(
        &mut self,
        field: &mut Option<SocketAddr>,
        key: &'static str,
        value: Value,
    ) -> Result<(), ConfigError> {
        match &value {
            Value::String(s) if s.is_empty() => *field = None,
            Value::String(s) => match parse_socket_addr(s) {
                Some(addr) => *field = Some(addr),
                None => {
                    return Err(self.invalid(
                        key,
                        "an \"IP:port\" address such as \"127.0.0.1:9883\", or \"\" for none"
                            .to_string(),
                        &value,
                    ))
                }
            },
            _ => {
                return Err(self.invalid(
                    key,
                    "an \"IP:port\" address, or \"\" for none".to_string(),
                    &value,
                ))
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::from_toml_str(text, "t.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_publish_sys_every_ten_seconds_and_listen_to_no_http() {
        let config = parse("").unwrap();
        assert_eq!(config.sys.interval, Some(Duration::from_secs(10)));
        assert_eq!(config.http.bind, None);
        assert_eq!(config.http, HttpConfig::default());
    }

    #[test]
    fn sys_interval_zero_is_off_and_fractions_are_refused() {
        assert_eq!(parse("[sys]\ninterval = 0").unwrap().sys.interval, None);
        assert_eq!(
            parse("[sys]\ninterval = \"30s\"").unwrap().sys.interval,
            Some(Duration::from_secs(30))
        );
        let e = parse("[sys]\ninterval = \"1500ms\"").unwrap_err();
        assert!(e.contains("sys.interval"), "{e}");
        let e = parse("[sys]\nintervall = 5").unwrap_err();
        assert!(e.contains("sys.intervall") && e.contains("sys.interval"), "{e}");
    }

    #[test]
    fn http_keys_are_validated_and_name_the_key() {
        let config = parse(
            "[http]\nbind = \"127.0.0.1:9883\"\nmax_connections = 4\nmax_request_size = \"2KB\"\n\
             timeout = \"2s\"",
        )
        .unwrap();
        assert_eq!(config.http.bind, Some("127.0.0.1:9883".parse().unwrap()));
        assert_eq!(config.http.max_connections, 4);
        assert_eq!(config.http.max_request_size, 2048);
        assert_eq!(config.http.timeout, Duration::from_secs(2));
        for bad in [
            "bind = \"localhost\"",
            "bind = 9883",
            "max_connections = 0",
            "max_request_size = 10",
            "timeout = \"1ms\"",
        ] {
            let e = parse(&format!("[http]\n{bad}")).unwrap_err();
            let key = bad.split(' ').next().unwrap();
            assert!(e.contains(&format!("http.{key}")), "{bad}: {e}");
        }
    }
}
