//! The webhook's judgements: approvals stamped with the identity the API server authenticated,
//! and workload changes in governed namespaces judged by the cluster policy's `admission`
//! hooks — the same pinned modules, cache and sandbox the plugin runs client-side.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use anyhow::Result;
use futures::StreamExt as _;
use hooks_sdk::{HookRequest, Phase};
use kube::api::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};

use super::metrics::Metrics;
use super::server::Admit;
use crate::artifacts::oci_modules::ModuleStore;
use crate::cluster::approvals::{self, Approvals};
use crate::cluster::cache::{Judged, NamespaceLabels};
use crate::cluster::records::Records;
use crate::domain::admission::{self as decide, Requester};
use crate::domain::attestation::{self, Attested};
use crate::domain::error_text::one_line;
use crate::hooks::{LoadedHook, PhaseReport};
use crate::release::gate::{load_hook, shared_engine};
use crate::release::policy::{self, PolicyHook};

/// The policy hooks loaded for the `admission` phase, each with what selects its namespaces.
#[derive(Default)]
struct Loaded {
    hooks: Vec<(PolicyHook, LoadedHook)>,
}

/// The webhook's state: its cluster, the policy as last loaded, its metrics.
pub struct Admission {
    client: kube::Client,
    /// Approvals and records, watched: a review reads memory, not the API server.
    judged: Judged,
    /// Namespace labels, watched, for hooks that select namespaces by label.
    namespaces: NamespaceLabels,
    /// The API server's approvals and records when a denial must be confirmed, one read shared
    /// by the denials waiting at the same time.
    fresh: FreshReads,
    cluster: String,
    policy: RwLock<Arc<Loaded>>,
    ready: AtomicBool,
    metrics: Metrics,
}

impl Admission {
    /// A webhook for the cluster of `client` (`cluster` names it in messages); not ready until
    /// [`Admission::load_policy`] succeeded once.
    pub fn new(client: kube::Client, cluster: &str, metrics: Metrics) -> Arc<Admission> {
        Arc::new(Admission {
            judged: Judged::start(&client),
            namespaces: NamespaceLabels::start(&client),
            fresh: FreshReads::default(),
            client,
            cluster: cluster.into(),
            policy: RwLock::new(Arc::default()),
            ready: AtomicBool::new(false),
            metrics,
        })
    }

