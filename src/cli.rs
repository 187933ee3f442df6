//! Command line: which [`Command`] to run and the options that override the config file.
//!
//! Contract: [`parse_args`] gets the arguments *without* the program name
//! (`std::env::args().skip(1)`) and returns one [`Command`] or one [`CliError`] whose `Display`
//! is a single line (`edgemq: unknown flag --lissen (did you mean --listen?); see edgemq --help`);
//! main prints it and exits 2. Every value is validated here (addresses, log level), so
//! [`overrides`] cannot fail. Nothing here reads files, opens sockets or logs; std only.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use toml::Value;

use crate::config::{closest, parse_log_level, parse_socket_addr, Override, MAX_LISTENERS};

/// What `--version` prints.
pub const VERSION: &str = concat!("edgemq ", env!("CARGO_PKG_VERSION"));

/// What `--help` prints.
pub const USAGE: &str = "\
edgemq - a small single-threaded MQTT 3.1/3.1.1/5.0 broker for edge gateways

Usage:
  edgemq [--conf FILE] [--listen ADDR:PORT]... [--data DIR] [--log-level LEVEL]
  edgemq check [--conf FILE] [--listen ADDR:PORT]... [--data DIR] [--log-level LEVEL]
  edgemq inspect --data DIR [--conf FILE]
  edgemq passwd [-c | -D] [-b] FILE USER [PASSWORD]
  edgemq --version
  edgemq --help

Run the broker (the default command):
  -c, --conf FILE          Config file (TOML). Without it the built-in default is used:
                           conf/edgemq.toml, listening on 127.0.0.1:1883 with data in ./data.
      --listen ADDR:PORT   Accept MQTT on this address instead of listener.bind (the
                           [listeners.NAME] tables stay). Repeat it or separate with commas:
                           --listen 0.0.0.0:1883,[::]:1883
      --data DIR           Data directory for the SQLite store, instead of
                           sqlite.mounted_file_path.
      --log-level LEVEL    error, warn, info, debug or trace, instead of log.level.

Settings come from the config file, then EDGEMQ_<SECTION>_<KEY> environment variables
(EDGEMQ_MQTT_MAX_CONNECTIONS=5000, EDGEMQ_SQLITE_DURABILITY=batch; not for [listeners.NAME]
or [bridges.NAME]), then the flags above; a later one wins. SIGHUP re-reads all three.

Check a configuration without starting the broker (the data directory is not touched):
  check [flags as above]   Validate the config file, the environment and the flags, print the
                           effective config (defaults filled in) as TOML and the memory its
                           capacities allow. Exit 0 if valid, 2 (one line naming the key) if not.

Inspect a data directory without starting the broker:
  inspect --data DIR       The data directory to look at (required).
          --conf FILE      Config file whose settings to use (default: the built-in one).

Manage a password file (auth.password_file), as mosquitto_passwd does:
  passwd FILE USER         Add USER or change its password; FILE must exist. The password is
                           asked twice without echo on a terminal, else read as one line of
                           standard input. Written as PBKDF2-SHA512 ($7$), like mosquitto_passwd.
          -c               Create FILE (overwriting it) with just this user.
          -D               Delete USER from FILE.
          -b               Batch: the password is the PASSWORD argument (visible in `ps`).

Other:
  -V, --version            Print the version and exit.
  -h, --help               Print this help and exit.

Every flag that takes a value also accepts --flag=VALUE. A command-line or configuration
error prints one line and exits with status 2.
";

/// What the process was asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Run the broker.
    Run(RunOptions),
    /// `edgemq check [run flags]`: validate and print the effective config.
    Check(RunOptions),
    /// `edgemq inspect --data DIR [--conf FILE]`.
    Inspect { data: PathBuf, conf: Option<PathBuf> },
    /// `edgemq passwd [-c | -D] [-b] FILE USER [PASSWORD]`.
    Passwd(PasswdOptions),
    /// Print [`VERSION`] and exit 0.
    Version,
    /// Print [`USAGE`] and exit 0.
    Help,
}

