//! The diagnosis: from a snapshot, decide whether each access the binding needs would succeed,
//! layer by layer, and say what to change when it would not. Pure: a `Snapshot` goes in, a
//! `Verdict` comes out.

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

use super::reason::{DiagLayer, Finding, Fix, FixTarget, Outcome, ReasonCode};
use super::snapshot::{
    Document, EvidenceErrorKind, KeyManager, NamedDocument, NetworkPath, OrgAccountEvidence,
    OrgLevelEvidence, RoleEvidence, Snapshot, StringOrList,
};
use super::spec::{SpecOptions, ValidSpec};
use crate::ids::{AccountId, Region, RoleArn};
use crate::policy::{
    Context, Decision, Effect, Gap, Layer, LayerOutcome, NamedPolicy, OrgLevel, Policy, PolicySet,
    Request, Response, StatementRef, authorize,
};

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
struct Diag {
    reasons: Vec<Finding>,
    checks: Vec<Check>,
    warnings: Vec<String>,
    notes: Vec<String>,
    role: Option<ResolvedRole>,
    queue: Option<QueueSummary>,
}

/// What the SQS and KMS steps share.
struct Who<'a> {
    snap: &'a Snapshot,
    spec: &'a ValidSpec,
    role_arn: RoleArn,
    role: &'a RoleEvidence,
    session: String,
    provider_arn: Option<String>,
    /// The VPC endpoint the workload reaches SQS through, when known.
    vpce: Option<String>,
}

