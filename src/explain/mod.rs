//! Starting from the error: an access-denied text AWS returned is read ([`parse`]) into the
//! principal, action and resource it names and AWS's claim about the layer; what it lacks comes
//! from options ([`select`]); the principal's access is diagnosed from a snapshot (read from a
//! file or fetched live); and AWS's claim is checked against the diagnosis ([`compare`]), with
//! the fix. Pure: the error text only selects what to evaluate, it never directs a request.

pub mod compare;
pub mod parse;
pub mod report;

use serde::Serialize;

use crate::diagnosis::snapshot::RequestEvidence;
use crate::diagnosis::{Finding, Fix, Snapshot, SpecOptions, SqsAction, Verdict, diagnose_with};
use crate::ids::{QueueArn, QueueRef};
use crate::policy::{Principal, PrincipalKind};

pub use compare::{Agreement, Comparison};
pub use parse::{Claim, ClaimedLayer, ErrorKind, ParseError, ParsedError, Service, parse};

/// What the user gives besides the error text.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The caller, when the text names none or a redacted one.
    pub principal: Option<String>,
    /// The queue (ARN or URL), when the text names none (KMS and legacy SQS texts).
    pub queue: Option<String>,
    /// The SQS action or API operation the caller made, when the text names none.
    pub action: Option<String>,
    /// The VPC endpoint the call went through.
    pub vpc_endpoint_id: Option<String>,
}

/// What is evaluated: from the error text, the options and the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Selection {
    /// The caller; `None` when a binding snapshot decides it (its service account's role).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    pub queue: String,
    /// The SQS action the caller's API call needs.
    pub action: String,
    /// The action AWS refused (the SQS action, or a KMS action SQS performed for the caller).
    pub focus: String,
    /// Where each came from: `principal: error text`, `queue: --queue`, ...
    pub origins: Vec<String>,
    /// What was assumed, to say so.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub assumptions: Vec<String>,
}

/// An option the text does not make up for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub option: &'static str,
    pub why: String,
}

/// Why nothing can be evaluated yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error("{}", needs_message(.0))]
    Needs(Vec<Need>),
    #[error("{option}: {message}")]
    Invalid {
        option: &'static str,
        message: String,
    },
}

fn needs_message(needs: &[Need]) -> String {
    let list: Vec<String> = needs
        .iter()
        .map(|n| format!("{} ({})", n.option, n.why))
        .collect();
    format!(
        "the error text does not say enough: give {}",
        list.join(", ")
    )
}

/// The whole answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// What the text says.
    pub error: ParsedError,
    /// What was evaluated; `None` for a credential-step (STS) error without a binding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluated: Option<Selection>,
    /// AWS's claim against the diagnosis.
    pub comparison: Comparison,
    /// The findings about the refused action (and what blocks before it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<Finding>,
    /// Their fixes: the statement to add or remove, and where.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fixes: Vec<Fix>,
    /// The full diagnosis of the caller's access.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
}

impl Explanation {
    /// The CLI's exit code: 0 allowed in every visible layer, 2 denied, 3 undecided.
    pub fn exit_code(&self) -> u8 {
        match self.comparison.result {
            Agreement::Agrees | Agreement::NamedNoLayer | Agreement::DifferentLayer => 2,
            Agreement::ClaimNotVisible | Agreement::AllowedInVisibleLayers => 0,
            Agreement::Undecided | Agreement::CredentialStep => 3,
        }
    }
}

/// Whether an error text is about getting credentials (STS), not about SQS or KMS.
pub fn is_credential_step(e: &ParsedError) -> bool {
    matches!(
        e.kind,
        ErrorKind::WebIdentityNotAuthorized
            | ErrorKind::OidcProviderNotFound
            | ErrorKind::IncorrectTokenAudience
            | ErrorKind::InvalidRoleArn
    ) || e.service == Some(Service::Sts)
        && e.action.as_deref().is_some_and(|a| a.starts_with("sts:"))
}

