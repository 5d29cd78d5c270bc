//! Leader election on a `coordination.k8s.io/v1` Lease, so two operator replicas are safe: only
//! the holder runs the controller; the other waits and takes over once the Lease expires.
//!
//! The holder renews every `renew_every`; a replica that cannot renew for `lease_duration` stops
//! (the process exits and restarts as a candidate), so two replicas never act at once for longer
//! than clock skew. Updates use the Lease's resourceVersion, so two candidates racing for an
//! expired Lease cannot both win: the loser gets 409 Conflict.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ObjectMeta, PostParams};
use std::time::Duration;

/// Default name of the Lease (`--leader-election-lease-name`).
pub const LEASE_NAME: &str = "mapcache-operator";

/// One candidate for the Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    /// Name of the Lease: installs that share a namespace (one per watched namespace) need
    /// distinct ones, or only one of them would ever run.
    lease_name: String,
    identity: String,
    /// How long a Lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How often the holder renews (and a candidate retries).
    pub renew_every: Duration,
}

impl LeaderElector {
    pub fn new(client: kube::Client, namespace: &str, lease_name: &str, identity: String) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            lease_name: lease_name.to_string(),
            identity,
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        }
    }

    /// Takes the Lease if it is free, expired or already ours (renewing it). Returns whether we
    /// hold it now. A lost race (409 Conflict) is `Ok(false)`.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let existing = self.api.get_opt(&self.lease_name).await?;
        let desired = match existing {
            None => Lease {
                metadata: ObjectMeta {
                    name: Some(self.lease_name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.fresh_spec(now, 0)),
            },
            Some(mut lease) => {
                let spec = lease.spec.clone().unwrap_or_default();
                match decide(&spec, &self.identity, now) {
                    Decision::Renew => {
                        let mut renewed = spec;
                        renewed.renew_time = Some(MicroTime(now));
                        renewed.lease_duration_seconds = Some(self.lease_seconds());
                        lease.spec = Some(renewed);
                    }
                    Decision::TakeOver => {
                        let transitions = spec.lease_transitions.unwrap_or(0).saturating_add(1);
                        lease.spec = Some(self.fresh_spec(now, transitions));
                    }
                    Decision::HeldByOther => return Ok(false),
                }
                return self
                    .write(|api| async move {
                        api.replace(&self.lease_name, &PostParams::default(), &lease).await
                    })
                    .await;
            }
        };
        self.write(|api| async move { api.create(&PostParams::default(), &desired).await }).await
    }

    /// Gives the Lease up (on shutdown) so the other replica need not wait for expiry.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.lease_name).await? else { return Ok(()) };
        let Some(spec) = lease.spec.as_mut() else { return Ok(()) };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        spec.acquire_time = None;
        self.api.replace(&self.lease_name, &PostParams::default(), &lease).await?;
        Ok(())
    }

    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }

    fn fresh_spec(&self, now: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.lease_seconds()),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    async fn write<F, Fut>(&self, call: F) -> Result<bool, kube::Error>
    where
        F: FnOnce(Api<Lease>) -> Fut,
        Fut: Future<Output = Result<Lease, kube::Error>>,
    {
        match call(self.api.clone()).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }
}

/// What a candidate does with an existing Lease.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// We hold it: renew.
    Renew,
    /// Free or expired: take it.
    TakeOver,
    /// Someone else holds a live Lease: wait.
    HeldByOther,
}

/// Pure rule of the election: ours -> renew; no holder or expired (renewTime + duration <= now)
/// -> take over; else wait.
pub fn decide(spec: &LeaseSpec, identity: &str, now: Timestamp) -> Decision {
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == identity => Decision::Renew,
        None | Some("") => Decision::TakeOver,
        Some(_) => {
            let duration =
                SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
            let expired = match &spec.renew_time {
                Some(MicroTime(renewed)) => {
                    renewed.checked_add(duration).map_or(true, |expiry| expiry <= now)
                }
                None => true,
            };
            if expired { Decision::TakeOver } else { Decision::HeldByOther }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, renewed_at: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(String::from),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed_at).expect("time"))),
            ..LeaseSpec::default()
        }
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).expect("time")
    }

    #[test]
    fn own_lease_is_renewed() {
        assert_eq!(decide(&spec(Some("me"), 0), "me", at(100)), Decision::Renew);
    }

    #[test]
    fn live_lease_of_another_replica_is_respected() {
        assert_eq!(decide(&spec(Some("other"), 100), "me", at(114)), Decision::HeldByOther);
    }

    #[test]
    fn expired_or_released_lease_is_taken_over() {
        assert_eq!(decide(&spec(Some("other"), 100), "me", at(115)), Decision::TakeOver);
        assert_eq!(decide(&spec(None, 100), "me", at(101)), Decision::TakeOver);
        let never_renewed =
            LeaseSpec { holder_identity: Some("other".into()), ..LeaseSpec::default() };
        assert_eq!(decide(&never_renewed, "me", at(0)), Decision::TakeOver);
    }
}