/// Flags of the run command. Empty/`None` means "as the config file says".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// `--conf FILE`: the config file; `None` = the built-in default.
    pub conf: Option<PathBuf>,
    /// `--listen`: replaces `listener.bind` when not empty. No duplicates.
    pub listen: Vec<SocketAddr>,
    /// `--data DIR`: replaces `sqlite.mounted_file_path`.
    pub data: Option<PathBuf>,
    /// `--log-level`: replaces `log.level`; already validated and lower-cased.
    pub log_level: Option<String>,
}

/// What `edgemq passwd` does to the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswdMode {
    /// Add the user or change its password (the file must exist).
    Set,
    /// `-c`: create or overwrite the file with just this user.
    Create,
    /// `-D`: delete the user.
    Delete,
}

/// `edgemq passwd [-c | -D] [-b] FILE USER [PASSWORD]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswdOptions {
    pub mode: PasswdMode,
    pub file: PathBuf,
    pub user: String,
    /// `-b PASSWORD`; `None` = ask (no echo) or read standard input.
    pub password: Option<String>,
}

/// Why the command line was refused. `Display` is one line ending in `see edgemq --help`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CliError {
    /// A flag edgemq does not have, with the closest real one if it looks like a typo.
    UnknownFlag { flag: String, suggestion: Option<&'static str> },
    /// A word that is neither a flag nor a flag's value (there are no positional arguments).
    UnexpectedArgument(String),
    /// A flag that needs a value came last, or before another flag, or as `--flag=`.
    MissingValue { flag: &'static str, value_name: &'static str },
    /// A value that does not parse; `expected` says what would.
    InvalidValue { flag: &'static str, value: String, expected: &'static str },
    /// The same address twice in `--listen`.
    DuplicateAddress(SocketAddr),
    /// More than the config allows in `listener.bind`.
    TooManyAddresses,
    /// A single-valued flag given more than once.
    Repeated(&'static str),
    /// `--help=x` and the like.
    UnexpectedValue(&'static str),
    /// A run flag given to `inspect`.
    NotForInspect(&'static str),
    /// `inspect` without `--data`.
    InspectNeedsData,
    /// `passwd` used wrongly; the text says how.
    Passwd(&'static str),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("edgemq: ")?;
        match self {
            CliError::UnknownFlag { flag, suggestion } => {
                write!(f, "unknown flag {flag}")?;
                if let Some(s) = suggestion {
                    write!(f, " (did you mean {s}?)")?;
                }
            }
            CliError::UnexpectedArgument(arg) if arg == "inspect" => {
                f.write_str("the inspect command must come first")?;
            }
            CliError::UnexpectedArgument(arg) => write!(f, "unexpected argument {arg:?}")?,
            CliError::MissingValue { flag, value_name } => {
                write!(f, "{flag} needs a value ({value_name})")?;
            }
            CliError::InvalidValue { flag, value, expected } => {
                write!(f, "{flag}: expected {expected}, got {value:?}")?
            }
            CliError::DuplicateAddress(addr) => write!(f, "--listen: {addr} given twice")?,
            CliError::TooManyAddresses => {
                write!(f, "--listen: at most {MAX_LISTENERS} addresses")?;
            }
            CliError::Repeated(flag) => write!(f, "{flag} given more than once")?,
            CliError::UnexpectedValue(flag) => write!(f, "{flag} takes no value")?,
            CliError::NotForInspect(flag) => write!(f, "{flag} is not an option of inspect")?,
            CliError::InspectNeedsData => f.write_str("inspect needs --data DIR")?,
            CliError::Passwd(why) => write!(f, "passwd: {why}")?,
        }
        f.write_str("; see edgemq --help")
    }
}

impl std::error::Error for CliError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flag {
    Conf,
    Listen,
    Data,
    LogLevel,
    Version,
    Help,
}

/// Every flag: long name, short name, meaning.
const FLAGS: [(&str, Option<&str>, Flag); 6] = [
    ("--conf", Some("-c"), Flag::Conf),
    ("--listen", None, Flag::Listen),
    ("--data", None, Flag::Data),
    ("--log-level", None, Flag::LogLevel),
    ("--version", Some("-V"), Flag::Version),
    ("--help", Some("-h"), Flag::Help),
];

impl Flag {
    fn long(self) -> &'static str {
        match self {
            Flag::Conf => "--conf",
            Flag::Listen => "--listen",
            Flag::Data => "--data",
            Flag::LogLevel => "--log-level",
            Flag::Version => "--version",
            Flag::Help => "--help",
        }
    }

    /// What the value is called in errors and help; `None` for flags without a value.
    fn value_name(self) -> Option<&'static str> {
        match self {
            Flag::Conf => Some("FILE"),
            Flag::Listen => Some("ADDR:PORT"),
            Flag::Data => Some("DIR"),
            Flag::LogLevel => Some("LEVEL"),
            Flag::Version | Flag::Help => None,
        }
    }
}

/// Parses the arguments after the program name. `--help` and `--version` win as soon as they
/// are seen; errors before them are still reported.
pub fn parse_args(args: impl Iterator<Item = String>) -> Result<Command, CliError> {
    let mut args = args.peekable();
    if args.peek().is_some_and(|a| a == "passwd") {
        args.next();
        return parse_passwd(args);
    }
    let inspect = args.peek().is_some_and(|a| a == "inspect");
    let check = !inspect && args.peek().is_some_and(|a| a == "check");
    if inspect || check {
        args.next();
    }
    let mut opts = RunOptions::default();

    while let Some(arg) = args.next() {
        if !arg.starts_with('-') || arg == "-" {
            return Err(CliError::UnexpectedArgument(arg));
        }
        // `--flag=value`; short flags take their value as the next argument only.
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if arg.starts_with("--") => (name, Some(value)),
            _ => (arg.as_str(), None),
        };
        let Some(flag) = FLAGS
            .iter()
            .find(|(long, short, _)| *long == name || *short == Some(name))
            .map(|(_, _, flag)| *flag)
        else {
            let suggestion = closest(name, FLAGS.iter().map(|(long, _, _)| *long));
            return Err(CliError::UnknownFlag { flag: name.to_string(), suggestion });
        };

        let Some(value_name) = flag.value_name() else {
            if inline.is_some() {
                return Err(CliError::UnexpectedValue(flag.long()));
            }
            return Ok(match flag {
                Flag::Version => Command::Version,
                _ => Command::Help,
            });
        };
        if inspect && matches!(flag, Flag::Listen | Flag::LogLevel) {
            return Err(CliError::NotForInspect(flag.long()));
        }
        // A value never starts with '-': `--conf --listen x` is a missing value, not a file
        // called "--listen". (A path that does start with '-' can be given as --conf=-x.)
        let value = match inline {
            Some(v) => v.to_string(),
            None => args.next_if(|next| !next.starts_with('-')).unwrap_or_default(),
        };
        if value.is_empty() {
            return Err(CliError::MissingValue { flag: flag.long(), value_name });
        }

        match flag {
            Flag::Conf => set_once(&mut opts.conf, PathBuf::from(value), flag)?,
            Flag::Data => set_once(&mut opts.data, PathBuf::from(value), flag)?,
            Flag::LogLevel => {
                if parse_log_level(&value).is_none() {
                    return Err(CliError::InvalidValue {
                        flag: flag.long(),
                        value,
                        expected: "one of error, warn, info, debug, trace",
                    });
                }
                set_once(&mut opts.log_level, value.trim().to_ascii_lowercase(), flag)?;
            }
            Flag::Listen => {
                for part in value.split(',') {
                    let Some(addr) = parse_socket_addr(part) else {
                        return Err(CliError::InvalidValue {
                            flag: flag.long(),
                            value: part.to_string(),
                            expected: "an IP:port address such as 0.0.0.0:1883 or [::]:1883",
                        });
                    };
                    if opts.listen.contains(&addr) {
                        return Err(CliError::DuplicateAddress(addr));
                    }
                    if opts.listen.len() == MAX_LISTENERS {
                        return Err(CliError::TooManyAddresses);
                    }
                    opts.listen.push(addr);
                }
            }
            Flag::Version | Flag::Help => {}
        }
    }

    if inspect {
        let Some(data) = opts.data else {
            return Err(CliError::InspectNeedsData);
        };
        return Ok(Command::Inspect { data, conf: opts.conf });
    }
    if check {
        return Ok(Command::Check(opts));
    }
    Ok(Command::Run(opts))
}

