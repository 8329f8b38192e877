//! The command line: argument parsing and the commands. Each command is a thin shell around
//! the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod diagnose;
pub mod evaluate;
pub mod explain;
pub mod run;

#[derive(Parser, Debug)]
#[command(
    name = "sqs-access-operator",
    version,
    about = "Tells whether a Kubernetes workload's service account can use an Amazon SQS queue, and if not, why and how to fix it."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Evaluate IAM requests against policies, offline: JSON Lines in, one decision per line out.
    Evaluate {
        /// Read requests from this file instead of standard input.
        #[arg(long, value_name = "FILE")]
        input: Option<PathBuf>,
    },
    /// Print the SqsAccessBinding CustomResourceDefinition (YAML).
    Crd,
    /// Run the operator: controller (leader only), admission webhook, health and metrics.
    Run(Box<run::RunArgs>),
    /// Explain an AWS access-denied error: paste the text; get the layer that denied and the fix,
    /// for any principal (IAM user, role, role session, service). Exit code: 0 allowed in every
    /// visible layer, 2 denied, 3 undecided, 1 bad input.
    Explain(Box<explain::ExplainArgs>),
    /// Diagnose whether a workload can use a queue, from a snapshot file (YAML or JSON).
    /// Exit code: 0 allowed, 2 denied, 3 indeterminate, 1 bad input.
    Diagnose {
        /// The snapshot; without it (and without --live), an embedded example is diagnosed.
        snapshot: Option<PathBuf>,
        /// Output format.
        #[arg(long, short, value_enum, default_value = "text")]
        output: diagnose::Output,
        #[command(flatten)]
        live: Box<diagnose::LiveArgs>,
    },
}

/// Runs the command line and returns the process exit code.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Evaluate { input } => evaluate::run(input.as_deref()),
        Command::Run(args) => run::run(&args),
        Command::Crd => {
            print!("{}", crate::crd::crd_yaml());
            ExitCode::SUCCESS
        }
        Command::Explain(args) => explain::run(&args),
        Command::Diagnose {
            snapshot,
            output,
            live,
        } => diagnose::run(snapshot.as_deref(), output, &live),
    }
}
