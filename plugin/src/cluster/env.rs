//! [`KubeEnv`]: the [`EnvGateway`] of one environment, over its kube client.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use super::lease::Lock;
use super::objects::Objects;
use super::records::Records;
use super::rollout::{self, Stamp, WaitFailure};
use super::{EnvGateway, EnvSnapshot, EnvTarget, ServerApis, workloads};
use crate::config::ReleaseConfig;
use crate::domain::job::PhaseJob;
use crate::domain::manifest::{Manifest, ObjectRef, Scope};
use crate::domain::running;
use crate::domain::{ContainerChange, Release, Workload, WorkloadRef, WorkloadScope};
use crate::progress::Progress;

/// One app in one environment, as the release engine sees it.
pub struct KubeEnv {
    target: EnvTarget,
    apis: ServerApis,
    app: String,
    repository: String,
    scope: WorkloadScope,
    records: Records,
    objects: Objects,
    lock: Mutex<Option<Lock>>,
}

impl KubeEnv {
    /// The gateway for `config`'s app in `target`.
    pub async fn new(target: &EnvTarget, config: &ReleaseConfig) -> Result<KubeEnv> {
        let app = &config.app;
        let apis = target.server_apis().await?;
        Ok(KubeEnv {
            records: Records::new(&target.client, &target.namespace, app, &target.env.name),
            objects: Objects::new(&target.client, &target.namespace),
            target: target.clone(),
            apis,
            app: app.into(),
            repository: config.image.clone(),
            scope: config.workloads.clone(),
            lock: Mutex::new(None),
        })
    }

    pub fn target(&self) -> &EnvTarget {
        &self.target
    }

    /// The app's workloads alone (for `status`, `where` and the source of a promotion).
    pub async fn workloads(&self) -> Result<Vec<Workload>> {
        let t = &self.target;
        workloads::discover(
            &t.client,
            &self.apis,
            &t.namespace,
            &self.repository,
            &self.scope,
        )
        .await
        .with_context(|| format!("cannot list workloads in {t}"))
    }

    /// The app's objects in this environment, for what only manifests need.
    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Option<Lock>> {
        self.lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl EnvGateway for KubeEnv {
    async fn lock(&self, holder: &str) -> Result<()> {
        let t = &self.target;
        let lock = Lock::acquire(&t.client, &t.namespace, &self.app, &t.env.name, holder).await?;
        *self.held() = Some(lock);
        Ok(())
    }

    async fn unlock(&self) {
        let lock = self.held().take();
        if let Some(lock) = lock {
            lock.release().await;
        }
    }

    fn lock_lost(&self) -> bool {
        self.held().as_ref().is_some_and(Lock::lost)
    }

    async fn lock_lost_wait(&self) {
        let lost = self.held().as_ref().map(Lock::lost_signal);
        match lost {
            Some(signal) => signal.cancelled().await,
            None => std::future::pending().await,
        }
    }

    async fn snapshot(&self) -> Result<EnvSnapshot> {
        let t = &self.target;
        let workloads = self.workloads().await?;
        // The pods only when some workload's status cannot say what its pods run.
        let pods = if running::pods_needed(&workloads, &self.repository) {
            Api::<Pod>::namespaced(t.client.clone(), &t.namespace)
                .list(&ListParams::default())
                .await
                .with_context(|| format!("cannot list pods in {t}"))?
                .items
        } else {
            Vec::new()
        };
        Ok(EnvSnapshot { workloads, pods })
    }

    async fn history(&self) -> Result<Vec<Release>> {
        self.records.list().await
    }

    async fn create_record(&self, record: &Release) -> Result<()> {
        self.records.create(record).await
    }

    async fn update_record(&self, record: &Release) -> Result<()> {
        self.records.update(record).await
    }

    async fn prune_records(&self, revisions: &[u64], keep: usize) {
        self.records.prune(revisions, keep).await
    }

    async fn patch(
        &self,
        workload: &Workload,
        changes: &[&ContainerChange],
        stamp: &Stamp,
        check_version: bool,
    ) -> Result<Workload> {
        let t = &self.target;
        rollout::patch_one(
            &t.client,
            &self.apis,
            &t.namespace,
            workload,
            changes,
            stamp,
            check_version,
        )
        .await
    }

    async fn wait(
        &self,
        workloads: &[Workload],
        images: &BTreeMap<WorkloadRef, Vec<String>>,
        timeout: Duration,
        progress: &Progress,
    ) -> Result<Vec<String>, WaitFailure> {
        let t = &self.target;
        rollout::wait_all(
            &t.client,
            &self.apis,
            &t.namespace,
            workloads,
            images,
            timeout,
            progress,
        )
        .await
    }

    async fn served_scope(&self, api_version: &str, kind: &str) -> Result<Option<Scope>> {
        Ok(self
            .objects
            .served(api_version, kind)
            .await?
            .map(|s| s.scope))
    }

    async fn live_object(&self, id: &ObjectRef) -> Result<Option<serde_json::Value>> {
        self.objects.get(id).await
    }

    async fn apply_object(
        &self,
        object: &Manifest,
        dry_run: bool,
        force: bool,
    ) -> Result<serde_json::Value> {
        self.objects.apply(object, dry_run, force).await
    }

    async fn delete_object(&self, id: &ObjectRef) -> Result<()> {
        self.objects.delete(id).await
    }

    fn applyset_id(&self) -> String {
        self.objects.applyset_id(&self.app)
    }

    async fn applyset_kinds(&self) -> Result<Vec<String>> {
        self.objects.applyset_group_kinds(&self.app).await
    }

    async fn applyset_members(&self, group_kinds: &[String]) -> Result<Vec<ObjectRef>> {
        self.objects.members(&self.app, group_kinds).await
    }

    async fn write_applyset(&self, group_kinds: &[String]) -> Result<()> {
        self.objects.write_applyset(&self.app, group_kinds).await
    }

    async fn ensure_namespace(&self) -> Result<bool> {
        if self.objects.namespace_exists().await? {
            return Ok(false);
        }
        self.objects.create_namespace(&self.app).await?;
        Ok(true)
    }

    async fn delete_namespace(&self) -> Result<()> {
        self.objects.delete_namespace().await
    }

    async fn run_job(&self, job: &PhaseJob, progress: &Progress) -> Result<super::jobs::JobEnd> {
        let t = &self.target;
        super::jobs::run(&t.client, &t.namespace, job, progress).await
    }

    async fn prune_jobs(&self, oldest_kept: u64) {
        let t = &self.target;
        super::jobs::prune(&t.client, &t.namespace, &self.app, &t.env.name, oldest_kept).await;
    }
}
