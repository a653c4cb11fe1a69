//! The webhook's judgements: approvals stamped with the identity the API server authenticated,
//! and workload changes in governed namespaces judged by the cluster policy's `admission`
//! hooks — the same pinned modules, cache and sandbox the plugin runs client-side.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use anyhow::Result;
use futures::StreamExt as _;
use hooks_sdk::Phase;
use kube::api::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};

use super::metrics::Metrics;
use super::server::Admit;
use crate::artifacts::oci_modules::ModuleStore;
use crate::cluster::approvals::{self, Approvals};
use crate::cluster::cache::Judged;
use crate::cluster::records::Records;
use crate::domain::admission::{self as decide, Requester};
use crate::domain::attestation::{self, Attested};
use crate::hooks::LoadedHook;
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
                .map_err(|e| anyhow::anyhow!("cluster policy hook `{}`: {e}", hook.name))?;
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
                    "the changed cluster policy cannot be used; the previous one stays in force: {e:#}"
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
        let judge = |approvals, history: Vec<crate::domain::Release>| {
            let hook_request = decide::request(
                kind,
                new,
                namespace,
                &changes,
                &requester,
                approvals,
                &history,
                jiff::Timestamp::now(),
            );
            let hooks = &hooks;
            async move {
                crate::hooks::run_phase(hooks, Phase::Admission, |_| hook_request.clone()).await
            }
        };
        // From the watched caches first; a denial is judged again on a fresh read, so an
        // approval recorded a moment ago is never missed for a cache a moment behind.
        let mut report = judge(
            self.judged.approvals(&app, &env),
            self.judged.history(namespace, &app, &env),
        )
        .await;
        if report.denied() {
            let approvals = Approvals::in_cluster(&self.client, &app, &env)
                .list()
                .await?;
            let history = Records::new(&self.client, namespace, &app, &env)
                .list()
                .await?;
            report = judge(approvals, history).await;
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
            crate::cluster::policy::labels_of(&self.client, namespace).await?
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
                    "kubectl-release webhook cannot judge this change: {e:#}"
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
