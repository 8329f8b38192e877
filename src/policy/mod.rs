//! The IAM policy language and its evaluation, on its own: no I/O, no async, no AWS SDK or
//! Kubernetes types. Parse documents once ([`Policy`]), describe a request ([`Request`]), and
//! ask the [`authorize`] function, which answers like AWS does and says why ([`Response`]).

pub mod arn;
pub mod authorizer;
pub mod condition;
pub mod context;
pub mod document;
pub mod input;
pub mod pattern;
pub mod tri;

pub use arn::{Arn, ArnError};
pub use authorizer::{
    Decision, Dependency, Gap, Layer, LayerOutcome, NamedPolicy, Note, OrgLevel, PolicySet,
    Response, StatementRef, authorize,
};
pub use condition::Residual;
pub use context::{Context, Principal, PrincipalKind, Request, ResourceRule};
pub use document::{Effect, Policy, PolicyError, Statement};
pub use tri::Tri;
