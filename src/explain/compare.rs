//! AWS's claim against the diagnosis: the layer AWS names (or none), the layers the diagnosis
//! finds denying the refused action, and, when they differ or the diagnosis allows, which layers
//! this tool could not see, where to look, and what would let it read them.

use serde::Serialize;

use super::parse::{ClaimedLayer, ErrorKind, ParsedError};
use super::{Explanation, Selection};
use crate::diagnosis::merge_fixes as merge;
use crate::diagnosis::snapshot::NetworkPath;
use crate::diagnosis::{DiagLayer, Finding, Outcome, ReasonCode, Snapshot, Verdict};
use crate::ids::{AccountId, QueueArn, QueueRef, RoleArn};
use crate::policy::{Decision, Principal, PrincipalKind};

/// How AWS's claim and the diagnosis compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Agreement {
    /// The layer AWS names is one the diagnosis finds denying.
    Agrees,
    /// AWS's text names no layer (the legacy SQS text, "with an explicit deny."); the
    /// diagnosis names it.
    NamedNoLayer,
    /// AWS names another layer than the diagnosis: both are shown (AWS names only one policy
    /// type even when several deny).
    DifferentLayer,
    /// Every visible layer allows, and AWS names a layer this tool could not see.
    ClaimNotVisible,
    /// Every visible layer allows, yet AWS denied: the layers not visible are listed.
    AllowedInVisibleLayers,
    /// The diagnosis could not decide (evidence missing, or request context unknown).
    Undecided,
    /// STS refused the credentials: the credential step, before any SQS call.
    CredentialStep,
}

/// A layer this tool could not see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotVisible {
    /// `scp`, `rcp`, `vpcEndpointPolicy`, `sessionPolicy`, `requestContext`, ...
    pub layer: String,
    /// What it is, where to look, and what would let this tool read it.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    pub result: Agreement,
    /// The layer AWS names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed_layer: Option<ClaimedLayer>,
    /// Whether AWS says the deny was explicit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed_explicit: Option<bool>,
    /// The layers the diagnosis finds denying the refused action.
    pub our_layers: Vec<DiagLayer>,
    /// The answer, in words.
    pub message: String,
    /// Layers not visible to this tool that matter here.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_visible: Vec<NotVisible>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The diagnosis layer a claimed layer is, for the refused action.
fn diag_layers(c: ClaimedLayer, focus: &str) -> &'static [DiagLayer] {
    let kms = focus.starts_with("kms:");
    match c {
        ClaimedLayer::IdentityPolicy => &[DiagLayer::IdentityPolicy],
        ClaimedLayer::ResourcePolicy if kms => &[DiagLayer::KmsKeyPolicy, DiagLayer::KmsKey],
        ClaimedLayer::ResourcePolicy => &[DiagLayer::QueuePolicy],
        ClaimedLayer::PermissionsBoundary => &[DiagLayer::PermissionsBoundary],
        ClaimedLayer::SessionPolicy => &[DiagLayer::SessionPolicy],
        ClaimedLayer::ServiceControlPolicy => &[DiagLayer::Scp],
        ClaimedLayer::ResourceControlPolicy => &[DiagLayer::Rcp],
        ClaimedLayer::VpcEndpointPolicy => &[DiagLayer::VpcEndpointPolicy],
    }
}

fn layer_words(l: DiagLayer) -> &'static str {
    match l {
        DiagLayer::Spec => "the request itself",
        DiagLayer::ServiceAccount => "the service account",
        DiagLayer::PodIdentity => "EKS Pod Identity",
        DiagLayer::OidcProvider => "the IAM OIDC provider",
        DiagLayer::TrustPolicy => "the role's trust policy",
        DiagLayer::IdentityPolicy => "an identity-based policy",
        DiagLayer::PermissionsBoundary => "the permissions boundary",
        DiagLayer::SessionPolicy => "the session policy",
        DiagLayer::Scp => "a service control policy",
        DiagLayer::Rcp => "a resource control policy",
        DiagLayer::QueuePolicy => "the queue policy (a resource-based policy)",
        DiagLayer::VpcEndpointPolicy => "the VPC endpoint policy",
        DiagLayer::VpcEndpoint => "the VPC endpoint",
        DiagLayer::KmsKey => "the KMS key itself",
        DiagLayer::KmsKeyPolicy => "the KMS key policy (a resource-based policy)",
        DiagLayer::Evidence => "missing evidence",
    }
}

