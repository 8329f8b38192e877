//! sqs-access-operator: tells whether a Kubernetes workload's service account can use an Amazon
//! SQS queue, and if not, why and how to fix it.
//!
//! The policy engine ([`policy`]) is pure; everything else adapts it.

pub mod admin;
pub mod aws;
pub mod binding;
pub mod changes;
pub mod cli;
pub mod config;
pub mod controller;
pub mod crd;
pub mod diagnosis;
pub mod ids;
pub mod metrics;
pub mod policy;
pub mod webhook;
pub mod yaml;
