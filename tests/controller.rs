//! Every reconciler branch against a mock API server (kube-rs's tower-test pattern): each
//! request's method, path and body is asserted and answered as the API server would, with a
//! fake snapshot source standing in for AWS.

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use sqs_access_operator::aws::SnapshotInput;
use sqs_access_operator::binding::{ApiLookup, ClusterFacts};
use sqs_access_operator::controller::status::{desired_status, meaningfully_different};
use sqs_access_operator::controller::{Context, backoff, error_policy, reconcile};
use sqs_access_operator::crd::{SqsAccessBinding, SqsAccessBindingStatus};
use sqs_access_operator::diagnosis::diagnose;
use sqs_access_operator::diagnosis::snapshot::ServiceAccountEvidence;
use sqs_access_operator::metrics::Metrics;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// The healthy queue of the fake source (`support::fakes::ExampleSource`).
const HEALTHY_QUEUE: &str = "arn:aws:sqs:us-east-1:222222222222:orders";

fn binding(status: Option<SqsAccessBindingStatus>, sa: &str) -> SqsAccessBinding {
    binding_on(status, sa, HEALTHY_QUEUE)
}

fn binding_on(status: Option<SqsAccessBindingStatus>, sa: &str, queue: &str) -> SqsAccessBinding {
    let mut b: SqsAccessBinding = serde_json::from_value(json!({
        "apiVersion": "sqsaccess.io/v1alpha1",
        "kind": "SqsAccessBinding",
        "metadata": {"name": "producer-orders", "namespace": "orders", "uid": "1234", "generation": 3, "resourceVersion": "10"},
        "spec": {"serviceAccountName": sa, "queue": queue, "access": ["Send"]}
    }))
    .unwrap();
    b.status = status;
    b
}

fn service_account(annotated: bool) -> Value {
    let mut annotations = json!({});
    if annotated {
        annotations =
            json!({"eks.amazonaws.com/role-arn": "arn:aws:iam::111111111111:role/orders-producer"});
    }
    json!({"apiVersion": "v1", "kind": "ServiceAccount",
           "metadata": {"name": "producer", "namespace": "orders", "annotations": annotations}})
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": "serviceaccounts \"producer\" not found", "reason": "NotFound", "code": 404})
}

fn context(client: Client) -> Arc<Context> {
    let facts = ClusterFacts {
        service_accounts: Arc::new(ApiLookup(client.clone())),
        oidc_issuer: Some(
            "https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE".into(),
        ),
    };
    Arc::new(
        Context::new(
            client,
            facts,
            Arc::new(support::fakes::ExampleSource),
            Metrics::default(),
            Duration::from_secs(300),
        )
        .without_jitter(),
    )
}

/// The first sight of a binding whose status is current (a restart, a new leader): no request
/// at all (it is re-checked later, at a random point within the interval).
async fn first_sight(ctx: &Arc<Context>, b: SqsAccessBinding, handle: &mut Handle) {
    let action = reconcile(Arc::new(b), ctx.clone()).await.unwrap();
    assert_ne!(action, Action::await_change());
    assert!(
        tokio::time::timeout(Duration::from_millis(50), handle.next_request())
            .await
            .is_err(),
        "no request on first sight"
    );
}

fn mock() -> (Client, Handle) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(svc, "default"), handle)
}

async fn body_json(req: Request<Body>) -> Value {
    let bytes = req.into_body().collect_bytes().await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn respond(send: tower_test::mock::SendResponse<Response<Body>>, status: u16, body: Value) {
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap(),
    );
}

/// Answers the service account read.
async fn expect_sa_get(handle: &mut Handle, status: u16, body: Value) {
    let (req, send) = handle
        .next_request()
        .await
        .expect("the service account is read");
    assert_eq!(req.method(), http::Method::GET);
    assert_eq!(
        req.uri().path(),
        "/api/v1/namespaces/orders/serviceaccounts/producer"
    );
    respond(send, status, body);
}

