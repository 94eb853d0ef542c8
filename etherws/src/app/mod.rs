//! The program: the command line, the configuration file, `etherws sw` and `etherws ctl`.

pub(crate) mod cli;
pub(crate) mod config;
pub(crate) mod ctl_command;
pub(crate) mod daemon;
pub(crate) mod logging;
pub(crate) mod sw_command;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use crate::base::escape::printable;
use cli::Cli;

/// The command line as clap describes it, for the manual pages and shell completions
/// (`cargo xtask dist`).
pub fn command() -> clap::Command {
    Cli::command()
}

/// clap's error with the value it quotes (`invalid value '…' for '--path …'`) escaped: the
/// value is the user's, and may hold a newline or an escape sequence.
fn value_escaped(mut e: clap::Error) -> clap::Error {
    use clap::error::{ContextKind, ContextValue};
    if let Some(ContextValue::String(v)) = e.get(ContextKind::InvalidValue) {
        let v = printable(v).into_owned();
        e.insert(ContextKind::InvalidValue, ContextValue::String(v));
    }
    e
}

/// `etherws`: parse the command line and run `sw` or `ctl`.
pub fn main() -> ExitCode {
    // Built once, at start: clap wants a `'static` string.
    let version: &'static str = Box::leak(cli::long_version().into_boxed_str());
    let matches = Cli::command()
        .version(version)
        .try_get_matches()
        .unwrap_or_else(|e| value_escaped(e).exit());
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
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
