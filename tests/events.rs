//! AWS change events: CloudTrail records (in EventBridge's envelope, as AWS delivers them to an
//! SQS queue) name exactly the documents they make stale; against the AWS emulator, the events
//! queue is drained in bursts, a change drops only what it touched, a burst of changes to one
//! role causes one fetch of it, unrelated events change nothing, and garbage is deleted.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqs_access_operator::aws::{AwsSource, SnapshotInput, SnapshotSource};
use sqs_access_operator::binding::{ClusterFacts, evaluate_binding_with_deps};
use sqs_access_operator::changes::{DocRef, parse_message};
use sqs_access_operator::config::Config;
use sqs_access_operator::controller::Context;
use sqs_access_operator::crd::SqsAccessBinding;
use sqs_access_operator::diagnosis::snapshot::ServiceAccountEvidence;
use sqs_access_operator::diagnosis::{AccessMode, BindingSpec, Outcome, diagnose_with};
use sqs_access_operator::metrics::Metrics;
use support::{moto_url, sdk_config, unique};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/events/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn role(name: &str) -> DocRef {
    DocRef::Role {
        account: "111111111111".into(),
        name: name.into(),
    }
}

fn queue(account: &str, name: &str) -> DocRef {
    DocRef::Queue {
        account: account.into(),
        region: "us-east-1".into(),
        name: name.into(),
    }
}

const KEY: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";

