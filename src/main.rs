//! The `edgemq` binary: command line -> validated config -> broker -> event loop.
//! Exit codes: 0 normal, 1 runtime failure (cannot listen, poll error), 2 bad flags or config.
//! Whatever a command prints to standard output, a reader that goes away (`edgemq inspect |
//! head`) ends the command quietly with status 0, and a closed standard error loses the message
//! but not the exit status.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::{Instant, SystemTime};

use edgemq::auth::{Auth, AuthSettings};
use edgemq::broker::{Broker, Limits};
use edgemq::cli::{self, Command, RunOptions};
use edgemq::config::{
    env_overrides, is_live, Config, ConfigError, Loaded, OnCorrupt, Override, DEFAULT_CONFIG_ORIGIN,
};
use edgemq::heap;
use edgemq::net::{self, EventLoop, RELOAD_SIGNAL};
use edgemq::store::{self, Store, StoreError};

/// One line to standard error. Unlike `eprintln!`, a closed reader (`edgemq ... 2>&1 | head`
/// ended early) is not a panic: the line is lost and the exit status stays the documented one.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(io::stderr(), $($arg)*);
    }};
}

fn main() -> ExitCode {
    let command = match cli::parse_args(std::env::args().skip(1)) {
        Ok(command) => command,
        Err(error) => {
            say!("{error}"); // Display starts with "edgemq: "
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => print_out(cli::USAGE, ExitCode::SUCCESS),
        Command::Version => print_out(&format!("{}\n", cli::VERSION), ExitCode::SUCCESS),
        Command::Inspect { data, conf: _ } => match store::inspect(&data) {
            Ok(report) => print_out(&report, ExitCode::SUCCESS),
            Err(error) => {
                say!("edgemq inspect: {error}");
                ExitCode::from(1)
            }
        },
        Command::Passwd(options) => match edgemq::passwd::run(&options) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                say!("edgemq passwd: {error}");
                ExitCode::from(1)
            }
        },
        Command::Check(options) => check(&options),
        Command::Run(options) => run(&options),
    }
}

/// Writes `text` to standard output. A closed pipe is not an error (the reader has what it
/// wanted): `status` all the same, nothing on standard error. Another write error is status 1.
fn print_out(text: &str, status: ExitCode) -> ExitCode {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => status,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => status,
        Err(e) => {
            say!("edgemq: cannot write to standard output: {e}");
            ExitCode::from(1)
        }
    }
}

/// The layers of the configuration: the file (`--conf`), the environment, the flags.
struct Layers {
    conf: Option<std::path::PathBuf>,
    overrides: Vec<Override>,
}

impl Layers {
    fn new(options: &RunOptions) -> Result<Layers, ConfigError> {
        let mut overrides = env_overrides(std::env::vars_os())?;
        overrides.extend(cli::overrides(options));
        Ok(Layers { conf: options.conf.clone(), overrides })
    }

    fn load(&self) -> Result<Loaded, ConfigError> {
        Config::load_layered(self.conf.as_deref(), &self.overrides)
    }

    /// What errors about a file the config names call the config.
    fn origin(&self) -> String {
        match &self.conf {
            Some(path) => path.display().to_string(),
            None => DEFAULT_CONFIG_ORIGIN.to_string(),
        }
    }
}

/// `edgemq check`: validate everything start-up validates before it touches the data directory
/// (the config, its TLS, password and ACL files), print the effective config and the capacity
/// report. Exit 0, or 2 with one line on standard error.
fn check(options: &RunOptions) -> ExitCode {
    let loaded = match Layers::new(options).and_then(|layers| layers.load()) {
        Ok(loaded) => loaded,
        Err(error) => {
            say!("edgemq: {error}");
            return ExitCode::from(2);
        }
    };
    let config = &loaded.config;
    let origin = Layers { conf: options.conf.clone(), overrides: Vec::new() }.origin();
    if let Err(error) = net::plan_listeners(config) {
        say!("edgemq: {origin}: {error}");
        return ExitCode::from(2);
    }
    if let Err(error) = net::plan_bridges(&config.bridges) {
        say!("edgemq: {origin}: {error}");
        return ExitCode::from(2);
    }
    if let Err(error) = Auth::load(&auth_settings(config)) {
        say!("edgemq: {error}");
        return ExitCode::from(2);
    }
    let mut text = format!(
        "# edgemq check: {origin}, then EDGEMQ_* environment variables, then flags; defaults \
         filled in. Valid.\n"
    );
    text.push_str(&loaded.effective.to_toml());
    text.push('\n');
    for line in edgemq::capacity::report(config) {
        text.push_str(&format!("# {line}\n"));
    }
    print_out(&text, ExitCode::SUCCESS)
}

fn auth_settings(config: &Config) -> AuthSettings {
    // After the command-line overrides: --listen decides what "auto" means.
    AuthSettings {
        allow_anonymous: config.auth.anonymous_allowed(&config.all_binds()),
        password_file: config.auth.password_file.clone(),
        acl_file: config.auth.acl_file.clone(),
    }
}

