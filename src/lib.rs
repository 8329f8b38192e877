//! sqs-access-operator: tells whether a Kubernetes workload's service account can use an Amazon
//! SQS queue, and if not, why and how to fix it.
//!
//! The policy engine ([`policy`]) is pure; everything else adapts it.

pub mod cli;
pub mod diagnosis;
pub mod ids;
pub mod policy;