/// Answers the status patch, returning the status that was written.
async fn expect_status_patch(handle: &mut Handle, code: u16) -> Value {
    let (req, send) = handle.next_request().await.expect("the status is written");
    assert_eq!(req.method(), http::Method::PATCH);
    assert_eq!(
        req.uri().path(),
        "/apis/sqsaccess.io/v1alpha1/namespaces/orders/sqsaccessbindings/producer-orders/status"
    );
    let q = req.uri().query().unwrap_or_default().to_string();
    assert!(
        q.contains("fieldManager=sqs-access-operator") && q.contains("force=true"),
        "{q}"
    );
    assert_eq!(
        req.headers()["content-type"],
        "application/apply-patch+yaml"
    );
    let body = body_json(req).await;
    assert_eq!(body["kind"], "SqsAccessBinding");
    let mut echo = serde_json::to_value(binding(None, "producer")).unwrap();
    echo["status"] = body["status"].clone();
    respond(
        send,
        code,
        if code == 200 {
            echo
        } else {
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "etcd timeout", "reason": "InternalError", "code": code})
        },
    );
    body["status"].clone()
}

async fn expect_event(handle: &mut Handle, type_: &str, reason: &str) {
    let (req, send) = handle.next_request().await.expect("an event is published");
    assert_eq!(req.method(), http::Method::POST);
    assert_eq!(
        req.uri().path(),
        "/apis/events.k8s.io/v1/namespaces/orders/events"
    );
    let body = body_json(req).await;
    assert_eq!(body["type"], type_);
    assert_eq!(body["reason"], reason);
    assert_eq!(body["regarding"]["name"], "producer-orders");
    respond(send, 201, body);
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap()
}

#[tokio::test]
async fn a_healthy_binding_becomes_ready_with_an_event() {
    let (client, mut handle) = mock();
    let ctx = context(client);
    let server = tokio::spawn(async move {
        expect_sa_get(&mut handle, 200, service_account(true)).await;
        let status = expect_status_patch(&mut handle, 200).await;
        assert_eq!(condition(&status, "Ready")["status"], "True");
        assert_eq!(condition(&status, "Denied")["status"], "False");
        assert_eq!(condition(&status, "Ready")["observedGeneration"], 3);
        assert_eq!(status["observedGeneration"], 3);
        assert_eq!(status["verdict"], "Allowed");
        assert_eq!(
            status["role"]["arn"],
            "arn:aws:iam::111111111111:role/orders-producer"
        );
        assert!(status["lastChecked"].is_string());
        expect_event(&mut handle, "Normal", "Ready").await;
        handle
    });
    let action = reconcile(Arc::new(binding(None, "producer")), ctx)
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    let mut handle = server.await.unwrap();
    assert!(handle.next_request().await.is_none(), "no further requests");
}