#[test]
fn each_documented_event_names_the_documents_it_makes_stale() {
    let key = || DocRef::Key { key_id: KEY.into() };
    let cases: Vec<(&str, Vec<DocRef>)> = vec![
        ("iam-PutRolePolicy", vec![role("orders-producer")]),
        ("iam-DeleteRolePolicy", vec![role("orders-producer")]),
        ("iam-AttachRolePolicy", vec![role("orders-producer")]),
        (
            "iam-CreatePolicyVersion",
            vec![DocRef::ManagedPolicy {
                arn: "arn:aws:iam::111111111111:policy/orders-send".into(),
            }],
        ),
        ("iam-UpdateAssumeRolePolicy", vec![role("orders-producer")]),
        (
            "iam-PutRolePermissionsBoundary",
            vec![role("orders-producer")],
        ),
        ("iam-TagRole", vec![role("orders-producer")]),
        (
            "iam-RemoveClientIDFromOpenIDConnectProvider",
            vec![DocRef::OidcProviders {
                account: "111111111111".into(),
            }],
        ),
        (
            "sqs-SetQueueAttributes",
            vec![queue("222222222222", "orders")],
        ),
        ("sqs-AddPermission", vec![queue("222222222222", "orders")]),
        ("sqs-TagQueue", vec![queue("222222222222", "orders")]),
        ("sqs-DeleteQueue", vec![queue("222222222222", "orders")]),
        ("sqs-CreateQueue", vec![queue("111111111111", "orders")]),
        (
            "sns-wrapped-SetQueueAttributes",
            vec![queue("222222222222", "orders")],
        ),
        ("kms-PutKeyPolicy", vec![key()]),
        ("kms-CreateGrant", vec![key()]),
        ("kms-RetireGrant", vec![key()]),
        ("kms-ScheduleKeyDeletion", vec![key()]),
        (
            "kms-UpdateAlias",
            vec![DocRef::KeyAlias {
                account: "111111111111".into(),
                region: "us-east-1".into(),
                alias: "alias/orders".into(),
            }],
        ),
        (
            "organizations-AttachPolicy",
            vec![DocRef::Account {
                account: "111111111111".into(),
            }],
        ),
        ("organizations-UpdatePolicy", vec![DocRef::Organization]),
        (
            "eks-CreatePodIdentityAssociation",
            vec![DocRef::Associations {
                cluster: "prod".into(),
                namespace: "orders".into(),
                service_account: "producer".into(),
            }],
        ),
        (
            "eks-UpdatePodIdentityAssociation",
            vec![DocRef::Association {
                cluster: "prod".into(),
                id: "a-0orders0producer1".into(),
            }],
        ),
        (
            "ec2-ModifyVpcEndpoint",
            vec![DocRef::VpcEndpoint {
                id: "vpce-0abc1234def567890".into(),
            }],
        ),
        (
            "ec2-DeleteVpcEndpoints",
            vec![DocRef::VpcEndpoint {
                id: "vpce-0abc1234def567890".into(),
            }],
        ),
    ];
    for (name, want) in cases {
        let c = parse_message(&fixture(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .unwrap_or_else(|| panic!("{name}: no change"));
        assert_eq!(c.stale, want, "{name}");
        assert!(c.time.is_some(), "{name}: eventTime");
    }
    // Read-only and failed calls change nothing.
    for name in ["iam-GetRole", "iam-PutRolePolicy-failed"] {
        assert_eq!(parse_message(&fixture(name)).unwrap(), None, "{name}");
    }
}

#[test]
fn a_binding_depends_on_what_its_verdict_was_built_from() {
    let path = format!(
        "{}/examples/snapshots/healthy.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let snap = sqs_access_operator::diagnosis::Snapshot::from_yaml_str(
        &std::fs::read_to_string(path).unwrap(),
    )
    .unwrap();
    let deps = sqs_access_operator::changes::dependencies(&snap);
    for d in [
        role("orders-producer"),
        queue("222222222222", "orders"),
        DocRef::OidcProviders {
            account: "111111111111".into(),
        },
        DocRef::Account {
            account: "222222222222".into(),
        },
        DocRef::VpcEndpoint {
            id: "vpce-0abc1234def567890".into(),
        },
    ] {
        assert!(deps.contains(&d), "{d:?} missing from {deps:?}");
    }
    assert!(
        deps.iter().any(|d| matches!(d, DocRef::Key { .. })),
        "{deps:?}"
    );
}

// ---- against the emulator ----

const HOME: &str = "123456789012";
const ISSUER: &str = "oidc.eks.us-east-1.amazonaws.com/id/EVENTSTESTCLUSTER";

fn event(source: &str, name: &str, req: Value) -> String {
    let mut v: Value = serde_json::from_str(&fixture("iam-PutRolePolicy")).unwrap();
    v["detail"]["eventSource"] = json!(source);
    v["detail"]["eventName"] = json!(name);
    v["detail"]["requestParameters"] = req;
    v["detail"]["recipientAccountId"] = json!(HOME);
    v["detail"]["eventTime"] = json!(chrono::Utc::now().to_rfc3339());
    v.to_string()
}

struct World {
    iam: aws_sdk_iam::Client,
    sqs: aws_sdk_sqs::Client,
    src: Arc<AwsSource>,
    ctx: Arc<Context>,
    events_url: String,
}

async fn world(moto: &str) -> World {
    let sdk = sdk_config(moto).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let events = unique("sqs-access-events");
    let events_url = sqs
        .create_queue()
        .queue_name(&events)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let mut cfg = Config::default();
    cfg.aws.max_attempts = 1;
    cfg.events.queue_url = Some(format!("arn:aws:sqs:us-east-1:{HOME}:{events}"));
    let src = Arc::new(AwsSource::from_sdk_config(
        sdk.clone(),
        cfg,
        Metrics::default(),
    ));
    // A controller context with a client that is never called: the test drives the index and
    // the change handling directly.
    let (svc, _handle) = tower_test::mock::pair::<
        http::Request<kube::client::Body>,
        http::Response<kube::client::Body>,
    >();
    let client = kube::Client::new(svc, "default");
    let ctx = Arc::new(Context::new(
        client,
        facts(),
        src.clone(),
        src.metrics().clone(),
        Duration::from_secs(3600),
    ));
    World {
        iam: aws_sdk_iam::Client::new(&sdk),
        sqs,
        src,
        ctx,
        events_url,
    }
}

/// Service accounts named after the role they carry: `sa-ROLE` names role ROLE.
struct RoleAccounts;

impl sqs_access_operator::binding::ServiceAccountLookup for RoleAccounts {
    fn annotations<'a>(
        &'a self,
        _namespace: &'a str,
        name: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Option<BTreeMap<String, String>>, String>> {
        Box::pin(async move {
            let mut a = BTreeMap::new();
            if let Some(role) = name.strip_prefix("sa-") {
                a.insert(
                    "eks.amazonaws.com/role-arn".to_string(),
                    format!("arn:aws:iam::{HOME}:role/{role}"),
                );
            }
            Ok(Some(a))
        })
    }
}

fn facts() -> ClusterFacts {
    ClusterFacts {
        service_accounts: Arc::new(RoleAccounts),
        oidc_issuer: Some(format!("https://{ISSUER}")),
    }
}

/// A role allowed to send to every queue, and a queue; the binding's service account names it.
async fn seed(w: &World) -> (String, String) {
    // Registering twice fails; either way the provider exists afterwards.
    let _ = w
        .iam
        .create_open_id_connect_provider()
        .url(format!("https://{ISSUER}"))
        .client_id_list("sts.amazonaws.com")
        .thumbprint_list("9e99a48a9960b14926bb7f3b02e22da2b0ab7280")
        .send()
        .await;
    let name = unique("ev-role").to_ascii_lowercase();
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Federated": format!("arn:aws:iam::{HOME}:oidc-provider/{ISSUER}")},
        "Action": "sts:AssumeRoleWithWebIdentity"}]});
    w.iam
        .create_role()
        .role_name(&name)
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
        .unwrap();
    put_send(w, &name, "Allow").await;
    let q = unique("ev-queue");
    w.sqs.create_queue().queue_name(&q).send().await.unwrap();
    (name, format!("arn:aws:sqs:us-east-1:{HOME}:{q}"))
}

