//! Evaluation throughput: `cargo bench --bench engine`.
//!
//! 1. `authorize` on pre-parsed requests (ns per evaluation, evaluations per second);
//! 2. the `evaluate` command end to end: 10,000 JSON lines in memory through `evaluate_stream`
//!    (lines per second, MB per second), on corpora whose lines repeat the same policy
//!    documents (the compile cache hits) and on corpora where every document is distinct (it
//!    never does).
//!
//! Each figure is the median of several timed runs after a warm-up. `BENCH_SECS` sets the time
//! per figure (default 2 s), `BENCH_RUNS` the number of runs (default 5); `BENCH_ONLY=1` or
//! `BENCH_ONLY=2` runs one part (e.g. under a profiler), `BENCH_CORPUS=TEXT` only the corpora
//! whose name contains TEXT (e.g. `all-distinct`).

use std::hint::black_box;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqs_access_operator::cli::evaluate::evaluate_stream;
use sqs_access_operator::policy::input::EvaluationInput;
use sqs_access_operator::policy::{PolicySet, Request, authorize};

const CALLER_ACCOUNT: &str = "111111111111";
const QUEUE_ACCOUNT: &str = "222222222222";
const QUEUE: &str = "arn:aws:sqs:us-east-1:222222222222:orders";
const KEY: &str = "arn:aws:kms:us-east-1:222222222222:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const ROLE: &str = "arn:aws:iam::111111111111:role/eks/orders-producer";
const ORG: &str = "o-a1b2c3d4e5";

fn named(name: &str, kind: &str, statements: Value) -> Value {
    json!({"name": name, "type": kind, "document": {"Version": "2012-10-17", "Statement": statements}})
}

fn full_aws_access() -> Value {
    named(
        "FullAWSAccess",
        "scp",
        json!([{"Effect": "Allow", "Action": "*", "Resource": "*"}]),
    )
}

fn context(session: usize, secure: bool, extra: Value) -> Value {
    let mut c = json!({
        "aws:PrincipalArn": ROLE,
        "aws:PrincipalAccount": CALLER_ACCOUNT,
        "aws:PrincipalOrgID": ORG,
        "aws:PrincipalOrgPaths": [format!("{ORG}/r-ab12/ou-ab12-workloads/")],
        "aws:PrincipalTag/team": "orders",
        "aws:PrincipalIsAWSService": "false",
        "aws:SecureTransport": if secure { "true" } else { "false" },
        "aws:SourceVpce": "vpce-0abc1234",
        "aws:SourceVpc": "vpc-0def5678",
        "aws:RequestedRegion": "us-east-1",
        "aws:CurrentTime": "2026-03-01T12:00:00Z",
        "aws:EpochTime": "1772366400",
        "aws:userid": format!("AROAEXAMPLE:session-{session}"),
        "aws:SourceIp": format!("10.0.{}.{}", session % 250, session % 200),
    });
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    c
}

fn request(session: usize, action: &str, resource: &str, ctx: Value) -> Value {
    json!({
        "principal": format!("arn:aws:sts::{CALLER_ACCOUNT}:assumed-role/orders-producer/session-{session}"),
        "principalAccount": CALLER_ACCOUNT,
        "action": action,
        "resource": resource,
        "resourceAccount": QUEUE_ACCOUNT,
        "context": ctx,
    })
}

