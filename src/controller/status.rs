//! From a verdict to the binding's status: conditions that follow Kubernetes conventions
//! (lastTransitionTime kept while the status does not change), per-action results, reasons and
//! fixes. Pure, so every branch is tested without a cluster.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{Resource, ResourceExt};

use crate::crd::{
    ActionStatus, FixStatus, PodCountsStatus, QueueStatus, ReasonStatus, RoleStatus,
    SqsAccessBinding, SqsAccessBindingStatus, WorkloadProblemStatus, WorkloadStatus,
};
use crate::diagnosis::check::Mechanism;
use crate::diagnosis::{Outcome, Verdict};
use crate::policy::Decision;

/// Kubernetes limits a condition message to 32768 bytes; keep them readable far below that.
const MAX_MESSAGE: usize = 1024;

/// At most `max` bytes (plus an ellipsis), cut at a character boundary.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The status the binding should have.
pub fn desired_status(
    b: &SqsAccessBinding,
    v: &Verdict,
    now: &Time,
    old: &SqsAccessBindingStatus,
) -> SqsAccessBindingStatus {
    let generation = b.meta().generation;
    let first = v.first_reason();
    let code = first
        .map(|f| f.code.as_str())
        .unwrap_or_else(|| "Allowed".into());
    let message = first.map(|f| f.message.clone()).unwrap_or_default();
    let fix = v.fixes.first().map(|f| f.instruction.clone());
    let (ready, denied) = match v.verdict {
        Outcome::Allowed => ("True", "False"),
        Outcome::Denied => ("False", "True"),
        Outcome::Indeterminate => ("Unknown", "False"),
    };
    let ready_msg = match v.verdict {
        Outcome::Allowed => "every needed action is allowed".to_string(),
        _ => message.clone(),
    };
    let denied_msg = match (v.verdict, &fix) {
        (Outcome::Denied, Some(f)) => format!("{message} Fix: {f}"),
        (Outcome::Denied, None) => message.clone(),
        (Outcome::Indeterminate, _) => format!("cannot decide yet: {message}"),
        (Outcome::Allowed, _) => "nothing blocks this binding".into(),
    };
    let mut conditions = vec![
        condition(old, "Ready", ready, &code, &ready_msg, generation, now),
        condition(old, "Denied", denied, &code, &denied_msg, generation, now),
    ];
    if let Some(w) = &v.workload {
        conditions.push(condition(
            old,
            WORKLOAD_CONDITION,
            w.status(),
            &w.reason.as_str(),
            &w.message,
            generation,
            now,
        ));
    }
    let actions = v
        .checks
        .iter()
        .map(|c| {
            let finding = v
                .reasons
                .iter()
                .find(|r| r.action.as_deref() == Some(c.action.as_str()));
            let layer = match c.decision {
                Decision::ImplicitDeny => c.missing.first().map(|g| g.layer.as_str().to_string()),
                Decision::ExplicitDeny => {
                    c.statements.first().map(|s| s.layer.as_str().to_string())
                }
                _ => None,
            }
            .or_else(|| finding.map(|f| f.layer.as_str().to_string()));
            let statement = c.statements.first().map(|s| match &s.sid {
                Some(sid) => format!("{} / {sid}", s.policy),
                None => format!("{} / #{}", s.policy, s.index),
            });
            ActionStatus {
                step: c.step.to_string(),
                action: c.action.clone(),
                decision: format!("{:?}", c.decision),
                layer,
                reason: finding.map(|f| f.code.as_str()),
                statement,
            }
        })
        .collect();
    SqsAccessBindingStatus {
        observed_generation: generation,
        conditions,
        verdict: Some(format!("{:?}", v.verdict)),
        reason: Some(code),
        role: v.role.as_ref().map(|r| RoleStatus {
            arn: r.arn.clone(),
            source: r.source.clone(),
            mechanism: Some(
                match r.mechanism {
                    Mechanism::Irsa => "IRSA",
                    Mechanism::PodIdentity => "PodIdentity",
                }
                .into(),
            ),
            association_id: r.association_id.clone(),
            chain: r.chain.clone(),
            ignored_irsa_role: r.ignored_irsa_role.clone(),
        }),
        queue: v.queue.as_ref().map(|q| QueueStatus {
            arn: q.arn.clone(),
            encryption: q.encryption.clone(),
            kms_key: q.kms_key.clone(),
        }),
        actions,
        reasons: v
            .reasons
            .iter()
            .map(|r| ReasonStatus {
                code: r.code.as_str(),
                layer: r.layer.as_str().into(),
                action: r.action.clone(),
                message: truncate(&r.message, MAX_MESSAGE),
            })
            .collect(),
        fixes: v
            .fixes
            .iter()
            .map(|f| FixStatus {
                target: f.target.describe(),
                instruction: truncate(&f.instruction, MAX_MESSAGE),
                statement: f.statement.as_ref().map(|s| s.to_string()),
            })
            .collect(),
        notes: v.notes.clone(),
        workload: v.workload.as_ref().map(|w| WorkloadStatus {
            reason: w.reason.as_str(),
            pods: PodCountsStatus {
                total: w.pods.total as u32,
                current: w.pods.current as u32,
                stale: w.pods.stale as u32,
                not_injected: w.pods.not_injected as u32,
                overridden: w.pods.overridden as u32,
            },
            problems: w
                .problems
                .iter()
                .map(|p| WorkloadProblemStatus {
                    code: p.code.as_str(),
                    count: p.count as u32,
                    pods: p.pods.clone(),
                    message: truncate(&p.message, MAX_MESSAGE),
                    fix: truncate(&p.fix, MAX_MESSAGE),
                })
                .collect(),
        }),
        warnings: v
            .warnings
            .iter()
            .map(|w| truncate(w, MAX_MESSAGE))
            .collect(),
        last_checked: Some(now.clone()),
        digest: None,
    }
}