#[tokio::test]
async fn a_missing_service_account_is_denied_with_a_warning_event() {
    let (client, mut handle) = mock();
    let ctx = context(client);
    let server = tokio::spawn(async move {
        expect_sa_get(&mut handle, 404, not_found()).await;
        let status = expect_status_patch(&mut handle, 200).await;
        assert_eq!(condition(&status, "Ready")["status"], "False");
        let denied = condition(&status, "Denied");
        assert_eq!(denied["status"], "True");
        assert_eq!(denied["reason"], "ServiceAccountNotFound");
        assert!(
            denied["message"]
                .as_str()
                .unwrap()
                .contains("Fix: create service account producer")
        );
        assert_eq!(status["reason"], "ServiceAccountNotFound");
        expect_event(&mut handle, "Warning", "ServiceAccountNotFound").await;
    });
    reconcile(Arc::new(binding(None, "producer")), ctx)
        .await
        .unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn an_unannotated_account_is_denied_and_names_the_fix() {
    let (client, mut handle) = mock();
    let ctx = context(client);
    let server = tokio::spawn(async move {
        expect_sa_get(&mut handle, 200, service_account(false)).await;
        let status = expect_status_patch(&mut handle, 200).await;
        assert_eq!(status["reason"], "ServiceAccountHasNoRole");
        assert!(
            status["fixes"][0]["instruction"]
                .as_str()
                .unwrap()
                .contains("kubectl annotate")
        );
        expect_event(&mut handle, "Warning", "ServiceAccountHasNoRole").await;
    });
    reconcile(Arc::new(binding(None, "producer")), ctx)
        .await
        .unwrap();
    server.await.unwrap();
}

/// The status a first reconcile of the healthy binding writes, computed with the same pure
/// functions the reconciler uses.
async fn first_status(ctx: &Context) -> SqsAccessBindingStatus {
    let now =
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    let mut annotations = std::collections::BTreeMap::new();
    annotations.insert(
        "eks.amazonaws.com/role-arn".to_string(),
        "arn:aws:iam::111111111111:role/orders-producer".to_string(),
    );
    let b = binding(None, "producer");
    let input = SnapshotInput {
        namespace: "orders".into(),
        binding_name: Some("producer-orders".into()),
        spec: b.spec.binding.clone(),
        service_account: Some(ServiceAccountEvidence {
            found: true,
            annotations,
        }),
        oidc_issuer: ctx.facts.oidc_issuer.clone(),
        cluster_name: None,
        pods: None,
    };
    let snap = ctx.source.snapshot(&input).await;
    let v = diagnose(&snap);
    desired_status(&b, &v, &now, &Default::default())
}

#[tokio::test]
async fn an_unchanged_fresh_status_is_not_written_again() {
    let (client, mut handle) = mock();
    let ctx = context(client);
    let status = first_status(&ctx).await;
    assert_eq!(status.verdict.as_deref(), Some("Allowed"));
    first_sight(&ctx, binding(Some(status.clone()), "producer"), &mut handle).await;
    let server = tokio::spawn(async move {
        expect_sa_get(&mut handle, 200, service_account(true)).await;
        handle
    });
    reconcile(Arc::new(binding(Some(status), "producer")), ctx)
        .await
        .unwrap();
    let mut handle = server.await.unwrap();
    assert!(
        handle.next_request().await.is_none(),
        "no status write, no event"
    );
}

/// The controller's cache keeps a status as its summary: a later check with the same result is
/// still seen as unchanged, any other difference as a change.
#[tokio::test]
async fn a_status_summary_knows_what_changed_without_keeping_the_status() {
    let (client, _handle) = mock();
    let ctx = context(client);
    let full = first_status(&ctx).await;
    let summary = sqs_access_operator::controller::status::summary(full.clone());
    let size = |s: &SqsAccessBindingStatus| serde_json::to_string(s).unwrap().len();
    assert!(
        size(&summary) * 3 < size(&full),
        "{} of {}",
        size(&summary),
        size(&full)
    );
    assert_eq!(summary.verdict, full.verdict);
    assert_eq!(summary.conditions.len(), full.conditions.len());
    let mut later = full.clone();
    later.last_checked = None;
    assert!(!meaningfully_different(&summary, &later));
    let mut changed = full.clone();
    changed.actions.pop();
    assert!(meaningfully_different(&summary, &changed));
    let mut changed = full.clone();
    changed.conditions[0].message.push('!');
    assert!(meaningfully_different(&summary, &changed));
    // A summary of a summary is itself.
    assert_eq!(
        sqs_access_operator::controller::status::summary(summary.clone()),
        summary
    );
}

/// `lastChecked` is refreshed only every 20 re-checks (5-minute interval: 100 minutes), and then
/// only it changes.
#[tokio::test]
async fn last_checked_is_refreshed_once_in_twenty_rechecks_and_nothing_else_moves() {
    let ago = |minutes: i64| {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now()
                - k8s_openapi::jiff::SignedDuration::from_mins(minutes),
        )
    };
    for (minutes, written) in [(90, false), (101, true)] {
        let (client, mut handle) = mock();
        let ctx = context(client);
        assert_eq!(ctx.last_checked_refresh(), Duration::from_secs(100 * 60));
        let mut old = first_status(&ctx).await;
        old.last_checked = Some(ago(minutes));
        first_sight(&ctx, binding(Some(old.clone()), "producer"), &mut handle).await;
        let server = tokio::spawn(async move {
            expect_sa_get(&mut handle, 200, service_account(true)).await;
            let status = if written {
                Some(expect_status_patch(&mut handle, 200).await)
            } else {
                None
            };
            (status, handle)
        });
        reconcile(Arc::new(binding(Some(old.clone()), "producer")), ctx)
            .await
            .unwrap();
        let (status, mut handle) = server.await.unwrap();
        if let Ok(Some((req, _))) =
            tokio::time::timeout(Duration::from_millis(50), handle.next_request()).await
        {
            panic!(
                "{minutes} min: nothing more (no Event), got {} {}",
                req.method(),
                req.uri()
            );
        }
        if let Some(status) = status {
            let old_json = serde_json::to_value(&old).unwrap();
            assert_ne!(status["lastChecked"], old_json["lastChecked"]);
            assert_eq!(
                status["conditions"], old_json["conditions"],
                "{minutes} min"
            );
            assert_eq!(status["verdict"], old_json["verdict"]);
        }
    }
}

