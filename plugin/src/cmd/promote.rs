//! `promote FROM [TO]`: ship exactly the digests running in FROM to TO.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use futures::StreamExt;
use serde::Serialize;

use crate::artifacts::gitops_clones::Clones;
use crate::cli::exit::ExitCode;
use crate::cli::{GlobalArgs, PromoteArgs};
use crate::cluster::{Clients, EnvGateway as _, EnvSnapshot, KubeEnv};
use crate::config::{self, Environment, ReleaseConfig};
use crate::domain::{CommitSha, Failure, Outcome, ReleaseKind, WorkloadRef};
use crate::output;
use crate::release::{self, Intent, Ran, Wanted};

pub async fn run(global: &GlobalArgs, cfg: &ReleaseConfig, args: &PromoteArgs) -> Result<Outcome> {
    let interrupt = super::interrupt();
    let ran = promote(global, None, cfg, args, &interrupt).await;
    let target = target_name(cfg, args);
    super::conclude(
        global,
        super::ran_or_report(ran, &cfg.app, &target, ReleaseKind::Promote),
    )
}

/// The target's name for a report, as far as the arguments and the config tell it.
fn target_name(cfg: &ReleaseConfig, args: &PromoteArgs) -> String {
    cfg.environment(&args.from)
        .ok()
        .and_then(|from| target_of(cfg, from, args.to.as_deref()).ok())
        .map_or_else(|| args.to.clone().unwrap_or_default(), |e| e.name.clone())
}

/// The environment FROM promotes into: TO, or the one whose `promoteFrom` is FROM.
fn target_of<'c>(
    cfg: &'c ReleaseConfig,
    from: &Environment,
    to: Option<&str>,
) -> Result<&'c Environment> {
    if let Some(name) = to {
        return Ok(cfg.environment(name)?);
    }
    let next: Vec<_> = cfg
        .environments
        .iter()
        .filter(|e| e.promote_from.as_deref() == Some(from.name.as_str()))
        .collect();
    match next.as_slice() {
        [one] => Ok(*one),
        [] => Err(Failure::invalid(format!(
            "no environment has `promoteFrom: {}`; name the target: promote {} TARGET",
            from.name, from.name
        ))
        .into()),
        many => {
            let names: Vec<&str> = many.iter().map(|e| e.name.as_str()).collect();
            Err(Failure::invalid(format!(
                "{} environments promote from {}: {}; name one",
                many.len(),
                from.name,
                names.join(", ")
            ))
            .into())
        }
    }
}

/// What the apps of `--all` share: one connection per context, and one clone per deployment
/// repository and branch.
struct Shared {
    clients: Clients,
    clones: Clones,
}

/// Promotes one app: its report and how it ended. `shared` is what the apps of `--all` reuse;
/// without it the clients are made after the environments are checked, so a config error is
/// reported before any kubeconfig one.
async fn promote(
    global: &GlobalArgs,
    shared: Option<&Shared>,
    cfg: &ReleaseConfig,
    args: &PromoteArgs,
    interrupt: &release::Interrupt,
) -> Result<Ran> {
    let from = cfg.environment(&args.from)?;
    let to = target_of(cfg, from, args.to.as_deref())?;
    // The promotion order is a rule: production only receives what ran where it says.
    let forced = to.promote_from.as_deref() != Some(from.name.as_str());
    if forced && !args.force_source {
        return Err(Failure::invalid(format!(
            "{} receives promotions from {}, not from {}; pass --force-source to promote anyway (hooks see that it was forced)",
            to.name,
            to.promote_from.as_deref().unwrap_or("nowhere (it has no promoteFrom)"),
            from.name
        ))
        .into());
    }
    let owned;
    let clients = match shared {
        Some(shared) => &shared.clients,
        None => {
            owned = Clients::new(&global.kube_settings())?;
            &owned
        }
    };
    let source = source_state(cfg, clients, from).await?;
    if to.require_verification {
        crate::domain::job::verified(&from.name, source.current.as_ref()).map_err(|why| {
            Failure::invalid(format!(
                "{} only receives releases whose verification passed in {}: {why}",
                to.name, from.name
            ))
        })?;
    }
    let target = clients.target(to).await?;
    let ctx = release::Context::prepare(cfg, clients, &target).await?;
    let mut intent = Intent::new(ReleaseKind::Promote);
    intent.manifests = target_manifests(cfg, from, to, &source)?;
    intent.commit = source.commit;
    intent.wanted = Wanted::Exact(source.images);
    intent.source_environment = Some(from.name.clone());
    intent.source_revision = source.revision;
    intent.forced_source = forced;
    intent.seen = vec![source.state];
    let mut opts = super::options(cfg, to, &args.rollout);
    if let Some(shared) = shared {
        opts.gitops.clones = shared.clones.clone();
    }
    release::run_until_approved(&ctx, &intent, &opts, interrupt, args.wait_for_approval).await
}

