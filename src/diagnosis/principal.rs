//! Any principal, not only a Kubernetes workload: a snapshot's `request:` names one caller (an
//! IAM user, a role or role session, a federated user, a service principal), a queue and the
//! actions. The Kubernetes credential step is skipped; the SQS and KMS steps run as that caller,
//! with its identity policies (a user's own and its groups'), boundary, session policy and
//! request context.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::json;

use super::access::required_actions;
use super::check::{Diag, Who};
use super::context::{named, principal_org_keys};
use super::pod_identity::SessionTags;
use super::reason::{DiagLayer, Finding, Fix, FixTarget, ReasonCode};
use super::snapshot::{NetworkPath, RequestEvidence, RoleEvidence, Snapshot, UserEvidence};
use super::spec::{SpecError, SpecOptions, ValidSpec, vpc_endpoint_problem};
use crate::ids::{AccountId, QueueArn, QueueRef, RoleArn, UserArn};
use crate::policy::{Context, NamedPolicy, PolicySet, Principal, PrincipalKind};

/// Whose policies a call is evaluated with.
pub(super) enum Caller<'a> {
    /// A session of a role: the binding's role, or a role a request names.
    Role {
        arn: RoleArn,
        role: &'a RoleEvidence,
    },
    /// An IAM user, or a federated user of it (`federated`: the session is
    /// `arn:aws:sts::ACCOUNT:federated-user/NAME`, limited by its session policy).
    User {
        arn: UserArn,
        user: &'a UserEvidence,
        federated: bool,
    },
    /// An AWS service principal (`sns.amazonaws.com`): no identity policies, no SCPs; only a
    /// resource policy that names it grants.
    Service { name: String },
}

impl Caller<'_> {
    /// The account of the caller; `None` for a service.
    pub(super) fn account(&self) -> Option<&AccountId> {
        match self {
            Caller::Role { arn, .. } => Some(arn.account()),
            Caller::User { arn, .. } => Some(arn.account()),
            Caller::Service { .. } => None,
        }
    }

    /// `role`, `user`, `service principal`: for messages ("the role's account ...").
    pub(super) fn noun(&self) -> &'static str {
        match self {
            Caller::Role { .. } => "role",
            Caller::User { .. } => "user",
            Caller::Service { .. } => "service principal",
        }
    }

    /// `role arn:...`: for messages.
    pub(super) fn describe(&self) -> String {
        match self {
            Caller::Role { arn, .. } => format!("role {arn}"),
            Caller::User { arn, .. } => format!("user {arn}"),
            Caller::Service { name } => format!("service principal {name}"),
        }
    }

    /// How a resource policy statement names the caller: the role (not one session of it),
    /// the user, the service.
    pub(super) fn policy_principal(&self) -> serde_json::Value {
        match self {
            Caller::Role { arn, .. } => json!({ "AWS": arn.as_str() }),
            Caller::User { arn, .. } => json!({ "AWS": arn.as_str() }),
            Caller::Service { name } => json!({ "Service": name }),
        }
    }

    /// Where the caller's own grants are added: its identity policies; a service's only grants
    /// are in the queue policy.
    pub(super) fn grants_target(&self, queue: &QueueArn) -> FixTarget {
        match self {
            Caller::Role { arn, .. } => FixTarget::RolePolicy {
                role: arn.to_string(),
            },
            Caller::User { arn, .. } => FixTarget::UserPolicy {
                user: arn.to_string(),
            },
            Caller::Service { .. } => FixTarget::QueuePolicy {
                queue: queue.to_string(),
            },
        }
    }
}

/// The caller a request was evaluated as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallerSummary {
    /// The principal of the requests evaluated (the session, the user, the service).
    pub principal: String,
    /// `User`, `Role`, `AssumedRole`, `FederatedUser` or `Service`.
    pub kind: String,
    /// The role or user whose policies apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// A user's groups, whose policies apply too.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// The session name used when a request names a role, not one of its sessions.
pub const UNKNOWN_SESSION: &str = "session-name-unknown";

