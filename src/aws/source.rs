//! The AWS implementation of [`SnapshotSource`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region as SdkRegion, SdkConfig};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use futures::future::BoxFuture;
use moka::future::Cache;
use tokio::sync::{Mutex, Semaphore};

use super::ec2::VpcEndpointInfo;
use super::eks::ClusterInfo;
use super::error::{FetchError, classify};
use super::org::OrgState;
use super::{SnapshotInput, SnapshotSource};
use crate::changes::DocRef;
use crate::config::Config;
use crate::diagnosis::check::normalize_issuer;
use crate::diagnosis::credentials::{RoleSource, role_source};
use crate::diagnosis::snapshot::{
    Document, EvidenceError, EvidenceErrorKind, KeyManager, KmsKeyEvidence,
    PodIdentityAssociationEvidence, QueueEvidence, RoleEvidence, Snapshot,
};
use crate::diagnosis::spec::SpecOptions;
use crate::ids::{AccountId, QueueArn, Region, RoleArn};
use crate::metrics::Metrics;

/// A document as the cache keeps it: found, known absent, or not readable by us.
#[derive(Debug, Clone)]
pub(super) enum Fetched<T> {
    Found(T),
    NotFound,
    Denied { permission: String, message: String },
}

pub(super) fn fetched<T>(r: Result<T, FetchError>) -> Result<Fetched<T>, FetchError> {
    match r {
        Ok(v) => Ok(Fetched::Found(v)),
        Err(FetchError::NotFound) => Ok(Fetched::NotFound),
        Err(FetchError::Denied {
            permission,
            message,
        }) => Ok(Fetched::Denied {
            permission,
            message,
        }),
        Err(e) => Err(e),
    }
}

#[derive(Clone, Copy)]
pub(super) enum Svc {
    Iam,
    Sqs,
    Kms,
    Eks,
    Ec2,
    Org,
}

impl Svc {
    fn name(self) -> &'static str {
        match self {
            Svc::Iam => "iam",
            Svc::Sqs => "sqs",
            Svc::Kms => "kms",
            Svc::Eks => "eks",
            Svc::Ec2 => "ec2",
            Svc::Org => "organizations",
        }
    }
}

/// Clients are per reader account (`None`: the operator's own credentials) and region.
type ClientKey = (Option<AccountId>, String);

pub(super) struct Clients {
    pub(super) iam: aws_sdk_iam::Client,
    pub(super) sqs: aws_sdk_sqs::Client,
    pub(super) kms: aws_sdk_kms::Client,
    pub(super) eks: aws_sdk_eks::Client,
    pub(super) ec2: aws_sdk_ec2::Client,
}

/// The Pod Identity associations of one service account in one cluster.
pub(super) type AssociationKey = (String, String, String, String);

#[derive(Debug, Clone)]
pub(super) struct ProviderList {
    pub(super) arns: Vec<String>,
}

#[derive(Debug, Clone)]
pub(super) struct ProviderDetail {
    pub(super) url: String,
    pub(super) client_ids: Vec<String>,
}

/// Reads snapshots from AWS.
#[derive(Clone)]
pub struct AwsSource {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) base: SdkConfig,
    pub(super) cfg: Config,
    pub(super) home_region: Region,
    /// The account of the operator's own credentials (sts:GetCallerIdentity, asked once).
    pub(super) home_account: tokio::sync::OnceCell<Option<AccountId>>,
    pub(super) clients: Mutex<HashMap<ClientKey, Arc<Clients>>>,
    pub(super) iam_limit: Semaphore,
    pub(super) sqs_limit: Semaphore,
    pub(super) kms_limit: Semaphore,
    pub(super) eks_limit: Semaphore,
    pub(super) metrics: Metrics,
    pub(super) spec_opts: SpecOptions,
    pub(super) roles: Cache<RoleArn, Arc<Fetched<RoleEvidence>>>,
    pub(super) policies: Cache<(AccountId, String), Arc<Fetched<Document>>>,
    pub(super) providers: Cache<AccountId, Arc<Fetched<ProviderList>>>,
    pub(super) provider_details: Cache<String, Arc<Fetched<ProviderDetail>>>,
    pub(super) queues: Cache<QueueArn, Arc<Fetched<QueueEvidence>>>,
    pub(super) keys: Cache<String, Arc<Fetched<KmsKeyEvidence>>>,
    pub(super) associations:
        Cache<AssociationKey, Arc<Fetched<Vec<PodIdentityAssociationEvidence>>>>,
    /// eks:DescribeCluster by (name, region).
    pub(super) clusters: Cache<(String, String), Arc<Fetched<ClusterInfo>>>,
    /// ec2:DescribeVpcEndpoints by (account, region, endpoint id).
    pub(super) endpoints: Cache<(Option<AccountId>, String, String), Arc<Fetched<VpcEndpointInfo>>>,
    pub(super) ec2_limit: Semaphore,
    /// The organization reader and its caches.
    pub(super) org: OrgState,
    pub(super) principals: super::principal::PrincipalCaches,
}

