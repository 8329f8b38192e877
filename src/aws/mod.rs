//! Live evidence: fetching what a snapshot holds from AWS with the SDK, cached (TTL) and
//! coalesced, with per-service concurrency limits, timeouts, retries and classified errors.
//! This is the only module that knows the SDK; everything else sees [`SnapshotSource`].

mod eks;
pub mod error;
pub mod events;
mod iam;
mod kms;
pub mod source;
mod sqs;

use futures::future::BoxFuture;

use crate::diagnosis::snapshot::{ServiceAccountEvidence, Snapshot};
use crate::diagnosis::spec::{BindingSpec, SpecOptions};

pub use error::FetchError;
pub use source::AwsSource;

/// What Kubernetes knows about a binding; the source adds what AWS knows.
#[derive(Debug, Clone)]
pub struct SnapshotInput {
    pub namespace: String,
    pub binding_name: Option<String>,
    pub spec: BindingSpec,
    /// `None`: the service account was not read.
    pub service_account: Option<ServiceAccountEvidence>,
    pub oidc_issuer: Option<String>,
    pub cluster_name: Option<String>,
    /// The pods that run as the service account; `None`: not read.
    pub pods: Option<Vec<crate::diagnosis::snapshot::PodEvidence>>,
}

/// Something that can complete a snapshot: AWS itself, or a fake in tests.
pub trait SnapshotSource: Send + Sync {
    fn snapshot<'a>(&'a self, input: &'a SnapshotInput) -> BoxFuture<'a, Snapshot>;
    /// Which queue URLs this installation accepts (the configured endpoint, the region).
    fn spec_options(&self) -> SpecOptions;
    /// Forgets what was cached of a document that changed in AWS.
    fn invalidate(&self, _doc: &crate::changes::DocRef) {}
}
