//! `rollback ENV [--to-revision N]`: re-deploy the images a recorded revision left running.

use anyhow::Result;

use crate::cli::{GlobalArgs, RollbackArgs};
use crate::config::ReleaseConfig;
use crate::exit::{ExitCode, Failure};
use crate::kube_client::Clients;
use crate::plan::ReleaseKind;
use crate::records::{self, Outcome, Records};
use crate::release::{self, Intent, Wanted};

pub async fn run(
    global: &GlobalArgs,
    cfg: &ReleaseConfig,
    args: &RollbackArgs,
) -> Result<ExitCode> {
    let env = cfg.environment(&args.env)?;
    let clients = Clients::new(global)?;
    let target = clients.target(env).await?;
    let history = Records::new(&target.client, &target.namespace, &cfg.app, &env.name)
        .list()
        .await?;

    let chosen = match args.to_revision {
        Some(n) => history.iter().find(|r| r.revision == n).ok_or_else(|| {
            let known: Vec<String> = history.iter().map(|r| r.revision.to_string()).collect();
            Failure::usage(format!(
                "{} has no revision {n} in {}; recorded revisions: {} (see `kubectl release history {}`)",
                cfg.app,
                env.name,
                if known.is_empty() { "none".into() } else { known.join(", ") },
                env.name
            ))
        })?,
        None => records::previous_good(&history).ok_or_else(|| {
            Failure::usage(format!("{} has no earlier successful revision in {} to roll back to", cfg.app, env.name))
        })?,
    };
    if chosen.outcome != Outcome::Succeeded {
        tracing::warn!(revision = chosen.revision, outcome = %chosen.outcome, "rolling back to a revision that did not succeed");
    }

    let ctx = release::Context::prepare(global, cfg, &clients, &target).await?;
    let intent = Intent {
        kind: ReleaseKind::Rollback,
        commit: chosen.commit.clone(),
        image_tag: None,
        wanted: Wanted::Exact(chosen.images()),
        source_environment: None,
        source_revision: None,
        forced_source: false,
        restored_revision: Some(chosen.revision),
    };
    release::execute(&ctx, intent, &args.rollout, None).await
}