impl AwsSource {
    /// Builds the source from the default credential chain and region (`AWS_REGION`,
    /// `AWS_ENDPOINT_URL` and friends work as usual), overridden by the config file.
    pub async fn from_env(cfg: Config, metrics: Metrics) -> AwsSource {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(r) = &cfg.aws.region {
            loader = loader.region(SdkRegion::new(r.clone()));
        }
        if let Some(e) = &cfg.aws.endpoint_url {
            loader = loader.endpoint_url(e.clone());
        }
        let base = loader.load().await;
        AwsSource::from_sdk_config(base, cfg, metrics)
    }

    /// Builds the source on a given SDK configuration (tests pass one with static credentials
    /// and an emulator endpoint). Retries and timeouts come from `cfg`.
    pub fn from_sdk_config(base: SdkConfig, cfg: Config, metrics: Metrics) -> AwsSource {
        let base = base
            .to_builder()
            .retry_config(
                // Adaptive: a client throttled by AWS also slows itself down (a token bucket),
                // so a fleet's reads stay within the API's request rate.
                RetryConfig::adaptive()
                    .with_max_attempts(cfg.aws.max_attempts.max(1))
                    .with_initial_backoff(Duration::from_millis(200)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(cfg.aws.call_timeout)
                    .connect_timeout(cfg.aws.call_timeout.min(Duration::from_secs(3)))
                    .build(),
            )
            .build();
        let home_region = base
            .region()
            .and_then(|r| Region::parse(r.as_ref()).ok())
            .unwrap_or_else(|| Region::parse("us-east-1").expect("valid region"));
        let endpoint = base.endpoint_url().map(str::to_string);
        let mut extra_queue_hosts = Vec::new();
        if let Some(e) = &endpoint
            && let Some(rest) = e.split_once("://").map(|(_, r)| r)
        {
            extra_queue_hosts.push(rest.split('/').next().unwrap_or(rest).to_ascii_lowercase());
        }
        let ttl = cfg.aws.cache_ttl;
        let inner = Inner {
            iam_limit: Semaphore::new(cfg.aws.concurrency.iam.max(1)),
            sqs_limit: Semaphore::new(cfg.aws.concurrency.sqs.max(1)),
            kms_limit: Semaphore::new(cfg.aws.concurrency.kms.max(1)),
            eks_limit: Semaphore::new(cfg.aws.concurrency.eks.max(1)),
            ec2_limit: Semaphore::new(cfg.aws.concurrency.ec2.max(1)),
            org: OrgState::new(&cfg, ttl),
            spec_opts: SpecOptions {
                extra_queue_hosts,
                region: Some(home_region.clone()),
            },
            roles: cache(10_000, ttl),
            policies: cache(10_000, ttl),
            providers: cache(1_000, ttl),
            provider_details: cache(1_000, ttl),
            queues: cache(10_000, ttl),
            keys: cache(10_000, ttl),
            associations: cache(10_000, ttl),
            clusters: cache(100, ttl),
            endpoints: cache(1_000, ttl),
            principals: super::principal::PrincipalCaches::new(ttl),
            clients: Mutex::new(HashMap::new()),
            home_account: tokio::sync::OnceCell::new(),
            home_region,
            base,
            cfg,
            metrics,
        };
        AwsSource {
            inner: Arc::new(inner),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Forgets the cached documents a change touched (and what was built from them: a role's
    /// entry holds its managed policies). Reads of other documents stay cached.
    pub fn invalidate(&self, doc: &DocRef) {
        let i = &self.inner;
        // `invalidate_entries_if` only fails when closures were not enabled at build time.
        let r = match doc {
            DocRef::Role { account, name } => {
                let (account, name) = (account.clone(), name.clone());
                i.roles
                    .invalidate_entries_if(move |k, _| {
                        k.account().as_str() == account && k.name() == name
                    })
                    .map(drop)
            }
            DocRef::ManagedPolicy { arn } => {
                let a = arn.clone();
                let _ = i.policies.invalidate_entries_if(move |k, _| k.1 == a);
                let a = arn.clone();
                i.roles
                    .invalidate_entries_if(move |_, v| match &**v {
                        Fetched::Found(r) => r
                            .managed_policies
                            .iter()
                            .chain(&r.permissions_boundary)
                            .any(|p| p.arn.as_deref() == Some(a.as_str())),
                        _ => false,
                    })
                    .map(drop)
            }
            DocRef::OidcProviders { account } => {
                if let Ok(a) = AccountId::parse(account) {
                    i.providers.invalidate_entries_if(move |k, _| *k == a).ok();
                }
                let needle = format!(":{account}:");
                i.provider_details
                    .invalidate_entries_if(move |k, _| k.contains(&needle))
                    .map(drop)
            }
            DocRef::Queue {
                account,
                region,
                name,
            } => {
                let (account, region, name) = (account.clone(), region.clone(), name.clone());
                i.queues
                    .invalidate_entries_if(move |k, _| {
                        k.account().as_str() == account
                            && k.region().as_str() == region
                            && k.name() == name
                    })
                    .map(drop)
            }
            DocRef::Key { key_id } => {
                let suffix = format!("key/{key_id}");
                i.keys
                    .invalidate_entries_if(move |k, v| {
                        k.ends_with(&suffix)
                            || matches!(&**v, Fetched::Found(key) if key.arn.ends_with(&suffix))
                    })
                    .map(drop)
            }
            DocRef::KeyAlias {
                account,
                region,
                alias,
            } => {
                let suffix = format!("{region}:{account}:{alias}");
                i.keys
                    .invalidate_entries_if(move |k, _| k.ends_with(&suffix))
                    .map(drop)
            }
            DocRef::Associations {
                cluster,
                namespace,
                service_account,
            } => {
                let (c, n, sa) = (cluster.clone(), namespace.clone(), service_account.clone());
                i.associations
                    .invalidate_entries_if(move |k, _| k.0 == c && k.2 == n && k.3 == sa)
                    .map(drop)
            }
            DocRef::Association { cluster, id } => {
                let (c, id) = (cluster.clone(), id.clone());
                i.associations
                    .invalidate_entries_if(move |k, v| {
                        k.0 == c
                            && match &**v {
                                Fetched::Found(list) => list
                                    .iter()
                                    .any(|a| a.association_id.as_deref() == Some(id.as_str())),
                                _ => false,
                            }
                    })
                    .map(drop)
            }
            DocRef::Account { account } => {
                i.org.invalidate_account(account);
                Ok(())
            }
            // A policy changed, or one attached at the root or an OU: the organization's
            // policies are re-read (such changes are rare).
            DocRef::Organization => {
                i.org.invalidate_all();
                Ok(())
            }
            DocRef::VpcEndpoint { id } => {
                let id = id.clone();
                i.endpoints
                    .invalidate_entries_if(move |k, _| k.2 == id)
                    .map(drop)
            }
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "cache invalidation failed; dropping everything");
            self.invalidate_all();
        }
    }

    /// Forgets every cached document.
    pub fn invalidate_all(&self) {
        let i = &self.inner;
        i.roles.invalidate_all();
        i.policies.invalidate_all();
        i.providers.invalidate_all();
        i.provider_details.invalidate_all();
        i.queues.invalidate_all();
        i.keys.invalidate_all();
        i.associations.invalidate_all();
        i.clusters.invalidate_all();
        i.endpoints.invalidate_all();
        i.org.invalidate_all();
        i.principals.invalidate_all();
    }
}

impl Inner {
    /// Clients for an account (through its reader role, when one is configured) and region.
    pub(super) async fn clients(&self, account: &AccountId, region: &Region) -> Arc<Clients> {
        self.clients_as(Some(account), region).await
    }

    /// Clients for an account (`None`: the operator's own credentials) and region.
    pub(super) async fn clients_as(
        &self,
        account: Option<&AccountId>,
        region: &Region,
    ) -> Arc<Clients> {
        let reader = account.and_then(|a| self.cfg.aws.reader_roles.get(a).map(|r| (a, r)));
        let key = (reader.map(|(a, _)| a.clone()), region.to_string());
        let mut map = self.clients.lock().await;
        if let Some(c) = map.get(&key) {
            return c.clone();
        }
        let mut conf = self
            .base
            .to_builder()
            .region(SdkRegion::new(region.to_string()))
            .build();
        if let Some((_, role)) = reader {
            let provider = aws_config::sts::AssumeRoleProvider::builder(role.as_str())
                .session_name("sqs-access-operator")
                .configure(&self.base)
                .build()
                .await;
            conf = conf
                .to_builder()
                .credentials_provider(
                    aws_credential_types::provider::SharedCredentialsProvider::new(provider),
                )
                .build();
        }
        let c = Arc::new(Clients {
            iam: aws_sdk_iam::Client::new(&conf),
            sqs: aws_sdk_sqs::Client::new(&conf),
            kms: aws_sdk_kms::Client::new(&conf),
            eks: aws_sdk_eks::Client::new(&conf),
            ec2: aws_sdk_ec2::Client::new(&conf),
        });
        // Regions come from user specs: keep the map bounded.
        if map.len() >= 64 {
            map.clear();
        }
        map.insert(key, c.clone());
        c
    }

    /// Whether the operator reads `account` with that account's own credentials (a reader role,
    /// or its home account), so that SQS's "does not exist" can be believed.
    pub(super) async fn reads_as_owner(&self, account: &AccountId) -> bool {
        if self.cfg.aws.reader_roles.contains_key(account) {
            return true;
        }
        self.home_account().await.as_ref() == Some(account)
    }

    /// The account of the operator's own credentials (asked once).
    pub(super) async fn home_account(&self) -> Option<AccountId> {
        self.home_account
            .get_or_init(|| async {
                let sts = aws_sdk_sts::Client::new(&self.base);
                let out = tokio::time::timeout(
                    self.cfg.aws.call_timeout,
                    sts.get_caller_identity().send(),
                )
                .await;
                let outcome = match &out {
                    Ok(Ok(_)) => "ok",
                    _ => "unavailable",
                };
                self.metrics.call("sts", "GetCallerIdentity", outcome);
                match out {
                    Ok(Ok(o)) => o.account().and_then(|a| AccountId::parse(a).ok()),
                    _ => None,
                }
            })
            .await
            .clone()
    }

    /// One AWS call: under the service's concurrency limit, with a deadline, classified and
    /// counted.
    pub(super) async fn call<T, E>(
        &self,
        svc: Svc,
        op: &'static str,
        permission: &str,
        fut: impl Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    ) -> Result<T, FetchError>
    where
        E: ProvideErrorMetadata + std::fmt::Debug,
    {
        let limit = match svc {
            Svc::Iam => &self.iam_limit,
            Svc::Sqs => &self.sqs_limit,
            Svc::Kms => &self.kms_limit,
            Svc::Eks => &self.eks_limit,
            Svc::Ec2 => &self.ec2_limit,
            Svc::Org => &self.org.limit,
        };
        let _permit = limit.acquire().await.expect("semaphores are never closed");
        // Retries happen inside the SDK; this deadline bounds all of them together.
        let deadline =
            self.cfg.aws.call_timeout * self.cfg.aws.max_attempts.max(1) + Duration::from_secs(1);
        self.observe(svc, op, permission, deadline, fut).await
    }

    /// One AWS call with its own deadline and outside the concurrency limits (a long poll):
    /// classified and counted like the others.
    pub(super) async fn observe<T, E>(
        &self,
        svc: Svc,
        op: &'static str,
        permission: &str,
        deadline: Duration,
        fut: impl Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    ) -> Result<T, FetchError>
    where
        E: ProvideErrorMetadata + std::fmt::Debug,
    {
        let result = match tokio::time::timeout(deadline, fut).await {
            Err(_) => Err(FetchError::Unavailable {
                message: format!("{op} did not answer within {deadline:?}"),
            }),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(classify(&e, permission)),
        };
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        self.metrics.call(svc.name(), op, outcome);
        if let Err(e) = &result {
            tracing::debug!(service = svc.name(), operation = op, error = %e, "AWS call failed");
        }
        result
    }

    pub(super) async fn cached<K, V, Fut>(
        &self,
        cache: &Cache<K, Arc<Fetched<V>>>,
        kind: &'static str,
        key: K,
        fetch: impl FnOnce() -> Fut,
    ) -> Result<Option<V>, FetchError>
    where
        K: std::hash::Hash + Eq + Send + Sync + Clone + 'static,
        V: Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Fetched<V>, FetchError>>,
    {
        let got = if let Some(v) = cache.get(&key).await {
            self.metrics
                .cache
                .get_or_create(&crate::metrics::CacheLabels {
                    kind,
                    result: "hit",
                })
                .inc();
            v
        } else {
            self.metrics
                .cache
                .get_or_create(&crate::metrics::CacheLabels {
                    kind,
                    result: "miss",
                })
                .inc();
            // Concurrent misses for one key share a single fetch; failures are not cached.
            // The fetch is boxed: nested SDK futures are large, and kept inline they would
            // make every caller's future (and a debug build's stack) grow with them.
            cache
                .try_get_with(key, Box::pin(async move { fetch().await.map(Arc::new) }))
                .await
                .map_err(|e: Arc<FetchError>| (*e).clone())?
        };
        // Back to a result: absent is `None`, the reader's denial an error.
        match &*got {
            Fetched::Found(v) => Ok(Some(v.clone())),
            Fetched::NotFound => Ok(None),
            Fetched::Denied {
                permission,
                message,
            } => Err(FetchError::Denied {
                permission: permission.clone(),
                message: message.clone(),
            }),
        }
    }

    // ---- assembly ----

    pub(super) async fn build(&self, input: &SnapshotInput) -> Snapshot {
        let mut snap = Snapshot::unread(
            input.namespace.clone(),
            input.binding_name.clone(),
            input.spec.clone(),
            input.service_account.clone(),
            input.oidc_issuer.clone(),
        );
        snap.organization = self.cfg.organization.as_ref().and_then(|o| o.evidence());
        snap.pods = input.pods.clone();
        // Nothing is fetched for a spec that is wrong: the diagnosis reports it.
        let Ok(spec) = input.spec.validate(&self.spec_opts) else {
            return snap;
        };
        let mut errors = Vec::new();
        // Which role the service account gets: a Pod Identity association wins over the IRSA
        // annotation, as in EKS, so the associations are read first.
        let sa = input.service_account.as_ref().filter(|sa| sa.found);
        let cluster_error;
        (snap.cluster, cluster_error) = self.cluster(input).await;
        if let (Some(_), Some(name)) = (sa, snap.cluster.name.clone()) {
            let region = snap
                .cluster
                .region
                .as_deref()
                .and_then(|r| Region::parse(r).ok())
                .unwrap_or_else(|| self.home_region.clone());
            match self
                .associations(&name, &region, &input.namespace, &spec.service_account)
                .await
            {
                Ok(Some(list)) => snap.pod_identity_associations = Some(list),
                Ok(None) => errors.push(EvidenceError {
                    item: "podIdentityAssociations".into(),
                    kind: EvidenceErrorKind::Unreadable,
                    message: format!(
                        "EKS cluster {name} was not found in {region}: check cluster.name and cluster.region"
                    ),
                    permission: None,
                }),
                Err(e) => errors.push(evidence_error("podIdentityAssociations", &e)),
            }
        }
        let source = sa.map(|sa| {
            role_source(
                &input.namespace,
                &spec.service_account,
                &sa.annotations,
                snap.pod_identity_associations.as_deref(),
            )
        });
        let (role_arn, target_arn, irsa) = match source {
            Some(RoleSource::Irsa { role_arn }) => (RoleArn::parse(role_arn).ok(), None, true),
            Some(RoleSource::PodIdentity { association, .. }) => (
                RoleArn::parse(&association.role_arn).ok(),
                association
                    .target_role_arn
                    .as_deref()
                    .and_then(|t| RoleArn::parse(t).ok()),
                false,
            ),
            _ => (None, None, false),
        };
        // An issuer the input does not give comes from eks:DescribeCluster; only IRSA needs it.
        if let Some(e) = cluster_error
            && irsa
            && snap.cluster.oidc_issuer.is_none()
        {
            errors.push(evidence_error("cluster", &e));
        }
        let issuer = snap.cluster.oidc_issuer.as_deref().map(normalize_issuer);
        // The endpoint is in the workload's VPC: the cluster's account and region when known,
        // else the role's.
        let endpoint_fut = async {
            let id = spec.vpc_endpoint_id.as_ref()?;
            let account = snap
                .cluster
                .cluster_account()
                .and_then(|a| AccountId::parse(&a).ok())
                .or_else(|| role_arn.as_ref().map(|r| r.account().clone()));
            let region = snap
                .cluster
                .cluster_region()
                .and_then(|r| Region::parse(&r).ok())
                .unwrap_or_else(|| self.home_region.clone());
            Some(self.network(id, account.as_ref(), &region).await)
        };
        let role_fut = async {
            match &role_arn {
                Some(r) => Some(self.role(r).await),
                None => None,
            }
        };
        let target_fut = async {
            match &target_arn {
                Some(r) => Some(self.role(r).await),
                None => None,
            }
        };
        let providers_fut = async {
            match (&role_arn, &issuer) {
                (Some(r), Some(i)) if irsa => Some(self.providers(r.account(), i).await),
                _ => None,
            }
        };
        let queue_fut = self.queue(&spec.queue.arn);
        let (role, target, providers, queue, endpoint) =
            tokio::join!(role_fut, target_fut, providers_fut, queue_fut, endpoint_fut);
        if let Some((network, error)) = endpoint {
            snap.network = Some(network);
            errors.extend(error);
        }
        for (item, arn, got, slot) in [
            ("role", &role_arn, role, &mut snap.role),
            ("targetRole", &target_arn, target, &mut snap.target_role),
        ] {
            match got {
                Some(Ok(Some(r))) => *slot = Some(r),
                Some(Ok(None)) => {
                    *slot = Some(RoleEvidence {
                        arn: arn.as_ref().map(|r| r.to_string()).unwrap_or_default(),
                        found: false,
                        trust_policy: None,
                        inline_policies: vec![],
                        managed_policies: vec![],
                        permissions_boundary: None,
                        tags: Default::default(),
                    })
                }
                Some(Err(e)) => errors.push(evidence_error(item, &e)),
                None => {}
            }
        }
        match providers {
            Some(Ok(p)) => snap.oidc_providers = Some(p),
            Some(Err(e)) => {
                // Not fatal: the diagnosis notes the providers were not read.
                snap.evidence_errors
                    .push(evidence_error("oidcProviders", &e));
            }
            None => {}
        }
        match queue {
            Ok(Some(q)) => snap.queue = Some(q),
            Ok(None) => {
                snap.queue = Some(QueueEvidence {
                    arn: Some(spec.queue.arn.to_string()),
                    url: None,
                    found: false,
                    policy: None,
                    kms_master_key_id: None,
                    sqs_managed_sse_enabled: None,
                    tags: None,
                })
            }
            Err(e) => errors.push(evidence_error("queue", &e)),
        }
        if let Some(q) = &snap.queue
            && let Some(k) = &q.kms_master_key_id
        {
            let (key_ref, acct, region) = key_reference(k, &spec.queue.arn);
            match self.key(&key_ref, &acct, &region).await {
                Ok(Some(mut key)) => {
                    if k.starts_with("alias/") && !key.aliases.contains(k) {
                        key.aliases.push(k.clone());
                    }
                    snap.kms_key = Some(key)
                }
                Ok(None) => {
                    snap.kms_key = Some(KmsKeyEvidence {
                        arn: key_ref.clone(),
                        found: false,
                        aliases: vec![],
                        key_manager: KeyManager::Customer,
                        key_state: "Unknown".into(),
                        policy: None,
                        grants: vec![],
                    })
                }
                Err(e) => errors.push(evidence_error("kmsKey", &e)),
            }
        }
        // The organization's policies for every account the checks look at.
        let mut accounts: Vec<AccountId> = [role_arn.as_ref(), target_arn.as_ref()]
            .into_iter()
            .flatten()
            .map(|r| r.account().clone())
            .collect();
        accounts.push(spec.queue.arn.account().clone());
        if let Some(k) = snap
            .kms_key
            .as_ref()
            .and_then(|k| crate::policy::Arn::parse(&k.arn).ok())
            && let Ok(a) = AccountId::parse(k.account)
        {
            accounts.push(a);
        }
        let (organization, org_errors) =
            self.organization(snap.organization.take(), &accounts).await;
        snap.organization = organization;
        errors.extend(org_errors);
        snap.evidence_errors.extend(errors);
        snap
    }
}

/// A queue's `KmsMasterKeyId` as an ARN in the queue's account and region: alias names and
/// key ids only resolve there, and other accounts' keys must be named by ARN.
fn key_reference(k: &str, queue: &QueueArn) -> (String, AccountId, Region) {
    if let Ok(a) = crate::policy::Arn::parse(k) {
        let acct = AccountId::parse(a.account).unwrap_or_else(|_| queue.account().clone());
        let region = Region::parse(a.region).unwrap_or_else(|_| queue.region().clone());
        return (k.to_string(), acct, region);
    }
    let partition = queue.region().partition();
    let arn = if k.starts_with("alias/") {
        format!(
            "arn:{partition}:kms:{}:{}:{k}",
            queue.region(),
            queue.account()
        )
    } else {
        format!(
            "arn:{partition}:kms:{}:{}:key/{k}",
            queue.region(),
            queue.account()
        )
    };
    (arn, queue.account().clone(), queue.region().clone())
}

pub(super) fn full_access() -> Document {
    Document::parse_str(
        r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}]}"#,
    )
    .expect("the default endpoint policy is valid")
}

