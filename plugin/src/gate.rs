//! The hook gate: builds the `HookRequest` a release's hooks see, runs the hooks of a phase in
//! the sandbox, and turns their verdicts into a decision. Hooks never call back into the host,
//! so everything they could need is gathered here first — and only when a hook will run.

use anyhow::{Context, Result};
use hooks_sdk::{Approval, HookRequest, Phase};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use crate::approvals::{Approvals, Standing, standing};
use crate::config::{HookConfig, ReleaseConfig};
use crate::exit::{ExitCode, Failure};
use crate::hooks::{HookEngine, LoadedHook};
use crate::kube_client::{Clients, EnvTarget};
use crate::oci_modules::ModuleStore;
use crate::plan::{ContainerChange, ReleaseKind};
use crate::records::{Actor, Release};
use crate::release::Intent;
use crate::workloads::{self, Workload};

use crate::hooks::Outcome;
pub use crate::hooks::PhaseReport;

/// The hooks that apply to the target environment — the cluster policy's, then the app's —
/// loaded and verified, and what is needed to describe a release to them.
pub struct Gate<'a> {
    config: &'a ReleaseConfig,
    clients: &'a Clients,
    target: &'a EnvTarget,
    actor: Actor,
    /// The cluster policy's hooks: they run first, and no release.yaml can remove them.
    policy_hooks: Vec<LoadedHook>,
    app_hooks: Vec<LoadedHook>,
}