impl Diag {
    fn push(&mut self, f: Finding) {
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

    // ---- trust ----

    fn check_trust(&mut self, who: &Who, issuer: Option<&str>, audience: &str) {
        let snap = who.snap;
        let role_arn = &who.role_arn;
        let ns = snap.binding.namespace.as_str();
        let sa = who.spec.service_account.as_str();
        let Some(issuer) = issuer else {
            self.push(Finding::new(
                ReasonCode::OidcIssuerUnknown,
                DiagLayer::TrustPolicy,
                "the cluster's OIDC issuer is not known, so the trust policy cannot be checked (configure --oidc-issuer)",
            ));
            return;
        };
        let provider_arn = who.provider_arn.clone().unwrap_or_default();
        let subject = format!("system:serviceaccount:{ns}:{sa}");
        match &snap.oidc_providers {
            None => self.notes.push(format!(
                "the IAM OIDC providers of account {} were not read: provider registration not checked",
                role_arn.account()
            )),
            Some(list) => match list.iter().find(|p| normalize_issuer(&p.url) == issuer) {
                None => self.push(
                    Finding::new(
                        ReasonCode::OidcProviderNotRegistered,
                        DiagLayer::OidcProvider,
                        format!(
                            "no IAM OIDC provider for https://{issuer} is registered in account {} (STS: \"No OpenIDConnect provider found in your account\")",
                            role_arn.account()
                        ),
                    )
                    .fix(Fix {
                        target: FixTarget::OidcProvider {
                            account: role_arn.account().to_string(),
                            issuer: format!("https://{issuer}"),
                        },
                        instruction: format!(
                            "aws iam create-open-id-connect-provider --url https://{issuer} --client-id-list {audience} (or eksctl utils associate-iam-oidc-provider --approve) in account {}",
                            role_arn.account()
                        ),
                        statement: None,
                    }),
                ),
                Some(p) if !p.client_ids.iter().any(|c| c == audience) => self.push(
                    Finding::new(
                        ReasonCode::OidcProviderAudienceMismatch,
                        DiagLayer::OidcProvider,
                        format!(
                            "the OIDC provider for https://{issuer} does not list the token audience \"{audience}\" among its client IDs {:?} (STS: \"Incorrect token audience\")",
                            p.client_ids
                        ),
                    )
                    .fix(Fix {
                        target: FixTarget::OidcProvider {
                            account: role_arn.account().to_string(),
                            issuer: format!("https://{issuer}"),
                        },
                        instruction: format!(
                            "aws iam add-client-id-to-open-id-connect-provider --open-id-connect-provider-arn {provider_arn} --client-id {audience}"
                        ),
                        statement: None,
                    }),
                ),
                Some(_) => {}
            },
        }
        let Some(trust) = &who.role.trust_policy else {
            self.notes.push(format!(
                "the trust policy of {role_arn} was not read: trust not checked"
            ));
            return;
        };
        let sub_key = format!("{issuer}:sub");
        let aud_key = format!("{issuer}:aud");
        let build = |unknown: Option<&str>| {
            let mut ctx = Context::new();
            ctx.insert(&sub_key, subject.clone())
                .insert(&aud_key, audience.to_string())
                .mark_unknown("aws:SourceIp")
                .mark_unknown("sts:RoleSessionName");
            if let Some(k) = unknown {
                ctx.mark_unknown(k);
            }
            Request::new(
                &provider_arn,
                "sts:AssumeRoleWithWebIdentity",
                role_arn.as_str(),
                ctx,
            )
        };
        let mut set = PolicySet {
            resource: vec![NamedPolicy::new("trust policy", trust.policy.clone())],
            ..Default::default()
        };
        let role_acct = role_arn.account().clone();
        if let Some(levels) = self.rcps_for(snap, &role_acct, "the role's account (STS)") {
            set.rcps = levels;
        }
        let req = build(None);
        let resp = authorize(&req, &set);
        self.record("trust", &req, &resp);
        let trust_target = FixTarget::TrustPolicy {
            role: role_arn.to_string(),
        };
        let trust_stmt = json!({
            "Effect": "Allow",
            "Principal": { "Federated": provider_arn },
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": { "StringEquals": { sub_key.clone(): subject, aud_key.clone(): audience } }
        });
        let trust_fix = |instruction: String| Fix {
            target: trust_target.clone(),
            instruction,
            statement: Some(trust_stmt.clone()),
        };
        match resp.decision {
            Decision::Allow => {
                let unscoped = resp.statements.iter().any(|s| {
                    s.layer == Layer::Resource
                        && statement_of(&set, s).is_some_and(|st| {
                            !st.conditions
                                .iter()
                                .any(|c| c.key.eq_ignore_ascii_case(&sub_key))
                        })
                });
                if unscoped {
                    self.warnings.push(format!(
                        "the trust policy of {role_arn} has no {sub_key} condition: every service account in the cluster can assume this role"
                    ));
                }
            }
            Decision::ExplicitDeny => {
                for s in &resp.statements {
                    let (code, layer) = if s.layer == Layer::Rcp {
                        (ReasonCode::ExplicitDenyInRcp, DiagLayer::Rcp)
                    } else {
                        (
                            ReasonCode::ExplicitDenyInTrustPolicy,
                            DiagLayer::TrustPolicy,
                        )
                    };
                    self.push(
                        Finding::new(
                            code,
                            layer,
                            format!(
                                "sts:AssumeRoleWithWebIdentity for {subject} is denied with an explicit deny in {}",
                                describe_statement(&set, s)
                            ),
                        )
                        .action("sts:AssumeRoleWithWebIdentity")
                        .statement(Some(s.clone()))
                        .fix(deny_fix(&set, s, "sts:AssumeRoleWithWebIdentity", trust_target.clone())),
                    );
                }
            }
            Decision::ImplicitDeny => {
                let stmts = &trust.policy.statements;
                let for_provider: Vec<_> = stmts
                    .iter()
                    .filter(|s| {
                        s.effect == Effect::Allow
                            && s.principal
                                .as_ref()
                                .is_some_and(|p| !p.negated && p.federated.contains(&provider_arn))
                    })
                    .collect();
                let wrong_action = !for_provider.is_empty()
                    && for_provider
                        .iter()
                        .all(|s| !s.action.matches("sts:assumerolewithwebidentity"));
                let aud_resp = authorize(&build(Some(&aud_key)), &set);
                let sub_resp = authorize(&build(Some(&sub_key)), &set);
                let (code, msg) = if for_provider.is_empty() {
                    let others: Vec<&String> = stmts
                        .iter()
                        .filter_map(|s| s.principal.as_ref())
                        .flat_map(|p| p.federated.iter())
                        .collect();
                    (
                        ReasonCode::TrustPolicyDoesNotAllowServiceAccount,
                        format!(
                            "the trust policy of {role_arn} has no statement for this cluster's OIDC provider {provider_arn}{} (STS: \"Not authorized to perform sts:AssumeRoleWithWebIdentity\")",
                            if others.is_empty() {
                                String::new()
                            } else {
                                format!(
                                    "; it trusts {}",
                                    join_quoted(others.iter().map(|s| s.as_str()))
                                )
                            }
                        ),
                    )
                } else if wrong_action {
                    (
                        ReasonCode::TrustPolicyDoesNotAllowServiceAccount,
                        format!(
                            "the trust policy of {role_arn} trusts {provider_arn} but only for {}; IRSA calls sts:AssumeRoleWithWebIdentity",
                            join_quoted(
                                for_provider.iter().flat_map(|s| s
                                    .action
                                    .raw
                                    .iter()
                                    .map(|a| a.as_str()))
                            )
                        ),
                    )
                } else if aud_resp.decision != Decision::ImplicitDeny
                    && sub_resp.decision == Decision::ImplicitDeny
                {
                    (
                        ReasonCode::TrustPolicyAudienceMismatch,
                        format!(
                            "the trust policy of {role_arn} requires a different {aud_key} than the token's audience \"{audience}\"{}",
                            allowed_values(&for_provider, &aud_key)
                        ),
                    )
                } else {
                    let hint = if for_provider.iter().any(|s| {
                        s.conditions.iter().any(|c| {
                            c.key.eq_ignore_ascii_case(&sub_key)
                                && c.operator.starts_with("StringEquals")
                                && c.raw_values().any(|v| v.contains(['*', '?']))
                        })
                    }) {
                        "; a wildcard in a StringEquals condition is literal: use StringLike"
                    } else {
                        ""
                    };
                    (
                        ReasonCode::TrustPolicyDoesNotAllowServiceAccount,
                        format!(
                            "the trust policy of {role_arn} does not allow {sub_key} = \"{subject}\"{}{hint} (STS: \"Not authorized to perform sts:AssumeRoleWithWebIdentity\")",
                            allowed_values(&for_provider, &sub_key)
                        ),
                    )
                };
                self.push(
                    Finding::new(code, DiagLayer::TrustPolicy, msg)
                        .action("sts:AssumeRoleWithWebIdentity")
                        .fix(trust_fix(format!(
                            "add this statement to {} (or add the subject to the existing statement's condition)",
                            trust_target.describe()
                        ))),
                );
            }
            Decision::Indeterminate => self.push(depends_finding(
                &resp,
                "sts:AssumeRoleWithWebIdentity",
                DiagLayer::TrustPolicy,
            )),
        }
    }

    // ---- SQS ----

    fn check_sqs(&mut self, who: &Who, queue_policy: Option<&Document>) {
        let snap = who.snap;
        let spec = who.spec;
        let queue_arn = &spec.queue.arn;
        let region = queue_arn.region();
        let principal_acct = who.role_arn.account().clone();
        let cross = principal_acct != *queue_arn.account();

        let mut set = self.identity_set(who, &principal_acct);
        if let Some(p) = queue_policy {
            set.resource.push(NamedPolicy::new(
                format!("queue policy of {queue_arn}"),
                p.policy.clone(),
            ));
        }
        if let Some(levels) = self.rcps_for(snap, queue_arn.account(), "the queue's account") {
            set.rcps = levels;
        }
        let vpce = who.vpce.clone();
        if let Some(id) = &vpce {
            match snap.network.as_ref().filter(|n| n.vpc_endpoint_id.as_deref() == Some(id)) {
                Some(n) => match &n.vpc_endpoint_policy {
                    Some(p) => {
                        set.vpc_endpoint =
                            Some(NamedPolicy::new(format!("policy of VPC endpoint {id}"), p.policy.clone()))
                    }
                    None => self.notes.push(format!(
                        "the policy of VPC endpoint {id} was not read: endpoint policy not evaluated"
                    )),
                },
                None => self.notes.push(format!(
                    "VPC endpoint {id} was not read: endpoint policy not evaluated"
                )),
            }
        }
        let ctx = self.principal_context(who, region, false, vpce.as_deref());

        for action in &spec.actions {
            if cross && !action.cross_account_grantable() && !action.is_list_queues() {
                self.push(
                    Finding::new(
                        ReasonCode::ActionNotAllowedCrossAccount,
                        DiagLayer::QueuePolicy,
                        format!(
                            "{} cannot be granted to another account by a queue policy; the role is in {principal_acct}, the queue in {}",
                            action.as_str(),
                            queue_arn.account()
                        ),
                    )
                    .action(action.as_str())
                    .fix(Fix {
                        target: FixTarget::Binding,
                        instruction: format!(
                            "remove {} from spec.actions, or run this workload with a role in account {}",
                            action.as_str(),
                            queue_arn.account()
                        ),
                        statement: None,
                    }),
                );
                continue;
            }
            let list_queues = action.is_list_queues();
            let (resource, req_set);
            let owned;
            if list_queues {
                // No resource type: evaluated against "*" in the caller's own account, where
                // no queue policy takes part.
                resource = "*".to_string();
                let mut s = set.clone();
                s.resource.clear();
                owned = s;
                req_set = &owned;
            } else {
                resource = queue_arn.to_string();
                req_set = &set;
            }
            let mut req = Request::new(&who.session, action.as_str(), &resource, ctx.clone());
            if list_queues {
                req = req.with_resource_account(Some(principal_acct.to_string()));
            }
            let resp = authorize(&req, req_set);
            self.record("sqs", &req, &resp);
            self.findings_for(
                who,
                req_set,
                &resp,
                action.as_str(),
                &resource,
                Target::Queue,
            );
            if list_queues && resp.decision == Decision::ImplicitDeny {
                let narrow = req_set.identity.iter().any(|p| {
                    p.policy.statements.iter().any(|s| {
                        s.effect == Effect::Allow
                            && s.action.matches("sqs:listqueues")
                            && s.resource
                                .as_ref()
                                .is_some_and(|r| !r.raw().any(|x| x == "*"))
                    })
                });
                if narrow {
                    self.push(
                        Finding::new(
                            ReasonCode::ListQueuesNeedsWildcardResource,
                            DiagLayer::IdentityPolicy,
                            "sqs:ListQueues has no resource type: a statement that names a queue ARN never grants it; it needs \"Resource\": \"*\"",
                        )
                        .action("sqs:ListQueues")
                        .fix(Fix {
                            target: FixTarget::RolePolicy {
                                role: who.role_arn.to_string(),
                            },
                            instruction: format!(
                                "grant sqs:ListQueues on \"*\" in an identity policy of role {}",
                                who.role_arn
                            ),
                            statement: Some(json!({
                                "Sid": "SqsListQueues",
                                "Effect": "Allow",
                                "Action": ["sqs:ListQueues"],
                                "Resource": "*"
                            })),
                        }),
                    );
                }
            }
        }
    }

    // ---- KMS ----

    fn check_kms(&mut self, who: &Who, key_id: &str) {
        let snap = who.snap;
        let queue_arn = &who.spec.queue.arn;
        let needed: Vec<&'static str> = {
            let mut v: Vec<&'static str> = Vec::new();
            for a in &who.spec.actions {
                for k in a.kms_actions() {
                    if !v.contains(k) {
                        v.push(k);
                    }
                }
            }
            v
        };
        if needed.is_empty() {
            return;
        }
        let principal_acct = who.role_arn.account().clone();
        let aws_managed_alias = key_id.ends_with("alias/aws/sqs");
        let Some(key) = &snap.kms_key else {
            if aws_managed_alias && principal_acct != *queue_arn.account() {
                self.push(managed_key_cross_account(
                    key_id,
                    &principal_acct,
                    queue_arn.account(),
                ));
                return;
            }
            if !snap.evidence_errors.iter().any(|e| e.item == "kmsKey") {
                self.push(Finding::new(
                    ReasonCode::EvidenceUnreadable,
                    DiagLayer::Evidence,
                    format!("KMS key {key_id} of the queue was not read: the SSE-KMS layer is not decided"),
                ));
            }
            return;
        };
        let key_target = FixTarget::KmsKey {
            key: key.arn.clone(),
        };
        if !key.found {
            self.push(
                Finding::new(
                    ReasonCode::KmsKeyNotFound,
                    DiagLayer::KmsKey,
                    format!(
                        "the queue's KMS key {key_id} does not exist (SQS answers KmsNotFound); every send and receive fails"
                    ),
                )
                .fix(Fix {
                    target: FixTarget::Queue {
                        queue: queue_arn.to_string(),
                    },
                    instruction: "set the queue's KmsMasterKeyId to an existing key, or switch to SSE-SQS".into(),
                    statement: None,
                }),
            );
            return;
        }
        let key_acct = crate::policy::Arn::parse(&key.arn)
            .ok()
            .and_then(|a| AccountId::parse(a.account).ok())
            .unwrap_or_else(|| queue_arn.account().clone());
        if (key.key_manager == KeyManager::Aws || aws_managed_alias) && key_acct != principal_acct {
            self.push(managed_key_cross_account(
                &key.arn,
                &principal_acct,
                &key_acct,
            ));
            return;
        }
        match key.key_state.as_str() {
            "Enabled" => {}
            "PendingDeletion" | "PendingReplicaDeletion" => {
                self.push(
                    Finding::new(
                        ReasonCode::KmsKeyPendingDeletion,
                        DiagLayer::KmsKey,
                        format!(
                            "KMS key {} is pending deletion (SQS answers KmsInvalidState): every send and receive fails",
                            key.arn
                        ),
                    )
                    .fix(Fix {
                        target: key_target,
                        instruction: format!(
                            "aws kms cancel-key-deletion --key-id {} && aws kms enable-key --key-id {}",
                            key.arn, key.arn
                        ),
                        statement: None,
                    }),
                );
                return;
            }
            state => {
                self.push(
                    Finding::new(
                        ReasonCode::KmsKeyDisabled,
                        DiagLayer::KmsKey,
                        format!(
                            "KMS key {} is {state}, not Enabled (SQS answers KmsDisabled/KmsInvalidState): every send and receive fails",
                            key.arn
                        ),
                    )
                    .fix(Fix {
                        target: key_target,
                        instruction: format!("aws kms enable-key --key-id {}", key.arn),
                        statement: None,
                    }),
                );
                return;
            }
        }
        let key_region = crate::policy::Arn::parse(&key.arn)
            .ok()
            .and_then(|a| Region::parse(a.region).ok())
            .unwrap_or_else(|| queue_arn.region().clone());
        let mut set = self.identity_set(who, &principal_acct);
        let key_policy = match (&key.policy, key.key_manager) {
            (Some(p), _) => Some(p.policy.clone()),
            (None, KeyManager::Aws) => {
                Some(Arc::new(aws_managed_sqs_key_policy(&key_acct, &key_region)))
            }
            (None, KeyManager::Customer) => {
                // A key policy must allow (even in one account): without it nothing is decided.
                self.push(Finding::new(
                    ReasonCode::EvidenceUnreadable,
                    DiagLayer::Evidence,
                    format!(
                        "the key policy of {} was not read: the SSE-KMS layer is not decided",
                        key.arn
                    ),
                ));
                return;
            }
        };
        if let Some(p) = key_policy {
            set.resource
                .push(NamedPolicy::new(format!("key policy of {}", key.arn), p));
        }
        for g in &key.grants {
            if let Some(p) = grant_policy(g) {
                let name = format!(
                    "grant {}",
                    g.name.clone().or(g.grant_id.clone()).unwrap_or_default()
                );
                set.resource.push(NamedPolicy::new(name, p));
            }
        }
        // RCPs do not apply to AWS managed keys.
        if key.key_manager == KeyManager::Customer
            && let Some(levels) = self.rcps_for(snap, &key_acct, "the key's account")
        {
            set.rcps = levels;
        }
        let mut ctx = self.principal_context(who, &key_region, true, who.vpce.as_deref());
        ctx.insert("aws:ResourceAccount", key_acct.to_string())
            .insert(
                "kms:ViaService",
                format!(
                    "sqs.{}.{}",
                    queue_arn.region(),
                    queue_arn.region().dns_suffix()
                ),
            )
            .insert("kms:CallerAccount", principal_acct.to_string())
            .insert("kms:EncryptionContext:aws:sqs:arn", queue_arn.to_string())
            .insert_many("kms:EncryptionContextKeys", vec!["aws:sqs:arn".into()]);
        for action in needed {
            let req = Request::new(&who.session, action, &key.arn, ctx.clone());
            let resp = authorize(&req, &set);
            self.record("kms", &req, &resp);
            self.findings_for(who, &set, &resp, action, &key.arn, Target::Key);
        }
    }

