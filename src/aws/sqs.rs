//! SQS reads: the queue's URL (from SQS itself, never from user input), attributes and tags.

use super::error::FetchError;
use super::source::{Inner, Svc, fetched, parse_doc};
use crate::diagnosis::snapshot::QueueEvidence;
use crate::ids::QueueArn;

impl Inner {
    pub(super) async fn queue(&self, q: &QueueArn) -> Result<Option<QueueEvidence>, FetchError> {
        self.cached(&self.queues, "queue", q.clone(), || async {
            fetched(self.fetch_queue(q).await)
        })
        .await
    }

    pub(super) async fn fetch_queue(&self, q: &QueueArn) -> Result<QueueEvidence, FetchError> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let c = self.clients(q.account(), q.region()).await;
        // The URL comes from SQS itself, never from user input.
        let url = self
            .call(
                Svc::Sqs,
                "GetQueueUrl",
                "sqs:GetQueueUrl",
                c.sqs
                    .get_queue_url()
                    .queue_name(q.name())
                    .queue_owner_aws_account_id(q.account().as_str())
                    .send(),
            )
            .await;
        let url = match url {
            Ok(out) => out
                .queue_url()
                .map(str::to_string)
                .ok_or(FetchError::NotFound),
            Err(e) => Err(e),
        };
        let url = match url {
            Ok(u) => u,
            // SQS says QueueDoesNotExist both for a missing queue and for one the caller may
            // not see; only a reader in the queue's own account can tell them apart.
            Err(FetchError::NotFound) if !self.reads_as_owner(q.account()).await => {
                return Err(FetchError::Denied {
                    permission: "sqs:GetQueueUrl".into(),
                    message: format!(
                        "SQS answers QueueDoesNotExist both for a missing queue and for one the operator may not see; configure aws.readerRoles for account {} to tell them apart",
                        q.account()
                    ),
                });
            }
            Err(e) => return Err(e),
        };
        let out = self
            .call(
                Svc::Sqs,
                "GetQueueAttributes",
                "sqs:GetQueueAttributes",
                c.sqs
                    .get_queue_attributes()
                    .queue_url(&url)
                    .attribute_names(A::Policy)
                    .attribute_names(A::KmsMasterKeyId)
                    .attribute_names(A::SqsManagedSseEnabled)
                    .attribute_names(A::QueueArn)
                    .send(),
            )
            .await?;
        let attrs = out.attributes().cloned().unwrap_or_default();
        let policy = attrs
            .get(&A::Policy)
            .filter(|p| !p.trim().is_empty())
            .map(|p| parse_doc(p, "the queue policy"))
            .transpose()?;
        // Tags are optional evidence: without them aws:ResourceTag/* stays unknown.
        let tags = self
            .call(
                Svc::Sqs,
                "ListQueueTags",
                "sqs:ListQueueTags",
                c.sqs.list_queue_tags().queue_url(&url).send(),
            )
            .await
            .ok()
            .map(|t| t.tags().cloned().unwrap_or_default().into_iter().collect());
        Ok(QueueEvidence {
            arn: Some(
                attrs
                    .get(&A::QueueArn)
                    .cloned()
                    .unwrap_or_else(|| q.to_string()),
            ),
            url: Some(url),
            found: true,
            policy,
            kms_master_key_id: attrs
                .get(&A::KmsMasterKeyId)
                .cloned()
                .filter(|k| !k.is_empty()),
            sqs_managed_sse_enabled: attrs.get(&A::SqsManagedSseEnabled).map(|v| v == "true"),
            tags,
        })
    }
}