impl<'a> Gate<'a> {
    /// Loads every hook that applies to the target environment: the cluster policy's modules
    /// are fetched by digest and verified, pins are checked and settings validated now, before
    /// anything else happens, so a broken hook setup changes nothing.
    pub async fn load(
        config: &'a ReleaseConfig,
        clients: &'a Clients,
        target: &'a EnvTarget,
        actor: &Actor,
    ) -> Result<Gate<'a>> {
        let policy = crate::policy::load_for(target).await?;
        let policy_configs =
            crate::policy::fetch_modules(&policy, &ModuleStore::default_location()).await?;
        let app_configs: Vec<HookConfig> = config
            .hooks
            .iter()
            .filter(|h| {
                Phase::ALL
                    .iter()
                    .any(|&p| h.applies_to(p, &target.env.name))
            })
            .cloned()
            .collect();
        let (mut policy_hooks, mut app_hooks) = (Vec::new(), Vec::new());
        if !policy_configs.is_empty() || !app_configs.is_empty() {
            let engine = shared_engine()?;
            for hook_config in policy_configs {
                let hook = load_hook(&engine, hook_config).await?.map_err(|e| {
                    Failure::new(
                        ExitCode::Denied,
                        format!("cluster policy hook: {e}; the release is denied"),
                    )
                })?;
                policy_hooks.push(hook.with_source(crate::policy::SOURCE));
            }
            for hook_config in app_configs {
                let name = hook_config.name.clone();
                let hook = load_hook(&engine, hook_config).await?.map_err(|e| {
                    Failure::usage(format!("hook `{name}` in {}: {e}", config.path.display()))
                })?;
                app_hooks.push(hook);
            }
        }
        Ok(Gate {
            config,
            clients,
            target,
            actor: actor.clone(),
            policy_hooks,
            app_hooks,
        })
    }

    /// Runs the pre-phase hooks of `intent`'s kind; also returns the approvals they were shown.
    pub async fn pre_phase(
        &self,
        intent: &Intent,
        changes: &[ContainerChange],
        workloads: &[Workload],
        history: &[Release],
        revision: u64,
    ) -> Result<(PhaseReport, Vec<Approval>)> {
        let phase = match intent.kind {
            ReleaseKind::Deploy => Phase::PreDeploy,
            ReleaseKind::Promote => Phase::PrePromote,
            ReleaseKind::Rollback => Phase::PreRollback,
        };
        self.run(phase, intent, changes, workloads, history, revision)
            .await
    }

    /// Runs the post-deploy hooks (their verdicts are reported and recorded, nothing more).
    pub async fn post_deploy(
        &self,
        intent: &Intent,
        changes: &[ContainerChange],
        workloads: &[Workload],
        history: &[Release],
        revision: u64,
    ) -> Result<(PhaseReport, Vec<Approval>)> {
        self.run(
            Phase::PostDeploy,
            intent,
            changes,
            workloads,
            history,
            revision,
        )
        .await
    }

    async fn run(
        &self,
        phase: Phase,
        intent: &Intent,
        changes: &[ContainerChange],
        workloads: &[Workload],
        history: &[Release],
        revision: u64,
    ) -> Result<(PhaseReport, Vec<Approval>)> {
        let select = |hooks: &[LoadedHook]| -> Vec<LoadedHook> {
            hooks
                .iter()
                .filter(|h| h.config().applies_to(phase, &self.target.env.name))
                .cloned()
                .collect()
        };
        let (policy, app) = (select(&self.policy_hooks), select(&self.app_hooks));
        if policy.is_empty() && app.is_empty() {
            return Ok((PhaseReport::empty(phase), Vec::new()));
        }
        let base = self
            .request(phase, intent, changes, workloads, history, revision)
            .await?;
        let make_request = |hook: &LoadedHook| {
            let mut req = base.clone();
            req.hook = hook.config().name.clone();
            req.settings = hook.config().settings.clone();
            req
        };
        // The cluster's rules first, then the app's: one report, policy verdicts leading.
        let mut report = crate::hooks::run_phase(&policy, phase, make_request).await;
        report.verdicts.extend(
            crate::hooks::run_phase(&app, phase, make_request)
                .await
                .verdicts,
        );
        Ok((report, base.approvals))
    }

    /// The request every hook of the phase sees (name and settings filled in per hook).
    async fn request(
        &self,
        phase: Phase,
        intent: &Intent,
        changes: &[ContainerChange],
        workloads: &[Workload],
        history: &[Release],
        revision: u64,
    ) -> Result<HookRequest> {
        let ns = &self.target.namespace;
        let containers = changes
            .iter()
            .map(|c| hooks_sdk::ContainerChange {
                workload: workload_ref(&c.workload, ns),
                container: c.container.clone(),
                image_before: Some(c.before.clone()),
                image_after: c.after.clone(),
                digest_after: c.digest().to_string(),
            })
            .collect();
        Ok(HookRequest {
            api_version: hooks_sdk::API_VERSION.into(),
            kind: hooks_sdk::REQUEST_KIND.into(),
            phase,
            hook: String::new(),
            settings: serde_json::Value::Null,
            app: self.config.app.clone(),
            actor: hooks_sdk::Actor {
                user: self.actor.user.clone(),
                groups: self.actor.groups.clone(),
                verified: self.actor.verified,
            },
            now: jiff::Timestamp::now().to_string(),
            release: hooks_sdk::Release {
                kind: intent.kind,
                revision: Some(revision),
                commit: intent.commit.as_ref().map(ToString::to_string),
                target_environment: self.target.env.name.clone(),
                source_environment: intent.source_environment.clone(),
                forced_source: intent.forced_source,
                containers,
            },
            workloads: workloads_as_applied(workloads, changes),
            environments: self.environments().await?,
            approvals: Approvals::new(self.target, &self.config.app).list().await?,
            history: history.iter().take(10).map(summary).collect(),
        })
    }

    /// Every environment's running images and the digests its pods report.
    async fn environments(&self) -> Result<Vec<hooks_sdk::EnvironmentState>> {
        let reads = self.config.environments.iter().map(|env| async move {
            let target = if env.name == self.target.env.name {
                self.target.clone()
            } else {
                self.clients.target(env).await?
            };
            let live = crate::release::live_workloads(self.config, &target).await?;
            let pods: Api<Pod> = Api::namespaced(target.client.clone(), &target.namespace);
            let pods = pods
                .list(&ListParams::default())
                .await
                .with_context(|| format!("cannot list pods in {target}"))?
                .items;
            Ok::<_, anyhow::Error>(hooks_sdk::EnvironmentState {
                name: env.name.clone(),
                namespace: target.namespace.clone(),
                promote_from: env.promote_from.clone(),
                containers: running_containers(&live, &pods, &self.config.image, &target.namespace),
            })
        });
        futures::future::try_join_all(reads).await
    }
}

