//! Leader election with a `coordination.k8s.io/v1` Lease, so that of several replicas only one
//! writes status. Every replica keeps serving the webhook and stays ready.

use std::time::{Duration, Instant};

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

    /// Keeps trying and renewing; publishes whether this replica leads. A leader whose
    /// renewal fails (the API server restarting, a timeout) keeps leading until the renew
    /// deadline (two thirds of the lease) has passed since its last successful renewal, retrying
    /// meanwhile, and steps down before the lease can expire and another replica take it (as
    /// client-go's leader election does). A single failed call no longer stops the controller.
    pub async fn run(self, leading: watch::Sender<bool>) {
        let renew = self.lease_duration / 3;
        let mut state = Renewal::new(self.lease_duration * 2 / 3);
        loop {
            let started = Instant::now();
            let result = match tokio::time::timeout(renew, self.try_acquire()).await {
                Ok(Ok(l)) => Some(l),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "leader election: the lease could not be read or renewed");
                    None
                }
                Err(_) => {
                    tracing::warn!(timeout = ?renew, "leader election: renewing the lease timed out");
                    None
                }
            };
            let lead = state.after(started, result, Instant::now());
            if result.is_none() {
                tracing::warn!(
                    leading = lead,
                    "leader election failed; {}",
                    if lead {
                        "still leading until the renew deadline"
                    } else {
                        "not leading"
                    }
                );
            }
            leading.send_if_modified(|v| {
                let changed = *v != lead;
                *v = lead;
                changed
            });
            // After a failure, retry sooner: the deadline is near.
            tokio::time::sleep(if result.is_none() { renew / 3 } else { renew }).await;
        }
    }
}

/// Whether this replica leads, from its attempts to acquire or renew the lease.
#[derive(Debug)]
pub struct Renewal {
    deadline: Duration,
    /// When the last successful renewal started (the lease's renewTime is no earlier).
    renewed: Option<Instant>,
}

impl Renewal {
    /// `deadline`: how long after its last renewal a leader that cannot renew keeps leading
    /// (shorter than the lease, so that it has stopped before anyone else can start).
    pub fn new(deadline: Duration) -> Self {
        Renewal {
            deadline,
            renewed: None,
        }
    }

    /// After an attempt that started at `started`: `Some(true)` acquired or renewed,
    /// `Some(false)` someone else holds the lease, `None` the attempt failed.
    pub fn after(&mut self, started: Instant, result: Option<bool>, now: Instant) -> bool {
        match result {
            Some(true) => {
                self.renewed = Some(started);
                true
            }
            Some(false) => {
                self.renewed = None;
                false
            }
            None => {
                let keep = self
                    .renewed
                    .is_some_and(|t| now.saturating_duration_since(t) < self.deadline);
                if !keep {
                    self.renewed = None;
                }
                keep
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_rides_out_failed_renewals_until_the_deadline() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut r = Renewal::new(s(10));
        // Never led: a failure does not make a leader.
        assert!(!r.after(t0, None, t0 + s(1)));
        assert!(r.after(t0 + s(1), Some(true), t0 + s(1)));
        // The API server goes away: still leading 2 s and 9 s after the last renewal.
        assert!(r.after(t0 + s(3), None, t0 + s(3)));
        assert!(r.after(t0 + s(8), None, t0 + s(10)));
        // 10 s after it (the lease lasts 15): steps down, and stays down on the next failure.
        assert!(!r.after(t0 + s(10), None, t0 + s(11) + Duration::from_millis(1)));
        assert!(!r.after(t0 + s(11), None, t0 + s(11)));
        // Renewed again: leads; another holder: does not, even if a failure follows.
        assert!(r.after(t0 + s(12), Some(true), t0 + s(12)));
        assert!(!r.after(t0 + s(13), Some(false), t0 + s(13)));
        assert!(!r.after(t0 + s(14), None, t0 + s(14)));
    }
}
