//! `preview up|down|list|gc`: one environment per pull request, in its own namespace, made
//! from the environment `previews.from` names and released by the same engine as a deploy
//! (lock, hooks, records and wait in an environment named `preview`).

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use super::{deploy, interrupt, options, ran_or_report};
use crate::cli::{GlobalArgs, PreviewCommand, PreviewGcArgs, PreviewPrArgs, PreviewUpArgs};
use crate::cluster::Clients;
use crate::cluster::previews::Previews;
use crate::config::{Environment, PreviewsConfig, ReleaseConfig};
use crate::domain::preview::{self, GcReason, PrNumber, Preview, Reachable, Readiness};
use crate::domain::{Failure, Outcome, ReleaseKind};
use crate::release::manifests::Pins;
use crate::release::{self, Intent, Ran, Report, Wanted};

/// How long `down` and `gc` wait for a namespace to be gone.
const DELETE_TIMEOUT: Duration = Duration::from_secs(300);

pub async fn run(
    global: &GlobalArgs,
    cfg: &ReleaseConfig,
    command: &PreviewCommand,
) -> Result<Outcome> {
    match command {
        PreviewCommand::Up(args) => up(global, cfg, args).await,
        PreviewCommand::Down(args) => down(global, cfg, args).await,
        PreviewCommand::List => list(global, cfg).await,
        PreviewCommand::Gc(args) => gc(global, cfg, args).await,
    }
}

/// The previews section, or a usage error saying how to add one; `-n` does not apply.
fn section<'c>(global: &GlobalArgs, cfg: &'c ReleaseConfig) -> Result<&'c PreviewsConfig> {
    if global.namespace.is_some() {
        return Err(Failure::invalid(
            "-n/--namespace does not apply to previews: their namespaces come from `previews.namespace`",
        )
        .into());
    }
    cfg.previews.as_ref().ok_or_else(|| {
        Failure::invalid(format!(
            "{} has no `previews:` section; add one, e.g. `previews: {{from: qa}}`",
            cfg.path.display()
        ))
        .into()
    })
}

/// The preview environment of `pr`: `from`'s manifests in the preview's namespace.
fn environment(p: &PreviewsConfig, cfg: &ReleaseConfig, pr: PrNumber) -> Result<Environment> {
    let from = cfg.environment(&p.from)?;
    let namespace = preview::namespace_name(&p.namespace, &cfg.app, pr);
    Ok(p.environment(from, &namespace))
}

/// A client for the previews' context, and the namespaces through it.
async fn previews_client(
    global: &GlobalArgs,
    cfg: &ReleaseConfig,
    p: &PreviewsConfig,
) -> Result<Previews> {
    let env = p.environment(cfg.environment(&p.from)?, "default");
    let clients = Clients::new(&global.kube_settings())?;
    let target = clients.target(&env).await?;
    Ok(Previews::new(&target.client))
}

// --- up ----------------------------------------------------------------------------------------

/// What `preview up -o json` prints: the release's report and where the preview is.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UpResult<'r> {
    #[serde(flatten)]
    report: &'r Report,
    preview: PreviewPlace,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PreviewPlace {
    pr: PrNumber,
    namespace: String,
    expires_at: Option<String>,
    #[serde(flatten)]
    reachable: Reachable,
}

async fn up(global: &GlobalArgs, cfg: &ReleaseConfig, args: &PreviewUpArgs) -> Result<Outcome> {
    let interrupt = interrupt();
    let mut place = None;
    let ran = up_release(global, cfg, args, &interrupt, &mut place).await;
    let ran = ran_or_report(ran, &cfg.app, preview::ENVIRONMENT, ReleaseKind::Deploy);
    let result = UpResult {
        report: &ran.report,
        preview: place.unwrap_or_else(|| PreviewPlace {
            pr: PrNumber::parse(&args.pr).unwrap_or(PrNumber(0)),
            namespace: String::new(),
            expires_at: None,
            reachable: Reachable::default(),
        }),
    };
    crate::output::emit(global.output, &result, || {
        ran.report.render() + &render_place(&result.preview)
    })?;
    match ran.end {
        Ok(()) => Ok(ran.report.outcome),
        Err(failure) => Err(failure.into()),
    }
}

