//! Full diagnosis of one binding from a parsed snapshot: trust, 4 SQS actions and 2 KMS actions
//! across every layer (identity, boundary, SCP and RCP levels, queue policy, VPC endpoint, key
//! policy). `cargo bench --bench diagnosis`

use std::hint::black_box;
use std::time::Instant;

use sqs_access_operator::diagnosis::{Snapshot, diagnose};

fn main() {
    for name in [
        "healthy",
        "cross-account-queue-policy-missing",
        "source-vpce-condition",
    ] {
        let path = format!(
            "{}/examples/snapshots/{name}.yaml",
            env!("CARGO_MANIFEST_DIR")
        );
        let snap = Snapshot::from_yaml_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let v = diagnose(&snap);
        let checks = v.checks.len();
        for _ in 0..1000 {
            black_box(diagnose(black_box(&snap)));
        }
        let mut runs = Vec::new();
        for _ in 0..5 {
            let n = 20_000;
            let t = Instant::now();
            for _ in 0..n {
                black_box(diagnose(black_box(&snap)));
            }
            runs.push(t.elapsed().as_secs_f64() * 1e6 / n as f64);
        }
        runs.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "diagnosis {name}: {:.1} µs per binding (median of 5; {checks} checks, verdict {:?})",
            runs[2], v.verdict
        );
    }
}