    /// Reads the cluster policy, fetches and verifies its modules, compiles them once (the
    /// on-disk cache makes that cheap on a restart) and swaps the new set in. A policy that
    /// fails to load leaves the previous one in force.
    pub async fn load_policy(&self) -> Result<()> {
        let origin = format!(
            "cluster {}: ConfigMap {}/{} key {}",
            self.cluster,
            policy::NAMESPACE,
            policy::CONFIGMAP,
            policy::DATA_KEY
        );
        let text = crate::cluster::policy::document_at(
            &self.client,
            policy::NAMESPACE,
            policy::CONFIGMAP,
            policy::DATA_KEY,
            &self.cluster,
            &self.cluster,
        )
        .await?
        .unwrap_or_default();
        let hooks: Vec<PolicyHook> = if text.trim().is_empty() {
            Vec::new()
        } else {
            policy::parse(&origin, &text)
                .map_err(anyhow::Error::msg)?
                .hooks
        };
        let hooks: Vec<PolicyHook> = hooks
            .into_iter()
            .filter(|h| h.phases.contains(&Phase::Admission))
            .collect();
        let configs = policy::fetch_modules(&hooks, &ModuleStore::default_location()).await?;
        let engine = shared_engine()?;
        let mut loaded = Loaded::default();
        for (hook, config) in hooks.into_iter().zip(configs) {
            let module = load_hook(&engine, config)
                .await?
                .map_err(|e| anyhow::anyhow!("cluster policy {e}"))?;
            loaded
                .hooks
                .push((hook, module.with_source(policy::SOURCE)));
        }
        tracing::info!(hooks = loaded.hooks.len(), "cluster policy loaded");
        self.metrics.set_policy_hooks(loaded.hooks.len());
        // Judging needs the approvals and records as they are: ready once both have listed.
        self.judged.ready().await;
        *self
            .policy
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(loaded);
        self.ready.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Reloads the policy whenever its ConfigMap changes; runs until the watch ends.
    pub async fn follow_policy(self: Arc<Self>) {
        let mut changes = std::pin::pin!(crate::cluster::policy::changes(
            &self.client,
            policy::NAMESPACE,
            policy::CONFIGMAP
        ));
        while changes.next().await.is_some() {
            if let Err(e) = self.load_policy().await {
                tracing::warn!(
                    "the changed cluster policy cannot be used; the previous one stays in force: {}",
                    one_line(&e)
                );
            }
        }
    }

    fn loaded(&self) -> Arc<Loaded> {
        self.policy
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// An approval ConfigMap: stamped with its creator, or refused.
    fn approval(&self, request: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
        let response = AdmissionResponse::from(request);
        let operation = match request.operation {
            Operation::Create => attestation::Operation::Create,
            Operation::Update => attestation::Operation::Update,
            Operation::Delete => attestation::Operation::Delete,
            Operation::Connect => return response,
        };
        let text = request
            .object
            .as_ref()
            .and_then(|o| o.data.pointer(&format!("/data/{}", approvals::DATA_KEY)))
            .and_then(|v| v.as_str());
        let user = request.user_info.username.clone().unwrap_or_default();
        let groups = request.user_info.groups.clone().unwrap_or_default();
        match attestation::attest(operation, &user, &groups, text) {
            Attested::Unchanged => response,
            Attested::Refused(why) => response.deny(why),
            Attested::Stamped(approval) => stamp(response, &approval),
        }
    }

    /// A workload change: judged by the policy's `admission` hooks when its images change in a
    /// namespace one of them governs.
    async fn workload(
        &self,
        request: &AdmissionRequest<DynamicObject>,
    ) -> Result<AdmissionResponse> {
        let response = AdmissionResponse::from(request);
        let (Some(kind), Some(new), Some(namespace)) = (
            decide::kind_of(&request.kind.kind),
            request.object.as_ref(),
            request.namespace.as_deref(),
        ) else {
            return Ok(response);
        };
        let changes = decide::image_changes(kind, request.old_object.as_ref(), new);
        if changes.is_empty() {
            return Ok(response);
        }
        let hooks = self.governing(namespace).await?;
        if hooks.is_empty() {
            return Ok(response);
        }
        let (app, env) = decide::app_and_environment(new, namespace);
        let requester = Requester {
            user: request.user_info.username.clone().unwrap_or_default(),
            groups: request.user_info.groups.clone().unwrap_or_default(),
        };
        let now = jiff::Timestamp::now();
        let hook_request = |approvals, history: &[crate::domain::Release]| {
            decide::request(
                kind, new, namespace, &changes, &requester, approvals, history, now,
            )
        };
        // From the watched caches first; a denial is judged again on a fresh read, so an
        // approval recorded a moment ago is never missed for a cache a moment behind.
        let arrived = self.fresh.arrival();
        let cached = hook_request(
            self.judged.approvals(&app, &env),
            &self.judged.history(namespace, &app, &env),
        );
        let mut report = judge(&hooks, &cached).await;
        if report.denied() {
            self.metrics.fresh_read();
            let key = (namespace.to_string(), app.clone(), env.clone());
            let fresh = self
                .fresh
                .read(key, arrived, || self.read_fresh(namespace, &app, &env))
                .await?;
            let fresh = hook_request(fresh.approvals.clone(), &fresh.history);
            // The same approvals and records as the caches held: the same verdict.
            if fresh != cached {
                report = judge(&hooks, &fresh).await;
            }
        }
        for verdict in &report.verdicts {
            if let crate::hooks::Outcome::Error { .. } = verdict.outcome {
                self.metrics.hook_error(&verdict.hook);
            }
        }
        let mut response = if report.denied() {
            response.deny(report.render())
        } else {
            response
        };
        let warnings = report.warnings();
        if !warnings.is_empty() {
            response.warnings = Some(warnings);
        }
        Ok(response)
    }

    /// The approvals and records of `app` in `env` as the API server has them now (both lists
    /// at once).
    async fn read_fresh(&self, namespace: &str, app: &str, env: &str) -> Result<Fresh> {
        let approvals = Approvals::in_cluster(&self.client, app, env);
        let records = Records::new(&self.client, namespace, app, env);
        let (approvals, history) = futures::try_join!(approvals.list(), records.list())?;
        Ok(Fresh { approvals, history })
    }

    /// The loaded hooks that govern `namespace` (by name or by its labels).
    async fn governing(&self, namespace: &str) -> Result<Vec<LoadedHook>> {
        let loaded = self.loaded();
        if loaded.hooks.is_empty() {
            return Ok(Vec::new());
        }
        let labels = if loaded
            .hooks
            .iter()
            .any(|(h, _)| h.namespace_selector.is_some())
        {
            match self.namespaces.get(namespace) {
                Some(labels) => labels,
                None => crate::cluster::policy::labels_of(&self.client, namespace).await?,
            }
        } else {
            BTreeMap::new()
        };
        Ok(loaded
            .hooks
            .iter()
            .filter(|(h, _)| h.applies_to_namespace(namespace, &labels))
            .map(|(_, module)| module.clone())
            .collect())
    }
}

/// Runs `hooks` on `request` in the `admission` phase (as [`crate::hooks::run_phase`] does).
async fn judge(hooks: &[LoadedHook], request: &HookRequest) -> PhaseReport {
    crate::hooks::run_phase(hooks, Phase::Admission, request).await
}

/// An app's approvals and release records in one environment, read from the API server.
#[derive(Debug)]
struct Fresh {
    approvals: Vec<hooks_sdk::Approval>,
    history: Vec<crate::domain::Release>,
}

/// Namespace, app and environment.
type FreshKey = (String, String, String);

/// What the last read of a key gave: when it started (on [`FreshReads`]' clock) and its result.
type LastRead = Option<(u64, Result<Arc<Fresh>, Arc<String>>)>;

/// Fresh reads shared by the reviews that need one at the same time.
///
/// A denial must be confirmed on what the API server holds now, not on a cache a moment behind:
/// that needs a read that started after the review arrived. Fifty denials of one app at once
/// need not make fifty: reads of a key run one at a time, and a review takes the last one when
/// it started after the review arrived, else reads itself (and the reviews that arrived during
/// that read take its result). So at most two reads serve a burst, and none ever serves a review
/// with what was read before it arrived. A failed read is an answer too: the reviews that arrived
/// before it began are refused with its error, as they would be on reading it themselves.
#[derive(Default)]
struct FreshReads {
    /// Orders arrivals and the starts of reads.
    clock: AtomicU64,
    /// The keys with reviews reading or waiting; a key goes when its last review is done.
    keys: Mutex<HashMap<FreshKey, Arc<tokio::sync::Mutex<LastRead>>>>,
}

impl FreshReads {
    /// A review's arrival, on the clock its read is compared with.
    fn arrival(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst)
    }

    /// The approvals and records of `key` from a read that started after `arrived`: the last
    /// one if it did, else `read`'s.
    async fn read<F, Fut>(&self, key: FreshKey, arrived: u64, read: F) -> Result<Arc<Fresh>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fresh>>,
    {
        let slot = self.keys().entry(key.clone()).or_default().clone();
        let result = {
            let mut last = slot.lock().await;
            match &*last {
                Some((started, result)) if *started > arrived => result.clone(),
                _ => {
                    let started = self.clock.fetch_add(1, Ordering::SeqCst);
                    let result = read()
                        .await
                        .map(Arc::new)
                        .map_err(|e| Arc::new(one_line(&e)));
                    *last = Some((started, result.clone()));
                    result
                }
            }
        };
        let mut keys = self.keys();
        // Only this review and the map hold it: nobody else reads or waits for this key.
        if Arc::strong_count(&slot) == 2 && keys.get(&key).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
            keys.remove(&key);
        }
        result.map_err(|e| anyhow::anyhow!("{e}"))
    }

