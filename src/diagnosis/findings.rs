//! From the engine's answers to findings: reason codes, AWS-style messages, and the fix for
//! each (the statement to add, or the statement to remove, and where).

use serde_json::json;

use super::check::{Diag, Who};
use super::pod_identity::SESSION_TAG_KEYS;
use super::reason::{DiagLayer, Finding, Fix, FixTarget, ReasonCode};
use crate::policy::{Decision, Layer, NamedPolicy, PolicySet, Response, StatementRef};

impl Diag {
    /// Turns the engine's answer for one SQS or KMS action into findings with fixes.
    pub(super) fn findings_for(
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
                        (Layer::SessionPolicy, _) => (
                            ReasonCode::ExplicitDenyInSessionPolicy,
                            DiagLayer::SessionPolicy,
                            "a session policy",
                            association_target(who),
                        ),
                        (Layer::Resource, Target::Queue) => (
                            ReasonCode::ExplicitDenyInQueuePolicy,
                            DiagLayer::QueuePolicy,
                            "a resource-based policy",
                            FixTarget::QueuePolicy {
                                queue: who.spec.queue.arn.to_string(),
                            },
                        ),
                        (Layer::Resource, Target::Key) => (
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
                                    "{caller} because no identity-based policy allows the {action} action{}",
                                    session_tag_hint(who, set)
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
                        Layer::SessionPolicy => {
                            let mut st = json!({ "Sid": sid, "Effect": "Allow", "Action": [action], "Resource": resource });
                            if target == Target::Key {
                                st["Condition"] = kms_cond();
                            }
                            let id = who
                                .association
                                .and_then(|a| a.association_id.clone())
                                .unwrap_or_else(|| "<association id>".into());
                            (
                                ReasonCode::PodIdentitySessionPolicyDoesNotAllow,
                                DiagLayer::SessionPolicy,
                                format!(
                                    "{caller} because no session policy allows the {action} action (the session policy of EKS Pod Identity association {id} limits what role {role} may do)"
                                ),
                                Fix {
                                    target: association_target(who),
                                    instruction: format!(
                                        "add this statement to the session policy of EKS Pod Identity association {id} (aws eks update-pod-identity-association --association-id {id} --policy ...), or remove the session policy"
                                    ),
                                    statement: Some(st),
                                },
                            )
                        }
                        Layer::Resource => match target {
                            Target::Queue => (
                                ReasonCode::QueuePolicyDoesNotAllowCrossAccount,
                                DiagLayer::QueuePolicy,
                                format!(
                                    "{caller} because no resource-based policy allows the {action} action: the role's account {} differs from the queue's {}, so the queue policy must allow it too{}",
                                    who.role_arn.account(),
                                    who.spec.queue.arn.account(),
                                    session_tag_hint(who, set)
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

/// When a policy of `set` reads a Pod Identity session tag the session does not have: why.
fn session_tag_hint(who: &Who, set: &PolicySet) -> String {
    let policies = set
        .identity
        .iter()
        .chain(&set.resource)
        .chain(&set.permission_boundary)
        .chain(&set.session_policy);
    let mut texts: Vec<String> = Vec::new();
    for p in policies {
        for st in &p.policy.statements {
            for c in &st.conditions {
                texts.push(c.key.to_ascii_lowercase());
                texts.extend(c.raw_values().map(str::to_ascii_lowercase));
            }
            if let Some(r) = &st.resource {
                texts.extend(r.raw().map(str::to_ascii_lowercase));
            }
        }
    }
    let missing: Vec<String> = SESSION_TAG_KEYS
        .iter()
        .filter(|k| {
            let key = format!("aws:principaltag/{k}");
            !who.session_tags.known.contains_key(**k)
                && !who.session_tags.unknown.contains(k)
                && texts.iter().any(|t| t.contains(&key))
        })
        .map(|k| format!("aws:PrincipalTag/{k}"))
        .collect();
    if missing.is_empty() {
        return String::new();
    }
    let keys = missing.join(" and ");
    match who.association {
        Some(_) => format!(
            "; a policy reads {keys}, but the EKS Pod Identity association disables session tags, so the session has none"
        ),
        None => format!(
            "; a policy reads {keys}, session tags only EKS Pod Identity adds: an IRSA session has none"
        ),
    }
}

/// Where the Pod Identity association of the workload is changed.
fn association_target(who: &Who) -> FixTarget {
    FixTarget::PodIdentityAssociation {
        cluster: who
            .snap
            .cluster
            .cluster_name()
            .unwrap_or_else(|| "<cluster>".into()),
        namespace: who.snap.binding.namespace.clone(),
        service_account: who.spec.service_account.clone(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    Queue,
    Key,
}

pub(super) fn statement_of<'a>(
    set: &'a PolicySet,
    s: &StatementRef,
) -> Option<&'a crate::policy::Statement> {
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
pub(super) fn describe_statement(set: &PolicySet, s: &StatementRef) -> String {
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

pub(super) fn deny_fix(set: &PolicySet, s: &StatementRef, action: &str, target: FixTarget) -> Fix {
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

pub(super) fn depends_finding(resp: &Response, action: &str, layer: DiagLayer) -> Finding {
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

/// `orders-producer` → `OrdersProducer`: names made into the letters and digits a Sid allows.
pub(super) fn camel(name: &str) -> String {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

pub(super) fn sid_for(sa: &str, target: Target) -> String {
    let camel = camel(sa);
    match target {
        Target::Queue => format!("SqsAccess{camel}"),
        Target::Key => format!("SqsKmsAccess{camel}"),
    }
}

pub(super) fn join_quoted<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<String> = items.map(|s| format!("\"{s}\"")).collect();
    v.join(", ")
}

pub(super) fn allowed_values(stmts: &[&crate::policy::Statement], key: &str) -> String {
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
pub(super) fn merge_fixes(fixes: impl Iterator<Item = Fix>) -> Vec<Fix> {
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