async fn put_send(w: &World, role: &str, effect: &str) {
    w.iam
        .put_role_policy()
        .role_name(role)
        .policy_name("send")
        .policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": effect,
                "Action": "sqs:SendMessage", "Resource": "*"}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
}

fn binding(role: &str, queue: &str, n: usize) -> (SqsAccessBinding, SnapshotInput) {
    let b: SqsAccessBinding = serde_json::from_value(json!({
        "apiVersion": "sqsaccess.io/v1alpha1", "kind": "SqsAccessBinding",
        "metadata": {"name": format!("b{n}"), "namespace": "orders"},
        "spec": {"serviceAccountName": format!("sa-{role}"), "queue": queue, "access": ["Send"]}
    }))
    .unwrap();
    let mut ann = BTreeMap::new();
    ann.insert(
        "eks.amazonaws.com/role-arn".to_string(),
        format!("arn:aws:iam::{HOME}:role/{role}"),
    );
    let input = SnapshotInput {
        namespace: "orders".into(),
        binding_name: Some(format!("b{n}")),
        spec: BindingSpec {
            service_account_name: format!("sa-{role}"),
            queue: queue.into(),
            access: vec![AccessMode::Send],
            actions: vec![],
            vpc_endpoint_id: None,
        },
        service_account: Some(ServiceAccountEvidence {
            found: true,
            annotations: ann,
        }),
        oidc_issuer: Some(format!("https://{ISSUER}")),
        cluster_name: None,
        pods: None,
    };
    (b, input)
}

async fn send_events(w: &World, bodies: &[String]) {
    for chunk in bodies.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, b)| {
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(b)
                    .build()
                    .unwrap()
            })
            .collect();
        w.sqs
            .send_message_batch()
            .queue_url(&w.events_url)
            .set_entries(Some(entries))
            .send()
            .await
            .unwrap();
    }
}

fn calls(src: &AwsSource, op: &'static str) -> u64 {
    src.metrics()
        .aws_calls
        .get_or_create(&sqs_access_operator::metrics::CallLabels {
            service: if op.starts_with("Get") && op.contains("Queue") {
                "sqs"
            } else {
                "iam"
            },
            operation: op,
            outcome: "ok",
        })
        .get()
}

/// Checks the bindings the way the controller does, recording what they depend on.
async fn check_all(w: &World, bindings: &[(SqsAccessBinding, SnapshotInput)]) -> Vec<Outcome> {
    let mut out = Vec::new();
    for (b, _) in bindings {
        let (v, deps) = evaluate_binding_with_deps(b, &facts(), w.src.as_ref(), None).await;
        w.ctx
            .index()
            .set(&kube::runtime::reflector::ObjectRef::from_obj(b), deps);
        out.push(v.verdict);
    }
    out
}

