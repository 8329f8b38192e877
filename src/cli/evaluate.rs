//! `evaluate`: JSON Lines in, one decision per line out, in order. A bad line gets
//! `{"error": ...}` on its own line and the rest still run; the exit code is then 1.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;

use crate::policy::authorize;
use crate::policy::input::{EvaluationInput, PolicyCache};

#[derive(Serialize)]
struct ErrorLine<'a> {
    error: &'a str,
    line: usize,
}

/// Evaluates lines one after the other, keeping the policies it compiled: a document that comes
/// again is taken from the cache instead of being parsed and compiled again.
#[derive(Default)]
pub struct Evaluator {
    cache: PolicyCache,
}

impl Evaluator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Evaluates one input line and writes one output line (without the newline) to `out`.
    /// Returns false when the line was an error.
    pub fn evaluate_line(&mut self, line: &str, line_no: usize, out: &mut Vec<u8>) -> bool {
        match EvaluationInput::parts_from_json(line, &mut self.cache) {
            Ok((req, set)) => {
                let resp = authorize(&req, &set);
                serde_json::to_writer(&mut *out, &resp).expect("serializing to memory cannot fail");
                true
            }
            Err(e) => {
                write_error(out, &e.to_string(), line_no);
                false
            }
        }
    }
}

fn write_error(out: &mut Vec<u8>, msg: &str, line_no: usize) {
    serde_json::to_writer(
        &mut *out,
        &ErrorLine {
            error: msg,
            line: line_no,
        },
    )
    .expect("serializing to memory cannot fail");
}

/// Evaluates one input line on its own (nothing kept from other lines) and writes one output
/// line (without the newline) to `out`. Returns false when the line was an error.
pub fn evaluate_line(line: &str, line_no: usize, out: &mut Vec<u8>) -> bool {
    Evaluator::new().evaluate_line(line, line_no, out)
}

/// Reads every line of `input` and writes the results to `output`. Returns the number of
/// lines that failed.
///
/// Lines end at `\n` (and lose a `\r` before it), as with `BufRead::lines`; a line is read in
/// place from `input`'s buffer, and copied only when it spans two refills of it.
pub fn evaluate_stream(mut input: impl BufRead, output: impl Write) -> io::Result<usize> {
    let mut lines = Lines {
        evaluator: Evaluator::new(),
        out: Vec::with_capacity(1024),
        output,
        line_no: 0,
        failed: 0,
    };
    // The start of a line whose end is not in the buffer yet.
    let mut partial = Vec::new();
    loop {
        let available = match input.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            if !partial.is_empty() {
                lines.line(&partial)?;
            }
            break;
        }
        let used = match memchr::memchr(b'\n', available) {
            Some(i) => {
                let line = &available[..i];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if partial.is_empty() {
                    lines.line(line)?;
                } else {
                    partial.extend_from_slice(&available[..i]);
                    if partial.last() == Some(&b'\r') {
                        partial.pop();
                    }
                    lines.line(&partial)?;
                    partial.clear();
                }
                i + 1
            }
            None => {
                partial.extend_from_slice(available);
                available.len()
            }
        };
        input.consume(used);
    }
    lines.output.flush()?;
    Ok(lines.failed)
}

/// `evaluate_stream`'s state: evaluates one line at a time and writes its output line.
struct Lines<W> {
    evaluator: Evaluator,
    out: Vec<u8>,
    output: W,
    line_no: usize,
    failed: usize,
}

impl<W: Write> Lines<W> {
    fn line(&mut self, line: &[u8]) -> io::Result<()> {
        self.line_no += 1;
        self.out.clear();
        let ok = match std::str::from_utf8(line) {
            Ok(text) => self
                .evaluator
                .evaluate_line(text, self.line_no, &mut self.out),
            Err(_) => {
                write_error(
                    &mut self.out,
                    "input: the line is not valid UTF-8",
                    self.line_no,
                );
                false
            }
        };
        if !ok {
            self.failed += 1;
        }
        self.out.push(b'\n');
        self.output.write_all(&self.out)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `evaluate_stream` as it was: `BufRead::lines` and an uncached parse of each line.
    fn reference(input: &[u8]) -> (Vec<u8>, usize) {
        let mut out = Vec::new();
        let mut failed = 0;
        for (i, line) in input.lines().enumerate() {
            let mut buf = Vec::new();
            let ok = match line {
                Ok(l) => match EvaluationInput::from_json(&l).and_then(|i| i.into_parts()) {
                    Ok((req, set)) => {
                        serde_json::to_writer(&mut buf, &authorize(&req, &set)).unwrap();
                        true
                    }
                    Err(e) => {
                        write_error(&mut buf, &e.to_string(), i + 1);
                        false
                    }
                },
                Err(_) => {
                    write_error(&mut buf, "input: the line is not valid UTF-8", i + 1);
                    false
                }
            };
            failed += usize::from(!ok);
            out.extend_from_slice(&buf);
            out.push(b'\n');
        }
        (out, failed)
    }

    #[test]
    fn lines_cached_policies_and_refills_change_nothing() {
        let good = include_str!("../../examples/evaluate/requests.jsonl");
        let bad = include_str!("../../examples/evaluate/bad-request.jsonl");
        let mut input = Vec::new();
        // Every line three times (documents are kept the second time, used the third), with
        // CRLF endings, empty lines, invalid UTF-8, and a last line without a newline that ends
        // in `\r` (kept, as `lines` keeps it).
        for _ in 0..3 {
            input.extend_from_slice(good.as_bytes());
            input.extend_from_slice(good.replace('\n', "\r\n").as_bytes());
            input.extend_from_slice(bad.as_bytes());
            input.extend_from_slice(b"\n\r\n\xff\xfe{}\n{\"request\": 1}\r\n");
        }
        input.extend_from_slice(good.lines().next().unwrap().as_bytes());
        input.push(b'\r');
        let want = reference(&input);
        assert!(want.1 > 0 && want.1 < want.0.split(|&b| b == b'\n').count());
        for capacity in [1, 2, 3, 7, 64, 1000, 1 << 16] {
            let mut out = Vec::new();
            let failed =
                evaluate_stream(BufReader::with_capacity(capacity, &input[..]), &mut out).unwrap();
            assert_eq!(
                (String::from_utf8(out).unwrap(), failed),
                (String::from_utf8(want.0.clone()).unwrap(), want.1),
                "buffer of {capacity} bytes"
            );
        }
    }
}
