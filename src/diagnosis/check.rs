//! The diagnosis: from a snapshot, decide whether each access the binding needs would succeed,
//! layer by layer, and say what to change when it would not. Pure: a `Snapshot` goes in, a
//! `Verdict` comes out.

use serde::Serialize;

use super::findings::merge_fixes;
use super::reason::{DiagLayer, Finding, Fix, FixTarget, Outcome, ReasonCode};
use super::snapshot::{EvidenceErrorKind, NetworkPath, RoleEvidence, Snapshot};
use super::spec::{SpecOptions, ValidSpec};
pub use super::trust::normalize_issuer;
use crate::ids::RoleArn;
use crate::policy::{Decision, Gap, LayerOutcome, Request, Response, StatementRef};

/// The IRSA annotations (amazon-eks-pod-identity-webhook).
pub const ROLE_ARN_ANNOTATION: &str = "eks.amazonaws.com/role-arn";
pub const AUDIENCE_ANNOTATION: &str = "eks.amazonaws.com/audience";
pub const DEFAULT_AUDIENCE: &str = "sts.amazonaws.com";

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
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedRole {
    pub arn: String,
    /// Where the role came from: `serviceAccountAnnotation`.
    pub source: String,
    pub audience: String,
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
    d.finish()
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
        let ns = snap.binding.namespace.as_str();
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

        // The service account and its role annotation.
        let Some(sa) = &snap.service_account else {
            if !has_error("serviceAccount") {
                self.push(Finding::new(
                    ReasonCode::EvidenceUnreadable,
                    DiagLayer::Evidence,
                    format!("service account {ns}/{sa_name} was not read"),
                ));
            }
            return;
        };
        let sa_target = FixTarget::ServiceAccount {
            namespace: ns.to_string(),
            name: sa_name.to_string(),
        };
        if !sa.found {
            self.push(
                Finding::new(
                    ReasonCode::ServiceAccountNotFound,
                    DiagLayer::ServiceAccount,
                    format!("service account {ns}/{sa_name} does not exist"),
                )
                .fix(Fix {
                    target: sa_target,
                    instruction: format!(
                        "create service account {sa_name} in namespace {ns} with the annotation {ROLE_ARN_ANNOTATION}: <role ARN>"
                    ),
                    statement: None,
                }),
            );
            return;
        }
        let Some(raw_role) = sa.annotations.get(ROLE_ARN_ANNOTATION) else {
            self.push(
                Finding::new(
                    ReasonCode::ServiceAccountHasNoRole,
                    DiagLayer::ServiceAccount,
                    format!(
                        "service account {ns}/{sa_name} has no {ROLE_ARN_ANNOTATION} annotation, so pods using it get no IRSA credentials (the SDK falls back to the node's role)"
                    ),
                )
                .fix(Fix {
                    target: sa_target,
                    instruction: format!(
                        "kubectl annotate serviceaccount -n {ns} {sa_name} {ROLE_ARN_ANNOTATION}=<role ARN>, then restart the pods"
                    ),
                    statement: None,
                }),
            );
            return;
        };
        let role_arn = match RoleArn::parse(raw_role) {
            Ok(r) => r,
            Err(e) => {
                self.push(
                    Finding::new(
                        ReasonCode::InvalidRoleArn,
                        DiagLayer::ServiceAccount,
                        format!(
                            "the {ROLE_ARN_ANNOTATION} annotation of {ns}/{sa_name} is invalid: {e}; STS answers \"Request ARN is invalid\""
                        ),
                    )
                    .fix(Fix {
                        target: sa_target,
                        instruction: format!(
                            "set {ROLE_ARN_ANNOTATION} to a role ARN such as arn:aws:iam::123456789012:role/NAME"
                        ),
                        statement: None,
                    }),
                );
                return;
            }
        };
        let audience = sa
            .annotations
            .get(AUDIENCE_ANNOTATION)
            .cloned()
            .unwrap_or_else(|| DEFAULT_AUDIENCE.to_string());
        self.role = Some(ResolvedRole {
            arn: role_arn.to_string(),
            source: "serviceAccountAnnotation".into(),
            audience: audience.clone(),
        });

        let Some(role) = &snap.role else {
            if !has_error("role") {
                self.push(Finding::new(
                    ReasonCode::EvidenceUnreadable,
                    DiagLayer::Evidence,
                    format!("role {role_arn} was not read"),
                ));
            }
            return;
        };
        if !role.found {
            self.push(
                Finding::new(
                    ReasonCode::RoleNotFound,
                    DiagLayer::TrustPolicy,
                    format!(
                        "role {role_arn} named by {ns}/{sa_name} does not exist (STS reports this as a generic AccessDenied)"
                    ),
                )
                .fix(Fix {
                    target: FixTarget::ServiceAccount {
                        namespace: ns.to_string(),
                        name: sa_name.to_string(),
                    },
                    instruction: format!(
                        "create role {} in account {}, or point {ROLE_ARN_ANNOTATION} at an existing role",
                        role_arn.name(),
                        role_arn.account()
                    ),
                    statement: None,
                }),
            );
            return;
        }
        if role.arn != role_arn.as_str() {
            self.warnings.push(format!(
                "the snapshot's role {} differs from the annotation's {role_arn}; evaluating the snapshot's documents",
                role.arn
            ));
        }

        let issuer = snap
            .cluster
            .oidc_issuer
            .as_deref()
            .map(normalize_issuer)
            .filter(|i| !i.is_empty());
        let provider_arn = issuer.as_ref().map(|i| {
            format!(
                "arn:{}:iam::{}:oidc-provider/{}",
                role_arn.partition(),
                role_arn.account(),
                i
            )
        });
        let who = Who {
            snap,
            spec: &spec,
            role_arn: role_arn.clone(),
            role,
            session: role_arn.session_arn("irsa-session"),
            provider_arn: provider_arn.clone(),
            vpce: spec.vpc_endpoint_id.clone().or_else(|| {
                snap.network
                    .as_ref()
                    .filter(|n| n.path == NetworkPath::VpcEndpoint)
                    .and_then(|n| n.vpc_endpoint_id.clone())
            }),
        };
        self.check_trust(&who, issuer.as_deref(), &audience);

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