fn run(options: &RunOptions) -> ExitCode {
    let layers = match Layers::new(options) {
        Ok(layers) => layers,
        Err(error) => {
            say!("edgemq: {error}");
            return ExitCode::from(2);
        }
    };
    let loaded = match layers.load() {
        Ok(loaded) => loaded,
        Err(error) => {
            say!("edgemq: {error}");
            return ExitCode::from(2);
        }
    };
    let config = loaded.config.clone();

    // The level is applied as the global maximum so that SIGHUP can change it; with
    // EDGEMQ_LOG set, that variable decides (module filters included) and log.level is not
    // applied live.
    let env_log = std::env::var_os("EDGEMQ_LOG").is_some();
    let mut logger = env_logger::Builder::new();
    if env_log {
        logger.filter_level(config.log.level.to_level_filter()).parse_env("EDGEMQ_LOG");
    } else {
        logger.filter_level(log::LevelFilter::Trace);
    }
    logger.format_timestamp_millis().init();
    if !env_log {
        log::set_max_level(config.log.level.to_level_filter());
    }
    // TLS certificates and keys (listeners', then bridges') are read before anything else
    // starts: a bad file is a configuration problem (exit 2), named by its key and path.
    let plans = match net::plan_listeners(&config) {
        Ok(plans) => plans,
        Err(error) => return config_file_error(&layers, &error),
    };
    let bridges = match net::plan_bridges(&config.bridges) {
        Ok(bridges) => bridges,
        Err(error) => return config_file_error(&layers, &error),
    };
    let auth_settings = auth_settings(&config);
    let auth = match Auth::load(&auth_settings) {
        Ok(auth) => auth,
        Err(error) => {
            log::error!("{error}");
            return ExitCode::from(2);
        }
    };
    log::info!("{}", auth.describe());
    if auth.acl().is_some() && auth.passwords().is_none() && auth_settings.allow_anonymous {
        // As in Mosquitto: without a password file a user name is whatever the client says.
        log::warn!(
            "auth.acl_file without auth.password_file: `user` rules apply to user names \
             nobody checks"
        );
    }
    if config.auth.allow_anonymous.is_none() {
        log::info!(
            "auth.allow_anonymous = \"auto\": anonymous clients are {}",
            if auth_settings.allow_anonymous {
                "accepted: every listener is on a loopback address"
            } else {
                "refused: a listener is not on a loopback address"
            }
        );
    }

    // What the limits allow, before anything is allocated for them (after the checks of the
    // files the config names, so that a bad one is still the only line of a failed start).
    for line in edgemq::capacity::report(&config) {
        log::info!("{line}");
    }

    let now = Instant::now();
    let store = match open_store(&config) {
        Ok(store) => store,
        Err(error) => {
            log::error!("{error}");
            return ExitCode::from(1);
        }
    };
    let mut broker = Broker::new(Limits::from(&config), store);
    broker.set_auth(auth);
    broker.set_sys_interval(config.sys.interval, now);
    let restored = match broker.restore(now) {
        Ok(restored) => restored,
        Err(error) => {
            let path = broker.store().path().display();
            log::error!("{path}: cannot read the store: {error}");
            return ExitCode::from(1);
        }
    };
    // The load's chunks are gone and the page cache holds what the check read: give both
    // back.
    broker.store().shrink_memory();
    heap::release_free_memory();
    log::info!(
        "store {} ({} durability): {} sessions, {} subscriptions, {} queued messages, {} retained \
         (opened, checked and restored in {} ms)",
        broker.store().path().display(),
        config.sqlite.durability.name(),
        restored.sessions,
        restored.subscriptions,
        restored.queued_messages,
        restored.retained,
        now.elapsed().as_millis()
    );
    if restored.skipped_sessions > 0 {
        log::warn!(
            "{} stored sessions not loaded: mqtt.max_sessions ({}) is too small; they stay in \
             the store",
            restored.skipped_sessions,
            config.mqtt.max_sessions
        );
    }
    let mut event_loop = match EventLoop::bind(plans, broker) {
        Ok(event_loop) => event_loop,
        Err(error) => {
            log::error!("{error}");
            return ExitCode::from(1);
        }
    };
    // Logged after the MQTT listeners: scripts (and the tests) take the first `listening on`
    // line for the MQTT port.
    let http_addr = match event_loop.bind_http(&config.http) {
        Ok(addr) => addr,
        Err(error) => {
            log::error!("{error}");
            return ExitCode::from(1);
        }
    };
    if let Err(error) = event_loop.start_bridges(bridges) {
        log::error!("cannot start the bridges: {error}");
        return ExitCode::from(1);
    }
    let (backlog, somaxconn) = net::effective_backlog(config.listener.backlog);
    for (addr, name, kind) in event_loop.listening() {
        log::info!("listening on {addr} ({kind}, {name}), backlog {backlog}");
    }
    if backlog < config.listener.backlog {
        log::warn!(
            "listener.backlog {} is capped by /proc/sys/net/core/somaxconn ({}): the kernel \
             queues at most {backlog} connections per listener (raise net.core.somaxconn to \
             allow more)",
            config.listener.backlog,
            somaxconn.unwrap_or(backlog),
        );
    }
    if let Some(addr) = http_addr {
        log::info!("http: serving /metrics and /health on {addr} (http.bind); status page at http://{addr}/");
    }
    let mut reload = Reload { layers, env_log, started: loaded.clone(), current: loaded };
    let result = loop {
        match event_loop.run() {
            Ok(RELOAD_SIGNAL) => reload.run(&mut event_loop),
            other => break other,
        }
    };
    match result {
        Ok(_signal) => {
            event_loop.shutdown();
            let totals = event_loop.broker().store().stats();
            // Read by the benchmark (benches/loadgen) to report messages per fsync.
            log::info!(
                "store totals: {} commits, {} log syncs, {} messages written",
                totals.commits,
                totals.fsyncs,
                totals.messages_stored
            );
            log::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            log::error!("event loop failed: {error}");
            ExitCode::from(1)
        }
    }
}

