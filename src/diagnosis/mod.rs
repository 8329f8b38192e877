//! SQS access diagnosis on top of the policy engine: what an access mode needs, how the layers
//! combine for an IRSA workload calling SQS (and KMS through SQS), the reason codes, messages
//! and fixes. Pure: a [`Snapshot`] goes in, a [`Verdict`] comes out.

pub mod access;
pub mod check;
pub mod reason;
pub mod report;
pub mod snapshot;
pub mod spec;

pub use access::{AccessMode, SqsAction};
pub use check::{Check, Verdict, diagnose, diagnose_with};
pub use reason::{DiagLayer, Finding, Fix, FixTarget, Outcome, ReasonCode};
pub use snapshot::Snapshot;
pub use spec::{BindingSpec, SpecError, SpecOptions, ValidSpec};