#[tokio::test]
async fn live_a_change_event_drops_only_what_it_touched_and_requeues_its_bindings() {
    let Some(moto) = moto_url() else { return };
    let w = world(&moto).await;
    let (role_a, queue_a) = seed(&w).await;
    let (role_b, queue_b) = seed(&w).await;
    let bindings = vec![binding(&role_a, &queue_a, 0), binding(&role_b, &queue_b, 1)];
    assert_eq!(check_all(&w, &bindings).await, vec![Outcome::Allowed; 2]);
    let q = w.src.events_queue().await.unwrap().expect("configured");

    // The policy of role A changes to a deny; its event arrives.
    put_send(&w, &role_a, "Deny").await;
    let started = Instant::now();
    send_events(
        &w,
        &[event(
            "iam.amazonaws.com",
            "PutRolePolicy",
            json!({"roleName": role_a, "policyName": "send"}),
        )],
    )
    .await;
    let get_role = calls(&w.src, "GetRole");
    let get_queue = calls(&w.src, "GetQueueAttributes");
    let batch = q.next_batch().await.unwrap();
    assert_eq!(batch.changes.len(), 1);
    assert_eq!(
        w.ctx.apply_changes(&batch.changes),
        1,
        "only the binding on role A"
    );
    q.delete(&batch.receipts).await.unwrap();
    let after = check_all(&w, &bindings).await;
    let elapsed = started.elapsed();
    assert_eq!(after, vec![Outcome::Denied, Outcome::Allowed]);
    // Role A was read again; role B and both queues came from the cache.
    assert_eq!(calls(&w.src, "GetRole"), get_role + 1);
    assert_eq!(calls(&w.src, "GetQueueAttributes"), get_queue);
    eprintln!("event to new verdict (emulator, no controller): {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");

    // An event for a role no binding uses changes nothing.
    send_events(
        &w,
        &[event(
            "iam.amazonaws.com",
            "PutRolePolicy",
            json!({"roleName": "someone-else", "policyName": "x"}),
        )],
    )
    .await;
    let get_role = calls(&w.src, "GetRole");
    let batch = q.next_batch().await.unwrap();
    assert_eq!(w.ctx.apply_changes(&batch.changes), 0);
    q.delete(&batch.receipts).await.unwrap();
    check_all(&w, &bindings).await;
    assert_eq!(calls(&w.src, "GetRole"), get_role);
}

#[tokio::test]
async fn live_a_burst_of_a_thousand_events_on_one_role_causes_one_fetch() {
    let Some(moto) = moto_url() else { return };
    let w = world(&moto).await;
    let (role, queue) = seed(&w).await;
    let bindings: Vec<_> = (0..20).map(|n| binding(&role, &queue, n)).collect();
    check_all(&w, &bindings).await;
    let q = w.src.events_queue().await.unwrap().expect("configured");
    let bodies: Vec<String> = (0..1000)
        .map(|i| {
            event(
                "iam.amazonaws.com",
                if i % 2 == 0 {
                    "PutRolePolicy"
                } else {
                    "TagRole"
                },
                json!({"roleName": role, "policyName": "send"}),
            )
        })
        .collect();
    let t = Instant::now();
    send_events(&w, &bodies).await;
    eprintln!("sent 1000 events in {:?}", t.elapsed());
    let t = Instant::now();
    let get_role = calls(&w.src, "GetRole");
    let mut seen = 0;
    while seen < 1000 {
        let tb = Instant::now();
        let batch = q.next_batch().await.unwrap();
        eprintln!("batch of {} in {:?}", batch.receipts.len(), tb.elapsed());
        seen += batch.receipts.len();
        let requeued = w.ctx.apply_changes(&batch.changes);
        assert_eq!(requeued, 20, "every binding on the role, once per batch");
        q.delete(&batch.receipts).await.unwrap();
        // The controller re-checks the requeued bindings once per batch.
        let f = facts();
        futures::future::join_all(
            bindings
                .iter()
                .map(|(b, _)| evaluate_binding_with_deps(b, &f, w.src.as_ref(), None)),
        )
        .await;
    }
    eprintln!("handled 1000 events in {:?}", t.elapsed());
    let fetched = calls(&w.src, "GetRole") - get_role;
    eprintln!("1000 events on one role: {fetched} GetRole");
    assert_eq!(fetched, 1, "one fetch for the whole burst");
}

