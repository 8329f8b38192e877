//! The controller: keeps every `SqsAccessBinding`'s status current. Triggered by changes to
//! bindings, by changes to ServiceAccounts (a changed or removed role annotation re-checks the
//! bindings that use the account), and periodically, because IAM and queue policies change
//! outside the cluster. A thin adapter: Kubernetes in, [`crate::binding::evaluate_binding`],
//! status and Events out.

pub mod events;
pub mod leader;
pub mod pods;
pub mod publish;
pub mod status;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::{PredicateConfig, WatchStreamExt, predicates};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

use crate::aws::SnapshotSource;
use crate::binding::{ClusterFacts, evaluate_binding_with_deps};
use crate::changes::{Change, DocRef};
use crate::crd::SqsAccessBinding;
use crate::diagnosis::{Outcome, Verdict};
use crate::metrics::{ConditionLabels, Metrics, ResultLabels};

pub const FIELD_MANAGER: &str = "sqs-access-operator";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the status of {binding}: {source}")]
    Status {
        binding: String,
        #[source]
        source: kube::Error,
    },
    #[error("binding has no namespace")]
    NoNamespace,
}

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub facts: ClusterFacts,
    pub source: Arc<dyn SnapshotSource>,
    pub events: publish::Publisher,
    pub metrics: Metrics,
    pub recheck_interval: Duration,
    /// Upper bound for one check against AWS.
    pub check_timeout: Duration,
    /// Consecutive failures per binding, for exponential backoff.
    failures: Mutex<HashMap<BindingKey, u32>>,
    /// The last verdict per binding and when it was checked, for the bindings-by-condition and
    /// freshness gauges (computed by the housekeeping pass, not per reconcile).
    /// Its keys are the one shared [`BindingKey`] per binding that the other maps hold too.
    verdicts: Mutex<HashMap<BindingKey, (Outcome, Instant)>>,
    /// The running controller's cache of bindings: deleted bindings are not reconciled, so the
    /// per-binding maps are pruned against it.
    bindings: Mutex<Option<Store<SqsAccessBinding>>>,
    /// Whether the caller keeps the service account store ([`account_store`]) and tells the
    /// controller of changes ([`Context::account_changed`]); else the controller starts its own.
    shared_accounts: bool,
    /// Which bindings depend on which AWS documents (from each binding's last check), so a
    /// change event requeues exactly those.
    index: Mutex<DepIndex>,
    /// Bindings requeued by change events, with the earliest event time (Unix seconds).
    pending: Mutex<HashMap<BindingKey, f64>>,
    /// Requeues into the running controller.
    requeue: Mutex<Option<futures::channel::mpsc::UnboundedSender<ObjectRef<SqsAccessBinding>>>>,
    /// Whether to watch pods (the WorkloadCredentials condition).
    watch_pods: bool,
    /// Spread re-checks by ±10% (off: exact intervals, for tests).
    jitter: bool,
    /// The pods of every service account, while the controller runs.
    pods: Mutex<Option<Arc<pods::PodIndex>>>,
    /// (namespace, service account) → the bindings on it, to re-check them when its pods change.
    by_account: Mutex<AccountIndex>,
}

/// A binding as the controller's own maps know it: namespace and name only (an `ObjectRef`
/// from an object also carries its uid and resource version), allocated once per binding and
/// shared by every map (at 10,000 bindings a copy per map and per dependency was tens of MB).
pub type BindingKey = Arc<ObjectRef<SqsAccessBinding>>;

/// A fresh key for a binding (see [`Context::key`] for the shared one).
pub fn binding_key(obj: &ObjectRef<SqsAccessBinding>) -> BindingKey {
    let r = ObjectRef::new(&obj.name);
    Arc::new(match &obj.namespace {
        Some(ns) => r.within(ns),
        None => r,
    })
}

/// The map's own key for `k` (allocated once, then shared by whoever else holds it) and its
/// value, created if missing.
fn shared_entry<K: std::hash::Hash + Eq, V: Default>(
    map: &mut HashMap<Arc<K>, V>,
    k: K,
) -> (Arc<K>, &mut V) {
    let key = match map.get_key_value(&k) {
        Some((key, _)) => key.clone(),
        None => Arc::new(k),
    };
    (key.clone(), map.entry(key).or_default())
}