/// The target's own manifests at the commit that runs in the source, with the source's digests:
/// config differs per environment, the bytes do not.
fn target_manifests(
    cfg: &ReleaseConfig,
    from: &Environment,
    to: &Environment,
    source: &SourceState,
) -> Result<Option<release::manifests::Desired>> {
    if to.manifests.is_none() {
        return Ok(None);
    }
    let commit = source.commit.as_ref().ok_or_else(|| {
        Failure::invalid(format!(
            "{} takes its manifests from the commit that runs in {}, but {}'s images are not those of its newest release record; deploy a commit to {} first",
            to.name, from.name, from.name, from.name
        ))
    })?;
    Ok(release::manifests::render(
        cfg,
        to,
        commit,
        &release::manifests::Pins::Exact(&source.images),
    )?)
}

/// One app's line in the `--all` summary. The `-o json` shape of `promote --all` is a list of these.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AppResult {
    config: PathBuf,
    app: Option<String>,
    exit_code: i32,
    outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<release::Report>,
    #[serde(skip_serializing_if = "String::is_empty")]
    message: String,
}

/// `promote FROM [TO] --all`: every app of a monorepo, `--concurrency` at a time, one summary.
/// Exits 0 when all succeeded (or had nothing to do); otherwise 1 if any app met an unexpected
/// error, else the highest exit code among the apps.
pub async fn run_all(global: &GlobalArgs, args: &PromoteArgs) -> Result<Outcome> {
    let configs = super::monorepo_configs(global)?;
    let shared = &Shared {
        clients: Clients::new(&global.kube_settings())?,
        clones: Clones::default(),
    };
    let interrupt = &super::interrupt();
    let results: Vec<AppResult> = futures::stream::iter(configs)
        .map(|path| promote_app(global, shared, args, interrupt, path))
        // Unordered: an app that finishes frees its slot at once instead of waiting behind a
        // slower one; the summary is sorted back into config order below.
        .buffer_unordered(usize::from(args.concurrency))
        .collect()
        .await;
    let mut results = results;
    results.sort_by(|a, b| a.config.cmp(&b.config));
    output::emit(global.output, &results, || summary_table(&results))?;
    Ok(worst_outcome(&results))
}

/// One app of `--all`: its config loaded, promoted, and its line of the summary.
async fn promote_app(
    global: &GlobalArgs,
    shared: &Shared,
    args: &PromoteArgs,
    interrupt: &release::Interrupt,
    path: PathBuf,
) -> AppResult {
    let loaded = config::load(&path);
    let app = loaded.as_ref().ok().map(|c| c.app.clone());
    let result = match &loaded {
        Ok(cfg) => promote(global, Some(shared), cfg, args, interrupt).await,
        Err(e) => Err(Failure::invalid(e.to_string()).into()),
    };
    let target = match &loaded {
        Ok(cfg) => target_name(cfg, args),
        Err(_) => args.to.clone().unwrap_or_default(),
    };
    let ran = super::ran_or_report(
        result,
        app.as_deref().unwrap_or("?"),
        &target,
        ReleaseKind::Promote,
    );
    let outcome = ran
        .end
        .as_ref()
        .map_or_else(|f| f.outcome, |()| ran.report.outcome);
    AppResult {
        config: path,
        app,
        exit_code: ExitCode::of(outcome, crate::cli::signals::received()).code(),
        outcome: ran.report.outcome,
        message: ran.end.err().map(|f| f.message).unwrap_or_default(),
        report: Some(ran.report),
    }
}

