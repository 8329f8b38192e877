//! Robustness of the policy engine and the `evaluate` line format: whatever comes in, the answer
//! is a value or an `Err`, never a panic, a stack overflow or a hang.
//!
//! (a) arbitrary text and JSON into the parsers and `evaluate_line`/`evaluate_stream`;
//! (b) random but valid policies and requests through `authorize`, with invariants that must hold
//!     whatever the policies say;
//! (c) very large and deeply nested inputs, and pathological wildcard patterns.

mod support;

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::{Map, Value, json};
use sqs_access_operator::cli::evaluate::{evaluate_line, evaluate_stream};
use sqs_access_operator::policy::arn::resource_match;
use sqs_access_operator::policy::input::{EvaluationInput, PolicyCache};
use sqs_access_operator::policy::pattern::Glob;
use sqs_access_operator::policy::{
    Context, Decision, NamedPolicy, OrgLevel, Policy, PolicySet, Principal, PrincipalKind, Request,
    Response, authorize,
};
use support::fingerprint;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        // Failing inputs are printed; no regression files are written next to the tests.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---- pools the generators draw from ----

const OPERATORS: &[&str] = &[
    "StringEquals",
    "StringNotEquals",
    "StringEqualsIgnoreCase",
    "StringNotEqualsIgnoreCase",
    "StringLike",
    "StringNotLike",
    "NumericEquals",
    "NumericNotEquals",
    "NumericLessThan",
    "NumericLessThanEquals",
    "NumericGreaterThan",
    "NumericGreaterThanEquals",
    "DateEquals",
    "DateNotEquals",
    "DateLessThan",
    "DateLessThanEquals",
    "DateGreaterThan",
    "DateGreaterThanEquals",
    "Bool",
    "BinaryEquals",
    "IpAddress",
    "NotIpAddress",
    "ArnEquals",
    "ArnLike",
    "ArnNotEquals",
    "ArnNotLike",
    "Null",
];

const KEYS: &[&str] = &[
    "aws:SecureTransport",
    "AWS:securetransport",
    "aws:PrincipalOrgID",
    "aws:PrincipalOrgPaths",
    "aws:PrincipalAccount",
    "aws:PrincipalArn",
    "aws:SourceIp",
    "aws:SourceVpce",
    "aws:CurrentTime",
    "aws:EpochTime",
    "aws:MultiFactorAuthAge",
    "aws:username",
    "aws:PrincipalTag/team",
    "aws:TagKeys",
    "kms:ViaService",
    "kms:CallerAccount",
    "kms:EncryptionContext:tenant",
    "sqs:MessageAttribute",
];

const STRING_VALUES: &[&str] = &[
    "*",
    "?",
    "",
    "orders",
    "ORDERS",
    "ord*",
    "o?ders",
    "*a*a*a*b",
    "true",
    "false",
    "o-abc123",
    "o-abc123/r-ab12/*",
    "vpce-0abc",
    "sqs.us-east-1.amazonaws.com",
    "111111111111",
    "222222222222",
    "${aws:username}",
    "${aws:username}-*",
    "${aws:PrincipalTag/team}",
    "${aws:PrincipalTag/team, 'none'}",
    "${aws:PrincipalAccount}",
    "${*}${?}${$}",
    "${unclosed",
    "${ aws:username }",
    "${aws:username,'a,b'}",
    "${}",
    "é?ü*",
    "arn:aws:iam::111111111111:role/orders",
];

const ARN_VALUES: &[&str] = &[
    "*",
    "arn:aws:iam::111111111111:role/orders",
    "arn:aws:iam::*:role/*",
    "arn:aws:iam::111111111111:role/${aws:PrincipalTag/team}",
    "arn:aws:sqs:*:222222222222:*",
    "arn:aws:sqs:us-east-1:222222222222:orders",
    "arn:aws:sts::111111111111:assumed-role/orders/*",
    "arn:*:*:*:*:*",
    "arn:aws:sqs:*",
    "arn:aws",
    "not-an-arn*",
];

const NUMBER_VALUES: &[&str] = &["0", "1", "-3", "1.5", " 7 ", "1e3", "3600", "-0.0"];

const DATE_VALUES: &[&str] = &[
    "2026-01-31T00:00:00Z",
    "2026-01-31",
    "1767225600",
    "2026-01-31T00:00:00+02:00",
    "2026-01-31T00:00:00.123Z",
    "2026-01-31T10:00",
    "1970-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
];

const IP_VALUES: &[&str] = &[
    "10.0.0.0/8",
    "203.0.113.7",
    "203.0.113.0/24",
    "10.1.2.3/8",
    "0.0.0.0/0",
    "2001:db8::/32",
    "::1",
    "::/0",
    "192.168.1.1/32",
];

const BOOL_VALUES: &[&str] = &["true", "false", "TRUE", "False"];

const BINARY_VALUES: &[&str] = &["", "QUJD", "AA==", "c3Fz"];

/// Request context values: deliberately of every type, so operators meet values they cannot
/// read (which must make the comparison false, not fail).
const CONTEXT_VALUES: &[&str] = &[
    "true",
    "false",
    "orders",
    "ORDERS",
    "alice",
    "o-abc123",
    "o-abc123/r-ab12/ou-1/",
    "vpce-0abc",
    "sqs.us-east-1.amazonaws.com",
    "111111111111",
    "222222222222",
    "arn:aws:iam::111111111111:role/orders",
    "arn:aws:iam::111111111111:role/team/orders",
    "203.0.113.7",
    "10.1.2.3",
    "2001:db8::1",
    "not-an-ip",
    "2026-01-31T00:00:00Z",
    "2025-06-01",
    "1767225600",
    "17",
    "-1.5",
    "NaN",
    "inf",
    "QUJD",
    "",
    "*",
    "é",
    "${aws:username}",
];

const ACTIONS: &[&str] = &[
    "*",
    "sqs:*",
    "sqs:SendMessage",
    "SQS:send*",
    "sqs:Receive*",
    "sqs:?endMessage",
    "kms:*",
    "kms:GenerateDataKey*",
    "kms:Decrypt",
    "sts:AssumeRole*",
    "s3:GetObject",
    "*:*",
];