#[tokio::test]
async fn a_changed_verdict_keeps_the_unchanged_conditions_transition_time() {
    // The binding was Ready an hour ago; now the service account lost its annotation.
    let (client, mut handle) = mock();
    let ctx = context(client);
    let mut old = first_status(&ctx).await;
    let hour_ago =
        k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_hours(1);
    for c in &mut old.conditions {
        c.last_transition_time = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(hour_ago);
    }
    first_sight(&ctx, binding(Some(old.clone()), "producer"), &mut handle).await;
    let server = tokio::spawn(async move {
        expect_sa_get(&mut handle, 200, service_account(false)).await;
        let status = expect_status_patch(&mut handle, 200).await;
        expect_event(&mut handle, "Warning", "ServiceAccountHasNoRole").await;
        status
    });
    reconcile(Arc::new(binding(Some(old.clone()), "producer")), ctx)
        .await
        .unwrap();
    let status = server.await.unwrap();
    let ready = condition(&status, "Ready");
    assert_eq!(ready["status"], "False");
    assert_ne!(
        ready["lastTransitionTime"],
        serde_json::to_value(&old.conditions[0].last_transition_time).unwrap()
    );
}

#[tokio::test]
async fn aws_trouble_is_unknown_never_denied_and_rechecks_sooner() {
    let (client, mut handle) = mock();
    let ctx = context(client);
    let server = tokio::spawn(async move {
        expect_sa_get(&mut handle, 200, service_account(true)).await;
        let status = expect_status_patch(&mut handle, 200).await;
        assert_eq!(condition(&status, "Ready")["status"], "Unknown");
        assert_eq!(condition(&status, "Denied")["status"], "False");
        assert_eq!(status["reason"], "AwsUnavailable");
        expect_event(&mut handle, "Normal", "AwsUnavailable").await;
    });
    // The fake source answers this queue as throttled.
    let throttled = "arn:aws:sqs:us-east-1:111111111111:throttled";
    let action = reconcile(Arc::new(binding_on(None, "producer", throttled)), ctx)
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
    server.await.unwrap();
}

