//! The program: the command line, the configuration file, `etherws sw` and `etherws ctl`.

pub(crate) mod cli;
pub(crate) mod config;
pub(crate) mod ctl_command;
pub(crate) mod daemon;
pub(crate) mod logging;
pub(crate) mod sw_command;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use crate::base::escape::printable;
use cli::Cli;

/// The command line as clap describes it, for the manual pages and shell completions
/// (`cargo xtask dist`).
pub fn command() -> clap::Command {
    Cli::command()
}

/// What clap refused, as one line without its `error: ` (and without the usage and the hint
/// to try `--help` that follow it), its control characters escaped: the values it quotes are
/// the user's, and may hold a newline or an escape sequence. A value that came from the
/// environment is named by its variable (`ETHERWS_AGEOUT`), not by the option (`--ageout`) the
/// user never typed. `argv` is the command line, the program's name first.
fn option_error(mut e: clap::Error, argv: &[OsString]) -> String {
    use clap::error::{ContextKind, ContextValue};
    for kind in [ContextKind::InvalidValue, ContextKind::InvalidArg] {
        if let Some(ContextValue::String(v)) = e.get(kind) {
            let v = printable(v).into_owned();
            e.insert(kind, ContextValue::String(v));
        }
    }
    if let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg)
        && let Some(var) = from_environment(arg, argv)
    {
        e.insert(ContextKind::InvalidArg, ContextValue::String(var));
    }
    let rendered = e.render().to_string();
    let mut line = String::new();
    for l in rendered.lines().map(str::trim) {
        if l.starts_with("Usage:") || l.starts_with("For more information") {
            break;
        }
        if l.is_empty() {
            continue;
        }
        if !line.is_empty() {
            line.push_str(if line.ends_with(':') || l.starts_with('[') {
                " "
            } else {
                "; "
            });
        }
        line.push_str(l.strip_prefix("error: ").unwrap_or(l));
    }
    printable(&line).into_owned()
}

/// The environment variable `arg` (clap's `--ageout <SECS>`) was read from: the option has one,
/// it is set, and the command line (`argv`) does not give the option itself.
fn from_environment(arg: &str, argv: &[OsString]) -> Option<String> {
    let long = arg.strip_prefix("--")?;
    let long = long.split([' ', '=']).next()?;
    let cmd = Cli::command();
    let var = cmd
        .get_subcommands()
        .flat_map(clap::Command::get_arguments)
        .find(|a| a.get_long() == Some(long))?
        .get_env()?
        .to_str()?
        .to_owned();
    let given = on_command_line(long, argv);
    (!given && std::env::var_os(&var).is_some()).then_some(var)
}

/// Whether the command line (`argv`, the program's name first) gives `--LONG` itself.
fn on_command_line(long: &str, argv: &[OsString]) -> bool {
    let flag = format!("--{long}");
    argv.iter().skip(1).any(|a| {
        a.to_str().is_some_and(|a| {
            a == flag
                || a.strip_prefix(flag.as_str())
                    .is_some_and(|r| r.starts_with('='))
        })
    })
}

/// The command line as `main` parses it. A path spec holds commas (`/lab=vlan:10,isolated`),
/// so `ETHERWS_PATH` holds several of them separated by spaces, which no HTTP path holds
/// (`"/a /lab=vlan:10,isolated"`); a `--path` on the command line is one spec, as written.
fn parsing_command(argv: &[OsString]) -> clap::Command {
    let cmd = Cli::command();
    if on_command_line("path", argv) {
        return cmd;
    }
    cmd.mut_subcommand("sw", |sw| sw.mut_arg("path", |a| a.value_delimiter(' ')))
}

/// A command line clap refuses: `--help` and `--version` as clap prints them; any other error
/// one plain line, `etherws sw: error: REASON` (or `etherws ctl: …`), and exit status 1, as
/// every other error of the program.
fn refused(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit()
    }
    let argv: Vec<OsString> = std::env::args_os().collect();
    let command = match argv.get(1).and_then(|a| a.to_str()) {
        Some(c @ ("sw" | "ctl")) => format!("etherws {c}"),
        _ => "etherws".to_owned(),
    };
    eprintln!("{command}: error: {}", option_error(e, &argv));
    std::process::exit(1)
}

/// `etherws`: parse the command line and run `sw` or `ctl`.
pub fn main() -> ExitCode {
    // Built once, at start: clap wants a `'static` string.
    let version: &'static str = Box::leak(cli::long_version().into_boxed_str());
    let argv: Vec<OsString> = std::env::args_os().collect();
    let matches = parsing_command(&argv)
        .version(version)
        .try_get_matches_from(argv)
        .unwrap_or_else(|e| refused(e));
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| refused(e));
    match cli.command {
        cli::Command::Ctl(args) => {
            if ctl_command::run(args) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        cli::Command::Sw(args) => match sw_command::run(*args, matches.subcommand_matches("sw")) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                // A plain message on stderr, escaped: it may quote a path or a file's contents.
                eprintln!("etherws sw: error: {}", printable(&format!("{e:#}")));
                ExitCode::FAILURE
            }
        },
    }
}
