use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use etherws::cli::{Cli, Command};
use etherws::ctl::Failure;

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
        Command::Sw(args) => match etherws::sw::run(args, matches.subcommand_matches("sw")) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                // The same shape etherws 1.3 used for start-up errors.
                Failure {
                    code: -32603,
                    message: "Internal error".into(),
                    data: format!("{e:#}"),
                }
                .print();
                ExitCode::FAILURE
            }
        },
    }
}
