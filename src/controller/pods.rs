//! The pods themselves: one watch of all pods, each reduced on arrival to the few facts that
//! decide its AWS credentials ([`PodEvidence`]: the AWS variables, token volumes, users,
//! owner), kept by namespace and service account. Full pod objects are never stored. A change
//! of a service account's pods (one created, deleted, or its credentials changed) re-checks the
//! bindings on that account.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use crate::diagnosis::snapshot::{
    ContainerEvidence, MountEvidence, PodEvidence, PodOwner, TokenVolumeEvidence,
};

/// The environment variables that decide which credentials an AWS SDK uses.
const AWS_VARS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_SESSION_NAME",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_STS_REGIONAL_ENDPOINTS",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    // A proxy the SDK would send the Pod Identity agent's requests through.
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// (namespace, service account) → its pods.
type ByAccount = HashMap<(String, String), AccountPods>;

/// What the replicas of a workload share: a pod's facts without its name, creation time,
/// phase and deletion (containers, variables, token volumes, owner, security context).
type Shape = Arc<PodEvidence>;

/// One pod as kept: what is its own, and its shape, shared with the other pods of the account
/// that have the same (a Deployment's replicas: one copy, not one per pod).
#[derive(Debug, Clone)]
struct Kept {
    created_at: Option<String>,
    phase: Option<String>,
    deleting: bool,
    shape: Shape,
}

impl PartialEq for Kept {
    fn eq(&self, other: &Self) -> bool {
        // Shapes are unique per account, so the same shape is the same allocation.
        self.created_at == other.created_at
            && self.phase == other.phase
            && self.deleting == other.deleting
            && Arc::ptr_eq(&self.shape, &other.shape)
    }
}

/// The pods of one service account, and their distinct shapes.
#[derive(Default)]
struct AccountPods {
    pods: BTreeMap<String, Kept>,
    shapes: Vec<Shape>,
}

impl AccountPods {
    /// Splits a pod's facts into its own and its (shared) shape; returns its name too.
    fn keep(&mut self, mut facts: PodEvidence) -> (String, Kept) {
        let name = std::mem::take(&mut facts.name);
        let created_at = facts.created_at.take();
        let phase = facts.phase.take();
        let deleting = std::mem::take(&mut facts.deleting);
        let shape = match self.shapes.iter().find(|s| ***s == facts) {
            Some(s) => s.clone(),
            None => {
                let s = Arc::new(facts);
                self.shapes.push(s.clone());
                s
            }
        };
        (
            name,
            Kept {
                created_at,
                phase,
                deleting,
                shape,
            },
        )
    }

    /// Forgets shapes no pod has any more.
    fn prune(&mut self) {
        self.shapes.retain(|s| Arc::strong_count(s) > 1);
    }

    fn evidence(&self) -> Vec<PodEvidence> {
        self.pods
            .iter()
            .map(|(name, k)| PodEvidence {
                name: name.clone(),
                created_at: k.created_at.clone(),
                phase: k.phase.clone(),
                deleting: k.deleting,
                ..(*k.shape).clone()
            })
            .collect()
    }
}

/// The pods of every service account, as facts.
#[derive(Default)]
pub struct PodIndex {
    by_account: Mutex<ByAccount>,
    /// pod (namespace, name) → its service account, to find it again on deletion.
    account_of: Mutex<HashMap<(String, String), String>>,
    synced: std::sync::atomic::AtomicBool,
    synced_now: tokio::sync::Notify,
}