/// Opens the store; with `sqlite.on_corrupt = "quarantine"` a corrupt database is renamed
/// aside (never deleted) and an empty one opened in its place.
fn open_store(config: &Config) -> Result<Store, StoreError> {
    let dir = &config.sqlite.mounted_file_path;
    match Store::open(dir, config.sqlite.clone()) {
        Err(error) if error.corrupt && config.sqlite.on_corrupt == OnCorrupt::Quarantine => {
            let moved = store::quarantine(dir, SystemTime::now()).map_err(|e| StoreError {
                path: error.path.clone(),
                message: format!("{}; moving it aside failed: {e}", error.message),
                corrupt: true,
            })?;
            let names: Vec<String> = moved
                .iter()
                .map(|(from, to)| format!("{} -> {}", from.display(), to.display()))
                .collect();
            log::error!(
                "{error}; sqlite.on_corrupt = \"quarantine\": moved aside ({}), starting with \
                 an empty store (the sessions and messages it held are not restored)",
                names.join(", ")
            );
            Store::open(dir, config.sqlite.clone())
        }
        other => other,
    }
}

/// SIGHUP: the config file, the environment and the flags are read again.
struct Reload {
    layers: Layers,
    /// EDGEMQ_LOG decides the log level (see `run`).
    env_log: bool,
    /// The configuration the broker started with: what keys needing a restart still run with.
    started: Loaded,
    /// The last configuration read (applied where it can be).
    current: Loaded,
}

impl Reload {
    /// Applies what can change live (log level, the limits of `LIVE_KEYS`, the auth files),
    /// names every changed key that needs a restart in one warning line, and keeps the running
    /// configuration if the new one is invalid (one error line naming the key and the file).
    /// The TLS files were re-read by the loop already.
    fn run(&mut self, event_loop: &mut EventLoop) {
        let new = match self.layers.load() {
            Ok(new) => new,
            Err(error) => {
                log::error!("reload failed, the running configuration stays: {error}");
                return;
            }
        };
        let changed = self.current.effective.changed_keys(&new.effective);
        let applied: Vec<String> = changed
            .iter()
            .filter(|k| is_live(k))
            .map(|k| {
                let was = self.current.effective.show(k).unwrap_or_default();
                let now = new.effective.show(k).unwrap_or_default();
                let ignored = if self.env_log && k.as_str() == "log.level" {
                    ", not applied: EDGEMQ_LOG decides"
                } else {
                    ""
                };
                format!("{k} = {now} (was {was}{ignored})")
            })
            .collect();
        let restart: Vec<String> = self
            .started
            .effective
            .changed_keys(&new.effective)
            .into_iter()
            .filter(|k| !is_live(k))
            .collect();

        if !self.env_log {
            log::set_max_level(new.config.log.level.to_level_filter());
        }
        event_loop.apply_live_limits(&Limits::from(&new.config));
        event_loop
            .broker_mut()
            .set_sys_interval(new.config.sys.interval, std::time::Instant::now());
        // The listeners are the running ones: `auto` looks at what is bound.
        let mut settings = auth_settings(&new.config);
        settings.allow_anonymous =
            new.config.auth.anonymous_allowed(&self.started.config.all_binds());
        match Auth::load(&settings) {
            Ok(auth) => {
                log::info!("reloaded: {}", auth.describe());
                event_loop.broker_mut().set_auth(auth);
            }
            Err(error) => {
                log::error!("reload failed, the previous auth rules stay in force: {error}")
            }
        }
        if !restart.is_empty() {
            log::warn!(
                "reload: changed but only applied by a restart (the running values stay): {}",
                restart.join(", ")
            );
        }
        // Last: the line that says the reload is done.
        if applied.is_empty() {
            log::info!("reload: no setting that applies live changed");
        } else {
            log::info!("reload: applied {}", applied.join(", "));
        }
        self.current = new;
    }
}

/// A file named by the config (a certificate, a key) cannot be used: one line naming the config
/// file, the key and the file, and exit code 2 like any other configuration error.
fn config_file_error(layers: &Layers, error: &dyn std::fmt::Display) -> ExitCode {
    say!("edgemq: {}: {error}", layers.origin());
    ExitCode::from(2)
}
