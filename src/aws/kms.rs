//! KMS reads: the key's metadata, key policy and grants.

use super::error::FetchError;
use super::source::{Inner, Svc, fetched, parse_doc};
use crate::diagnosis::snapshot::{GrantConstraints, GrantEvidence, KeyManager, KmsKeyEvidence};
use crate::ids::{AccountId, Region};

impl Inner {
    pub(super) async fn key(
        &self,
        key_ref: &str,
        account: &AccountId,
        region: &Region,
    ) -> Result<Option<KmsKeyEvidence>, FetchError> {
        self.cached(&self.keys, "kmsKey", key_ref.to_string(), || async {
            fetched(self.fetch_key(key_ref, account, region).await)
        })
        .await
    }

    pub(super) async fn fetch_key(
        &self,
        key_ref: &str,
        account: &AccountId,
        region: &Region,
    ) -> Result<KmsKeyEvidence, FetchError> {
        let c = self.clients(account, region).await;
        let d = self
            .call(
                Svc::Kms,
                "DescribeKey",
                "kms:DescribeKey",
                c.kms.describe_key().key_id(key_ref).send(),
            )
            .await?;
        let m = d.key_metadata().ok_or_else(|| FetchError::Unavailable {
            message: "DescribeKey answered without key metadata".into(),
        })?;
        let arn = m.arn().unwrap_or(key_ref).to_string();
        let key_manager = match m.key_manager().map(|k| k.as_str()) {
            Some("AWS") => KeyManager::Aws,
            _ => KeyManager::Customer,
        };
        let key_state = m
            .key_state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|| "Enabled".into());
        let policy = self
            .call(
                Svc::Kms,
                "GetKeyPolicy",
                "kms:GetKeyPolicy",
                c.kms
                    .get_key_policy()
                    .key_id(&arn)
                    .policy_name("default")
                    .send(),
            )
            .await?
            .policy()
            .map(|p| parse_doc(p, "the key policy"))
            .transpose()?;
        let grants = self
            .call(
                Svc::Kms,
                "ListGrants",
                "kms:ListGrants",
                c.kms
                    .list_grants()
                    .key_id(&arn)
                    .into_paginator()
                    .items()
                    .send()
                    .collect::<Result<Vec<_>, _>>(),
            )
            .await?
            .into_iter()
            .filter_map(|g| {
                Some(GrantEvidence {
                    grant_id: g.grant_id().map(str::to_string),
                    name: g.name().map(str::to_string).filter(|n| !n.is_empty()),
                    grantee_principal: g.grantee_principal()?.to_string(),
                    operations: g
                        .operations()
                        .iter()
                        .map(|o| o.as_str().to_string())
                        .collect(),
                    constraints: g.constraints().map(|c| GrantConstraints {
                        encryption_context_subset: c
                            .encryption_context_subset()
                            .map(|m| m.clone().into_iter().collect()),
                        encryption_context_equals: c
                            .encryption_context_equals()
                            .map(|m| m.clone().into_iter().collect()),
                    }),
                })
            })
            .collect();
        let aliases = if key_ref.contains(":alias/") || key_ref.starts_with("alias/") {
            vec![key_ref.rsplit(':').next().unwrap_or(key_ref).to_string()]
        } else {
            vec![]
        };
        Ok(KmsKeyEvidence {
            arn,
            found: true,
            aliases,
            key_manager,
            key_state,
            policy: policy.or_else(|| None),
            grants,
        })
    }
}
