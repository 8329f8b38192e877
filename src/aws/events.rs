//! The events queue: AWS's change events (CloudTrail records delivered by EventBridge to an SQS
//! queue), long-polled. A batch is drained before it is handed over, so that a burst of changes
//! is applied once; every message is deleted after it is handled, unparseable ones too (logged
//! once and counted, never a poison loop). Redelivery is harmless: applying a change twice only
//! drops a cache entry twice.

use std::time::Duration;

use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;

use super::error::FetchError;
use super::source::{AwsSource, Svc};
use crate::changes::{Change, parse_message};
use crate::ids::{QueueRef, Region};
use crate::metrics::ResultLabels;

/// How long one `ReceiveMessage` waits for a message (SQS's maximum).
const LONG_POLL: Duration = Duration::from_secs(20);

/// Messages read from the queue and not yet deleted.
#[derive(Debug, Default)]
pub struct EventBatch {
    /// The changes that matter to the operator, in arrival order.
    pub changes: Vec<Change>,
    /// Receipt handles of every message read (matched, ignored and unparseable).
    pub receipts: Vec<String>,
}

/// The configured events queue.
pub struct EventQueue {
    source: AwsSource,
    url: String,
    region: Region,
    max_batch: usize,
}

impl AwsSource {
    /// The events queue of the configuration (`events.queueUrl`), if one is set. Its URL is
    /// checked like a binding's (an SQS endpoint or the configured endpoint), and the URL used
    /// comes from `sqs:GetQueueUrl`.
    pub async fn events_queue(&self) -> Result<Option<EventQueue>, String> {
        let cfg = &self.inner.cfg.events;
        let Some(raw) = cfg.queue_url.as_deref() else {
            return Ok(None);
        };
        let opts = crate::aws::SnapshotSource::spec_options(self);
        let hint = cfg
            .region
            .as_deref()
            .and_then(|r| Region::parse(r).ok())
            .or(opts.region.clone());
        let q = QueueRef::parse(raw, &opts.extra_queue_hosts, hint.as_ref())
            .map_err(|e| format!("events.queueUrl: {e}"))?;
        let arn = q.arn;
        let region = arn.region().clone();
        let c = self.inner.clients_as(None, &region).await;
        let url = self
            .inner
            .call(
                Svc::Sqs,
                "GetQueueUrl",
                "sqs:GetQueueUrl",
                c.sqs
                    .get_queue_url()
                    .queue_name(arn.name())
                    .queue_owner_aws_account_id(arn.account().as_str())
                    .send(),
            )
            .await
            .map_err(|e| format!("events.queueUrl {raw}: {e}"))?
            .queue_url
            .ok_or_else(|| format!("events.queueUrl {raw}: SQS answered without a URL"))?;
        Ok(Some(EventQueue {
            source: self.clone(),
            url,
            region,
            max_batch: cfg.max_batch.max(1),
        }))
    }
}

impl EventQueue {
    /// Waits (long poll) for messages, then keeps reading without waiting while full batches
    /// come, up to `events.maxBatch` messages.
    pub async fn next_batch(&self) -> Result<EventBatch, FetchError> {
        let mut batch = EventBatch::default();
        let mut wait = LONG_POLL;
        loop {
            let got = self.receive(wait).await?;
            let full = got.len() == 10;
            for m in got {
                let Some(receipt) = m.receipt_handle else {
                    continue;
                };
                batch.receipts.push(receipt);
                let body = m.body.unwrap_or_default();
                let result = match parse_message(&body) {
                    Ok(Some(change)) => {
                        batch.changes.push(change);
                        "matched"
                    }
                    Ok(None) => "ignored",
                    Err(e) => {
                        let shown: String = body.chars().take(200).collect();
                        tracing::warn!(
                            message_id = m.message_id.as_deref().unwrap_or_default(),
                            error = %e,
                            body = %shown,
                            "dropping an events-queue message that is not a CloudTrail event"
                        );
                        "unparseable"
                    }
                };
                self.source
                    .inner
                    .metrics
                    .events
                    .get_or_create(&ResultLabels { result })
                    .inc();
            }
            if !full || batch.receipts.len() >= self.max_batch {
                return Ok(batch);
            }
            wait = Duration::ZERO;
        }
    }

    async fn receive(
        &self,
        wait: Duration,
    ) -> Result<Vec<aws_sdk_sqs::types::Message>, FetchError> {
        let inner = &self.source.inner;
        let c = inner.clients_as(None, &self.region).await;
        let deadline = wait + inner.cfg.aws.call_timeout + Duration::from_secs(1);
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .operation_attempt_timeout(deadline)
            .build();
        let out = inner
            .observe(
                Svc::Sqs,
                "ReceiveMessage",
                "sqs:ReceiveMessage",
                deadline,
                c.sqs
                    .receive_message()
                    .queue_url(&self.url)
                    .max_number_of_messages(10)
                    .wait_time_seconds(wait.as_secs() as i32)
                    .customize()
                    .config_override(
                        aws_sdk_sqs::config::Builder::default().timeout_config(timeouts),
                    )
                    .send(),
            )
            .await?;
        Ok(out.messages.unwrap_or_default())
    }

    /// Deletes handled messages, ten per request.
    pub async fn delete(&self, receipts: &[String]) -> Result<(), FetchError> {
        let inner = &self.source.inner;
        let c = inner.clients_as(None, &self.region).await;
        for chunk in receipts.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .build()
                        .ok()
                })
                .collect::<Vec<_>>();
            let out = inner
                .call(
                    Svc::Sqs,
                    "DeleteMessageBatch",
                    "sqs:DeleteMessage",
                    c.sqs
                        .delete_message_batch()
                        .queue_url(&self.url)
                        .set_entries(Some(entries))
                        .send(),
                )
                .await?;
            if !out.failed.is_empty() {
                // Redelivered later and applied again: harmless.
                tracing::warn!(
                    failed = out.failed.len(),
                    "some events-queue messages were not deleted"
                );
            }
        }
        Ok(())
    }
}
