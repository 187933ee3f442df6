//! The `edgemq` binary: command line -> validated config -> broker -> event loop.
//! Exit codes: 0 normal, 1 runtime failure (cannot listen, poll error), 2 bad flags or config.

use std::process::ExitCode;

use edgemq::broker::{Broker, Limits};
use edgemq::cli::{self, Command, RunOptions};
use edgemq::config::Config;
use edgemq::net::EventLoop;
use edgemq::store::{self, Store};
use std::time::Instant;

fn main() -> ExitCode {
    let command = match cli::parse_args(std::env::args().skip(1)) {
        Ok(command) => command,
        Err(error) => {
            eprintln!("edgemq: {error}");
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
    let mut event_loop = match EventLoop::bind(&config.listener.bind, broker) {
        Ok(event_loop) => event_loop,
        Err(error) => {
            log::error!("{error}");
            return ExitCode::from(1);
        }
    };
    if let Err(error) = event_loop.start_bridges(&config.bridges) {
        log::error!("cannot start the bridges: {error}");
        return ExitCode::from(1);
    }
    for addr in event_loop.local_addrs() {
        log::info!("listening on {addr}");
    }
    match event_loop.run() {
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
