//! Fleet scale on a real API server: the operator binary (`run`, webhook registered) over N
//! bindings in 100 namespaces, against the AWS emulator (10 roles, 10 queues; the bindings on
//! one queue in ten are Denied by the roles' identity policies, the rest Allowed). Prints what
//! issue 16 asks for: time to converge, webhook admission latency while creating, operator RSS
//! (peak and at the end of a quiet period), API writes in the quiet period (from the API
//! server's own `apiserver_request_total`), reconciles and AWS calls per binding per re-check,
//! whether every verdict is right, and what a restart costs.
//!
//!   eval "$(../shared/envtest/install)"
//!   scripts/with-moto.sh cargo bench --bench scale -- --bindings 2000
//!
//! `--help` lists the knobs (re-check interval, quiet period, a prebuilt operator binary, extra
//! operator flags and environment, a profiler to run the operator under). Everything talks to
//! loopback only: the API server and etcd from envtest, the emulator, the operator.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::runtime::watcher;
use serde_json::{Value, json};
use sqs_access_operator::config::parse_duration;
use sqs_access_operator::crd::SqsAccessBinding;
use support::envtest::{ApiServer, Options, free_port, serving_certificate, spawn, workdir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ACCOUNT: &str = "123456789012";
const ROLES: usize = 10;
const QUEUES: usize = 10;
/// The queue no role's identity policy grants: its bindings are Denied.
const DENIED_QUEUE: usize = QUEUES - 1;
/// Namespaces in the webhook's scope carry this label.
const SCOPE_LABEL: &str = "scale.sqsaccess.io/bench";

#[derive(Parser, Debug, Clone)]
#[command(about = "Fleet-scale benchmark of the operator on a real API server")]
struct Args {
    /// Bindings to create.
    #[arg(long, default_value_t = 2000)]
    bindings: usize,
    /// Namespaces (each with one annotated ServiceAccount) the bindings are spread over.
    #[arg(long, default_value_t = 100)]
    namespaces: usize,
    /// The operator's --recheck-interval.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    recheck: Duration,
    /// The quiet period after every binding has a status (default: three intervals).
    #[arg(long, value_parser = parse_duration)]
    quiet: Option<Duration>,
    /// How long to watch the restarted operator (default: two intervals); 0s skips the restart.
    #[arg(long, value_parser = parse_duration)]
    restart_window: Option<Duration>,
    /// Creates in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Give up waiting for every status after this long.
    #[arg(long, default_value = "20m", value_parser = parse_duration)]
    converge_timeout: Duration,
    /// The operator binary (default: the one cargo built with this bench: release profile).
    #[arg(long)]
    operator: Option<PathBuf>,
    /// Run with leader election (a Lease in the namespace `scale-system`).
    #[arg(long)]
    leader_election: bool,
    /// An extra flag for the operator, e.g. --operator-arg=--no-watch-pods (repeatable).
    #[arg(long = "operator-arg", allow_hyphen_values = true)]
    operator_args: Vec<String>,
    /// An extra environment variable for the operator, e.g. MALLOC_ARENA_MAX=2 (repeatable).
    #[arg(long = "operator-env")]
    operator_env: Vec<String>,
    /// Run the operator under this command, split on spaces, e.g. "heaptrack -o /tmp/op".
    /// RSS is then read from the operator process itself, not the wrapper.
    #[arg(long)]
    wrap: Option<String>,
    /// A label for the table row.
    #[arg(long, default_value = "")]
    label: String,
    /// Keep the operator's logs and the profiler output here (default: a temporary folder
    /// removed at the end).
    #[arg(long)]
    keep: Option<PathBuf>,
    /// `cargo bench` passes --bench; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let Some(moto) = std::env::var("SQS_ACCESS_TEST_MOTO_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        println!("scale: skipped (run through scripts/with-moto.sh: it needs the AWS emulator)");
        return;
    };
    let Some(server) = ApiServer::start(Options::default()) else {
        println!("scale: skipped (no envtest binaries: eval \"$(../shared/envtest/install)\")");
        return;
    };
    let report = run(&args, &server, &moto).await;
    report.print(&args);
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

async fn run(args: &Args, server: &ApiServer, moto: &str) -> Report {
    let quiet = args.quiet.unwrap_or(args.recheck * 3);
    let restart_window = args.restart_window.unwrap_or(args.recheck * 2);
    let dir = match &args.keep {
        Some(d) => {
            std::fs::create_dir_all(d).expect("the --keep folder");
            d.clone()
        }
        None => workdir().join(support::unique("scale")),
    };
    std::fs::create_dir_all(&dir).expect("a working folder");
    let tag = std::process::id();
    let issuer = format!("oidc.eks.us-east-1.amazonaws.com/id/SCALE{tag}");
    let t_setup = Instant::now();
    let aws = seed_aws(moto, tag, &issuer, args.namespaces).await;
    server.install_crd().await;
    let client = server.client().await;
    setup_namespaces(&client, args.namespaces, &aws.roles).await;
    eprintln!(
        "scale: emulator and {} namespaces ready in {:.1} s",
        args.namespaces,
        t_setup.elapsed().as_secs_f64()
    );

    // The operator, with the webhook registered for the bench's namespaces.
    let cert = serving_certificate(&dir.join("tls"));
    let webhook_port = free_port();
    let mut op_args = vec![
        format!("--oidc-issuer=https://{issuer}"),
        format!("--recheck-interval={}s", args.recheck.as_secs()),
        format!("--webhook-addr=127.0.0.1:{webhook_port}"),
        format!("--tls-cert-file={}", cert.cert.display()),
        format!("--tls-key-file={}", cert.key.display()),
        // Denied bindings are admitted with a warning: the bench creates them on purpose.
        "--enforcement=warn".into(),
    ];
    if args.leader_election {
        let ns: Api<DynamicObject> = Api::all_with(client.clone(), &namespace_resource());
        ns.create(
            &PostParams::default(),
            &namespace_object("scale-system", false),
        )
        .await
        .expect("the lease namespace");
        op_args.push("--lease-namespace=scale-system".into());
    } else {
        op_args.push("--no-leader-election".into());
    }
    op_args.extend(args.operator_args.iter().cloned());
    let launch = Launch {
        binary: args
            .operator
            .clone()
            .unwrap_or_else(|| PathBuf::from(support::binary().get_program())),
        args: op_args,
        env: args
            .operator_env
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([
                ("AWS_ENDPOINT_URL".to_string(), moto.to_string()),
                (
                    "KUBECONFIG".to_string(),
                    server.kubeconfig.display().to_string(),
                ),
                ("POD_NAME".to_string(), "scale-operator".to_string()),
            ])
            .collect(),
        wrap: args.wrap.clone(),
        dir: dir.clone(),
    };
    let mut op = Operator::start(&launch, "operator-1");
    op.wait_ready(Duration::from_secs(120)).await;
    let url = format!("https://127.0.0.1:{webhook_port}/validate");
    server
        .kubectl_ok(
            &["apply", "-f", "-"],
            Some(&webhook_configuration(&url, &cert.ca_pem)),
        )
        .await;
    wait_webhook_effective(&client, &op, &aws).await;

    // Bindings: created while a watch records when each gets a status, and its verdict.
    let tracker = Tracker::start(client.clone());
    let sampler = RssSampler::start(op.pid);
    let expected = expected_verdicts(args.bindings, args.namespaces);
    let api_start = apiserver_requests(&client).await;
    let t0 = Instant::now();
    let created = create_bindings(&client, args, &aws).await;
    let t_created = t0.elapsed();
    eprintln!(
        "scale: {} bindings created in {:.1} s ({} failed creates retried)",
        args.bindings,
        t_created.as_secs_f64(),
        created.retries
    );
    let converge = tracker
        .wait_all(args.bindings, args.converge_timeout, &op)
        .await;
    let t_converged = t0.elapsed();
    eprintln!(
        "scale: every binding has a status after {:.1} s",
        t_converged.as_secs_f64()
    );
    let op_at_converge = op.metrics().await;
    let api_converged = apiserver_requests(&client).await;
    let rss_converged = op.rss_kb();

    // The quiet period: nothing changes; count what the operator still does.
    let api_before = apiserver_requests(&client).await;
    let op_before = op.metrics().await;
    let watch_before = tracker.updates.load(Ordering::Relaxed);
    let cpu_before = op.cpu_seconds();
    let rss_quiet_start = op.rss_kb();
    tokio::time::sleep(quiet).await;
    let api_after = apiserver_requests(&client).await;
    let op_after = op.metrics().await;
    let watch_after = tracker.updates.load(Ordering::Relaxed);
    let cpu_after = op.cpu_seconds();
    let rss_quiet_end = op.rss_kb();
    let peak_first = op.peak_kb().max(sampler.max_kb());
    sampler.stop();
    let verdicts = tracker.verdicts();
    let sizes = object_sizes(&client).await;

    let quiet_report = QuietReport {
        seconds: quiet.as_secs_f64(),
        intervals: quiet.as_secs_f64() / args.recheck.as_secs_f64(),
        binding_writes: writes(&api_after, &api_before, "sqsaccessbindings"),
        event_writes: writes(&api_after, &api_before, "events"),
        api_requests: api_after.total() - api_before.total(),
        watched_updates: watch_after - watch_before,
        reconciles: op_after.sum("sqs_access_reconciles_total", &[])
            - op_before.sum("sqs_access_reconciles_total", &[]),
        aws_calls: op_after.sum("sqs_access_aws_calls_total", &[])
            - op_before.sum("sqs_access_aws_calls_total", &[]),
        cpu_seconds: cpu_after - cpu_before,
        rss_start_kb: rss_quiet_start,
        rss_end_kb: rss_quiet_end,
    };

    // Restart: a new process over bindings whose status is current.
    let restart = if restart_window.is_zero() {
        None
    } else {
        let api_before = apiserver_requests(&client).await;
        op.stop();
        let mut op2 = Operator::start(&launch, "operator-2");
        let started = Instant::now();
        let sampler = RssSampler::start(op2.pid);
        op2.wait_ready(Duration::from_secs(300)).await;
        let ready_after = started.elapsed();
        let mut all_verified = None;
        while started.elapsed() < restart_window {
            // Re-verified = checked again (a binding whose status is current is first only
            // counted, then checked at a random point of the interval).
            if all_verified.is_none()
                && op2.metrics().await.sum("sqs_access_reconciles_total", &[])
                    >= args.bindings as f64
            {
                all_verified = Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let api_after = apiserver_requests(&client).await;
        let m = op2.metrics().await;
        let r = RestartReport {
            window: restart_window.as_secs_f64(),
            ready_after: ready_after.as_secs_f64(),
            all_verified: all_verified.map(|d| d.as_secs_f64()),
            binding_writes: writes(&api_after, &api_before, "sqsaccessbindings"),
            event_writes: writes(&api_after, &api_before, "events"),
            reconciles: m.sum("sqs_access_reconciles_total", &[]),
            aws_calls: m.sum("sqs_access_aws_calls_total", &[]),
            peak_kb: op2.peak_kb().max(sampler.max_kb()),
            rss_end_kb: op2.rss_kb(),
        };
        sampler.stop();
        op2.stop();
        Some(r)
    };
    if restart.is_none() {
        op.stop();
    }
    tracker.stop();
    if args.keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }

    Report {
        bindings: args.bindings,
        namespaces: args.namespaces,
        recheck: args.recheck.as_secs_f64(),
        created: t_created.as_secs_f64(),
        converged: t_converged.as_secs_f64(),
        converge_ok: converge,
        admission: created.latencies,
        create_failures: created.retries,
        webhook_histogram: op_at_converge.histogram("sqs_access_admission_duration_seconds"),
        admissions: op_at_converge.sum("sqs_access_admissions_total", &[]),
        aws_calls_converge: op_at_converge.sum("sqs_access_aws_calls_total", &[]),
        binding_writes_converge: writes(&api_converged, &api_start, "sqsaccessbindings"),
        event_writes_converge: writes(&api_converged, &api_start, "events"),
        reconciles_converge: op_at_converge.sum("sqs_access_reconciles_total", &[]),
        rss_converged_kb: rss_converged,
        peak_kb: peak_first,
        expected,
        verdicts,
        quiet: quiet_report,
        sizes,
        restart,
    }
}

/// The bindings as the API server sends them (what a watch or list delivers to the operator):
/// average JSON bytes per binding, whole, its managedFields, its status.
async fn object_sizes(client: &kube::Client) -> (f64, f64, f64) {
    let (mut n, mut whole, mut managed, mut status) = (0usize, 0usize, 0usize, 0usize);
    let mut cont = String::new();
    loop {
        let url = format!(
            "/apis/sqsaccess.io/v1alpha1/sqsaccessbindings?limit=500{}",
            if cont.is_empty() {
                String::new()
            } else {
                format!("&continue={cont}")
            }
        );
        let req = http::Request::get(url).body(Vec::new()).expect("a request");
        let text = client.request_text(req).await.expect("a list of bindings");
        let list: Value = serde_json::from_str(&text).expect("a list");
        for item in list["items"].as_array().into_iter().flatten() {
            n += 1;
            whole += item.to_string().len();
            managed += item["metadata"]["managedFields"].to_string().len();
            status += item["status"].to_string().len();
        }
        match list["metadata"]["continue"].as_str() {
            Some(c) if !c.is_empty() => {
                cont = percent_encoding::utf8_percent_encode(c, percent_encoding::NON_ALPHANUMERIC)
                    .to_string()
            }
            _ => break,
        }
    }
    let avg = |x: usize| x as f64 / n.max(1) as f64;
    (avg(whole), avg(managed), avg(status))
}

// ---------------------------------------------------------------------------------------------
// AWS: roles, queues, the OIDC provider
// ---------------------------------------------------------------------------------------------

struct Aws {
    roles: Vec<String>,
    queues: Vec<String>,
}

/// 10 IRSA roles (each trusted by the `app` account of every tenth namespace), 10 queues; each
/// role's identity policy grants the SQS actions of `Send` and `Receive` on every queue but the
/// last.
async fn seed_aws(moto: &str, tag: u32, issuer: &str, namespaces: usize) -> Aws {
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(moto)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "scale"))
        .load()
        .await;
    let iam = aws_sdk_iam::Client::new(&conf);
    let sqs = aws_sdk_sqs::Client::new(&conf);
    iam.create_open_id_connect_provider()
        .url(format!("https://{issuer}"))
        .client_id_list("sts.amazonaws.com")
        .thumbprint_list("9e99a48a9960b14926bb7f3b02e22da2b0ab7280")
        .send()
        .await
        .expect("the OIDC provider");
    let mut queues = Vec::new();
    for q in 0..QUEUES {
        let name = format!("scale-{tag}-q{q}");
        sqs.create_queue()
            .queue_name(&name)
            .send()
            .await
            .expect("a queue");
        queues.push(format!("arn:aws:sqs:us-east-1:{ACCOUNT}:{name}"));
    }
    let granted: Vec<&String> = queues.iter().take(DENIED_QUEUE).collect();
    let mut roles = Vec::new();
    for r in 0..ROLES {
        let name = format!("scale-{tag}-r{r}");
        let subjects: Vec<String> = (0..namespaces)
            .filter(|n| n % ROLES == r)
            .map(|n| format!("system:serviceaccount:{}:app", namespace(n)))
            .collect();
        let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"Federated": format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{issuer}")},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                format!("{issuer}:sub"): subjects,
                format!("{issuer}:aud"): "sts.amazonaws.com"}}}]});
        let role = iam
            .create_role()
            .role_name(&name)
            .assume_role_policy_document(trust.to_string())
            .send()
            .await
            .expect("a role");
        iam.put_role_policy()
            .role_name(&name)
            .policy_name("queues")
            .policy_document(
                json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                    "Action": ["sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage",
                               "sqs:ChangeMessageVisibility"],
                    "Resource": granted}]})
                .to_string(),
            )
            .send()
            .await
            .expect("an identity policy");
        roles.push(role.role().expect("a role").arn().to_string());
    }
    Aws { roles, queues }
}