/// SQS SendMessage across accounts with every layer present: 2 identity policies, the queue
/// policy (with a Deny on aws:SecureTransport), a permissions boundary, 2 SCP levels with
/// FullAWSAccess, an RCP level with a data-perimeter Deny on aws:PrincipalOrgID, and the VPC
/// endpoint policy.
fn sqs_full(session: usize, secure: bool) -> Value {
    json!({
        "request": request(session, "sqs:SendMessage", QUEUE, context(session, secure, json!({}))),
        "policies": {
            "identity": [
                named("orders-producer", "inline", json!([
                    {"Sid": "Send", "Effect": "Allow", "Action": ["sqs:SendMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"],
                     "Resource": ["arn:aws:sqs:us-east-1:222222222222:orders", "arn:aws:sqs:us-east-1:222222222222:orders-dlq"]},
                    {"Sid": "Encrypt", "Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": KEY,
                     "Condition": {"StringEquals": {"kms:ViaService": "sqs.us-east-1.amazonaws.com"}}}
                ])),
                named("ReadOnlyTeamAccess", "managed", json!([
                    {"Effect": "Allow", "Action": ["sqs:List*", "sqs:Get*", "cloudwatch:Get*", "cloudwatch:List*", "logs:Describe*"], "Resource": "*"},
                    {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::orders-config/${aws:PrincipalTag/team}/*"},
                    {"Effect": "Deny", "Action": "sqs:DeleteQueue", "Resource": "*"}
                ]))
            ],
            "resource": named("orders-queue-policy", "queue", json!([
                {"Sid": "Producers", "Effect": "Allow", "Principal": {"AWS": [ROLE, "arn:aws:iam::333333333333:role/billing"]},
                 "Action": ["sqs:SendMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"], "Resource": QUEUE},
                {"Sid": "Consumers", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::222222222222:role/orders-consumer"},
                 "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"], "Resource": QUEUE},
                {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "sqs:*", "Resource": QUEUE,
                 "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
            ])),
            "permissionBoundary": named("workload-boundary", "managed", json!([
                {"Effect": "Allow", "Action": ["sqs:*", "kms:Decrypt", "kms:GenerateDataKey*", "s3:GetObject", "cloudwatch:*", "logs:*"], "Resource": "*"},
                {"Effect": "Deny", "Action": ["iam:*", "organizations:*"], "Resource": "*"}
            ])),
            "scps": [
                {"target": "r-ab12", "policies": [full_aws_access(), named("deny-regions", "scp", json!([
                    {"Sid": "DenyOtherRegions", "Effect": "Deny", "NotAction": ["iam:*", "sts:*", "organizations:*", "support:*"], "Resource": "*",
                     "Condition": {"StringNotEquals": {"aws:RequestedRegion": ["us-east-1", "us-west-2", "eu-west-1"]}}}
                ]))]},
                {"target": "ou-ab12-workloads", "policies": [full_aws_access()]}
            ],
            "rcps": [
                {"target": "r-ab12", "policies": [named("data-perimeter", "rcp", json!([
                    {"Sid": "EnforceOrgIdentities", "Effect": "Deny", "Principal": "*", "Action": ["sqs:*", "kms:*", "s3:*"], "Resource": "*",
                     "Condition": {"StringNotEqualsIfExists": {"aws:PrincipalOrgID": ORG},
                                   "BoolIfExists": {"aws:PrincipalIsAWSService": "false"}}}
                ]))]}
            ],
            "vpcEndpoint": named("vpce-0abc1234", "vpcEndpoint", json!([
                {"Sid": "OrgOnly", "Effect": "Allow", "Principal": "*", "Action": "sqs:*", "Resource": "*",
                 "Condition": {"StringEquals": {"aws:PrincipalOrgID": ORG}}}
            ]))
        }
    })
}

/// SQS SendMessage across accounts with only the 3 policies that must allow it.
fn sqs_small(session: usize) -> Value {
    let mut line = sqs_full(session, true);
    let p = line["policies"].as_object_mut().unwrap();
    p.retain(|k, _| k == "identity" || k == "resource" || k == "scps");
    p["identity"].as_array_mut().unwrap().truncate(1);
    p["scps"] = json!([{"target": "r-ab12", "policies": [full_aws_access()]}]);
    line
}

/// KMS GenerateDataKey through SQS, across accounts: the key policy (root delegation, a
/// cross-account statement and grant-like statements with kms:ViaService / kms:CallerAccount),
/// an identity policy and the organization layers.
fn kms(session: usize) -> Value {
    let extra = json!({
        "kms:ViaService": "sqs.us-east-1.amazonaws.com",
        "kms:CallerAccount": CALLER_ACCOUNT,
        "kms:EncryptionContext:aws:sqs:arn": QUEUE,
        "kms:EncryptionContextKeys": ["aws:sqs:arn"],
        "kms:GrantIsForAWSResource": "false",
    });
    json!({
        "request": request(session, "kms:GenerateDataKey", KEY, context(session, true, extra)),
        "policies": {
            "identity": [
                named("orders-producer", "inline", json!([
                    {"Sid": "Encrypt", "Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": KEY,
                     "Condition": {"StringEquals": {"kms:ViaService": "sqs.us-east-1.amazonaws.com"}}}
                ]))
            ],
            "resource": named("orders-key-policy", "key", json!([
                {"Sid": "EnableRootPermissions", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::222222222222:root"},
                 "Action": "kms:*", "Resource": "*"},
                {"Sid": "KeyAdmins", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::222222222222:role/key-admin"},
                 "Action": ["kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*",
                            "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:ScheduleKeyDeletion",
                            "kms:CancelKeyDeletion"], "Resource": "*"},
                {"Sid": "ProducersViaSqs", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111111111111:root"},
                 "Action": ["kms:GenerateDataKey*", "kms:Decrypt"], "Resource": "*",
                 "Condition": {"StringEquals": {"kms:ViaService": "sqs.us-east-1.amazonaws.com", "kms:CallerAccount": CALLER_ACCOUNT}}},
                {"Sid": "Grant-orders-consumer", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::222222222222:role/orders-consumer"},
                 "Action": ["kms:Decrypt"], "Resource": "*",
                 "Condition": {"StringEquals": {"kms:EncryptionContext:aws:sqs:arn": QUEUE}}},
                {"Sid": "Grant-orders-producer", "Effect": "Allow", "Principal": {"AWS": ROLE},
                 "Action": ["kms:GenerateDataKey", "kms:Encrypt"], "Resource": "*",
                 "Condition": {"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["aws:sqs:arn"]},
                               "StringEquals": {"kms:CallerAccount": CALLER_ACCOUNT}}},
                {"Sid": "AllowAttachmentOfPersistentResources", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::222222222222:role/key-admin"},
                 "Action": ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"], "Resource": "*",
                 "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}}
            ])),
            "scps": [{"target": "r-ab12", "policies": [full_aws_access()]}],
            "rcps": [{"target": "r-ab12", "policies": [named("data-perimeter", "rcp", json!([
                {"Sid": "EnforceOrgIdentities", "Effect": "Deny", "Principal": "*", "Action": ["sqs:*", "kms:*", "s3:*"], "Resource": "*",
                 "Condition": {"StringNotEqualsIfExists": {"aws:PrincipalOrgID": ORG},
                               "BoolIfExists": {"aws:PrincipalIsAWSService": "false"}}}
            ]))]}]
        }
    })
}

fn parts(line: &Value) -> (Request, PolicySet) {
    EvaluationInput::from_json(&line.to_string())
        .and_then(|i| i.into_parts())
        .expect("benchmark input is valid")
}

fn policy_count(line: &Value) -> usize {
    let p = &line["policies"];
    let n = |v: &Value| v.as_array().map_or(0, Vec::len);
    let levels = |v: &Value| {
        v.as_array()
            .map_or(0, |l| l.iter().map(|x| n(&x["policies"])).sum())
    };
    n(&p["identity"])
        + [
            "resource",
            "permissionBoundary",
            "sessionPolicy",
            "vpcEndpoint",
        ]
        .iter()
        .filter(|k| !p[**k].is_null())
        .count()
        + levels(&p["scps"])
        + levels(&p["rcps"])
}

struct Settings {
    per_figure: Duration,
    runs: u32,
}

/// Times `f` (which does `units` units of work per call): a warm-up, then `runs` timed runs
/// sharing the figure's time; returns the seconds per unit of every run, sorted.
fn measure(s: &Settings, units: f64, mut f: impl FnMut()) -> Vec<f64> {
    let per_run = s.per_figure / s.runs;
    // Warm-up, and a batch size so that the clock is read about every millisecond.
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < per_run / 2 {
        f();
        calls += 1;
    }
    let per_call = start.elapsed().as_secs_f64() / calls as f64;
    let batch = ((1e-3 / per_call) as u64).max(1);
    let mut results: Vec<f64> = (0..s.runs)
        .map(|_| {
            let start = Instant::now();
            let mut calls = 0u64;
            while start.elapsed() < per_run {
                for _ in 0..batch {
                    f();
                }
                calls += batch;
            }
            start.elapsed().as_secs_f64() / (calls as f64 * units)
        })
        .collect();
    results.sort_by(f64::total_cmp);
    results
}

fn median(v: &[f64]) -> f64 {
    v[v.len() / 2]
}

/// Counts what `evaluate_stream` writes, and drops it.
struct Sink(usize);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<f64>().ok());
    let s = Settings {
        per_figure: Duration::from_secs_f64(env("BENCH_SECS").unwrap_or(2.0)),
        runs: env("BENCH_RUNS").map_or(5, |r| r.max(1.0) as u32),
    };
    println!(
        "policy engine benchmark: median of {} runs, {:.1} s per figure{}",
        s.runs,
        s.per_figure.as_secs_f64(),
        if cfg!(debug_assertions) {
            " (DEBUG BUILD: figures are not representative)"
        } else {
            ""
        }
    );

    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "1" {
        pre_parsed(&s);
    }
    if only.is_empty() || only == "2" {
        end_to_end(&s);
    }
}

fn pre_parsed(s: &Settings) {
    println!("\n1. authorize() on pre-parsed requests");
    println!(
        "   {:<44} {:>8} {:>13} {:>10} {:>16} {:>20}",
        "scenario", "policies", "decision", "ns/eval", "evals/s", "runs min..max ns"
    );
    let scenarios: Vec<(&str, Value)> = vec![
        (
            "sqs:SendMessage cross-account, all layers",
            sqs_full(1, true),
        ),
        ("sqs:SendMessage, SecureTransport=false", sqs_full(1, false)),
        ("sqs:SendMessage cross-account, 3 policies", sqs_small(1)),
        ("kms:GenerateDataKey via SQS, key policy", kms(1)),
    ];
    for (name, line) in &scenarios {
        let (req, set) = parts(line);
        let decision = format!("{:?}", authorize(&req, &set).decision);
        let r = measure(s, 1.0, || {
            black_box(authorize(black_box(&req), black_box(&set)));
        });
        let ns = median(&r) * 1e9;
        println!(
            "   {:<44} {:>8} {:>13} {:>10.0} {:>16.0} {:>9.0}..{:<9.0}",
            name,
            policy_count(line),
            decision,
            ns,
            1e9 / ns,
            r[0] * 1e9,
            r[r.len() - 1] * 1e9
        );
    }
}

/// A named corpus: line `i` is `make(i)`.
type Corpus = (&'static str, fn(usize) -> Value);

/// The mixed corpus: 5/8 SQS all layers, 1/8 SQS 3 policies, 2/8 KMS.
fn mix(i: usize) -> Value {
    match i % 8 {
        0..=3 => sqs_full(i, true),
        4 => sqs_full(i, false),
        5 => sqs_small(i),
        _ => kms(i),
    }
}

/// Makes every policy document of `line` unique to line `i` (an `Id` naming the line), so that
/// no document is ever seen twice: the compile cache of `evaluate` never hits.
fn distinct(mut line: Value, i: usize) -> Value {
    fn mark(policy: &mut Value, i: usize) {
        policy["document"]["Id"] = json!(format!("line-{i}"));
    }
    let p = &mut line["policies"];
    for k in ["identity", "scps", "rcps"] {
        // `get_mut`: indexing a missing key mutably would add it as `null`.
        for x in p
            .get_mut(k)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            match x.get_mut("policies") {
                Some(list) => list
                    .as_array_mut()
                    .unwrap()
                    .iter_mut()
                    .for_each(|y| mark(y, i)),
                None => mark(x, i),
            }
        }
    }
    for k in [
        "resource",
        "permissionBoundary",
        "sessionPolicy",
        "vpcEndpoint",
    ] {
        if let Some(x) = p.get_mut(k) {
            mark(x, i);
        }
    }
    line
}

fn end_to_end(s: &Settings) {
    println!("\n2. evaluate end to end (parse JSON line, authorize, write JSON line)");
    println!("   repeated: the same few policy documents on every line (many requests against one");
    println!("   account's policies); all-distinct: every document is new (the cache never hits)");
    const LINES: usize = 10_000;
    let corpora: [Corpus; 4] = [
        (
            "mix: 5/8 SQS all layers, 1/8 SQS 3 policies, 2/8 KMS, repeated policies",
            mix,
        ),
        (
            "SQS cross-account, 3 policies, repeated policies",
            sqs_small,
        ),
        ("mix, all-distinct policies", |i| distinct(mix(i), i)),
        (
            "SQS cross-account, 3 policies, all-distinct policies",
            |i| distinct(sqs_small(i), i),
        ),
    ];
    let filter = std::env::var("BENCH_CORPUS").unwrap_or_default();
    for (name, make) in corpora {
        if !name.contains(filter.as_str()) {
            continue;
        }
        let mut input = Vec::new();
        for i in 0..LINES {
            serde_json::to_writer(&mut input, &make(i)).unwrap();
            input.push(b'\n');
        }
        let mut sink = Sink(0);
        let failed = evaluate_stream(&input[..], &mut sink).unwrap();
        assert_eq!(failed, 0, "every benchmark line is valid");
        let out_bytes = sink.0;
        let r = measure(s, LINES as f64, || {
            let mut sink = Sink(0);
            black_box(evaluate_stream(black_box(&input[..]), &mut sink).unwrap());
            black_box(sink.0);
        });
        let per_line = median(&r);
        println!(
            "   {name}: {LINES} lines, {:.1} MB in ({:.0} bytes/line), {:.1} MB out",
            input.len() as f64 / 1e6,
            input.len() as f64 / LINES as f64,
            out_bytes as f64 / 1e6
        );
        println!(
            "     {:.0} lines/s, {:.1} MB/s in, {:.1} µs/line (runs {:.1}..{:.1} µs/line)",
            1.0 / per_line,
            input.len() as f64 / (per_line * LINES as f64) / 1e6,
            per_line * 1e6,
            r[0] * 1e6,
            r[r.len() - 1] * 1e6
        );
    }
}