/// Findings about the refused action, and the blockers that name no action (a missing role,
/// user, queue or key; unreadable evidence).
fn focus_findings<'v>(v: &'v Verdict, focus: &str) -> Vec<&'v Finding> {
    v.reasons
        .iter()
        .filter(|r| r.code != ReasonCode::Allowed)
        .filter(|r| match &r.action {
            Some(a) => a.eq_ignore_ascii_case(focus),
            None => true,
        })
        .collect()
}

/// The account of a principal as a text or a selection names it.
fn principal_account(p: &str) -> Option<AccountId> {
    Principal::parse(p)
        .account
        .and_then(|a| AccountId::parse(&a).ok())
}

/// The layers that decide this call but were not visible.
fn not_visible(snap: &Snapshot, sel: &Selection, v: &Verdict) -> Vec<NotVisible> {
    let mut out = Vec::new();
    let caller_acct = sel
        .principal
        .as_deref()
        .and_then(principal_account)
        .or_else(|| {
            v.role
                .as_ref()
                .and_then(|r| RoleArn::parse(&r.arn).ok())
                .map(|r| r.account().clone())
        });
    let queue_acct = QueueRef::parse(&sel.queue, &[], None)
        .ok()
        .map(|q| q.arn.account().clone())
        .or_else(|| {
            v.queue
                .as_ref()
                .and_then(|q| QueueArn::parse(&q.arn).ok())
                .map(|q| q.account().clone())
        });
    let service_caller = sel
        .principal
        .as_deref()
        .is_some_and(|p| Principal::parse(p).kind == PrincipalKind::Service);
    let org = snap.organization.as_ref();
    let how_org = "to let this tool evaluate them, put the organization's policies in the configuration's organization: section (or the snapshot's)";
    if let Some(a) = caller_acct.as_ref().filter(|_| !service_caller) {
        let known = org
            .and_then(|o| o.accounts.get(a.as_str()))
            .is_some_and(|x| x.scps.is_some() || x.management_account);
        if !known {
            out.push(NotVisible {
                layer: "scp".into(),
                message: format!(
                    "the service control policies of account {a} (the organization layer): look at the SCPs attached on the path from the organization's root to the account (organizations:ListParents, ListPoliciesForTarget, DescribePolicy, in the management or delegated administrator account); {how_org}"
                ),
            });
        }
    }
    if let Some(a) = &queue_acct {
        let known = org
            .and_then(|o| o.accounts.get(a.as_str()))
            .is_some_and(|x| x.rcps.is_some() || x.management_account);
        if !known {
            out.push(NotVisible {
                layer: "rcp".into(),
                message: format!(
                    "the resource control policies of account {a}, the queue's (and the key's) account: look at the RCPs attached on its organization path; {how_org}"
                ),
            });
        }
    }
    let vpce = snap
        .request
        .as_ref()
        .and_then(|r| r.vpc_endpoint_id.clone())
        .or_else(|| {
            snap.binding
                .as_ref()
                .and_then(|b| b.spec.vpc_endpoint_id.clone())
        })
        .or_else(|| {
            snap.network
                .as_ref()
                .filter(|n| n.path == NetworkPath::VpcEndpoint)
                .and_then(|n| n.vpc_endpoint_id.clone())
        });
    let internet = snap
        .network
        .as_ref()
        .is_some_and(|n| n.path == NetworkPath::Internet);
    match vpce {
        None if !internet => out.push(NotVisible {
            layer: "vpcEndpointPolicy".into(),
            message: "the network path: if the call went through an interface VPC endpoint for SQS, its policy may deny (ec2:DescribeVpcEndpoints shows it); give --vpc-endpoint-id, with its policy in the configuration's vpcEndpoints:".into(),
        }),
        Some(id)
            if !snap
                .network
                .as_ref()
                .is_some_and(|n| n.vpc_endpoint_id.as_deref() == Some(id.as_str()) && n.vpc_endpoint_policy.is_some()) =>
        {
            out.push(NotVisible {
                layer: "vpcEndpointPolicy".into(),
                message: format!(
                    "the policy of VPC endpoint {id} was not read: put it in the configuration's vpcEndpoints: (ec2:DescribeVpcEndpoints shows it)"
                ),
            })
        }
        _ => {}
    }
    let session = sel.principal.as_deref().map(|p| Principal::parse(p).kind);
    let session_policy_unknown = matches!(
        session,
        Some(
            PrincipalKind::AssumedRole { .. }
                | PrincipalKind::Role { .. }
                | PrincipalKind::FederatedUser
        )
    ) && snap
        .request
        .as_ref()
        .is_none_or(|r| r.session_policy.is_none());
    if session_policy_unknown {
        out.push(NotVisible {
            layer: "sessionPolicy".into(),
            message: "a session policy, if whoever created the session passed one (sts:AssumeRole --policy/--policy-arns, sts:GetFederationToken): it is not visible in IAM; give it as request.sessionPolicy in a snapshot".into(),
        });
    }
    out
}

