//! The admission webhook: the router driven directly with AdmissionReviews exactly as the API
//! server sends them, then end to end over real TLS with a certificate made here, including a
//! rotation picked up without a restart.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use sqs_access_operator::binding::ClusterFacts;
use sqs_access_operator::config::WebhookConfig;
use sqs_access_operator::metrics::Metrics;
use sqs_access_operator::webhook::{self, Enforcement, WebhookState};
use support::fakes::{Accounts, ExampleSource, Modes};
use tower::ServiceExt;

fn state(
    mode: Enforcement,
    cfg: WebhookConfig,
    ns_modes: &[(&str, Enforcement)],
) -> Arc<WebhookState> {
    Arc::new(WebhookState::new(
        ClusterFacts {
            service_accounts: Arc::new(Accounts),
            oidc_issuer: Some(
                "https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
                    .into(),
            ),
        },
        Arc::new(ExampleSource),
        mode,
        Arc::new(Modes(
            ns_modes
                .iter()
                .map(|(n, m)| (n.to_string(), *m))
                .collect::<HashMap<_, _>>(),
        )),
        cfg,
        Metrics::default(),
    ))
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/admission/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

async fn post(st: Arc<WebhookState>, body: Vec<u8>, content_type: &str) -> (StatusCode, Vec<u8>) {
    let req = Request::post("/validate")
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap();
    let resp = webhook::router(st).oneshot(req).await.unwrap();
    let status = resp.status();
    (
        status,
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
}

/// Sends a fixture, checks the review's envelope, returns the response part.
async fn review(st: Arc<WebhookState>, name: &str) -> Value {
    let (status, body) = post(st, fixture(name), "application/json").await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["kind"], "AdmissionReview");
    let resp = v["response"].clone();
    assert_eq!(
        resp["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002",
        "the uid is echoed"
    );
    resp
}

fn enforce() -> Arc<WebhookState> {
    state(Enforcement::Enforce, WebhookConfig::default(), &[])
}

fn message(r: &Value) -> String {
    r["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn warnings(r: &Value) -> Vec<String> {
    r["warnings"]
        .as_array()
        .map(|a| a.iter().map(|w| w.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_working_binding_is_admitted() {
    let r = review(enforce(), "create-allowed.json").await;
    assert_eq!(r["allowed"], true, "{r}");
    assert!(warnings(&r).is_empty());
}

/// A fixture with its binding's service account (and queue) replaced.
fn fixture_for(name: &str, service_account: &str, queue: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture(name)).unwrap();
    v["request"]["object"]["spec"]["serviceAccountName"] = service_account.into();
    v["request"]["object"]["spec"]["queue"] = queue.into();
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test]
async fn a_pod_identity_binding_is_judged_by_its_association_in_enforce_mode() {
    // No IRSA annotation, a working Pod Identity association: admitted (it was rejected as
    // ServiceAccountHasNoRole before Pod Identity was known).
    let queue = "arn:aws:sqs:us-east-1:111111111111:orders";
    let (status, body) = post(
        enforce(),
        fixture_for("create-allowed.json", "pi-producer", queue),
        "application/json",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let r: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(r["response"]["allowed"], true, "{r}");
    // A Pod Identity trust without sts:TagSession: rejected, naming the reason and the fix.
    let (_, body) = post(
        enforce(),
        fixture_for("create-allowed.json", "pi-no-tagsession", queue),
        "application/json",
    )
    .await;
    let r: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(r["response"]["allowed"], false, "{r}");
    let m = message(&r["response"]);
    assert!(
        m.contains("PodIdentityTrustPolicyDoesNotAllow [trustPolicy]"),
        "{m}"
    );
    assert!(
        m.contains("sts:TagSession") && m.contains("pods.eks.amazonaws.com"),
        "{m}"
    );
}

#[tokio::test]
async fn a_failing_binding_is_rejected_with_reason_layer_and_fix() {
    let r = review(enforce(), "create-denied.json").await;
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 403);
    let m = message(&r);
    assert!(m.starts_with("SqsAccessBinding orders/producer-orders would not work: IdentityPolicyDoesNotAllow [identityPolicy] sqs:SendMessage"), "{m}");
    assert!(m.contains("Fix: add this statement to an identity policy of role arn:aws:iam::111111111111:role/orders-producer"), "{m}");
    assert!(
        m.contains("\"Resource\":\"arn:aws:sqs:us-east-1:111111111111:orders\""),
        "{m}"
    );
}

#[tokio::test]
async fn warn_mode_admits_with_the_reason_as_a_warning() {
    let st = state(Enforcement::Warn, WebhookConfig::default(), &[]);
    let r = review(st, "create-denied.json").await;
    assert_eq!(r["allowed"], true);
    assert!(warnings(&r)[0].contains("IdentityPolicyDoesNotAllow"));
    assert!(
        warnings(&r)[0].len() <= 256,
        "warnings stay within what the API server keeps"
    );
    // A namespace label overrides the operator-wide mode, both ways.
    let st = state(
        Enforcement::Enforce,
        WebhookConfig::default(),
        &[("orders", Enforcement::Warn)],
    );
    assert_eq!(review(st, "create-denied.json").await["allowed"], true);
    let st = state(
        Enforcement::Warn,
        WebhookConfig::default(),
        &[("orders", Enforcement::Enforce)],
    );
    assert_eq!(review(st, "create-denied.json").await["allowed"], false);
}

#[tokio::test]
async fn dry_run_gets_the_same_answer() {
    let r = review(enforce(), "create-denied-dry-run.json").await;
    assert_eq!(r["allowed"], false);
    assert!(message(&r).contains("IdentityPolicyDoesNotAllow"));
}

#[tokio::test]
async fn indeterminate_is_admitted_with_a_warning_unless_configured() {
    let r = review(enforce(), "create-indeterminate.json").await;
    assert_eq!(r["allowed"], true);
    assert!(warnings(&r)[0].contains("AwsUnavailable"), "{r}");
    let cfg = WebhookConfig {
        admit_indeterminate: false,
        ..Default::default()
    };
    let r = review(
        state(Enforcement::Enforce, cfg, &[]),
        "create-indeterminate.json",
    )
    .await;
    assert_eq!(r["allowed"], false);
}

#[tokio::test]
async fn a_service_account_that_does_not_exist_yet_is_configurable() {
    let r = review(enforce(), "create-missing-service-account.json").await;
    assert_eq!(r["allowed"], true);
    assert!(warnings(&r)[0].contains("ServiceAccountNotFound"));
    let cfg = WebhookConfig {
        admit_missing_service_account: false,
        ..Default::default()
    };
    let r = review(
        state(Enforcement::Enforce, cfg, &[]),
        "create-missing-service-account.json",
    )
    .await;
    assert_eq!(r["allowed"], false);
}

#[tokio::test]
async fn spec_errors_are_rejected_in_every_mode_naming_the_field() {
    for (file, field) in [
        (
            "create-other-namespace-account.json",
            "spec.serviceAccountName",
        ),
        ("create-hostile-queue-url.json", "spec.queue"),
        ("create-batch-action.json", "spec.actions[0]"),
        ("create-bad-access-mode.json", "spec.access[0]"),
    ] {
        for mode in [Enforcement::Enforce, Enforcement::Warn] {
            let r = review(state(mode, WebhookConfig::default(), &[]), file).await;
            assert_eq!(r["allowed"], false, "{file}");
            assert!(message(&r).contains(field), "{file}: {}", message(&r));
        }
    }
    let r = review(enforce(), "create-batch-action.json").await;
    assert!(
        message(&r).contains("sqs:SendMessage"),
        "the batch name's action is suggested"
    );
}

#[tokio::test]
async fn updates_are_judged_only_when_the_spec_changes() {
    assert_eq!(
        review(enforce(), "update-spec-unchanged.json").await["allowed"],
        true
    );
    assert_eq!(
        review(enforce(), "update-to-denied.json").await["allowed"],
        false
    );
    assert_eq!(review(enforce(), "delete.json").await["allowed"], true);
}

#[tokio::test]
async fn other_kinds_are_never_blocked() {
    let r = review(enforce(), "create-configmap.json").await;
    assert_eq!(r["allowed"], true);
    assert!(warnings(&r)[0].contains("does not validate"));
}

#[tokio::test]
async fn malformed_requests_get_clear_http_errors() {
    let (s, b) = post(enforce(), b"{\"hello\": 1}".to_vec(), "application/json").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&b).contains("not an AdmissionReview"));
    let (s, _) = post(enforce(), b"not json".to_vec(), "application/json").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, b) = post(enforce(), fixture("create-denied.json"), "text/plain").await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(String::from_utf8_lossy(&b).contains("application/json"));
    let mut old = serde_json::from_slice::<Value>(&fixture("create-denied.json")).unwrap();
    old["apiVersion"] = "admission.k8s.io/v1beta1".into();
    let (s, b) = post(
        enforce(),
        serde_json::to_vec(&old).unwrap(),
        "application/json",
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&b).contains("v1beta1"));
    let huge = vec![b' '; webhook::MAX_BODY + 1];
    let (s, _) = post(enforce(), huge, "application/json").await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    let mut no_request = serde_json::from_slice::<Value>(&fixture("create-denied.json")).unwrap();
    no_request.as_object_mut().unwrap().remove("request");
    let (s, _) = post(
        enforce(),
        serde_json::to_vec(&no_request).unwrap(),
        "application/json",
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_slow_check_answers_indeterminate_within_the_deadline() {
    let cfg = WebhookConfig {
        deadline: Duration::from_millis(200),
        ..Default::default()
    };
    let mut v: Value = serde_json::from_slice(&fixture("create-denied.json")).unwrap();
    v["request"]["object"]["spec"]["queue"] = "arn:aws:sqs:us-east-1:111111111111:slow".into();
    let started = std::time::Instant::now();
    let (s, body) = post(
        state(Enforcement::Enforce, cfg, &[]),
        serde_json::to_vec(&v).unwrap(),
        "application/json",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(2));
    let r: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(r["response"]["allowed"], true);
    assert!(
        r["response"]["warnings"][0]
            .as_str()
            .unwrap()
            .contains("deadline")
    );
}

// ---- over real TLS ----

fn make_cert(dir: &std::path::Path, cn: &str) -> Vec<u8> {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    // Write as Kubernetes does for a Secret volume: new files, then swap a symlink.
    let generation_dir = dir.join(format!("..{cn}"));
    std::fs::create_dir_all(&generation_dir).unwrap();
    std::fs::write(generation_dir.join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(generation_dir.join("tls.key"), key.serialize_pem()).unwrap();
    let link = dir.join("..data");
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&generation_dir, &tmp).unwrap();
    std::fs::rename(&tmp, &link).unwrap();
    for f in ["tls.crt", "tls.key"] {
        if !dir.join(f).exists() {
            std::os::unix::fs::symlink(format!("..data/{f}"), dir.join(f)).unwrap();
        }
    }
    cert.der().to_vec()
}

fn client_for(der: &[u8]) -> reqwest_like::Client {
    reqwest_like::Client::new(der)
}

/// A minimal HTTPS client (hyper over tokio-rustls) that trusts exactly one certificate.
mod reqwest_like {
    use std::sync::Arc;

    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    use hyper_util::rt::TokioIo;
    use rustls::pki_types::{CertificateDer, ServerName};

    pub struct Client {
        config: Arc<rustls::ClientConfig>,
    }

    impl Client {
        pub fn new(der: &[u8]) -> Self {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(CertificateDer::from(der.to_vec())).unwrap();
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
            Client {
                config: Arc::new(config),
            }
        }

        /// POSTs `body`; `Err` when the TLS handshake fails (e.g. an untrusted certificate).
        pub async fn post(
            &self,
            addr: std::net::SocketAddr,
            body: Vec<u8>,
        ) -> Result<(u16, Vec<u8>), String> {
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| e.to_string())?;
            let tls = tokio_rustls::TlsConnector::from(self.config.clone())
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .map_err(|e| e.to_string())?;
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let req = http::Request::post("/validate")
                .header("host", "localhost")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .unwrap();
            let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            Ok((
                status,
                resp.into_body()
                    .collect()
                    .await
                    .unwrap()
                    .to_bytes()
                    .to_vec(),
            ))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_over_tls_and_picks_up_a_rotated_certificate() {
    let dir = std::env::temp_dir().join(support::unique("webhook-tls"));
    std::fs::create_dir_all(&dir).unwrap();
    let first = make_cert(&dir, "first");
    let cert = Arc::new(
        webhook::tls::ReloadingCert::new(&dir.join("tls.crt"), &dir.join("tls.key")).unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(webhook::serve_tls(
        listener,
        webhook::router(enforce()),
        cert,
        stop_rx,
    ));

    let (status, body) = client_for(&first)
        .post(addr, fixture("create-denied.json"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["response"]["allowed"], false);

    // Rotate: the Secret volume's symlink now points at a new pair.
    let second = make_cert(&dir, "second");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _) = client_for(&second)
        .post(addr, fixture("create-allowed.json"))
        .await
        .unwrap();
    assert_eq!(
        status, 200,
        "the new certificate is served without a restart"
    );
    assert!(
        client_for(&first)
            .post(addr, fixture("create-allowed.json"))
            .await
            .is_err(),
        "the old one is gone"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_certificate_and_key_from_different_pairs_are_refused() {
    let dir = std::env::temp_dir().join(support::unique("webhook-mismatch"));
    std::fs::create_dir_all(&dir).unwrap();
    let a = rcgen::KeyPair::generate().unwrap();
    let b = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&a)
        .unwrap();
    std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), b.serialize_pem()).unwrap();
    let e =
        webhook::tls::ReloadingCert::new(&dir.join("tls.crt"), &dir.join("tls.key")).unwrap_err();
    assert!(e.to_string().contains("does not match"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
