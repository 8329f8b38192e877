//! `run`: the operator process. Wires the controller (leader only), the webhook and the admin
//! port (every replica), the caches, and the AWS source.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client};
use prometheus_client::registry::Registry;

use crate::admin::{self, AdminState};
use crate::aws::AwsSource;
use crate::binding::{ClusterFacts, StoreLookup};
use crate::config::{Config, parse_duration};
use crate::controller::leader::LeaderElection;
use crate::controller::{self, Context};
use crate::metrics::Metrics;
use crate::webhook::{self, Enforcement, StoreModes, WebhookState};

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Operator configuration file (see config/operator.yaml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Health and metrics: /livez, /readyz, /metrics.
    #[arg(long, value_name = "HOST:PORT", default_value = "0.0.0.0:8080")]
    pub admin_addr: SocketAddr,
    /// The cluster's OIDC issuer URL (default: from the config, else discovered from the API
    /// server's /.well-known/openid-configuration).
    #[arg(long, value_name = "URL")]
    pub oidc_issuer: Option<String>,
    /// How often every binding is re-checked, e.g. 5s, 5m (default: the config's, else 5m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub recheck_interval: Option<Duration>,
    /// Serve the admission webhook (TLS) on this address.
    #[arg(long, value_name = "HOST:PORT", requires_all = ["tls_cert_file", "tls_key_file"])]
    pub webhook_addr: Option<SocketAddr>,
    /// The webhook's certificate chain (PEM); re-read when it changes.
    #[arg(long, value_name = "FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// The webhook's private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// Operator-wide default for bindings that would be denied; a namespace label
    /// sqsaccess.io/enforcement=warn|enforce overrides it.
    #[arg(long, value_enum, default_value = "enforce")]
    pub enforcement: Enforcement,
    /// Namespace of the leader-election Lease (default: $POD_NAMESPACE, else "default").
    #[arg(long)]
    pub lease_namespace: Option<String>,
    /// Name of the leader-election Lease (one per installation).
    #[arg(long, default_value = "sqs-access-operator")]
    pub lease_name: String,
    /// Do not watch pods (no WorkloadCredentials condition; the chart's RBAC then needs no pod
    /// access).
    #[arg(long)]
    pub no_watch_pods: bool,
    /// Run the controller without leader election (single replica, development).
    #[arg(long)]
    pub no_leader_election: bool,
    /// Log as JSON lines.
    #[arg(long)]
    pub log_json: bool,
}

pub fn run(args: &RunArgs) -> ExitCode {
    init_tracing(args.log_json);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(operate(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn init_tracing(json: bool) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to standard output. Colour only on a terminal (not in a pod's log or a file),
    // and never with NO_COLOR set (no-color.org).
    let colour = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .with_ansi(colour);
    let _ = if json {
        b.json().try_init()
    } else {
        b.try_init()
    };
}

/// Opens the events queue (retrying while AWS cannot be reached) and follows it.
async fn follow_events(ctx: Arc<Context>, source: Arc<AwsSource>) {
    let mut wait = Duration::from_secs(1);
    loop {
        match source.events_queue().await {
            Ok(Some(q)) => {
                tracing::info!("following AWS change events");
                return controller::events::follow(ctx, q).await;
            }
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?wait, "cannot open the events queue");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(60));
            }
        }
    }
}

/// Reads the issuer from the API server's OIDC discovery document.
pub async fn discover_issuer(client: &Client) -> Result<String, String> {
    let req = http::Request::get("/.well-known/openid-configuration")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let text = client.request_text(req).await.map_err(|e| e.to_string())?;
    let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    doc["issuer"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "the discovery document has no issuer".into())
}