/// `passwd [-c | -D] [-b] FILE USER [PASSWORD]`: the flags of mosquitto_passwd, each on its own.
fn parse_passwd(args: impl Iterator<Item = String>) -> Result<Command, CliError> {
    let (mut create, mut delete, mut batch) = (false, false, false);
    let mut words = Vec::new();
    for arg in args {
        match arg.as_str() {
            "-c" if words.is_empty() => create = true,
            "-D" if words.is_empty() => delete = true,
            "-b" if words.is_empty() => batch = true,
            "-h" | "--help" => return Ok(Command::Help),
            flag if flag.starts_with('-') && words.is_empty() => {
                return Err(CliError::UnknownFlag { flag: flag.to_string(), suggestion: None })
            }
            _ => words.push(arg),
        }
    }
    let mode = match (create, delete) {
        (true, true) => return Err(CliError::Passwd("-c and -D cannot be used together")),
        (true, false) => PasswdMode::Create,
        (false, true) => PasswdMode::Delete,
        (false, false) => PasswdMode::Set,
    };
    if delete && batch {
        return Err(CliError::Passwd("-D takes no password, so no -b"));
    }
    let mut words = words.into_iter();
    let (Some(file), Some(user)) = (words.next(), words.next()) else {
        return Err(CliError::Passwd("FILE and USER are required"));
    };
    let password = words.next();
    if words.next().is_some() {
        return Err(CliError::Passwd("too many arguments"));
    }
    match (batch, &password) {
        (true, None) => return Err(CliError::Passwd("-b needs the PASSWORD argument")),
        (false, Some(_)) => {
            return Err(CliError::Passwd(
                "a PASSWORD argument needs -b (or leave it out to be asked)",
            ))
        }
        _ => {}
    }
    if user.is_empty() || user.contains([':', '\0', '\n', '\r']) {
        return Err(CliError::Passwd("USER must be non-empty, without ':' or line breaks"));
    }
    Ok(Command::Passwd(PasswdOptions { mode, file: PathBuf::from(file), user, password }))
}

