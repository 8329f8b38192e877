//! The one function that turns an `SqsAccessBinding` into a verdict. The controller and the
//! admission webhook both call it, with the same spec type, so status and admission cannot
//! disagree.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};

use crate::aws::{SnapshotInput, SnapshotSource};
use crate::changes::{DocRef, dependencies};
use crate::crd::SqsAccessBinding;
use crate::diagnosis::snapshot::{
    EvidenceError, EvidenceErrorKind, PodEvidence, ServiceAccountEvidence,
};
use crate::diagnosis::{Verdict, diagnose_with};

/// Reads a service account's annotations; `Ok(None)` when it does not exist.
pub trait ServiceAccountLookup: Send + Sync {
    fn annotations<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<BTreeMap<String, String>>, String>>;

    /// The annotations when a local cache has them, without a request (`None`: no cache).
    fn cached_annotations(
        &self,
        _namespace: &str,
        _name: &str,
    ) -> Option<Option<BTreeMap<String, String>>> {
        None
    }
}

/// Reads through the API server (one GET per check).
pub struct ApiLookup(pub Client);

impl ServiceAccountLookup for ApiLookup {
    fn annotations<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<BTreeMap<String, String>>, String>> {
        Box::pin(async move {
            let api: Api<ServiceAccount> = Api::namespaced(self.0.clone(), namespace);
            api.get_opt(name)
                .await
                .map(|sa| sa.map(|sa| sa.metadata.annotations.unwrap_or_default()))
                .map_err(|e| e.to_string())
        })
    }
}

/// Reads from a watch-fed cache of service account metadata (no request per check).
pub struct StoreLookup(pub Store<PartialObjectMeta<ServiceAccount>>);

impl ServiceAccountLookup for StoreLookup {
    fn annotations<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<BTreeMap<String, String>>, String>> {
        Box::pin(async move { Ok(self.cached_annotations(namespace, name).flatten()) })
    }

    fn cached_annotations(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<Option<BTreeMap<String, String>>> {
        Some(
            self.0
                .get(&ObjectRef::new(name).within(namespace))
                .map(|sa| sa.metadata.annotations.clone().unwrap_or_default()),
        )
    }
}

/// Where the cluster-side facts come from.
#[derive(Clone)]
pub struct ClusterFacts {
    pub service_accounts: Arc<dyn ServiceAccountLookup>,
    /// The cluster's OIDC issuer URL.
    pub oidc_issuer: Option<String>,
}

/// Checks a binding: reads its service account (in the binding's own namespace only), has the
/// source complete the snapshot, and diagnoses it.
pub async fn evaluate_binding(
    binding: &SqsAccessBinding,
    facts: &ClusterFacts,
    source: &dyn SnapshotSource,
) -> Verdict {
    evaluate_binding_with_deps(binding, facts, source, None)
        .await
        .0
}

/// [`evaluate_binding`], with the pods of the service account when they are known (the
/// controller watches them; the verdict then says whether they run with the checked role), and
/// the documents the verdict was built from (for the controller's change index).
pub async fn evaluate_binding_with_deps(
    binding: &SqsAccessBinding,
    facts: &ClusterFacts,
    source: &dyn SnapshotSource,
    pods: Option<Vec<PodEvidence>>,
) -> (Verdict, BTreeSet<DocRef>) {
    let namespace = binding.namespace().unwrap_or_default();
    let spec = &binding.spec.binding;
    let opts = source.spec_options();
    let mut errors = Vec::new();
    // A spec that is wrong needs no reads: the diagnosis reports it.
    let service_account = if spec.validate(&opts).is_ok() {
        let name = spec.service_account_name.trim();
        match facts.service_accounts.annotations(&namespace, name).await {
            Ok(Some(annotations)) => Some(ServiceAccountEvidence {
                found: true,
                annotations,
            }),
            Ok(None) => Some(ServiceAccountEvidence {
                found: false,
                annotations: Default::default(),
            }),
            Err(e) => {
                errors.push(EvidenceError {
                    item: "serviceAccount".into(),
                    kind: EvidenceErrorKind::Unavailable,
                    message: format!("reading ServiceAccount {namespace}/{name}: {e}"),
                    permission: None,
                });
                None
            }
        }
    } else {
        None
    };
    let input = SnapshotInput {
        namespace,
        binding_name: Some(binding.name_any()),
        spec: spec.clone(),
        service_account,
        oidc_issuer: facts.oidc_issuer.clone(),
        cluster_name: None,
        pods,
    };
    let mut snap = source.snapshot(&input).await;
    snap.evidence_errors.extend(errors);
    (diagnose_with(&snap, &opts), dependencies(&snap))
}

/// What a binding depends on that is known without reading AWS or the API server: its queue
/// (and the queue's account) and, when the service account cache has it, the role its IRSA
/// annotation names (the role's account, the account's OIDC providers). For a binding not
/// checked yet in this process (its status current from before a restart), so that a change
/// event reaches it before its first re-check; the check then records everything (managed
/// policies, KMS keys, Pod Identity associations).
pub fn known_dependencies(binding: &SqsAccessBinding, facts: &ClusterFacts) -> BTreeSet<DocRef> {
    let namespace = binding.namespace().unwrap_or_default();
    let spec = &binding.spec.binding;
    let service_account = facts
        .service_accounts
        .cached_annotations(&namespace, spec.service_account_name.trim())
        .map(|a| ServiceAccountEvidence {
            found: a.is_some(),
            annotations: a.unwrap_or_default(),
        });
    dependencies(&crate::diagnosis::snapshot::Snapshot::unread(
        namespace,
        Some(binding.name_any()),
        spec.clone(),
        service_account,
        facts.oidc_issuer.clone(),
    ))
}