impl Diag {
    /// Diagnoses one principal's call.
    pub(super) fn run_request(
        &mut self,
        snap: &Snapshot,
        req: &RequestEvidence,
        opts: &SpecOptions,
    ) {
        let spec = match validate_request(req, opts) {
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
        self.evidence_findings(snap);
        let principal = Principal::parse(&req.principal);
        let Some((caller, session)) = self.caller(snap, &principal) else {
            return;
        };
        self.caller = Some(summary(&caller, &principal, &session));
        let name = match &caller {
            Caller::Role { arn, .. } => arn.name().to_string(),
            Caller::User { arn, .. } => arn.name().to_string(),
            Caller::Service { name } => name.split('.').next().unwrap_or(name).to_string(),
        };
        let who = Who {
            snap,
            spec: &spec,
            caller,
            session,
            name,
            provider_arn: None,
            vpce: spec.vpc_endpoint_id.clone().or_else(|| {
                snap.network
                    .as_ref()
                    .filter(|n| n.path == NetworkPath::VpcEndpoint)
                    .and_then(|n| n.vpc_endpoint_id.clone())
            }),
            session_tags: SessionTags::default(),
            session_policy: req.session_policy.as_ref().map(|p| {
                NamedPolicy::new(
                    format!("session policy of {}", req.principal),
                    p.policy.clone(),
                )
            }),
            association: None,
        };
        self.check_queue(&who);
    }

    /// The caller a request's principal is, with the evidence for it, and the principal of its
    /// requests. `None` (with a finding) when it cannot be evaluated.
    fn caller<'s>(&mut self, snap: &'s Snapshot, p: &Principal) -> Option<(Caller<'s>, String)> {
        let has_error = |item: &str| snap.evidence_errors.iter().any(|e| e.item == item);
        let invalid = |d: &mut Diag, why: String| {
            d.push(
                Finding::new(
                    ReasonCode::InvalidSpec,
                    DiagLayer::Spec,
                    format!("request.principal: {why}"),
                )
                .fix(Fix {
                    target: FixTarget::Binding,
                    instruction: "correct request.principal".into(),
                    statement: None,
                }),
            );
            None
        };
        let partition = crate::policy::Arn::parse(&p.arn)
            .map(|a| a.partition.to_string())
            .unwrap_or_else(|_| "aws".into());
        let account = p.account.as_deref().map(AccountId::parse);
        match &p.kind {
            PrincipalKind::AssumedRole { role_name } | PrincipalKind::Role { role_name } => {
                let Some(Ok(acct)) = account else {
                    return invalid(self, format!("\"{}\" has no 12-digit account id", p.arn));
                };
                let arn = match RoleArn::parse(&format!(
                    "arn:{partition}:iam::{acct}:role/{role_name}"
                )) {
                    Ok(a) => a,
                    Err(e) => return invalid(self, e.to_string()),
                };
                let session = match p.kind {
                    PrincipalKind::AssumedRole { .. } => p.arn.clone(),
                    _ => {
                        self.notes.push(format!(
                            "the session name is not known ({} is a role, not one of its sessions arn:{partition}:sts::{acct}:assumed-role/{role_name}/NAME): a policy that names one exact session is evaluated as not matching",
                            p.arn
                        ));
                        arn.session_arn(UNKNOWN_SESSION)
                    }
                };
                let role = self.request_role(snap.role.as_ref(), &arn, has_error("role"))?;
                Some((Caller::Role { arn, role }, session))
            }
            PrincipalKind::User => {
                let arn = match UserArn::parse(&p.arn) {
                    Ok(a) => a,
                    Err(e) => return invalid(self, e.to_string()),
                };
                let user = self.request_user(snap.user.as_ref(), &arn, has_error("user"), None)?;
                let session = arn.to_string();
                Some((
                    Caller::User {
                        arn,
                        user,
                        federated: false,
                    },
                    session,
                ))
            }
            PrincipalKind::FederatedUser => {
                // Its permissions are those of the IAM user that called GetFederationToken,
                // which its ARN does not name, intersected with the session policy.
                let Some(u) = &snap.user else {
                    if !has_error("user") {
                        self.push(Finding::new(
                            ReasonCode::EvidenceUnreadable,
                            DiagLayer::Evidence,
                            format!(
                                "{} is a federated user: its permissions are those of the IAM user that called sts:GetFederationToken (its ARN does not say which) and the session policy passed then; give that user as user: in a snapshot (and the session policy as request.sessionPolicy)",
                                p.arn
                            ),
                        ));
                    }
                    return None;
                };
                let arn = match UserArn::parse(&u.arn) {
                    Ok(a) => a,
                    Err(e) => {
                        self.push(Finding::new(
                            ReasonCode::InvalidSpec,
                            DiagLayer::Spec,
                            format!("user.arn: {e}"),
                        ));
                        return None;
                    }
                };
                let user = self.request_user(Some(u), &arn, false, Some(&p.arn))?;
                Some((
                    Caller::User {
                        arn,
                        user,
                        federated: true,
                    },
                    p.arn.clone(),
                ))
            }
            PrincipalKind::Service => Some((
                Caller::Service {
                    name: p.arn.clone(),
                },
                p.arn.clone(),
            )),
            PrincipalKind::Root => invalid(
                self,
                format!(
                    "{} is the account root user, which this tool does not evaluate (it has every permission in its account unless an SCP, RCP or resource policy denies)",
                    p.arn
                ),
            ),
            PrincipalKind::IdentityProvider | PrincipalKind::Other => invalid(
                self,
                format!(
                    "\"{}\" is not a principal that calls SQS; give an IAM user or role ARN, a role session (arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION), a federated user or a service principal (sns.amazonaws.com)",
                    p.arn
                ),
            ),
        }
    }