async fn operate(args: &RunArgs) -> Result<(), String> {
    let cfg = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let client = Client::try_default()
        .await
        .map_err(|e| format!("cannot reach Kubernetes (KUBECONFIG or in-cluster config): {e}"))?;
    let metrics = Metrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);

    let source = Arc::new(AwsSource::from_env(cfg.clone(), metrics.clone()).await);
    // The issuer: given, else eks:DescribeCluster (with cluster.name), else discovered from the
    // API server.
    let described = match args.oidc_issuer.clone().or(cfg.oidc_issuer.clone()) {
        Some(i) => Some(i),
        None => match source.cluster_issuer().await {
            Ok(Some(i)) => {
                tracing::info!(issuer = %i, "read the cluster's OIDC issuer with eks:DescribeCluster");
                Some(i)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "eks:DescribeCluster failed: discovering the OIDC issuer through the API server");
                None
            }
        },
    };
    let issuer = match described {
        Some(i) => Some(i),
        None => match discover_issuer(&client).await {
            Ok(i) => {
                tracing::info!(issuer = %i, "discovered the cluster's OIDC issuer");
                Some(i)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot discover the OIDC issuer: trust policies will not be checked (set --oidc-issuer)");
                None
            }
        },
    };
    // With change events the periodic re-check is only the safety net for late or lost events.
    let events_on = cfg.events.queue_url.is_some();
    let recheck = args
        .recheck_interval
        .or(cfg.recheck_interval)
        .unwrap_or(Duration::from_secs(if events_on { 1800 } else { 300 }));
    // A mistyped events queue is a configuration error, not something to retry.
    if let Some(u) = &cfg.events.queue_url {
        let opts = crate::aws::SnapshotSource::spec_options(source.as_ref());
        let hint = cfg
            .events
            .region
            .as_deref()
            .and_then(|r| crate::ids::Region::parse(r).ok())
            .or(opts.region.clone());
        crate::ids::QueueRef::parse(u, &opts.extra_queue_hosts, hint.as_ref())
            .map_err(|e| format!("events.queueUrl: {e}"))?;
    }

    // Watch-fed caches: service accounts (metadata, for every check; the controller is told of
    // each change after the cache has it) and namespace labels (webhook mode).
    let controller_slot: Arc<std::sync::OnceLock<std::sync::Weak<Context>>> = Default::default();
    let slot = controller_slot.clone();
    let (sa_store, sa_watch) = controller::account_store(client.clone(), move |ns, name| {
        if let Some(ctx) = slot.get().and_then(|w| w.upgrade()) {
            ctx.account_changed(ns, name);
        }
    });
    tokio::spawn(sa_watch);
    let (ns_store, ns_writer) = reflector::store();
    let ns_stream = reflector(
        ns_writer,
        watcher(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            watcher::Config::default(),
        )
        .modify(|ns: &mut PartialObjectMeta<Namespace>| {
            // Only the enforcement label is read.
            ns.metadata.managed_fields = None;
            ns.metadata.annotations = None;
        }),
    )
    .default_backoff()
    .touched_objects();
    tokio::spawn(ns_stream.for_each(|_| async {}));

    let facts = ClusterFacts {
        service_accounts: Arc::new(StoreLookup(sa_store.clone())),
        oidc_issuer: issuer,
    };

    let admin_state = Arc::new(AdminState {
        ready: false.into(),
        registry,
    });
    let admin_listener = tokio::net::TcpListener::bind(args.admin_addr)
        .await
        .map_err(|e| format!("--admin-addr {}: {e}", args.admin_addr))?;
    let app = admin::router(admin_state.clone());
    tokio::spawn(async move {
        let _ = axum::serve(admin_listener, app).await;
    });

    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    if let Some(addr) = args.webhook_addr {
        let cert = webhook::tls::ReloadingCert::new(
            args.tls_cert_file
                .as_deref()
                .unwrap_or(std::path::Path::new("")),
            args.tls_key_file
                .as_deref()
                .unwrap_or(std::path::Path::new("")),
        )
        .map_err(|e| format!("webhook TLS: {e}"))?;
        let state = Arc::new(WebhookState::new(
            facts.clone(),
            source.clone(),
            args.enforcement,
            Arc::new(StoreModes(ns_store.clone())),
            cfg.webhook.clone(),
            metrics.clone(),
        ));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("--webhook-addr {addr}: {e}"))?;
        tokio::spawn(webhook::serve_tls(
            listener,
            webhook::router(state),
            Arc::new(cert),
            shutdown_rx.clone(),
        ));
        tracing::info!(%addr, "serving the admission webhook");
    }

    // Ready once the caches hold the cluster's state: before that a check could call an
    // existing service account missing.
    let _ = sa_store.wait_until_ready().await;
    let _ = ns_store.wait_until_ready().await;
    admin_state.ready.store(true, Ordering::Relaxed);
    tracing::info!("caches synced; ready");

    // The controller reads the same service account cache as the webhook: it is told of a
    // change only after the cache has it, so a re-check sees the new annotations.
    let ctx = Context::new(client.clone(), facts, source.clone(), metrics, recheck)
        .with_shared_accounts();
    let ctx = Arc::new(if args.no_watch_pods {
        ctx
    } else {
        ctx.with_pod_watch()
    });
    let _ = controller_slot.set(Arc::downgrade(&ctx));
    let (lead_tx, mut lead_rx) = tokio::sync::watch::channel(args.no_leader_election);
    if !args.no_leader_election {
        let ns = args
            .lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".into());
        let identity = std::env::var("POD_NAME")
            .unwrap_or_else(|_| format!("sqs-access-operator-{}", std::process::id()));
        let le = LeaderElection::new(client.clone(), &ns, &args.lease_name, &identity);
        tokio::spawn(le.run(lead_tx));
    }
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
    };
    tokio::pin!(stop);
    loop {
        // Followers wait here (still serving the webhook and ready).
        while !*lead_rx.borrow() {
            tokio::select! {
                _ = &mut stop => { let _ = shutdown_tx.send(true); return Ok(()); }
                r = lead_rx.changed() => if r.is_err() { return Ok(()) },
            }
        }
        tracing::info!("leading: starting the controller");
        let mut lost = lead_rx.clone();
        let lost_leadership = async move {
            while *lost.borrow() {
                if lost.changed().await.is_err() {
                    break;
                }
            }
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let ctl = tokio::spawn(controller::run(
            ctx.clone(),
            async move {
                let _ = stop_rx.await;
            },
            || {},
        ));
        // Only the leader consumes change events: it is the one that re-checks.
        let follower = events_on.then(|| tokio::spawn(follow_events(ctx.clone(), source.clone())));
        tokio::select! {
            _ = &mut stop => {
                if let Some(f) = &follower { f.abort(); }
                let _ = stop_tx.send(());
                let _ = ctl.await;
                let _ = shutdown_tx.send(true);
                return Ok(());
            }
            _ = lost_leadership => {
                tracing::warn!("lost leadership: stopping the controller");
                if let Some(f) = &follower { f.abort(); }
                let _ = stop_tx.send(());
                let _ = ctl.await;
            }
        }
    }
}
