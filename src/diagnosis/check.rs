//! The diagnosis: from a snapshot, decide whether each access the binding needs would succeed,
//! layer by layer, and say what to change when it would not. Pure: a `Snapshot` goes in, a
//! `Verdict` comes out.

use serde::Serialize;

use super::findings::merge_fixes;
use super::pod_identity::{SessionTags, pod_identity_session_tags};
use super::reason::{DiagLayer, Finding, Fix, FixTarget, Outcome, ReasonCode};
use super::snapshot::{
    EvidenceErrorKind, NetworkPath, PodIdentityAssociationEvidence, RoleEvidence, Snapshot,
};
use super::spec::{SpecOptions, ValidSpec};
pub use super::trust::normalize_issuer;
use super::workload::{WorkloadVerdict, assess};
use crate::ids::RoleArn;
use crate::policy::{Decision, Gap, LayerOutcome, NamedPolicy, Request, Response, StatementRef};

pub use super::credentials::{
    AUDIENCE_ANNOTATION, DEFAULT_AUDIENCE, Mechanism, ROLE_ARN_ANNOTATION,
};

/// The result of a diagnosis.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub verdict: Outcome,
    /// What blocks (or, for `Allowed`, a single `Allowed` finding). The first is the one to
    /// fix first.
    pub reasons: Vec<Finding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<ResolvedRole>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueSummary>,
    /// Every evaluation made, with its evidence.
    pub checks: Vec<Check>,
    /// The fixes of all reasons, merged per place (one statement per policy).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fixes: Vec<Fix>,
    /// Things that work but deserve attention.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Layers that were not known and so not evaluated.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Whether the pods really run with the checked role (when the pods were read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadVerdict>,
}

impl Verdict {
    /// The CLI's exit code: 0 allowed, 2 denied, 3 indeterminate.
    pub fn exit_code(&self) -> u8 {
        match self.verdict {
            Outcome::Allowed => 0,
            Outcome::Denied => 2,
            Outcome::Indeterminate => 3,
        }
    }

    /// The first blocking reason, if any.
    pub fn first_reason(&self) -> Option<&Finding> {
        self.reasons.first()
    }

    /// An `Indeterminate` verdict for a check that could not finish (`AwsUnavailable`).
    pub fn unfinished(message: impl Into<String>) -> Verdict {
        Verdict {
            verdict: Outcome::Indeterminate,
            reasons: vec![Finding::new(
                ReasonCode::AwsUnavailable,
                DiagLayer::Evidence,
                message,
            )],
            role: None,
            queue: None,
            checks: vec![],
            fixes: vec![],
            warnings: vec![],
            notes: vec![],
            workload: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedRole {
    /// The role the workload acts as (with a Pod Identity target role, the target).
    pub arn: String,
    /// Where the role came from: `serviceAccountAnnotation` or `podIdentityAssociation`.
    pub source: String,
    pub mechanism: Mechanism,
    /// IRSA: the token audience.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Pod Identity: the association.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub association_id: Option<String>,
    /// The roles assumed in order, when more than one (Pod Identity target role).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
    /// An IRSA annotation that Pod Identity overrides.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored_irsa_role: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueSummary {
    pub arn: String,
    /// `None`, `SSE-SQS` or `SSE-KMS`.
    pub encryption: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_key: Option<String>,
}

/// One evaluation: an action against a resource, with the engine's evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// `trust`, `sqs` or `kms`.
    pub step: &'static str,
    pub action: String,
    pub resource: String,
    pub decision: Decision,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub statements: Vec<StatementRef>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<Gap>,
    pub layers: Vec<LayerOutcome>,
}

/// Diagnoses a snapshot with default spec options.
pub fn diagnose(snap: &Snapshot) -> Verdict {
    diagnose_with(snap, &SpecOptions::default())
}

/// Diagnoses a snapshot; `opts` decides which queue URL hosts are accepted.
pub fn diagnose_with(snap: &Snapshot, opts: &SpecOptions) -> Verdict {
    let mut d = Diag::default();
    d.run(snap, opts);
    let mut v = d.finish();
    if let Some(pods) = &snap.pods {
        let association = v.role.as_ref().and_then(|r| {
            snap.pod_identity_associations
                .iter()
                .flatten()
                .find(|a| r.association_id.is_some() && a.association_id == r.association_id)
        });
        v.workload = Some(assess(
            pods,
            &snap.binding.namespace,
            v.role.as_ref(),
            association,
            snap.captured_at.as_deref(),
        ));
    }
    v
}

#[derive(Default)]
pub(super) struct Diag {
    pub(super) reasons: Vec<Finding>,
    pub(super) checks: Vec<Check>,
    pub(super) warnings: Vec<String>,
    pub(super) notes: Vec<String>,
    pub(super) role: Option<ResolvedRole>,
    pub(super) queue: Option<QueueSummary>,
}

/// What the SQS and KMS steps share.
pub(super) struct Who<'a> {
    pub(super) snap: &'a Snapshot,
    pub(super) spec: &'a ValidSpec,
    pub(super) role_arn: RoleArn,
    pub(super) role: &'a RoleEvidence,
    pub(super) session: String,
    pub(super) provider_arn: Option<String>,
    /// The VPC endpoint the workload reaches SQS through, when known.
    pub(super) vpce: Option<String>,
    /// The session tags EKS Pod Identity adds (none for IRSA).
    pub(super) session_tags: SessionTags,
    /// The Pod Identity association's session policy.
    pub(super) session_policy: Option<NamedPolicy>,
    /// The Pod Identity association, when that is the mechanism.
    pub(super) association: Option<&'a PodIdentityAssociationEvidence>,
}

impl Diag {
    pub(super) fn push(&mut self, f: Finding) {
        self.reasons.push(f);
    }

