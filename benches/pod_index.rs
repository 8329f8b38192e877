//! What the pod watch keeps: 10,000 pods (100 namespaces, 10 service accounts each) as the API
//! server returns them after the EKS webhook mutated them, reduced to their credential facts.
//! Prints the heap the index holds, per pod, and the time to take a full list in; and the
//! transient peak while a list is taken in (what waits for the end
//! of the list, as facts: the listed pods themselves are dropped on arrival).
//!
//!     cargo bench --bench pod_index

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use sqs_access_operator::controller::pods::{PodEntry, PodIndex};

/// Counts the bytes allocated and not yet freed, and their peak.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static A: Counting = Counting;

/// A realistic injected pod (env, two projected volumes, mounts, labels, managed fields).
fn pod(ns: usize, sa: usize, i: usize) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("app-{sa}-7c9d8f6b5-{i:05}"), "namespace": format!("team-{ns:03}"),
            "uid": format!("6a3c2f0e-0000-4000-8000-{i:012}"),
            "creationTimestamp": "2026-11-25T10:00:00Z",
            "labels": {"app": format!("app-{sa}"), "pod-template-hash": "7c9d8f6b5", "team": "payments"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-25T09:59:00Z",
                "prometheus.io/scrape": "true"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": format!("app-{sa}-7c9d8f6b5"), "uid": "3f1b", "controller": true,
                "blockOwnerDeletion": true}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update",
                "apiVersion": "v1", "time": "2026-11-25T10:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}}]
        },
        "spec": {
            "serviceAccountName": format!("sa-{sa}"),
            "securityContext": {"fsGroup": 65534, "runAsNonRoot": true},
            "containers": [{
                "name": "app", "image": "registry.example.com/app:1.2.3",
                "env": [
                    {"name": "LOG_LEVEL", "value": "info"},
                    {"name": "QUEUE_URL", "value": "https://sqs.us-east-1.amazonaws.com/111111111111/orders"},
                    {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"},
                    {"name": "AWS_DEFAULT_REGION", "value": "us-east-1"},
                    {"name": "AWS_REGION", "value": "us-east-1"},
                    {"name": "AWS_ROLE_ARN", "value": format!("arn:aws:iam::111111111111:role/app-{sa}")},
                    {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"}
                ],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
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
        "status": {"phase": "Running", "podIP": "10.0.1.23", "hostIP": "10.0.0.5",
            "conditions": [{"type": "Ready", "status": "True"}]}
    }))
    .unwrap()
}

fn main() {
    const N: usize = 10_000;
    // What a full list would hold if kept as the API server sends it (for comparison).
    let before = LIVE.load(Ordering::Relaxed);
    let full: Vec<Pod> = (0..N).map(|i| pod(i % 100, (i / 100) % 10, i)).collect();
    let as_objects = LIVE.load(Ordering::Relaxed) - before;
    let as_json = full
        .iter()
        .map(|p| serde_json::to_vec(p).unwrap().len())
        .sum::<usize>();
    drop(full);

    // What the watch does: each listed pod becomes its facts as it arrives, and they are handed
    // to the index at the end of the list.
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let started = Instant::now();
    let relist: Vec<PodEntry> = (0..N)
        .map(|i| PodEntry::of(&pod(i % 100, (i / 100) % 10, i)))
        .collect();
    let index = PodIndex::default();
    let changed = index.replace(relist);
    let took = started.elapsed();
    let peak = PEAK.load(Ordering::Relaxed) - before;
    let held = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    println!(
        "pod index, {N} pods ({:.1} KB each as JSON, {:.1} MB as k8s-openapi objects):",
        as_json as f64 / N as f64 / 1024.0,
        as_objects as f64 / 1e6,
    );
    println!(
        "  kept: {:.2} MB ({} bytes per pod); peak while listing: {:.1} MB; list taken in {:?}",
        held as f64 / 1e6,
        held / N,
        peak as f64 / 1e6,
        took
    );
    assert_eq!(index.len(), N);
    assert_eq!(changed.len(), 1_000, "100 namespaces x 10 service accounts");
}
