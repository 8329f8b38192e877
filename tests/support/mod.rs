//! Shared test support: the AWS emulator (moto) started by `scripts/with-moto.sh`, SDK
//! configurations for it, a tiny HTTP server that answers every request the same way (to
//! inject throttling, access denied and server errors, which the emulator cannot produce), and
//! a real Kubernetes API server ([`envtest`]).

#![allow(dead_code)]

pub mod envtest;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A snapshot input for the IRSA binding the AWS tests check: namespace `orders`, binding `b`,
/// service account `producer` annotated with `role_arn`, the cluster's issuer `issuer` (without
/// the scheme). Tests change the fields they are about.
pub fn irsa_input(
    role_arn: &str,
    queue: &str,
    access: Vec<sqs_access_operator::diagnosis::AccessMode>,
    issuer: &str,
) -> sqs_access_operator::aws::SnapshotInput {
    let annotations = [(
        "eks.amazonaws.com/role-arn".to_string(),
        role_arn.to_string(),
    )]
    .into();
    sqs_access_operator::aws::SnapshotInput {
        namespace: "orders".into(),
        binding_name: Some("b".into()),
        spec: sqs_access_operator::diagnosis::BindingSpec {
            service_account_name: "producer".into(),
            queue: queue.into(),
            access,
            actions: vec![],
            vpc_endpoint_id: None,
        },
        service_account: Some(
            sqs_access_operator::diagnosis::snapshot::ServiceAccountEvidence {
                found: true,
                annotations,
            },
        ),
        oidc_issuer: Some(format!("https://{issuer}")),
        cluster_name: None,
        pods: None,
    }
}

/// The emulator's URL, or `None` (then the test says it is skipped). With
/// `SQS_ACCESS_REQUIRE_MOTO=1` (CI sets it), a missing emulator fails the test instead.
pub fn moto_url() -> Option<String> {
    match std::env::var("SQS_ACCESS_TEST_MOTO_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var("SQS_ACCESS_REQUIRE_MOTO").is_err(),
                "SQS_ACCESS_TEST_MOTO_URL is not set: run the tests through scripts/with-moto.sh"
            );
            eprintln!("skipped: no AWS emulator (run through scripts/with-moto.sh)");
            None
        }
    }
}

pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .load()
        .await
}

/// An SDK configuration acting in another (emulated) account, through sts:AssumeRole.
pub async fn sdk_config_in(endpoint: &str, account: &str) -> SdkConfig {
    let base = sdk_config(endpoint).await;
    let provider = aws_config::sts::AssumeRoleProvider::builder(format!(
        "arn:aws:iam::{account}:role/test-admin"
    ))
    .session_name("tests")
    .configure(&base)
    .build()
    .await;
    base.to_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(provider),
        )
        .build()
}

/// The operator's binary, to run as a test: it never sends AWS traffic off loopback whatever
/// the environment holds (no instance metadata for a region or credentials, no profiles, no
/// real credentials), as `scripts/loopback-aws.sh` does for the scripts.
pub fn binary() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sqs-access-operator"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    for var in [
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// An HTTP server on loopback that answers every request with one canned response.
pub struct Stub {
    pub url: String,
    pub requests: Arc<AtomicUsize>,
}

