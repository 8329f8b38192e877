//! The operator binary (`sqs-access-operator run`) against a real API server: with the chart's
//! RBAC and a TokenRequest token of the chart's ServiceAccount nothing is forbidden; the
//! controller's watches and the webhook's caches survive an API server restart; of two replicas
//! one leads, and the other takes over when it dies. AWS is the emulator when the tests run through
//! `scripts/with-moto.sh`, else a loopback port nobody listens on: never the real one.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde_json::Value;
use sqs_access_operator::controller::FIELD_MANAGER;
use sqs_access_operator::crd::SqsAccessBinding;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::controller::{events, service_account};
use crate::support::envtest::{
    ApiServer, Options, eventually, free_port, serving_certificate, spawn, tool,
    webhook_configuration, workdir,
};

const ROLE: &str = "arn:aws:iam::123456789012:role/producer";
const QUEUE: &str = "arn:aws:sqs:us-east-1:123456789012:orders";
const WAIT: Duration = Duration::from_secs(60);

/// AWS for an operator process: the emulator when the tests run through
/// `scripts/with-moto.sh`, else a loopback port nobody listens on (every call fails at once).
/// The rest of the loopback-only environment comes from [`crate::support::binary`].
fn aws_endpoint() -> String {
    std::env::var("SQS_ACCESS_TEST_MOTO_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| format!("http://127.0.0.1:{}", free_port()))
}

/// An operator process; killed when dropped.
struct Operator {
    child: Child,
    admin: u16,
    log: PathBuf,
}

impl Operator {
    /// `sqs-access-operator run ARGS --admin-addr 127.0.0.1:PORT` with `env`, talking to the
    /// API server through `kubeconfig`.
    fn start(kubeconfig: &Path, args: &[String], env: &[(String, String)]) -> Operator {
        let admin = free_port();
        let log = workdir().join(format!("{}.log", crate::support::unique("operator")));
        let file = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap()
        };
        let mut cmd = crate::support::binary();
        cmd.arg("run")
            .args(args)
            .arg(format!("--admin-addr=127.0.0.1:{admin}"))
            .env(
                "RUST_LOG",
                std::env::var("OPERATOR_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(env.iter().cloned())
            .env("KUBECONFIG", kubeconfig)
            .env("AWS_ENDPOINT_URL", aws_endpoint())
            .stdin(Stdio::null())
            .stdout(file())
            .stderr(file());
        let child = spawn(cmd).expect("cannot start sqs-access-operator");
        Operator { child, admin, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The HTTP status of `GET /readyz`, `None` when it does not answer.
    async fn readyz(&self) -> Option<u16> {
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.admin))
            .await
            .ok()?;
        tcp.write_all(b"GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .ok()?;
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(2), tcp.read_to_end(&mut buf))
            .await
            .ok()?
            .ok()?;
        std::str::from_utf8(buf.get(9..12)?).ok()?.parse().ok()
    }

    async fn wait_ready(&mut self) {
        let started = std::time::Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the operator exited ({status}):\n{}", self.log());
            }
            if self.readyz().await == Some(200) {
                return;
            }
            assert!(
                started.elapsed() < WAIT,
                "the operator is not ready after {WAIT:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `kubectl apply` of a binding of `producer` to the queue: whether it succeeded, and its error
/// output (warnings and rejections).
async fn app_binding(server: &ApiServer, ns: &str, name: &str) -> (bool, String) {
    kubectl_binding(server, ns, name, &["apply", "-f", "-"]).await
}

/// The same as a server-side dry run of a create: the webhook judges it every time.
async fn dry_run_binding(server: &ApiServer, ns: &str, name: &str) -> (bool, String) {
    kubectl_binding(server, ns, name, &["create", "--dry-run=server", "-f", "-"]).await
}

async fn kubectl_binding(
    server: &ApiServer,
    ns: &str,
    name: &str,
    args: &[&str],
) -> (bool, String) {
    let doc = format!(
        "apiVersion: sqsaccess.io/v1alpha1\nkind: SqsAccessBinding\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{serviceAccountName: producer, queue: \"{QUEUE}\", access: [Send]}}\n"
    );
    let out = server.kubectl(args, Some(&doc)).await;
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits until the operator wrote the binding's status (whatever AWS answered).
async fn wait_status(server: &ApiServer, ns: &str, name: &str, op: &Operator) -> SqsAccessBinding {
    let api: Api<SqsAccessBinding> = Api::namespaced(server.client().await, ns);
    let started = std::time::Instant::now();
    loop {
        if let Ok(b) = api.get(name).await
            && let Some(st) = &b.status
            && st.last_checked.is_some()
            && st.conditions.iter().any(|c| c.type_ == "Ready")
        {
            return b;
        }
        assert!(
            started.elapsed() < WAIT,
            "{ns}/{name} got no status within {WAIT:?}; the operator's log:\n{}",
            op.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the binding's status has this reason.
async fn wait_reason(server: &ApiServer, ns: &str, name: &str, reason: &str, op: &Operator) {
    let api: Api<SqsAccessBinding> = Api::namespaced(server.client().await, ns);
    let started = std::time::Instant::now();
    loop {
        let b = api.get(name).await.ok();
        let now = b.as_ref().and_then(|b| b.status.as_ref()?.reason.clone());
        if now.as_deref() == Some(reason) {
            return;
        }
        assert!(
            started.elapsed() < WAIT,
            "{ns}/{name} is {now:?}, not {reason}, after {WAIT:?}; the operator's log:\n{}",
            op.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn lease_holder(server: &ApiServer, ns: &str) -> Option<(String, i32)> {
    let leases: Api<Lease> = Api::namespaced(server.client().await, ns);
    let spec = leases.get_opt("sqs-access-operator").await.ok()??.spec?;
    Some((spec.holder_identity?, spec.lease_transitions.unwrap_or(0)))
}

// ---------------------------------------------------------------------------------------------
// The chart's RBAC
// ---------------------------------------------------------------------------------------------

fn helm() -> Option<PathBuf> {
    let tools = std::env::var_os("SQS_ACCESS_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/sqs-access-operator-tools"));
    let mut candidates = vec![tools.join("bin/helm")];
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("helm")));
    }
    tool(
        "helm",
        &candidates,
        "run scripts/chart-check.sh once (it installs helm into $SQS_ACCESS_TOOLS_DIR) or put helm on PATH",
    )
}

/// `helm template` of the chart, as parsed documents.
fn render_chart(helm: &Path, namespace: &str, values: &Value) -> Vec<Value> {
    let dir = workdir().join(crate::support::unique("chart"));
    std::fs::create_dir_all(&dir).unwrap();
    let values_file = dir.join("values.json");
    std::fs::write(&values_file, values.to_string()).unwrap();
    let out = Command::new(helm)
        .args(["template", "sqs"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/charts/sqs-access-operator"
        ))
        .args(["--namespace", namespace, "-f"])
        .arg(&values_file)
        .output()
        .expect("helm runs");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("helm template's output: {e}"))
        .into_iter()
        .filter(Value::is_object)
        .collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} in the chart");
    found[0]
}

/// The chart's Deployment container, run here: its args with local addresses and files, its
/// plain env values, and the downward-API values a pod would get.
fn operator_from_chart(
    docs: &[Value],
    dir: &Path,
    webhook_port: u16,
    cert: &crate::support::envtest::ServingCert,
    pod: &str,
    namespace: &str,
) -> (Vec<String>, Vec<(String, String)>) {
    let container = &one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    let config = dir.join("config.yaml");
    let cm = one(docs, "ConfigMap");
    std::fs::write(
        &config,
        cm["data"]["config.yaml"].as_str().expect("config.yaml"),
    )
    .unwrap();
    let mut seen = BTreeSet::new();
    let args: Vec<String> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str())
        .filter(|a| *a != "run")
        .filter_map(|a| {
            let flag = a.split('=').next().unwrap_or(a);
            seen.insert(flag.to_string());
            Some(match flag {
                "--admin-addr" => return None, // Operator::start picks a free port
                "--config" => format!("--config={}", config.display()),
                "--webhook-addr" => format!("--webhook-addr=127.0.0.1:{webhook_port}"),
                "--tls-cert-file" => format!("--tls-cert-file={}", cert.cert.display()),
                "--tls-key-file" => format!("--tls-key-file={}", cert.key.display()),
                _ => a.to_string(),
            })
        })
        .collect();
    for flag in [
        "--config",
        "--admin-addr",
        "--webhook-addr",
        "--tls-cert-file",
        "--tls-key-file",
    ] {
        assert!(
            seen.contains(flag),
            "the chart's Deployment lost {flag}: {args:?}"
        );
    }
    let env = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| {
            let name = e["name"].as_str()?.to_string();
            let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("metadata.name") => pod.to_string(),
                Some("metadata.namespace") => namespace.to_string(),
                Some(other) => panic!("unexpected downward API field {other}"),
                None => e["value"].as_str()?.to_string(),
            };
            Some((name, value))
        })
        .collect();
    (args, env)
}

/// What the operator must be able to do, as (verb, resource) in the audit log; each is seen
/// succeeding at least once.
const EXPECTED: &[(&str, &str)] = &[
    ("list", "sqsaccessbindings"),
    ("watch", "sqsaccessbindings"),
    ("patch", "sqsaccessbindings/status"),
    ("list", "serviceaccounts"),
    ("watch", "serviceaccounts"),
    ("list", "pods"),
    ("watch", "pods"),
    ("list", "namespaces"),
    ("watch", "namespaces"),
    ("create", "events"),
    ("create", "leases"),
    ("update", "leases"),
    ("get", "/.well-known/openid-configuration"),
];

fn audit_key(e: &Value) -> (String, String) {
    let verb = e["verb"].as_str().unwrap_or_default().to_string();
    let o = &e["objectRef"];
    let what = match (o["resource"].as_str(), o["subresource"].as_str()) {
        (Some(r), Some(s)) => format!("{r}/{s}"),
        (Some(r), None) => r.to_string(),
        _ => e["requestURI"]
            .as_str()
            .unwrap_or_default()
            .split('?')
            .next()
            .unwrap_or_default()
            .to_string(),
    };
    (verb, what)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_charts_rbac_nothing_the_operator_does_is_forbidden() {
    let Some(server) = ApiServer::start(Options { audit: true }) else {
        return;
    };
    let Some(helm) = helm() else {
        return;
    };
    let release_ns = server.namespace("sqs-access-system").await;
    let dir = workdir().join(crate::support::unique("rbac"));
    let cert = serving_certificate(&dir);
    let webhook_port = free_port();
    // The chart as installed for an operator outside the cluster (webhook.url), with its own
    // certificate; everything else is the defaults.
    let values = serde_json::json!({
        "webhook": {
            "url": format!("https://127.0.0.1:{webhook_port}/validate"),
            "caBundle": cert.ca_pem,
            "certificates": {"mode": "existingSecret", "existingSecret": {"name": "unused"}},
        },
    });
    let docs = render_chart(&helm, &release_ns, &values);
    let manifest =
        serde_json::json!({"apiVersion": "v1", "kind": "List", "items": docs}).to_string();
    server
        .kubectl_ok(&["apply", "--server-side", "-f", "-"], Some(&manifest))
        .await;
    server
        .kubectl_ok(
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/sqsaccessbindings.sqsaccess.io",
            ],
            None,
        )
        .await;

    // The pod's identity: a TokenRequest token of the chart's ServiceAccount.
    let sa = one(&docs, "ServiceAccount")["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let user = format!("system:serviceaccount:{release_ns}:{sa}");
    let token = server.token(&release_ns, &sa).await;
    let kubeconfig = dir.join("kubeconfig");
    server.write_kubeconfig(&kubeconfig, &token, Some(&release_ns));
    let (args, env) = operator_from_chart(
        &docs,
        &dir,
        webhook_port,
        &cert,
        "sqs-operator-0",
        &release_ns,
    );
    let op = Operator::start(&kubeconfig, &args, &env);
    // Every wait below fails at once, naming the request, when anything was forbidden.
    let rbac = Rbac {
        server: &server,
        user: &user,
        op: &op,
    };
    rbac.wait("readiness", || async {
        (op.readyz().await == Some(200)).then_some(())
    })
    .await;

    // A team's namespace in warn mode: admitted whatever AWS says, with the webhook's warning.
    let client = server.client().await;
    let app = server.namespace("team").await;
    server
        .kubectl_ok(
            &["label", "namespace", &app, "sqsaccess.io/enforcement=warn"],
            None,
        )
        .await;
    service_account(&client, &app, "producer", Some(ROLE)).await;
    let (app_ref, server_ref) = (app.as_str(), &server);
    rbac.wait(
        "the webhook's warning (namespace label seen)",
        || async move {
            let (ok, err) = app_binding(server_ref, app_ref, "producer-orders").await;
            assert!(ok, "{err}");
            err.contains(&format!(
                "Warning: SqsAccessBinding {app_ref}/producer-orders"
            ))
            .then_some(())
        },
    )
    .await;

    let api: Api<SqsAccessBinding> = Api::namespaced(client.clone(), &app);
    let b = rbac
        .wait("the binding's status", || async {
            let b = api.get("producer-orders").await.ok()?;
            b.status.as_ref()?.last_checked.as_ref()?;
            Some(b)
        })
        .await;
    assert!(
        b.metadata
            .managed_fields
            .unwrap_or_default()
            .iter()
            .any(|m| m.manager.as_deref() == Some(FIELD_MANAGER)),
        "the status was written by the operator"
    );
    rbac.wait("an Event", || async {
        (!events(&client, &app, "producer-orders").await.is_empty()).then_some(())
    })
    .await;
    let (holder, _) = rbac
        .wait("the Lease", || lease_holder(&server, &release_ns))
        .await;
    assert_eq!(holder, "sqs-operator-0");
    assert_eq!(op.readyz().await, Some(200));

    // Each thing the operator must do, seen succeeding in the audit log.
    rbac.wait("every expected request", || async {
        let done: BTreeSet<(String, String)> = rbac
            .requests()
            .iter()
            .filter(|e| {
                e["responseStatus"]["code"]
                    .as_u64()
                    .is_some_and(|c| c < 300)
            })
            .map(audit_key)
            .collect();
        EXPECTED
            .iter()
            .all(|(v, r)| done.contains(&(v.to_string(), r.to_string())))
            .then_some(())
    })
    .await;
    let log = op.log();
    assert!(
        log.contains("discovered the cluster's OIDC issuer"),
        "issuer discovery: {log}"
    );
    assert!(
        !log.to_ascii_lowercase().contains("forbidden"),
        "the operator's log: {log}"
    );
}

/// Waits that watch the audit log for requests of the operator's identity that RBAC refused.
struct Rbac<'a> {
    server: &'a ApiServer,
    user: &'a str,
    op: &'a Operator,
}

impl Rbac<'_> {
    fn requests(&self) -> Vec<Value> {
        self.server
            .audit()
            .into_iter()
            .filter(|e| e["user"]["username"] == self.user)
            .collect()
    }

    fn forbidden(&self) -> Vec<String> {
        self.requests()
            .iter()
            .filter(|e| e["responseStatus"]["code"] == 403)
            .map(|e| {
                format!(
                    "{} {}",
                    e["verb"].as_str().unwrap_or_default(),
                    e["requestURI"].as_str().unwrap_or_default()
                )
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    async fn wait<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let started = std::time::Instant::now();
        loop {
            let forbidden = self.forbidden();
            assert!(
                forbidden.is_empty(),
                "forbidden with the chart's RBAC (waiting for {what}): {forbidden:#?}"
            );
            if let Some(v) = check().await {
                return v;
            }
            assert!(
                started.elapsed() < WAIT,
                "timed out waiting for {what}; the operator's log:\n{}",
                self.op.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// API server restart, leader election
// ---------------------------------------------------------------------------------------------

/// A private server with the CRD, an operator namespace, and a team namespace with a
/// ServiceAccount.
async fn cluster() -> Option<(ApiServer, String, String)> {
    let server = ApiServer::start(Options::default())?;
    server.install_crd().await;
    let ops = server.namespace("ops").await;
    let app = server.namespace("team").await;
    service_account(&server.client().await, &app, "producer", Some(ROLE)).await;
    Some((server, ops, app))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_keeps_working_across_an_api_server_restart() {
    let Some((server, ops, app)) = cluster().await else {
        return;
    };
    // With the webhook, registered for the team's namespace, in warn mode there for now. A
    // binding of a missing ServiceAccount is denied, not admitted with a warning: then the
    // namespace's mode decides it, whatever AWS answers.
    let dir = workdir().join(crate::support::unique("restart"));
    let cert = serving_certificate(&dir);
    let config = dir.join("config.yaml");
    std::fs::write(&config, "webhook:\n  admitMissingServiceAccount: false\n").unwrap();
    let webhook_port = free_port();
    let mut op = Operator::start(
        &server.kubeconfig,
        &[
            format!("--config={}", config.display()),
            format!("--lease-namespace={ops}"),
            format!("--webhook-addr=127.0.0.1:{webhook_port}"),
            format!("--tls-cert-file={}", cert.cert.display()),
            format!("--tls-key-file={}", cert.key.display()),
        ],
        &[("POD_NAME".into(), "operator-0".into())],
    );
    op.wait_ready().await;
    server
        .kubectl_ok(
            &["label", "namespace", &app, "sqsaccess.io/enforcement=warn"],
            None,
        )
        .await;
    let url = format!("https://127.0.0.1:{webhook_port}/validate");
    server
        .kubectl_ok(
            &["apply", "-f", "-"],
            Some(&webhook_configuration("restart", &url, &cert.ca_pem, &app)),
        )
        .await;
    let (server_ref, app_ref) = (&server, app.as_str());
    eventually(WAIT, "the webhook's warning", || async move {
        let (ok, err) = app_binding(server_ref, app_ref, "before").await;
        assert!(ok, "{err}");
        err.contains("Warning: SqsAccessBinding").then_some(())
    })
    .await;
    wait_status(&server, &app, "before", &op).await;

    // Readiness, sampled all along.
    let samples = Arc::new(AtomicUsize::new(0));
    let not_ready = Arc::new(std::sync::Mutex::new(Vec::new()));
    let op = Arc::new(op);
    let sampler = {
        let (op, samples, not_ready) = (op.clone(), samples.clone(), not_ready.clone());
        tokio::spawn(async move {
            loop {
                let r = op.readyz().await;
                if r != Some(200) {
                    not_ready.lock().unwrap().push(r);
                }
                samples.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    server.restart(Duration::from_secs(2)).await;

    let (ok, err) = app_binding(&server, &app, "after").await;
    assert!(ok, "{err}");
    wait_status(&server, &app, "after", &op).await;
    // The ServiceAccount watch came back too: the account goes, the bindings follow.
    server
        .kubectl_ok(&["-n", &app, "delete", "serviceaccount", "producer"], None)
        .await;
    for name in ["before", "after"] {
        wait_reason(&server, &app, name, "ServiceAccountNotFound", &op).await;
    }
    // And the webhook's caches: the namespace label and the ServiceAccount, both changed after
    // the restart, decide admission.
    server
        .kubectl_ok(
            &[
                "label",
                "namespace",
                &app,
                "sqsaccess.io/enforcement=enforce",
                "--overwrite",
            ],
            None,
        )
        .await;
    let err = eventually(
        Duration::from_secs(30),
        "the webhook rejecting a binding of the missing account",
        || async move {
            let (ok, err) = dry_run_binding(server_ref, app_ref, "third").await;
            (!ok && err.contains("ServiceAccountNotFound")).then_some(err)
        },
    )
    .await;
    assert!(err.contains("denied the request"), "{err}");
    sampler.abort();
    assert!(samples.load(Ordering::Relaxed) > 10);
    assert_eq!(
        *not_ready.lock().unwrap(),
        Vec::<Option<u16>>::new(),
        "readiness dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_operators_one_leads_and_the_other_takes_over_when_it_dies() {
    let Some((server, ops, app)) = cluster().await else {
        return;
    };
    let start = |pod: &str| {
        Operator::start(
            &server.kubeconfig,
            &[format!("--lease-namespace={ops}")],
            &[("POD_NAME".into(), pod.into())],
        )
    };
    let (mut a, mut b) = (start("operator-a"), start("operator-b"));
    a.wait_ready().await;
    b.wait_ready().await;
    let (leader, transitions) = eventually(WAIT, "a leader", || lease_holder(&server, &ops)).await;
    let (mut leader_op, follower_op, follower) = match leader.as_str() {
        "operator-a" => (a, b, "operator-b"),
        "operator-b" => (b, a, "operator-a"),
        other => panic!("the Lease names {other}, neither replica"),
    };
    let client = server.client().await;

    // Only the leader writes: the Events name the replica that published them.
    app_binding(&server, &app, "first").await;
    wait_status(&server, &app, "first", &leader_op).await;
    let first = eventually(WAIT, "an Event", || async {
        let evs = events(&client, &app, "first").await;
        (!evs.is_empty()).then_some(evs)
    })
    .await;
    for e in &first {
        assert_eq!(e.reporting_instance.as_deref(), Some(leader.as_str()));
    }

    // The leader dies without a word; the follower was ready all along, and takes over once the
    // Lease expires.
    assert_eq!(follower_op.readyz().await, Some(200));
    leader_op.kill();
    let (holder, after) = eventually(WAIT, "the follower taking the Lease", || async {
        lease_holder(&server, &ops)
            .await
            .filter(|(h, _)| h == follower)
    })
    .await;
    assert_eq!(holder, follower);
    assert_eq!(after, transitions + 1);

    app_binding(&server, &app, "second").await;
    wait_status(&server, &app, "second", &follower_op).await;
    let second = eventually(WAIT, "an Event", || async {
        let evs = events(&client, &app, "second").await;
        (!evs.is_empty()).then_some(evs)
    })
    .await;
    for e in &second {
        assert_eq!(e.reporting_instance.as_deref(), Some(follower));
    }
}