fn workload_ref(w: &workloads::WorkloadRef, namespace: &str) -> hooks_sdk::WorkloadRef {
    hooks_sdk::WorkloadRef::new(format!("{:?}", w.kind), namespace, w.name.clone())
}

/// The workloads as they will be after the patch: the hook judges what will run.
fn workloads_as_applied(
    workloads: &[Workload],
    changes: &[ContainerChange],
) -> Vec<serde_json::Value> {
    workloads
        .iter()
        .map(|w| {
            let mut value = serde_json::to_value(&w.object).unwrap_or_default();
            value["apiVersion"] = w.id.kind.api_resource("v1").api_version.into();
            value["kind"] = format!("{:?}", w.id.kind).into();
            let mut path = String::new();
            for key in w.id.kind.pod_spec_path() {
                path.push('/');
                path.push_str(key);
            }
            for field in ["containers", "initContainers"] {
                if let Some(list) = value
                    .pointer_mut(&format!("{path}/{field}"))
                    .and_then(|v| v.as_array_mut())
                {
                    for container in list {
                        let name = container["name"].as_str().unwrap_or_default().to_string();
                        if let Some(c) = changes
                            .iter()
                            .find(|c| c.workload == w.id && c.container == name)
                        {
                            container["image"] = c.after.clone().into();
                        }
                    }
                }
            }
            value
        })
        .collect()
}

/// Per app container: its image and the distinct digests its pods report in `imageID`.
pub fn running_containers(
    live: &[Workload],
    pods: &[Pod],
    repository: &str,
    namespace: &str,
) -> Vec<hooks_sdk::RunningContainer> {
    let mut out = Vec::new();
    for w in live {
        for c in w.app_containers(repository) {
            let mut digests = w.pod_digests(pods, &c.name);
            // A CronJob has no pods between runs: the digest its spec pins is what it runs.
            if !w.id.kind.has_rollout()
                && let Some(pinned) = crate::registry::ImageRef::parse(&c.image).digest
            {
                digests.push(pinned);
            }
            digests.sort();
            digests.dedup();
            out.push(hooks_sdk::RunningContainer {
                workload: workload_ref(&w.id, namespace),
                container: c.name,
                image: c.image,
                digests,
            });
        }
    }
    out
}

fn summary(r: &Release) -> hooks_sdk::ReleaseSummary {
    hooks_sdk::ReleaseSummary {
        revision: r.revision,
        commit: r
            .commit
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        actor: r.actor.user.clone(),
        at: r.finished_at.clone(),
        outcome: match r.outcome {
            crate::records::Outcome::Succeeded => hooks_sdk::ReleaseOutcome::Succeeded,
            crate::records::Outcome::Failed => hooks_sdk::ReleaseOutcome::Failed,
            crate::records::Outcome::RolledBack => hooks_sdk::ReleaseOutcome::RolledBack,
        },
        kind: r.kind,
        source_environment: r.source_environment.clone(),
    }
}