/// A principal as written in a text is usable when it is a principal with a real account id
/// (AWS's own articles redact them: `arn:aws:iam::xxxxx:user/xxxx`).
fn usable_principal(p: &str) -> Result<(), String> {
    let pr = Principal::parse(p);
    match pr.kind {
        PrincipalKind::Service => Ok(()),
        PrincipalKind::Other | PrincipalKind::IdentityProvider => {
            Err(format!("\"{p}\" is not a caller this tool evaluates"))
        }
        _ => match pr.account.as_deref() {
            Some(a) if crate::ids::AccountId::parse(a).is_ok() => Ok(()),
            _ => Err(format!(
                "the text's principal {p} has no real account id (redacted?)"
            )),
        },
    }
}

/// Picks the principal, queue and action to evaluate: options first, then the error text, then
/// the snapshot's own request or binding.
pub fn select(
    e: &ParsedError,
    opts: &Options,
    snap: Option<&Snapshot>,
) -> Result<Selection, SelectError> {
    let mut origins = Vec::new();
    let mut assumptions = Vec::new();
    let mut needs = Vec::new();
    let binding = snap.and_then(|s| s.binding.as_ref());
    let request = snap.and_then(|s| s.request.as_ref());

    // The caller. A binding decides it (its service account's role); the text's principal is
    // then checked against it.
    let principal = if binding.is_some() {
        origins.push("principal: the binding's service account".to_string());
        None
    } else if let Some(p) = &opts.principal {
        usable_principal(p).map_err(|m| SelectError::Invalid {
            option: "--principal",
            message: m,
        })?;
        origins.push("principal: --principal".to_string());
        Some(p.trim().to_string())
    } else if let Some(p) = e
        .principal
        .as_deref()
        .filter(|p| usable_principal(p).is_ok())
    {
        origins.push("principal: the error text".to_string());
        Some(p.to_string())
    } else if let Some(r) = request {
        if let Some(p) = &e.principal {
            assumptions.push(format!(
                "the text's principal {p} has no real account id (redacted?): evaluated the snapshot's {}",
                r.principal
            ));
        }
        origins.push("principal: the snapshot's request".to_string());
        Some(r.principal.clone())
    } else {
        needs.push(Need {
            option: "--principal ARN",
            why: match &e.principal {
                Some(p) => format!("the text's principal {p} has no real account id"),
                None => "the text names no principal".into(),
            },
        });
        None
    };

    // The queue.
    let text_queue = e
        .resource
        .as_deref()
        .filter(|r| QueueArn::parse(r).is_ok())
        .map(str::to_string)
        .or_else(|| {
            // The legacy text's URL, when it names a queue on a real SQS endpoint: read into an
            // ARN, never requested.
            e.endpoint
                .as_deref()
                .and_then(|u| QueueRef::parse(u, &[], None).ok())
                .map(|q| q.arn.to_string())
        });
    let queue = if let Some(b) = binding {
        origins.push("queue: the binding".to_string());
        b.spec.queue.clone()
    } else if let Some(q) = &opts.queue {
        origins.push("queue: --queue".to_string());
        q.trim().to_string()
    } else if let Some(q) = text_queue {
        origins.push("queue: the error text".to_string());
        q
    } else if let Some(r) = request {
        origins.push("queue: the snapshot's request".to_string());
        r.queue.clone()
    } else {
        needs.push(Need {
            option: "--queue ARN|URL",
            why: match e.resource.as_deref() {
                Some(r) if r.contains(":kms:") => "a KMS error names the key, not the queue".into(),
                Some(r) => format!("the text's resource {r} is not a queue ARN"),
                None => "the text names no queue".into(),
            },
        });
        String::new()
    };

    // The SQS action, and the action AWS refused.
    let text_action = e.action.as_deref();
    let action = if let Some(a) = &opts.action {
        let a = SqsAction::for_operation(a).ok_or_else(|| SelectError::Invalid {
            option: "--action",
            message: format!("\"{a}\" is not an SQS action or API operation"),
        })?;
        origins.push("action: --action".to_string());
        Some(a)
    } else if let Some(a) = text_action.and_then(SqsAction::for_operation) {
        origins.push("action: the error text".to_string());
        Some(a)
    } else if let Some(a) = e.operation.as_deref().and_then(SqsAction::for_operation) {
        origins.push(format!(
            "action: the error text's operation {}",
            e.operation.as_deref().unwrap_or_default()
        ));
        Some(a)
    } else if let Some(k) = text_action.filter(|a| a.starts_with("kms:")) {
        // SQS calls KMS for a producer (GenerateDataKey, Decrypt) or a consumer (Decrypt).
        let (a, who) = if k.eq_ignore_ascii_case("kms:GenerateDataKey") {
            ("SendMessage", "a producer")
        } else {
            ("ReceiveMessage", "a consumer")
        };
        assumptions.push(format!(
            "the text names {k} but not the SQS call: assumed sqs:{a} ({who}); give --action if it was another"
        ));
        origins.push("action: assumed from the KMS action".to_string());
        SqsAction::for_operation(a)
    } else if let Some(r) = request.filter(|r| !r.actions.is_empty()) {
        origins.push("action: the snapshot's request".to_string());
        SqsAction::for_operation(&r.actions[0])
    } else if binding.is_some() {
        None
    } else {
        needs.push(Need {
            option: "--action ACTION",
            why: "the text names no SQS action or operation".into(),
        });
        None
    };
    if !needs.is_empty() {
        return Err(SelectError::Needs(needs));
    }
    let action = match action {
        Some(a) => a.as_str().to_string(),
        // A binding without an action in the text: its first action.
        None => binding
            .and_then(|b| {
                crate::diagnosis::access::required_actions(&b.spec.access, &b.spec.actions, "").ok()
            })
            .and_then(|a| a.first().map(|x| x.as_str().to_string()))
            .unwrap_or_default(),
    };
    let focus = match text_action {
        Some(a) if a.starts_with("kms:") => a.to_string(),
        _ => action.clone(),
    };
    Ok(Selection {
        principal,
        queue,
        action,
        focus,
        origins,
        assumptions,
    })
}