    // ---- shared ----

    /// Identity policies, boundary and SCPs of the role.
    fn identity_set(&mut self, who: &Who, principal_acct: &AccountId) -> PolicySet {
        let role = who.role;
        let mut set = PolicySet::default();
        for (i, p) in role.inline_policies.iter().enumerate() {
            set.identity
                .push(named(p, &format!("inline policy {i}"), "inline"));
        }
        for (i, p) in role.managed_policies.iter().enumerate() {
            set.identity
                .push(named(p, &format!("managed policy {i}"), "managed"));
        }
        if let Some(b) = &role.permissions_boundary {
            set.permission_boundary = Some(named(b, "permissions boundary", "boundary"));
        }
        if let Some(levels) = self.scps_for(who.snap, principal_acct) {
            set.scps = levels;
        }
        set
    }

    fn org_account<'s>(
        &mut self,
        snap: &'s Snapshot,
        acct: &AccountId,
        what: &str,
        kind: &str,
    ) -> Option<&'s OrgAccountEvidence> {
        let note = match &snap.organization {
            None => "the organization is not known (add it to the configuration): SCPs and RCPs not evaluated".to_string(),
            Some(org) => match org.accounts.get(acct.as_str()) {
                Some(a) => return Some(a),
                None => format!(
                    "account {acct} is not in the snapshot's organization: {kind}s of {what} not evaluated"
                ),
            },
        };
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
        None
    }

    fn scps_for(&mut self, snap: &Snapshot, acct: &AccountId) -> Option<Vec<OrgLevel>> {
        let a = self.org_account(snap, acct, &format!("account {acct}"), "SCP")?;
        if a.management_account {
            return None;
        }
        match &a.scps {
            Some(levels) => Some(org_levels(levels)),
            None => {
                let n = format!("the SCPs of account {acct} are not known: not evaluated");
                if !self.notes.contains(&n) {
                    self.notes.push(n);
                }
                None
            }
        }
    }

    fn rcps_for(&mut self, snap: &Snapshot, acct: &AccountId, what: &str) -> Option<Vec<OrgLevel>> {
        let a = self.org_account(snap, acct, what, "RCP")?;
        if a.management_account {
            return None;
        }
        match &a.rcps {
            Some(levels) => Some(org_levels(levels)),
            None => {
                let n = format!("the RCPs of {what} ({acct}) are not known: not evaluated");
                if !self.notes.contains(&n) {
                    self.notes.push(n);
                }
                None
            }
        }
    }

    /// The request context AWS builds for a call by an IRSA session of the role.
    fn principal_context(
        &self,
        who: &Who,
        region: &Region,
        via_service: bool,
        vpce: Option<&str>,
    ) -> Context {
        let snap = who.snap;
        let role_arn = &who.role_arn;
        let acct = role_arn.account();
        let queue_acct = who.spec.queue.arn.account();
        let mut c = Context::new();
        c.insert("aws:PrincipalArn", role_arn.to_string())
            .insert("aws:PrincipalAccount", acct.to_string())
            .insert("aws:PrincipalType", "AssumedRole")
            .insert("aws:PrincipalIsAWSService", "false")
            .insert("aws:SecureTransport", "true")
            .insert("aws:RequestedRegion", region.to_string())
            .insert(
                "aws:ViaAWSService",
                if via_service { "true" } else { "false" },
            )
            .insert("aws:ResourceAccount", queue_acct.to_string())
            .mark_unknown("aws:userid")
            .mark_unknown("aws:TokenIssueTime")
            .mark_unknown("aws:SourceIdentity");
        if let Some(p) = &who.provider_arn {
            c.insert("aws:FederatedProvider", p.clone());
        }
        for (k, v) in &who.role.tags {
            c.insert(&format!("aws:PrincipalTag/{k}"), v.clone());
        }
        let org_of = |a: &AccountId| {
            snap.organization.as_ref().and_then(|o| {
                o.accounts
                    .get(a.as_str())
                    .map(|acc| (o.id.clone(), acc.path.clone()))
            })
        };
        match org_of(acct) {
            Some((id, path)) => {
                match id {
                    Some(id) => c.insert("aws:PrincipalOrgID", id),
                    None => c.mark_unknown("aws:PrincipalOrgID"),
                };
                match path {
                    Some(p) => c.insert_many("aws:PrincipalOrgPaths", vec![p]),
                    None => c.mark_unknown("aws:PrincipalOrgPaths"),
                };
            }
            None => {
                c.mark_unknown("aws:PrincipalOrgID")
                    .mark_unknown("aws:PrincipalOrgPaths");
            }
        }
        match org_of(queue_acct) {
            Some((Some(id), path)) => {
                c.insert("aws:ResourceOrgID", id);
                match path {
                    Some(p) => c.insert_many("aws:ResourceOrgPaths", vec![p]),
                    None => c.mark_unknown("aws:ResourceOrgPaths"),
                };
            }
            _ => {
                c.mark_unknown("aws:ResourceOrgID")
                    .mark_unknown("aws:ResourceOrgPaths");
            }
        }
        match snap.queue.as_ref().and_then(|q| q.tags.as_ref()) {
            Some(tags) if !via_service => {
                for (k, v) in tags {
                    c.insert(&format!("aws:ResourceTag/{k}"), v.clone());
                }
            }
            _ => {
                c.mark_unknown_prefix("aws:ResourceTag/");
            }
        }
        match snap.captured_at.as_deref().and_then(epoch_seconds) {
            Some(secs) => {
                c.insert(
                    "aws:CurrentTime",
                    snap.captured_at.clone().unwrap_or_default(),
                )
                .insert("aws:EpochTime", secs.to_string());
            }
            None => {
                c.mark_unknown("aws:CurrentTime")
                    .mark_unknown("aws:EpochTime");
            }
        }
        // The network path. SQS calling KMS for the caller (a forward access session) keeps
        // the caller's source IP but carries no VPC endpoint keys.
        match (vpce, &snap.network) {
            (Some(id), _) => {
                if !via_service {
                    c.insert("aws:SourceVpce", id.to_string());
                    match snap.network.as_ref().and_then(|n| n.vpc_id.clone()) {
                        Some(v) => c.insert("aws:SourceVpc", v),
                        None => c.mark_unknown("aws:SourceVpc"),
                    };
                    c.mark_unknown("aws:VpcSourceIp");
                }
                // Through an endpoint aws:SourceIp is absent.
            }
            (None, Some(n)) if n.path == NetworkPath::Internet => {
                match &n.source_ip {
                    Some(ip) => c.insert("aws:SourceIp", ip.clone()),
                    None => c.mark_unknown("aws:SourceIp"),
                };
            }
            _ => {
                c.mark_unknown("aws:SourceIp");
                if !via_service {
                    c.mark_unknown("aws:SourceVpce")
                        .mark_unknown("aws:SourceVpc")
                        .mark_unknown("aws:VpcSourceIp");
                }
            }
        }
        for (k, v) in &snap.request_context {
            let lc = k.to_ascii_lowercase();
            if via_service
                && matches!(
                    lc.as_str(),
                    "aws:sourcevpce" | "aws:sourcevpc" | "aws:vpcsourceip"
                )
            {
                continue;
            }
            match v {
                StringOrList::One(s) => c.insert(k, s.clone()),
                StringOrList::Many(l) => c.insert_many(k, l.clone()),
            };
        }
        c
    }

    fn record(&mut self, step: &'static str, req: &Request, resp: &Response) {
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

    /// Turns the engine's answer for one SQS or KMS action into findings with fixes.
    fn findings_for(
        &mut self,
        who: &Who,
        set: &PolicySet,
        resp: &Response,
        action: &str,
        resource: &str,
        target: Target,
    ) {
        let role = who.role_arn.as_str();
        let caller = format!(
            "User: {} is not authorized to perform: {action} on resource: {resource}",
            who.session
        );
        match resp.decision {
            Decision::Allow => {}
            Decision::ExplicitDeny => {
                for s in &resp.statements {
                    let (code, layer, what, fix_target) = match (s.layer, target) {
                        (Layer::Identity, _) => (
                            ReasonCode::ExplicitDenyInIdentityPolicy,
                            DiagLayer::IdentityPolicy,
                            "an identity-based policy",
                            FixTarget::RolePolicy { role: role.into() },
                        ),
                        (Layer::PermissionBoundary, _) => (
                            ReasonCode::ExplicitDenyInPermissionsBoundary,
                            DiagLayer::PermissionsBoundary,
                            "a permissions boundary",
                            FixTarget::PermissionsBoundary {
                                policy: s.policy.clone(),
                            },
                        ),
                        (Layer::Scp, _) => (
                            ReasonCode::ExplicitDenyInScp,
                            DiagLayer::Scp,
                            "a service control policy",
                            FixTarget::Scp {
                                target: s.target.clone().unwrap_or_default(),
                            },
                        ),
                        (Layer::Rcp, _) => (
                            ReasonCode::ExplicitDenyInRcp,
                            DiagLayer::Rcp,
                            "a resource control policy",
                            FixTarget::Rcp {
                                target: s.target.clone().unwrap_or_default(),
                            },
                        ),
                        (Layer::VpcEndpoint, _) => (
                            ReasonCode::ExplicitDenyInVpcEndpointPolicy,
                            DiagLayer::VpcEndpointPolicy,
                            "a VPC endpoint policy",
                            FixTarget::VpcEndpointPolicy {
                                endpoint: who.vpce.clone().unwrap_or_default(),
                            },
                        ),
                        (Layer::Resource | Layer::SessionPolicy, Target::Queue) => (
                            ReasonCode::ExplicitDenyInQueuePolicy,
                            DiagLayer::QueuePolicy,
                            "a resource-based policy",
                            FixTarget::QueuePolicy {
                                queue: who.spec.queue.arn.to_string(),
                            },
                        ),
                        (Layer::Resource | Layer::SessionPolicy, Target::Key) => (
                            ReasonCode::ExplicitDenyInKmsKeyPolicy,
                            DiagLayer::KmsKeyPolicy,
                            "a resource-based policy",
                            FixTarget::KeyPolicy {
                                key: resource.into(),
                            },
                        ),
                    };
                    self.push(
                        Finding::new(
                            code,
                            layer,
                            format!(
                                "{caller} with an explicit deny in {what}: {}",
                                describe_statement(set, s)
                            ),
                        )
                        .action(action)
                        .statement(Some(s.clone()))
                        .fix(deny_fix(set, s, action, fix_target)),
                    );
                }
            }
            Decision::ImplicitDeny => {
                let queue = who.spec.queue.arn.as_str();
                let kms_cond = || {
                    json!({ "StringEquals": { "kms:ViaService": format!(
                        "sqs.{}.{}",
                        who.spec.queue.arn.region(),
                        who.spec.queue.arn.region().dns_suffix()
                    ) } })
                };
                // Sids must be unique within a policy: statements on "*" get their own.
                let sid = sid_for(&who.spec.service_account, target)
                    + if resource == "*" { "AnyResource" } else { "" };
                for g in &resp.missing {
                    let (code, layer, msg, fix) = match g.layer {
                        Layer::Identity => {
                            let mut st = json!({ "Sid": sid, "Effect": "Allow", "Action": [action], "Resource": resource });
                            if target == Target::Key {
                                st["Condition"] = kms_cond();
                            }
                            (
                                ReasonCode::IdentityPolicyDoesNotAllow,
                                DiagLayer::IdentityPolicy,
                                format!(
                                    "{caller} because no identity-based policy allows the {action} action"
                                ),
                                Fix {
                                    target: FixTarget::RolePolicy { role: role.into() },
                                    instruction: format!(
                                        "add this statement to an identity policy of role {role}"
                                    ),
                                    statement: Some(st),
                                },
                            )
                        }
                        Layer::PermissionBoundary => {
                            let name = set
                                .permission_boundary
                                .as_ref()
                                .map(|p| p.name.clone())
                                .unwrap_or_default();
                            (
                                ReasonCode::PermissionsBoundaryDoesNotAllow,
                                DiagLayer::PermissionsBoundary,
                                format!(
                                    "{caller} because no permissions boundary allows the {action} action (boundary {name})"
                                ),
                                Fix {
                                    target: FixTarget::PermissionsBoundary {
                                        policy: name.clone(),
                                    },
                                    instruction: format!(
                                        "add this statement to the permissions boundary policy {name} of role {role}"
                                    ),
                                    statement: Some(
                                        json!({ "Sid": sid, "Effect": "Allow", "Action": [action], "Resource": resource }),
                                    ),
                                },
                            )
                        }
                        Layer::Scp => {
                            let t = g.target.clone().unwrap_or_default();
                            (
                                ReasonCode::ScpDoesNotAllow,
                                DiagLayer::Scp,
                                format!(
                                    "{caller} with an explicit deny in a service control policy: no SCP attached to {t} allows {action} (AWS words an SCP without an allow as an explicit deny)"
                                ),
                                Fix {
                                    target: FixTarget::Scp { target: t.clone() },
                                    instruction: format!(
                                        "an SCP attached to {t} must allow {action}; ask the organization's administrators to add this statement to one"
                                    ),
                                    statement: Some(
                                        json!({ "Sid": sid, "Effect": "Allow", "Action": [action], "Resource": resource }),
                                    ),
                                },
                            )
                        }
                        Layer::Rcp => {
                            let t = g.target.clone().unwrap_or_default();
                            (
                                ReasonCode::RcpDoesNotAllow,
                                DiagLayer::Rcp,
                                format!("{caller} because no resource control policy attached to {t} allows the {action} action"),
                                Fix {
                                    target: FixTarget::Rcp { target: t },
                                    instruction: "attach RCPFullAWSAccess (or an allow for this action) at this level".into(),
                                    statement: None,
                                },
                            )
                        }
                        Layer::VpcEndpoint => {
                            let id = who.vpce.clone().unwrap_or_default();
                            (
                                ReasonCode::VpcEndpointPolicyDoesNotAllow,
                                DiagLayer::VpcEndpointPolicy,
                                format!(
                                    "{caller} because no VPC endpoint policy allows the {action} action (endpoint {id})"
                                ),
                                Fix {
                                    target: FixTarget::VpcEndpointPolicy {
                                        endpoint: id.clone(),
                                    },
                                    instruction: format!(
                                        "add this statement to the policy of VPC endpoint {id}"
                                    ),
                                    statement: Some(
                                        json!({ "Sid": sid, "Effect": "Allow", "Principal": { "AWS": role }, "Action": [action], "Resource": resource }),
                                    ),
                                },
                            )
                        }
                        Layer::Resource | Layer::SessionPolicy => match target {
                            Target::Queue => (
                                ReasonCode::QueuePolicyDoesNotAllowCrossAccount,
                                DiagLayer::QueuePolicy,
                                format!(
                                    "{caller} because no resource-based policy allows the {action} action: the role's account {} differs from the queue's {}, so the queue policy must allow it too",
                                    who.role_arn.account(),
                                    who.spec.queue.arn.account()
                                ),
                                Fix {
                                    target: FixTarget::QueuePolicy {
                                        queue: queue.into(),
                                    },
                                    instruction: format!(
                                        "add this statement to the access policy of queue {queue} (in account {})",
                                        who.spec.queue.arn.account()
                                    ),
                                    statement: Some(
                                        json!({ "Sid": sid, "Effect": "Allow", "Principal": { "AWS": role }, "Action": [action], "Resource": queue }),
                                    ),
                                },
                            ),
                            Target::Key => (
                                ReasonCode::KmsKeyPolicyDoesNotAllow,
                                DiagLayer::KmsKeyPolicy,
                                format!(
                                    "{caller} because no resource-based policy allows the {action} action: the key policy of {resource} neither names the role nor lets IAM policies of account {} count (SQS calls KMS with your identity for SSE-KMS queues)",
                                    who.role_arn.account()
                                ),
                                Fix {
                                    target: FixTarget::KeyPolicy {
                                        key: resource.into(),
                                    },
                                    instruction: format!(
                                        "add this statement to the key policy of {resource}"
                                    ),
                                    statement: Some(
                                        json!({ "Sid": sid, "Effect": "Allow", "Principal": { "AWS": role }, "Action": [action], "Resource": "*", "Condition": kms_cond() }),
                                    ),
                                },
                            ),
                        },
                    };
                    self.push(Finding::new(code, layer, msg).action(action).fix(fix));
                }
            }
            Decision::Indeterminate => {
                let layer = match target {
                    Target::Queue => DiagLayer::QueuePolicy,
                    Target::Key => DiagLayer::KmsKeyPolicy,
                };
                self.push(depends_finding(resp, action, layer));
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Queue,
    Key,
}

fn named(p: &NamedDocument, fallback: &str, kind: &str) -> NamedPolicy {
    NamedPolicy {
        name: p.display_name(fallback),
        kind: Some(kind.to_string()),
        policy: p.document.policy.clone(),
    }
}

fn org_levels(levels: &[OrgLevelEvidence]) -> Vec<OrgLevel> {
    levels
        .iter()
        .map(|l| OrgLevel {
            target: l.target.clone(),
            policies: l
                .policies
                .iter()
                .enumerate()
                .map(|(i, p)| named(p, &format!("policy {i}"), "organization"))
                .collect(),
        })
        .collect()
}

/// `https://oidc.eks.us-east-1.amazonaws.com/id/ABC/` → `oidc.eks.us-east-1.amazonaws.com/id/ABC`
/// (the form IAM uses in provider ARNs and condition keys).
pub fn normalize_issuer(url: &str) -> String {
    let u = url.trim();
    let u = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))
        .unwrap_or(u);
    let u = u.trim_end_matches('/');
    match u.split_once('/') {
        Some((host, path)) => format!("{}/{}", host.to_ascii_lowercase(), path),
        None => u.to_ascii_lowercase(),
    }
}

fn epoch_seconds(rfc3339: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|d| d.timestamp())
}

