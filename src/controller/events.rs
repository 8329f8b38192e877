//! Follows the events queue while this replica leads: each batch of AWS change events drops the
//! cached documents it touches and requeues the bindings that depend on them, then the
//! messages are deleted. The periodic re-check stays as the safety net for late or lost events.

use std::sync::Arc;
use std::time::Duration;

use super::Context;
use crate::aws::events::EventQueue;

/// Runs until the task is dropped.
pub async fn follow(ctx: Arc<Context>, queue: EventQueue) {
    let mut failures = 0u32;
    loop {
        match queue.next_batch().await {
            Ok(batch) => {
                failures = 0;
                if !batch.changes.is_empty() {
                    let n = ctx.apply_changes(&batch.changes);
                    tracing::info!(
                        changes = batch.changes.len(),
                        bindings = n,
                        "AWS changes applied"
                    );
                }
                if let Err(e) = queue.delete(&batch.receipts).await {
                    tracing::warn!(error = %e, "deleting handled events failed; they will be applied again");
                }
            }
            Err(e) => {
                failures += 1;
                let wait = Duration::from_secs((1u64 << failures.min(6)).min(60));
                tracing::warn!(error = %e, retry_in = ?wait, "reading the events queue failed");
                tokio::time::sleep(wait).await;
            }
        }
    }
}
