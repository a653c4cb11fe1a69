//! `approve ENV` and `approvals ENV`: record and list approvals of what would be released into
//! an environment — by default what runs in its `promoteFrom` source, or `--commit`'s image.

use anyhow::Result;
use hooks_sdk::Approval;
use serde::Serialize;

use crate::artifacts::registry::Registry;
use crate::cli::{ApproveArgs, EnvArg, GlobalArgs};
use crate::cluster::Clients;
use crate::cluster::approvals::Approvals;
use crate::cmd::history::short_digest;
use crate::cmd::promote::source_state;
use crate::config::{Environment, ReleaseConfig};
use crate::domain::CommitSha;
use crate::domain::approvals::{Standing, standing};
use crate::domain::{Failure, Outcome};
use crate::output;

/// What an approval would be for: a commit and its digests.
struct Candidate {
    commit: Option<CommitSha>,
    digests: Vec<String>,
    /// Who released it into the source environment (the webhook refuses their approval).
    deployer: Option<String>,
}

async fn candidate(
    cfg: &ReleaseConfig,
    clients: &Clients,
    env: &Environment,
    commit: Option<&str>,
) -> Result<Candidate> {
    if let Some(sha) = commit {
        let commit = CommitSha::parse_full(sha)?;
        let digest = Registry::new()
            .commit_digest(&cfg.image, &commit)
            .await
            .map_err(|e| Failure::invalid(e.to_string()))?;
        return Ok(Candidate {
            commit: Some(commit),
            digests: vec![digest],
            deployer: None,
        });
    }
    let Some(source) = env.promote_from.as_deref() else {
        return Err(Failure::invalid(format!(
            "{} has no promoteFrom, so there is nothing to promote into it; approve a commit's image with --commit <40-hex sha>",
            env.name
        ))
        .into());
    };
    let state = source_state(cfg, clients, cfg.environment(source)?).await?;
    Ok(Candidate {
        digests: state.digests(),
        commit: state.commit,
        deployer: state.deployer,
    })
}

pub async fn approve(
    global: &GlobalArgs,
    cfg: &ReleaseConfig,
    args: &ApproveArgs,
) -> Result<Outcome> {
    let env = cfg.environment(&args.env)?;
    let clients = Clients::new(&global.kube_settings())?;
    let target = clients.target(env).await?;
    let wanted = candidate(cfg, &clients, env, args.commit.as_deref()).await?;
    let actor = crate::cluster::identity::whoami(&target).await;
    let now = jiff::Timestamp::now();
    let expires = jiff::SignedDuration::try_from(args.expires)
        .map_err(|e| Failure::invalid(format!("--expires: {e}")))?;
    let approval = Approval {
        user: actor.user.clone(),
        environment: env.name.clone(),
        commit: wanted
            .commit
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        digests: wanted.digests,
        approved_at: now.to_string(),
        expires_at: (now + expires).to_string(),
        verified: actor.verified,
        groups: actor.groups.clone(),
        deployer: wanted.deployer,
    };
    let name = Approvals::new(&target, &cfg.app).record(&approval).await?;
    tracing::info!(%name, "approval recorded");
    if approval.deployer.as_deref() == Some(approval.user.as_str()) {
        // Recorded all the same: whether it counts is the environment's rules' decision, and
        // approval-rules excludes whoever runs the promotion, which is often the same person.
        tracing::warn!(
            "{user} released what runs in {source}: if {user} also runs the promotion, rules \
             that exclude the deployer (approval-rules' excludeDeployer) do not count this \
             approval; ask someone else to approve",
            user = approval.user,
            source = env
                .promote_from
                .as_deref()
                .unwrap_or("the source environment"),
        );
    }
    output::emit(global.output, &approval, || {
        format!(
            "{} approved {} {} for {} until {}{}\n",
            approval.user,
            cfg.app,
            describe(&approval),
            env.name,
            approval.expires_at,
            if approval.verified {
                ""
            } else {
                " (identity from the kubeconfig, unverified by this API server)"
            }
        )
    })?;
    Ok(Outcome::Succeeded)
}

#[derive(Serialize)]
struct Listed {
    #[serde(flatten)]
    approval: Approval,
    standing: Standing,
}

pub async fn list(global: &GlobalArgs, cfg: &ReleaseConfig, args: &EnvArg) -> Result<Outcome> {
    let env = cfg.environment(&args.env)?;
    let clients = Clients::new(&global.kube_settings())?;
    let target = clients.target(env).await?;
    // Without a source there is no candidate to judge against: every unexpired one counts.
    let wanted = match env.promote_from {
        Some(_) => Some(candidate(cfg, &clients, env, None).await?.digests),
        None => None,
    };
    let now = jiff::Timestamp::now();
    let listed: Vec<Listed> = Approvals::new(&target, &cfg.app)
        .list()
        .await?
        .into_iter()
        .map(|approval| {
            let digests = wanted.clone().unwrap_or_else(|| approval.digests.clone());
            Listed {
                standing: standing(&approval, &digests, now),
                approval,
            }
        })
        .collect();
    output::emit(global.output, &listed, || {
        let rows: Vec<Vec<String>> = listed
            .iter()
            .map(|l| {
                vec![
                    l.approval.user.clone(),
                    describe(&l.approval),
                    output::age(&l.approval.approved_at),
                    l.approval.expires_at.clone(),
                    l.standing.to_string(),
                ]
            })
            .collect();
        output::table(&["USER", "WHAT", "AGE", "EXPIRES", "STATUS"], &rows)
    })?;
    Ok(Outcome::Succeeded)
}

/// `3f2a9c1 (1c2d3e4f5a6b)`: commit and digests, short.
fn describe(a: &Approval) -> String {
    let digests: Vec<String> = a.digests.iter().map(|d| short_digest(d)).collect();
    // Approvals are written by anyone allowed to: never slice what they wrote by bytes.
    let commit: String = a.commit.chars().take(7).collect();
    let commit = if commit.is_empty() {
        "-".into()
    } else {
        commit
    };
    format!("{commit} ({})", digests.join(","))
}