pub(super) fn parse_doc(text: &str, what: &str) -> Result<Document, FetchError> {
    Document::parse_str(text).map_err(|e| FetchError::Unavailable {
        message: format!("AWS returned {what} that cannot be parsed: {e}"),
    })
}

pub(super) fn evidence_error(item: &str, e: &FetchError) -> EvidenceError {
    match e {
        FetchError::Denied {
            permission,
            message,
        } => EvidenceError {
            item: item.into(),
            kind: EvidenceErrorKind::Unreadable,
            message: message.clone(),
            permission: Some(permission.clone()),
        },
        other => EvidenceError {
            item: item.into(),
            kind: EvidenceErrorKind::Unavailable,
            message: other.to_string(),
            permission: None,
        },
    }
}

impl SnapshotSource for AwsSource {
    fn snapshot<'a>(&'a self, input: &'a SnapshotInput) -> BoxFuture<'a, Snapshot> {
        Box::pin(self.inner.build(input))
    }

    fn spec_options(&self) -> SpecOptions {
        self.inner.spec_opts.clone()
    }

    fn invalidate(&self, doc: &DocRef) {
        AwsSource::invalidate(self, doc)
    }
}

/// A document cache: at most `cap` entries, each for `ttl`; invalidation closures, so that a
/// change event drops exactly the entries it touches.
pub(super) fn cache<K, V>(cap: u64, ttl: Duration) -> Cache<K, V>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    Cache::builder()
        .max_capacity(cap)
        .time_to_live(ttl)
        .support_invalidation_closures()
        .build()
}