/// The snapshot to diagnose: the binding's, with the refused action added; else a request for
/// the selection, with the snapshot's evidence.
pub fn prepare(mut snap: Snapshot, sel: &Selection, opts: &Options) -> Snapshot {
    if let Some(b) = &mut snap.binding {
        if !b.spec.actions.iter().any(|a| a == &sel.action)
            && !crate::diagnosis::access::required_actions(&b.spec.access, &[], "")
                .is_ok_and(|v| v.iter().any(|a| a.as_str() == sel.action))
        {
            b.spec.actions.push(sel.action.clone());
        }
        return snap;
    }
    let session_policy = snap.request.as_ref().and_then(|r| r.session_policy.clone());
    let vpce = opts.vpc_endpoint_id.clone().or_else(|| {
        snap.request
            .as_ref()
            .and_then(|r| r.vpc_endpoint_id.clone())
    });
    snap.request = Some(RequestEvidence {
        principal: sel.principal.clone().unwrap_or_default(),
        queue: sel.queue.clone(),
        access: vec![],
        actions: vec![sel.action.clone()],
        vpc_endpoint_id: vpce,
        session_policy,
    });
    snap
}

/// Explains an error text with a snapshot: diagnoses what the text selects and checks AWS's
/// claim against the diagnosis.
pub fn explain(
    e: &ParsedError,
    opts: &Options,
    snap: Snapshot,
    spec_opts: &SpecOptions,
) -> Result<Explanation, SelectError> {
    if is_credential_step(e) {
        // STS refused before any SQS call: only a binding's credential step can be diagnosed.
        return Ok(match snap.binding.is_some() {
            true => {
                let v = diagnose_with(&snap, spec_opts);
                compare::credential_step(e, Some(v))
            }
            false => compare::credential_step(e, None),
        });
    }
    let sel = select(e, opts, Some(&snap))?;
    let snap = prepare(snap, &sel, opts);
    let verdict = diagnose_with(&snap, spec_opts);
    Ok(compare::compare(e, sel, &snap, verdict))
}
