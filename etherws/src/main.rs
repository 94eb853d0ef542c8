use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use etherws::cli::{Cli, Command};

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
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
