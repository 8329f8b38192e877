use std::process::ExitCode;

fn main() -> ExitCode {
    sqs_access_operator::cli::run(std::env::args_os())
}