fn summary_table(results: &[AppResult]) -> String {
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            vec![
                r.app.clone().unwrap_or_else(|| "?".into()),
                r.outcome.to_string(),
                r.report
                    .as_ref()
                    .and_then(|rep| rep.revision)
                    .map_or("-".into(), |n| n.to_string()),
                r.exit_code.to_string(),
                r.message.lines().next().unwrap_or_default().to_string(),
            ]
        })
        .collect();
    output::table(&["APP", "OUTCOME", "REVISION", "EXIT", "MESSAGE"], &rows)
}

/// 0 when every app succeeded (or had nothing to do); otherwise 1 if any app met an unexpected
/// error, else the highest exit code among the apps — as the outcome `main` turns back into it.
fn worst_outcome(results: &[AppResult]) -> Outcome {
    let codes: Vec<i32> = results
        .iter()
        .map(|r| r.exit_code)
        .filter(|&c| c != 0)
        .collect();
    let worst = if codes.contains(&1) {
        1
    } else {
        codes.into_iter().max().unwrap_or(0)
    };
    match worst {
        0 => Outcome::Succeeded,
        2 => Outcome::Invalid,
        3 => Outcome::Denied,
        4 => Outcome::WaitingForApproval,
        5 => Outcome::Failed,
        6 => Outcome::TimedOut,
        7 => Outcome::Locked,
        _ => Outcome::Error,
    }
}

/// What runs in a promotion's source environment, ready to ship.
pub struct SourceState {
    /// `(workload, container) → repo@digest`, agreed on by every pod.
    pub images: BTreeMap<(WorkloadRef, String), String>,
    /// The commit of the source's newest record, when the live images are that record's.
    pub commit: Option<CommitSha>,
    pub revision: Option<u64>,
    /// Who released the source's newest record.
    pub deployer: Option<String>,
    /// The source as hooks see it, from the same read.
    pub state: hooks_sdk::EnvironmentState,
    /// The source's newest record: its verification Jobs, for a target that requires them.
    pub current: Option<crate::domain::Release>,
}

impl SourceState {
    pub fn digests(&self) -> Vec<String> {
        let mut d: Vec<String> = self
            .images
            .values()
            .filter_map(|i| i.rsplit_once('@').map(|(_, d)| d.to_string()))
            .collect();
        d.sort();
        d.dedup();
        d
    }
}

/// Reads the live state of `from`: every pod must agree on one digest per container and every
/// rollout must be complete, or it is a usage error naming the workload.
pub async fn source_state(
    cfg: &ReleaseConfig,
    clients: &Clients,
    from: &Environment,
) -> Result<SourceState> {
    let source = clients.target(from).await?;
    let gateway = KubeEnv::new(&source, cfg).await?;
    let EnvSnapshot {
        workloads: live,
        pods,
    } = gateway.snapshot().await?;
    if live.is_empty() {
        return Err(Failure::invalid(format!(
            "nothing to promote: no workload in {source} uses {}",
            cfg.image
        ))
        .into());
    }
    let images = crate::domain::promotion::source_images(&live, &pods, &cfg.image)
        .map_err(|why| Failure::invalid(format!("cannot promote from {}: {why}", from.name)))?;
    let record = gateway.history().await?.into_iter().next();
    let commit = record
        .as_ref()
        .filter(|r| {
            r.images()
                .iter()
                .all(|(k, v)| images.get(k).is_none_or(|i| i == v))
        })
        .and_then(|r| r.commit.clone());
    Ok(SourceState {
        state: crate::domain::hook_request::environment_state(
            &from.name,
            &source.namespace,
            from.promote_from.as_deref(),
            &live,
            &pods,
            &cfg.image,
        ),
        images,
        commit,
        deployer: record.as_ref().map(|r| r.actor.user.clone()),
        revision: record.as_ref().map(|r| r.revision),
        current: record,
    })
}
