//! The SQS step: each SQS action the binding needs, evaluated as the workload's role session
//! against every layer (identity, boundary, SCPs, RCPs, queue policy, VPC endpoint policy).

use serde_json::json;

use super::check::{Diag, Who};
use super::findings::Target;
use super::reason::{DiagLayer, Finding, Fix, FixTarget, ReasonCode};
use super::snapshot::Document;
use crate::policy::{Decision, Effect, NamedPolicy, Request, authorize};

impl Diag {
    pub(super) fn check_sqs(&mut self, who: &Who, queue_policy: Option<&Document>) {
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
}