#[tokio::test]
async fn another_namespaces_account_is_refused_without_reading_it() {
    let (client, mut handle) = mock();
    let ctx = context(client);
    let server = tokio::spawn(async move {
        // No ServiceAccount GET: straight to the status.
        let status = expect_status_patch(&mut handle, 200).await;
        assert_eq!(status["reason"], "InvalidSpec");
        assert!(
            condition(&status, "Denied")["message"]
                .as_str()
                .unwrap()
                .contains("spec.serviceAccountName")
        );
        expect_event(&mut handle, "Warning", "InvalidSpec").await;
    });
    reconcile(Arc::new(binding(None, "payments.producer/x")), ctx)
        .await
        .unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn a_failed_status_write_backs_off_per_binding() {
    let (client, mut handle) = mock();
    let ctx = context(client);
    let server = tokio::spawn(async move {
        expect_sa_get(&mut handle, 200, service_account(true)).await;
        expect_status_patch(&mut handle, 500).await;
    });
    let b = Arc::new(binding(None, "producer"));
    let err = reconcile(b.clone(), ctx.clone()).await.unwrap_err();
    assert!(err.to_string().contains("orders/producer-orders"), "{err}");
    server.await.unwrap();
    assert_eq!(
        error_policy(b.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(1))
    );
    assert_eq!(
        error_policy(b.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(2))
    );
    assert_eq!(
        error_policy(b.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(4))
    );
    assert_eq!(backoff(20), Duration::from_secs(300));
}

/// A service account cache (like the operator's watch-fed store): answers without a request.
struct CachedAccounts;

impl sqs_access_operator::binding::ServiceAccountLookup for CachedAccounts {
    fn annotations<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> futures::future::BoxFuture<
        'a,
        Result<Option<std::collections::BTreeMap<String, String>>, String>,
    > {
        Box::pin(async move { Ok(self.cached_annotations(namespace, name).flatten()) })
    }

    fn cached_annotations(
        &self,
        _namespace: &str,
        name: &str,
    ) -> Option<Option<std::collections::BTreeMap<String, String>>> {
        Some((name == "producer").then(|| {
            [(
                "eks.amazonaws.com/role-arn".to_string(),
                "arn:aws:iam::111111111111:role/orders-producer".to_string(),
            )]
            .into()
        }))
    }
}

#[tokio::test]
async fn a_binding_seen_first_over_a_current_status_is_reached_by_change_events_at_once() {
    use sqs_access_operator::changes::{Change, DocRef};
    let (client, mut handle) = mock();
    let status = first_status(&context(client.clone())).await;
    let ctx = Arc::new(
        Context::new(
            client,
            ClusterFacts {
                service_accounts: Arc::new(CachedAccounts),
                oidc_issuer: Some(
                    "https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
                        .into(),
                ),
            },
            Arc::new(support::fakes::ExampleSource),
            Metrics::default(),
            Duration::from_secs(300),
        )
        .without_jitter(),
    );
    // A restart: no check yet, no request, but what it depends on is known from the spec and
    // the cached service account.
    first_sight(&ctx, binding(Some(status), "producer"), &mut handle).await;
    let change = |stale: DocRef| Change {
        source: "iam.amazonaws.com".into(),
        name: "PutRolePolicy".into(),
        time: None,
        stale: vec![stale],
    };
    let role = DocRef::Role {
        account: "111111111111".into(),
        name: "orders-producer".into(),
    };
    let queue = DocRef::Queue {
        account: "222222222222".into(),
        region: "us-east-1".into(),
        name: "orders".into(),
    };
    let other = DocRef::Role {
        account: "111111111111".into(),
        name: "someone-else".into(),
    };
    assert_eq!(ctx.apply_changes(&[change(role)]), 1, "the role's change");
    assert_eq!(ctx.apply_changes(&[change(queue)]), 1, "the queue's change");
    assert_eq!(
        ctx.apply_changes(&[change(other)]),
        0,
        "another role's change"
    );
    assert_eq!(
        ctx.apply_changes(&[change(DocRef::OidcProviders {
            account: "111111111111".into()
        })]),
        1,
        "the role account's OIDC providers"
    );
}
