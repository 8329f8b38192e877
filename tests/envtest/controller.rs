//! The controller in-process against a real API server, wired as `run` wires it (service
//! accounts read through the API server), with the example-backed fake source standing in for
//! AWS.
//! Each test has its own API server: a controller watches every namespace.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use sqs_access_operator::binding::{ApiLookup, ClusterFacts};
use sqs_access_operator::controller::leader::LeaderElection;
use sqs_access_operator::controller::{self, Context, FIELD_MANAGER};
use sqs_access_operator::crd::SqsAccessBinding;
use sqs_access_operator::metrics::{Metrics, ResultLabels};

use crate::support::envtest::{ApiServer, Options, eventually};
use crate::support::fakes::{AsOrders, ExampleSource};

/// Healthy in the fake source.
pub const HEALTHY_QUEUE: &str = "arn:aws:sqs:us-east-1:222222222222:orders";
/// Lacks the identity policy in the fake source.
pub const DENIED_QUEUE: &str = "arn:aws:sqs:us-east-1:111111111111:orders";
pub const ROLE: &str = "arn:aws:iam::111111111111:role/orders-producer";
pub const ISSUER: &str =
    "https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";

const WAIT: Duration = Duration::from_secs(30);

/// A ServiceAccount, annotated with the example role or not.
pub async fn service_account(client: &Client, ns: &str, name: &str, role: Option<&str>) {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let mut sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}});
    if let Some(r) = role {
        sa["metadata"]["annotations"] = json!({"eks.amazonaws.com/role-arn": r});
    }
    api.create(&PostParams::default(), &serde_json::from_value(sa).unwrap())
        .await
        .unwrap();
}

pub async fn binding(client: &Client, ns: &str, name: &str, queue: &str) -> SqsAccessBinding {
    let api: Api<SqsAccessBinding> = Api::namespaced(client.clone(), ns);
    let b = serde_json::from_value(json!({
        "apiVersion": "sqsaccess.io/v1alpha1", "kind": "SqsAccessBinding",
        "metadata": {"name": name},
        "spec": {"serviceAccountName": "producer", "queue": queue, "access": ["Send"]}
    }))
    .unwrap();
    api.create(&PostParams::default(), &b).await.unwrap()
}

/// Waits until the binding's Ready condition has `status`.
pub async fn wait_ready(client: &Client, ns: &str, name: &str, status: &str) -> SqsAccessBinding {
    let api: Api<SqsAccessBinding> = Api::namespaced(client.clone(), ns);
    eventually(WAIT, &format!("{ns}/{name} Ready={status}"), || async {
        let b = api.get(name).await.ok()?;
        (ready(&b) == Some(status)).then_some(b)
    })
    .await
}

pub fn ready(b: &SqsAccessBinding) -> Option<&str> {
    b.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
}

/// The binding's Events, oldest first.
pub async fn events(client: &Client, ns: &str, name: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let mut evs: Vec<Event> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect();
    evs.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    evs
}

/// Waits for an Event with this reason about the binding.
pub async fn wait_event(client: &Client, ns: &str, name: &str, reason: &str) -> Event {
    eventually(
        WAIT,
        &format!("an Event {reason} for {ns}/{name}"),
        || async {
            events(client, ns, name)
                .await
                .into_iter()
                .find(|e| e.reason.as_deref() == Some(reason))
        },
    )
    .await
}