const RESOURCE_PATTERNS: &[&str] = &[
    "*",
    "arn:aws:sqs:*:*:*",
    "arn:aws:sqs:us-east-1:222222222222:orders",
    "arn:aws:sqs:*:orders",
    "arn:aws:sqs:us-east-1*:orders",
    "arn:aws:sqs:*",
    "arn:aws:kms:*:*:key/*",
    "arn:aws:sqs:*:${aws:PrincipalAccount}:*",
    "arn:aws:iam::*:role/${aws:username}",
    "arn:aws:sqs:us-east-1:222222222222:${aws:PrincipalTag/team, 'none'}",
    "arn:aws:s3:::bucket/${aws:username}/*",
    "arn:*:*:*:*:*",
    "arn:*:*:*:*:h",
    "arn:aws:sqs:?s-east-1:*:o*s",
    "arn:aws:sqs:us-east-1:222222222222:a:*:h",
    "orders",
    "*orders",
];

const PRINCIPALS: &[&str] = &[
    "arn:aws:sts::111111111111:assumed-role/orders/s1",
    "arn:aws:sts::222222222222:assumed-role/orders/s1",
    "arn:aws:iam::111111111111:user/alice",
    "arn:aws:iam::111111111111:root",
    "arn:aws:iam::111111111111:role/team/orders",
    "arn:aws:sts::111111111111:federated-user/bob",
    "sqs.amazonaws.com",
    "arn:aws:iam::111111111111:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/ABC",
    "accounts.google.com",
    "*",
    "AIDAEXAMPLE",
    "arn:aws:sts::111111111111:assumed-role/",
];

const REQUEST_ACTIONS: &[&str] = &[
    "sqs:SendMessage",
    "sqs:ReceiveMessage",
    "SQS:sendmessage",
    "kms:GenerateDataKey",
    "kms:Decrypt",
    "sts:AssumeRole",
    "sts:AssumeRoleWithWebIdentity",
    "s3:GetObject",
];

const REQUEST_RESOURCES: &[&str] = &[
    "arn:aws:sqs:us-east-1:222222222222:orders",
    "arn:aws:sqs:us-east-1:111111111111:orders",
    "arn:aws:sqs:us-east-1:111111111111:orders",
    "arn:aws:sqs:us-east-1:111111111111:a:b:c:d:e:f:g:h",
    "arn:aws:kms:us-east-1:111111111111:key/1234abcd",
    "arn:aws:kms:us-east-1:222222222222:key/1234abcd",
    "arn:aws:iam::111111111111:role/orders",
    "arn:aws:s3:::bucket/alice/file",
    "arn:aws:sqs:us-east-1:222222222222:a:b:c:d:e:f:g:h",
    "arn:aws:sqs:eu-west-1:222222222222:ordérs",
    "not-an-arn",
];

/// JSON object keys that the line format and policy grammar know, so random JSON reaches
/// further than the first "unknown field".
const FIELD_NAMES: &[&str] = &[
    "request",
    "policies",
    "principal",
    "principalAccount",
    "action",
    "resource",
    "resourceAccount",
    "context",
    "identity",
    "permissionBoundary",
    "sessionPolicy",
    "scps",
    "rcps",
    "vpcEndpoint",
    "target",
    "name",
    "type",
    "document",
    "Version",
    "Id",
    "Statement",
    "Sid",
    "Effect",
    "Principal",
    "NotPrincipal",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
    "AWS",
    "Service",
    "Federated",
    "StringLike",
    "IpAddress",
    "ForAllValues:StringEquals",
    "NullIfExists",
    "aws:SourceIp",
];

// ---- (a) arbitrary input ----

