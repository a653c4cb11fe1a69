//! The hook gate: loads the hooks that apply to the target environment (the cluster policy's,
//! then the app's), builds each phase's request from what the release already read, runs the
//! phase in the sandbox and judges the verdicts.

use anyhow::{Context as _, Result};
use hooks_sdk::{Approval, EnvironmentState, Phase};
use k8s_openapi::api::core::v1::Pod;

use super::generated::Mandated;
use super::policy;
use crate::artifacts::oci_modules::ModuleStore;
use crate::cluster::approvals::Approvals;
use crate::cluster::{Clients, EnvGateway as _, EnvTarget, KubeEnv};
use crate::config::{HookConfig, Need, ReleaseConfig};
use crate::domain::hook_request::{self, Facts};
use crate::domain::{Failure, Outcome, Verdict, VerdictOutcome};
use crate::hooks::{HookEngine, LoadedHook, PhaseReport};

/// The field hooks put on violations that approvals would resolve (see hooks-sdk's README).
pub const APPROVALS_FIELD: &str = "approvals";

/// The hooks that apply to one target environment, loaded and verified.
pub struct Gate<'a> {
    /// Where other environments and approvals are read from; `None` for a gate without hooks.
    reach: Option<(&'a Clients, &'a EnvTarget)>,
    config: Option<&'a ReleaseConfig>,
    /// The cluster policy's hooks: they run first, and no release.yaml can remove them.
    policy_hooks: Vec<LoadedHook>,
    app_hooks: Vec<LoadedHook>,
    /// The generator the cluster policy mandates for the target's namespace.
    mandated: Option<Mandated>,
    /// The target's approvals, read once for every phase of one run of the release (a run
    /// waiting for approvals starts again with [`Gate::forget_approvals`]).
    approvals: std::sync::Mutex<Option<Vec<Approval>>>,
}

/// What one phase's hooks decided.
#[derive(Debug, Default)]
pub struct Judgement {
    pub verdicts: Vec<Verdict>,
    /// The approvals the hooks were shown.
    pub approvals: Vec<Approval>,
    /// The denial in words (empty when allowed).
    pub denial: String,
}

impl Judgement {
    pub fn denied(&self) -> bool {
        self.verdicts.iter().any(Verdict::denies)
    }

    /// True when every denying hook denied only for want of approvals: the release is not
    /// refused, it is waiting, and `--wait-for-approval` may see it through.
    pub fn only_missing_approvals(&self) -> bool {
        let denying: Vec<&Verdict> = self.verdicts.iter().filter(|v| v.denies()).collect();
        !denying.is_empty()
            && denying.iter().all(|v| match &v.outcome {
                VerdictOutcome::Denied { violations, .. } => {
                    !violations.is_empty()
                        && violations
                            .iter()
                            .all(|x| x.field.as_deref() == Some(APPROVALS_FIELD))
                }
                _ => false,
            })
    }

    /// The approval hooks' own words, e.g. "1 of 2 approvals …".
    pub fn approval_messages(&self) -> String {
        let mut out = Vec::new();
        for v in self.verdicts.iter().filter(|v| v.denies()) {
            if let VerdictOutcome::Denied { violations, .. } = &v.outcome {
                out.extend(violations.iter().map(|x| x.message.clone()));
            }
        }
        out.join("; ")
    }

    /// Warnings of every verdict; `may_stop` is false for phases whose verdicts cannot stop the
    /// release (post-deploy), so their denials and errors become warnings too.
    pub fn warnings(&self, may_stop: bool) -> Vec<String> {
        self.verdicts
            .iter()
            .flat_map(|v| v.warnings(may_stop))
            .collect()
    }

    /// The outcome and message a denial gives the release.
    pub fn failure(&self) -> Failure {
        if self.only_missing_approvals() {
            Failure::new(
                Outcome::WaitingForApproval,
                format!("waiting for approval: {}", self.approval_messages()),
            )
        } else {
            Failure::new(Outcome::Denied, self.denial.clone())
        }
    }
}

/// What the target environment holds, for a phase's request.
pub struct TargetState<'s> {
    pub workloads: &'s [crate::domain::Workload],
    pub pods: &'s [Pod],
}

