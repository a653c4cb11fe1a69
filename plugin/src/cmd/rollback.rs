//! `rollback ENV [--to-revision N]`: re-deploy the images a recorded revision left running.

use anyhow::Result;

use super::{conclude, interrupt, options, ran_or_report};
use crate::cli::{GlobalArgs, RollbackArgs};
use crate::cluster::{Clients, EnvGateway as _};
use crate::config::ReleaseConfig;
use crate::domain::{Failure, Outcome, Release, ReleaseKind, record};
use crate::release::{self, Intent, Ran, Wanted};

pub async fn run(global: &GlobalArgs, cfg: &ReleaseConfig, args: &RollbackArgs) -> Result<Outcome> {
    let interrupt = interrupt();
    let ran = rollback(global, cfg, args, &interrupt).await;
    conclude(
        global,
        ran_or_report(ran, &cfg.app, &args.env, ReleaseKind::Rollback),
    )
}

async fn rollback(
    global: &GlobalArgs,
    cfg: &ReleaseConfig,
    args: &RollbackArgs,
    interrupt: &release::Interrupt,
) -> Result<Ran> {
    let env = cfg.environment(&args.env)?;
    let clients = Clients::new(&global.kube_settings())?;
    let target = clients.target(env).await?;
    let ctx = release::Context::prepare(cfg, &clients, &target).await?;
    let history = ctx.gateway.history().await?;
    let chosen = choose(cfg, &env.name, &history, args.to_revision)?;
    if !chosen.succeeded() {
        tracing::warn!(revision = chosen.revision, outcome = %chosen.outcome, "rolling back to a revision that did not succeed");
    }
    let mut intent = Intent::new(ReleaseKind::Rollback);
    intent.manifests = restored_manifests(cfg, env, chosen)?;
    intent.commit = chosen.commit.clone();
    intent.wanted = Wanted::Exact(chosen.images());
    intent.restored_revision = Some(chosen.revision);
    Ok(release::run(&ctx, &intent, &options(cfg, env, &args.rollout), interrupt).await)
}

/// The environment's manifests at the restored revision's commit, with its images.
fn restored_manifests(
    cfg: &ReleaseConfig,
    env: &crate::config::Environment,
    chosen: &Release,
) -> Result<Option<release::manifests::Desired>> {
    if env.manifests.is_none() {
        return Ok(None);
    }
    let commit = chosen.commit.as_ref().ok_or_else(|| {
        Failure::invalid(format!(
            "revision {} of {} names no commit, so its manifests cannot be read again; roll back to a revision deployed from a commit (`kubectl release history {}`)",
            chosen.revision, env.name, env.name
        ))
    })?;
    let images = chosen.images();
    Ok(release::manifests::render(
        cfg,
        env,
        commit,
        &release::manifests::Pins::Exact(&images),
    )?)
}

/// The revision to restore: the one asked for, or the newest good one before the current.
fn choose<'h>(
    cfg: &ReleaseConfig,
    env: &str,
    history: &'h [Release],
    asked: Option<u64>,
) -> Result<&'h Release> {
    let chosen = match asked {
        Some(n) => history.iter().find(|r| r.revision == n).ok_or_else(|| {
            let known: Vec<String> = history.iter().map(|r| r.revision.to_string()).collect();
            Failure::invalid(format!(
                "{} has no revision {n} in {env}; recorded revisions: {} (see `kubectl release history {env}`)",
                cfg.app,
                if known.is_empty() { "none".into() } else { known.join(", ") },
            ))
        })?,
        None => record::previous_good(history).ok_or_else(|| {
            Failure::invalid(format!("{} has no earlier successful revision in {env} to roll back to", cfg.app))
        })?,
    };
    Ok(chosen)
}