    fn request_role<'s>(
        &mut self,
        role: Option<&'s RoleEvidence>,
        arn: &RoleArn,
        errored: bool,
    ) -> Option<&'s RoleEvidence> {
        let Some(role) = role else {
            if !errored {
                self.push(Finding::new(
                    ReasonCode::EvidenceUnreadable,
                    DiagLayer::Evidence,
                    format!("role {arn} was not read"),
                ));
            }
            return None;
        };
        // A session ARN names the role without its path: compare account and name.
        let same = RoleArn::parse(&role.arn)
            .is_ok_and(|r| r.account() == arn.account() && r.name() == arn.name());
        if !same {
            self.push(Finding::new(
                ReasonCode::EvidenceUnreadable,
                DiagLayer::Evidence,
                format!(
                    "role {arn} was not read (the snapshot's role is {})",
                    role.arn
                ),
            ));
            return None;
        }
        if !role.found {
            self.push(
                Finding::new(
                    ReasonCode::RoleNotFound,
                    DiagLayer::TrustPolicy,
                    format!("role {arn} does not exist, so no session of it can call SQS"),
                )
                .fix(Fix {
                    target: FixTarget::RolePolicy {
                        role: arn.to_string(),
                    },
                    instruction: format!(
                        "check the principal: role {} does not exist in account {}",
                        arn.name(),
                        arn.account()
                    ),
                    statement: None,
                }),
            );
            return None;
        }
        Some(role)
    }

    fn request_user<'s>(
        &mut self,
        user: Option<&'s UserEvidence>,
        arn: &UserArn,
        errored: bool,
        federated: Option<&str>,
    ) -> Option<&'s UserEvidence> {
        let Some(user) = user else {
            if !errored {
                self.push(Finding::new(
                    ReasonCode::EvidenceUnreadable,
                    DiagLayer::Evidence,
                    format!("user {arn} was not read"),
                ));
            }
            return None;
        };
        let same = UserArn::parse(&user.arn)
            .is_ok_and(|u| u.account() == arn.account() && u.name() == arn.name());
        if !same {
            self.push(Finding::new(
                ReasonCode::EvidenceUnreadable,
                DiagLayer::Evidence,
                format!(
                    "user {arn} was not read (the snapshot's user is {})",
                    user.arn
                ),
            ));
            return None;
        }
        if !user.found {
            let of = federated
                .map(|f| format!(" (the IAM user behind {f})"))
                .unwrap_or_default();
            self.push(
                Finding::new(
                    ReasonCode::UserNotFound,
                    DiagLayer::IdentityPolicy,
                    format!("user {arn}{of} does not exist, so it cannot call SQS"),
                )
                .fix(Fix {
                    target: FixTarget::UserPolicy {
                        user: arn.to_string(),
                    },
                    instruction: format!(
                        "check the principal: user {} does not exist in account {}",
                        arn.name(),
                        arn.account()
                    ),
                    statement: None,
                }),
            );
            return None;
        }
        Some(user)
    }

    /// Identity policies, boundary and SCPs of a user: its own policies and its groups'.
    pub(super) fn user_set(
        &mut self,
        snap: &Snapshot,
        user: &UserEvidence,
        principal_acct: &AccountId,
    ) -> PolicySet {
        let mut set = PolicySet::default();
        for (i, p) in user.inline_policies.iter().enumerate() {
            set.identity
                .push(named(p, &format!("inline policy {i}"), "inline"));
        }
        for (i, p) in user.managed_policies.iter().enumerate() {
            set.identity
                .push(named(p, &format!("managed policy {i}"), "managed"));
        }
        for g in &user.groups {
            for (i, p) in g.inline_policies.iter().enumerate() {
                let mut n = named(p, &format!("inline policy {i}"), "group inline");
                n.name = format!("{} (group {})", n.name, g.name);
                set.identity.push(n);
            }
            for (i, p) in g.managed_policies.iter().enumerate() {
                let mut n = named(p, &format!("managed policy {i}"), "group managed");
                n.name = format!("{} (group {})", n.name, g.name);
                set.identity.push(n);
            }
        }
        if let Some(b) = &user.permissions_boundary {
            set.permission_boundary = Some(named(b, "permissions boundary", "boundary"));
        }
        if let Some(levels) = self.scps_for(snap, principal_acct) {
            set.scps = levels;
        }
        set
    }
}

