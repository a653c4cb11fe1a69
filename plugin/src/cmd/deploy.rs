//! `deploy ENV [REV]` and `plan ENV [REV]`: the commit's image, by digest, into an environment.

use anyhow::Result;

use super::{conclude, interrupt, options, ran_or_report};
use crate::artifacts::git;
use crate::artifacts::registry::{Registry, RegistryError};
use crate::cli::{DeployArgs, GlobalArgs, RevisionArgs};
use crate::cluster::Clients;
use crate::config::ReleaseConfig;
use crate::domain::{CommitSha, Failure, Outcome, ReleaseKind};
use crate::release::manifests::Pins;
use crate::release::{self, Intent, Ran, Wanted};

pub async fn run(
    global: &GlobalArgs,
    cfg: &ReleaseConfig,
    args: &DeployArgs,
    plan_only: bool,
) -> Result<Outcome> {
    let interrupt = interrupt();
    let ran = deploy(global, cfg, args, plan_only, &interrupt).await;
    conclude(
        global,
        ran_or_report(ran, &cfg.app, &args.env, ReleaseKind::Deploy),
    )
}

async fn deploy(
    global: &GlobalArgs,
    cfg: &ReleaseConfig,
    args: &DeployArgs,
    plan_only: bool,
    interrupt: &release::Interrupt,
) -> Result<Ran> {
    let env = cfg.environment(&args.env)?;
    let commit = resolve_commit(cfg, &args.revision)?;
    let digest = commit_digest(cfg, &args.revision, &commit).await?;
    tracing::info!(%commit, %digest, "resolved the commit's image");

    // Manifests are read and checked before anything talks to the cluster.
    let manifests = release::manifests::render(cfg, env, &commit, &Pins::Digest(&digest))?;

    let clients = Clients::new(&global.kube_settings())?;
    let target = clients.target(env).await?;
    let ctx = release::Context::prepare(cfg, &clients, &target).await?;
    let mut intent = Intent::new(ReleaseKind::Deploy);
    intent.manifests = manifests;
    intent.branch = args.revision.rev.as_deref().and_then(|rev| {
        let dir = cfg.path.parent().unwrap_or(std::path::Path::new("."));
        git::branch_name(dir, rev)
    });
    intent.image_tag = Some(format!("{}:{commit}", cfg.image));
    intent.commit = Some(commit);
    intent.wanted = Wanted::Digest(digest);
    let mut opts = options(cfg, env, &args.rollout);
    opts.dry_run |= plan_only;
    Ok(release::run(&ctx, &intent, &opts, interrupt).await)
}

/// REV → the full commit: `--commit` in CI, else the checkout the config lives in.
pub(crate) fn resolve_commit(cfg: &ReleaseConfig, args: &RevisionArgs) -> Result<CommitSha> {
    Ok(match &args.commit {
        Some(sha) => CommitSha::parse_full(sha)?,
        None => {
            let dir = cfg.path.parent().unwrap_or(std::path::Path::new("."));
            git::resolve(dir, args.rev.as_deref())?
        }
    })
}

/// The commit's image → the digest the registry serves for it. No image is a usage error:
/// nothing has been touched yet, and the fix is to build it (or wait for CI).
pub(crate) async fn commit_digest(
    cfg: &ReleaseConfig,
    args: &RevisionArgs,
    commit: &CommitSha,
) -> Result<String> {
    let registry = Registry::new();
    let found = match args.wait_for_image {
        Some(patience) => {
            registry
                .wait_for_commit_digest(&cfg.image, commit, patience)
                .await
        }
        None => registry.commit_digest(&cfg.image, commit).await,
    };
    found.map_err(|e| match e {
        RegistryError::NoImage { .. } => anyhow::Error::new(Failure::invalid(format!(
            "{e}{}",
            if args.wait_for_image.is_some() {
                ""
            } else {
                " Pass --wait-for-image 10m to wait for it."
            }
        ))),
        other => anyhow::Error::new(other),
    })
}