// ---------------------------------------------------------------------------------------------
// The cluster: namespaces, ServiceAccounts, bindings
// ---------------------------------------------------------------------------------------------

fn namespace(n: usize) -> String {
    format!("scale-{n}")
}

fn namespace_resource() -> ApiResource {
    ApiResource::erase::<k8s_openapi::api::core::v1::Namespace>(&())
}

fn namespace_object(name: &str, in_scope: bool) -> DynamicObject {
    let labels = if in_scope {
        json!({SCOPE_LABEL: "true"})
    } else {
        json!({})
    };
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": labels}
    }))
    .expect("a namespace")
}

async fn setup_namespaces(client: &kube::Client, count: usize, roles: &[String]) {
    let ns: Api<DynamicObject> = Api::all_with(client.clone(), &namespace_resource());
    let sa_resource = ApiResource::erase::<k8s_openapi::api::core::v1::ServiceAccount>(&());
    futures::stream::iter(0..count)
        .for_each_concurrent(8, |n| {
            let (ns, client, sa_resource) = (ns.clone(), client.clone(), sa_resource.clone());
            async move {
                let name = namespace(n);
                ns.create(&PostParams::default(), &namespace_object(&name, true))
                    .await
                    .expect("a namespace");
                let sa: DynamicObject = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": "app", "namespace": name, "annotations": {
                        "eks.amazonaws.com/role-arn": roles[n % roles.len()]}}
                }))
                .expect("a service account");
                Api::<DynamicObject>::namespaced_with(client, &name, &sa_resource)
                    .create(&PostParams::default(), &sa)
                    .await
                    .expect("a service account");
            }
        })
        .await;
}