fn statement_of<'a>(set: &'a PolicySet, s: &StatementRef) -> Option<&'a crate::policy::Statement> {
    let pols: Vec<&NamedPolicy> = match s.layer {
        Layer::Identity => set.identity.iter().collect(),
        Layer::Resource => set.resource.iter().collect(),
        Layer::PermissionBoundary => set.permission_boundary.iter().collect(),
        Layer::SessionPolicy => set.session_policy.iter().collect(),
        Layer::VpcEndpoint => set.vpc_endpoint.iter().collect(),
        Layer::Scp => set.scps.iter().flat_map(|l| l.policies.iter()).collect(),
        Layer::Rcp => set.rcps.iter().flat_map(|l| l.policies.iter()).collect(),
    };
    pols.into_iter()
        .find(|p| p.name == s.policy)
        .and_then(|p| p.policy.statements.get(s.index))
}

/// `statement "DenyNonVpce" (#1) of queue policy of arn:... (Condition: ...)`
fn describe_statement(set: &PolicySet, s: &StatementRef) -> String {
    let name = match &s.sid {
        Some(sid) => format!("statement \"{sid}\" (#{})", s.index),
        None => format!("statement #{}", s.index),
    };
    let at = match &s.target {
        Some(t) => format!(" attached to {t}"),
        None => String::new(),
    };
    let cond = statement_of(set, s)
        .filter(|st| !st.conditions.is_empty())
        .map(|st| {
            format!(
                " (condition: {})",
                st.conditions
                    .iter()
                    .map(|c| c.residual().to_string())
                    .collect::<Vec<_>>()
                    .join(" and ")
            )
        })
        .unwrap_or_default();
    format!("{name} of {}{at}{cond}", s.policy)
}

