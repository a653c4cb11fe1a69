//! `where SHA`: which environments run a commit — judged by the live workloads, not by records.

use anyhow::Result;
use serde::Serialize;

use crate::artifacts::git;
use crate::cli::{GlobalArgs, WhereArgs};
use crate::config::ReleaseConfig;
use crate::domain::CommitSha;
use crate::domain::Outcome;
use crate::output;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Placement {
    environment: String,
    /// Every app workload is annotated with the commit and matches its record.
    running: bool,
    live_commit: Option<String>,
    revision: Option<u64>,
}

pub async fn run(global: &GlobalArgs, cfg: &ReleaseConfig, args: &WhereArgs) -> Result<Outcome> {
    let commit = match CommitSha::parse_full(&args.rev) {
        Ok(full) => full,
        Err(_) => git::resolve(
            cfg.path.parent().unwrap_or(std::path::Path::new(".")),
            Some(&args.rev),
        )?,
    };
    let statuses = crate::cmd::status::collect(global, cfg, &[]).await?;
    let placements: Vec<Placement> = statuses
        .into_iter()
        .map(|s| Placement {
            running: s.live_commit.as_deref() == Some(commit.as_str()) && !s.drift,
            environment: s.environment,
            live_commit: s.live_commit,
            revision: s.revision,
        })
        .collect();
    output::emit(global.output, &placements, || {
        let running: Vec<&str> = placements
            .iter()
            .filter(|p| p.running)
            .map(|p| p.environment.as_str())
            .collect();
        if running.is_empty() {
            format!("{} runs in no environment\n", commit.short())
        } else {
            format!("{} runs in: {}\n", commit.short(), running.join(", "))
        }
    })?;
    Ok(Outcome::Succeeded)
}
