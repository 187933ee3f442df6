//! Where the effective configuration comes from: the config file (or the built-in default),
//! then `EDGEMQ_<SECTION>_<KEY>` environment variables, then command-line flags; a later layer
//! wins.
//!
//! Contract:
//! - An environment variable is validated on its own first, like a file whose only key it is:
//!   a bad value is one [`ConfigError`] whose file is the variable's name
//!   (`EDGEMQ_MQTT_MAX_CONNECTIONS: mqtt.max_connections: expected ...`). Rules between keys
//!   are checked once all layers are applied; such an error names the file and every variable
//!   and flag that was applied.
//! - Only variables whose `<SECTION>` is a section with plain keys are read (`LOG`, `LISTENER`,
//!   `MQTT`, `SQLITE`, `AUTH`, and any section added to the parser later); others
//!   (`EDGEMQ_LOG`, `EDGEMQ_BIN`, `EDGEMQ_TEST_...`) are not ours and are left alone.
//!   `[listeners.NAME]` and `[bridges.NAME]` cannot be set from the environment: a variable
//!   that tries (`EDGEMQ_LISTENERS_...`, `EDGEMQ_BRIDGES_...`) is an error.
//! - The caller passes the environment in ([`env_overrides`] takes the variables), so this
//!   module reads nothing but the config file.

use std::ffi::OsString;
use std::path::Path;

use toml::{Table, Value};

use super::effective::Effective;
use super::{
    parse_table, parse_toml, Config, ConfigError, ConfigErrorKind, CrossCheck, DEFAULT_CONFIG,
    DEFAULT_CONFIG_ORIGIN, SECTIONS,
};

/// What environment variable names start with.
pub const ENV_PREFIX: &str = "EDGEMQ_";

/// Sections made of named tables, which the environment cannot set.
const NESTED_SECTIONS: [&str; 2] = ["listeners", "bridges"];

/// One value set outside the config file.
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    pub section: String,
    pub key: String,
    pub value: Value,
    /// What set it: the variable's name or the flag (`--listen`).
    pub source: String,
}

/// A validated configuration and its effective values.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    pub config: Config,
    pub effective: Effective,
}