/// A request's spec: the queue, the actions and the endpoint, checked as a binding's are.
fn validate_request(r: &RequestEvidence, opts: &SpecOptions) -> Result<ValidSpec, Vec<SpecError>> {
    let mut errors = Vec::new();
    if r.principal.trim().is_empty() {
        errors.push(SpecError {
            field: "request.principal".into(),
            message: "must name the caller (an IAM user or role ARN, a role session, a federated user or a service principal)".into(),
        });
    }
    let queue = match QueueRef::parse(&r.queue, &opts.extra_queue_hosts, opts.region.as_ref()) {
        Ok(q) => Some(q),
        Err(e) => {
            errors.push(SpecError {
                field: "request.queue".into(),
                message: e.to_string(),
            });
            None
        }
    };
    // API names (SendMessageBatch) are read as the action they need: an error names those.
    let actions: Vec<String> = r
        .actions
        .iter()
        .map(|a| {
            super::access::SqsAction::for_operation(a)
                .map(|x| x.as_str().to_string())
                .unwrap_or_else(|| a.clone())
        })
        .collect();
    let actions = match required_actions(&r.access, &actions, "request.actions") {
        Ok(a) => Some(a),
        Err(errs) => {
            errors.extend(errs.into_iter().map(|e| SpecError {
                field: e.field,
                message: e.message,
            }));
            None
        }
    };
    if let Some(v) = &r.vpc_endpoint_id
        && let Some(message) = vpc_endpoint_problem(v)
    {
        errors.push(SpecError {
            field: "request.vpcEndpointId".into(),
            message,
        });
    }
    match (queue, actions, errors.is_empty()) {
        (Some(queue), Some(actions), true) => Ok(ValidSpec {
            // Not a service account: a request has none.
            service_account: String::new(),
            queue,
            actions,
            vpc_endpoint_id: r.vpc_endpoint_id.clone(),
        }),
        _ => Err(errors),
    }
}

fn summary(caller: &Caller, p: &Principal, session: &str) -> CallerSummary {
    let kind = match (&p.kind, caller) {
        (PrincipalKind::AssumedRole { .. }, _) => "AssumedRole",
        (PrincipalKind::Role { .. }, _) => "Role",
        (PrincipalKind::FederatedUser, _) => "FederatedUser",
        (_, Caller::User { .. }) => "User",
        _ => "Service",
    };
    let (identity, groups) = match caller {
        Caller::Role { arn, .. } => (Some(arn.to_string()), vec![]),
        Caller::User { arn, user, .. } => (
            Some(arn.to_string()),
            user.groups.iter().map(|g| g.name.clone()).collect(),
        ),
        Caller::Service { .. } => (None, vec![]),
    };
    CallerSummary {
        principal: session.to_string(),
        kind: kind.into(),
        identity,
        groups,
    }
}

/// The request context keys that describe a caller other than a role session (those are
/// `context::session_keys`): a user, a federated user, a service.
pub(super) fn caller_keys(c: &mut Context, snap: &Snapshot, caller: &Caller, session: &str) {
    match caller {
        Caller::Role { .. } => {}
        Caller::User {
            arn,
            user,
            federated,
        } => {
            let acct = arn.account();
            if *federated {
                c.insert("aws:PrincipalArn", session.to_string())
                    .insert("aws:PrincipalType", "FederatedUser");
            } else {
                c.insert("aws:PrincipalArn", arn.to_string())
                    .insert("aws:PrincipalType", "User")
                    .insert("aws:username", arn.name().to_string());
            }
            c.insert("aws:PrincipalAccount", acct.to_string())
                .insert("aws:PrincipalIsAWSService", "false")
                .mark_unknown("aws:userid")
                .mark_unknown("aws:MultiFactorAuthPresent")
                .mark_unknown("aws:MultiFactorAuthAge")
                .mark_unknown("aws:TokenIssueTime");
            let tags: &BTreeMap<String, String> = &user.tags;
            for (k, v) in tags {
                c.insert(&format!("aws:PrincipalTag/{k}"), v.clone());
            }
            principal_org_keys(c, snap, acct);
        }
        Caller::Service { name } => {
            // A service acting for a resource (an SNS topic, an S3 bucket) says which one.
            c.insert("aws:PrincipalIsAWSService", "true")
                .insert("aws:PrincipalServiceName", name.clone());
            for k in ["aws:SourceArn", "aws:SourceAccount", "aws:SourceOrgID"] {
                c.mark_unknown(k);
            }
        }
    }
}
