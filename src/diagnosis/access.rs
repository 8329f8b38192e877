//! What a workload needs: access modes (`Send`, `Receive`, `GetAttributes`) and explicit SQS
//! actions, turned into the IAM actions AWS will evaluate, with the KMS actions SQS performs on
//! the caller's behalf when the queue uses SSE-KMS.

use serde::{Deserialize, Serialize};

/// A named bundle of SQS actions.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
pub enum AccessMode {
    /// `sqs:SendMessage` (and `SendMessageBatch`, which authorizes as it).
    Send,
    /// `sqs:ReceiveMessage`, `sqs:DeleteMessage`, `sqs:ChangeMessageVisibility`.
    Receive,
    /// `sqs:GetQueueAttributes`, `sqs:GetQueueUrl`.
    GetAttributes,
}

impl AccessMode {
    pub fn actions(self) -> &'static [&'static str] {
        match self {
            AccessMode::Send => &["sqs:SendMessage"],
            AccessMode::Receive => &[
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
            ],
            AccessMode::GetAttributes => &["sqs:GetQueueAttributes", "sqs:GetQueueUrl"],
        }
    }
}

/// Every IAM action of SQS (Service Authorization Reference).
const SQS_ACTIONS: &[&str] = &[
    "AddPermission",
    "CancelMessageMoveTask",
    "ChangeMessageVisibility",
    "CreateQueue",
    "DeleteMessage",
    "DeleteQueue",
    "GetQueueAttributes",
    "GetQueueUrl",
    "ListDeadLetterSourceQueues",
    "ListMessageMoveTasks",
    "ListQueueTags",
    "ListQueues",
    "PurgeQueue",
    "ReceiveMessage",
    "RemovePermission",
    "SendMessage",
    "SetQueueAttributes",
    "StartMessageMoveTask",
    "TagQueue",
    "UntagQueue",
];

/// API operations that are not IAM actions, and the action that authorizes them.
const BATCH_APIS: &[(&str, &str)] = &[
    ("SendMessageBatch", "SendMessage"),
    ("DeleteMessageBatch", "DeleteMessage"),
    ("ChangeMessageVisibilityBatch", "ChangeMessageVisibility"),
];

/// Actions that an SQS queue policy cannot grant to another account (SQS developer guide,
/// "Limitations of custom policies").
const NOT_CROSS_ACCOUNT: &[&str] = &[
    "AddPermission",
    "CreateQueue",
    "DeleteQueue",
    "ListQueues",
    "ListQueueTags",
    "RemovePermission",
    "SetQueueAttributes",
    "TagQueue",
    "UntagQueue",
    "StartMessageMoveTask",
    "CancelMessageMoveTask",
    "ListMessageMoveTasks",
];

/// A bad action name in a spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ActionError {
    pub field: String,
    pub message: String,
}

/// One SQS action the workload needs, in canonical form (`sqs:SendMessage`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct SqsAction(String);

impl SqsAction {
    /// Parses `SendMessage`, `sqs:sendmessage`, ...; batch API names are refused with the
    /// action to use instead.
    pub fn parse(raw: &str, field: &str) -> Result<Self, ActionError> {
        let err = |message: String| ActionError {
            field: field.to_string(),
            message,
        };
        let t = raw.trim();
        let name = match t.split_once(':') {
            Some((svc, n)) if svc.eq_ignore_ascii_case("sqs") => n,
            Some((svc, _)) => {
                return Err(err(format!(
                    "\"{raw}\" is not an SQS action (service \"{svc}\"); list SQS actions only, KMS permissions are derived from the queue's encryption"
                )));
            }
            None => t,
        };
        if name.contains(['*', '?']) {
            return Err(err(format!(
                "\"{raw}\": wildcards are not accepted here; list the actions the workload calls"
            )));
        }
        if let Some((api, action)) = BATCH_APIS
            .iter()
            .find(|(b, _)| b.eq_ignore_ascii_case(name))
        {
            return Err(err(format!(
                "\"{raw}\" is an API operation, not an IAM action: {api} is authorized as sqs:{action}; list \"sqs:{action}\" instead"
            )));
        }
        match SQS_ACTIONS.iter().find(|a| a.eq_ignore_ascii_case(name)) {
            Some(a) => Ok(SqsAction(format!("sqs:{a}"))),
            None => Err(err(format!(
                "\"{raw}\" is not an SQS action (known: {})",
                SQS_ACTIONS.join(", ")
            ))),
        }
    }