fn condition(
    old: &SqsAccessBindingStatus,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let previous = old.conditions.iter().find(|c| c.type_ == type_);
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => now.clone(),
    };
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: truncate(message, MAX_MESSAGE),
        observed_generation: generation,
        last_transition_time,
    }
}

/// Whether anything but `lastChecked` differs. `old` may be a summary ([`summary`]): then
/// its digest is compared.
pub fn meaningfully_different(old: &SqsAccessBindingStatus, new: &SqsAccessBindingStatus) -> bool {
    match old.digest {
        Some(d) => digest(new) != d,
        None => {
            let strip = |s: &SqsAccessBindingStatus| SqsAccessBindingStatus {
                last_checked: None,
                digest: None,
                ..s.clone()
            };
            strip(old) != strip(new)
        }
    }
}

/// A digest of everything in a status but `lastChecked` (stable within one build of the
/// operator, which is all an in-memory comparison needs).
pub fn digest(s: &SqsAccessBindingStatus) -> u64 {
    use std::hash::Hasher;
    let stripped = SqsAccessBindingStatus {
        last_checked: None,
        digest: None,
        ..s.clone()
    };
    let mut h = std::hash::DefaultHasher::new();
    h.write(&serde_json::to_vec(&stripped).unwrap_or_default());
    h.finish()
}

/// What the controller's cache keeps of a status: what decides whether a re-check is needed
/// and what to write (generation, verdict, the conditions' status, reason and transition
/// time, lastChecked) and the digest of the rest, instead of the actions, reasons, fixes and
/// messages (most of a binding's size).
pub fn summary(s: SqsAccessBindingStatus) -> SqsAccessBindingStatus {
    if s.digest.is_some() {
        return s;
    }
    let digest = digest(&s);
    SqsAccessBindingStatus {
        observed_generation: s.observed_generation,
        conditions: s
            .conditions
            .into_iter()
            .map(|c| Condition {
                message: String::new(),
                ..c
            })
            .collect(),
        verdict: s.verdict,
        reason: s.reason,
        last_checked: s.last_checked,
        digest: Some(digest),
        ..Default::default()
    }
}

/// The condition that says whether the pods run with the checked role.
pub const WORKLOAD_CONDITION: &str = "WorkloadCredentials";

/// A condition's status, if any.
pub fn condition_status<'a>(s: &'a SqsAccessBindingStatus, type_: &str) -> Option<&'a str> {
    s.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

/// The `Ready` condition's status, if any.
pub fn ready_status(s: &SqsAccessBindingStatus) -> Option<&str> {
    s.conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
}

/// The name of the binding, for log lines.
pub fn display_name(b: &SqsAccessBinding) -> String {
    format!("{}/{}", b.namespace().unwrap_or_default(), b.name_any())
}