/// A running controller; stopped when dropped.
struct Running {
    ctx: Arc<Context>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Running {
    fn reconciles(&self) -> u64 {
        self.ctx
            .metrics
            .reconciles
            .get_or_create(&ResultLabels { result: "ok" })
            .get()
    }
}

async fn start_controller(client: Client) -> Running {
    let facts = ClusterFacts {
        service_accounts: Arc::new(ApiLookup(client.clone())),
        oidc_issuer: Some(ISSUER.into()),
    };
    let ctx = Arc::new(
        Context::new(
            client,
            facts,
            Arc::new(AsOrders(ExampleSource)),
            Metrics::default(),
            Duration::from_secs(300),
        )
        .with_pod_watch(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(controller::run(
        ctx.clone(),
        async move {
            let _ = stopped.await;
        },
        || {},
    ));
    Running { ctx, _stop: stop }
}

fn writes_to(log: &Mutex<Vec<String>>, fragment: &str) -> Vec<String> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|w| w.contains(fragment))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_server_side_applied_once_and_a_second_pass_writes_nothing() {
    let Some(server) = ApiServer::start(Options::default()) else {
        return;
    };
    server.install_crd().await;
    let admin = server.client().await;
    let ns = server.namespace("ctl").await;
    service_account(&admin, &ns, "producer", Some(ROLE)).await;
    binding(&admin, &ns, "healthy", HEALTHY_QUEUE).await;
    binding(&admin, &ns, "denied", DENIED_QUEUE).await;
    let (client, writes) = server.recording_client().await;
    let ctl = start_controller(client).await;

    // Allowed: conditions, verdict, role, per-action results.
    let b = wait_ready(&admin, &ns, "healthy", "True").await;
    let st = b.status.clone().unwrap();
    assert_eq!(st.verdict.as_deref(), Some("Allowed"));
    assert_eq!(st.reason.as_deref(), Some("Allowed"));
    assert_eq!(st.observed_generation, b.metadata.generation);
    let denied = st.conditions.iter().find(|c| c.type_ == "Denied").unwrap();
    assert_eq!(denied.status, "False");
    assert!(
        st.conditions
            .iter()
            .all(|c| c.observed_generation == b.metadata.generation)
    );
    assert_eq!(st.role.as_ref().map(|r| r.arn.as_str()), Some(ROLE));
    assert!(
        st.actions
            .iter()
            .any(|a| a.action == "sqs:SendMessage" && a.decision == "Allow"),
        "{:?}",
        st.actions
    );
    assert!(st.last_checked.is_some());
    // Written by server-side apply, to the status subresource, under the operator's manager.
    let managed = b.metadata.managed_fields.clone().unwrap_or_default();
    assert!(
        managed
            .iter()
            .any(|m| m.manager.as_deref() == Some(FIELD_MANAGER)
                && m.operation.as_deref() == Some("Apply")
                && m.subresource.as_deref() == Some("status")),
        "{managed:?}"
    );

    // Denied: the reason, its layer, the fix with the statement to add, a Warning Event.
    let d = wait_ready(&admin, &ns, "denied", "False").await;
    let st = d.status.clone().unwrap();
    assert_eq!(st.reason.as_deref(), Some("IdentityPolicyDoesNotAllow"));
    assert_eq!(st.reasons[0].layer, "identityPolicy");
    assert_eq!(st.reasons[0].action.as_deref(), Some("sqs:SendMessage"));
    let fix = &st.fixes[0];
    assert!(fix.target.contains(ROLE), "{fix:?}");
    assert!(
        fix.statement
            .as_deref()
            .unwrap_or_default()
            .contains("sqs:SendMessage"),
        "{fix:?}"
    );
    let denied = st.conditions.iter().find(|c| c.type_ == "Denied").unwrap();
    assert_eq!(
        (denied.status.as_str(), denied.reason.as_str()),
        ("True", "IdentityPolicyDoesNotAllow")
    );
    assert!(denied.message.contains("Fix:"), "{}", denied.message);
    let ev = wait_event(&admin, &ns, "denied", "IdentityPolicyDoesNotAllow").await;
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    assert_eq!(ev.reporting_controller.as_deref(), Some(FIELD_MANAGER));
    assert!(ev.note.unwrap_or_default().contains("sqs:SendMessage"));
    let ev = wait_event(&admin, &ns, "healthy", "Ready").await;
    assert_eq!(ev.type_.as_deref(), Some("Normal"));

    // What a user reads: `kubectl describe` shows the conditions, the fix and the Event.
    let describe = server
        .kubectl_ok(&["-n", &ns, "describe", "sqsab", "denied"], None)
        .await;
    for needle in ["IdentityPolicyDoesNotAllow", "Fix:", "Events:", "Warning"] {
        assert!(
            describe.contains(needle),
            "describe lacks {needle}:\n{describe}"
        );
    }

    // Exactly one status write and one Event per binding.
    for name in ["healthy", "denied"] {
        let path = format!("/namespaces/{ns}/sqsaccessbindings/{name}/status");
        assert_eq!(
            writes_to(&writes, &path).len(),
            1,
            "{:?}",
            writes.lock().unwrap()
        );
        assert_eq!(events(&admin, &ns, name).await.len(), 1);
    }
    let all = writes.lock().unwrap().clone();
    assert_eq!(all.len(), 4, "two status patches, two Events: {all:?}");
    assert!(
        all.iter()
            .all(|w| w.starts_with("PATCH ") && w.ends_with("/status")
                || w == &format!("POST /apis/events.k8s.io/v1/namespaces/{ns}/events")),
        "{all:?}"
    );

    // Silence: a change that is not the spec (a label edit, like the controller's own status
    // writes) does not even trigger a reconcile.
    let api: Api<SqsAccessBinding> = Api::namespaced(admin.clone(), &ns);
    let before = ctl.reconciles();
    let labelled = api
        .patch(
            "healthy",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": "orders"}}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(ctl.reconciles(), before, "a label edit reconciles nothing");

    // A second pass with nothing changed (a touch of the service account triggers it) writes
    // nothing.
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), &ns);
    accounts
        .patch(
            "producer",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
        )
        .await
        .unwrap();
    eventually(
        WAIT,
        "a reconcile after the service account touch",
        || async { (ctl.reconciles() >= before + 2).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        writes.lock().unwrap().len(),
        4,
        "{:?}",
        writes.lock().unwrap()
    );
    let after = api.get("healthy").await.unwrap();
    assert_eq!(
        after.metadata.resource_version, labelled.metadata.resource_version,
        "the object is unchanged since the label edit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_annotation_change_rechecks_with_an_event_per_transition() {
    let Some(server) = ApiServer::start(Options::default()) else {
        return;
    };
    server.install_crd().await;
    let admin = server.client().await;
    let ns = server.namespace("ctl-sa").await;
    service_account(&admin, &ns, "producer", Some(ROLE)).await;
    binding(&admin, &ns, "producer-orders", HEALTHY_QUEUE).await;
    let _ctl = start_controller(admin.clone()).await;
    wait_ready(&admin, &ns, "producer-orders", "True").await;
    wait_event(&admin, &ns, "producer-orders", "Ready").await;

    // The role annotation goes: only the ServiceAccount watch can trigger this re-check (the
    // periodic one is 5 minutes away).
    server
        .kubectl_ok(
            &[
                "-n",
                &ns,
                "annotate",
                "serviceaccount",
                "producer",
                "eks.amazonaws.com/role-arn-",
            ],
            None,
        )
        .await;
    let b = wait_ready(&admin, &ns, "producer-orders", "False").await;
    assert_eq!(
        b.status.unwrap().reason.as_deref(),
        Some("ServiceAccountHasNoRole")
    );
    let ev = wait_event(&admin, &ns, "producer-orders", "ServiceAccountHasNoRole").await;
    assert_eq!(ev.type_.as_deref(), Some("Warning"));

    // And comes back.
    server
        .kubectl_ok(
            &[
                "-n",
                &ns,
                "annotate",
                "serviceaccount",
                "producer",
                &format!("eks.amazonaws.com/role-arn={ROLE}"),
            ],
            None,
        )
        .await;
    wait_ready(&admin, &ns, "producer-orders", "True").await;
    eventually(WAIT, "a second Ready Event", || async {
        let evs = events(&admin, &ns, "producer-orders").await;
        let ready: u32 = evs
            .iter()
            .filter(|e| e.reason.as_deref() == Some("Ready"))
            .map(|e| e.series.as_ref().map_or(1, |s| s.count as u32))
            .sum();
        (ready >= 2).then_some(())
    })
    .await;
    // One Event per transition, in order, and nothing for the checks in between.
    let reasons: Vec<String> = events(&admin, &ns, "producer-orders")
        .await
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert_eq!(
        reasons,
        ["Ready", "ServiceAccountHasNoRole", "Ready"],
        "one Event per transition"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_is_taken_renewed_and_respected() {
    let Some(server) = ApiServer::shared() else {
        return;
    };
    let client = server.client().await;
    let ns = server.namespace("lease").await;
    let (tx, mut leading) = tokio::sync::watch::channel(false);
    let elector = tokio::spawn(
        LeaderElection::new(client.clone(), &ns, "sqs-access-operator", "pod-a").run(tx),
    );
    eventually(WAIT, "pod-a leading", || {
        let v = *leading.borrow_and_update();
        async move { v.then_some(()) }
    })
    .await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let first = leases
        .get("sqs-access-operator")
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(first.holder_identity.as_deref(), Some("pod-a"));
    assert_eq!(first.lease_duration_seconds, Some(15));
    // Another replica is refused while the lease is fresh.
    let b = LeaderElection::new(client.clone(), &ns, "sqs-access-operator", "pod-b");
    assert!(!b.try_acquire().await.unwrap());
    // The holder renews it (every 5 s).
    let renewed = eventually(Duration::from_secs(20), "a renewal", || async {
        let spec = leases.get("sqs-access-operator").await.ok()?.spec?;
        (spec.renew_time != first.renew_time).then_some(spec)
    })
    .await;
    assert_eq!(renewed.holder_identity.as_deref(), Some("pod-a"));
    assert_eq!(renewed.acquire_time, first.acquire_time);
    assert!(*leading.borrow());
    elector.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_account_cache_follows_changes_across_an_api_server_restart() {
    let Some(server) = ApiServer::start(Options::default()) else {
        return;
    };
    let admin = server.client().await;
    let ns = server.namespace("sa-cache").await;
    service_account(&admin, &ns, "producer", Some(ROLE)).await;
    let seen: Arc<Mutex<Vec<String>>> = Default::default();
    let log = seen.clone();
    let (store, watch) = controller::account_store(server.client().await, move |ns, name| {
        log.lock().unwrap().push(format!("{ns}/{name}"));
    });
    let task = tokio::spawn(watch);
    let key = format!("{ns}/producer");
    eventually(WAIT, "the account in the cache", || async {
        seen.lock().unwrap().contains(&key).then_some(())
    })
    .await;
    assert_eq!(store.state().len(), 1);
    server.restart(Duration::from_secs(2)).await;
    let before = seen.lock().unwrap().len();
    let sa: Api<ServiceAccount> = Api::namespaced(admin.clone(), &ns);
    sa.delete("producer", &Default::default()).await.unwrap();
    // The watch broke and its resource version is too old after the restart: the re-list finds
    // the account gone, without a deletion event, and still says so.
    eventually(
        Duration::from_secs(60),
        "the deletion seen after the restart",
        || async {
            (seen.lock().unwrap()[before..].contains(&key) && store.state().is_empty())
                .then_some(())
        },
    )
    .await;
    task.abort();
}

/// A pod of `producer` as the API server stores it after the EKS webhook (or not) mutated it:
/// `role` injected by IRSA (with the token volume), `static_keys` from a Secret, or nothing.
async fn pod(client: &Client, ns: &str, name: &str, role: Option<&str>, static_keys: bool) {
    let mut env = vec![];
    let mut mounts = vec![];
    let mut volumes = vec![];
    if let Some(r) = role {
        env.push(json!({"name": "AWS_ROLE_ARN", "value": r}));
        env.push(json!({"name": "AWS_WEB_IDENTITY_TOKEN_FILE",
            "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"}));
        mounts.push(json!({"name": "aws-iam-token", "readOnly": true,
            "mountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount"}));
        volumes.push(json!({"name": "aws-iam-token", "projected": {"sources": [
            {"serviceAccountToken": {"audience": "sts.amazonaws.com", "expirationSeconds": 86400, "path": "token"}}]}}));
    }
    if static_keys {
        env.push(json!({"name": "AWS_ACCESS_KEY_ID",
            "valueFrom": {"secretKeyRef": {"name": "legacy-aws", "key": "id"}}}));
    }
    let p: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "producer", "pod-template-hash": "7c9d8f6b5"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "producer-7c9d8f6b5", "uid": "6a3c2f0e-0000-4000-8000-000000000001",
                "controller": true}]},
        "spec": {"serviceAccountName": "producer", "containers": [{"name": "app",
            "image": "example/producer:1.0", "env": env, "volumeMounts": mounts}], "volumes": volumes}
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &p)
        .await
        .unwrap();
}

/// Waits until the WorkloadCredentials condition has this reason.
async fn wait_workload(client: &Client, ns: &str, name: &str, reason: &str) -> SqsAccessBinding {
    let api: Api<SqsAccessBinding> = Api::namespaced(client.clone(), ns);
    eventually(WAIT, &format!("{ns}/{name} workload {reason}"), || async {
        let b = api.get(name).await.ok()?;
        let w = b.status.as_ref()?.workload.as_ref()?;
        (w.reason == reason).then_some(b)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_say_whether_they_run_with_the_checked_role_and_what_to_restart() {
    let Some(server) = ApiServer::start(Options::default()) else {
        return;
    };
    server.install_crd().await;
    let admin = server.client().await;
    let ns = server.namespace("pods").await;
    service_account(&admin, &ns, "producer", Some(ROLE)).await;
    let _ctl = start_controller(server.client().await).await;
    binding(&admin, &ns, "healthy", HEALTHY_QUEUE).await;
    // No pod yet: Unknown.
    let b = wait_workload(&admin, &ns, "healthy", "NoPods").await;
    let cond = |b: &SqsAccessBinding| {
        b.status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .find(|c| c.type_ == "WorkloadCredentials")
            .map(|c| (c.status.clone(), c.reason.clone()))
            .unwrap()
    };
    assert_eq!(cond(&b).0, "Unknown");

    // A pod injected with the role: True. (A pod created re-checks at once: no timer.)
    pod(&admin, &ns, "producer-7c9d8f6b5-aaaaa", Some(ROLE), false).await;
    let b = wait_workload(&admin, &ns, "healthy", "PodsUseCheckedRole").await;
    assert_eq!(cond(&b).0, "True");
    assert_eq!(
        ready(&b),
        Some("True"),
        "Ready keeps meaning the policies allow"
    );

    // A pod started before the annotation changed still runs as the old role.
    pod(
        &admin,
        &ns,
        "producer-7c9d8f6b5-bbbbb",
        Some("arn:aws:iam::111111111111:role/orders-producer-v1"),
        false,
    )
    .await;
    let b = wait_workload(&admin, &ns, "healthy", "PodsNeedRestart").await;
    let w = b.status.as_ref().unwrap().workload.clone().unwrap();
    assert_eq!((w.pods.total, w.pods.current, w.pods.stale), (2, 1, 1));
    assert_eq!(
        w.problems[0].pods,
        vec!["producer-7c9d8f6b5-bbbbb".to_string()]
    );
    assert!(
        w.problems[0]
            .fix
            .contains("kubectl rollout restart deployment/producer"),
        "{:?}",
        w.problems[0]
    );
    assert_eq!(cond(&b).0, "False");
    let ev = wait_event(&admin, &ns, "healthy", "PodsNeedRestart").await;
    assert_eq!(ev.type_.as_deref(), Some("Warning"));

    // Static keys win over everything, and are named first; a pod with nothing injected counts
    // as not injected.
    pod(&admin, &ns, "producer-7c9d8f6b5-ccccc", Some(ROLE), true).await;
    pod(&admin, &ns, "producer-7c9d8f6b5-ddddd", None, false).await;
    let api: Api<SqsAccessBinding> = Api::namespaced(admin.clone(), &ns);
    let w = eventually(WAIT, "both new pods counted", || async {
        let w = api.get("healthy").await.ok()?.status?.workload?;
        (w.pods.total == 4).then_some(w)
    })
    .await;
    assert_eq!(w.reason, "StaticCredentialsOverride");
    assert_eq!(
        (
            w.pods.total,
            w.pods.current,
            w.pods.stale,
            w.pods.not_injected,
            w.pods.overridden
        ),
        (4, 1, 1, 1, 1)
    );
    let codes: Vec<&str> = w.problems.iter().map(|p| p.code.as_str()).collect();
    assert_eq!(
        codes,
        [
            "StaticCredentialsOverride",
            "PodsNotInjected",
            "PodsNeedRestart"
        ]
    );

    // The fix: the old pods go, a new one is created with the role: True again.
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
    for p in [
        "producer-7c9d8f6b5-bbbbb",
        "producer-7c9d8f6b5-ccccc",
        "producer-7c9d8f6b5-ddddd",
    ] {
        pods.delete(p, &Default::default()).await.unwrap();
    }
    pod(&admin, &ns, "producer-7c9d8f6b5-eeeee", Some(ROLE), false).await;
    // (The deletions may be seen before the new pod: wait for both pods with the role.)
    let api: Api<SqsAccessBinding> = Api::namespaced(admin.clone(), &ns);
    eventually(WAIT, "PodsUseCheckedRole with the two pods", || async {
        let b = api.get("healthy").await.ok()?;
        let w = b.status.as_ref()?.workload.clone()?;
        (w.reason == "PodsUseCheckedRole" && w.pods.total == 2).then_some(())
    })
    .await;
    let ev = wait_event(&admin, &ns, "healthy", "PodsUseCheckedRole").await;
    assert_eq!(ev.type_.as_deref(), Some("Normal"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_identity_binding_without_an_irsa_annotation_is_ready() {
    let Some(server) = ApiServer::start(Options::default()) else {
        return;
    };
    server.install_crd().await;
    let admin = server.client().await;
    let ns = server.namespace("pi").await;
    // No eks.amazonaws.com/role-arn: the (fake) cluster has a Pod Identity association for it.
    let api: Api<ServiceAccount> = Api::namespaced(admin.clone(), &ns);
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "producer",
                "annotations": {"test.sqsaccess.io/example": "pod-identity-healthy"}}}))
        .unwrap(),
    )
    .await
    .unwrap();
    let _ctl = start_controller(server.client().await).await;
    binding(
        &admin,
        &ns,
        "pi",
        "arn:aws:sqs:us-east-1:111111111111:orders",
    )
    .await;
    let b = wait_ready(&admin, &ns, "pi", "True").await;
    let role = b.status.unwrap().role.unwrap();
    assert_eq!(role.source, "podIdentityAssociation");
    assert_eq!(role.mechanism.as_deref(), Some("PodIdentity"));
    assert_eq!(role.association_id.as_deref(), Some("a-0orders0producer1"));
}