/// A service account: (namespace, name), shared by the bindings on it.
type AccountKey = Arc<(String, String)>;

#[derive(Default)]
struct AccountIndex {
    bindings: HashMap<AccountKey, HashSet<BindingKey>>,
    binding_account: HashMap<BindingKey, AccountKey>,
}

/// Documents → bindings, and back. Each document is held once and shared by its dependents.
#[derive(Default)]
pub struct DepIndex {
    by_doc: HashMap<Arc<DocRef>, HashSet<BindingKey>>,
    by_binding: HashMap<BindingKey, Box<[Arc<DocRef>]>>,
}

impl DepIndex {
    /// Records what a binding depends on now.
    pub fn set(&mut self, obj: &ObjectRef<SqsAccessBinding>, deps: BTreeSet<DocRef>) {
        let key = match self.by_binding.get_key_value(obj) {
            Some((k, _)) => k.clone(),
            None => binding_key(obj),
        };
        self.set_key(&key, deps);
    }

    /// [`DepIndex::set`] with the binding's shared key.
    pub fn set_key(&mut self, key: &BindingKey, deps: BTreeSet<DocRef>) {
        if self
            .by_binding
            .get(key)
            .is_some_and(|old| old.iter().map(|d| &**d).eq(deps.iter()))
        {
            return;
        }
        self.remove(key);
        let mut shared = Vec::with_capacity(deps.len());
        for d in deps {
            let (doc, dependents) = shared_entry(&mut self.by_doc, d);
            dependents.insert(key.clone());
            shared.push(doc);
        }
        self.by_binding
            .insert(key.clone(), shared.into_boxed_slice());
    }

    pub fn remove(&mut self, obj: &ObjectRef<SqsAccessBinding>) {
        for d in self.by_binding.remove(obj).unwrap_or_default() {
            if let Some(set) = self.by_doc.get_mut(&d) {
                set.remove(obj);
                if set.is_empty() {
                    self.by_doc.remove(&d);
                }
            }
        }
    }

    /// The bindings that depend on a document (every binding for an organization-wide change).
    pub fn dependents(&self, doc: &DocRef) -> Vec<BindingKey> {
        match doc {
            DocRef::Organization => self.by_binding.keys().cloned().collect(),
            d => self
                .by_doc
                .get(d)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default(),
        }
    }

    pub fn len(&self) -> usize {
        self.by_binding.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_binding.is_empty()
    }
}

impl Context {
    pub fn new(
        client: Client,
        facts: ClusterFacts,
        source: Arc<dyn SnapshotSource>,
        metrics: Metrics,
        recheck_interval: Duration,
    ) -> Self {
        Context {
            events: publish::Publisher::new(
                client.clone(),
                FIELD_MANAGER,
                std::env::var("POD_NAME").ok(),
            ),
            client,
            facts,
            source,
            metrics,
            recheck_interval,
            check_timeout: Duration::from_secs(30),
            failures: Mutex::new(HashMap::new()),
            verdicts: Mutex::new(HashMap::new()),
            bindings: Mutex::new(None),
            shared_accounts: false,
            index: Default::default(),
            pending: Default::default(),
            requeue: Mutex::new(None),
            watch_pods: false,
            jitter: true,
            pods: Mutex::new(None),
            by_account: Default::default(),
        }
    }

    /// The caller runs the service account store ([`account_store`]) and calls
    /// [`Context::account_changed`]; the controller then starts no watch of its own.
    pub fn with_shared_accounts(mut self) -> Self {
        self.shared_accounts = true;
        self
    }

    /// A service account changed (and the store has the change): re-check its bindings.
    pub fn account_changed(&self, namespace: &str, name: &str) {
        tracing::debug!(namespace, name, "service account changed");
        self.requeue_account(namespace, name);
    }

    /// Re-checks at exactly the interval (no spreading): for tests.
    pub fn without_jitter(mut self) -> Self {
        self.jitter = false;
        self
    }