/// Checks AWS's claim against the diagnosis of the selection.
pub fn compare(e: &ParsedError, sel: Selection, snap: &Snapshot, v: Verdict) -> Explanation {
    let focus = sel.focus.clone();
    let findings = focus_findings(&v, &focus);
    let denying: Vec<&Finding> = findings
        .iter()
        .copied()
        .filter(|f| f.code.outcome() == Outcome::Denied)
        .collect();
    let undecided: Vec<&Finding> = findings
        .iter()
        .copied()
        .filter(|f| f.code.outcome() == Outcome::Indeterminate)
        .collect();
    let mut our_layers: Vec<DiagLayer> = Vec::new();
    for f in &denying {
        if !our_layers.contains(&f.layer) {
            our_layers.push(f.layer);
        }
    }
    let checked = v
        .checks
        .iter()
        .any(|c| c.action.eq_ignore_ascii_case(&focus) && c.decision == Decision::Allow);
    let claim = e.claim.as_ref();
    let claimed = claim.and_then(|c| c.layer);
    let claimed_explicit = claim.map(|c| c.explicit);
    let invisible = not_visible(snap, &sel, &v);
    let claimed_key = claimed.map(|c| match c {
        ClaimedLayer::ServiceControlPolicy => "scp",
        ClaimedLayer::ResourceControlPolicy => "rcp",
        ClaimedLayer::VpcEndpointPolicy => "vpcEndpointPolicy",
        ClaimedLayer::SessionPolicy => "sessionPolicy",
        _ => "",
    });
    let claim_hidden = invisible
        .iter()
        .find(|n| Some(n.layer.as_str()) == claimed_key);
    let mut notes = Vec::new();
    notes.extend(sel.assumptions.iter().cloned());
    principal_notes(e, &sel, &v, &mut notes);

    let ours = our_layers
        .iter()
        .map(|l| layer_words(*l))
        .collect::<Vec<_>>()
        .join(" and ");
    let aws_words = |c: ClaimedLayer| {
        format!(
            "{} in {} {}",
            if claimed_explicit == Some(true) {
                "an explicit deny"
            } else {
                "no allow"
            },
            if c == ClaimedLayer::IdentityPolicy {
                "an"
            } else {
                "a"
            },
            c.aws_phrase()
        )
    };
    let (result, message, shown_invisible) = if e.kind == ErrorKind::QueueDoesNotExist {
        queue_does_not_exist(&v, &focus, &denying, &ours, checked)
    } else if !denying.is_empty() {
        match claimed {
            Some(c)
                if diag_layers(c, &focus)
                    .iter()
                    .any(|l| our_layers.contains(l)) =>
            {
                if claimed_explicit == Some(true)
                    && c != ClaimedLayer::ServiceControlPolicy
                    && !denying
                        .iter()
                        .any(|f| diag_layers(c, &focus).contains(&f.layer) && f.statement.is_some())
                {
                    notes.push(format!(
                        "AWS says the deny in the {} is explicit, but no statement of it denies here: a policy version, a condition value or a document may differ from what was read",
                        c.aws_phrase()
                    ));
                }
                (
                    Agreement::Agrees,
                    format!(
                        "AWS and the diagnosis agree: {focus} is refused in {} ({}).",
                        layer_words(diag_layers(c, &focus)[0]),
                        aws_words(c)
                    ),
                    false,
                )
            }
            Some(c) => (
                Agreement::DifferentLayer,
                format!(
                    "AWS names {} ({}), the diagnosis finds {ours}: AWS names only one policy type even when several deny, so both may need a change{}",
                    layer_words(diag_layers(c, &focus)[0]),
                    aws_words(c),
                    match claim_hidden {
                        Some(_) => format!(
                            "; the {} was not visible to this tool (below)",
                            c.aws_phrase()
                        ),
                        None => String::new(),
                    }
                ),
                claim_hidden.is_some(),
            ),
            None => (
                Agreement::NamedNoLayer,
                format!(
                    "AWS's text names no policy type{}; the diagnosis finds {ours} denying {focus}.",
                    if claimed_explicit == Some(true) {
                        " (only that the deny is explicit)"
                    } else {
                        ""
                    }
                ),
                false,
            ),
        }
    } else if !undecided.is_empty() || !checked {
        let why = undecided
            .iter()
            .map(|f| f.message.clone())
            .collect::<Vec<_>>()
            .join("; ");
        (
            Agreement::Undecided,
            format!(
                "The diagnosis could not decide {focus}{}{}",
                if why.is_empty() {
                    String::new()
                } else {
                    format!(": {why}")
                },
                match claimed {
                    Some(c) => format!(". AWS says {}.", aws_words(c)),
                    None => ".".into(),
                }
            ),
            true,
        )
    } else if let (Some(c), Some(h)) = (claimed, claim_hidden) {
        (
            Agreement::ClaimNotVisible,
            format!(
                "AWS says {} denied {focus}; that layer was not visible to this tool, and every layer it could see allows {focus}. Look there: {}",
                aws_words(c),
                h.message
            ),
            true,
        )
    } else {
        let claim_text = match claimed {
            Some(c) => format!(
                " AWS says {}, which the diagnosis sees allowing: the document read may differ from the one in force (policy changes take time to apply; a cache holds documents for its TTL), or a condition depends on the real call's context.",
                aws_words(c)
            ),
            None => String::new(),
        };
        let extra = match e.kind {
            ErrorKind::KmsCiphertextInaccessible => {
                " KMS says this also when the key that encrypted the message does not exist, is in another region, or is not the queue's current key (messages sent before a key change, or a dead-letter queue's source queue key)."
            }
            _ => "",
        };
        (
            Agreement::AllowedInVisibleLayers,
            format!(
                "Every layer this tool could see allows {focus}, yet AWS denied it.{claim_text}{extra} The denial is in what was not visible (below), or the caller is not the principal evaluated (check with aws sts get-caller-identity where the call is made)."
            ),
            true,
        )
    };
    let mut not_visible = match result {
        // The claimed layer only: the diagnosis found a layer of its own.
        Agreement::DifferentLayer => claim_hidden.cloned().into_iter().collect(),
        // The claimed layer first.
        Agreement::ClaimNotVisible => {
            let (mut first, rest): (Vec<_>, Vec<_>) = invisible
                .into_iter()
                .partition(|n| Some(n.layer.as_str()) == claimed_key);
            first.extend(rest);
            first
        }
        _ if shown_invisible => invisible,
        _ => Vec::new(),
    };
    if result == Agreement::AllowedInVisibleLayers || result == Agreement::Undecided {
        not_visible.push(NotVisible {
            layer: "requestContext".into(),
            message: "the real call's request context: its source IP or VPC, MFA, time and tags are not known here, so a condition on them is decided only when the call is made".into(),
        });
    }
    let reasons: Vec<Finding> = findings.into_iter().cloned().collect();
    let fixes = merge(reasons.iter().filter_map(|f| f.fix.clone()));
    Explanation {
        error: e.clone(),
        evaluated: Some(sel),
        comparison: Comparison {
            result,
            claimed_layer: claimed,
            claimed_explicit,
            our_layers,
            message,
            not_visible,
            notes,
        },
        reasons,
        fixes,
        verdict: Some(v),
    }
}