impl PodIndex {
    /// Waits until the first full list arrived.
    pub async fn wait_synced(&self) {
        loop {
            let notified = self.synced_now.notified();
            if self.synced.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// The pods of a service account; `None` until the first full list arrived.
    pub fn pods(&self, namespace: &str, service_account: &str) -> Option<Vec<PodEvidence>> {
        if !self.synced.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        let m = self.by_account.lock().expect("lock");
        Some(
            m.get(&(namespace.to_string(), service_account.to_string()))
                .map(AccountPods::evidence)
                .unwrap_or_default(),
        )
    }

    /// How many pods are kept.
    pub fn len(&self) -> usize {
        self.account_of.lock().expect("lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records a pod; returns its service account when what it holds changed.
    pub fn apply(&self, pod: &Pod) -> Option<(String, String)> {
        self.apply_entry(PodEntry::of(pod))
    }

    fn apply_entry(&self, entry: PodEntry) -> Option<(String, String)> {
        let PodEntry {
            namespace: ns,
            service_account: sa,
            facts,
        } = entry;
        let name = facts.name.clone();
        let previous = self
            .account_of
            .lock()
            .expect("lock")
            .insert((ns.clone(), name.clone()), sa.clone());
        let mut m = self.by_account.lock().expect("lock");
        // A pod's service account cannot change, but be safe: drop it from the old one.
        if let Some(old) = previous.filter(|o| *o != sa)
            && let Some(pods) = m.get_mut(&(ns.clone(), old))
        {
            pods.pods.remove(&name);
            pods.prune();
        }
        let account = m.entry((ns.clone(), sa.clone())).or_default();
        let (name, kept) = account.keep(facts);
        if account.pods.get(&name) == Some(&kept) {
            return None;
        }
        account.pods.insert(name, kept);
        account.prune();
        Some((ns, sa))
    }

    fn delete(&self, namespace: &str, name: &str) -> Option<(String, String)> {
        let sa = self
            .account_of
            .lock()
            .expect("lock")
            .remove(&(namespace.to_string(), name.to_string()))?;
        let mut m = self.by_account.lock().expect("lock");
        let key = (namespace.to_string(), sa);
        if let Some(pods) = m.get_mut(&key) {
            pods.pods.remove(name);
            pods.prune();
            if pods.pods.is_empty() {
                m.remove(&key);
            }
        }
        Some(key)
    }

    /// Replaces everything after a full (re-)list; returns the accounts whose pods changed.
    pub fn replace(&self, pods: Vec<PodEntry>) -> Vec<(String, String)> {
        let mut changed: Vec<(String, String)> = Vec::new();
        let mut seen: std::collections::HashSet<(String, String)> = Default::default();
        for p in pods {
            seen.insert((p.namespace.clone(), p.facts.name.clone()));
            if let Some(k) = self.apply_entry(p) {
                changed.push(k);
            }
        }
        let gone: Vec<(String, String)> = self
            .account_of
            .lock()
            .expect("lock")
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for (ns, name) in gone {
            changed.extend(self.delete(&ns, &name));
        }
        self.synced
            .store(true, std::sync::atomic::Ordering::Release);
        self.synced_now.notify_waiters();
        changed.sort();
        changed.dedup();
        changed
    }
}

/// Watches every pod until the stream ends (never, in practice), keeping `index` current and
/// calling `changed(namespace, service_account)` when an account's pods changed.
pub async fn watch(
    client: Client,
    index: Arc<PodIndex>,
    changed: impl Fn(&str, &str) + Send + Sync + 'static,
) {
    let api: Api<Pod> = Api::all(client);
    let mut relist: Vec<PodEntry> = Vec::new();
    let mut stream = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
    while let Some(ev) = stream.next().await {
        let touched: Vec<(String, String)> = match ev {
            Ok(watcher::Event::Init) => {
                relist.clear();
                vec![]
            }
            // Only the facts are kept while a list is in progress.
            Ok(watcher::Event::InitApply(p)) => {
                relist.push(PodEntry::of(&p));
                vec![]
            }
            Ok(watcher::Event::InitDone) => index.replace(std::mem::take(&mut relist)),
            Ok(watcher::Event::Apply(p)) => index.apply(&p).into_iter().collect(),
            Ok(watcher::Event::Delete(p)) => index
                .delete(&p.namespace().unwrap_or_default(), &p.name_any())
                .into_iter()
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "watching pods failed; retrying");
                vec![]
            }
        };
        for (ns, sa) in touched {
            changed(&ns, &sa);
        }
    }
}

/// A pod as the index keeps it: where it is, whose it is, its facts (the pod itself is dropped
/// on arrival, also while a list is in progress).
pub struct PodEntry {
    pub namespace: String,
    pub service_account: String,
    pub facts: PodEvidence,
}

impl PodEntry {
    pub fn of(pod: &Pod) -> PodEntry {
        PodEntry {
            namespace: pod.namespace().unwrap_or_default(),
            service_account: pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_else(|| "default".into()),
            facts: pod_facts(pod),
        }
    }
}

/// The facts of a pod that decide its AWS credentials.
pub fn pod_facts(p: &Pod) -> PodEvidence {
    let none = k8s_openapi::api::core::v1::PodSpec::default();
    let spec = p.spec.as_ref().unwrap_or(&none);
    let sc = spec.security_context.as_ref();
    let token_volumes = spec
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| {
            let sources = v.projected.as_ref()?.sources.as_ref()?;
            let t = sources
                .iter()
                .find_map(|s| s.service_account_token.as_ref())?;
            Some(TokenVolumeEvidence {
                name: v.name.clone(),
                audience: t.audience.clone(),
                path: Some(t.path.clone()),
            })
        })
        .collect::<Vec<_>>();
    let token_names: Vec<&str> = token_volumes.iter().map(|v| v.name.as_str()).collect();
    let container = |c: &Container, init: bool| ContainerEvidence {
        name: c.name.clone(),
        init,
        run_as_user: c.security_context.as_ref().and_then(|s| s.run_as_user),
        env: c
            .env
            .iter()
            .flatten()
            .filter(|e| AWS_VARS.contains(&e.name.as_str()))
            .map(|e| {
                let v = match (&e.value, &e.value_from) {
                    (Some(v), _) => v.clone(),
                    (None, Some(f)) => match (&f.secret_key_ref, &f.config_map_key_ref) {
                        (Some(s), _) => format!("valueFrom:secretKeyRef:{}/{}", s.name, s.key),
                        (_, Some(c)) => format!("valueFrom:configMapKeyRef:{}/{}", c.name, c.key),
                        _ => "valueFrom".into(),
                    },
                    (None, None) => String::new(),
                };
                (e.name.clone(), v)
            })
            .collect(),
        env_from: c
            .env_from
            .iter()
            .flatten()
            .filter_map(|f| {
                f.secret_ref
                    .as_ref()
                    .map(|s| format!("secret/{}", s.name))
                    .or_else(|| {
                        f.config_map_ref
                            .as_ref()
                            .map(|c| format!("configmap/{}", c.name))
                    })
            })
            .collect(),
        mounts: c
            .volume_mounts
            .iter()
            .flatten()
            .filter(|m| token_names.contains(&m.name.as_str()))
            .map(|m| MountEvidence {
                volume: m.name.clone(),
                path: m.mount_path.clone(),
            })
            .collect(),
    };
    let mut containers: Vec<ContainerEvidence> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| container(c, true))
        .collect();
    containers.extend(spec.containers.iter().map(|c| container(c, false)));
    PodEvidence {
        name: p.name_any(),
        created_at: p
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string()),
        owner: owner(p),
        phase: p.status.as_ref().and_then(|s| s.phase.clone()),
        deleting: p.metadata.deletion_timestamp.is_some(),
        fs_group: sc.and_then(|s| s.fs_group),
        run_as_user: sc.and_then(|s| s.run_as_user),
        token_volumes,
        containers,
        placement: placement(spec),
    }
}