    /// Also watches pods, and reports whether they run with the checked role.
    pub fn with_pod_watch(mut self) -> Self {
        self.watch_pods = true;
        self
    }

    /// How often an unchanged status's `lastChecked` is refreshed: hourly, or every
    /// [`RECHECKS_PER_REFRESH`] re-checks when that is longer (5-minute re-checks: every 100
    /// minutes), so that with nothing changing a re-check writes at most 0.05 times per binding.
    pub fn last_checked_refresh(&self) -> Duration {
        LAST_CHECKED_REFRESH.max(self.recheck_interval * RECHECKS_PER_REFRESH)
    }

    /// Waits (a bounded time) for the first list of pods, so that a check at start-up does not
    /// write a status without them only to write it again a moment later.
    pub async fn pods_listed(&self, at_most: Duration) {
        let index = self.pods.lock().expect("lock").clone();
        if let Some(index) = index {
            let _ = tokio::time::timeout(at_most, index.wait_synced()).await;
        }
    }

    /// The pods of a service account, when pods are watched and listed.
    pub fn pods_of(
        &self,
        namespace: &str,
        service_account: &str,
    ) -> Option<Vec<crate::diagnosis::snapshot::PodEvidence>> {
        let index = self.pods.lock().expect("lock").clone()?;
        index.pods(namespace, service_account)
    }

    /// How many pods are kept (for measurements).
    pub fn pods_kept(&self) -> usize {
        self.pods
            .lock()
            .expect("lock")
            .as_ref()
            .map(|i| i.len())
            .unwrap_or(0)
    }

    /// Re-checks the bindings on a service account (its pods changed).
    fn requeue_account(&self, namespace: &str, service_account: &str) {
        let objs: Vec<_> = self
            .by_account
            .lock()
            .expect("lock")
            .bindings
            .get(&(namespace.to_string(), service_account.to_string()))
            .map(|s| s.iter().map(|k| (**k).clone()).collect())
            .unwrap_or_default();
        tracing::debug!(
            namespace,
            service_account,
            bindings = objs.len(),
            "re-checking the bindings on a service account"
        );
        if let Some(tx) = self.requeue.lock().expect("lock").as_ref() {
            for o in objs {
                let _ = tx.unbounded_send(o);
            }
        }
    }

    fn remember_account(&self, obj: &BindingKey, account: Option<(String, String)>) {
        let mut m = self.by_account.lock().expect("lock");
        if m.binding_account.get(obj).map(|a| &**a) == account.as_ref() {
            return;
        }
        if let Some(old) = m.binding_account.remove(obj)
            && let Some(set) = m.bindings.get_mut(&old)
        {
            set.remove(obj);
            if set.is_empty() {
                m.bindings.remove(&old);
            }
        }
        if let Some(a) = account {
            let (shared, bindings) = shared_entry(&mut m.bindings, a);
            bindings.insert(obj.clone());
            m.binding_account.insert(obj.clone(), shared);
        }
    }

    /// The binding's key, shared with every map that already holds it.
    pub fn key(&self, obj: &ObjectRef<SqsAccessBinding>) -> BindingKey {
        if let Some((k, _)) = self.verdicts.lock().expect("lock").get_key_value(obj) {
            return k.clone();
        }
        if let Some((k, _)) = self
            .index
            .lock()
            .expect("lock")
            .by_binding
            .get_key_value(obj)
        {
            return k.clone();
        }
        binding_key(obj)
    }

    /// Applies AWS change events: drops exactly the cached documents they touch and requeues
    /// exactly the bindings that depend on them. Returns how many bindings were requeued.
    pub fn apply_changes(&self, changes: &[Change]) -> usize {
        let docs: BTreeSet<&DocRef> = changes.iter().flat_map(|c| &c.stale).collect();
        for d in &docs {
            self.source.invalidate(d);
        }
        let mut hit: HashMap<BindingKey, f64> = HashMap::new();
        {
            let index = self.index.lock().expect("lock");
            for c in changes {
                let t = c.time.unwrap_or_else(now_secs);
                for d in &c.stale {
                    for obj in index.dependents(d) {
                        let e = hit.entry(obj).or_insert(t);
                        *e = e.min(t);
                    }
                }
            }
        }
        let n = hit.len();
        let tx = self.requeue.lock().expect("lock").clone();
        let mut pending = self.pending.lock().expect("lock");
        for (obj, t) in hit {
            let e = pending.entry(obj.clone()).or_insert(t);
            *e = e.min(t);
            if let Some(tx) = &tx {
                let _ = tx.unbounded_send((*obj).clone());
            }
        }
        n
    }