/// The `EDGEMQ_<SECTION>_<KEY>` variables among `vars`, each checked on its own, sorted by
/// name. `vars` is the whole environment (`std::env::vars_os()`); variables that are not ours
/// are skipped.
pub fn env_overrides(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Vec<Override>, ConfigError> {
    let mut found = Vec::new();
    for (name, value) in vars {
        // A name that is not UTF-8 cannot be one of ours.
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else { continue };
        let rest = rest.to_ascii_lowercase();
        let error = |kind| ConfigError { origin: name.to_string(), kind };
        if let Some(section) = NESTED_SECTIONS.iter().find(|s| starts_section(&rest, s)) {
            return Err(error(ConfigErrorKind::Conflict {
                keys: [format!("{section}.NAME"), name.to_string()],
                message: format!(
                    "[{section}.NAME] tables cannot be set from the environment, only in the \
                     config file"
                ),
            }));
        }
        let flat = SECTIONS.iter().filter(|s| !NESTED_SECTIONS.contains(s));
        // The longest section that fits, should one section's name start another's.
        let Some(section) = flat.filter(|s| starts_section(&rest, s)).max_by_key(|s| s.len())
        else {
            continue;
        };
        let key = rest[section.len() + 1..].to_string();
        let Some(text) = value.to_str() else {
            return Err(error(ConfigErrorKind::Invalid {
                key: format!("{section}.{key}"),
                expected: "a UTF-8 value".to_string(),
                got: "bytes that are not UTF-8".to_string(),
            }));
        };
        let value = env_value(text);
        // Alone, against the defaults: a wrong type, range or name is this variable's error.
        let mut root = Table::new();
        let mut keys = Table::new();
        keys.insert(key.clone(), value.clone());
        root.insert(section.to_string(), Value::Table(keys));
        parse_table(root, name, CrossCheck::No)?;
        found.push(Override { section: section.to_string(), key, value, source: name.to_string() });
    }
    found.sort_by(|a, b| a.source.cmp(&b.source));
    Ok(found)
}

/// `rest` is `section_...` with something after the underscore.
fn starts_section(rest: &str, section: &str) -> bool {
    rest.len() > section.len() + 1
        && rest.starts_with(section)
        && rest.as_bytes().get(section.len()) == Some(&b'_')
}

/// An environment value as TOML: what parses as a TOML value is that value (`5000`, `true`,
/// `"64KB"`, `["a", "b"]`), anything else is a string (`batch`, `64KB`, `0.0.0.0:1883`).
pub fn env_value(text: &str) -> Value {
    let parsed: Option<Table> = format!("v = {text}").parse().ok();
    match parsed.filter(|t| t.len() == 1).and_then(|mut t| t.remove("v")) {
        Some(value) => value,
        None => Value::String(text.to_string()),
    }
}

impl Config {
    /// Reads the config file (`None`: the built-in default), applies `overrides` in order (the
    /// environment's, then the command line's) and validates the result. See the module
    /// comment for which error names what.
    pub fn load_layered(
        path: Option<&Path>,
        overrides: &[Override],
    ) -> Result<Loaded, ConfigError> {
        let (text, origin) = match path {
            Some(path) => {
                let origin = path.display().to_string();
                match std::fs::read_to_string(path) {
                    Ok(text) => (text, origin),
                    Err(e) => {
                        return Err(ConfigError {
                            origin,
                            kind: ConfigErrorKind::Read { reason: e.to_string() },
                        })
                    }
                }
            }
            None => (DEFAULT_CONFIG.to_string(), DEFAULT_CONFIG_ORIGIN.to_string()),
        };
        let root = parse_toml(&text, &origin)?;
        if overrides.is_empty() {
            let (config, order, root) = parse_table(root, &origin, CrossCheck::Yes)?;
            let effective = Effective { root, order, sources: Default::default() };
            return Ok(Loaded { config, effective });
        }
        // The file alone first, so that its own mistakes name only the file.
        parse_table(root.clone(), &origin, CrossCheck::No)?;
        let mut merged = root;
        let mut sources = std::collections::BTreeMap::new();
        for o in overrides {
            let section =
                merged.entry(o.section.clone()).or_insert_with(|| Value::Table(Table::new()));
            // A section that is not a table was refused when the file was read alone.
            if let Value::Table(keys) = section {
                keys.insert(o.key.clone(), o.value.clone());
            }
            sources.insert(format!("{}.{}", o.section, o.key), o.source.clone());
        }
        let mut applied: Vec<&str> = overrides.iter().map(|o| o.source.as_str()).collect();
        applied.dedup();
        let origin = format!("{origin} with {}", applied.join(", "));
        let (config, order, root) = parse_table(merged, &origin, CrossCheck::Yes)?;
        Ok(Loaded { config, effective: Effective { root, order, sources } })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        list.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))).collect()
    }

    #[test]
    fn values_take_their_toml_type_or_stay_strings() {
        assert_eq!(env_value("5000"), Value::Integer(5000));
        assert_eq!(env_value("true"), Value::Boolean(true));
        assert_eq!(env_value("batch"), Value::String("batch".into()));
        assert_eq!(env_value("64KB"), Value::String("64KB".into()));
        assert_eq!(env_value("\"64KB\""), Value::String("64KB".into()));
        assert_eq!(env_value("0.0.0.0:1883"), Value::String("0.0.0.0:1883".into()));
        assert_eq!(env_value(""), Value::String(String::new()));
        // Not a way to smuggle in a second key.
        assert_eq!(env_value("1\nx = 2"), Value::String("1\nx = 2".into()));
    }

    #[test]
    fn our_variables_become_keys_and_others_are_left_alone() {
        let found = env_overrides(vars(&[
            ("EDGEMQ_SQLITE_DURABILITY", "batch"),
            ("EDGEMQ_MQTT_MAX_CONNECTIONS", "5000"),
            ("EDGEMQ_LOG", "debug"),
            ("EDGEMQ_BIN", "/x"),
            ("EDGEMQ_TEST_TIMEOUT_SCALE", "10"),
            ("EDGEMQ_MQTT", "1"),
            ("PATH", "/bin"),
        ]))
        .unwrap();
        let keys: Vec<(&str, &str, &Value)> =
            found.iter().map(|o| (o.section.as_str(), o.key.as_str(), &o.value)).collect();
        assert_eq!(
            keys,
            [
                ("mqtt", "max_connections", &Value::Integer(5000)),
                ("sqlite", "durability", &Value::String("batch".into())),
            ]
        );
    }

    #[test]
    fn a_bad_variable_is_one_line_naming_it() {
        let cases = [
            (
                ("EDGEMQ_MQTT_MAX_CONNECTIONS", "0"),
                "EDGEMQ_MQTT_MAX_CONNECTIONS: mqtt.max_connections: expected an integer between \
                 1 and 1000000, got 0",
            ),
            (
                ("EDGEMQ_SQLITE_DURABILITY", "fast"),
                "EDGEMQ_SQLITE_DURABILITY: sqlite.durability: expected one of \"sync\", \
                 \"batch\", \"memory\", got \"fast\"",
            ),
            (
                ("EDGEMQ_MQTT_MAX_CONECTIONS", "5"),
                "EDGEMQ_MQTT_MAX_CONECTIONS: unknown key \"mqtt.max_conections\" (did you mean \
                 \"mqtt.max_connections\"?)",
            ),
            (
                ("EDGEMQ_LISTENERS_TLS_BIND", "0.0.0.0:8883"),
                "EDGEMQ_LISTENERS_TLS_BIND: [listeners.NAME] tables cannot be set from the \
                 environment, only in the config file",
            ),
        ];
        for ((name, value), expected) in cases {
            let e = env_overrides(vars(&[(name, value)])).unwrap_err();
            assert_eq!(e.to_string(), expected);
        }
    }

    #[test]
    fn layers_apply_in_order_and_conflicts_name_the_sources() {
        let env = env_overrides(vars(&[("EDGEMQ_MQTT_MAX_INFLIGHT", "7")])).unwrap();
        let loaded = Config::load_layered(None, &env).unwrap();
        assert_eq!(loaded.config.mqtt.max_inflight, 7);
        assert!(loaded
            .effective
            .to_toml()
            .contains("max_inflight = 7  # from EDGEMQ_MQTT_MAX_INFLIGHT"));

        let env = env_overrides(vars(&[("EDGEMQ_MQTT_MAX_CONNECTIONS", "5000")])).unwrap();
        let e = Config::load_layered(None, &env).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "built-in conf/edgemq.toml with EDGEMQ_MQTT_MAX_CONNECTIONS: mqtt.max_sessions \
                 (4096) must be at least mqtt.max_connections (5000)"
            ),
            "{e}"
        );
    }
}