fn render_place(place: &PreviewPlace) -> String {
    if place.namespace.is_empty() {
        return String::new();
    }
    let mut out = format!("\nPreview of #{}: namespace {}", place.pr, place.namespace);
    if let Some(at) = &place.expires_at {
        out.push_str(&format!(", expires {at}"));
    }
    out.push('\n');
    for svc in &place.reachable.services {
        out.push_str(&format!("  service {svc}\n"));
    }
    for host in &place.reachable.hosts {
        out.push_str(&format!("  ingress host {host}\n"));
    }
    out
}

/// Checks, resolves and renders everything before the cluster is touched; then makes or
/// refreshes the namespace and releases into it.
async fn up_release(
    global: &GlobalArgs,
    cfg: &ReleaseConfig,
    args: &PreviewUpArgs,
    interrupt: &release::Interrupt,
    place: &mut Option<PreviewPlace>,
) -> Result<Ran> {
    let p = section(global, cfg)?;
    let pr = PrNumber::parse(&args.pr)?;
    let env = environment(p, cfg, pr)?;
    let commit = deploy::resolve_commit(cfg, &args.revision)?;
    let digest = deploy::commit_digest(cfg, &args.revision, &commit).await?;
    tracing::info!(%commit, %digest, "resolved the commit's image");
    let manifests = release::manifests::render(cfg, &env, &commit, &Pins::Digest(&digest))?;

    let clients = Clients::new(&global.kube_settings())?;
    let target = clients.target(&env).await?;
    let previews = Previews::new(&target.client);
    let live = previews.list(&cfg.app).await?;
    preview::check_limit(&live, pr, p.max)?;
    let existed = live.iter().any(|l| l.namespace == env.namespace);
    let expires = preview::expires_at(jiff::Timestamp::now(), p.ttl);
    let opts = options(cfg, &env, &args.rollout);
    if !opts.dry_run {
        let meta = preview::metadata(&cfg.app, pr, commit.as_str(), &target.kube_user, expires);
        previews.apply(&env.namespace, &meta).await?;
    }

    let ctx = release::Context::prepare(cfg, &clients, &target).await?;
    let mut intent = Intent::new(ReleaseKind::Deploy);
    intent.manifests = manifests;
    intent.image_tag = Some(format!("{}:{commit}", cfg.image));
    intent.commit = Some(commit);
    intent.wanted = Wanted::Digest(digest);
    let ran = release::run(&ctx, &intent, &opts, interrupt).await;
    if !existed && !opts.dry_run && ran.report.revision.is_none() && ran.end.is_err() {
        // A first preview refused before anything changed leaves no namespace behind.
        if let Err(e) = previews.delete(&env.namespace, DELETE_TIMEOUT).await {
            tracing::warn!("cannot delete the refused preview's namespace: {e:#}");
        }
        return Ok(ran);
    }
    let reachable = previews
        .reachable(&env.namespace)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!("cannot read the preview's Services: {e:#}");
            Reachable::default()
        });
    *place = Some(PreviewPlace {
        pr,
        namespace: env.namespace.clone(),
        expires_at: (!opts.dry_run).then(|| expires.to_string()),
        reachable,
    });
    Ok(ran)
}

// --- down --------------------------------------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Deleted {
    pr: Option<PrNumber>,
    namespace: String,
    /// Why `gc` deleted it.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<GcReason>,
    /// False: there was nothing to delete.
    deleted: bool,
}

async fn down(global: &GlobalArgs, cfg: &ReleaseConfig, args: &PreviewPrArgs) -> Result<Outcome> {
    let p = section(global, cfg)?;
    let pr = PrNumber::parse(&args.pr)?;
    let namespace = preview::namespace_name(&p.namespace, &cfg.app, pr);
    let previews = previews_client(global, cfg, p).await?;
    // Only a namespace labelled as this app's preview is deleted.
    let ours = previews
        .list(&cfg.app)
        .await?
        .iter()
        .any(|l| l.namespace == namespace);
    let deleted = ours && previews.delete(&namespace, DELETE_TIMEOUT).await?;
    let result = Deleted {
        pr: Some(pr),
        namespace: namespace.clone(),
        reason: None,
        deleted,
    };
    crate::output::emit(global.output, &result, || {
        if deleted {
            format!("Deleted the preview of #{pr}: namespace {namespace} is gone\n")
        } else {
            format!("No preview of #{pr} (namespace {namespace}): nothing to delete\n")
        }
    })?;
    Ok(Outcome::Succeeded)
}