fn any_text() -> impl Strategy<Value = String> {
    const SOUP: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "\"",
        " ",
        "\\",
        "\"Statement\"",
        "\"Effect\"",
        "\"Allow\"",
        "\"Deny\"",
        "\"Action\"",
        "\"sqs:*\"",
        "\"*\"",
        "\"Resource\"",
        "\"Condition\"",
        "\"StringLike\"",
        "\"request\"",
        "\"policies\"",
        "\"principal\"",
        "\"identity\"",
        "\"document\"",
        "\"Version\"",
        "\"2012-10-17\"",
        "null",
        "true",
        "1e999",
        "-0",
        "\"\\u0000\"",
        "\"\\ud800\"",
        "%7B",
        "%22",
        "%",
        "\"${aws:username}\"",
    ];
    prop_oneof![
        any::<String>(),
        "[{}\\[\\]\":,a-zA-Z0-9*?$%\\\\ .-]{0,200}",
        prop::collection::vec(select(SOUP), 0..80).prop_map(|v| v.concat()),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        select(STRING_VALUES).prop_map(Value::from),
        select(CONTEXT_VALUES).prop_map(Value::from),
        select(ACTIONS).prop_map(Value::from),
        select(PRINCIPALS).prop_map(Value::from),
        select(OPERATORS).prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 96, 6, |inner| {
        let key = prop_oneof![3 => select(FIELD_NAMES).prop_map(String::from), 1 => ".{0,8}"];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A realistic, valid `evaluate` line.
fn template_line() -> Value {
    json!({
        "request": {
            "principal": "arn:aws:sts::111111111111:assumed-role/orders/s1",
            "principalAccount": "111111111111",
            "action": "sqs:SendMessage",
            "resource": "arn:aws:sqs:us-east-1:222222222222:orders",
            "resourceAccount": "222222222222",
            "context": {
                "aws:PrincipalArn": "arn:aws:iam::111111111111:role/orders",
                "aws:SecureTransport": "true",
                "aws:PrincipalOrgID": "o-abc123",
                "aws:SourceIp": "203.0.113.7",
                "aws:TagKeys": ["team", "env"]
            }
        },
        "policies": {
            "identity": [
                {"name": "send", "type": "inline", "document": {"Version": "2012-10-17", "Statement": [
                    {"Sid": "Send", "Effect": "Allow", "Action": ["sqs:SendMessage", "sqs:GetQueueUrl"],
                     "Resource": "arn:aws:sqs:*:222222222222:${aws:PrincipalTag/queue, 'orders'}"}]}},
                "{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"sqs:*\",\"Resource\":\"*\"}}"
            ],
            "resource": {"name": "queue-policy", "document": {"Version": "2012-10-17", "Statement": [
                {"Sid": "Producers", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111111111111:role/orders"},
                 "Action": "sqs:SendMessage", "Resource": "arn:aws:sqs:us-east-1:222222222222:orders",
                 "Condition": {"IpAddress": {"aws:SourceIp": ["203.0.113.0/24", "2001:db8::/32"]},
                               "DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}}},
                {"Sid": "TLS", "Effect": "Deny", "Principal": "*", "Action": "sqs:*", "Resource": "*",
                 "Condition": {"Bool": {"aws:SecureTransport": false}}}]}},
            "permissionBoundary": {"Statement": [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]},
            "scps": [{"target": "r-ab12", "policies": [{"name": "FullAWSAccess", "document": {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}}]}],
            "rcps": [{"target": "r-ab12", "policies": [{"name": "perimeter", "document": {"Statement": [
                {"Effect": "Deny", "Principal": "*", "Action": "sqs:*", "Resource": "*",
                 "Condition": {"StringNotEqualsIfExists": {"aws:PrincipalOrgID": "o-abc123"}, "BoolIfExists": {"aws:PrincipalIsAWSService": "false"}}}]}}]}],
            "vpcEndpoint": {"name": "vpce-0abc", "document": {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}]}}
        }
    })
}

/// Every JSON pointer in `v`, the root included.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                let esc = k.replace('~', "~0").replace('/', "~1");
                pointers(c, format!("{at}/{esc}"), out);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                pointers(c, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// Runs one line through `evaluate_line` and checks the output's shape: one JSON object with
/// either `decision` or `error`, no newline.
fn check_line(line: &str) -> Value {
    let mut out = Vec::new();
    let ok = evaluate_line(line, 7, &mut out);
    assert!(!out.contains(&b'\n'), "output spans lines");
    let v: Value = serde_json::from_slice(&out).expect("evaluate_line writes JSON");
    if ok {
        assert!(v.get("decision").is_some(), "{v}");
    } else {
        assert!(v.get("error").is_some_and(Value::is_string), "{v}");
        assert_eq!(v.get("line"), Some(&json!(7)));
    }
    v
}

/// Feeds `text` to every entry point that takes text.
fn feed_text(text: &str) {
    let _ = Policy::from_aws_str(text);
    let uncached = EvaluationInput::from_json(text).and_then(|i| i.into_parts());
    let _ = uncached.as_ref().map(|(req, set)| authorize(req, set));
    // The compile cache of `evaluate` changes nothing, whether documents come from it or not.
    let want = fingerprint(&uncached);
    let mut cache = PolicyCache::new();
    for round in ["first sight", "second sight (kept)", "cached"] {
        let got = fingerprint(&EvaluationInput::parts_from_json(text, &mut cache));
        assert_eq!(got, want, "{round} cache");
    }
    check_line(text);
}

/// Splits the way `BufRead::lines` does: on `\n`, with no empty line after a final `\n`.
fn line_count(bytes: &[u8]) -> usize {
    if bytes.is_empty() {
        return 0;
    }
    bytes.iter().filter(|&&b| b == b'\n').count() + usize::from(*bytes.last().unwrap() != b'\n')
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_text_is_an_error_not_a_panic(text in any_text()) {
        feed_text(&text);
        // The same text as the string forms AWS hands out.
        let enc: String = percent_encoding::utf8_percent_encode(&text, percent_encoding::NON_ALPHANUMERIC).collect();
        let _ = Policy::from_aws_str(&enc);
        let _ = Policy::from_aws_str(&serde_json::to_string(&text).unwrap());
    }

    #[test]
    fn arbitrary_json_is_an_error_not_a_panic(v in arb_json()) {
        feed_text(&v.to_string());
        let _ = Policy::from_aws_str(&json!({"Statement": v}).to_string());
        let _ = Policy::from_aws_str(&json!({"Statement": [{"Effect": "Allow", "Action": "*", "Condition": v}]}).to_string());
        feed_text(&json!({"request": v}).to_string());
        let mut line = template_line();
        line["policies"] = v.clone();
        feed_text(&line.to_string());
        let mut line = template_line();
        line["request"]["context"] = v;
        feed_text(&line.to_string());
    }

    #[test]
    fn valid_line_with_any_subtree_replaced(at in any::<Index>(), v in arb_json()) {
        let mut line = template_line();
        let mut ptrs = Vec::new();
        pointers(&line, String::new(), &mut ptrs);
        let ptr = at.get(&ptrs);
        *line.pointer_mut(ptr).unwrap() = v;
        feed_text(&line.to_string());
    }

    #[test]
    fn valid_line_with_random_edits(edits in prop::collection::vec((0u8..3, any::<Index>(), select(&[
        "", "{", "}", "[", "]", "\"", ":", ",", "*", "${", "%", "\\", "null", "1e999", "\u{0}", "é",
    ][..])), 1..6)) {
        let mut chars: Vec<char> = template_line().to_string().chars().collect();
        for (op, at, tok) in edits {
            let i = at.index(chars.len() + 1);
            match op {
                0 if i < chars.len() => { chars.remove(i); }
                1 => { chars.splice(i..i, tok.chars()); }
                _ if i < chars.len() => { chars.truncate(i); }
                _ => {}
            }
        }
        feed_text(&chars.into_iter().collect::<String>());
    }

    #[test]
    fn evaluate_stream_answers_every_line(chunks in prop::collection::vec(prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        any_text().prop_map(String::into_bytes),
        Just(template_line().to_string().into_bytes()),
        Just(b"\r\n\n".to_vec()),
        Just(vec![0xff, 0xfe, b'\n']),
    ], 0..8)) {
        let input = chunks.concat();
        let mut out = Vec::new();
        let failed = evaluate_stream(&input[..], &mut out).expect("in-memory I/O does not fail");
        let lines: Vec<&[u8]> = out.split(|&b| b == b'\n').collect();
        prop_assert_eq!(lines.last().map(|l| l.len()), Some(0), "output ends with a newline");
        prop_assert_eq!(lines.len() - 1, line_count(&input));
        let mut errors = 0;
        for l in &lines[..lines.len() - 1] {
            let v: Value = serde_json::from_slice(l).expect("each output line is JSON");
            errors += usize::from(v.get("error").is_some());
        }
        prop_assert_eq!(errors, failed);
    }
}

// ---- wildcard matching against reference models ----

/// Whole-string wildcard match, by dynamic programming over characters.
fn ref_glob(p: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (p.chars().collect(), s.chars().collect());
    // m[j]: p[..i] matches s[..j]
    let mut m = vec![false; s.len() + 1];
    m[0] = true;
    for &pc in &p {
        let mut n = vec![false; s.len() + 1];
        for j in 0..=s.len() {
            n[j] = match pc {
                '*' => m[j] || (j > 0 && n[j - 1]),
                '?' => j > 0 && m[j - 1],
                c => j > 0 && m[j - 1] && s[j - 1] == c,
            };
        }
        m = n;
    }
    m[s.len()]
}

/// `Resource` matching as documented on `resource_match`: the pattern's six parts matched
/// against the value's colon-separated parts, where a part ending in `*` may run on across
/// colons and the last part takes the rest. Exhaustive search; small inputs only.
fn ref_resource_match(pattern: &str, value: &str) -> bool {
    fn absorb(pp: &[&str], pi: usize, vp: &[&str], vi: usize) -> bool {
        if vi >= vp.len() {
            return false;
        }
        if pi == pp.len() - 1 {
            return ref_glob(pp[pi], &vp[vi..].join(":"));
        }
        (vi..vp.len())
            .take_while(|&j| j == vi || pp[pi].ends_with('*'))
            .any(|j| ref_glob(pp[pi], &vp[vi..=j].join(":")) && absorb(pp, pi + 1, vp, j + 1))
    }
    if pattern == "*" {
        return true;
    }
    if !pattern.starts_with("arn:") {
        return ref_glob(pattern, value);
    }
    let pp: Vec<&str> = pattern.splitn(6, ':').collect();
    let vp: Vec<&str> = value.split(':').collect();
    absorb(&pp, 0, &vp, 0)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn glob_agrees_with_the_reference(p in "[ab*?é]{0,10}", s in "[abé]{0,14}") {
        prop_assert_eq!(Glob::new(&p).matches(&s), ref_glob(&p, &s), "{} vs {}", p, s);
    }

    #[test]
    fn resource_match_agrees_with_the_reference(
        p in prop_oneof!["arn:[ab:*?]{0,14}", "arn:[ab*]{0,2}:[ab*]{0,2}:[ab*?]{0,2}:[ab*]{0,2}:[ab:*?]{0,6}", "[ab:*?]{0,8}"],
        // Enough colons that both the backtracking and the automaton take part.
        v in "arn:[ab:é]{0,34}",
    ) {
        prop_assert_eq!(resource_match(&Glob::new(&p), &v), ref_resource_match(&p, &v), "{} vs {}", p, v);
    }
}

// ---- (b) valid random policies and requests ----

fn values_for(op: &str) -> BoxedStrategy<Value> {
    fn strs(pool: &'static [&'static str]) -> BoxedStrategy<Value> {
        select(pool).prop_map(Value::from).boxed()
    }
    if op.starts_with("String") {
        prop_oneof![3 => strs(STRING_VALUES), 1 => "[a-z*?]{0,6}".prop_map(Value::from)].boxed()
    } else if op.starts_with("Arn") {
        strs(ARN_VALUES)
    } else if op.starts_with("Numeric") {
        prop_oneof![
            strs(NUMBER_VALUES),
            (-1000i64..1000).prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
        ]
        .boxed()
    } else if op.starts_with("Date") {
        strs(DATE_VALUES)
    } else if op.contains("Ip") {
        strs(IP_VALUES)
    } else if op == "BinaryEquals" {
        strs(BINARY_VALUES)
    } else {
        prop_oneof![strs(BOOL_VALUES), any::<bool>().prop_map(Value::Bool)].boxed()
    }
}

/// One condition clause: (operator as written, key, value or list of values).
fn arb_clause() -> impl Strategy<Value = (String, String, Value)> {
    (select(OPERATORS), 0usize..3, any::<bool>(), select(KEYS)).prop_flat_map(
        |(op, q, if_exists, key)| {
            let name = if op == "Null" {
                op.to_string()
            } else {
                let q = ["", "ForAllValues:", "ForAnyValue:"][q];
                format!("{q}{op}{}", if if_exists { "IfExists" } else { "" })
            };
            let values = prop::collection::vec(values_for(op), 1..4);
            (Just(name), Just(key.to_string()), values, any::<bool>()).prop_map(
                |(name, key, mut values, bare)| {
                    let v = if bare && values.len() == 1 {
                        values.pop().unwrap()
                    } else {
                        Value::Array(values)
                    };
                    (name, key, v)
                },
            )
        },
    )
}

fn arb_principal() -> impl Strategy<Value = Value> {
    select(vec![
        json!("*"),
        json!({"AWS": "*"}),
        json!({"AWS": "111111111111"}),
        json!({"AWS": "arn:aws:iam::111111111111:root"}),
        json!({"AWS": "arn:aws:iam::111111111111:role/orders"}),
        json!({"AWS": "arn:aws:iam::111111111111:role/team/orders"}),
        json!({"AWS": "arn:aws:sts::111111111111:assumed-role/orders/s1"}),
        json!({"AWS": ["111111111111", "arn:aws:iam::222222222222:root"]}),
        json!({"AWS": "arn:aws:iam::111111111111:role/ord*"}),
        json!({"Service": ["sqs.amazonaws.com", "sns.amazonaws.com"]}),
        json!({"Federated": "accounts.google.com"}),
        json!({"CanonicalUser": "AIDAEXAMPLE"}),
    ])
}

fn one_or_list(v: Vec<&'static str>, bare: bool) -> Value {
    if bare && v.len() == 1 {
        json!(v[0])
    } else {
        json!(v)
    }
}

/// A statement; `principal` for the policy kinds that carry one (resource, RCP, endpoint).
fn arb_statement(principal: bool) -> impl Strategy<Value = Value> {
    let principal = if principal {
        prop::option::weighted(0.8, (arb_principal(), prop::bool::weighted(0.1))).boxed()
    } else {
        Just(None).boxed()
    };
    (
        prop::bool::weighted(0.75),
        prop::bool::weighted(0.1),
        prop_oneof![1 => Just(vec!["*"]), 2 => prop::collection::vec(select(ACTIONS), 1..3)],
        select(&["Resource", "Resource", "Resource", "NotResource", ""][..]),
        prop_oneof![
            1 => Just(vec!["*"]),
            2 => prop::collection::vec(select(RESOURCE_PATTERNS), 1..3),
        ],
        principal,
        prop_oneof![1 => Just(vec![]), 1 => prop::collection::vec(arb_clause(), 1..3)],
        prop::option::of("[A-Za-z0-9]{1,6}"),
        any::<bool>(),
    )
        .prop_map(
            |(allow, not_action, actions, res_kw, resources, principal, clauses, sid, bare)| {
                let mut s = Map::new();
                if let Some(sid) = sid {
                    s.insert("Sid".into(), json!(sid));
                }
                s.insert("Effect".into(), json!(if allow { "Allow" } else { "Deny" }));
                let akw = if not_action { "NotAction" } else { "Action" };
                s.insert(akw.into(), one_or_list(actions, bare));
                if !res_kw.is_empty() {
                    s.insert(res_kw.into(), one_or_list(resources, bare));
                }
                if let Some((p, negated)) = principal {
                    let pkw = if negated { "NotPrincipal" } else { "Principal" };
                    s.insert(pkw.into(), p);
                }
                if !clauses.is_empty() {
                    let mut cond = Map::new();
                    for (op, key, values) in clauses {
                        let e = cond.entry(op).or_insert_with(|| json!({}));
                        e[key] = values;
                    }
                    s.insert("Condition".into(), Value::Object(cond));
                }
                Value::Object(s)
            },
        )
}

fn arb_policy(principal: bool) -> impl Strategy<Value = Value> {
    (
        select(&["2012-10-17", "2012-10-17", "2008-10-17", ""][..]),
        prop::collection::vec(arb_statement(principal), 1..4),
        any::<bool>(),
    )
        .prop_map(|(version, mut statements, bare)| {
            let mut doc = Map::new();
            if !version.is_empty() {
                doc.insert("Version".into(), json!(version));
            }
            let st = if bare && statements.len() == 1 {
                statements.pop().unwrap()
            } else {
                Value::Array(statements)
            };
            doc.insert("Statement".into(), st);
            Value::Object(doc)
        })
}

fn full_access() -> Value {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
}

/// Policy documents by kind, kept as JSON so the same set can go through `authorize` directly
/// and through an `evaluate` line.
#[derive(Debug, Clone, Default)]
struct GenSet {
    identity: Vec<Value>,
    resource: Option<Value>,
    boundary: Option<Value>,
    session: Option<Value>,
    scps: Vec<Vec<Value>>,
    rcps: Vec<Vec<Value>>,
    vpce: Option<Value>,
}

fn arb_set() -> impl Strategy<Value = GenSet> {
    let scp_level = (
        prop::collection::vec(arb_policy(false), 0..2),
        prop::bool::weighted(0.9),
    )
        .prop_map(|(mut ps, full)| {
            if full {
                ps.insert(0, full_access());
            }
            ps
        });
    (
        prop::collection::vec(arb_policy(false), 0..3),
        prop::option::weighted(0.7, arb_policy(true)),
        prop::option::weighted(0.3, arb_policy(false)),
        prop::option::weighted(0.2, arb_policy(false)),
        prop::collection::vec(scp_level, 0..3),
        prop::collection::vec(prop::collection::vec(arb_policy(true), 0..2), 0..2),
        prop::option::weighted(0.2, arb_policy(true)),
    )
        .prop_map(
            |(identity, resource, boundary, session, scps, rcps, vpce)| GenSet {
                identity,
                resource,
                boundary,
                session,
                scps,
                rcps,
                vpce,
            },
        )
}

fn parse(doc: &Value, name: String) -> NamedPolicy {
    let text = doc.to_string();
    let policy = Policy::from_aws_str(&text)
        .unwrap_or_else(|e| panic!("a valid policy was rejected: {e}\n{text}"));
    NamedPolicy::new(name, policy)
}

impl GenSet {
    fn to_set(&self) -> PolicySet {
        let levels = |l: &[Vec<Value>], kind: &str| {
            l.iter()
                .enumerate()
                .map(|(i, ps)| OrgLevel {
                    target: format!("{kind}-t{i}"),
                    policies: ps
                        .iter()
                        .enumerate()
                        .map(|(j, p)| parse(p, format!("{kind}-{i}-{j}")))
                        .collect(),
                })
                .collect()
        };
        PolicySet {
            identity: self
                .identity
                .iter()
                .enumerate()
                .map(|(i, p)| parse(p, format!("id-{i}")))
                .collect(),
            resource: self
                .resource
                .iter()
                .map(|p| parse(p, "res".into()))
                .collect(),
            permission_boundary: self.boundary.as_ref().map(|p| parse(p, "pb".into())),
            session_policy: self.session.as_ref().map(|p| parse(p, "sess".into())),
            scps: levels(&self.scps, "scp"),
            rcps: levels(&self.rcps, "rcp"),
            vpc_endpoint: self.vpce.as_ref().map(|p| parse(p, "vpce".into())),
        }
    }

    /// The same set as the `policies` object of an `evaluate` line.
    fn to_json(&self) -> Value {
        let named = |p: &Value, name: String| json!({"name": name, "document": p});
        let levels = |l: &[Vec<Value>], kind: &str| -> Vec<Value> {
            l.iter()
                .enumerate()
                .map(|(i, ps)| {
                    let ps: Vec<Value> = ps
                        .iter()
                        .enumerate()
                        .map(|(j, p)| named(p, format!("{kind}-{i}-{j}")))
                        .collect();
                    json!({"target": format!("{kind}-t{i}"), "policies": ps})
                })
                .collect()
        };
        let mut m = Map::new();
        let ids: Vec<Value> = self
            .identity
            .iter()
            .enumerate()
            .map(|(i, p)| named(p, format!("id-{i}")))
            .collect();
        m.insert("identity".into(), json!(ids));
        for (k, name, p) in [
            ("resource", "res", &self.resource),
            ("permissionBoundary", "pb", &self.boundary),
            ("sessionPolicy", "sess", &self.session),
            ("vpcEndpoint", "vpce", &self.vpce),
        ] {
            if let Some(p) = p {
                m.insert(k.into(), named(p, name.into()));
            }
        }
        m.insert("scps".into(), json!(levels(&self.scps, "scp")));
        m.insert("rcps".into(), json!(levels(&self.rcps, "rcp")));
        Value::Object(m)
    }
}

#[derive(Debug, Clone)]
struct GenReq {
    principal: &'static str,
    action: &'static str,
    resource: &'static str,
    /// Lists of one element are given as a bare string; an empty list is an absent key.
    context: BTreeMap<&'static str, Vec<&'static str>>,
    /// Keys marked unknown (direct evaluation only; the line format has no such marker).
    unknown: Vec<&'static str>,
}

fn arb_request() -> impl Strategy<Value = GenReq> {
    (
        // Mostly IAM callers (the first five), as in practice.
        prop_oneof![3 => select(&PRINCIPALS[..5]), 1 => select(PRINCIPALS)],
        prop_oneof![2 => select(&REQUEST_ACTIONS[..3]), 1 => select(REQUEST_ACTIONS)],
        select(REQUEST_RESOURCES),
        prop::collection::btree_map(
            select(KEYS),
            prop::collection::vec(select(CONTEXT_VALUES), 0..3),
            0..8,
        ),
        prop::collection::vec(select(KEYS), 0..2),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(principal, action, resource, context, unknown, with_unknown)| GenReq {
                principal,
                action,
                resource,
                context,
                unknown: if with_unknown { unknown } else { Vec::new() },
            },
        )
}

impl GenReq {
    fn context(&self) -> Context {
        let mut c = Context::new();
        for (k, v) in &self.context {
            if v.len() == 1 {
                c.insert(k, v[0]);
            } else {
                c.insert_many(k, v.iter().map(|s| s.to_string()).collect());
            }
        }
        for k in &self.unknown {
            c.mark_unknown(k);
        }
        c
    }

    fn build(&self) -> Request {
        self.build_with_action(self.action)
    }

    fn build_with_action(&self, action: &str) -> Request {
        Request::new(self.principal, action, self.resource, self.context())
    }

    fn is_iam(&self) -> bool {
        Principal::parse(self.principal).is_iam_identity()
    }

    fn to_json(&self) -> Value {
        let ctx: Map<String, Value> = self
            .context
            .iter()
            .map(|(k, v)| (k.to_string(), one_or_list(v.clone(), true)))
            .collect();
        json!({"principal": self.principal, "action": self.action, "resource": self.resource, "context": ctx})
    }
}

/// What every response must satisfy, whatever the policies.
fn check_response(r: &Response, has_unknowns: bool, root_at_home: bool) {
    match r.decision {
        Decision::Allow => {
            // The account root user in its own account needs no statement at all.
            assert!(
                root_at_home || !r.statements.is_empty(),
                "Allow names no statement: {r:?}"
            );
            assert!(r.statements.iter().all(|s| s.effect == "Allow"), "{r:?}");
            assert!(r.missing.is_empty(), "{r:?}");
        }
        Decision::ExplicitDeny => {
            assert!(
                !r.statements.is_empty(),
                "ExplicitDeny names no statement: {r:?}"
            );
            assert!(r.statements.iter().all(|s| s.effect == "Deny"), "{r:?}");
            assert!(r.layers.iter().any(|l| l.result == "Deny"), "{r:?}");
        }
        Decision::ImplicitDeny => {
            assert!(r.statements.is_empty(), "{r:?}");
            assert!(
                !r.missing.is_empty(),
                "ImplicitDeny names no missing layer: {r:?}"
            );
        }
        Decision::Indeterminate => {
            assert!(has_unknowns, "Indeterminate without unknown keys: {r:?}");
            assert!(!r.depends_on.is_empty(), "{r:?}");
        }
    }
    if !has_unknowns {
        assert!(r.depends_on.is_empty(), "{r:?}");
    }
}

fn deny_all() -> Value {
    json!({"Effect": "Deny", "Action": "*", "Resource": "*"})
}

fn push_statement(doc: &mut Value, stmt: Value) {
    let st = &mut doc["Statement"];
    if !st.is_array() {
        *st = Value::Array(vec![st.take()]);
    }
    st.as_array_mut().unwrap().push(stmt);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_policies_evaluate_consistently(set in arb_set(), req in arb_request()) {
        let policies = set.to_set();
        let request = req.build();
        let r = authorize(&request, &policies);
        let root_at_home = request.principal.kind == PrincipalKind::Root && request.same_account();
        check_response(&r, !req.unknown.is_empty(), root_at_home);
        // Deterministic, and independent of the action's case.
        prop_assert_eq!(&authorize(&request, &policies), &r);
        prop_assert_eq!(&authorize(&request, &policies.clone()), &r);
        let upper = req.action.to_ascii_uppercase();
        prop_assert_eq!(&authorize(&req.build_with_action(&upper), &policies), &r);
        if req.unknown.is_empty() {
            // The `evaluate` line gives exactly the same answer.
            let line = json!({"request": req.to_json(), "policies": set.to_json()}).to_string();
            let mut out = Vec::new();
            prop_assert!(evaluate_line(&line, 1, &mut out), "{}", String::from_utf8_lossy(&out));
            prop_assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&r).unwrap());
        }
    }

    #[test]
    fn a_deny_all_identity_statement_always_denies(set in arb_set(), req in arb_request(), at in any::<Index>()) {
        prop_assume!(req.is_iam());
        let mut set = set;
        if set.identity.is_empty() {
            set.identity.push(json!({"Statement": deny_all()}));
        } else {
            let i = at.index(set.identity.len());
            push_statement(&mut set.identity[i], deny_all());
        }
        let r = authorize(&req.build(), &set.to_set());
        prop_assert_eq!(r.decision, Decision::ExplicitDeny, "{:?}", r);
        prop_assert!(r.statements.iter().any(|s| s.layer.as_str() == "identity" && s.effect == "Deny"));
    }

    #[test]
    fn no_policies_is_an_implicit_deny(req in arb_request()) {
        let request = req.build();
        // The account root user needs no policy in its own account.
        prop_assume!(!(request.principal.kind == PrincipalKind::Root && request.same_account()));
        let r = authorize(&request, &PolicySet::default());
        prop_assert_eq!(r.decision, Decision::ImplicitDeny, "{:?}", r);
        check_response(&r, !req.unknown.is_empty(), false);
    }

    #[test]
    fn adding_a_deny_never_grants_and_adding_an_allow_never_revokes(
        set in arb_set(),
        req in arb_request(),
        stmt in arb_statement(true),
        layer in 0usize..5,
    ) {
        let request = req.build();
        let before = authorize(&request, &set.to_set()).decision;

        let mut stmt = stmt;
        stmt["Effect"] = json!("Deny");
        let mut denied = set.clone();
        let target = match layer {
            0 => { denied.identity.push(json!({"Statement": []})); denied.identity.last_mut() }
            1 => denied.resource.get_or_insert_with(|| json!({"Statement": []})).into(),
            2 => { denied.scps.push(vec![]); denied.scps[0].push(json!({"Statement": []})); denied.scps[0].last_mut() }
            3 => { denied.rcps.push(vec![json!({"Statement": []})]); denied.rcps.last_mut().unwrap().last_mut() }
            _ => denied.vpce.get_or_insert_with(|| json!({"Statement": []})).into(),
        };
        push_statement(target.unwrap(), stmt.clone());
        let after = authorize(&request, &denied.to_set()).decision;
        prop_assert!(after != Decision::Allow || before == Decision::Allow, "{:?} -> {:?}", before, after);

        let mut allowed = set;
        stmt["Effect"] = json!("Allow");
        stmt.as_object_mut().unwrap().remove("Principal");
        stmt.as_object_mut().unwrap().remove("NotPrincipal");
        allowed.identity.push(json!({"Statement": stmt}));
        let after = authorize(&request, &allowed.to_set()).decision;
        if before == Decision::Allow || before == Decision::ExplicitDeny {
            prop_assert_eq!(after, before);
        }
    }
}

