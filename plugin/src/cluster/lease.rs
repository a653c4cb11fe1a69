//! One release at a time per app and environment: a `coordination.k8s.io` Lease as the lock.
//!
//! The holder renews the lease while it works; a holder that crashed stops renewing, its lease
//! expires after `LEASE_DURATION_SECS` (see `domain::lock`), and the next run takes it over. So
//! no lock blocks forever (Helm's "another operation is in progress" needs a hand-made fix;
//! this one does not). A holder that cannot renew for longer than that knows it may have lost
//! the lock ([`Lock::lost`]) and must stop changing the cluster.

use std::time::Duration;

use anyhow::{Context, Result};
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use tokio_util::sync::CancellationToken;

use crate::domain::lock::{LEASE_DURATION_SECS, LeaseView, LockState, lock_state};
use crate::domain::{Failure, Outcome, names};

/// A held lock; renewed in the background until [`Lock::release`] (or drop, which only stops
/// renewing: the lease then expires by itself).
pub struct Lock {
    api: Api<Lease>,
    name: String,
    holder: String,
    lost: CancellationToken,
    /// The lease's resourceVersion as we last wrote it: releasing deletes exactly that version,
    /// so a lease someone else took over meanwhile is left alone, in one request.
    version: std::sync::Arc<std::sync::Mutex<Option<String>>>,
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

/// The lease as plain data.
pub fn view(lease: &Lease) -> LeaseView {
    let spec = lease.spec.clone().unwrap_or_default();
    LeaseView {
        holder: spec.holder_identity,
        acquired: spec.acquire_time.map(|t| t.0),
        renewed: spec.renew_time.map(|t| t.0),
        duration_secs: spec.lease_duration_seconds,
    }
}

/// Where the lock of `app` in `env` stands now (for `status` and `history`).
pub async fn state(
    client: &kube::Client,
    namespace: &str,
    app: &str,
    env: &str,
) -> Result<LockState> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let lease = api
        .get_opt(&names::lock_name(app, env))
        .await
        .context("cannot read the release lock")?;
    Ok(lock_state(
        lease.as_ref().map(view).as_ref(),
        Timestamp::now(),
    ))
}

impl Lock {
    /// Takes the lock of `app` in `env`, or fails as `Locked` naming the holder and its age.
    pub async fn acquire(
        client: &kube::Client,
        namespace: &str,
        app: &str,
        env: &str,
        holder: &str,
    ) -> Result<Lock> {
        let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
        let name = names::lock_name(app, env);
        let lease = fresh_lease(&name, holder);
        let written = match api.create(&PostParams::default(), &lease).await {
            Ok(created) => created,
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let existing = api
                    .get(&name)
                    .await
                    .context("cannot read the release lock")?;
                take_over(&api, &existing, lease, (namespace, app, env)).await?
            }
            Err(e) => {
                return Err(e).context(format!("cannot take the release lock {namespace}/{name}"));
            }
        };
        let lost = CancellationToken::new();
        let version = std::sync::Arc::new(std::sync::Mutex::new(written.metadata.resource_version));
        let renewer = tokio::spawn(renew_forever(
            api.clone(),
            name.clone(),
            lost.clone(),
            version.clone(),
        ));
        Ok(Lock {
            api,
            name,
            holder: holder.to_string(),
            lost,
            version,
            renewer,
        })
    }

    /// True once renewals have failed for longer than the lease lasts.
    pub fn lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    /// Cancelled when the lock is lost.
    pub fn lost_signal(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// Stops renewing and deletes the lease if we still hold it.
    pub async fn release(self) {
        self.renewer.abort();
        let version = self
            .version
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(version) = version {
            let params = DeleteParams {
                preconditions: Some(kube::api::Preconditions {
                    resource_version: Some(version),
                    uid: None,
                }),
                ..Default::default()
            };
            match self.api.delete(&self.name, &params).await {
                Ok(_) => return,
                // Someone took it over (409), or it is gone (404): not ours to delete.
                Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => return,
                Err(e) => {
                    tracing::debug!(lock = %self.name, "deleting the lock by version failed, checking its holder: {e}")
                }
            }
        }
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

fn fresh_lease(name: &str, holder: &str) -> Lease {
    let now = Timestamp::now();
    Lease {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
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
            lease_duration_seconds: Some(LEASE_DURATION_SECS as i32),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        }),
    }
}

/// Replaces an expired lease with ours (returning it as written); a live one is a `Locked`
/// failure.
async fn take_over(
    api: &Api<Lease>,
    existing: &Lease,
    mut ours: Lease,
    (namespace, app, env): (&str, &str, &str),
) -> Result<Lease> {
    let name = names::lock_name(app, env);
    match lock_state(Some(&view(existing)), Timestamp::now()) {
        LockState::Held { holder, age_secs } => Err(Failure::new(
            Outcome::Locked,
            format!(
                "another release of {app} to {env} is in progress: locked by {holder} for {age_secs}s \
                 (Lease {namespace}/{name}); wait for it to finish, or, if that run died, \
                 for the lock to expire {LEASE_DURATION_SECS}s after its last renewal"
            ),
        )
        .into()),
        LockState::Expired { holder } => {
            tracing::warn!(%holder, "taking over an expired release lock");
            ours.metadata.resource_version = existing.metadata.resource_version.clone();
            let transitions = existing
                .spec
                .as_ref()
                .and_then(|s| s.lease_transitions)
                .unwrap_or(0)
                .saturating_add(1);
            if let Some(spec) = ours.spec.as_mut() {
                spec.lease_transitions = Some(transitions);
            }
            let written = api.replace(&name, &PostParams::default(), &ours)
                .await
                .map_err(|e| {
                    // Someone else took it over first: they hold it now.
                    anyhow::Error::new(Failure::new(
                        Outcome::Locked,
                        format!("another release of {app} to {env} took over the expired lock first ({e})"),
                    ))
                })?;
            Ok(written)
        }
        // Gone between our create and our read: take it the ordinary way.
        LockState::Free => Ok(api.create(&PostParams::default(), &ours).await?),
    }
}

/// Renews every third of the lease's duration; marks the lock lost once no renewal has
/// succeeded for two thirds of it.
async fn renew_forever(
    api: Api<Lease>,
    name: String,
    lost: CancellationToken,
    version: std::sync::Arc<std::sync::Mutex<Option<String>>>,
) {
    let duration = Duration::from_secs(LEASE_DURATION_SECS as u64);
    let mut tick = tokio::time::interval(duration / 3);
    tick.tick().await;
    let mut last_renewal = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        let patch = serde_json::json!({"spec": {"renewTime": MicroTime(Timestamp::now())}});
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(renewed) => {
                last_renewal = tokio::time::Instant::now();
                *version
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    renewed.metadata.resource_version;
            }
            Err(e) => {
                tracing::warn!(lock = %name, "cannot renew the release lock: {e}");
                // Stop a third of a lease early: by the time another run sees the lease
                // expired, this one has stopped changing the cluster.
                if last_renewal.elapsed() >= duration * 2 / 3 {
                    lost.cancel();
                }
            }
        }
    }
}
