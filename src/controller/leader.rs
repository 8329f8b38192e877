//! Leader election with a `coordination.k8s.io/v1` Lease, so that of several replicas only one
//! writes status. Every replica keeps serving the webhook and stays ready.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;

pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_duration: Duration,
}

impl LeaderElection {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        LeaderElection {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
        }
    }

    /// Tries to acquire or renew the lease once. Returns whether this replica leads.
    pub async fn try_acquire(&self) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let secs = self.lease_duration.as_secs() as i32;
        match self.api.get_opt(&self.name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(secs),
                        acquire_time: Some(now.clone()),
                        renew_time: Some(now),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Some(mut lease) => {
                let spec = lease.spec.clone().unwrap_or_default();
                let holder = spec.holder_identity.clone().unwrap_or_default();
                let expired = spec.renew_time.as_ref().is_none_or(|t| {
                    let dur = spec.lease_duration_seconds.unwrap_or(secs).max(1) as i64;
                    now.0.duration_since(t.0).as_secs() > dur
                });
                if holder != self.identity && !holder.is_empty() && !expired {
                    return Ok(false);
                }
                let transitions =
                    spec.lease_transitions.unwrap_or(0) + i32::from(holder != self.identity);
                lease.spec = Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: if holder == self.identity {
                        spec.acquire_time
                    } else {
                        Some(now.clone())
                    },
                    renew_time: Some(now),
                    lease_transitions: Some(transitions),
                    ..spec
                });
                // The resourceVersion in `lease` makes this a compare-and-swap.
                match self
                    .api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Keeps trying and renewing; publishes whether this replica leads.
    pub async fn run(self, leading: watch::Sender<bool>) {
        let renew = self.lease_duration / 3;
        loop {
            let lead = match self.try_acquire().await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "leader election failed; not leading");
                    false
                }
            };
            leading.send_if_modified(|v| {
                let changed = *v != lead;
                *v = lead;
                changed
            });
            tokio::time::sleep(renew).await;
        }
    }
}
