//! `history ENV`: the release records of an environment, newest first.

use anyhow::Result;

use crate::cli::GlobalArgs;
use crate::cluster::Clients;
use crate::cluster::records::Records;
use crate::config::ReleaseConfig;
use crate::domain::Outcome;
use crate::domain::plan;
use crate::output;

pub async fn run(global: &GlobalArgs, cfg: &ReleaseConfig, env_name: &str) -> Result<Outcome> {
    let env = cfg.environment(env_name)?;
    if let Some(gitops) = env.gitops.clone() {
        return from_git(global, cfg, gitops, &env.name).await;
    }
    let target = Clients::new(&global.kube_settings())?.target(env).await?;
    let mut history = Records::new(&target.client, &target.namespace, &cfg.app, &env.name)
        .list()
        .await?;
    shown_as_they_stand(&mut history, &target, &cfg.app).await;
    if history.is_empty() {
        crate::cmd::status::warn_if_missing(&target).await;
    }
    output::emit(global.output, &history, || {
        let rows: Vec<Vec<String>> = history
            .iter()
            .map(|r| {
                let digests = plan::digests(&r.containers)
                    .iter()
                    .map(|d| short_digest(d))
                    .collect::<Vec<_>>()
                    .join(",");
                let from = match (&r.source_environment, r.restored_revision, &r.branch) {
                    (Some(src), _, _) => format!("from {src}"),
                    (None, Some(rev), _) => format!("to revision {rev}"),
                    (None, None, Some(branch)) => format!("branch {branch}"),
                    _ => String::new(),
                };
                vec![
                    r.revision.to_string(),
                    format!("{:?}", r.kind).to_lowercase(),
                    r.commit
                        .as_ref()
                        .map_or("-".into(), |c| c.short().to_string()),
                    digests,
                    r.outcome.to_string(),
                    r.actor.user.clone(),
                    output::age(&r.finished_at),
                    from,
                ]
            })
            .collect();
        output::table(
            &[
                "REVISION", "KIND", "COMMIT", "DIGEST", "OUTCOME", "BY", "AGE", "NOTE",
            ],
            &rows,
        )
    })?;
    Ok(Outcome::Succeeded)
}

/// A GitOps environment's history: the release commits on its path (read back from their
/// trailers), newest first. The repository is the truth of what was released there.
async fn from_git(
    global: &GlobalArgs,
    cfg: &ReleaseConfig,
    gitops: crate::config::gitops::Gitops,
    env_name: &str,
) -> Result<Outcome> {
    let (app, name) = (cfg.app.clone(), env_name.to_string());
    let releases =
        tokio::task::spawn_blocking(move || crate::release::gitops::history(&gitops, &app, &name))
            .await??;
    output::emit(global.output, &releases, || {
        let rows: Vec<Vec<String>> = releases
            .iter()
            .map(|r| {
                let t = &r.trailers;
                let digests: Vec<String> = t
                    .digests
                    .iter()
                    .map(|d| {
                        d.rsplit_once('@')
                            .map_or(d.clone(), |(_, d)| short_digest(d))
                    })
                    .collect();
                vec![
                    t.revision.to_string(),
                    t.kind.clone(),
                    t.commit
                        .as_deref()
                        .map_or("-".into(), |c| c.chars().take(7).collect()),
                    digests.join(","),
                    r.git_commit.chars().take(12).collect(),
                    t.actor.clone(),
                    output::age(&r.time),
                    t.source_environment
                        .as_ref()
                        .map_or(String::new(), |s| format!("from {s}")),
                ]
            })
            .collect();
        output::table(
            &[
                "REVISION",
                "KIND",
                "COMMIT",
                "DIGEST",
                "GIT COMMIT",
                "BY",
                "AGE",
                "NOTE",
            ],
            &rows,
        )
    })?;
    Ok(Outcome::Succeeded)
}

/// An `in-progress` record whose run no longer holds the lock is shown `interrupted`.
pub async fn shown_as_they_stand(
    records: &mut [crate::domain::Release],
    target: &crate::cluster::EnvTarget,
    app: &str,
) {
    if !records
        .iter()
        .any(|r| r.outcome == crate::domain::Outcome::InProgress)
    {
        return;
    }
    let lock =
        crate::cluster::lease::state(&target.client, &target.namespace, app, &target.env.name)
            .await
            .unwrap_or(crate::domain::lock::LockState::Free);
    for record in records {
        record.outcome = crate::domain::record::effective_outcome(record, &lock);
    }
}

/// `sha256:3f2a…` → `3f2a9c1e0b7d` for tables.
pub fn short_digest(digest: &str) -> String {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    hex.chars().take(12).collect()
}