fn queue_does_not_exist(
    v: &Verdict,
    focus: &str,
    denying: &[&Finding],
    ours: &str,
    checked: bool,
) -> (Agreement, String, bool) {
    if v.reasons
        .iter()
        .any(|r| r.code == ReasonCode::QueueNotFound)
    {
        return (
            Agreement::Agrees,
            "The queue does not exist: check its name (case-sensitive), region and account.".into(),
            false,
        );
    }
    if !denying.is_empty() {
        return (
            Agreement::DifferentLayer,
            format!(
                "The queue exists: SQS answers QueueDoesNotExist also to a caller that may not see the queue; {ours} denies {focus}."
            ),
            false,
        );
    }
    if !checked {
        return (
            Agreement::Undecided,
            format!(
                "Whether the queue exists, or the caller may call {focus}, could not be decided."
            ),
            true,
        );
    }
    (
        Agreement::AllowedInVisibleLayers,
        format!(
            "The queue exists and every visible layer allows {focus}: the caller likely looks in another region (SDKs default to the configured region) or another account (GetQueueUrl without QueueOwnerAWSAccountId looks in the caller's own)."
        ),
        true,
    )
}

/// When the principal AWS refused is not the one the binding resolves to, or the text's queue
/// is not the one evaluated.
fn principal_notes(e: &ParsedError, sel: &Selection, v: &Verdict, notes: &mut Vec<String>) {
    if let (Some(text), Some(role)) = (e.principal.as_deref(), v.role.as_ref()) {
        let p = Principal::parse(text);
        let role_arn = RoleArn::parse(&role.arn).ok();
        let same = match (&p.kind, &role_arn) {
            (
                PrincipalKind::AssumedRole { role_name } | PrincipalKind::Role { role_name },
                Some(r),
            ) => r.name() == role_name && p.account.as_deref() == Some(r.account().as_str()),
            _ => false,
        };
        if !same && sel.principal.is_none() {
            notes.push(format!(
                "AWS refused {text}, but the binding's service account gets role {}: the pod is not using its role's credentials (IRSA or Pod Identity was not injected, e.g. pods started before the annotation or association, or the SDK or an environment variable picked other credentials, such as the node's role); restart the pods and check the webhook",
                role.arn
            ));
        }
    }
    let evaluated = QueueRef::parse(&sel.queue, &[], None)
        .map(|q| q.arn.to_string())
        .unwrap_or_else(|_| sel.queue.clone());
    if let Some(r) = e.resource.as_deref()
        && QueueArn::parse(r).is_ok()
        && r != evaluated
        && !sel.queue.is_empty()
    {
        notes.push(format!(
            "the text's queue is {r}, the one evaluated is {}",
            sel.queue
        ));
    }
}

