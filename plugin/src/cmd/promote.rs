//! `promote FROM [TO]`: ship exactly the digests running in FROM to TO.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use crate::cli::{GlobalArgs, PromoteArgs};
use crate::config::{Environment, ReleaseConfig};
use crate::git::CommitSha;
use crate::workloads::WorkloadRef;
use crate::exit::{ExitCode, Failure};
use crate::gate::Gate;
use crate::kube_client::Clients;
use crate::plan::ReleaseKind;
use crate::records::Records;
use crate::release::{self, Intent, Wanted};

pub async fn run(global: &GlobalArgs, cfg: &ReleaseConfig, args: &PromoteArgs) -> Result<ExitCode> {
    let from = cfg.environment(&args.from)?;
    let to = match &args.to {
        Some(name) => cfg.environment(name)?,
        None => {
            let next: Vec<_> = cfg.environments.iter().filter(|e| e.promote_from.as_deref() == Some(from.name.as_str())).collect();
            match next.as_slice() {
                [one] => *one,
                [] => return Err(Failure::usage(format!("no environment has `promoteFrom: {}`; name the target: promote {} TARGET", from.name, from.name)).into()),
                many => {
                    let names: Vec<&str> = many.iter().map(|e| e.name.as_str()).collect();
                    return Err(Failure::usage(format!("{} environments promote from {}: {}; name one", many.len(), from.name, names.join(", "))).into());
                }
            }
        }
    };
    // The promotion order is a rule: production only receives what ran where it says.
    let forced = to.promote_from.as_deref() != Some(from.name.as_str());
    if forced && !args.force_source {
        return Err(Failure::usage(format!(
            "{} receives promotions from {}, not from {}; pass --force-source to promote anyway (hooks see that it was forced)",
            to.name,
            to.promote_from.as_deref().unwrap_or("nowhere (it has no promoteFrom)"),
            from.name
        ))
        .into());
    }

    let clients = Clients::new(global)?;
    let source = source_state(cfg, &clients, from).await?;

    let target = clients.target(to).await?;
    let actor = crate::identity::whoami(&target).await;
    let gate = Gate::load(cfg, &clients, &target, &actor).await?;
    let ctx = release::Context { global, config: cfg, target: &target, actor, gate };
    let intent = Intent {
        kind: ReleaseKind::Promote,
        commit: source.commit,
        image_tag: None,
        wanted: Wanted::Exact(source.images),
        source_environment: Some(from.name.clone()),
        source_revision: source.revision,
        forced_source: forced,
        restored_revision: None,
    };
    release::execute(&ctx, intent, &args.rollout, args.wait_for_approval).await
}

/// What runs in a promotion's source environment, ready to ship.
pub struct SourceState {
    /// `(workload, container) → repo@digest`, agreed on by every pod.
    pub images: BTreeMap<(WorkloadRef, String), String>,
    /// The commit of the source's newest record, when the live images are that record's.
    pub commit: Option<CommitSha>,
    pub revision: Option<u64>,
}

impl SourceState {
    pub fn digests(&self) -> Vec<String> {
        let mut d: Vec<String> = self.images.values().filter_map(|i| i.rsplit_once('@').map(|(_, d)| d.to_string())).collect();
        d.sort();
        d.dedup();
        d
    }
}

/// Reads the live state of `from`: every pod must agree on one digest per container and every
/// rollout must be complete, or it is a usage error naming the workload.
pub async fn source_state(cfg: &ReleaseConfig, clients: &Clients, from: &Environment) -> Result<SourceState> {
    let source = clients.target(from).await?;
    let live = release::live_workloads(cfg, &source).await?;
    if live.is_empty() {
        return Err(Failure::usage(format!("nothing to promote: no workload in {source} uses {}", cfg.image)).into());
    }
    let pods = Api::<Pod>::namespaced(source.client.clone(), &source.namespace)
        .list(&ListParams::default())
        .await
        .with_context(|| format!("cannot list pods in {source}"))?
        .items;
    let images = crate::promotion::source_images(&live, &pods, &cfg.image)
        .map_err(|why| Failure::usage(format!("cannot promote from {}: {why}", from.name)))?;
    let record = Records::new(&source.client, &source.namespace, &cfg.app, &from.name).latest().await?;
    let commit = record
        .as_ref()
        .filter(|r| r.images().iter().all(|(k, v)| images.get(k).is_none_or(|i| i == v)))
        .and_then(|r| r.commit.clone());
    Ok(SourceState { images, commit, revision: record.map(|r| r.revision) })
}