impl Stub {
    pub async fn start(status: u16, content_type: &'static str, body: &'static str) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let count = requests.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let count = count.clone();
                tokio::spawn(async move {
                    // Read the head and the body the client announces, then answer.
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    loop {
                        let Ok(n) = sock.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(end) = find(&buf, b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                            let len = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            if buf.len() >= end + 4 + len {
                                break;
                            }
                        }
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Stub { url, requests }
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// Fakes for the cluster and AWS sides: a snapshot source that answers from the example
/// snapshots by queue, service accounts and namespace modes from maps.
pub mod eks;

pub mod fakes {
    use std::collections::{BTreeMap, HashMap};
    use std::time::Duration;

    use futures::future::BoxFuture;
    use sqs_access_operator::aws::{SnapshotInput, SnapshotSource};
    use sqs_access_operator::binding::ServiceAccountLookup;
    use sqs_access_operator::diagnosis::SpecOptions;
    use sqs_access_operator::diagnosis::snapshot::{EvidenceError, EvidenceErrorKind, Snapshot};
    use sqs_access_operator::webhook::{Enforcement, NamespaceModes};

    fn example(name: &str) -> Snapshot {
        let path = format!(
            "{}/examples/snapshots/{name}.yaml",
            env!("CARGO_MANIFEST_DIR")
        );
        Snapshot::from_yaml_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// The annotation that picks an example snapshot by name for a service account.
    pub const EXAMPLE_ANNOTATION: &str = "test.sqsaccess.io/example";

    /// `...:222222222222:orders` is healthy; `...:111111111111:orders` lacks the identity
    /// policy; `throttled` is unavailable; `slow` takes 5 s. A service account annotated
    /// `test.sqsaccess.io/example: NAME` gets example NAME whole, its service account and
    /// associations included (e.g. `pod-identity-healthy`, whose association is for
    /// orders/producer). The cluster's Pod Identity associations count as read (none) unless
    /// the example has some.
    pub struct ExampleSource;

    impl SnapshotSource for ExampleSource {
        fn snapshot<'a>(&'a self, input: &'a SnapshotInput) -> BoxFuture<'a, Snapshot> {
            Box::pin(async move {
                let q = input.spec.queue.as_str();
                let named = input
                    .service_account
                    .as_ref()
                    .and_then(|sa| sa.annotations.get(EXAMPLE_ANNOTATION));
                let mut s = if let Some(name) = named {
                    example(name)
                } else if q.ends_with("222222222222:orders") {
                    example("healthy")
                } else {
                    example("identity-policy-missing")
                };
                if q.ends_with(":slow") {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                if let Some(b) = &mut s.binding {
                    let example_sa = b.spec.service_account_name.clone();
                    b.namespace = input.namespace.clone();
                    b.spec = input.spec.clone();
                    if named.is_some() {
                        b.spec.service_account_name = example_sa;
                    }
                }
                if named.is_none() {
                    s.service_account = input.service_account.clone();
                }
                s.pod_identity_associations.get_or_insert_with(Vec::new);
                s.pods = input.pods.clone();
                if q.ends_with(":throttled") {
                    s.role = None;
                    s.evidence_errors.push(EvidenceError {
                        item: "role".into(),
                        kind: EvidenceErrorKind::Unavailable,
                        message: "Throttling: Rate exceeded".into(),
                        permission: None,
                    });
                }
                s
            })
        }
        fn spec_options(&self) -> SpecOptions {
            SpecOptions::default()
        }
    }

    /// Answers for a binding in any namespace as the wrapped source does for `orders`, the
    /// namespace the example snapshots describe (their trust policies name
    /// `system:serviceaccount:orders:producer`); tests against a real API server use a fresh
    /// namespace each.
    pub struct AsOrders<S>(pub S);

    impl<S: SnapshotSource> SnapshotSource for AsOrders<S> {
        fn snapshot<'a>(&'a self, input: &'a SnapshotInput) -> BoxFuture<'a, Snapshot> {
            Box::pin(async move {
                let input = SnapshotInput {
                    namespace: "orders".into(),
                    ..input.clone()
                };
                self.0.snapshot(&input).await
            })
        }
        fn spec_options(&self) -> SpecOptions {
            self.0.spec_options()
        }
    }

    /// `orders/producer` is annotated with the example role; nothing else exists.
    pub struct Accounts;

    impl ServiceAccountLookup for Accounts {
        fn annotations<'a>(
            &'a self,
            namespace: &'a str,
            name: &'a str,
        ) -> BoxFuture<'a, Result<Option<BTreeMap<String, String>>, String>> {
            Box::pin(async move {
                let mut a = BTreeMap::new();
                match (namespace, name) {
                    ("orders", "producer") => {
                        a.insert(
                            "eks.amazonaws.com/role-arn".to_string(),
                            "arn:aws:iam::111111111111:role/orders-producer".to_string(),
                        );
                    }
                    // No IRSA annotation: the role comes from a Pod Identity association.
                    ("orders", "pi-producer") => {
                        a.insert(EXAMPLE_ANNOTATION.into(), "pod-identity-healthy".into());
                    }
                    ("orders", "pi-no-tagsession") => {
                        a.insert(
                            EXAMPLE_ANNOTATION.into(),
                            "pod-identity-trust-missing-tagsession".into(),
                        );
                    }
                    _ => return Ok(None),
                }
                Ok(Some(a))
            })
        }
    }

    pub struct Modes(pub HashMap<String, Enforcement>);

    impl NamespaceModes for Modes {
        fn enforcement(&self, namespace: &str) -> Option<Enforcement> {
            self.0.get(namespace).copied()
        }
    }
}

/// Everything a parsed `evaluate` line determines: the request, the policy set, the response
/// (or the error). Compares the cached and uncached parse paths.
pub fn fingerprint<S: std::borrow::Borrow<sqs_access_operator::policy::PolicySet>>(
    r: &Result<
        (sqs_access_operator::policy::Request, S),
        sqs_access_operator::policy::input::InputError,
    >,
) -> String {
    match r {
        Err(e) => format!("error {e}"),
        Ok((req, set)) => {
            let set: &sqs_access_operator::policy::PolicySet = set.borrow();
            let mut ctx: Vec<_> = req.context.iter().collect();
            ctx.sort();
            format!(
                "{:?} {} {} {:?} {:?} {ctx:?} {set:?} {}",
                req.principal,
                req.action,
                req.resource,
                req.resource_account,
                req.rule,
                serde_json::to_string(&sqs_access_operator::policy::authorize(req, set)).unwrap()
            )
        }
    }
}