    /// The IAM action an SQS API operation or action name is authorized as, in any case:
    /// `SendMessageBatch` and `sqs:sendmessage` are both `sqs:SendMessage`. `None` for names SQS
    /// does not have. (Error texts name operations and lower-cased actions.)
    pub fn for_operation(name: &str) -> Option<SqsAction> {
        let t = name.trim();
        let n = match t.split_once(':') {
            Some((svc, n)) if svc.eq_ignore_ascii_case("sqs") => n,
            Some(_) => return None,
            None => t,
        };
        let n = BATCH_APIS
            .iter()
            .find(|(b, _)| b.eq_ignore_ascii_case(n))
            .map_or(n, |(_, a)| *a);
        SQS_ACTIONS
            .iter()
            .find(|a| a.eq_ignore_ascii_case(n))
            .map(|a| SqsAction(format!("sqs:{a}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The bare action name (`SendMessage`).
    pub fn name(&self) -> &str {
        &self.0[4..]
    }

    /// `sqs:ListQueues` has no resource type: only `"Resource": "*"` grants it, and only in the
    /// caller's own account.
    pub fn is_list_queues(&self) -> bool {
        self.name() == "ListQueues"
    }

    /// Whether a queue policy can grant this action to another account.
    pub fn cross_account_grantable(&self) -> bool {
        !NOT_CROSS_ACCOUNT.contains(&self.name())
    }

    /// The KMS actions SQS performs with the caller's identity when the queue uses SSE-KMS.
    pub fn kms_actions(&self) -> &'static [&'static str] {
        match self.name() {
            // A producer needs a data key, and SQS decrypts it to verify it.
            "SendMessage" => &["kms:GenerateDataKey", "kms:Decrypt"],
            "ReceiveMessage" => &["kms:Decrypt"],
            _ => &[],
        }
    }
}

/// Resolves modes and explicit actions into a sorted, de-duplicated list of SQS actions.
/// `actions_field` names the spec field for error messages (`spec.actions`).
pub fn required_actions(
    modes: &[AccessMode],
    actions: &[String],
    actions_field: &str,
) -> Result<Vec<SqsAction>, Vec<ActionError>> {
    let mut out: Vec<SqsAction> = modes
        .iter()
        .flat_map(|m| m.actions().iter().map(|a| SqsAction(a.to_string())))
        .collect();
    let mut errors = Vec::new();
    for (i, a) in actions.iter().enumerate() {
        match SqsAction::parse(a, &format!("{actions_field}[{i}]")) {
            Ok(a) => out.push(a),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if out.is_empty() {
        return Err(vec![ActionError {
            field: actions_field.trim_end_matches("actions").to_string() + "access",
            message: "name at least one access mode (Send, Receive, GetAttributes) or action"
                .into(),
        }]);
    }
    // Keep the order users think in: by mode first, then explicit actions, without repeats.
    let mut seen = std::collections::HashSet::new();
    out.retain(|a| seen.insert(a.clone()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_maps_batch_names() {
        assert_eq!(
            SqsAction::parse("SendMessage", "f").unwrap().as_str(),
            "sqs:SendMessage"
        );
        assert_eq!(
            SqsAction::parse("sqs:receivemessage", "f")
                .unwrap()
                .as_str(),
            "sqs:ReceiveMessage"
        );
        let e = SqsAction::parse("sqs:SendMessageBatch", "spec.actions[0]").unwrap_err();
        assert!(e.to_string().contains("sqs:SendMessage"), "{e}");
        assert!(e.to_string().starts_with("spec.actions[0]"), "{e}");
        assert!(SqsAction::parse("sqs:Publish", "f").is_err());
        assert!(SqsAction::parse("kms:Decrypt", "f").is_err());
        assert!(SqsAction::parse("sqs:*", "f").is_err());
    }

    #[test]
    fn modes_expand_without_repeats() {
        let a = required_actions(
            &[AccessMode::Send, AccessMode::Receive],
            &["sqs:SendMessage".into(), "GetQueueUrl".into()],
            "spec.actions",
        )
        .unwrap();
        let names: Vec<_> = a.iter().map(|a| a.as_str()).collect();
        assert_eq!(
            names,
            [
                "sqs:SendMessage",
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:GetQueueUrl"
            ]
        );
        assert!(required_actions(&[], &[], "spec.actions").is_err());
        let errs = required_actions(
            &[],
            &["a".into(), "SendMessageBatch".into()],
            "spec.actions",
        )
        .unwrap_err();
        assert_eq!(errs.len(), 2);
    }

    #[test]
    fn kms_needs_follow_sqs_documentation() {
        let send = SqsAction::parse("SendMessage", "f").unwrap();
        assert_eq!(send.kms_actions(), ["kms:GenerateDataKey", "kms:Decrypt"]);
        let del = SqsAction::parse("DeleteMessage", "f").unwrap();
        assert!(del.kms_actions().is_empty());
        assert!(
            !SqsAction::parse("ListQueues", "f")
                .unwrap()
                .cross_account_grantable()
        );
    }
}