    /// The dependency index (for tests and metrics).
    pub fn index(&self) -> std::sync::MutexGuard<'_, DepIndex> {
        self.index.lock().expect("lock")
    }

    fn record_verdict(&self, obj: BindingKey, outcome: Option<Outcome>) {
        let mut v = self.verdicts.lock().expect("lock");
        match outcome {
            Some(o) => v.insert(obj, (o, Instant::now())),
            None => v.remove(&obj),
        };
    }

    /// Every few seconds, off the reconcile path: drops what deleted bindings left behind, and
    /// sets the gauges (bindings by condition, the age of the oldest check).
    pub fn housekeeping(&self) {
        let store = self.bindings.lock().expect("lock").clone();
        let mut v = self.verdicts.lock().expect("lock");
        if let Some(store) = &store {
            v.retain(|k, _| store.get(k).is_some());
            self.failures
                .lock()
                .expect("lock")
                .retain(|k, _| store.get(k).is_some());
            self.pending
                .lock()
                .expect("lock")
                .retain(|k, _| store.get(k).is_some());
            let mut index = self.index.lock().expect("lock");
            let gone: Vec<_> = index
                .by_binding
                .keys()
                .filter(|k| store.get(k).is_none())
                .cloned()
                .collect();
            for k in gone {
                index.remove(&k);
                self.remember_account(&k, None);
            }
        }
        let mut counts = [0i64; 3];
        let mut oldest = Duration::ZERO;
        for (o, at) in v.values() {
            counts[match o {
                Outcome::Allowed => 0,
                Outcome::Denied => 1,
                Outcome::Indeterminate => 2,
            }] += 1;
            oldest = oldest.max(at.elapsed());
        }
        for (label, n) in ["Ready", "Denied", "Indeterminate"].into_iter().zip(counts) {
            self.metrics
                .bindings
                .get_or_create(&ConditionLabels { condition: label })
                .set(n);
        }
        self.metrics.oldest_check.set(oldest.as_secs() as i64);
    }

    /// The next re-check: the interval, spread by ±10% so that bindings checked together do
    /// not stay together.
    fn next_check(&self, base: Duration) -> Duration {
        if self.jitter {
            base.mul_f64(0.9 + 0.2 * unit_random())
        } else {
            base
        }
    }
}

/// How often, at the least, an unchanged status's `lastChecked` is refreshed (freshness is
/// also a metric). Longer with a long re-check interval: see [`Context::last_checked_refresh`].
pub const LAST_CHECKED_REFRESH: Duration = Duration::from_secs(3600);

/// Checks in flight at once: enough to keep AWS and the API server busy, few enough that a
/// start-up over thousands of new bindings does not hold thousands of half-done checks.
pub const CONCURRENT_CHECKS: u16 = 16;

/// Re-checks per `lastChecked` refresh at the least: with nothing changing, at most one status
/// write per binding in this many re-checks (0.05 per re-check).
pub const RECHECKS_PER_REFRESH: u32 = 20;

/// A number in [0, 1), different on every call (spreading re-checks needs no strong randomness).
fn unit_random() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether a binding's status already describes its current spec (the operator restarted, or
/// leadership moved): then it is re-verified later, spread over the interval, not all at once.
fn status_is_current(b: &SqsAccessBinding) -> Option<Outcome> {
    let s = b.status.as_ref()?;
    if s.observed_generation != b.meta().generation || s.conditions.is_empty() {
        return None;
    }
    match s.verdict.as_deref()? {
        "Allowed" => Some(Outcome::Allowed),
        "Denied" => Some(Outcome::Denied),
        "Indeterminate" => Some(Outcome::Indeterminate),
        _ => None,
    }
}