fn deny_fix(set: &PolicySet, s: &StatementRef, action: &str, target: FixTarget) -> Fix {
    let conditional = statement_of(set, s).is_some_and(|st| !st.conditions.is_empty());
    Fix {
        target,
        instruction: format!(
            "{} denies {action} for this workload: remove it, or narrow it so it does not match{}",
            describe_statement(set, s),
            if conditional {
                " (or make the request satisfy its condition)"
            } else {
                ""
            }
        ),
        statement: None,
    }
}

fn depends_finding(resp: &Response, action: &str, layer: DiagLayer) -> Finding {
    let mut parts = Vec::new();
    let mut residuals = Vec::new();
    for d in &resp.depends_on {
        let verb = if d.statement.effect == "Deny" {
            "denied if"
        } else {
            "allowed only if"
        };
        let sid = d
            .statement
            .sid
            .as_ref()
            .map(|s| format!(" \"{s}\""))
            .unwrap_or_default();
        parts.push(format!(
            "{verb} {} (statement{sid} of {})",
            d.condition, d.statement.policy
        ));
        if !residuals.contains(&d.condition) {
            residuals.push(d.condition.clone());
        }
    }
    let hint = if residuals.iter().any(|r| {
        let k = r.key.to_ascii_lowercase();
        k == "aws:sourcevpce" || k == "aws:sourcevpc"
    }) {
        "; set spec.vpcEndpointId (or the snapshot's network) so the network path is known"
    } else {
        ""
    };
    let mut f = Finding::new(
        ReasonCode::DependsOnRequestContext,
        layer,
        format!(
            "{action} depends on request context the operator cannot know: {}{hint}",
            parts.join("; ")
        ),
    )
    .action(action);
    f.depends_on = residuals;
    f
}

