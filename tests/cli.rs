//! The command line as users meet it: exit codes, and clear errors for bad files and
//! arguments (never a panic).

mod support;

use std::process::Output;

use support::binary;

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut cmd = binary();
    cmd.args(args);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn diagnose_exit_codes_follow_the_verdict() {
    for (file, code, verdict) in [
        ("examples/snapshots/healthy.yaml", 0, "Allowed"),
        (
            "examples/snapshots/identity-policy-missing.yaml",
            2,
            "Denied",
        ),
        (
            "examples/snapshots/source-vpce-condition.yaml",
            3,
            "Indeterminate",
        ),
    ] {
        let o = run(&["diagnose", file, "--output", "json"], None);
        assert_eq!(o.status.code(), Some(code), "{file}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["verdict"], verdict);
        assert!(v["reasons"].as_array().is_some_and(|r| !r.is_empty()));
    }
    // The quick start: the embedded example, in text.
    let o = run(&["diagnose"], None);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("Verdict: Allowed"));
}

#[test]
fn bad_snapshots_name_the_file_and_the_field() {
    let dir = std::env::temp_dir().join(format!("cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/snapshots/healthy.yaml"
    ))
    .unwrap()
    .replace("keyState: Enabled", "keyState: Enabled\n  colour: blue");
    std::fs::write(&bad, text).unwrap();
    let o = run(&["diagnose", bad.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("bad.yaml") && e.contains("kmsKey") && e.contains("colour"),
        "{e}"
    );
    let o = run(&["diagnose", "/nonexistent/snapshot.yaml"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/nonexistent/snapshot.yaml"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn evaluate_reports_bad_lines_and_keeps_going() {
    let good = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/evaluate/requests.jsonl"
    ))
    .unwrap();
    let first = good.lines().next().unwrap();
    let input = format!("{first}\nnot json\n{first}\n");
    let o = run(&["evaluate"], Some(&input));
    assert_eq!(o.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["decision"], "Allow");
    assert_eq!(lines[1]["line"], 2);
    assert!(lines[1]["error"].is_string());
    assert_eq!(lines[2]["decision"], "Allow");
    let o = run(
        &["evaluate", "--input", "examples/evaluate/requests.jsonl"],
        None,
    );
    assert_eq!(o.status.code(), Some(0));
    let o = run(&["evaluate", "--input", "/nonexistent.jsonl"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--input /nonexistent.jsonl"));
}

#[test]
fn bad_arguments_are_refused_clearly() {
    let o = run(&["run", "--recheck-interval", "soon"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--recheck-interval"), "{}", stderr(&o));
    let o = run(
        &[
            "diagnose",
            "--live",
            "--queue",
            "arn:aws:sqs:us-east-1:111111111111:q",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--role-arn"), "{}", stderr(&o));
    let o = run(
        &[
            "diagnose",
            "--live",
            "--role-arn",
            "arn:aws:iam::1:role/x",
            "--queue",
            "q",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--role-arn"), "{}", stderr(&o));
    let o = run(
        &[
            "diagnose",
            "--live",
            "--role-arn",
            "x",
            "--queue",
            "q",
            "--access",
            "publish",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("publish"), "{}", stderr(&o));
    let o = run(&["frobnicate"], None);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn crd_prints_the_committed_definition() {
    let o = run(&["crd"], None);
    assert_eq!(o.status.code(), Some(0));
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/sqsaccessbinding.yaml"
    ))
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), committed);
}

/// Plain-text logs written to a pipe (a pod's log, a file) carry no ANSI colour codes; JSON
/// logs are JSON lines.
#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    for json in [false, true] {
        let mut cmd = binary();
        cmd.args(["run", "--admin-addr", "127.0.0.1:0", "--no-leader-election"]);
        if json {
            cmd.arg("--log-json");
        }
        // No cluster: `run` logs that it cannot reach one and exits, without any network.
        let o = cmd
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .env_remove("NO_COLOR")
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let logs = String::from_utf8_lossy(&o.stdout);
        assert!(logs.contains("cannot reach Kubernetes"), "{logs}");
        assert!(!o.stdout.contains(&0x1b), "colour codes in {logs:?}");
        assert!(
            !o.stderr.contains(&0x1b),
            "colour codes in {:?}",
            stderr(&o)
        );
        if json {
            for line in logs.lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                assert_eq!(v["level"], "ERROR", "{line}");
            }
        } else {
            assert!(logs.contains("ERROR"), "{logs}");
        }
    }
}

/// Tests, benches and scripts never send AWS traffic off loopback: every test starts the
/// binary through `support::binary()` (which disables the instance metadata service and sets a
/// region and test credentials), every SDK configuration built in tests and benches names its
/// region and credentials, and the scripts that run tests source `scripts/loopback-aws.sh`.
#[test]
fn tests_and_scripts_stay_on_loopback() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = Vec::new();
    for dir in ["tests", "tests/support", "benches"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "rs") {
                sources.push(p);
            }
        }
    }
    assert!(sources.len() > 10);
    let spawn = concat!("CARGO_BIN_EXE", "_");
    let sdk = concat!("aws_config::", "defaults(");
    for p in &sources {
        let text = std::fs::read_to_string(p).unwrap();
        let name = p.strip_prefix(root).unwrap().display().to_string();
        if name != "tests/support/mod.rs" {
            assert!(
                !text.contains(spawn),
                "{name} starts the binary itself: use support::binary()"
            );
        }
        for (at, _) in text.match_indices(sdk) {
            let call = &text[at..];
            let call = &call[..call.find(".load()").unwrap_or(call.len())];
            assert!(
                call.contains(".region(") && call.contains(".credentials_provider("),
                "{name}: an SDK configuration without an explicit region and credentials"
            );
        }
    }
    for script in ["scripts/with-moto.sh", ".ci/run", "e2e/run.sh"] {
        let text = std::fs::read_to_string(root.join(script)).unwrap();
        assert!(
            text.contains(". scripts/loopback-aws.sh"),
            "{script} does not source scripts/loopback-aws.sh"
        );
    }
    let env = std::fs::read_to_string(root.join("scripts/loopback-aws.sh")).unwrap();
    assert!(env.contains("export AWS_EC2_METADATA_DISABLED=true"));
}
