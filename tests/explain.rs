//! `explain` offline: an error text and a snapshot give the layer, the fix, and an honest
//! comparison with AWS's claim; what the text lacks is asked for by name; a URL in the text is
//! never taken as a place to send requests.

mod support;

use std::path::Path;

use serde_json::Value;
use sqs_access_operator::diagnosis::{DiagLayer, FixTarget, ReasonCode, Snapshot, SpecOptions};
use sqs_access_operator::explain::{
    self, Agreement, Explanation, Options, SelectError, explain, parse,
};
use support::binary;

const KMS_ARTICLE: &str = "An error occurred (KMS.AccessDeniedException) when calling the SendMessage operation: User: arn:aws:iam::xxxxx:user/xxxx is not authorized to perform: kms:GenerateDataKey on resource: arn:aws:kms:us-east-1:xxxx:key/xxxx with an explicit deny.";
const LEGACY_ARTICLE: &str = "An error occurred (AccessDenied) when calling the SendMessage operation: Access to the resource is denied.";
const WORKER: &str = "arn:aws:sts::111111111111:assumed-role/orders-worker/i-0abc1234def567890";
const QUEUE: &str = "arn:aws:sqs:us-east-1:111111111111:orders";

fn example(name: &str) -> Snapshot {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/snapshots/{name}.yaml"));
    Snapshot::evidence_from_yaml_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn iam_style(principal: &str, action: &str, tail: &str) -> String {
    format!(
        "An error occurred (AccessDenied) when calling the SendMessage operation: User: {principal} is not authorized to perform: {action} on resource: {QUEUE}{tail}"
    )
}

fn run(text: &str, opts: Options, snap: Snapshot) -> Explanation {
    explain(&parse(text).unwrap(), &opts, snap, &SpecOptions::default()).unwrap()
}

fn codes(x: &Explanation) -> Vec<ReasonCode> {
    x.reasons.iter().map(|r| r.code).collect()
}

fn invisible(x: &Explanation) -> Vec<&str> {
    x.comparison
        .not_visible
        .iter()
        .map(|n| n.layer.as_str())
        .collect()
}

#[test]
fn the_articles_kms_message_names_the_identity_policy_and_the_statement_to_remove() {
    // The text's principal is redacted; the snapshot's request names the user.
    let x = run(
        KMS_ARTICLE,
        Options::default(),
        example("user-kms-explicit-deny"),
    );
    assert_eq!(x.comparison.result, Agreement::NamedNoLayer);
    assert_eq!(x.comparison.claimed_explicit, Some(true));
    assert_eq!(x.comparison.our_layers, [DiagLayer::IdentityPolicy]);
    assert_eq!(codes(&x), [ReasonCode::ExplicitDenyInIdentityPolicy]);
    let sel = x.evaluated.as_ref().unwrap();
    assert_eq!(sel.focus, "kms:GenerateDataKey");
    assert_eq!(sel.action, "sqs:SendMessage");
    assert!(
        sel.assumptions.iter().any(|a| a.contains("redacted")),
        "{sel:?}"
    );
    let fix = &x.fixes[0];
    assert_eq!(
        fix.target,
        FixTarget::UserPolicy {
            user: "arn:aws:iam::111111111111:user/ci-deployer".into()
        }
    );
    assert!(
        fix.instruction.contains("\"DenyDataKeys\"") && fix.instruction.contains("remove it"),
        "{}",
        fix.instruction
    );
    assert_eq!(x.exit_code(), 2);
}

#[test]
fn the_iam_style_message_agrees_and_gives_the_statement_to_add() {
    let text = iam_style(
        WORKER,
        "sqs:sendmessage",
        " because no identity-based policy allows the sqs:sendmessage action",
    );
    let x = run(
        &text,
        Options::default(),
        example("role-session-no-identity-policy"),
    );
    assert_eq!(
        x.comparison.result,
        Agreement::Agrees,
        "{:#?}",
        x.comparison
    );
    assert_eq!(codes(&x), [ReasonCode::IdentityPolicyDoesNotAllow]);
    let st = x.fixes[0].statement.as_ref().unwrap();
    assert_eq!(st["Action"], serde_json::json!(["sqs:SendMessage"]));
    assert_eq!(st["Resource"], QUEUE);
    assert_eq!(
        x.fixes[0].target,
        FixTarget::RolePolicy {
            role: "arn:aws:iam::111111111111:role/orders-worker".into()
        }
    );
    // The session name from the text is the principal evaluated.
    assert_eq!(
        x.verdict
            .as_ref()
            .unwrap()
            .caller
            .as_ref()
            .unwrap()
            .principal,
        WORKER
    );
}

#[test]
fn the_legacy_message_needs_principal_and_queue_and_then_names_the_layer() {
    let e = parse(LEGACY_ARTICLE).unwrap();
    match explain::select(&e, &Options::default(), None) {
        Err(SelectError::Needs(n)) => {
            let opts: Vec<_> = n.iter().map(|n| n.option).collect();
            assert_eq!(opts, ["--principal ARN", "--queue ARN|URL"]);
        }
        other => panic!("{other:?}"),
    }
    // An evidence-only snapshot: the options select what the text does not say.
    let mut snap = example("role-session-no-identity-policy");
    snap.request = None;
    let x = run(
        LEGACY_ARTICLE,
        Options {
            principal: Some(WORKER.into()),
            queue: Some("https://sqs.us-east-1.amazonaws.com/111111111111/orders".into()),
            ..Default::default()
        },
        snap,
    );
    assert_eq!(x.comparison.result, Agreement::NamedNoLayer);
    assert_eq!(codes(&x), [ReasonCode::IdentityPolicyDoesNotAllow]);
}

#[test]
fn a_claim_in_a_layer_not_visible_says_where_to_look() {
    // AWS blames an SCP; the snapshot has no organization. The diagnosis also finds the
    // identity policy missing: both are shown, and the SCP layer is named as not visible.
    let text = iam_style(
        WORKER,
        "sqs:sendmessage",
        " with an explicit deny in a service control policy",
    );
    let x = run(
        &text,
        Options::default(),
        example("role-session-no-identity-policy"),
    );
    assert_eq!(x.comparison.result, Agreement::DifferentLayer);
    assert_eq!(invisible(&x), ["scp"]);
    assert!(x.comparison.message.contains("not visible"));

    // With an identity policy that allows, every visible layer allows: the claim's layer is
    // where to look, and what would let the tool read it is said.
    let mut snap = example("role-session-no-identity-policy");
    let allow = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sqs:SendMessage","Resource":"*"}]}"#;
    snap.role.as_mut().unwrap().inline_policies[0].document =
        sqs_access_operator::diagnosis::snapshot::Document::parse_str(allow).unwrap();
    let x = run(&text, Options::default(), snap);
    assert_eq!(x.comparison.result, Agreement::ClaimNotVisible);
    assert_eq!(invisible(&x)[0], "scp");
    let scp = &x.comparison.not_visible[0].message;
    assert!(
        scp.contains("organization") && scp.contains("configuration"),
        "{scp}"
    );
    assert_eq!(x.exit_code(), 0);

    // No claim at all: every layer that was not visible is listed, the request context too.
    let x = run(
        &iam_style(WORKER, "sqs:sendmessage", ""),
        Options::default(),
        {
            let mut s = example("role-session-no-identity-policy");
            s.role.as_mut().unwrap().inline_policies[0].document =
                sqs_access_operator::diagnosis::snapshot::Document::parse_str(allow).unwrap();
            s
        },
    );
    assert_eq!(x.comparison.result, Agreement::AllowedInVisibleLayers);
    assert_eq!(
        invisible(&x),
        [
            "scp",
            "rcp",
            "vpcEndpointPolicy",
            "sessionPolicy",
            "requestContext"
        ]
    );
}

#[test]
fn a_session_policy_claim_agrees_when_the_session_policy_is_known() {
    let text = "An error occurred (AccessDenied) when calling the SendMessage operation: User: arn:aws:sts::111111111111:assumed-role/orders-batch/nightly-import is not authorized to perform: sqs:sendmessage on resource: arn:aws:sqs:us-east-1:111111111111:orders because no session policy allows the sqs:sendmessage action";
    let x = run(
        text,
        Options::default(),
        example("role-session-policy-blocks"),
    );
    assert_eq!(x.comparison.result, Agreement::Agrees);
    assert_eq!(codes(&x), [ReasonCode::SessionPolicyDoesNotAllow]);
    assert!(matches!(x.fixes[0].target, FixTarget::SessionPolicy { .. }));
}

#[test]
fn a_binding_snapshot_notices_the_pod_is_not_using_its_role() {
    // AWS refused the node's role; the service account's role is another one.
    let text = iam_style(
        "arn:aws:sts::111111111111:assumed-role/eks-nodegroup-role/i-0123456789abcdef0",
        "sqs:sendmessage",
        " because no identity-based policy allows the sqs:sendmessage action",
    );
    let x = run(
        &text,
        Options::default(),
        example("identity-policy-missing"),
    );
    assert!(
        x.comparison
            .notes
            .iter()
            .any(|n| n.contains("not using its role") && n.contains("orders-producer")),
        "{:#?}",
        x.comparison.notes
    );
    assert_eq!(x.comparison.result, Agreement::Agrees);
}

#[test]
fn sts_errors_are_the_credential_step() {
    let text = "WebIdentityErr: failed to retrieve credentials\ncaused by: InvalidIdentityToken: No OpenIDConnect provider found in your account for https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE\n\tstatus code: 400, request id: 8f2a7e1c";
    let e = parse(text).unwrap();
    let x = explain(
        &e,
        &Options::default(),
        example("role-session-no-identity-policy"),
        &SpecOptions::default(),
    )
    .unwrap();
    assert_eq!(x.comparison.result, Agreement::CredentialStep);
    assert!(x.comparison.message.contains("diagnose --live"));
    assert_eq!(x.exit_code(), 3);
    // With the binding's snapshot, the binding's credential step is checked.
    let x = explain(
        &e,
        &Options::default(),
        example("oidc-provider-not-registered"),
        &SpecOptions::default(),
    )
    .unwrap();
    assert_eq!(x.comparison.result, Agreement::Agrees);
    assert_eq!(codes(&x), [ReasonCode::OidcProviderNotRegistered]);
}

#[test]
fn queue_does_not_exist_is_told_apart_from_a_missing_permission() {
    let text = "An error occurred (QueueDoesNotExist) when calling the GetQueueUrl operation: The specified queue does not exist.";
    let opts = Options {
        principal: Some(WORKER.into()),
        queue: Some(QUEUE.into()),
        ..Default::default()
    };
    let mut snap = example("role-session-no-identity-policy");
    snap.request = None;
    let x = run(text, opts.clone(), snap.clone());
    assert_eq!(x.comparison.result, Agreement::DifferentLayer);
    assert!(x.comparison.message.contains("The queue exists"));
    assert_eq!(codes(&x), [ReasonCode::IdentityPolicyDoesNotAllow]);
    snap.queue.as_mut().unwrap().found = false;
    let x = run(text, opts, snap);
    assert_eq!(x.comparison.result, Agreement::Agrees);
}

#[test]
fn a_url_in_the_text_selects_only_a_queue_on_an_sqs_endpoint() {
    let e = parse(
        "Access to the resource https://sqs.us-east-1.amazonaws.com/111111111111/orders is denied.",
    )
    .unwrap();
    let sel = explain::select(
        &e,
        &Options {
            principal: Some(WORKER.into()),
            action: Some("SendMessage".into()),
            ..Default::default()
        },
        None,
    )
    .unwrap();
    assert_eq!(sel.queue, QUEUE);
    for hostile in [
        "http://127.0.0.1:9/111111111111/orders",
        "https://attacker.example.com/111111111111/orders",
        "https://sqs.us-east-1.amazonaws.com.attacker.example/111111111111/orders",
    ] {
        let e = parse(&format!("Access to the resource {hostile} is denied.")).unwrap();
        let got = explain::select(
            &e,
            &Options {
                principal: Some(WORKER.into()),
                action: Some("SendMessage".into()),
                ..Default::default()
            },
            None,
        );
        assert!(
            matches!(&got, Err(SelectError::Needs(n)) if n[0].option == "--queue ARN|URL"),
            "{hostile}: {got:?}"
        );
    }
}

#[test]
fn bad_options_name_the_option() {
    let e = parse(LEGACY_ARTICLE).unwrap();
    for (opts, option) in [
        (
            Options {
                principal: Some("arn:aws:iam::1:user/x".into()),
                ..Default::default()
            },
            "--principal",
        ),
        (
            Options {
                principal: Some(WORKER.into()),
                queue: Some(QUEUE.into()),
                action: Some("sqs:Publish".into()),
                ..Default::default()
            },
            "--action",
        ),
    ] {
        let err = explain::select(&e, &opts, None).unwrap_err();
        assert!(err.to_string().starts_with(option), "{err}");
    }
}

/// The command line: the text alone says what it needs; with a snapshot, JSON output carries
/// the comparison; bad input exits 1 naming what is wrong.
#[test]
fn the_command_line() {
    let o = binary().args(["explain", LEGACY_ARTICLE]).output().unwrap();
    assert_eq!(o.status.code(), Some(3));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("--principal ARN") && out.contains("--queue ARN|URL"),
        "{out}"
    );
    let o = binary()
        .args([
            "explain",
            KMS_ARTICLE,
            "examples/snapshots/user-kms-explicit-deny.yaml",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["comparison"]["result"], "NamedNoLayer");
    assert_eq!(v["error"]["action"], "kms:GenerateDataKey");
    assert_eq!(v["reasons"][0]["code"], "ExplicitDenyInIdentityPolicy");
    // From standard input.
    let mut child = binary()
        .args(["explain", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"connection reset by peer")
            .unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("ERROR_TEXT: not an AWS access error"));
    let o = binary()
        .args([
            "explain",
            LEGACY_ARTICLE,
            "--live",
            "--principal",
            WORKER,
            "--context",
            "nonsense",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--context nonsense"));
}

#[test]
fn a_users_boundary_and_a_federated_user() {
    use sqs_access_operator::diagnosis::snapshot::{Document, NamedDocument};
    let user = "arn:aws:iam::111111111111:user/ci-deployer";
    let mut snap = example("user-kms-explicit-deny");
    snap.user.as_mut().unwrap().permissions_boundary = Some(NamedDocument {
        name: Some("only-kms".into()),
        arn: None,
        document: Document::parse_str(
            r#"{"Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#,
        )
        .unwrap(),
    });
    let text = format!(
        "User: {user} is not authorized to perform: sqs:SendMessage on resource: {QUEUE} because no permissions boundary allows the sqs:SendMessage action"
    );
    let x = run(&text, Options::default(), snap);
    assert_eq!(
        x.comparison.result,
        Agreement::Agrees,
        "{:#?}",
        x.comparison
    );
    assert_eq!(codes(&x), [ReasonCode::PermissionsBoundaryDoesNotAllow]);
    assert_eq!(
        x.fixes[0].target,
        FixTarget::PermissionsBoundary {
            policy: "only-kms".into()
        }
    );
    assert!(x.fixes[0].instruction.contains(&format!("of user {user}")));

    // A federated user acts with the policies of the IAM user that federated it.
    let fed = "arn:aws:sts::111111111111:federated-user/bob";
    let text = format!(
        "User: {fed} is not authorized to perform: kms:GenerateDataKey on resource: arn:aws:kms:us-east-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab with an explicit deny in an identity-based policy"
    );
    let opts = Options {
        queue: Some(QUEUE.into()),
        ..Default::default()
    };
    let x = run(&text, opts.clone(), example("user-kms-explicit-deny"));
    assert_eq!(
        x.comparison.result,
        Agreement::Agrees,
        "{:#?}",
        x.comparison
    );
    let caller = x.verdict.as_ref().unwrap().caller.clone().unwrap();
    assert_eq!(
        (caller.kind.as_str(), caller.principal.as_str()),
        ("FederatedUser", fed)
    );
    // Without the federating user, the tool says what it needs instead of guessing.
    let mut snap = example("user-kms-explicit-deny");
    snap.user = None;
    let x = run(&text, opts, snap);
    assert_eq!(x.comparison.result, Agreement::Undecided);
    assert!(
        x.comparison.message.contains("GetFederationToken"),
        "{}",
        x.comparison.message
    );
}

/// The diagnosis words its findings as AWS does: every finding message in IAM's form, from every
/// example, reads back with the same action and the layer of its code.
#[test]
fn finding_messages_read_back_as_aws_would_say_them() {
    use sqs_access_operator::explain::ClaimedLayer as C;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/snapshots");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let snap = Snapshot::from_yaml_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        for f in sqs_access_operator::diagnosis::diagnose(&snap).reasons {
            if !f.message.starts_with("User: ") {
                continue;
            }
            let got = parse(&f.message).unwrap();
            let name = format!("{}: {:?}", p.display(), f.code);
            assert_eq!(got.action, f.action, "{name}");
            let claim = got.claim.unwrap_or_else(|| panic!("{name}: no claim"));
            let want = match f.layer {
                DiagLayer::IdentityPolicy => C::IdentityPolicy,
                DiagLayer::QueuePolicy | DiagLayer::KmsKeyPolicy => C::ResourcePolicy,
                DiagLayer::PermissionsBoundary => C::PermissionsBoundary,
                DiagLayer::SessionPolicy => C::SessionPolicy,
                DiagLayer::Scp => C::ServiceControlPolicy,
                DiagLayer::Rcp => C::ResourceControlPolicy,
                DiagLayer::VpcEndpointPolicy => C::VpcEndpointPolicy,
                other => panic!("{name}: layer {other:?}"),
            };
            assert_eq!(claim.layer, Some(want), "{name}");
            n += 1;
        }
    }
    assert!(n >= 15, "only {n} messages");
}