fn webhook_configuration(url: &str, ca_pem: &str) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: scale}}
webhooks:
- name: validate.sqsaccess.io
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: Fail
  timeoutSeconds: 10
  clientConfig: {{url: "{url}", caBundle: "{ca}"}}
  rules:
  - {{apiGroups: [sqsaccess.io], apiVersions: ["*"], resources: [sqsaccessbindings], operations: [CREATE, UPDATE], scope: Namespaced}}
  namespaceSelector: {{matchLabels: {{"{SCOPE_LABEL}": "true"}}}}
"#
    )
}

fn binding_resource() -> ApiResource {
    ApiResource::erase::<SqsAccessBinding>(&())
}

/// Binding `j`: namespace `j % namespaces`, queue `(j / namespaces) % 10`, so every namespace
/// has bindings on every queue.
fn binding_object(j: usize, namespaces: usize, aws: &Aws) -> (String, DynamicObject) {
    let ns = namespace(j % namespaces);
    let queue = &aws.queues[(j / namespaces) % QUEUES];
    let obj = serde_json::from_value(json!({
        "apiVersion": "sqsaccess.io/v1alpha1", "kind": "SqsAccessBinding",
        "metadata": {"name": format!("b-{j}"), "namespace": ns},
        "spec": {"serviceAccountName": "app", "queue": queue, "access": ["Send", "Receive"]}
    }))
    .expect("a binding");
    (ns, obj)
}