/// An STS error: what it means, and the binding's credential step when a binding was given.
pub fn credential_step(e: &ParsedError, v: Option<Verdict>) -> Explanation {
    let (meaning, codes): (&str, &[ReasonCode]) = match e.kind {
        ErrorKind::OidcProviderNotFound => (
            "no IAM OIDC provider for the cluster's issuer is registered in the role's account",
            &[ReasonCode::OidcProviderNotRegistered],
        ),
        ErrorKind::IncorrectTokenAudience => (
            "the token's audience is not among the IAM OIDC provider's client IDs",
            &[ReasonCode::OidcProviderAudienceMismatch],
        ),
        ErrorKind::InvalidRoleArn => (
            "the role ARN the pod was given is malformed",
            &[ReasonCode::InvalidRoleArn],
        ),
        _ => (
            "the role's trust policy does not let this caller assume it (wrong provider, subject, audience or action), or the role does not exist",
            &[
                ReasonCode::TrustPolicyDoesNotAllowServiceAccount,
                ReasonCode::TrustPolicyAudienceMismatch,
                ReasonCode::ExplicitDenyInTrustPolicy,
                ReasonCode::RoleNotFound,
                ReasonCode::OidcProviderNotRegistered,
                ReasonCode::PodIdentityTrustPolicyDoesNotAllow,
                ReasonCode::PodIdentityTargetRoleNotAssumable,
            ],
        ),
    };
    let issuer = e.oidc_issuer.as_deref().unwrap_or("URL");
    let Some(v) = v else {
        return Explanation {
            error: e.clone(),
            evaluated: None,
            comparison: Comparison {
                result: Agreement::CredentialStep,
                claimed_layer: None,
                claimed_explicit: None,
                our_layers: vec![],
                message: format!(
                    "STS refused the credentials, before any SQS call: {meaning}. This is the binding's credential step: diagnose it with sqs-access-operator diagnose --live --role-arn ROLE --namespace NAMESPACE --service-account NAME --oidc-issuer {issuer} --queue QUEUE (or explain this text with the binding's snapshot)."
                ),
                not_visible: vec![],
                notes: vec![],
            },
            reasons: vec![],
            fixes: vec![],
            verdict: None,
        };
    };
    let found: Vec<Finding> = v
        .reasons
        .iter()
        .filter(|r| codes.contains(&r.code))
        .cloned()
        .collect();
    let mut our_layers = Vec::new();
    for f in &found {
        if !our_layers.contains(&f.layer) {
            our_layers.push(f.layer);
        }
    }
    let (result, message) = if found.is_empty() {
        (
            Agreement::AllowedInVisibleLayers,
            format!(
                "STS says {meaning}, but the binding's credential step passes here: the pod may present another token or role than the binding's (restart pods after changing the annotation or association), or the snapshot's trust policy or providers differ from AWS's now."
            ),
        )
    } else {
        (
            Agreement::Agrees,
            format!("STS and the diagnosis agree: {meaning}."),
        )
    };
    let fixes = merge(found.iter().filter_map(|f| f.fix.clone()));
    Explanation {
        error: e.clone(),
        evaluated: None,
        comparison: Comparison {
            result,
            claimed_layer: None,
            claimed_explicit: None,
            our_layers,
            message,
            not_visible: vec![],
            notes: vec![],
        },
        reasons: found,
        fixes,
        verdict: Some(v),
    }
}