/// Checks one binding and writes its status when it changed.
pub async fn reconcile(b: Arc<SqsAccessBinding>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let ns = b.namespace().ok_or(Error::NoNamespace)?;
    let name = b.name_any();
    let obj_ref = ctx.key(&ObjectRef::from_obj(&*b));
    if b.meta().deletion_timestamp.is_some() {
        ctx.record_verdict(obj_ref.clone(), None);
        ctx.index.lock().expect("lock").remove(&obj_ref);
        ctx.remember_account(&obj_ref, None);
        return Ok(Action::await_change());
    }
    let sa_name = b.spec.binding.service_account_name.trim().to_string();
    ctx.remember_account(&obj_ref, Some((ns.clone(), sa_name.clone())));
    // First sight of a binding whose status is current (a restart, a new leader): no check
    // now, a re-check at a random point of the interval, so thousands of bindings do not hit
    // AWS and the API server in one burst.
    let first_sight = !ctx.verdicts.lock().expect("lock").contains_key(&obj_ref);
    if first_sight && let Some(outcome) = status_is_current(&b) {
        // What it depends on, as far as known without AWS, so a change event before the
        // re-check reaches it (the re-check records the rest).
        let deps = crate::binding::known_dependencies(&b, &ctx.facts);
        ctx.index.lock().expect("lock").set_key(&obj_ref, deps);
        ctx.record_verdict(obj_ref, Some(outcome));
        return Ok(Action::requeue(ctx.recheck_interval.mul_f64(unit_random())));
    }
    let pods = if ctx.watch_pods {
        ctx.pods_listed(Duration::from_secs(30)).await;
        ctx.pods_of(&ns, &sa_name)
    } else {
        None
    };
    let verdict = match tokio::time::timeout(
        ctx.check_timeout,
        evaluate_binding_with_deps(&b, &ctx.facts, ctx.source.as_ref(), pods),
    )
    .await
    {
        Ok((v, deps)) => {
            ctx.index.lock().expect("lock").set_key(&obj_ref, deps);
            v
        }
        Err(_) => Verdict::unfinished(format!(
            "the check did not finish within {:?}",
            ctx.check_timeout
        )),
    };
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let old = b.status.clone().unwrap_or_default();
    let new = status::desired_status(&b, &verdict, &now, &old);
    let changed = status::meaningfully_different(&old, &new);
    // Nothing changed: the status is rewritten only to refresh lastChecked, at most hourly
    // and at most once in 20 re-checks
    // (a write per binding per re-check would load etcd and every watcher, forever).
    let stale = old.last_checked.as_ref().is_none_or(|t| {
        let age = now.0.duration_since(t.0);
        age.as_secs() >= ctx.last_checked_refresh().as_secs() as i64
    });
    if changed || stale {
        let api: Api<SqsAccessBinding> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = json!({
            "apiVersion": "sqsaccess.io/v1alpha1",
            "kind": "SqsAccessBinding",
            "status": new,
        });
        api.patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|source| Error::Status {
            binding: format!("{ns}/{name}"),
            source,
        })?;
    }
    let before = status::ready_status(&old).map(str::to_string);
    let after = status::ready_status(&new).map(str::to_string);
    if before != after {
        publish_transition(&ctx, &b, &verdict).await;
    }
    let w_before = status::condition_status(&old, status::WORKLOAD_CONDITION).map(str::to_string);
    let w_after = status::condition_status(&new, status::WORKLOAD_CONDITION).map(str::to_string);
    // Only problems and their end are news: pods coming and going (NoPods, no role to
    // compare) would be noise on every scale-to-zero.
    let problem = |s: &Option<String>| s.as_deref() == Some("False");
    if w_before != w_after
        && (problem(&w_before) || problem(&w_after))
        && let Some(w) = &verdict.workload
    {
        publish_workload_transition(&ctx, &b, w).await;
    }
    ctx.record_verdict(obj_ref.clone(), Some(verdict.verdict));
    ctx.failures.lock().expect("lock").remove(&obj_ref);
    if let Some(t) = ctx.pending.lock().expect("lock").remove(&obj_ref) {
        ctx.metrics.event_delay.observe((now_secs() - t).max(0.0));
    }
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    ctx.metrics
        .reconciles
        .get_or_create(&ResultLabels { result: "ok" })
        .inc();
    Ok(Action::requeue(ctx.next_check(match verdict.verdict {
        // Undecided: look again sooner.
        Outcome::Indeterminate => ctx.recheck_interval.min(Duration::from_secs(60)),
        _ => ctx.recheck_interval,
    })))
}