fn expected_verdicts(n: usize, namespaces: usize) -> (usize, usize) {
    let denied = (0..n)
        .filter(|j| (j / namespaces.max(1)) % QUEUES == DENIED_QUEUE)
        .count();
    (n - denied, denied)
}

/// Until the operator's webhook answers for the bench's namespaces (a server-side dry run is
/// judged every time).
async fn wait_webhook_effective(client: &kube::Client, op: &Operator, aws: &Aws) {
    let (ns, obj) = binding_object(0, 1, aws);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &binding_resource());
    let started = Instant::now();
    loop {
        let pp = PostParams {
            dry_run: true,
            ..Default::default()
        };
        let _ = api.create(&pp, &obj).await;
        if op.metrics().await.sum("sqs_access_admissions_total", &[]) > 0.0 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the webhook is not called after 60 s; the operator's log:\n{}",
            op.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct Created {
    latencies: Vec<Duration>,
    retries: usize,
}

/// Creates the bindings, `concurrency` at a time, timing each create (the webhook is in its
/// path). A failed create (a webhook timeout under load) is retried, and counted.
async fn create_bindings(client: &kube::Client, args: &Args, aws: &Aws) -> Created {
    let retries = AtomicU64::new(0);
    let latencies = Mutex::new(Vec::with_capacity(args.bindings));
    futures::stream::iter(0..args.bindings)
        .for_each_concurrent(args.concurrency, |j| {
            let (retries, latencies) = (&retries, &latencies);
            async move {
                let (ns, obj) = binding_object(j, args.namespaces, aws);
                let api: Api<DynamicObject> =
                    Api::namespaced_with(client.clone(), &ns, &binding_resource());
                for attempt in 0.. {
                    let t = Instant::now();
                    match api.create(&PostParams::default(), &obj).await {
                        Ok(_) => {
                            latencies.lock().expect("lock").push(t.elapsed());
                            return;
                        }
                        Err(kube::Error::Api(e)) if e.code == 409 => return,
                        Err(e) => {
                            assert!(attempt < 5, "creating binding {j}: {e}");
                            retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    }
                }
            }
        })
        .await;
    Created {
        latencies: latencies.into_inner().expect("lock"),
        retries: retries.load(Ordering::Relaxed) as usize,
    }
}

// ---------------------------------------------------------------------------------------------
// A watch of the bindings: when each got a status, its verdict, how many updates
// ---------------------------------------------------------------------------------------------

/// namespace/name → (resourceVersion, the Ready condition's status once there is one).
type Seen = HashMap<String, (String, Option<String>)>;

struct Tracker {
    seen: Arc<Mutex<Seen>>,
    /// Updates of bindings already seen (status writes, mostly).
    updates: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Tracker {
    fn start(client: kube::Client) -> Tracker {
        let seen: Arc<Mutex<Seen>> = Default::default();
        let updates = Arc::new(AtomicU64::new(0));
        let api: Api<DynamicObject> = Api::all_with(client, &binding_resource());
        let (s, u) = (seen.clone(), updates.clone());
        let task = tokio::spawn(async move {
            let stream = watcher(api, watcher::Config::default()).map_err(|e| e.to_string());
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                let (obj, live) = match ev {
                    Ok(watcher::Event::Apply(o)) => (o, true),
                    Ok(watcher::Event::InitApply(o)) => (o, false),
                    Ok(watcher::Event::Delete(_) | watcher::Event::Init)
                    | Ok(watcher::Event::InitDone) => continue,
                    Err(e) => {
                        eprintln!("scale: watching bindings: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                let key = format!(
                    "{}/{}",
                    obj.metadata.namespace.as_deref().unwrap_or_default(),
                    obj.metadata.name.as_deref().unwrap_or_default()
                );
                let rv = obj.metadata.resource_version.clone().unwrap_or_default();
                let ready = obj.data["status"]["conditions"]
                    .as_array()
                    .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                    .and_then(|c| c["status"].as_str())
                    .map(str::to_string);
                let mut m = s.lock().expect("lock");
                if let Some(old) = m.insert(key, (rv.clone(), ready))
                    && live
                    && old.0 != rv
                {
                    u.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Tracker {
            seen,
            updates,
            task,
        }
    }

    fn with_status(&self) -> usize {
        self.seen
            .lock()
            .expect("lock")
            .values()
            .filter(|(_, r)| r.is_some())
            .count()
    }

    /// (Ready=True, Ready=False, Ready=Unknown, no status)
    fn verdicts(&self) -> (usize, usize, usize, usize) {
        let m = self.seen.lock().expect("lock");
        let count = |want: Option<&str>| m.values().filter(|(_, r)| r.as_deref() == want).count();
        (
            count(Some("True")),
            count(Some("False")),
            count(Some("Unknown")),
            count(None),
        )
    }

    /// Waits until `n` bindings have a status; false after `timeout`.
    async fn wait_all(&self, n: usize, timeout: Duration, op: &Operator) -> bool {
        let started = Instant::now();
        let mut last_report = Instant::now();
        loop {
            let have = self.with_status();
            if have >= n {
                return true;
            }
            if started.elapsed() > timeout {
                eprintln!(
                    "scale: only {have} of {n} bindings have a status after {timeout:?}; the end of the operator's log:\n{}",
                    op.log_tail()
                );
                return false;
            }
            if last_report.elapsed() > Duration::from_secs(30) {
                eprintln!("scale: {have} of {n} bindings have a status");
                last_report = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn stop(self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// The operator process
// ---------------------------------------------------------------------------------------------

struct Launch {
    binary: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    wrap: Option<String>,
    dir: PathBuf,
}

struct Operator {
    child: Child,
    /// The operator itself (not a profiler wrapping it).
    pid: u32,
    admin: u16,
    log: PathBuf,
}

impl Operator {
    fn start(launch: &Launch, name: &str) -> Operator {
        let admin = free_port();
        let log = launch.dir.join(format!("{name}.log"));
        let file = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .expect("the operator's log")
        };
        // The loopback-only environment of the tests (no instance metadata, no profiles, test
        // credentials), whatever binary runs.
        let template = support::binary();
        let mut cmd = match &launch.wrap {
            Some(w) => {
                let mut parts = w.split_whitespace();
                let mut c = Command::new(parts.next().expect("--wrap names a command"));
                c.args(parts).arg(&launch.binary);
                c
            }
            None => Command::new(&launch.binary),
        };
        for (k, v) in template.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd.current_dir(&launch.dir)
            .arg("run")
            .args(&launch.args)
            .arg(format!("--admin-addr=127.0.0.1:{admin}"))
            .env("RUST_LOG", "info")
            .envs(launch.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(file())
            .stderr(file());
        let child = spawn(cmd).expect("cannot start the operator");
        let pid = if launch.wrap.is_some() {
            find_descendant(child.id(), &launch.binary, Duration::from_secs(30))
        } else {
            child.id()
        };
        Operator {
            child,
            pid,
            admin,
            log,
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    async fn get(&self, path: &str) -> Option<String> {
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.admin))
            .await
            .ok()?;
        tcp.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut buf))
            .await
            .ok()?
            .ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        (head.get(9..12) == Some("200")).then(|| body.to_string())
    }

    async fn wait_ready(&mut self, timeout: Duration) {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the operator exited ({status}):\n{}", self.log_tail());
            }
            if self.get("/readyz").await.is_some() {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "the operator is not ready after {timeout:?}:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn metrics(&self) -> Prom {
        Prom::parse(&self.get("/metrics").await.unwrap_or_default())
    }

    fn status_kb(&self, field: &str) -> u64 {
        proc_status_kb(self.pid, field)
    }

    fn rss_kb(&self) -> u64 {
        self.status_kb("VmRSS")
    }

    fn peak_kb(&self) -> u64 {
        self.status_kb("VmHWM")
    }

    /// User + system CPU time so far.
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        // After the command name in parentheses: fields 14 and 15 (utime, stime) in clock ticks.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|&i| f.get(i)?.parse::<f64>().ok())
            .sum();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        ticks / hz
    }

    /// SIGTERM (a graceful stop, as in a rolling update; profilers write their output), then
    /// SIGKILL after 30 s.
    fn stop(&mut self) {
        // SAFETY: signalling a process this bench started.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

fn proc_status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The process running `binary` among the descendants of `root` (a profiler's child).
fn find_descendant(root: u32, binary: &Path, timeout: Duration) -> u32 {
    let want = std::fs::canonicalize(binary).unwrap_or_else(|_| binary.to_path_buf());
    let started = Instant::now();
    loop {
        let mut parents: HashMap<u32, u32> = HashMap::new();
        let mut exes: Vec<(u32, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse().ok());
            if let Some(ppid) = ppid {
                parents.insert(pid, ppid);
            }
            if let Ok(exe) = std::fs::read_link(entry.path().join("exe")) {
                exes.push((pid, exe));
            }
        }
        for (pid, exe) in exes {
            if exe != want {
                continue;
            }
            let mut p = pid;
            while let Some(&pp) = parents.get(&p) {
                if pp == root {
                    return pid;
                }
                if pp <= 1 {
                    break;
                }
                p = pp;
            }
        }
        assert!(
            started.elapsed() < timeout,
            "no {} under process {root}",
            want.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The highest RSS seen, sampled twice a second (VmHWM covers the rest).
struct RssSampler {
    max: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let max = Arc::new(AtomicU64::new(0));
        let m = max.clone();
        let task = tokio::spawn(async move {
            loop {
                m.fetch_max(proc_status_kb(pid, "VmRSS"), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        RssSampler { max, task }
    }

    fn max_kb(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }

    fn stop(self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics: the operator's and the API server's, in Prometheus text format
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Prom(Vec<(String, BTreeMap<String, String>, f64)>);

impl Prom {
    fn parse(text: &str) -> Prom {
        let mut out = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (series, value) = match line.rsplit_once(' ') {
                Some(x) => x,
                None => continue,
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (series, ""),
            };
            let mut map = BTreeMap::new();
            // Label values here never hold `",` (names, verbs, codes).
            for pair in labels.split("\",") {
                if let Some((k, v)) = pair.split_once("=\"") {
                    map.insert(k.trim().to_string(), v.trim_end_matches('"').to_string());
                }
            }
            out.push((name.to_string(), map, value));
        }
        Prom(out)
    }

    /// The sum of a metric over the series whose labels match `filter`.
    fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && filter
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }

    /// A histogram's cumulative buckets: (upper bound, count).
    fn histogram(&self, name: &str) -> Vec<(f64, f64)> {
        let bucket = format!("{name}_bucket");
        let mut b: Vec<(f64, f64)> = self
            .0
            .iter()
            .filter(|(n, _, _)| *n == bucket)
            .filter_map(|(_, l, v)| {
                let le = l.get("le")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, *v))
            })
            .collect();
        b.sort_by(|x, y| x.0.total_cmp(&y.0));
        b
    }
}

/// The API server's request counters (`apiserver_request_total`), dry runs left out.
struct ApiRequests(Prom);

impl ApiRequests {
    fn total(&self) -> f64 {
        self.0
            .0
            .iter()
            .filter(|(n, l, _)| {
                n == "apiserver_request_total" && l.get("dry_run").is_none_or(|d| d.is_empty())
            })
            .map(|(_, _, v)| v)
            .sum()
    }

    /// Writes (every verb but reads and watches) to a resource, its subresources included.
    fn writes(&self, resource: &str) -> f64 {
        self.0
            .0
            .iter()
            .filter(|(n, l, _)| {
                n == "apiserver_request_total"
                    && l.get("resource").map(String::as_str) == Some(resource)
                    && l.get("dry_run").is_none_or(|d| d.is_empty())
                    && !matches!(
                        l.get("verb").map(String::as_str),
                        Some("GET" | "LIST" | "WATCH" | "WATCHLIST" | "CONNECT")
                    )
            })
            .map(|(_, _, v)| v)
            .sum()
    }
}

async fn apiserver_requests(client: &kube::Client) -> ApiRequests {
    let req = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("a request");
    let text = client
        .request_text(req)
        .await
        .expect("the API server's /metrics");
    ApiRequests(Prom::parse(&text))
}

fn writes(after: &ApiRequests, before: &ApiRequests, resource: &str) -> f64 {
    after.writes(resource) - before.writes(resource)
}

// ---------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------

struct QuietReport {
    seconds: f64,
    intervals: f64,
    binding_writes: f64,
    event_writes: f64,
    api_requests: f64,
    watched_updates: u64,
    reconciles: f64,
    aws_calls: f64,
    cpu_seconds: f64,
    rss_start_kb: u64,
    rss_end_kb: u64,
}

struct RestartReport {
    window: f64,
    ready_after: f64,
    all_verified: Option<f64>,
    binding_writes: f64,
    event_writes: f64,
    reconciles: f64,
    aws_calls: f64,
    peak_kb: u64,
    rss_end_kb: u64,
}

struct Report {
    bindings: usize,
    namespaces: usize,
    recheck: f64,
    created: f64,
    converged: f64,
    converge_ok: bool,
    admission: Vec<Duration>,
    create_failures: usize,
    webhook_histogram: Vec<(f64, f64)>,
    admissions: f64,
    aws_calls_converge: f64,
    /// Creates included.
    binding_writes_converge: f64,
    event_writes_converge: f64,
    reconciles_converge: f64,
    rss_converged_kb: u64,
    peak_kb: u64,
    /// (Allowed, Denied)
    expected: (usize, usize),
    /// (Ready=True, Ready=False, Ready=Unknown, no status)
    verdicts: (usize, usize, usize, usize),
    quiet: QuietReport,
    /// Average JSON bytes per binding: whole, managedFields, status.
    sizes: (f64, f64, f64),
    restart: Option<RestartReport>,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

/// The upper bound of the bucket holding quantile `q` of a cumulative histogram.
fn histogram_quantile(buckets: &[(f64, f64)], q: f64) -> f64 {
    let total = buckets.last().map(|b| b.1).unwrap_or(0.0);
    buckets
        .iter()
        .find(|(_, c)| *c >= total * q)
        .map(|(le, _)| *le)
        .unwrap_or(f64::NAN)
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

impl Report {
    fn print(&self, args: &Args) {
        let n = self.bindings as f64;
        let mut lat = self.admission.clone();
        lat.sort();
        let q = &self.quiet;
        let per = |x: f64| x / n / q.intervals;
        let (allowed, denied, unknown, missing) = self.verdicts;
        let right = allowed == self.expected.0 && denied == self.expected.1;
        let binary = args
            .operator
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "release (cargo bench)".into());
        println!();
        println!(
            "scale: {} bindings in {} namespaces, re-check every {:.0} s, operator {binary}{}{}",
            self.bindings,
            self.namespaces,
            self.recheck,
            if args.operator_args.is_empty() && args.operator_env.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    args.operator_env
                        .iter()
                        .chain(&args.operator_args)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            },
            args.wrap
                .as_ref()
                .map(|w| format!(" under {w}"))
                .unwrap_or_default(),
        );
        println!(
            "  create:   {:.1} s for {} creates ({:.0}/s, {} retried); admission (client-side create, webhook in the path) p50 {:.1} ms, p99 {:.1} ms; webhook alone p50 ≤ {:.1} ms, p99 ≤ {:.1} ms ({} reviews)",
            self.created,
            lat.len(),
            lat.len() as f64 / self.created,
            self.create_failures,
            percentile(&lat, 0.50),
            percentile(&lat, 0.99),
            histogram_quantile(&self.webhook_histogram, 0.50) * 1000.0,
            histogram_quantile(&self.webhook_histogram, 0.99) * 1000.0,
            self.admissions,
        );
        println!(
            "  converge: every binding has a status after {:.1} s{}; {} reconciles, {} AWS calls, {} binding writes (creates included), {} Event writes so far; RSS {:.0} MB",
            self.converged,
            if self.converge_ok { "" } else { " (TIMED OUT)" },
            self.reconciles_converge,
            self.aws_calls_converge,
            self.binding_writes_converge,
            self.event_writes_converge,
            mb(self.rss_converged_kb),
        );
        println!(
            "  verdicts: {allowed} Allowed, {denied} Denied, {unknown} Indeterminate, {missing} without status; expected {} Allowed, {} Denied: {}",
            self.expected.0,
            self.expected.1,
            if right { "right" } else { "WRONG" }
        );
        println!(
            "  quiet:    {:.0} s ({:.1} intervals): binding writes {:.0} ({:.3}/binding/interval), Event writes {:.0}, watch saw {} updates; reconciles {:.0} ({:.2}/binding/interval); AWS calls {:.0}; all API requests {:.0} ({:.1}/s); operator CPU {:.1} s ({:.0}% of a core)",
            q.seconds,
            q.intervals,
            q.binding_writes,
            per(q.binding_writes),
            q.event_writes,
            q.watched_updates,
            q.reconciles,
            per(q.reconciles),
            q.aws_calls,
            q.api_requests,
            q.api_requests / q.seconds,
            q.cpu_seconds,
            q.cpu_seconds / q.seconds * 100.0,
        );
        println!(
            "  memory:   peak RSS {:.0} MB ({:.1} KB/binding); RSS {:.0} MB at the start of the quiet period, {:.0} MB at its end",
            mb(self.peak_kb),
            self.peak_kb as f64 / n,
            mb(q.rss_start_kb),
            mb(q.rss_end_kb),
        );
        println!(
            "  objects:  a binding is {:.0} bytes of JSON as the API server sends it: managedFields {:.0}, status {:.0}",
            self.sizes.0, self.sizes.1, self.sizes.2
        );
        if let Some(r) = &self.restart {
            println!(
                "  restart:  ready after {:.1} s; every binding re-verified after {}; in {:.0} s: binding writes {:.0} ({:.2}/binding), Event writes {:.0}, reconciles {:.0}, AWS calls {:.0}; peak RSS {:.0} MB, {:.0} MB at the end",
                r.ready_after,
                r.all_verified
                    .map(|t| format!("{t:.1} s"))
                    .unwrap_or_else(|| "NEVER (in the window)".into()),
                r.window,
                r.binding_writes,
                r.binding_writes / n,
                r.event_writes,
                r.reconciles,
                r.aws_calls,
                mb(r.peak_kb),
                mb(r.rss_end_kb),
            );
        }
        println!();
        println!(
            "| label | bindings | all have status | webhook p50 / p99 | peak RSS | RSS end of quiet | writes/binding/interval | reconciles/binding/interval | AWS calls (converge / quiet) | verdicts right | restart: writes/binding, all re-verified, AWS calls, peak RSS |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
        println!(
            "| {} | {} | {:.0} s | {:.0} / {:.0} ms | {:.0} MB | {:.0} MB | {:.3} | {:.2} | {:.0} / {:.0} | {} | {} |",
            if args.label.is_empty() {
                "baseline"
            } else {
                &args.label
            },
            self.bindings,
            self.converged,
            percentile(&lat, 0.50),
            percentile(&lat, 0.99),
            mb(self.peak_kb),
            mb(q.rss_end_kb),
            per(q.binding_writes),
            per(q.reconciles),
            self.aws_calls_converge,
            q.aws_calls,
            if right { "yes" } else { "NO" },
            self.restart
                .as_ref()
                .map(|r| format!(
                    "{:.2}, {}, {:.0}, {:.0} MB",
                    r.binding_writes / n,
                    r.all_verified
                        .map(|t| format!("{t:.0} s"))
                        .unwrap_or_else(|| "not within the window".into()),
                    r.aws_calls,
                    mb(r.peak_kb)
                ))
                .unwrap_or_else(|| "skipped".into()),
        );
    }
}