/// `fargate` or `windows`: where EKS Pod Identity is not available (see [`PodEvidence`]).
fn placement(spec: &k8s_openapi::api::core::v1::PodSpec) -> Option<String> {
    let fargate = spec.scheduler_name.as_deref() == Some("fargate-scheduler")
        || spec
            .node_name
            .as_deref()
            .is_some_and(|n| n.starts_with("fargate-"));
    let os = spec.os.as_ref().map(|o| o.name.as_str()).or_else(|| {
        spec.node_selector
            .as_ref()
            .and_then(|s| s.get("kubernetes.io/os"))
            .map(String::as_str)
    });
    if fargate {
        Some("fargate".into())
    } else if os == Some("windows") {
        Some("windows".into())
    } else {
        None
    }
}

/// The workload that re-creates a pod: a ReplicaSet made by a Deployment is named by the
/// Deployment (the ReplicaSet's name is the Deployment's plus `-<pod-template-hash>`).
fn owner(p: &Pod) -> Option<PodOwner> {
    let r = p
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))?;
    let hash = p
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("pod-template-hash"));
    if r.kind == "ReplicaSet"
        && let Some(h) = hash
        && let Some(deploy) = r.name.strip_suffix(&format!("-{h}"))
    {
        return Some(PodOwner {
            kind: "Deployment".into(),
            name: deploy.to_string(),
        });
    }
    Some(PodOwner {
        kind: r.kind.clone(),
        name: r.name.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pod as the API server returns it after the EKS pod identity webhook mutated it.
    fn injected_pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "producer-7c9d8f6b5-x2k4p", "namespace": "orders",
                "creationTimestamp": "2026-11-25T10:00:00Z",
                "labels": {"app": "producer", "pod-template-hash": "7c9d8f6b5"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "producer-7c9d8f6b5", "uid": "3f1b", "controller": true,
                    "blockOwnerDeletion": true}],
                "managedFields": [{"manager": "kube-controller-manager", "operation": "Update"}]
            },
            "spec": {
                "serviceAccountName": "producer",
                "securityContext": {"fsGroup": 65534},
                "containers": [{
                    "name": "app", "image": "example/producer:1.2.3",
                    "env": [
                        {"name": "LOG_LEVEL", "value": "info"},
                        {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"},
                        {"name": "AWS_DEFAULT_REGION", "value": "us-east-1"},
                        {"name": "AWS_REGION", "value": "us-east-1"},
                        {"name": "AWS_ROLE_ARN", "value": "arn:aws:iam::111111111111:role/orders-producer"},
                        {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"},
                        {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "legacy", "key": "id"}}}
                    ],
                    "envFrom": [{"secretRef": {"name": "more-env"}}],
                    "volumeMounts": [
                        {"name": "kube-api-access-abcde", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true},
                        {"name": "aws-iam-token", "mountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount", "readOnly": true}
                    ]
                }],
                "volumes": [
                    {"name": "aws-iam-token", "projected": {"defaultMode": 420, "sources": [
                        {"serviceAccountToken": {"audience": "sts.amazonaws.com", "expirationSeconds": 86400, "path": "token"}}]}},
                    {"name": "kube-api-access-abcde", "projected": {"defaultMode": 420, "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}}
                ]
            },
            "status": {"phase": "Running", "podIP": "10.0.1.23"}
        }))
        .unwrap()
    }

    #[test]
    fn a_pod_becomes_the_facts_that_decide_its_credentials() {
        let f = pod_facts(&injected_pod());
        assert_eq!(
            f.owner,
            Some(PodOwner {
                kind: "Deployment".into(),
                name: "producer".into()
            })
        );
        assert_eq!(f.phase.as_deref(), Some("Running"));
        assert_eq!(f.fs_group, Some(65534));
        assert_eq!(f.created_at.as_deref(), Some("2026-11-25T10:00:00Z"));
        let c = &f.containers[0];
        assert!(
            !c.env.contains_key("LOG_LEVEL"),
            "only AWS variables are kept"
        );
        assert_eq!(
            c.env["AWS_ACCESS_KEY_ID"],
            "valueFrom:secretKeyRef:legacy/id"
        );
        assert_eq!(c.env_from, vec!["secret/more-env".to_string()]);
        // The token volume with an audience and its mount, not the API access volume's mount.
        let aws = f
            .token_volumes
            .iter()
            .find(|v| v.name == "aws-iam-token")
            .unwrap();
        assert_eq!(aws.audience.as_deref(), Some("sts.amazonaws.com"));
        assert!(c.mounts.iter().any(|m| m.volume == "aws-iam-token"));
    }

    #[test]
    fn where_a_pod_runs_is_kept_when_pod_identity_cannot_reach_it() {
        let on = |spec: serde_json::Value| {
            let mut p = serde_json::to_value(injected_pod()).unwrap();
            for (k, v) in spec.as_object().unwrap() {
                p["spec"][k] = v.clone();
            }
            pod_facts(&serde_json::from_value(p).unwrap()).placement
        };
        assert_eq!(
            on(serde_json::json!({"nodeName": "ip-10-0-1-23.ec2.internal"})),
            None
        );
        // What EKS Fargate's admission sets, and the node it then binds the pod to.
        assert_eq!(
            on(serde_json::json!({"schedulerName": "fargate-scheduler"})).as_deref(),
            Some("fargate")
        );
        assert_eq!(
            on(serde_json::json!({"nodeName": "fargate-ip-10-0-1-23.ec2.internal"})).as_deref(),
            Some("fargate")
        );
        assert_eq!(
            on(serde_json::json!({"nodeSelector": {"kubernetes.io/os": "windows"}})).as_deref(),
            Some("windows")
        );
        assert_eq!(
            on(serde_json::json!({"os": {"name": "windows"}})).as_deref(),
            Some("windows")
        );
        assert_eq!(on(serde_json::json!({"os": {"name": "linux"}})), None);
        // The proxy variables are kept with the AWS ones.
        let mut p = serde_json::to_value(injected_pod()).unwrap();
        p["spec"]["containers"][0]["env"]
            .as_array_mut()
            .unwrap()
            .extend([
                serde_json::json!({"name": "HTTP_PROXY", "value": "http://proxy:3128"}),
                serde_json::json!({"name": "NO_PROXY", "value": ".svc"}),
            ]);
        let f = pod_facts(&serde_json::from_value(p).unwrap());
        assert_eq!(f.containers[0].env["HTTP_PROXY"], "http://proxy:3128");
        assert_eq!(f.containers[0].env["NO_PROXY"], ".svc");
    }

    #[test]
    fn replicas_share_one_copy_of_what_they_have_in_common() {
        let idx = PodIndex::default();
        let replica = |i: usize, role: &str| {
            let mut v = serde_json::to_value(injected_pod()).unwrap();
            v["metadata"]["name"] = format!("producer-7c9d8f6b5-{i:05}").into();
            v["metadata"]["creationTimestamp"] = format!("2026-11-25T10:{:02}:00Z", i % 60).into();
            v["spec"]["containers"][0]["env"][4]["value"] = role.into();
            serde_json::from_value::<Pod>(v).unwrap()
        };
        let old = "arn:aws:iam::111111111111:role/orders-producer";
        let new = "arn:aws:iam::111111111111:role/orders-producer-v2";
        let pods: Vec<Pod> = (0..50).map(|i| replica(i, old)).collect();
        idx.replace(pods.iter().map(PodEntry::of).collect());
        let key = ("orders".to_string(), "producer".to_string());
        let shapes = |idx: &PodIndex| idx.by_account.lock().unwrap()[&key].shapes.len();
        assert_eq!(shapes(&idx), 1, "50 replicas, one shape");
        // What is read back is exactly what each pod is.
        let back = idx.pods("orders", "producer").unwrap();
        let expected: Vec<PodEvidence> = pods.iter().map(pod_facts).collect();
        assert_eq!(back, expected);
        // A rollout: a new replica differs, and gets a shape of its own ...
        assert!(idx.apply(&replica(50, new)).is_some());
        assert_eq!(shapes(&idx), 2);
        assert_eq!(
            idx.pods("orders", "producer").unwrap()[50].containers[0].env["AWS_ROLE_ARN"],
            new
        );
        // ... and once the old replicas are gone, so is their shape.
        for i in 0..50 {
            idx.delete("orders", &format!("producer-7c9d8f6b5-{i:05}"));
        }
        assert_eq!(shapes(&idx), 1);
        assert_eq!(idx.pods("orders", "producer").unwrap().len(), 1);
    }

    #[test]
    fn the_index_reports_only_real_changes() {
        let idx = PodIndex::default();
        let p = injected_pod();
        assert_eq!(
            idx.replace(vec![PodEntry::of(&p)]),
            vec![("orders".into(), "producer".into())]
        );
        assert_eq!(idx.pods("orders", "producer").unwrap().len(), 1);
        // A status change that does not touch the facts re-checks nothing.
        let mut ready = p.clone();
        ready.status.as_mut().unwrap().pod_ip = Some("10.0.1.24".into());
        assert_eq!(idx.apply(&ready), None);
        assert_eq!(
            idx.delete("orders", "producer-7c9d8f6b5-x2k4p"),
            Some(("orders".into(), "producer".into()))
        );
        assert!(idx.pods("orders", "producer").unwrap().is_empty());
        assert!(
            PodIndex::default().pods("orders", "producer").is_none(),
            "not listed yet"
        );
    }
}
