//! `diagnose`: read a snapshot, print the verdict (text or JSON), exit 0 allowed, 2 denied,
//! 3 indeterminate, 1 bad input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::aws::{AwsSource, SnapshotInput, SnapshotSource};
use crate::config::Config;
use crate::diagnosis::check::{AUDIENCE_ANNOTATION, ROLE_ARN_ANNOTATION};
use crate::diagnosis::report::render_text;
use crate::diagnosis::snapshot::ServiceAccountEvidence;
use crate::diagnosis::{AccessMode, BindingSpec, Snapshot, diagnose_with};
use crate::ids::RoleArn;
use crate::metrics::Metrics;

/// Fetch the snapshot from AWS instead of reading a file.
#[derive(Debug, Clone, clap::Args)]
pub struct LiveArgs {
    /// Read the evidence from AWS (default credential chain, AWS_REGION, AWS_ENDPOINT_URL).
    #[arg(long, requires = "queue", conflicts_with = "snapshot")]
    pub live: bool,
    /// The workload's IRSA role (what its service account's eks.amazonaws.com/role-arn says).
    #[arg(long, value_name = "ARN")]
    pub role_arn: Option<String>,
    /// The EKS cluster: its Pod Identity association for --namespace/--service-account is read
    /// and, when there is one, takes precedence over --role-arn (as in EKS).
    #[arg(long, value_name = "NAME", requires = "service_account")]
    pub cluster_name: Option<String>,
    /// The queue: ARN or URL.
    #[arg(long, value_name = "ARN|URL")]
    pub queue: Option<String>,
    /// Access modes, comma-separated: send, receive, get-attributes.
    #[arg(long, value_delimiter = ',', value_parser = parse_access, default_value = "send")]
    pub access: Vec<AccessMode>,
    /// Further SQS actions, comma-separated (e.g. sqs:GetQueueUrl).
    #[arg(long, value_delimiter = ',')]
    pub actions: Vec<String>,
    /// The workload's namespace (for the trust policy's sub claim).
    #[arg(long, requires = "service_account")]
    pub namespace: Option<String>,
    /// The workload's service account (for the trust policy's sub claim).
    #[arg(long, requires = "namespace")]
    pub service_account: Option<String>,
    /// The cluster's OIDC issuer URL; without it the trust policy is not checked.
    #[arg(long, value_name = "URL")]
    pub oidc_issuer: Option<String>,
    /// The token audience, when not sts.amazonaws.com.
    #[arg(long)]
    pub audience: Option<String>,
    /// The VPC endpoint the workload uses.
    #[arg(long, value_name = "VPCE_ID")]
    pub vpc_endpoint_id: Option<String>,
    /// Also read the service account (its annotations) and its pods from the cluster KUBECONFIG
    /// (or the in-cluster configuration) points at: the report then says whether the pods run
    /// with the checked role. Needs --namespace and --service-account.
    #[arg(long, requires = "service_account")]
    pub from_cluster: bool,
    /// Operator configuration (reader roles, organization and endpoint policies).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Write the fetched snapshot to this file (YAML).
    #[arg(long, value_name = "FILE")]
    pub dump_snapshot: Option<PathBuf>,
}

fn parse_access(s: &str) -> Result<AccessMode, String> {
    match s
        .trim()
        .to_ascii_lowercase()
        .replace(['-', '_'], "")
        .as_str()
    {
        "send" => Ok(AccessMode::Send),
        "receive" => Ok(AccessMode::Receive),
        "getattributes" => Ok(AccessMode::GetAttributes),
        _ => Err(format!(
            "\"{s}\" is not an access mode (send, receive, get-attributes)"
        )),
    }
}

/// The example diagnosed when no snapshot is given.
pub const EMBEDDED_EXAMPLE_NAME: &str = "examples/snapshots/healthy.yaml";
const EMBEDDED_EXAMPLE: &str = include_str!("../../examples/snapshots/healthy.yaml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

pub fn run(snapshot: Option<&Path>, output: Output, live: &LiveArgs) -> ExitCode {
    let (name, snap, opts) = if live.live {
        match fetch_live(live) {
            Ok((snap, opts)) => ("AWS".to_string(), snap, opts),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        let (name, text) = match snapshot {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(t) => (p.display().to_string(), t),
                Err(e) => {
                    eprintln!("error: {}: {e}", p.display());
                    return ExitCode::from(1);
                }
            },
            None => {
                eprintln!(
                    "(no snapshot given: diagnosing the embedded example {EMBEDDED_EXAMPLE_NAME})"
                );
                (
                    EMBEDDED_EXAMPLE_NAME.to_string(),
                    EMBEDDED_EXAMPLE.to_string(),
                )
            }
        };
        match Snapshot::from_yaml_str(&text) {
            Ok(s) => (name, s, Default::default()),
            Err(e) => {
                eprintln!("error: {name}: {e}");
                return ExitCode::from(1);
            }
        }
    };
    let _ = name;
    let verdict = diagnose_with(&snap, &opts);
    match output {
        Output::Json => match serde_json::to_string_pretty(&verdict) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        },
        Output::Text => {
            let subject = format!(
                "{}/{} -> {}",
                snap.binding.namespace,
                snap.binding.spec.service_account_name,
                snap.binding.spec.queue
            );
            print!("{}", render_text(&verdict, &subject));
        }
    }
    ExitCode::from(verdict.exit_code())
}

