//! The `edgemq` binary: command line -> validated config -> broker -> event loop.
//! Exit codes: 0 normal, 1 runtime failure (cannot listen, poll error), 2 bad flags or config.

use std::process::ExitCode;

use edgemq::auth::{Auth, AuthSettings};
use edgemq::broker::{Broker, Limits};
use edgemq::cli::{self, Command, RunOptions};
use edgemq::config::{Config, DEFAULT_CONFIG_ORIGIN};
use edgemq::net::{self, EventLoop, RELOAD_SIGNAL};
use edgemq::store::{self, Store};
use std::time::Instant;

fn main() -> ExitCode {
    let command = match cli::parse_args(std::env::args().skip(1)) {
        Ok(command) => command,
        Err(error) => {
            eprintln!("{error}"); // Display starts with "edgemq: "
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => {
            print!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("{}", cli::VERSION);
            ExitCode::SUCCESS
        }
        Command::Inspect { data, conf: _ } => match store::inspect(&data) {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("edgemq inspect: {error}");
                ExitCode::from(1)
            }
        },
        Command::Passwd(options) => match edgemq::passwd::run(&options) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("edgemq passwd: {error}");
                ExitCode::from(1)
            }
        },
        Command::Run(options) => run(&options),
    }
}

fn run(options: &RunOptions) -> ExitCode {
    let loaded = match &options.conf {
        Some(path) => Config::load(path),
        None => Config::embedded_default(),
    };
    let mut config = match loaded {
        Ok(config) => config,
        Err(error) => {
            eprintln!("edgemq: {error}");
            return ExitCode::from(2);
        }
    };
    cli::apply_overrides(&mut config, options);

    env_logger::Builder::new()
        .filter_level(config.log.level.to_level_filter())
        .parse_env("EDGEMQ_LOG")
        .format_timestamp_millis()
        .init();

    // TLS certificates and keys (listeners', then bridges') are read before anything else
    // starts: a bad file is a configuration problem (exit 2), named by its key and path.
    let plans = match net::plan_listeners(&config) {
        Ok(plans) => plans,
        Err(error) => return config_file_error(options, &error),
    };
    let bridges = match net::plan_bridges(&config.bridges) {
        Ok(bridges) => bridges,
        Err(error) => return config_file_error(options, &error),
    };
    // After the command-line overrides: --listen decides what "auto" means.
    let auth_settings = AuthSettings {
        allow_anonymous: config.auth.anonymous_allowed(&config.all_binds()),
        password_file: config.auth.password_file.clone(),
        acl_file: config.auth.acl_file.clone(),
    };
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

    let now = Instant::now();
    let data_dir = &config.sqlite.mounted_file_path;
    let mut store = match Store::open(data_dir, config.sqlite.clone()) {
        Ok(store) => store,
        Err(error) => {
            log::error!("{error}");
            return ExitCode::from(1);
        }
    };
    let snapshot = match store.load() {
        Ok(snapshot) => snapshot,
        Err(error) => {
            let message = format!("{}: cannot read the store: {error}", store.path().display());
            log::error!("{message}");
            return ExitCode::from(1);
        }
    };
    let mut broker = Broker::new(Limits::from(&config), store);
    broker.set_auth(auth);
    let restored = broker.restore(snapshot, now);
    log::info!(
        "store {} ({} durability): {} sessions, {} subscriptions, {} queued messages, {} retained",
        broker.store().path().display(),
        config.sqlite.durability.name(),
        restored.sessions,
        restored.subscriptions,
        restored.queued_messages,
        restored.retained
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
    let result = loop {
        match event_loop.run() {
            Ok(RELOAD_SIGNAL) => reload_auth(&auth_settings, event_loop.broker_mut()),
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

/// SIGHUP: the password and ACL files are read again and swapped in whole; a file that fails
/// keeps the rules in force. Connections stay.
fn reload_auth(settings: &AuthSettings, broker: &mut Broker) {
    match Auth::load(settings) {
        Ok(auth) => {
            log::info!("reloaded: {}", auth.describe());
            broker.set_auth(auth);
        }
        Err(error) => log::error!("reload failed, the previous auth rules stay in force: {error}"),
    }
}

/// A file named by the config (a certificate, a key) cannot be used: one line naming the config
/// file, the key and the file, and exit code 2 like any other configuration error.
fn config_file_error(options: &RunOptions, error: &dyn std::fmt::Display) -> ExitCode {
    let origin = match &options.conf {
        Some(path) => path.display().to_string(),
        None => DEFAULT_CONFIG_ORIGIN.to_string(),
    };
    eprintln!("edgemq: {origin}: {error}");
    ExitCode::from(2)
}