impl<'a> Gate<'a> {
    /// A gate with no hooks: every phase allows at once (and reads nothing).
    pub fn none() -> Gate<'static> {
        Gate {
            reach: None,
            config: None,
            policy_hooks: Vec::new(),
            app_hooks: Vec::new(),
            mandated: None,
            approvals: std::sync::Mutex::new(None),
        }
    }

    /// Loads every hook that applies to the target environment: the cluster policy's modules
    /// are fetched by digest and verified, pins are checked and settings validated now, before
    /// anything else happens, so a broken hook setup changes nothing.
    pub async fn load(
        config: &'a ReleaseConfig,
        clients: &'a Clients,
        target: &'a EnvTarget,
    ) -> Result<Gate<'a>> {
        let policy = policy::load_for(target).await?;
        let store = ModuleStore::default_location();
        let policy_configs = policy::fetch_modules(&policy.hooks, &store).await?;
        let mandated = match &policy.generator {
            Some(generator) => Some(load_mandated(generator, &store).await?),
            None => None,
        };
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
                        Outcome::Denied,
                        format!("cluster policy {e}; the release is denied"),
                    )
                })?;
                policy_hooks.push(hook.with_source(policy::SOURCE));
            }
            for hook_config in app_configs {
                let hook = load_hook(&engine, hook_config)
                    .await?
                    .map_err(|e| Failure::invalid(format!("{}: {e}", config.path.display())))?;
                app_hooks.push(hook);
            }
        }
        Ok(Gate {
            reach: Some((clients, target)),
            config: Some(config),
            policy_hooks,
            app_hooks,
            mandated,
            approvals: std::sync::Mutex::new(None),
        })
    }

    /// The generator the cluster policy mandates for the target's namespace, if any.
    pub fn mandated_generator(&self) -> Option<&Mandated> {
        self.mandated.as_ref()
    }

    /// Forgets the approvals read so far: the next phase reads them again.
    pub fn forget_approvals(&self) {
        *self
            .approvals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    async fn approvals_of(&self, env: &EnvTarget, app: &str) -> Result<Vec<Approval>> {
        let known = self
            .approvals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(known) = known {
            return Ok(known);
        }
        let read = Approvals::new(env, app).list().await?;
        *self
            .approvals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(read.clone());
        Ok(read)
    }

    /// Runs the hooks of `facts.phase`; `target` is what the release read of its environment.
    pub async fn judge(&self, mut facts: Facts<'_>, target: TargetState<'_>) -> Result<Judgement> {
        let phase = facts.phase;
        let select = |hooks: &[LoadedHook]| crate::hooks::select(hooks, phase, facts.target);
        let (policy, app) = (select(&self.policy_hooks), select(&self.app_hooks));
        let (Some((clients, env)), Some(config)) = (self.reach, self.config) else {
            return Ok(Judgement::default());
        };
        if policy.is_empty() && app.is_empty() {
            return Ok(Judgement::default());
        }
        let needs_all = policy
            .iter()
            .chain(&app)
            .any(|h| h.config().needs.contains(&Need::Environments));
        let seen = std::mem::take(&mut facts.environments);
        facts.environments = self
            .environments(
                config,
                clients,
                env,
                &target,
                phase,
                facts.changes,
                &seen,
                needs_all,
            )
            .await?;
        facts.approvals = self.approvals_of(env, &config.app).await?;
        let approvals = facts.approvals.clone();
        let request = hook_request::request(facts);
        // The cluster's rules first, then the app's: one report, policy verdicts leading.
        let mut report = crate::hooks::run_phase(&policy, phase, &request).await;
        report.verdicts.extend(
            crate::hooks::run_phase(&app, phase, &request)
                .await
                .verdicts,
        );
        Ok(judgement(&report, approvals))
    }

    /// The target's state from what the release read (after a rollout: its new digests), and
    /// every other environment's only when a hook of the phase needs them.
    #[allow(clippy::too_many_arguments)]
    async fn environments(
        &self,
        config: &ReleaseConfig,
        clients: &Clients,
        env: &EnvTarget,
        target: &TargetState<'_>,
        phase: Phase,
        changes: &[crate::domain::ContainerChange],
        seen: &[EnvironmentState],
        needs_all: bool,
    ) -> Result<Vec<EnvironmentState>> {
        let mut own = hook_request::environment_state(
            &env.env.name,
            &env.namespace,
            env.env.promote_from.as_deref(),
            target.workloads,
            target.pods,
            &config.image,
        );
        if phase == Phase::PostDeploy {
            own = hook_request::after_rollout(own, changes);
        }
        let known = |name: &str| {
            (name == env.env.name)
                .then(|| own.clone())
                .or_else(|| seen.iter().find(|s| s.name == name).cloned())
        };
        if !needs_all {
            let mut states = vec![own.clone()];
            states.extend(seen.iter().filter(|s| s.name != env.env.name).cloned());
            return Ok(states);
        }
        let reads = config.environments.iter().map(|other| {
            let known = known(&other.name);
            async move {
                match known {
                    Some(state) => Ok(state),
                    None => read_environment(config, clients, other).await,
                }
            }
        });
        futures::future::try_join_all(reads).await
    }
}