// --- list --------------------------------------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Listed {
    #[serde(flatten)]
    preview: Preview,
    ready: Option<Readiness>,
}

async fn list(global: &GlobalArgs, cfg: &ReleaseConfig) -> Result<Outcome> {
    let p = section(global, cfg)?;
    let previews = previews_client(global, cfg, p).await?;
    let mut listed = Vec::new();
    for preview in previews.list(&cfg.app).await? {
        let ready = if preview.terminating {
            None
        } else {
            Some(previews.readiness(&preview.namespace, &cfg.app).await?)
        };
        listed.push(Listed { preview, ready });
    }
    crate::output::emit(global.output, &listed, || render_list(&listed))?;
    Ok(Outcome::Succeeded)
}

fn render_list(listed: &[Listed]) -> String {
    if listed.is_empty() {
        return "No previews.\n".into();
    }
    let now = jiff::Timestamp::now();
    let rows: Vec<Vec<String>> = listed
        .iter()
        .map(|l| {
            let p = &l.preview;
            vec![
                p.pr.map_or("?".into(), |n| format!("#{n}")),
                p.namespace.clone(),
                p.commit
                    .as_deref()
                    .map_or("-".into(), |c| c.chars().take(12).collect()),
                p.created_at
                    .map_or("?".into(), |t| crate::output::age(&t.to_string())),
                expiry(p, now),
                match (p.terminating, l.ready) {
                    (true, _) => "terminating".into(),
                    (false, Some(r)) => r.to_string(),
                    (false, None) => "-".into(),
                },
            ]
        })
        .collect();
    crate::output::table(
        &["PR", "NAMESPACE", "COMMIT", "AGE", "EXPIRES", "READY"],
        &rows,
    )
}

/// `in 3h`, `expired 2m ago`, or `never`.
fn expiry(p: &Preview, now: jiff::Timestamp) -> String {
    match p.expires_at {
        None => "never".into(),
        Some(at) if p.expired(now) => {
            format!("expired {} ago", crate::output::age(&at.to_string()))
        }
        Some(at) => {
            let secs = at.duration_since(now).as_secs();
            match secs {
                s if s < 120 => format!("in {s}s"),
                s if s < 7200 => format!("in {}m", s / 60),
                s if s < 172_800 => format!("in {}h", s / 3600),
                s => format!("in {}d", s / 86_400),
            }
        }
    }
}

// --- gc ----------------------------------------------------------------------------------------

async fn gc(global: &GlobalArgs, cfg: &ReleaseConfig, args: &PreviewGcArgs) -> Result<Outcome> {
    let p = section(global, cfg)?;
    let keep = match &args.keep {
        Some(list) => Some(
            list.iter()
                .filter(|s| !s.trim().is_empty())
                .map(|s| PrNumber::parse(s))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    let previews = previews_client(global, cfg, p).await?;
    let live = previews.list(&cfg.app).await?;
    let mut deleted = Vec::new();
    for (preview, reason) in preview::to_collect(&live, jiff::Timestamp::now(), keep.as_deref()) {
        let gone = previews.delete(&preview.namespace, DELETE_TIMEOUT).await?;
        deleted.push(Deleted {
            pr: preview.pr,
            namespace: preview.namespace.clone(),
            reason: Some(reason),
            deleted: gone,
        });
    }
    crate::output::emit(global.output, &deleted, || render_gc(&deleted))?;
    Ok(Outcome::Succeeded)
}

fn render_gc(deleted: &[Deleted]) -> String {
    if deleted.is_empty() {
        return "No preview to delete.\n".into();
    }
    let mut out = String::new();
    for d in deleted {
        let why = match d.reason {
            Some(GcReason::NotKept) => "its pull request is not among --keep",
            _ => "expired",
        };
        let pr = d.pr.map_or("?".into(), |n| format!("#{n}"));
        out.push_str(&format!(
            "Deleted the preview of {pr} (namespace {}): {why}\n",
            d.namespace
        ));
    }
    out
}
