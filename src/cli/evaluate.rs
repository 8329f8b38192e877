//! `evaluate`: JSON Lines in, one decision per line out, in order. A bad line gets
//! `{"error": ...}` on its own line and the rest still run; the exit code is then 1.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;

use crate::policy::authorize;
use crate::policy::input::EvaluationInput;

#[derive(Serialize)]
struct ErrorLine<'a> {
    error: &'a str,
    line: usize,
}

/// Evaluates one input line and writes one output line (without the newline) to `out`.
/// Returns false when the line was an error.
pub fn evaluate_line(line: &str, line_no: usize, out: &mut Vec<u8>) -> bool {
    let result = EvaluationInput::from_json(line).and_then(|i| i.into_parts());
    match result {
        Ok((req, set)) => {
            let resp = authorize(&req, &set);
            serde_json::to_writer(&mut *out, &resp).expect("serializing to memory cannot fail");
            true
        }
        Err(e) => {
            let msg = e.to_string();
            serde_json::to_writer(
                &mut *out,
                &ErrorLine {
                    error: &msg,
                    line: line_no,
                },
            )
            .expect("serializing to memory cannot fail");
            false
        }
    }
}

/// Reads every line of `input` and writes the results to `output`. Returns the number of
/// lines that failed.
pub fn evaluate_stream(input: impl BufRead, mut output: impl Write) -> io::Result<usize> {
    let mut failed = 0;
    let mut buf = Vec::with_capacity(1024);
    for (i, line) in input.lines().enumerate() {
        let line = match line {
            Ok(l) => l,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                failed += 1;
                buf.clear();
                serde_json::to_writer(
                    &mut buf,
                    &ErrorLine {
                        error: "input: the line is not valid UTF-8",
                        line: i + 1,
                    },
                )?;
                buf.push(b'\n');
                output.write_all(&buf)?;
                continue;
            }
            Err(e) => return Err(e),
        };
        buf.clear();
        if !evaluate_line(&line, i + 1, &mut buf) {
            failed += 1;
        }
        buf.push(b'\n');
        output.write_all(&buf)?;
    }
    output.flush()?;
    Ok(failed)
}

pub fn run(input: Option<&Path>) -> ExitCode {
    let stdout = io::stdout();
    let out = BufWriter::with_capacity(64 * 1024, stdout.lock());
    let result = match input {
        Some(path) => match File::open(path) {
            Ok(f) => evaluate_stream(BufReader::with_capacity(64 * 1024, f), out),
            Err(e) => {
                eprintln!("error: --input {}: {e}", path.display());
                return ExitCode::from(1);
            }
        },
        None => evaluate_stream(io::stdin().lock(), out),
    };
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