fn managed_key_cross_account(key: &str, principal: &AccountId, key_acct: &AccountId) -> Finding {
    Finding::new(
        ReasonCode::KmsAwsManagedKeyCrossAccount,
        DiagLayer::KmsKey,
        format!(
            "the queue is encrypted with the AWS managed key {key} of account {key_acct}, whose fixed key policy only serves principals of that account; the role is in {principal}, so no policy change can make this work"
        ),
    )
    .fix(Fix {
        target: FixTarget::KmsKey { key: key.into() },
        instruction: "switch the queue to a customer managed key whose key policy allows the role (kms:GenerateDataKey and kms:Decrypt via SQS), or to SSE-SQS".into(),
        statement: None,
    })
}

/// The fixed key policy of `alias/aws/sqs`, for when it was not read.
fn aws_managed_sqs_key_policy(acct: &AccountId, region: &Region) -> Policy {
    let doc = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "Allow access through Simple Queue Service (SQS) for all principals in the account that are authorized to use SQS",
            "Effect": "Allow",
            "Principal": { "AWS": "*" },
            "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:CreateGrant", "kms:DescribeKey"],
            "Resource": "*",
            "Condition": { "StringEquals": {
                "kms:CallerAccount": acct.as_str(),
                "kms:ViaService": format!("sqs.{region}.{}", region.dns_suffix())
            } }
        }, {
            "Sid": "Allow direct access to key metadata to the account",
            "Effect": "Allow",
            "Principal": { "AWS": format!("arn:{}:iam::{acct}:root", region.partition()) },
            "Action": ["kms:Describe*", "kms:Get*", "kms:List*", "kms:RevokeGrant"],
            "Resource": "*"
        }]
    });
    Policy::from_aws_str(&doc.to_string()).expect("the built-in key policy is valid")
}