#[tokio::test]
async fn live_garbage_is_counted_and_deleted_never_redelivered() {
    let Some(moto) = moto_url() else { return };
    let w = world(&moto).await;
    let q = w.src.events_queue().await.unwrap().expect("configured");
    send_events(
        &w,
        &[
            "not json".into(),
            "{}".into(),
            r#"{"detail": {"eventSource": 1}}"#.into(),
            event("iam.amazonaws.com", "GetRole", json!({"roleName": "x"})),
        ],
    )
    .await;
    let batch = q.next_batch().await.unwrap();
    assert_eq!(batch.receipts.len(), 4);
    assert!(batch.changes.is_empty());
    q.delete(&batch.receipts).await.unwrap();
    let m = w.src.metrics();
    let count = |result| {
        m.events
            .get_or_create(&sqs_access_operator::metrics::ResultLabels { result })
            .get()
    };
    assert_eq!((count("unparseable"), count("ignored")), (3, 1));
    // Nothing comes back: the queue is empty (a short poll finds nothing).
    let left = w
        .sqs
        .receive_message()
        .queue_url(&w.events_url)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    assert!(left.messages.unwrap_or_default().is_empty());
}

#[tokio::test]
async fn live_verdicts_follow_the_emulator_after_each_event() {
    let Some(moto) = moto_url() else { return };
    let w = world(&moto).await;
    let (role, queue) = seed(&w).await;
    let (_, input) = binding(&role, &queue, 0);
    let verdict = |w: &World| {
        let src = w.src.clone();
        let input = input.clone();
        async move {
            let snap = src.snapshot(&input).await;
            diagnose_with(&snap, &src.spec_options()).verdict
        }
    };
    assert_eq!(verdict(&w).await, Outcome::Allowed);
    // Without an event the cached answer stays (the TTL is a minute).
    put_send(&w, &role, "Deny").await;
    assert_eq!(verdict(&w).await, Outcome::Allowed);
    w.src.invalidate(&DocRef::Role {
        account: HOME.into(),
        name: role.clone(),
    });
    assert_eq!(verdict(&w).await, Outcome::Denied);
}

#[test]
fn the_eventbridge_rule_matches_exactly_the_watched_calls() {
    let rule: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/events/eventbridge-rule.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut sources: Vec<String> = Vec::new();
    let mut names: std::collections::BTreeSet<String> = Default::default();
    for (src, ns) in sqs_access_operator::changes::watched() {
        sources.push(src.to_string());
        names.extend(ns.iter().map(|n| n.to_string()));
        // Every watched call, with the parameters AWS records, names something stale.
        for n in ns {
            let req = json!({
                "roleName": "r", "policyArn": "arn:aws:iam::111111111111:policy/p",
                "openIDConnectProviderArn": "arn:aws:iam::111111111111:oidc-provider/x",
                "queueUrl": "https://sqs.us-east-1.amazonaws.com/111111111111/q", "queueName": "q",
                "keyId": KEY, "aliasName": "alias/a", "targetId": "111111111111",
                "clusterName": "prod", "namespace": "orders", "serviceAccount": "producer",
                "associationId": "a-1",
                "ModifyVpcEndpointRequest": {"VpcEndpointId": "vpce-0abc"}
            });
            let c = parse_message(&event(src, n, req)).unwrap();
            assert!(c.is_some_and(|c| !c.stale.is_empty()), "{src} {n}");
        }
    }
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(strs(&rule["detail"]["eventSource"]), sources);
    assert_eq!(
        strs(&rule["detail"]["eventName"]),
        names.into_iter().collect::<Vec<_>>()
    );
    assert_eq!(
        strs(&rule["source"]),
        sources
            .iter()
            .map(|s| format!("aws.{}", s.split('.').next().unwrap()))
            .collect::<Vec<_>>()
    );
}
