//! `status [ENV…]`: one table across environments.

use anyhow::Result;

use crate::cli::{GlobalArgs, StatusArgs};
use crate::cluster::Clients;
use crate::cluster::records::Records;
use crate::cmd::history::short_digest;
use crate::config::ReleaseConfig;
use crate::domain::Outcome;
use crate::domain::status::{EnvStatus, env_status};
use crate::output;

pub async fn run(global: &GlobalArgs, cfg: &ReleaseConfig, args: &StatusArgs) -> Result<Outcome> {
    let statuses = collect(global, cfg, &args.envs).await?;
    output::emit(global.output, &statuses, || {
        let rows: Vec<Vec<String>> = statuses
            .iter()
            .map(|s| {
                let digests: Vec<String> = s
                    .images
                    .iter()
                    .map(|i| {
                        i.rsplit_once('@')
                            .map_or(i.clone(), |(_, d)| short_digest(d))
                    })
                    .collect();
                vec![
                    s.environment.clone(),
                    s.revision.map_or("-".into(), |r| r.to_string()),
                    commit_cell(s),
                    digests.join(","),
                    format!("{}/{}", s.ready, s.desired),
                    s.released_at.as_deref().map_or("-".into(), output::age),
                    s.released_by.clone().unwrap_or_else(|| "-".into()),
                    s.outcome.clone().unwrap_or_else(|| "-".into()),
                    drift_cell(s),
                ]
            })
            .collect();
        output::table(
            &[
                "ENV", "REVISION", "COMMIT", "DIGEST", "READY", "AGE", "BY", "OUTCOME", "DRIFT",
            ],
            &rows,
        )
    })?;
    Ok(Outcome::Succeeded)
}

/// The short commit, and the branch it was deployed by.
fn commit_cell(s: &EnvStatus) -> String {
    let commit: String = s
        .commit
        .as_deref()
        .map_or("-".into(), |c| c.chars().take(7).collect());
    match &s.branch {
        Some(branch) => format!("{commit} ({branch})"),
        None => commit,
    }
}

/// Image drift and config drift in one cell.
fn drift_cell(s: &EnvStatus) -> String {
    let details: Vec<String> = s
        .drift_details
        .iter()
        .chain(&s.config_drift)
        .cloned()
        .collect();
    let mut cell = if details.is_empty() {
        "no".to_string()
    } else {
        format!("yes: {}", details.join("; "))
    };
    if let Some(why) = &s.config_unchecked {
        cell.push_str(&format!(" (config not checked: {why})"));
    }
    cell
}

/// The status of the named environments (all, in promotion order, when none are named),
/// read concurrently.
pub async fn collect(
    global: &GlobalArgs,
    cfg: &ReleaseConfig,
    names: &[String],
) -> Result<Vec<EnvStatus>> {
    let envs = if names.is_empty() {
        cfg.promotion_order()
    } else {
        names
            .iter()
            .map(|n| cfg.environment(n))
            .collect::<Result<Vec<_>, _>>()?
    };
    let clients = Clients::new(&global.kube_settings())?;
    let reads = envs.into_iter().map(|env| {
        let clients = &clients;
        async move {
            let target = clients.target(env).await?;
            let live = crate::release::live_workloads(cfg, &target).await?;
            let mut newest: Vec<_> =
                Records::new(&target.client, &target.namespace, &cfg.app, &env.name)
                    .latest()
                    .await?
                    .into_iter()
                    .collect();
            crate::cmd::history::shown_as_they_stand(&mut newest, &target, &cfg.app).await;
            let newest = newest.pop();
            if live.is_empty() && newest.is_none() {
                warn_if_missing(&target).await;
            }
            let mut status = env_status(
                &env.name,
                &target.namespace,
                &cfg.image,
                &live,
                newest.as_ref(),
            );
            if let Some(gitops) = env.gitops.clone() {
                let image = cfg.image.clone();
                let git = tokio::task::spawn_blocking(move || {
                    crate::release::gitops::images_in_git(&gitops, &image)
                })
                .await?;
                match git {
                    Ok(images) => {
                        if let Some(d) = crate::domain::status::git_drift(&images, &status.images) {
                            status.drift = true;
                            status.drift_details.push(d);
                        }
                        status.git_images = Some(images);
                    }
                    Err(why) => status.config_unchecked = Some(why.message),
                }
            }
            if let Some(newest) = &newest {
                match crate::release::drift::config_drift(cfg, env, &target, newest).await {
                    Ok(drift) => {
                        status.drift |= !drift.is_empty();
                        status.config_drift = drift;
                    }
                    Err(why) => status.config_unchecked = Some(why),
                }
            }
            if env.gitops.is_some() {
                status.live_commit =
                    crate::domain::status::gitops_live_commit(&status, newest.as_ref())
                        .or(status.live_commit);
            }
            Ok::<_, anyhow::Error>(status)
        }
    });
    futures::future::try_join_all(reads).await
}

/// An environment with nothing in it may be one whose namespace is misspelled (in release.yaml
/// or `-n`): say so rather than show an empty row (or history) as if nothing had been released.
/// Only a namespace known to be missing is reported; one that cannot be read is left alone.
pub(crate) async fn warn_if_missing(target: &crate::cluster::EnvTarget) {
    let objects = crate::cluster::objects::Objects::new(&target.client, &target.namespace);
    if let Ok(false) = objects.namespace_exists().await {
        tracing::warn!(
            "environment {}: namespace {} does not exist (context {}); check its `namespace` in release.yaml, or -n",
            target.env.name,
            target.namespace,
            target.context
        );
    }
}