async fn publish_transition(ctx: &Context, b: &SqsAccessBinding, v: &Verdict) {
    let first = v.first_reason();
    let (kind, reason, note) = match v.verdict {
        Outcome::Allowed => (
            publish::Kind::Normal,
            "Ready".to_string(),
            "every needed action is allowed".to_string(),
        ),
        Outcome::Denied => (
            publish::Kind::Warning,
            first.map(|f| f.code.as_str()).unwrap_or_default(),
            first.map(|f| f.message.clone()).unwrap_or_default(),
        ),
        Outcome::Indeterminate => (
            publish::Kind::Normal,
            first.map(|f| f.code.as_str()).unwrap_or_default(),
            first.map(|f| f.message.clone()).unwrap_or_default(),
        ),
    };
    let notice = publish::Notice {
        kind,
        reason,
        note: status::truncate(&note, 1000),
        action: "Check".into(),
    };
    if let Err(e) = ctx.events.publish(&notice, &b.object_ref(&())).await {
        tracing::warn!(binding = %status::display_name(b), error = %e, "publishing an event failed");
    }
}

async fn publish_workload_transition(
    ctx: &Context,
    b: &SqsAccessBinding,
    w: &crate::diagnosis::workload::WorkloadVerdict,
) {
    let kind = match w.status() {
        "False" => publish::Kind::Warning,
        _ => publish::Kind::Normal,
    };
    let notice = publish::Notice {
        kind,
        reason: w.reason.as_str(),
        note: status::truncate(&w.message, 1000),
        action: "CheckPods".into(),
    };
    if let Err(e) = ctx.events.publish(&notice, &b.object_ref(&())).await {
        tracing::warn!(binding = %status::display_name(b), error = %e, "publishing an event failed");
    }
}