fn set_once<T>(slot: &mut Option<T>, value: T, flag: Flag) -> Result<(), CliError> {
    if slot.is_some() {
        return Err(CliError::Repeated(flag.long()));
    }
    *slot = Some(value);
    Ok(())
}

/// The command-line flags as config values, the last layer over the file and the environment
/// (`Config::load_layered`): `--listen` replaces `listener.bind`, `--data` replaces
/// `sqlite.mounted_file_path`, `--log-level` replaces `log.level`.
pub fn overrides(opts: &RunOptions) -> Vec<Override> {
    let set = |section: &str, key: &str, value: Value, flag: Flag| Override {
        section: section.to_string(),
        key: key.to_string(),
        value,
        source: flag.long().to_string(),
    };
    let mut out = Vec::new();
    if !opts.listen.is_empty() {
        let addrs = opts.listen.iter().map(|a| Value::String(a.to_string())).collect();
        out.push(set("listener", "bind", Value::Array(addrs), Flag::Listen));
    }
    if let Some(data) = &opts.data {
        let path = Value::String(data.to_string_lossy().into_owned());
        out.push(set("sqlite", "mounted_file_path", path, Flag::Data));
    }
    if let Some(level) = &opts.log_level {
        out.push(set("log", "level", Value::String(level.clone()), Flag::LogLevel));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, CliError> {
        parse_args(args.iter().map(|a| a.to_string()))
    }

    fn run(args: &[&str]) -> RunOptions {
        match parse(args) {
            Ok(Command::Run(opts)) => opts,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    /// The error for `args` as main prints it, checked to be one line pointing at --help.
    fn error_line(args: &[&str]) -> String {
        match parse(args) {
            Err(e) => {
                let line = e.to_string();
                assert!(!line.contains('\n'), "{line:?}");
                assert!(line.starts_with("edgemq: "), "{line}");
                assert!(line.ends_with("; see edgemq --help"), "{line}");
                line
            }
            Ok(command) => panic!("{args:?} accepted as {command:?}"),
        }
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn no_arguments_runs_with_the_config_as_it_is() {
        assert_eq!(parse(&[]), Ok(Command::Run(RunOptions::default())));
    }

    #[test]
    fn every_run_flag_in_both_forms() {
        let expected = RunOptions {
            conf: Some(PathBuf::from("/etc/edgemq.toml")),
            listen: vec![addr("0.0.0.0:1883")],
            data: Some(PathBuf::from("/var/lib/edgemq")),
            log_level: Some("debug".to_string()),
        };
        let separate = run(&[
            "--conf",
            "/etc/edgemq.toml",
            "--listen",
            "0.0.0.0:1883",
            "--data",
            "/var/lib/edgemq",
            "--log-level",
            "debug",
        ]);
        assert_eq!(separate, expected);
        let joined = run(&[
            "--conf=/etc/edgemq.toml",
            "--listen=0.0.0.0:1883",
            "--data=/var/lib/edgemq",
            "--log-level=debug",
        ]);
        assert_eq!(joined, expected);
        let short = run(&[
            "-c",
            "/etc/edgemq.toml",
            "--data",
            "/var/lib/edgemq",
            "--listen",
            "0.0.0.0:1883",
            "--log-level",
            "DEBUG",
        ]);
        assert_eq!(short, expected);
    }

    #[test]
    fn listen_is_repeatable_and_comma_separated() {
        let opts = run(&[
            "--listen",
            "127.0.0.1:1883,[::1]:1883",
            "--listen=0.0.0.0:8883",
            "--listen",
            " 10.0.0.1:1 , 10.0.0.1:2 ",
        ]);
        assert_eq!(
            opts.listen,
            vec![
                addr("127.0.0.1:1883"),
                addr("[::1]:1883"),
                addr("0.0.0.0:8883"),
                addr("10.0.0.1:1"),
                addr("10.0.0.1:2"),
            ]
        );
    }

    #[test]
    fn bad_listen_values() {
        assert_eq!(
            error_line(&["--listen", "localhost:1883"]),
            "edgemq: --listen: expected an IP:port address such as 0.0.0.0:1883 or [::]:1883, \
             got \"localhost:1883\"; see edgemq --help"
        );
        error_line(&["--listen", "127.0.0.1"]);
        error_line(&["--listen", "127.0.0.1:1883,"]);
        error_line(&["--listen", "127.0.0.1:99999"]);
        assert_eq!(
            error_line(&["--listen", "127.0.0.1:1883", "--listen", "127.0.0.1:1883"]),
            "edgemq: --listen: 127.0.0.1:1883 given twice; see edgemq --help"
        );
        let many: Vec<String> = (1..=65).map(|p| format!("127.0.0.1:{p}")).collect();
        let joined = many.join(",");
        assert_eq!(
            error_line(&["--listen", &joined]),
            "edgemq: --listen: at most 64 addresses; see edgemq --help"
        );
        let joined = many[..64].join(",");
        assert_eq!(run(&["--listen", &joined]).listen.len(), 64);
    }

    #[test]
    fn log_level_is_validated_and_lower_cased() {
        for (given, stored) in [("error", "error"), ("Warn", "warn"), ("TRACE", "trace")] {
            assert_eq!(run(&["--log-level", given]).log_level.as_deref(), Some(stored));
        }
        assert_eq!(
            error_line(&["--log-level", "verbose"]),
            "edgemq: --log-level: expected one of error, warn, info, debug, trace, got \
             \"verbose\"; see edgemq --help"
        );
        error_line(&["--log-level=off"]);
    }

    #[test]
    fn unknown_flags_and_arguments() {
        assert_eq!(
            error_line(&["--lissen", "0.0.0.0:1883"]),
            "edgemq: unknown flag --lissen (did you mean --listen?); see edgemq --help"
        );
        assert_eq!(
            error_line(&["--lissen=0.0.0.0:1883"]),
            "edgemq: unknown flag --lissen (did you mean --listen?); see edgemq --help"
        );
        assert_eq!(error_line(&["--bogus"]), "edgemq: unknown flag --bogus; see edgemq --help");
        error_line(&["-x"]);
        // Short flags take no `=value` and are not glued to their value.
        error_line(&["-c=/etc/edgemq.toml"]);
        error_line(&["-cfile"]);
        assert_eq!(
            error_line(&["edgemq.toml"]),
            "edgemq: unexpected argument \"edgemq.toml\"; see edgemq --help"
        );
        error_line(&["-"]);
        assert_eq!(
            error_line(&["--data", "d", "inspect"]),
            "edgemq: the inspect command must come first; see edgemq --help"
        );
    }

    #[test]
    fn missing_values() {
        assert_eq!(
            error_line(&["--conf"]),
            "edgemq: --conf needs a value (FILE); see edgemq --help"
        );
        assert_eq!(
            error_line(&["--conf="]),
            "edgemq: --conf needs a value (FILE); see edgemq --help"
        );
        // The next flag is not taken as the value.
        assert_eq!(
            error_line(&["--data", "--listen", "0.0.0.0:1883"]),
            "edgemq: --data needs a value (DIR); see edgemq --help"
        );
        error_line(&["-c"]);
        error_line(&["--listen"]);
        error_line(&["--log-level"]);
        // A path that starts with '-' can still be given with '='.
        assert_eq!(run(&["--data=-odd"]).data, Some(PathBuf::from("-odd")));
    }

    #[test]
    fn single_valued_flags_once() {
        assert_eq!(
            error_line(&["--conf", "a", "-c", "b"]),
            "edgemq: --conf given more than once; see edgemq --help"
        );
        error_line(&["--data", "a", "--data=b"]);
        error_line(&["--log-level", "info", "--log-level", "info"]);
    }

    #[test]
    fn help_and_version() {
        for args in [&["--help"][..], &["-h"], &["--conf", "x", "--help"], &["inspect", "-h"]] {
            assert_eq!(parse(args), Ok(Command::Help), "{args:?}");
        }
        for args in [&["--version"][..], &["-V"], &["inspect", "--version"]] {
            assert_eq!(parse(args), Ok(Command::Version), "{args:?}");
        }
        // Help wins over what comes after it, not over errors before it.
        assert_eq!(parse(&["--help", "--bogus"]), Ok(Command::Help));
        error_line(&["--bogus", "--help"]);
        assert_eq!(error_line(&["--help=yes"]), "edgemq: --help takes no value; see edgemq --help");
        assert!(VERSION.starts_with("edgemq "));
        assert!(VERSION.ends_with(env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn passwd_subcommand() {
        let set = |mode, password: Option<&str>| {
            Ok(Command::Passwd(PasswdOptions {
                mode,
                file: PathBuf::from("pw"),
                user: "alice".to_string(),
                password: password.map(str::to_string),
            }))
        };
        assert_eq!(parse(&["passwd", "pw", "alice"]), set(PasswdMode::Set, None));
        assert_eq!(parse(&["passwd", "-c", "pw", "alice"]), set(PasswdMode::Create, None));
        assert_eq!(
            parse(&["passwd", "-c", "-b", "pw", "alice", "s3"]),
            set(PasswdMode::Create, Some("s3"))
        );
        assert_eq!(parse(&["passwd", "-b", "pw", "alice", "s3"]), set(PasswdMode::Set, Some("s3")));
        assert_eq!(parse(&["passwd", "-D", "pw", "alice"]), set(PasswdMode::Delete, None));
        // A password may start with '-' once FILE has been given.
        assert_eq!(parse(&["passwd", "-b", "pw", "alice", "-x"]), set(PasswdMode::Set, Some("-x")));
        let errors = [
            (&["passwd", "-c", "-D", "pw", "alice"][..], "-c and -D cannot be used together"),
            (&["passwd", "-D", "-b", "pw", "alice", "x"][..], "-D takes no password"),
            (&["passwd", "pw"][..], "FILE and USER are required"),
            (&["passwd", "-b", "pw", "alice"][..], "-b needs the PASSWORD argument"),
            (&["passwd", "pw", "alice", "x"][..], "a PASSWORD argument needs -b"),
            (&["passwd", "-b", "pw", "alice", "x", "y"][..], "too many arguments"),
            (&["passwd", "pw", "a:b"][..], "USER must be non-empty"),
            (&["passwd", "-x", "pw", "alice"][..], "unknown flag -x"),
        ];
        for (args, needle) in errors {
            let line = error_line(args);
            assert!(line.contains(needle), "{args:?}: {line}");
        }
        assert_eq!(parse(&["passwd", "--help"]), Ok(Command::Help));
    }

    #[test]
    fn inspect_subcommand() {
        assert_eq!(
            parse(&["inspect", "--data", "/var/lib/edgemq"]),
            Ok(Command::Inspect { data: PathBuf::from("/var/lib/edgemq"), conf: None })
        );
        assert_eq!(
            parse(&["inspect", "--conf=/etc/e.toml", "--data=d"]),
            Ok(Command::Inspect {
                data: PathBuf::from("d"),
                conf: Some(PathBuf::from("/etc/e.toml"))
            })
        );
        assert_eq!(
            parse(&["inspect", "-c", "e.toml", "--data", "d"]),
            Ok(Command::Inspect { data: PathBuf::from("d"), conf: Some(PathBuf::from("e.toml")) })
        );
        assert_eq!(error_line(&["inspect"]), "edgemq: inspect needs --data DIR; see edgemq --help");
        assert_eq!(
            error_line(&["inspect", "--data", "d", "--listen", "0.0.0.0:1"]),
            "edgemq: --listen is not an option of inspect; see edgemq --help"
        );
        error_line(&["inspect", "--log-level", "info", "--data", "d"]);
        error_line(&["inspect", "--data", "d", "extra"]);
        error_line(&["inspect", "--data", "a", "--data", "b"]);
    }

    #[test]
    fn usage_lists_every_flag_and_the_inspect_command() {
        for (long, short, _) in FLAGS {
            assert!(USAGE.contains(long), "{long} missing from USAGE");
            if let Some(short) = short {
                assert!(USAGE.contains(&format!("{short}, {long}")), "{short}");
            }
        }
        assert!(USAGE.contains("edgemq inspect --data DIR [--conf FILE]"));
        assert!(USAGE.contains("--flag=VALUE"));
        // Fits a terminal.
        for line in USAGE.lines() {
            assert!(line.chars().count() <= 100, "{line}");
        }
    }

    #[test]
    fn overrides_replace_only_what_was_given() {
        use crate::config::Config;
        let load = |opts: &RunOptions| Config::load_layered(None, &overrides(opts)).unwrap();
        assert_eq!(load(&RunOptions::default()).config, Config::default_values());

        let opts = RunOptions {
            conf: Some(PathBuf::from("ignored-here.toml")),
            listen: vec![addr("0.0.0.0:1883"), addr("[::]:1883")],
            data: Some(PathBuf::from("/srv/edgemq")),
            log_level: Some("trace".to_string()),
        };
        let loaded = load(&opts);
        let mut expected = Config::default_values();
        expected.listener.bind = vec![addr("0.0.0.0:1883"), addr("[::]:1883")];
        expected.sqlite.mounted_file_path = PathBuf::from("/srv/edgemq");
        expected.log.level = log::Level::Trace;
        assert_eq!(loaded.config, expected);
        let shown = loaded.effective.to_toml();
        assert!(
            shown.contains("bind = [\"0.0.0.0:1883\", \"[::]:1883\"]  # from --listen"),
            "{shown}"
        );
        assert!(shown.contains("mounted_file_path = \"/srv/edgemq\"  # from --data"), "{shown}");
    }

    #[test]
    fn command_line_to_config_end_to_end() {
        let Command::Run(opts) =
            parse(&["--listen", "127.0.0.1:11883", "--log-level", "warn"]).unwrap()
        else {
            panic!("not a run command");
        };
        let config = crate::config::Config::load_layered(None, &overrides(&opts)).unwrap().config;
        assert_eq!(config.listener.bind, vec![addr("127.0.0.1:11883")]);
        assert_eq!(config.log.level, log::Level::Warn);
        assert_eq!(config.sqlite.mounted_file_path, PathBuf::from("./data"));
    }

    #[test]
    fn check_subcommand_takes_the_run_flags() {
        assert_eq!(parse(&["check"]), Ok(Command::Check(RunOptions::default())));
        assert_eq!(
            parse(&["check", "-c", "e.toml", "--data", "d"]),
            Ok(Command::Check(RunOptions {
                conf: Some(PathBuf::from("e.toml")),
                data: Some(PathBuf::from("d")),
                ..RunOptions::default()
            }))
        );
        assert_eq!(parse(&["check", "--help"]), Ok(Command::Help));
        error_line(&["check", "extra"]);
        error_line(&["--conf", "e.toml", "check"]);
    }
}