/// Reads the service account and its pods from the cluster, the way the operator sees them.
async fn read_cluster(input: &mut SnapshotInput, keep_role_arn: bool) -> Result<(), String> {
    use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
    use kube::api::ListParams;
    let client = kube::Client::try_default().await.map_err(|e| {
        format!("--from-cluster: cannot reach Kubernetes (KUBECONFIG or in-cluster config): {e}")
    })?;
    let ns = input.namespace.clone();
    let name = input.spec.service_account_name.clone();
    let sa = kube::Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .get_opt(&name)
        .await
        .map_err(|e| format!("--from-cluster: reading serviceaccount {ns}/{name}: {e}"))?;
    let given = input
        .service_account
        .take()
        .unwrap_or(ServiceAccountEvidence {
            found: true,
            annotations: Default::default(),
        });
    input.service_account = Some(match sa {
        None => ServiceAccountEvidence {
            found: false,
            annotations: Default::default(),
        },
        Some(sa) => {
            let mut annotations = sa.metadata.annotations.unwrap_or_default();
            // --role-arn and --audience say what to check, over what the cluster has.
            if keep_role_arn {
                annotations.extend(given.annotations);
            }
            ServiceAccountEvidence {
                found: true,
                annotations,
            }
        }
    });
    let pods = kube::Api::<Pod>::namespaced(client.clone(), &ns)
        .list(&ListParams::default().fields(&format!("spec.serviceAccountName={name}")))
        .await
        .map_err(|e| format!("--from-cluster: listing the pods of {ns}/{name}: {e}"))?;
    input.pods = Some(
        pods.items
            .iter()
            .map(crate::controller::pods::pod_facts)
            .collect(),
    );
    if input.oidc_issuer.is_none() {
        input.oidc_issuer = crate::cli::run::discover_issuer(&client).await.ok();
    }
    Ok(())
}

/// Fetches a snapshot from AWS for the CLI's `--live` mode.
fn fetch_live(a: &LiveArgs) -> Result<(Snapshot, crate::diagnosis::SpecOptions), String> {
    let cfg = match &a.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if a.role_arn.is_none()
        && a.cluster_name.is_none()
        && cfg.cluster.name.is_none()
        && !a.from_cluster
    {
        return Err("--live needs the workload's role: --role-arn ARN (IRSA), or --cluster-name NAME with --namespace and --service-account (EKS Pod Identity)".into());
    }
    let (namespace, sa) = match (&a.namespace, &a.service_account) {
        (Some(n), Some(s)) => (n.clone(), s.clone()),
        _ => ("default".to_string(), "workload".to_string()),
    };
    let mut annotations = BTreeMap::new();
    if let Some(role_arn) = &a.role_arn {
        RoleArn::parse(role_arn).map_err(|e| format!("--role-arn: {e}"))?;
        annotations.insert(ROLE_ARN_ANNOTATION.to_string(), role_arn.clone());
    }
    if let Some(aud) = &a.audience {
        annotations.insert(AUDIENCE_ANNOTATION.to_string(), aud.clone());
    }
    let input = SnapshotInput {
        namespace,
        binding_name: None,
        spec: BindingSpec {
            service_account_name: sa,
            queue: a.queue.clone().unwrap_or_default(),
            access: a.access.clone(),
            actions: a.actions.clone(),
            vpc_endpoint_id: a.vpc_endpoint_id.clone(),
        },
        service_account: Some(ServiceAccountEvidence {
            found: true,
            annotations,
        }),
        oidc_issuer: a.oidc_issuer.clone().or(cfg.oidc_issuer.clone()),
        cluster_name: a.cluster_name.clone(),
        pods: None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let mut input = input;
    if a.from_cluster {
        rt.block_on(read_cluster(&mut input, a.role_arn.is_some()))?;
    }
    let (snap, opts) = rt.block_on(async {
        let source = AwsSource::from_env(cfg, Metrics::default()).await;
        let opts = source.spec_options();
        (source.snapshot(&input).await, opts)
    });
    if let Some(p) = &a.dump_snapshot {
        std::fs::write(p, snap.to_yaml())
            .map_err(|e| format!("--dump-snapshot {}: {e}", p.display()))?;
    }
    Ok((snap, opts))
}
