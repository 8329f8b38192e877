//! The SSE-KMS step: the KMS actions SQS performs with the caller's identity when the queue
//! uses a KMS key (`kms:GenerateDataKey` and `kms:Decrypt` for producers, `kms:Decrypt` for
//! consumers), against the key policy, grants and the other layers.

use std::sync::Arc;

use serde_json::json;

use super::check::{Diag, Who};
use super::findings::Target;
use super::reason::{DiagLayer, Finding, Fix, FixTarget, ReasonCode};
use super::snapshot::KeyManager;
use crate::ids::{AccountId, Region};
use crate::policy::{NamedPolicy, Policy, Request, authorize};

impl Diag {
    pub(super) fn check_kms(&mut self, who: &Who, key_id: &str) {
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
}

pub(super) fn managed_key_cross_account(
    key: &str,
    principal: &AccountId,
    key_acct: &AccountId,
) -> Finding {
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
pub(super) fn aws_managed_sqs_key_policy(acct: &AccountId, region: &Region) -> Policy {
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
pub(super) fn grant_policy(g: &super::snapshot::GrantEvidence) -> Option<Policy> {
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
