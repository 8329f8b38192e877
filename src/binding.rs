//! The one function that turns an `SqsAccessBinding` into a verdict. The controller and the
//! admission webhook both call it, with the same spec type, so status and admission cannot
//! disagree.

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{Api, Client, ResourceExt};

use crate::aws::{SnapshotInput, SnapshotSource};
use crate::crd::SqsAccessBinding;
use crate::diagnosis::snapshot::{EvidenceError, EvidenceErrorKind, ServiceAccountEvidence};
use crate::diagnosis::{Verdict, diagnose_with};

/// Where the cluster-side facts come from.
#[derive(Clone)]
pub struct ClusterFacts {
    pub client: Client,
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
    let namespace = binding.namespace().unwrap_or_default();
    let spec = &binding.spec.binding;
    let opts = source.spec_options();
    let mut errors = Vec::new();
    // A spec that is wrong needs no reads: the diagnosis reports it.
    let service_account = if spec.validate(&opts).is_ok() {
        let api: Api<ServiceAccount> = Api::namespaced(facts.client.clone(), &namespace);
        match api.get_opt(spec.service_account_name.trim()).await {
            Ok(Some(sa)) => Some(ServiceAccountEvidence {
                found: true,
                annotations: sa.metadata.annotations.unwrap_or_default(),
            }),
            Ok(None) => Some(ServiceAccountEvidence {
                found: false,
                annotations: Default::default(),
            }),
            Err(e) => {
                errors.push(EvidenceError {
                    item: "serviceAccount".into(),
                    kind: EvidenceErrorKind::Unavailable,
                    message: format!(
                        "reading ServiceAccount {namespace}/{}: {e}",
                        spec.service_account_name
                    ),
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
    };
    let mut snap = source.snapshot(&input).await;
    snap.evidence_errors.extend(errors);
    diagnose_with(&snap, &opts)
}