    fn keys(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<FreshKey, Arc<tokio::sync::Mutex<LastRead>>>> {
        self.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Admits the approval rewritten as stamped (a JSON patch of its `approval.json`).
fn stamp(response: AdmissionResponse, approval: &hooks_sdk::Approval) -> AdmissionResponse {
    let text = match serde_json::to_string_pretty(approval) {
        Ok(text) => text,
        Err(e) => return response.deny(format!("cannot stamp the approval: {e}")),
    };
    let patch = serde_json::json!([
        {"op": "replace", "path": format!("/data/{}", approvals::DATA_KEY), "value": text}
    ]);
    match serde_json::from_value::<json_patch::Patch>(patch)
        .map_err(|e| e.to_string())
        .and_then(|p| response.clone().with_patch(p).map_err(|e| e.to_string()))
    {
        Ok(stamped) => stamped,
        Err(e) => response.deny(format!("cannot stamp the approval: {e}")),
    }
}

impl Admit for Admission {
    async fn review(
        &self,
        path: &str,
        review: AdmissionReview<DynamicObject>,
    ) -> AdmissionReview<DynamicObject> {
        let started = Instant::now();
        let request: AdmissionRequest<DynamicObject> = match review.try_into() {
            Ok(request) => request,
            Err(e) => {
                return AdmissionResponse::invalid(format!("not an AdmissionReview request: {e}"))
                    .into_review();
            }
        };
        let response = match path {
            "/approvals" => self.approval(&request),
            "/workloads" => self.workload(&request).await.unwrap_or_else(|e| {
                // The webhook could not judge: refusing is what failurePolicy: Fail would do.
                AdmissionResponse::from(&request).deny(format!(
                    "kubectl-release webhook cannot judge this change: {}",
                    one_line(&e)
                ))
            }),
            other => {
                AdmissionResponse::from(&request).deny(format!("no admission endpoint {other}"))
            }
        };
        tracing::debug!(path, allowed = response.allowed, elapsed = ?started.elapsed(), "admission review");
        response.into_review()
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn key() -> FreshKey {
        ("production".into(), "web".into(), "production".into())
    }

    /// What read number `n` found: one approval by `read-n`.
    fn found(n: usize) -> Fresh {
        let approval = hooks_sdk::Approval {
            user: format!("read-{n}"),
            ..hooks_sdk::Approval::default()
        };
        Fresh {
            approvals: vec![approval],
            history: Vec::new(),
        }
    }

    fn reader(fresh: &Result<Arc<Fresh>>) -> String {
        match fresh {
            Ok(fresh) => fresh.approvals[0].user.clone(),
            Err(e) => format!("error: {e}"),
        }
    }

    #[tokio::test]
    async fn a_burst_of_denials_shares_one_read_that_started_after_they_arrived() {
        let reads = FreshReads::default();
        let count = AtomicUsize::new(0);
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let read_number = || count.fetch_add(1, Ordering::SeqCst) + 1;
        // The first review reads, and its read is held until the others have arrived.
        let first = async {
            let arrived = reads.arrival();
            reads
                .read(key(), arrived, || async {
                    let n = read_number();
                    let _ = released.await;
                    Ok(found(n))
                })
                .await
        };
        // Ten more arrive while it reads: its result predates them, so one more read serves all.
        let burst = futures::future::join_all((0..10).map(|_| async {
            let arrived = reads.arrival();
            reads
                .read(key(), arrived, || async { Ok(found(read_number())) })
                .await
        }));
        let releaser = async {
            tokio::task::yield_now().await;
            let _ = release.send(());
        };
        let (first, burst, ()) = tokio::join!(first, burst, releaser);
        assert_eq!(reader(&first), "read-1");
        let burst: Vec<String> = burst.iter().map(reader).collect();
        assert_eq!(burst, vec!["read-2"; 10]);
        assert_eq!(
            count.load(Ordering::SeqCst),
            2,
            "two reads for eleven denials"
        );
        assert!(reads.keys().is_empty(), "no key kept once nobody waits");
    }

    #[tokio::test]
    async fn a_review_never_gets_what_was_read_before_it_arrived() {
        let reads = FreshReads::default();
        let count = AtomicUsize::new(0);
        let read = || async { Ok(found(count.fetch_add(1, Ordering::SeqCst) + 1)) };
        for n in 1..=3 {
            let arrived = reads.arrival();
            let fresh = reads.read(key(), arrived, read).await;
            assert_eq!(reader(&fresh), format!("read-{n}"));
        }
        // Another app's reads are its own.
        let arrived = reads.arrival();
        let other = ("production".into(), "api".into(), "production".into());
        assert_eq!(reader(&reads.read(other, arrived, read).await), "read-4");
    }

    #[tokio::test]
    async fn the_reviews_waiting_for_a_failed_read_are_refused_with_its_error() {
        let reads = FreshReads::default();
        let count = AtomicUsize::new(0);
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let first = async {
            let arrived = reads.arrival();
            reads
                .read(key(), arrived, || async {
                    count.fetch_add(1, Ordering::SeqCst);
                    let _ = released.await;
                    Ok(found(1))
                })
                .await
        };
        let burst = futures::future::join_all((0..3).map(|_| async {
            let arrived = reads.arrival();
            reads
                .read(key(), arrived, || async {
                    count.fetch_add(1, Ordering::SeqCst);
                    anyhow::bail!("cannot list approvals: the API server is gone")
                })
                .await
        }));
        let releaser = async {
            tokio::task::yield_now().await;
            let _ = release.send(());
        };
        let (_, burst, ()) = tokio::join!(first, burst, releaser);
        for fresh in &burst {
            assert_eq!(
                reader(fresh),
                "error: cannot list approvals: the API server is gone"
            );
        }
        assert_eq!(count.load(Ordering::SeqCst), 2);
        // The next review reads again.
        let arrived = reads.arrival();
        let fresh = reads.read(key(), arrived, || async { Ok(found(3)) }).await;
        assert_eq!(reader(&fresh), "read-3");
    }
}
