use std::process::ExitCode;

fn main() -> ExitCode {
    etherws::main()
}
