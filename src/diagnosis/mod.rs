//! SQS access diagnosis on top of the policy engine: what an access mode needs, how the layers
//! combine for an EKS workload calling SQS (and KMS through SQS), the reason codes, messages
//! and fixes. Pure: a [`Snapshot`] goes in, a [`Verdict`] comes out.
//!
//! Split the way a reader follows a request: [`check`] runs the steps in order and holds the
//! verdict; `credentials` (which role, IRSA or Pod Identity), `trust` (IRSA) and `pod_identity`
//! (the rest of the credential step), `sqs`, `kms`; `context` builds what every evaluation
//! shares; `findings` turns the engine's answers into reasons and fixes.

pub mod access;
pub mod check;
mod context;
pub mod credentials;
mod findings;
mod kms;
mod pod_identity;
pub mod reason;
pub mod report;
pub mod snapshot;
pub mod spec;
mod sqs;
mod trust;
pub mod workload;

pub use access::{AccessMode, SqsAction};
pub use check::{Check, Verdict, diagnose, diagnose_with};
pub use reason::{DiagLayer, Finding, Fix, FixTarget, Outcome, ReasonCode};
pub use snapshot::Snapshot;
pub use spec::{BindingSpec, SpecError, SpecOptions, ValidSpec};
pub use trust::normalize_issuer;