/// Hook verdicts (as recorded JSON) for the table output.
pub fn render_verdicts(verdicts: &[serde_json::Value]) -> String {
    let rows: Vec<Vec<String>> = verdicts
        .iter()
        .map(|v| {
            let text = |k: &str| {
                v.get(k)
                    .and_then(|x| x.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            let outcome = v.get("outcome").cloned().unwrap_or_default();
            let verdict = outcome
                .get("verdict")
                .and_then(|x| x.as_str())
                .unwrap_or("?")
                .to_string();
            let message = outcome
                .get("message")
                .or_else(|| outcome.get("error"))
                .and_then(|x| x.as_str())
                .unwrap_or_default()
                .to_string();
            vec![text("hook"), text("phase"), verdict, message]
        })
        .collect();
    crate::output::table(&["HOOK", "PHASE", "VERDICT", "MESSAGE"], &rows)
}

/// The approvals that count for releasing `digests` now.
pub fn valid_approvals(approvals: &[Approval], digests: &[String]) -> Vec<Approval> {
    let now = jiff::Timestamp::now();
    approvals
        .iter()
        .filter(|a| standing(a, digests, now) == Standing::Valid)
        .cloned()
        .collect()
}

/// The field hooks put on violations that approvals would resolve (see hooks-sdk's README).
pub const APPROVALS_FIELD: &str = "approvals";

/// True when every denying hook denied only for want of approvals: the release is not refused,
/// it is waiting (exit 4), and `--wait-for-approval` may see it through.
pub fn only_missing_approvals(report: &PhaseReport) -> bool {
    let denying: Vec<_> = report.verdicts.iter().filter(|v| v.denies()).collect();
    !denying.is_empty()
        && denying.iter().all(|v| match &v.outcome {
            Outcome::Denied { violations, .. } => {
                !violations.is_empty()
                    && violations
                        .iter()
                        .all(|x| x.field.as_deref() == Some(APPROVALS_FIELD))
            }
            _ => false,
        })
}

/// The approval hooks' own words, e.g. "1 of 2 approvals …".
pub fn approval_messages(report: &PhaseReport) -> String {
    report
        .verdicts
        .iter()
        .filter(|v| v.denies())
        .flat_map(|v| match &v.outcome {
            Outcome::Denied { violations, .. } => {
                violations.iter().map(|x| x.message.clone()).collect()
            }
            _ => Vec::new(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One sandbox engine per process: `promote --all` loads hooks for many apps at once, and each
/// engine has its own compiler state and epoch thread (measured: ~2 MB and a thread per app).
fn shared_engine() -> Result<HookEngine> {
    static ENGINE: std::sync::OnceLock<HookEngine> = std::sync::OnceLock::new();
    if let Some(engine) = ENGINE.get() {
        return Ok(engine.clone());
    }
    let engine = HookEngine::new(None).context("cannot start the hook sandbox")?;
    Ok(ENGINE.get_or_init(|| engine).clone())
}

/// Loads one hook on a blocking thread (reading, verifying and maybe compiling the module),
/// then asks it whether its settings are valid: a bad setting is found before any release
/// starts. A hook that cannot even answer that is broken: under `failurePolicy: Ignore` that is
/// a warning (its verdicts will be errors, ignored too); under `Fail` it stops here.
async fn load_hook(engine: &HookEngine, config: HookConfig) -> Result<Result<LoadedHook, String>> {
    let engine = engine.clone();
    Ok(tokio::task::spawn_blocking(move || {
        let hook = engine.load(&config).map_err(|e| e.to_string())?;
        match hook.validate_settings(&config.settings) {
            Ok(verdict) if verdict.allowed => Ok(hook),
            Ok(verdict) => Err(format!(
                "its settings are invalid: {}",
                verdict.message.or_else(|| verdict.violations.first().map(|v| v.message.clone())).unwrap_or_default()
            )),
            Err(e) if config.failure_policy == crate::config::FailurePolicy::Ignore => {
                tracing::warn!(hook = %config.name, "hook cannot validate its settings (failurePolicy: Ignore): {e}");
                Ok(hook)
            }
            Err(e) => Err(format!("it cannot validate its settings: {e}")),
        }
    })
    .await?)
}
