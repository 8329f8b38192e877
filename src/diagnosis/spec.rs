//! The binding spec: "service account X in this namespace needs this access to queue Y". The
//! same type is read from snapshots, from the `SqsAccessBinding` resource and from admission
//! requests, and validated here once, so every entry point refuses the same mistakes.

use serde::{Deserialize, Serialize};

use super::access::{AccessMode, SqsAction, required_actions};
use crate::ids::{QueueRef, Region};

/// What a binding asks for. This is the `SqsAccessBinding` spec; its doc comments are what
/// `kubectl explain` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BindingSpec {
    /// The workload's ServiceAccount, in this binding's namespace (a binding can never use
    /// another namespace's account). Its eks.amazonaws.com/role-arn annotation names the IAM
    /// role (IRSA) whose access is checked.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub service_account_name: String,
    /// The SQS queue: an ARN (arn:aws:sqs:us-east-1:123456789012:orders) or a queue URL
    /// (https://sqs.us-east-1.amazonaws.com/123456789012/orders).
    #[schemars(length(min = 1, max = 2048))]
    pub queue: String,
    /// What the workload does with the queue. Send: sqs:SendMessage. Receive:
    /// sqs:ReceiveMessage, sqs:DeleteMessage, sqs:ChangeMessageVisibility. GetAttributes:
    /// sqs:GetQueueAttributes, sqs:GetQueueUrl. With SSE-KMS, the KMS permissions SQS needs
    /// (kms:GenerateDataKey, kms:Decrypt) are checked too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3))]
    pub access: Vec<AccessMode>,
    /// Further SQS IAM actions the workload calls, e.g. sqs:GetQueueUrl or sqs:ListQueues.
    /// Batch API names (SendMessageBatch) are authorized as their single action: list that.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub actions: Vec<String>,
    /// The interface VPC endpoint (vpce-...) the workload reaches SQS through, when it does.
    /// Decides conditions on aws:SourceVpce and brings the endpoint's policy into the check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^vpce-[0-9a-f]+$"))]
    pub vpc_endpoint_id: Option<String>,
}

/// A spec mistake that needs no AWS to find.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    pub field: String,
    pub message: String,
}

/// Settings that decide what a valid spec is in this installation.
#[derive(Debug, Clone, Default)]
pub struct SpecOptions {
    /// Hosts (`host[:port]`) accepted in queue URLs besides SQS endpoints: the endpoint the
    /// operator is configured with, e.g. an emulator.
    pub extra_queue_hosts: Vec<String>,
    /// The region for queue URLs whose host does not name one.
    pub region: Option<Region>,
}

/// A validated spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidSpec {
    pub service_account: String,
    pub queue: QueueRef,
    pub actions: Vec<SqsAction>,
    pub vpc_endpoint_id: Option<String>,
}

impl BindingSpec {
    /// Checks everything that can be checked without AWS. Field names are given as
    /// `spec.<field>`, as `kubectl` users know them.
    pub fn validate(&self, opts: &SpecOptions) -> Result<ValidSpec, Vec<SpecError>> {
        let mut errors = Vec::new();
        let sa = self.service_account_name.trim();
        if let Some(msg) = service_account_name_problem(sa) {
            errors.push(SpecError {
                field: "spec.serviceAccountName".into(),
                message: msg,
            });
        }
        let queue =
            match QueueRef::parse(&self.queue, &opts.extra_queue_hosts, opts.region.as_ref()) {
                Ok(q) => Some(q),
                Err(e) => {
                    errors.push(SpecError {
                        field: "spec.queue".into(),
                        message: e.to_string(),
                    });
                    None
                }
            };
        let actions = match required_actions(&self.access, &self.actions, "spec.actions") {
            Ok(a) => Some(a),
            Err(errs) => {
                errors.extend(errs.into_iter().map(|e| SpecError {
                    field: e.field,
                    message: e.message,
                }));
                None
            }
        };
        if let Some(v) = &self.vpc_endpoint_id
            && let Some(message) = vpc_endpoint_problem(v)
        {
            errors.push(SpecError {
                field: "spec.vpcEndpointId".into(),
                message,
            });
        }
        match (queue, actions, errors.is_empty()) {
            (Some(queue), Some(actions), true) => Ok(ValidSpec {
                service_account: sa.to_string(),
                queue,
                actions,
                vpc_endpoint_id: self.vpc_endpoint_id.clone(),
            }),
            _ => Err(errors),
        }
    }
}

/// What is wrong with a VPC endpoint id, if anything.
pub(super) fn vpc_endpoint_problem(v: &str) -> Option<String> {
    let ok = v.starts_with("vpce-") && v.len() > 5 && v[5..].bytes().all(|b| b.is_ascii_hexdigit());
    (!ok).then(|| format!("\"{v}\" is not a VPC endpoint id (vpce- followed by hex digits)"))
}

/// A service account name must be a plain name in the binding's namespace: the forms that
/// name another namespace (`other/sa`, `system:serviceaccount:other:sa`) are refused, so a
/// binding can never speak for another namespace's account.
fn service_account_name_problem(sa: &str) -> Option<String> {
    if sa.is_empty() {
        return Some("must name a service account in this namespace".into());
    }
    if sa.contains('/') || sa.contains(':') {
        return Some(format!(
            "\"{sa}\" names another namespace's account; a binding can only use service accounts in its own namespace (give the plain name)"
        ));
    }
    let ok = sa.len() <= 253
        && sa.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    (!ok).then(|| {
        format!(
            "\"{sa}\" is not a valid service account name (lower-case letters, digits, '-' and '.')"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(sa: &str, queue: &str) -> BindingSpec {
        BindingSpec {
            service_account_name: sa.into(),
            queue: queue.into(),
            access: vec![AccessMode::Send],
            actions: vec![],
            vpc_endpoint_id: None,
        }
    }

    #[test]
    fn refuses_other_namespaces_and_bad_queues_naming_the_field() {
        let q = "arn:aws:sqs:us-east-1:222222222222:orders";
        assert!(
            spec("producer", q)
                .validate(&SpecOptions::default())
                .is_ok()
        );
        for sa in [
            "other/producer",
            "system:serviceaccount:other:producer",
            "",
            "Producer",
        ] {
            let e = spec(sa, q).validate(&SpecOptions::default()).unwrap_err();
            assert_eq!(e[0].field, "spec.serviceAccountName", "{sa}");
        }
        let e = spec("p", "https://evil.example.com/222222222222/orders")
            .validate(&SpecOptions::default())
            .unwrap_err();
        assert_eq!(e[0].field, "spec.queue");
        let mut s = spec("p", q);
        s.actions = vec!["sqs:SendMessageBatch".into()];
        let e = s.validate(&SpecOptions::default()).unwrap_err();
        assert_eq!(e[0].field, "spec.actions[0]");
        let mut s = spec("p", q);
        s.access.clear();
        assert!(s.validate(&SpecOptions::default()).is_err());
        let mut s = spec("p", q);
        s.vpc_endpoint_id = Some("vpc-123".into());
        assert_eq!(
            s.validate(&SpecOptions::default()).unwrap_err()[0].field,
            "spec.vpcEndpointId"
        );
    }
}
