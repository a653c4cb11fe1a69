//! One release at a time per app and environment: a `coordination.k8s.io` Lease as the lock.
//!
//! The holder renews the lease while it works; a holder that crashed stops renewing, its lease
//! expires after `LEASE_DURATION`, and the next run takes it over. So no lock blocks forever
//! (Helm's "another operation is in progress" needs a hand-made fix; this one does not).

use std::time::Duration;

use anyhow::{Context, Result};
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};

use crate::exit::{ExitCode, Failure};
use crate::names;

/// How long a lease stays valid without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(30);

/// A held lock; renewed in the background until [`Lock::release`] (or drop, which only stops
/// renewing: the lease then expires by itself).
pub struct Lock {
    api: Api<Lease>,
    name: String,
    holder: String,
    renewer: tokio::task::JoinHandle<()>,
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// Who holds a lock, in words: user, host and process.
pub fn holder_identity(user: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown-host".into());
    format!("{user} on {host} (pid {})", std::process::id())
}

impl Lock {
    /// Takes the lock of `app` in `env`, or fails with exit 7 naming the holder and its age.
    pub async fn acquire(
        client: &kube::Client,
        namespace: &str,
        app: &str,
        env: &str,
        holder: &str,
    ) -> Result<Lock> {
        let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
        let name = names::lock_name(app, env);
        let now = Timestamp::now();
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(
                    [(
                        names::LABEL_MANAGED_BY.to_string(),
                        names::MANAGER.to_string(),
                    )]
                    .into(),
                ),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.to_string()),
                lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                ..Default::default()
            }),
        };
        match api.create(&PostParams::default(), &lease).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let existing = api
                    .get(&name)
                    .await
                    .context("cannot read the release lock")?;
                let spec = existing.spec.clone().unwrap_or_default();
                let other = spec
                    .holder_identity
                    .clone()
                    .unwrap_or_else(|| "someone".into());
                let renewed = spec
                    .renew_time
                    .as_ref()
                    .or(spec.acquire_time.as_ref())
                    .map(|t| t.0);
                let ttl = spec
                    .lease_duration_seconds
                    .unwrap_or(LEASE_DURATION.as_secs() as i32);
                let expired =
                    renewed.is_none_or(|t| now.duration_since(t).as_secs() > i64::from(ttl));
                if !expired {
                    let age = spec
                        .acquire_time
                        .map(|t| format!("{}s", now.duration_since(t.0).as_secs()))
                        .unwrap_or_else(|| "unknown time".into());
                    return Err(Failure::new(
                        ExitCode::Locked,
                        format!(
                            "another release of {app} to {env} is in progress: locked by {other} for {age} \
                             (Lease {namespace}/{name}); wait for it to finish, or, if that run died, \
                             for the lock to expire {ttl}s after its last renewal"
                        ),
                    )
                    .into());
                }
                tracing::warn!(%other, "taking over an expired release lock");
                let mut takeover = lease.clone();
                takeover.metadata.resource_version = existing.metadata.resource_version.clone();
                let transitions = spec.lease_transitions.unwrap_or(0) + 1;
                takeover.spec.as_mut().unwrap().lease_transitions = Some(transitions);
                api.replace(&name, &PostParams::default(), &takeover).await.map_err(|e| {
                    // Someone else took it over first: they hold it now.
                    anyhow::Error::new(Failure::new(
                        ExitCode::Locked,
                        format!("another release of {app} to {env} took over the expired lock first ({e})"),
                    ))
                })?;
            }
            Err(e) => {
                return Err(e).context(format!("cannot take the release lock {namespace}/{name}"));
            }
        }
        let renewer = tokio::spawn(renew_forever(api.clone(), name.clone()));
        Ok(Lock {
            api,
            name,
            holder: holder.to_string(),
            renewer,
        })
    }

    /// Stops renewing and deletes the lease if we still hold it.
    pub async fn release(self) {
        self.renewer.abort();
        match self.api.get(&self.name).await {
            Ok(lease)
                if lease
                    .spec
                    .as_ref()
                    .and_then(|s| s.holder_identity.as_deref())
                    == Some(self.holder.as_str()) =>
            {
                if let Err(e) = self.api.delete(&self.name, &DeleteParams::default()).await {
                    tracing::warn!(lock = %self.name, "cannot delete the release lock; it expires by itself: {e}");
                }
            }
            _ => {}
        }
    }
}

async fn renew_forever(api: Api<Lease>, name: String) {
    let mut tick = tokio::time::interval(LEASE_DURATION / 3);
    tick.tick().await;
    loop {
        tick.tick().await;
        let patch = serde_json::json!({"spec": {"renewTime": MicroTime(Timestamp::now())}});
        if let Err(e) = api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(lock = %name, "cannot renew the release lock: {e}");
        }
    }
}
