//! The one gateway to the API server: every read, write and watch the plugin makes goes through
//! this module, and every watch uses kube-runtime's backoff.
//!
//! - `clients`: one client per kubeconfig context and process; [`EnvTarget`] is an environment
//!   resolved to a context, a server and a namespace;
//! - [`EnvGateway`]: what a release needs of its target environment — lock, records, the app's
//!   workloads and pods, patches and watches — as one trait, so the release engine's state
//!   machine is tested over a fake ([`KubeEnv`] is the real one);
//! - `workloads`, `rollout`, `records`, `lease`: the parts [`KubeEnv`] is made of;
//! - `approvals`, `policy`, `identity`: what other verbs read and write.

pub mod approvals;
pub mod cache;
pub mod clients;
pub mod env;
pub mod export;
pub mod identity;
pub mod jobs;
pub mod lease;
pub mod objects;
pub mod policy;
pub mod previews;
pub mod records;
pub mod resumed_watch;
pub mod rollout;
pub mod workloads;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::Pod;

pub use clients::{Clients, EnvTarget, KubeSettings};
pub use env::KubeEnv;
pub use rollout::{Stamp, WaitFailure};
pub use workloads::ServerApis;

use crate::domain::job::PhaseJob;
use crate::domain::manifest::{Manifest, ObjectRef, Scope};
use crate::domain::{ContainerChange, Release, Workload, WorkloadRef};
use crate::progress::Progress;

/// What a release reads of its target environment, once: the app's workloads and, when their
/// status cannot settle which digests run (`domain::running`), the pods of the namespace, whose
/// `imageID`s tell it; otherwise `pods` is empty.
#[derive(Debug, Clone, Default)]
pub struct EnvSnapshot {
    pub workloads: Vec<Workload>,
    pub pods: Vec<Pod>,
}

/// Everything a release does to its target environment.
///
/// Errors are `anyhow` errors carrying what was being done; a [`crate::domain::Failure`] in
/// the chain (a held lock, a refused patch) names the outcome.
#[allow(async_fn_in_trait)]
pub trait EnvGateway {
    /// Takes the release lock for `holder` and keeps it renewed until [`EnvGateway::unlock`];
    /// a lock held by a live run is a `Locked` failure naming its holder.
    async fn lock(&self, holder: &str) -> Result<()>;
    /// Gives the lock up (if still ours).
    async fn unlock(&self);
    /// Whether the lock is still ours: false once a renewal failed for longer than the lease
    /// lasts, when another run may have taken it over.
    fn lock_lost(&self) -> bool;
    /// The app's workloads and the namespace's pods.
    async fn snapshot(&self) -> Result<EnvSnapshot>;
    /// The app's records in this environment, newest first (unreadable ones skipped with a
    /// warning naming them).
    async fn history(&self) -> Result<Vec<Release>>;
    /// Writes a new record (its revision must be free).
    async fn create_record(&self, record: &Release) -> Result<()>;
    /// Overwrites an existing record.
    async fn update_record(&self, record: &Release) -> Result<()>;
    /// Deletes the records of `revisions` (newest first, as the release knows them) beyond the
    /// newest `keep`: no second listing.
    async fn prune_records(&self, revisions: &[u64], keep: usize);
    /// Sets `changes`' images on one workload, stamped with the release's annotations; with
    /// `check_version` a workload changed by someone else since it was read is a conflict.
    async fn patch(
        &self,
        workload: &Workload,
        changes: &[&ContainerChange],
        stamp: &Stamp,
        check_version: bool,
    ) -> Result<Workload>;
    /// Waits until every workload has rolled out to `images`, one fails, or `timeout` passes;
    /// returns notes on workloads that are complete without their pods changing (`OnDelete`).
    async fn wait(
        &self,
        workloads: &[Workload],
        images: &BTreeMap<WorkloadRef, Vec<String>>,
        timeout: Duration,
        progress: &Progress,
    ) -> Result<Vec<String>, WaitFailure>;
    /// Completes once the lock is lost ([`EnvGateway::lock_lost`] turns true); never before.
    async fn lock_lost_wait(&self);

    // The app's manifests (an environment with `manifests`): see `objects`.

    /// Whether `kind` of `api_version` lives in a namespace; `None` when the server does not
    /// serve it.
    async fn served_scope(&self, api_version: &str, kind: &str) -> Result<Option<Scope>>;
    /// The live object, or `None`.
    async fn live_object(&self, id: &ObjectRef) -> Result<Option<serde_json::Value>>;
    /// Server-side applies one object (a dry run changes nothing); `force` takes over fields
    /// another field manager owns. A refusal is an `invalid` failure naming the object.
    async fn apply_object(
        &self,
        object: &Manifest,
        dry_run: bool,
        force: bool,
    ) -> Result<serde_json::Value>;
    /// Deletes one object (one already gone is fine).
    async fn delete_object(&self, id: &ObjectRef) -> Result<()>;
    /// The id every member of the app's ApplySet is labelled with.
    fn applyset_id(&self) -> String;
    /// The group-kinds the app's ApplySet parent names (empty when there is none yet).
    async fn applyset_kinds(&self) -> Result<Vec<String>>;
    /// The members of the app's ApplySet among `group_kinds`.
    async fn applyset_members(&self, group_kinds: &[String]) -> Result<Vec<ObjectRef>>;
    /// Writes the ApplySet parent naming `group_kinds`.
    async fn write_applyset(&self, group_kinds: &[String]) -> Result<()>;
    /// Creates the environment's namespace when it does not exist; true when it was created.
    async fn ensure_namespace(&self) -> Result<bool>;
    /// Deletes the namespace [`EnvGateway::ensure_namespace`] created, for a release that
    /// ended without changing anything.
    async fn delete_namespace(&self) -> Result<()>;

    /// Creates one of the release's Jobs and follows it to its end, its pods' logs streamed
    /// to stderr: see `jobs`.
    async fn run_job(&self, job: &PhaseJob, progress: &Progress) -> Result<jobs::JobEnd>;
    /// Deletes the app's Jobs of revisions older than `oldest_kept` (their records are gone).
    async fn prune_jobs(&self, oldest_kept: u64);
}