/// Another environment's state, for hooks that declare `needs: [environments]`.
async fn read_environment(
    config: &ReleaseConfig,
    clients: &Clients,
    env: &crate::config::Environment,
) -> Result<EnvironmentState> {
    let target = clients.target(env).await?;
    let gateway = KubeEnv::new(&target, config).await?;
    let snapshot = gateway.snapshot().await.with_context(|| {
        format!("a hook declares `needs: [environments]`, so {target} must be readable")
    })?;
    Ok(hook_request::environment_state(
        &env.name,
        &target.namespace,
        env.promote_from.as_deref(),
        &snapshot.workloads,
        &snapshot.pods,
        &config.image,
    ))
}

fn judgement(report: &PhaseReport, approvals: Vec<Approval>) -> Judgement {
    Judgement {
        verdicts: report
            .verdicts
            .iter()
            .map(|v| v.recorded(report.phase))
            .collect(),
        approvals,
        denial: if report.denied() {
            report.render()
        } else {
            String::new()
        },
    }
}

/// One sandbox engine per process: `promote --all` loads hooks for many apps at once, and each
/// engine has its own compiler state and epoch thread (measured: ~2 MB and a thread per app).
pub fn shared_engine() -> Result<HookEngine> {
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
/// a warning (its verdicts will be errors, ignored too); under `Fail` it stops here. Every
/// message begins with the hook's name, so callers only add where the hook comes from.
pub async fn load_hook(
    engine: &HookEngine,
    config: HookConfig,
) -> Result<Result<LoadedHook, String>> {
    let engine = engine.clone();
    Ok(tokio::task::spawn_blocking(move || {
        let hook = engine.load(&config).map_err(|e| e.to_string())?;
        match hook.validate_settings(&config.settings) {
            Ok(verdict) if verdict.allowed => Ok(hook),
            Ok(verdict) => Err(format!(
                "hook `{}`: its settings are invalid: {}",
                config.name,
                verdict
                    .message
                    .or_else(|| verdict.violations.first().map(|v| v.message.clone()))
                    .unwrap_or_default()
            )),
            Err(e) if config.failure_policy == crate::config::FailurePolicy::Ignore => {
                tracing::warn!(hook = %config.name, "hook cannot validate its settings (failurePolicy: Ignore): {e}");
                Ok(hook)
            }
            Err(e) => Err(format!("{e} (while validating its settings)")),
        }
    })
    .await?)
}

/// The cluster policy's generator, fetched by digest, verified and loaded, its settings
/// validated under the generator contract.
async fn load_mandated(
    generator: &policy::PolicyGenerator,
    store: &ModuleStore,
) -> Result<Mandated> {
    let config = policy::fetch_generator(generator, store).await?;
    let engine = shared_engine()?;
    let checked = config.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let hook = engine.load(&checked).map_err(|e| e.to_string())?;
        super::generated::validate_settings(&hook, &checked.settings, "its settings")
            .map_err(|f| f.message)?;
        Ok::<_, String>(hook)
    })
    .await?
    .map_err(|e| {
        Failure::new(
            Outcome::Denied,
            format!("the cluster policy's generator: {e}; the release is denied"),
        )
    })?;
    Ok(Mandated {
        generator: loaded,
        config,
    })
}