    fn finish(mut self) -> Verdict {
        let verdict = self
            .reasons
            .iter()
            .map(|f| f.code.outcome())
            .max()
            .unwrap_or(Outcome::Allowed);
        // Blocking reasons first, then the undecided ones; otherwise in the order found (the
        // order of the path from pod to queue).
        self.reasons
            .sort_by_key(|f| std::cmp::Reverse(f.code.outcome()));
        if self.reasons.is_empty() {
            self.reasons.push(Finding::new(
                ReasonCode::Allowed,
                DiagLayer::QueuePolicy,
                "every needed action is allowed in every layer that was evaluated",
            ));
        }
        let fixes = merge_fixes(self.reasons.iter().filter_map(|f| f.fix.clone()));
        Verdict {
            verdict,
            reasons: self.reasons,
            role: self.role,
            queue: self.queue,
            checks: self.checks,
            fixes,
            warnings: self.warnings,
            notes: self.notes,
            workload: None,
        }
    }

    fn run(&mut self, snap: &Snapshot, opts: &SpecOptions) {
        let spec = match snap.binding.spec.validate(opts) {
            Ok(s) => s,
            Err(errs) => {
                for e in errs {
                    self.push(
                        Finding::new(ReasonCode::InvalidSpec, DiagLayer::Spec, e.to_string()).fix(
                            Fix {
                                target: FixTarget::Binding,
                                instruction: format!("correct {}", e.field),
                                statement: None,
                            },
                        ),
                    );
                }
                return;
            }
        };
        let sa_name = spec.service_account.as_str();
        for e in &snap.evidence_errors {
            let (code, why) = match e.kind {
                EvidenceErrorKind::Unreadable => (
                    ReasonCode::EvidenceUnreadable,
                    match &e.permission {
                        Some(p) => format!(
                            "the operator could not read {}: it lacks {p} ({})",
                            e.item, e.message
                        ),
                        None => format!("the operator could not read {}: {}", e.item, e.message),
                    },
                ),
                EvidenceErrorKind::Unavailable => (
                    ReasonCode::AwsUnavailable,
                    format!("AWS did not answer for {}: {}", e.item, e.message),
                ),
            };
            self.push(Finding::new(code, DiagLayer::Evidence, why));
        }
        let has_error = |item: &str| snap.evidence_errors.iter().any(|e| e.item == item);

        // The service account and the role it gets.
        let Some(cred) = self.resolve_credentials(snap, sa_name) else {
            return;
        };
        let (role_arn, role) = cred.acting();
        let issuer = snap
            .cluster
            .oidc_issuer
            .as_deref()
            .map(normalize_issuer)
            .filter(|i| !i.is_empty());
        let provider_arn = match cred.mechanism {
            Mechanism::Irsa => issuer.as_ref().map(|i| {
                format!(
                    "arn:{}:iam::{}:oidc-provider/{}",
                    role_arn.partition(),
                    role_arn.account(),
                    i
                )
            }),
            Mechanism::PodIdentity => None,
        };
        let (session_tags, session_policy) = match cred.association {
            Some(a) => (
                pod_identity_session_tags(snap, a),
                a.policy.as_ref().map(|p| {
                    NamedPolicy::new(
                        format!(
                            "session policy of Pod Identity association {}",
                            a.association_id.as_deref().unwrap_or_default()
                        ),
                        p.policy.clone(),
                    )
                }),
            ),
            None => (SessionTags::default(), None),
        };
        let who = Who {
            snap,
            spec: &spec,
            role_arn: role_arn.clone(),
            role,
            session: role_arn.session_arn(match cred.mechanism {
                Mechanism::Irsa => "irsa-session",
                Mechanism::PodIdentity => "eks-pod-identity-session",
            }),
            provider_arn,
            vpce: spec.vpc_endpoint_id.clone().or_else(|| {
                snap.network
                    .as_ref()
                    .filter(|n| n.path == NetworkPath::VpcEndpoint)
                    .and_then(|n| n.vpc_endpoint_id.clone())
            }),
            session_tags,
            session_policy,
            association: cred.association,
        };
        match cred.mechanism {
            Mechanism::Irsa => self.check_trust(&who, issuer.as_deref(), &cred.audience),
            Mechanism::PodIdentity => self.check_pod_identity(&who, &cred),
        }

        // The queue.
        let queue_arn = spec.queue.arn.clone();
        let Some(queue) = &snap.queue else {
            if !has_error("queue") {
                self.push(Finding::new(
                    ReasonCode::EvidenceUnreadable,
                    DiagLayer::Evidence,
                    format!("queue {queue_arn} was not read"),
                ));
            }
            return;
        };
        if let Some(a) = &queue.arn
            && a != queue_arn.as_str()
        {
            self.warnings.push(format!(
                "the snapshot's queue {a} differs from the binding's {queue_arn}"
            ));
        }
        let kms_key_id = queue
            .kms_master_key_id
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty());
        let encryption = match (kms_key_id, queue.sqs_managed_sse_enabled) {
            (Some(_), _) => "SSE-KMS",
            (None, Some(true)) => "SSE-SQS",
            _ => "None",
        };
        self.queue = Some(QueueSummary {
            arn: queue_arn.to_string(),
            encryption: encryption.into(),
            kms_key: snap
                .kms_key
                .as_ref()
                .map(|k| k.arn.clone())
                .or(kms_key_id.map(str::to_string)),
        });
        if !queue.found {
            self.push(
                Finding::new(
                    ReasonCode::QueueNotFound,
                    DiagLayer::QueuePolicy,
                    format!(
                        "queue {queue_arn} does not exist (SQS answers QueueDoesNotExist, which also hides a missing permission); check the name (case-sensitive), region and account"
                    ),
                )
                .fix(Fix {
                    target: FixTarget::Binding,
                    instruction: "correct spec.queue, or create the queue".into(),
                    statement: None,
                }),
            );
            return;
        }
        self.check_sqs(&who, queue.policy.as_ref());
        if let Some(key_id) = kms_key_id {
            self.check_kms(&who, key_id);
        }
    }

    pub(super) fn record(&mut self, step: &'static str, req: &Request, resp: &Response) {
        self.checks.push(Check {
            step,
            action: req.action.clone(),
            resource: req.resource.clone(),
            decision: resp.decision,
            statements: resp.statements.clone(),
            missing: resp.missing.clone(),
            layers: resp.layers.clone(),
        });
    }
}