/// Per-binding exponential backoff: 1 s, 2 s, 4 s, ... up to 5 minutes.
pub fn error_policy(b: Arc<SqsAccessBinding>, err: &Error, ctx: Arc<Context>) -> Action {
    let obj = ctx.key(&ObjectRef::from_obj(&*b));
    let n = {
        let mut f = ctx.failures.lock().expect("lock");
        let n = f.entry(obj).or_insert(0);
        *n += 1;
        *n
    };
    ctx.metrics
        .reconciles
        .get_or_create(&ResultLabels { result: "error" })
        .inc();
    let delay = backoff(n);
    tracing::warn!(binding = %status::display_name(&b), error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Stops a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

pub fn backoff(failures: u32) -> Duration {
    let secs = 1u64 << failures.saturating_sub(1).min(9);
    Duration::from_secs(secs.min(300))
}

/// The cluster's service accounts, metadata only and only the annotations the checks read: the
/// store (the webhook and the controller read it) and the watch that fills it, to be polled.
/// `changed(namespace, name)` is called after the store took each change in, so a re-check it
/// triggers sees the new annotations.
pub fn account_store(
    client: Client,
    changed: impl Fn(&str, &str) + Send + Sync + 'static,
) -> (
    Store<PartialObjectMeta<ServiceAccount>>,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let (store, writer) = reflector::store();
    let watch = watcher(
        Api::<PartialObjectMeta<ServiceAccount>>::all(client),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(|sa: &mut PartialObjectMeta<ServiceAccount>| {
        let m = &mut sa.metadata;
        m.managed_fields = None;
        m.labels = None;
        if let Some(a) = m.annotations.as_mut() {
            a.retain(|k, _| k.starts_with("eks.amazonaws.com/"));
        }
    })
    .reflect(writer);
    // Every account the store took in or dropped, including the ones a re-list (after a watch
    // broke, e.g. an API server restart) finds gone, which come with no deletion event.
    let mut known: HashSet<(String, String)> = HashSet::new();
    let mut listed: HashSet<(String, String)> = HashSet::new();
    let watch = watch.for_each(move |ev| {
        let key = |sa: &PartialObjectMeta<ServiceAccount>| {
            (sa.namespace().unwrap_or_default(), sa.name_any())
        };
        match ev {
            Ok(watcher::Event::Init) => listed.clear(),
            Ok(watcher::Event::InitApply(sa)) => {
                let k = key(&sa);
                changed(&k.0, &k.1);
                listed.insert(k);
            }
            Ok(watcher::Event::InitDone) => {
                for (ns, name) in known.difference(&listed) {
                    changed(ns, name);
                }
                known = std::mem::take(&mut listed);
            }
            Ok(watcher::Event::Apply(sa)) => {
                let k = key(&sa);
                changed(&k.0, &k.1);
                known.insert(k);
            }
            Ok(watcher::Event::Delete(sa)) => {
                let k = key(&sa);
                changed(&k.0, &k.1);
                known.remove(&k);
            }
            Err(_) => {}
        }
        futures::future::ready(())
    });
    (store, watch)
}

/// Keeps only what the controller reads of a binding: no managed fields, no last-applied copy,
/// the status as its summary (see [`status::summary`]).
fn slim_binding(b: &mut SqsAccessBinding) {
    b.metadata.managed_fields = None;
    if let Some(a) = b.metadata.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    b.status = b.status.take().map(status::summary);
}

/// Runs the controller until `shutdown` resolves. `on_ready` is called once the bindings
/// have been listed.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
    on_ready: impl Fn() + Send + Sync + 'static,
) {
    let (requeue_tx, requeue_rx) = futures::channel::mpsc::unbounded();
    *ctx.requeue.lock().expect("lock") = Some(requeue_tx);
    // The pods, while this controller runs (only the leader needs them).
    let _pod_watch = ctx.watch_pods.then(|| {
        let index = Arc::new(pods::PodIndex::default());
        *ctx.pods.lock().expect("lock") = Some(index.clone());
        let weak = Arc::downgrade(&ctx);
        AbortOnDrop(tokio::spawn(pods::watch(
            ctx.client.clone(),
            index,
            move |ns, sa| {
                if let Some(ctx) = weak.upgrade() {
                    ctx.requeue_account(ns, sa);
                }
            },
        )))
    });
    // Service accounts: the caller's store, else one of our own; either way a change
    // re-checks the bindings on the account (found through the index, not by a scan).
    let _account_watch = (!ctx.shared_accounts).then(|| {
        let weak = Arc::downgrade(&ctx);
        let (_store, watch) = account_store(ctx.client.clone(), move |ns, name| {
            if let Some(ctx) = weak.upgrade() {
                ctx.account_changed(ns, name);
            }
        });
        AbortOnDrop(tokio::spawn(watch))
    });
    // Bindings: a slim store, and reconciles only for new bindings and spec changes (the
    // generation), never for the controller's own status writes.
    let (reader, writer) = reflector::store();
    let bindings = watcher(
        Api::<SqsAccessBinding>::all(ctx.client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .modify(slim_binding)
    .reflect(writer)
    .applied_objects()
    .predicate_filter(
        predicates::generation,
        PredicateConfig::default().ttl(Duration::from_secs(7 * 24 * 3600)),
    );
    let controller = Controller::for_stream(bindings, reader)
        .with_config(kube::runtime::controller::Config::default().concurrency(CONCURRENT_CHECKS))
        .reconcile_on(requeue_rx);
    let store = controller.store();
    *ctx.bindings.lock().expect("lock") = Some(store.clone());
    let ready_store = store.clone();
    tokio::spawn(async move {
        if ready_store.wait_until_ready().await.is_ok() {
            on_ready();
        }
    });
    let weak = Arc::downgrade(&ctx);
    let _housekeeping = AbortOnDrop(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tick.tick().await;
            match weak.upgrade() {
                Some(ctx) => ctx.housekeeping(),
                None => return,
            }
        }
    }));
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
}