/// A grant, as the allow statement it amounts to.
fn grant_policy(g: &super::snapshot::GrantEvidence) -> Option<Policy> {
    let actions: Vec<String> = g.operations.iter().map(|o| format!("kms:{o}")).collect();
    let mut st = json!({
        "Sid": g.grant_id.clone().unwrap_or_else(|| "grant".into()),
        "Effect": "Allow",
        "Principal": { "AWS": g.grantee_principal },
        "Action": actions,
        "Resource": "*"
    });
    if let Some(c) = &g.constraints {
        let mut eq = serde_json::Map::new();
        if let Some(sub) = &c.encryption_context_subset {
            for (k, v) in sub {
                eq.insert(format!("kms:EncryptionContext:{k}"), json!(v));
            }
        }
        let mut cond = serde_json::Map::new();
        if let Some(all) = &c.encryption_context_equals {
            for (k, v) in all {
                eq.insert(format!("kms:EncryptionContext:{k}"), json!(v));
            }
            cond.insert(
                "ForAllValues:StringEquals".into(),
                json!({ "kms:EncryptionContextKeys": all.keys().collect::<Vec<_>>() }),
            );
        }
        if !eq.is_empty() {
            cond.insert("StringEquals".into(), serde_json::Value::Object(eq));
        }
        if !cond.is_empty() {
            st["Condition"] = serde_json::Value::Object(cond);
        }
    }
    Policy::from_aws_str(&json!({ "Version": "2012-10-17", "Statement": [st] }).to_string()).ok()
}

