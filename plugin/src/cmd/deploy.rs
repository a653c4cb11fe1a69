//! `deploy ENV [REV]` and `plan ENV [REV]`: the commit's image, by digest, into an environment.

use anyhow::Result;

use crate::cli::{DeployArgs, GlobalArgs};
use crate::config::ReleaseConfig;
use crate::exit::{ExitCode, Failure};
use crate::git::{self, CommitSha};
use crate::kube_client::Clients;
use crate::plan::ReleaseKind;
use crate::registry::{Registry, RegistryError};
use crate::release::{self, Intent, Wanted};

pub async fn run(
    global: &GlobalArgs,
    cfg: &ReleaseConfig,
    args: &DeployArgs,
    plan_only: bool,
) -> Result<ExitCode> {
    let env = cfg.environment(&args.env)?;

    // REV → the full commit: `--commit` in CI, else the checkout the config lives in.
    let commit = match &args.commit {
        Some(sha) => CommitSha::parse_full(sha)?,
        None => {
            let dir = cfg.path.parent().unwrap_or(std::path::Path::new("."));
            git::resolve(dir, args.rev.as_deref())?
        }
    };

    // The commit's image → the digest the registry serves for it. No image is a usage error:
    // nothing has been touched yet, and the fix is to build it (or wait for CI).
    let registry = Registry::new();
    let digest = match args.wait_for_image {
        Some(patience) => {
            registry
                .wait_for_commit_digest(&cfg.image, &commit, patience)
                .await
        }
        None => registry.commit_digest(&cfg.image, &commit).await,
    }
    .map_err(|e| match e {
        RegistryError::NoImage { .. } => anyhow::Error::new(Failure::usage(format!(
            "{e}{}",
            if args.wait_for_image.is_some() {
                ""
            } else {
                " Pass --wait-for-image 10m to wait for it."
            }
        ))),
        other => anyhow::Error::new(other),
    })?;
    tracing::info!(%commit, %digest, "resolved the commit's image");

    let clients = Clients::new(global)?;
    let target = clients.target(env).await?;
    let ctx = release::Context::prepare(global, cfg, &clients, &target).await?;
    let intent = Intent {
        kind: ReleaseKind::Deploy,
        image_tag: Some(format!("{}:{commit}", cfg.image)),
        commit: Some(commit),
        wanted: Wanted::Digest(digest),
        source_environment: None,
        source_revision: None,
        forced_source: false,
        restored_revision: None,
    };
    let mut opts = args.rollout.clone();
    opts.dry_run |= plan_only;
    release::execute(&ctx, intent, &opts, None).await
}
