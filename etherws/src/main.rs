use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use etherws::cli::{Cli, Command};

fn main() -> ExitCode {
    // Built once, at start: clap wants a `'static` string.
    let version: &'static str = Box::leak(etherws::cli::long_version().into_boxed_str());
    let matches = Cli::command().version(version).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Ctl(args) => {
            if etherws::ctl::run(args) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Sw(args) => match etherws::sw::run(*args, matches.subcommand_matches("sw")) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                // A plain message on stderr, escaped: it may quote a path or a file's contents.
                eprintln!(
                    "etherws sw: error: {}",
                    etherws::escape::printable(&format!("{e:#}"))
                );
                ExitCode::FAILURE
            }
        },
    }
}