// ---- (c) large, deep and pathological inputs ----

const QUEUE: &str = "arn:aws:sqs:us-east-1:222222222222:orders";
const OWN_QUEUE: &str = "arn:aws:sqs:us-east-1:111111111111:orders";
const CALLER: &str = "arn:aws:sts::111111111111:assumed-role/orders/s1";

fn line_with(identity: Value, context: Value, resource: &str) -> String {
    json!({
        "request": {"principal": CALLER, "action": "sqs:SendMessage", "resource": resource, "context": context},
        "policies": {"identity": [identity]}
    })
    .to_string()
}

fn decision_of(line: &str) -> String {
    let v = check_line(line);
    v.get("decision")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("an error: {v}"))
        .to_string()
}

#[test]
fn ten_thousand_statements() {
    let statements: Vec<Value> = (0..10_000)
        .map(|i| {
            json!({
                "Sid": format!("S{i}"),
                "Effect": "Allow",
                "Action": [format!("sqs:Action{i}"), "sqs:Get*"],
                "Resource": format!("arn:aws:sqs:*:222222222222:queue-{i}-*"),
                "Condition": {"StringLike": {"aws:PrincipalTag/team": [format!("t{i}*"), "${aws:username}"]},
                              "IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}
            })
        })
        .chain([json!({"Sid": "Last", "Effect": "Allow", "Action": "sqs:SendMessage", "Resource": QUEUE})])
        .collect();
    let doc = json!({"Version": "2012-10-17", "Statement": statements});
    let policy = Policy::from_aws_str(&doc.to_string()).unwrap();
    assert_eq!(policy.statements.len(), 10_001);

    let set = PolicySet {
        identity: vec![NamedPolicy::new("big", policy)],
        ..Default::default()
    };
    let mut ctx = Context::new();
    ctx.insert("aws:SourceIp", "10.1.2.3");
    let r = authorize(
        &Request::new(
            "arn:aws:sts::222222222222:assumed-role/orders/s1",
            "sqs:SendMessage",
            QUEUE,
            ctx,
        ),
        &set,
    );
    assert_eq!(r.decision, Decision::Allow);
    assert_eq!(r.statements[0].sid.as_deref(), Some("Last"));

    // As many policies, SCP levels and condition values, through the line format.
    let many: Vec<Value> = (0..10_000).map(|_| full_access()).collect();
    let values: Vec<String> = (0..10_000).map(|i| format!("o-{i}")).collect();
    let line = json!({
        "request": {"principal": CALLER, "action": "sqs:SendMessage", "resource": QUEUE,
                    "context": {"aws:PrincipalOrgID": "o-9999", "aws:TagKeys": values}},
        "policies": {
            "identity": many,
            "scps": (0..1_000).map(|i| json!({"target": format!("ou-{i}"), "policies": [full_access()]})).collect::<Vec<_>>(),
            "resource": {"Statement": {"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*",
                         "Condition": {"StringEquals": {"aws:PrincipalOrgID": values},
                                       "ForAllValues:StringLike": {"aws:TagKeys": ["o-*"]}}}}
        }
    })
    .to_string();
    assert_eq!(decision_of(&line), "Allow");
}

#[test]
fn five_megabyte_strings() {
    let big = "a".repeat(5 << 20);
    let big_colons = "a:".repeat(1 << 19);

    // As a Sid, a condition value, a context value, an action and a resource.
    let doc = json!({"Statement": [{"Sid": big, "Effect": "Allow", "Action": "sqs:*", "Resource": "*",
                                    "Condition": {"StringLike": {"aws:username": format!("{big}*")}}}]});
    assert_eq!(
        decision_of(&line_with(
            doc.clone(),
            json!({"aws:username": format!("{big}b")}),
            OWN_QUEUE
        )),
        "Allow"
    );
    assert_eq!(
        decision_of(&line_with(doc, json!({"aws:username": "a"}), OWN_QUEUE)),
        "ImplicitDeny"
    );
    let allow_all = json!({"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}});
    let line = json!({"request": {"principal": CALLER, "action": format!("sqs:{big}"), "resource": format!("{OWN_QUEUE}{big}")},
                      "policies": {"identity": [allow_all]}})
    .to_string();
    assert_eq!(decision_of(&line), "Allow");

    // A resource of a million colon-separated parts against patterns whose parts end in `*`
    // (that used to be a backtracking search over every way to split the value).
    for pattern in [
        "arn:*:*:*:*:nomatch",
        "arn:a*:a*:a*:a*:*a:a",
        "arn:*:*:*:*:*",
        "arn:aws:sqs:*",
    ] {
        let doc = json!({"Statement": {"Effect": "Allow", "Action": "*", "Resource": pattern}});
        check_line(&line_with(doc, json!({}), &format!("arn:{big_colons}")));
    }

    // A 5 MB policy string, URL-encoded, and a 5 MB line of garbage.
    let enc = format!("%7B%22Statement%22:[{}]%7D", "%20".repeat(5 << 18));
    assert!(Policy::from_aws_str(&enc).is_ok());
    let garbage = "[\"\u{1F600}\\u0000".repeat(5 << 18);
    assert!(check_line(&garbage).get("error").is_some());
    let mut out = Vec::new();
    let input = format!("{garbage}\n{}\n", template_line());
    assert_eq!(evaluate_stream(input.as_bytes(), &mut out).unwrap(), 1);
}

#[test]
fn json_nested_a_hundred_thousand_levels_is_an_error() {
    const DEPTH: usize = 100_000;
    let arrays = format!("{}{}", "[".repeat(DEPTH), "]".repeat(DEPTH));
    let objects = format!("{}1{}", "{\"a\":".repeat(DEPTH), "}".repeat(DEPTH));
    let unclosed = "[{\"Statement\":".repeat(DEPTH);
    for deep in [&arrays, &objects, &unclosed] {
        assert!(Policy::from_aws_str(deep).is_err());
        assert!(EvaluationInput::from_json(deep).is_err());
        check_line(deep);
        let enc: String =
            percent_encoding::utf8_percent_encode(deep, percent_encoding::NON_ALPHANUMERIC)
                .collect();
        assert!(Policy::from_aws_str(&enc).is_err());
        assert!(Policy::from_aws_str(&serde_json::to_string(deep).unwrap()).is_err());

        // Deep inside every place of a valid line that takes a value.
        let base = template_line().to_string();
        for at in [
            "\"arn:aws:iam::111111111111:role/orders\"",
            "\"sqs:SendMessage\"",
            "{\"Effect\":\"Allow\",\"NotAction\":\"iam:*\",\"Resource\":\"*\"}",
            "[\"203.0.113.0/24\",\"2001:db8::/32\"]",
            "\"*\"",
        ] {
            assert!(base.contains(at), "{at}");
            let line = base.replacen(at, deep, 1);
            assert!(check_line(&line).get("error").is_some());
            // And inside a policy given as a string.
            let line = base.replacen(at, &serde_json::to_string(deep).unwrap(), 1);
            check_line(&line);
        }
        let mut out = Vec::new();
        let input = format!("{deep}\n{}\n", template_line());
        assert_eq!(evaluate_stream(input.as_bytes(), &mut out).unwrap(), 1);
    }
}

#[test]
fn policy_strings_nested_in_strings_are_an_error() {
    // JSON strings and URL-encoding alternating, hundreds of levels deep: one JSON-string
    // level is accepted, deeper is an error (this used to recurse until the stack overflowed).
    let encode = |s: &str| -> String {
        const SET: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
            .add(b'"')
            .add(b'%')
            .add(b'{')
            .add(b'\\');
        percent_encoding::utf8_percent_encode(s, SET).collect()
    };
    let doc = r#"{"Statement":[]}"#;
    let once = format!("\"{}\"", encode(doc));
    assert!(Policy::from_aws_str(&once).is_ok());
    assert!(Policy::from_aws_str(&encode(&once)).is_ok());
    let mut s = doc.to_string();
    for level in 0..300 {
        s = format!("\"{}\"", encode(&s));
        if level > 0 && level % 10 == 0 {
            assert!(Policy::from_aws_str(&s).is_err());
        }
    }
    let line =
        json!({"request": {"principal": CALLER, "action": "sqs:SendMessage", "resource": QUEUE},
                      "policies": {"identity": [s]}})
        .to_string();
    assert!(check_line(&line).get("error").is_some());
}

#[test]
fn pathological_wildcards_finish() {
    let long_a = "a".repeat(100_000);
    let stars = "*a".repeat(1_000) + "b";
    let segment = format!("*{}b", "a".repeat(300));
    for pattern in [stars.as_str(), segment.as_str()] {
        assert!(!Glob::new(pattern).matches(&long_a));
        assert!(!resource_match(&Glob::new(pattern), &long_a));
        let arn_pattern = format!("arn:aws:sqs:*:*:{pattern}");
        let arn_value = format!("arn:aws:sqs:r:1:{long_a}");
        assert!(!resource_match(&Glob::new(&arn_pattern), &arn_value));

        // Through the whole engine: as an action, a resource, StringLike and ArnLike values.
        let doc = json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": format!("sqs:{pattern}"), "Resource": "*"},
            {"Effect": "Allow", "Action": "*", "Resource": [pattern, arn_pattern]},
            {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {
                "StringLike": {"aws:username": pattern},
                "ForAnyValue:StringLike": {"aws:TagKeys": [pattern, format!("${{aws:username}}{pattern}")]}}},
            {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {
                "ArnLike": {"aws:PrincipalArn": format!("arn:aws:iam::*:role/{pattern}")}}}
        ]});
        let line = json!({
            "request": {"principal": CALLER, "action": format!("sqs:{long_a}"), "resource": arn_value,
                        "context": {"aws:username": long_a, "aws:TagKeys": [long_a, long_a],
                                    "aws:PrincipalArn": format!("arn:aws:iam::111111111111:role/{long_a}")}},
            "policies": {"identity": [doc]}
        })
        .to_string();
        assert_eq!(decision_of(&line), "ImplicitDeny");
    }

    // Many colons in the value and `*`-ended parts in the pattern: the automaton's worst case
    // is pattern × value, like a plain wildcard match.
    let colons = "a:".repeat(20_000);
    let pattern = format!("arn:*a:*a:*a:*a:{}b", "*a".repeat(100));
    assert!(!resource_match(
        &Glob::new(&pattern),
        &format!("arn:{colons}")
    ));
}