fn sid_for(sa: &str, target: Target) -> String {
    let camel: String = sa
        .split(['-', '.', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect();
    match target {
        Target::Queue => format!("SqsAccess{camel}"),
        Target::Key => format!("SqsKmsAccess{camel}"),
    }
}

fn join_quoted<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<String> = items.map(|s| format!("\"{s}\"")).collect();
    v.join(", ")
}

fn allowed_values(stmts: &[&crate::policy::Statement], key: &str) -> String {
    let vals: Vec<&str> = stmts
        .iter()
        .flat_map(|s| s.conditions.iter())
        .filter(|c| c.key.eq_ignore_ascii_case(key))
        .flat_map(|c| c.raw_values())
        .collect();
    if vals.is_empty() {
        String::new()
    } else {
        format!(" (it allows {})", join_quoted(vals.into_iter()))
    }
}

/// Merges fixes that add statements to the same place: one statement with all the actions.
fn merge_fixes(fixes: impl Iterator<Item = Fix>) -> Vec<Fix> {
    let mut out: Vec<Fix> = Vec::new();
    for f in fixes {
        let shape = |st: &serde_json::Value| {
            let mut s = st.clone();
            if let Some(o) = s.as_object_mut() {
                o.remove("Action");
            }
            s
        };
        let existing = out.iter_mut().find(|o| {
            o.target == f.target
                && match (&o.statement, &f.statement) {
                    (Some(a), Some(b)) => shape(a) == shape(b),
                    (None, None) => o.instruction == f.instruction,
                    _ => false,
                }
        });
        match existing {
            Some(o) => {
                if let (Some(a), Some(b)) = (&mut o.statement, &f.statement)
                    && let (Some(acts), Some(new)) =
                        (a["Action"].as_array().cloned(), b["Action"].as_array())
                {
                    let mut acts = acts;
                    for n in new {
                        if !acts.contains(n) {
                            acts.push(n.clone());
                        }
                    }
                    a["Action"] = serde_json::Value::Array(acts);
                }
            }
            None => out.push(f),
        }
    }
    out
}
