//! Leader election against a mock API server (the Lease is created, renewed, respected while
//! another replica holds it, and taken over when it expires), OIDC issuer discovery, and the
//! admin endpoints.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::Client;
use serde_json::{Value, json};
use sqs_access_operator::admin::{self, AdminState};
use sqs_access_operator::controller::leader::LeaderElection;
use sqs_access_operator::metrics::Metrics;
use tower::ServiceExt;

type Handle = tower_test::mock::Handle<Request<kube::client::Body>, Response<kube::client::Body>>;

fn mock() -> (Client, Handle) {
    let (svc, handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, Response<kube::client::Body>>();
    (Client::new(svc, "default"), handle)
}

fn respond(
    send: tower_test::mock::SendResponse<Response<kube::client::Body>>,
    status: u16,
    body: Value,
) {
    send.send_response(
        Response::builder()
            .status(status)
            .body(kube::client::Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap(),
    );
}

const LEASE_PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/sqs-access-operator";

fn lease(holder: &str, renewed: &str) -> Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
           "metadata": {"name": "sqs-access-operator", "namespace": "ops", "resourceVersion": "7"},
           "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renewed, "leaseTransitions": 1}})
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}

#[tokio::test]
async fn the_first_replica_creates_the_lease() {
    let (client, mut handle) = mock();
    let server = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.unwrap();
        assert_eq!(
            (req.method().as_str(), req.uri().path()),
            ("GET", LEASE_PATH)
        );
        respond(send, 404, not_found());
        let (req, send) = handle.next_request().await.unwrap();
        assert_eq!(req.method(), http::Method::POST);
        assert_eq!(
            req.uri().path(),
            "/apis/coordination.k8s.io/v1/namespaces/ops/leases"
        );
        let body: Value =
            serde_json::from_slice(&req.into_body().collect_bytes().await.unwrap()).unwrap();
        assert_eq!(body["spec"]["holderIdentity"], "pod-a");
        respond(send, 201, body);
    });
    let le = LeaderElection::new(client, "ops", "sqs-access-operator", "pod-a");
    assert!(le.try_acquire().await.unwrap());
    server.await.unwrap();
}

#[tokio::test]
async fn a_fresh_lease_of_another_replica_is_respected() {
    let (client, mut handle) = mock();
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let server = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.unwrap();
        assert_eq!(req.uri().path(), LEASE_PATH);
        respond(send, 200, lease("pod-b", &now));
        handle
    });
    let le = LeaderElection::new(client, "ops", "sqs-access-operator", "pod-a");
    assert!(!le.try_acquire().await.unwrap());
    drop(le);
    let mut handle = server.await.unwrap();
    assert!(
        handle.next_request().await.is_none(),
        "no write while another replica leads"
    );
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_with_compare_and_swap() {
    let (client, mut handle) = mock();
    let server = tokio::spawn(async move {
        let (_, send) = handle.next_request().await.unwrap();
        respond(send, 200, lease("pod-b", "2020-01-01T00:00:00Z"));
        let (req, send) = handle.next_request().await.unwrap();
        assert_eq!(
            (req.method().as_str(), req.uri().path()),
            ("PUT", LEASE_PATH)
        );
        let body: Value =
            serde_json::from_slice(&req.into_body().collect_bytes().await.unwrap()).unwrap();
        assert_eq!(
            body["metadata"]["resourceVersion"], "7",
            "the write is conditional"
        );
        assert_eq!(body["spec"]["holderIdentity"], "pod-a");
        assert_eq!(body["spec"]["leaseTransitions"], 2);
        respond(send, 200, body);
    });
    let le = LeaderElection::new(client, "ops", "sqs-access-operator", "pod-a");
    assert!(le.try_acquire().await.unwrap());
    server.await.unwrap();
}

#[tokio::test]
async fn losing_the_race_for_the_lease_is_not_an_error() {
    let (client, mut handle) = mock();
    let server = tokio::spawn(async move {
        let (_, send) = handle.next_request().await.unwrap();
        respond(send, 200, lease("pod-b", "2020-01-01T00:00:00Z"));
        let (_, send) = handle.next_request().await.unwrap();
        respond(
            send,
            409,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409, "message": "the object has been modified"}),
        );
    });
    let le = LeaderElection::new(client, "ops", "sqs-access-operator", "pod-a");
    assert!(!le.try_acquire().await.unwrap());
    server.await.unwrap();
}

#[tokio::test]
async fn the_issuer_is_discovered_from_the_api_server() {
    let (client, mut handle) = mock();
    let server = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.unwrap();
        assert_eq!(req.uri().path(), "/.well-known/openid-configuration");
        respond(
            send,
            200,
            json!({"issuer": "https://oidc.eks.us-east-1.amazonaws.com/id/ABC", "jwks_uri": "https://x/keys"}),
        );
    });
    let issuer = sqs_access_operator::cli::run::discover_issuer(&client)
        .await
        .unwrap();
    assert_eq!(issuer, "https://oidc.eks.us-east-1.amazonaws.com/id/ABC");
    server.await.unwrap();
}

#[tokio::test]
async fn admin_endpoints_report_health_readiness_and_metrics() {
    let metrics = Metrics::default();
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    metrics.call("sqs", "GetQueueAttributes", "ok");
    let st = Arc::new(AdminState {
        ready: false.into(),
        registry,
    });
    let get = |path: &str| {
        let app = admin::router(st.clone());
        let req = Request::get(path).body(Body::empty()).unwrap();
        async move {
            let r = app.oneshot(req).await.unwrap();
            let s = r.status();
            (
                s,
                String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec())
                    .unwrap(),
            )
        }
    };
    assert_eq!(get("/livez").await.0, StatusCode::OK);
    assert_eq!(get("/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
    st.ready.store(true, Ordering::Relaxed);
    assert_eq!(get("/readyz").await.0, StatusCode::OK);
    let (s, text) = get("/metrics").await;
    assert_eq!(s, StatusCode::OK);
    assert!(text.contains(r#"sqs_access_aws_calls_total{service="sqs",operation="GetQueueAttributes",outcome="ok"} 1"#), "{text}");
    assert!(!text.contains("orders"), "no object names in metrics");
}
