//! The `edgemq` binary: command line -> validated config -> broker -> event loop.
//! Exit codes: 0 normal, 1 runtime failure (cannot listen, poll error), 2 bad flags or config.

use std::process::ExitCode;

use edgemq::broker::{Broker, Limits};
use edgemq::cli::{self, Command, RunOptions};
use edgemq::config::Config;
use edgemq::net::EventLoop;

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
        Command::Inspect { .. } => {
            eprintln!("edgemq inspect: this build has no persistent store to inspect yet");
            ExitCode::from(1)
        }
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

    let broker = Broker::new(Limits::from(&config.mqtt));
    let mut event_loop = match EventLoop::bind(&config.listener.bind, broker) {
        Ok(event_loop) => event_loop,
        Err(error) => {
            log::error!("{error}");
            return ExitCode::from(1);
        }
    };
    for addr in event_loop.local_addrs() {
        log::info!("listening on {addr}");
    }
    match event_loop.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log::error!("event loop failed: {error}");
            ExitCode::from(1)
        }
    }
}
