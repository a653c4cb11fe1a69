//! `kubectl release hooks test` and `kubectl release hooks verify`: run one module in the same
//! sandbox as a release does, and check every configured hook before a release needs it.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use hooks_sdk::guest::Command;
use hooks_sdk::testing::ConformanceCase;
use hooks_sdk::{HookRequest, HookResponse};
use serde::Serialize;

use crate::cli::{GlobalArgs, HooksTestArgs};
use crate::config::{HookConfig, HookLimits, ReleaseConfig};
use crate::domain::{Failure, Outcome};
use crate::hooks::{Evaluation, HookEngine, HookError, LoadedHook};
use crate::output;

/// Runs `check` of one module on a request file and prints the verdict.
///
/// Exit 0 when allowed, 3 when denied, 1 when the hook fails (trap, timeout, bad output…),
/// 2 when the module or input cannot be read.
pub async fn test(global: &GlobalArgs, args: &HooksTestArgs) -> Result<Outcome> {
    let mut request = read_request(&args.input)?;
    if let Some(path) = &args.settings {
        request.settings = read_settings(path)?;
    }
    let name = args
        .module
        .file_stem()
        .map_or_else(|| "hook".to_string(), |s| s.to_string_lossy().into_owned());
    request.hook.clone_from(&name);

    let engine = HookEngine::new(None).context("cannot start the hook sandbox")?;
    let module = args.module.clone();
    let hook = blocking(move || engine.load_unpinned(&name, &module, HookLimits::default()))
        .await?
        .map_err(|e| match e {
            // The module is this command's input: one that cannot be run is a usage error.
            HookError::UnreadableModule { .. }
            | HookError::Compile { .. }
            | HookError::NotACommand { .. } => Failure::invalid(e.to_string()),
            other => Failure::new(Outcome::Error, other.to_string()),
        })?;
    if global.verbose > 0 {
        let load = hook.load_info();
        eprintln!("module {} sha256 {}", args.module.display(), hook.sha256());
        eprintln!(
            "{} in {}",
            if load.from_cache {
                "loaded from the compiled-module cache"
            } else {
                "compiled"
            },
            millis(load.duration)
        );
        if let Some(note) = &load.cache_note {
            eprintln!("{note}");
        }
    }

    let evaluation = evaluate(&hook, Command::Check, request)
        .await?
        .map_err(|e| Failure::new(Outcome::Error, e.to_string()))?;
    if global.verbose > 0 {
        eprintln!("evaluated in {}", millis(evaluation.duration));
    }
    let response = &evaluation.response;
    output::emit(global.output, response, || {
        render_response(hook.name(), response)
    })?;
    Ok(if response.allowed {
        Outcome::Succeeded
    } else {
        Outcome::Denied
    })
}

/// Loads every configured hook (checking its pin) and asks it to validate its settings.
///
/// Prints one row per hook; exit 2 if any hook fails.
pub async fn verify(global: &GlobalArgs, config: &ReleaseConfig) -> Result<Outcome> {
    let engine = HookEngine::new(None).context("cannot start the hook sandbox")?;
    let base = config.path.parent().unwrap_or(Path::new("."));
    let mut results: Vec<HookCheck> = Vec::new();
    // The cluster policy of every environment first: it runs first in every release.
    let clients = crate::cluster::Clients::new(&global.kube_settings());
    let store = crate::artifacts::oci_modules::ModuleStore::default_location();
    for env in config.promotion_order() {
        let hooks = match &clients {
            Ok(clients) => policy_hooks(clients, env, &store).await,
            Err(e) => Err(anyhow::anyhow!("{e:#}")),
        };
        match hooks {
            Ok(hooks) => {
                for cfg in hooks {
                    let mut check = verify_one(&engine, cfg, base).await?;
                    check.source = format!("{}/{}", crate::release::policy::SOURCE, env.name);
                    results.push(check);
                }
            }
            Err(e) => results.push(HookCheck::unavailable(env, &format!("{e:#}"))),
        }
    }
    let checks = config
        .hooks
        .iter()
        .map(|cfg| verify_one(&engine, cfg.clone(), base));
    results.extend(futures::future::try_join_all(checks).await?);
    if results.is_empty() {
        eprintln!(
            "no hooks: none in {} and no cluster policy",
            config.path.display()
        );
        return Ok(Outcome::Succeeded);
    }

    output::emit(global.output, &results, || render_checks(&results))?;
    let failed: Vec<&HookCheck> = results.iter().filter(|r| !r.ok()).collect();
    if failed.is_empty() {
        return Ok(Outcome::Succeeded);
    }
    let details: Vec<String> = failed.iter().filter_map(|r| r.problem()).collect();
    Err(Failure::invalid(format!(
        "{} of {} hooks failed verification:\n  {}",
        failed.len(),
        results.len(),
        details.join("\n  ")
    ))
    .into())
}

/// The cluster policy hooks of `env`, their modules fetched and verified.
async fn policy_hooks(
    clients: &crate::cluster::Clients,
    env: &crate::config::Environment,
    store: &crate::artifacts::oci_modules::ModuleStore,
) -> Result<Vec<HookConfig>> {
    let target = clients.target(env).await?;
    let hooks = crate::release::policy::load_for(&target).await?.hooks;
    crate::release::policy::fetch_modules(&hooks, store).await
}

/// The result of verifying one hook.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct HookCheck {
    /// `app`, or `cluster-policy/<environment>`.
    source: String,
    hook: String,
    module: String,
    /// The module's actual sha256, when it could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    /// `None` when loading succeeded: the pin matched and the module compiled.
    #[serde(skip_serializing_if = "Option::is_none")]
    load_error: Option<HookError>,
    /// The hook's answer to `validate-settings`, if it was loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    settings: Option<SettingsCheck>,
    /// A problem before any module could be loaded (the cluster policy could not be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
enum SettingsCheck {
    Valid,
    Invalid { message: String },
    Error { error: HookError },
}

impl HookCheck {
    /// A row for an environment whose cluster policy could not be read or fetched.
    fn unavailable(env: &crate::config::Environment, error: &str) -> HookCheck {
        HookCheck {
            source: format!("{}/{}", crate::release::policy::SOURCE, env.name),
            hook: "(policy)".into(),
            module: "-".into(),
            sha256: None,
            load_error: None,
            settings: None,
            error: Some(error.to_string()),
        }
    }

    fn ok(&self) -> bool {
        self.error.is_none()
            && self.load_error.is_none()
            && matches!(self.settings, Some(SettingsCheck::Valid))
    }

    fn pin_cell(&self) -> String {
        match &self.load_error {
            None => "ok".into(),
            Some(HookError::PinMismatch { .. }) => "mismatch".into(),
            Some(e) => format!("error ({})", e.kind()),
        }
    }

    fn settings_cell(&self) -> String {
        match &self.settings {
            None => "-".into(),
            Some(SettingsCheck::Valid) => "ok".into(),
            Some(SettingsCheck::Invalid { .. }) => "invalid".into(),
            Some(SettingsCheck::Error { error }) => format!("error ({})", error.kind()),
        }
    }

    fn problem(&self) -> Option<String> {
        if let Some(e) = &self.error {
            return Some(format!("{}: {e}", self.source));
        }
        if let Some(e) = &self.load_error {
            return Some(e.to_string());
        }
        match &self.settings {
            Some(SettingsCheck::Invalid { message }) => {
                Some(format!("hook `{}`: invalid settings: {message}", self.hook))
            }
            Some(SettingsCheck::Error { error }) => {
                Some(format!("{error} (while validating settings)"))
            }
            _ => None,
        }
    }
}

async fn verify_one(engine: &HookEngine, cfg: HookConfig, base: &Path) -> Result<HookCheck> {
    let module = cfg
        .module
        .strip_prefix(base)
        .unwrap_or(&cfg.module)
        .display()
        .to_string();
    let engine = engine.clone();
    let name = cfg.name.clone();
    let (loaded, settings) = blocking(move || {
        let hook = engine.load(&cfg)?;
        let verdict = hook.validate_settings(&cfg.settings);
        Ok::<_, HookError>((hook, verdict))
    })
    .await?
    .map_or_else(
        |e| (Err(e), None),
        |(hook, verdict)| (Ok(hook), Some(verdict)),
    );
    let sha256 = match &loaded {
        Ok(hook) => Some(hook.sha256().to_string()),
        Err(HookError::PinMismatch { actual, .. }) => Some(actual.clone()),
        Err(_) => None,
    };
    Ok(HookCheck {
        source: "app".into(),
        hook: name,
        module,
        sha256,
        load_error: loaded.err(),
        settings: settings.map(|verdict| match verdict {
            Ok(r) if r.allowed => SettingsCheck::Valid,
            Ok(r) => SettingsCheck::Invalid {
                message: r
                    .message
                    .unwrap_or_else(|| "rejected without a message".into()),
            },
            Err(error) => SettingsCheck::Error { error },
        }),
        error: None,
    })
}

fn render_checks(results: &[HookCheck]) -> String {
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            vec![
                r.source.clone(),
                r.hook.clone(),
                r.module.clone(),
                if r.error.is_some() {
                    "error".into()
                } else {
                    r.pin_cell()
                },
                r.settings_cell(),
            ]
        })
        .collect();
    output::table(&["SOURCE", "HOOK", "MODULE", "PIN", "SETTINGS"], &rows)
}

fn render_response(hook: &str, response: &HookResponse) -> String {
    let verdict = if response.allowed {
        "allowed"
    } else {
        "denied"
    };
    let mut text = output::table(
        &["HOOK", "VERDICT", "MESSAGE"],
        &[vec![
            hook.to_string(),
            verdict.to_string(),
            response.message.clone().unwrap_or_default(),
        ]],
    );
    if !response.violations.is_empty() {
        let rows: Vec<Vec<String>> = response
            .violations
            .iter()
            .map(|v| {
                vec![
                    v.workload
                        .as_ref()
                        .map_or_else(|| "-".to_string(), ToString::to_string),
                    v.field.clone().unwrap_or_else(|| "-".into()),
                    v.message.clone(),
                ]
            })
            .collect();
        text.push('\n');
        text.push_str(&output::table(&["WORKLOAD", "FIELD", "VIOLATION"], &rows));
    }
    if !response.warnings.is_empty() {
        text.push_str("\nWarnings:\n");
        for warning in &response.warnings {
            text.push_str(&format!("  - {warning}\n"));
        }
    }
    text
}

/// Reads a `HookRequest`, or a conformance fixture (`{description, settings, request, expected}`)
/// whose request, with its settings, is used: fixtures can be replayed by hand.
fn read_request(path: &Path) -> Result<HookRequest> {
    let text = std::fs::read(path)
        .map_err(|e| Failure::invalid(format!("cannot read {}: {e}", path.display())))?;
    let value: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| Failure::invalid(format!("{} is not JSON: {e}", path.display())))?;
    let document = if value.get("request").is_some() && value.get("apiVersion").is_none() {
        let case: ConformanceCase = serde_json::from_value(value).map_err(|e| {
            Failure::invalid(format!(
                "{} looks like a conformance fixture but is not one: {e}",
                path.display()
            ))
        })?;
        case.request_document()
    } else {
        value
    };
    // Read here first so that a missing field is named against the file, not the hook's stdin;
    // the SDK then checks the version as the hook will. Another version is said as such, not as
    // the fields it lacks.
    if let Some(version) = document
        .get("apiVersion")
        .and_then(serde_json::Value::as_str)
        && version != hooks_sdk::API_VERSION
    {
        return Err(Failure::invalid(format!(
            "{}: unsupported apiVersion `{version}`: this plugin's hooks read `{}`",
            path.display(),
            hooks_sdk::API_VERSION
        ))
        .into());
    }
    serde_json::from_value::<HookRequest>(document.clone()).map_err(|e| {
        Failure::invalid(format!(
            "{} is not a HookRequest: {e} (the conformance fixtures in example-hooks/conformance are examples)",
            path.display()
        ))
    })?;
    let bytes = serde_json::to_vec(&document)?;
    hooks_sdk::guest::read_request(&bytes)
        .map_err(|e| Failure::invalid(format!("{}: {e}", path.display())).into())
}

/// Settings as JSON or YAML (YAML parses both).
fn read_settings(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::invalid(format!("cannot read {}: {e}", path.display())))?;
    serde_yaml_ng::from_str(&text).map_err(|e| {
        Failure::invalid(format!("{} is neither JSON nor YAML: {e}", path.display())).into()
    })
}

async fn evaluate(
    hook: &LoadedHook,
    command: Command,
    request: HookRequest,
) -> Result<Result<Evaluation, HookError>> {
    let hook = hook.clone();
    blocking(move || hook.evaluate(command, &request)).await
}

/// Loading and running hooks block (compilation, the sandbox); keep them off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("the hook sandbox thread failed")
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hooks_sdk::{Violation, WorkloadRef};

    #[test]
    fn denial_table_lists_violations_and_warnings() {
        let response = HookResponse::deny("1 problem")
            .with_violation(
                Violation::new("missing label `team`")
                    .on(WorkloadRef::new("Deployment", "web", "web"))
                    .at("metadata.labels.team"),
            )
            .with_warning("owner looks like a bot");
        let text = render_response("required-labels", &response);
        assert_eq!(
            text,
            "HOOK              VERDICT   MESSAGE\n\
             required-labels   denied    1 problem\n\
             \n\
             WORKLOAD             FIELD                  VIOLATION\n\
             Deployment web/web   metadata.labels.team   missing label `team`\n\
             \n\
             Warnings:\n  - owner looks like a bot\n"
        );
    }

    #[test]
    fn verify_cells() {
        let check = HookCheck {
            source: "app".into(),
            hook: "h".into(),
            module: "hooks/h.wasm".into(),
            sha256: Some("ab".into()),
            load_error: Some(HookError::PinMismatch {
                hook: "h".into(),
                path: "hooks/h.wasm".into(),
                expected: "cd".into(),
                actual: "ab".into(),
            }),
            settings: None,
            error: None,
        };
        assert_eq!(
            (check.pin_cell(), check.settings_cell()),
            ("mismatch".to_string(), "-".to_string())
        );
        assert!(!check.ok());
        assert!(check.problem().unwrap().contains("pinned to cd"));
    }
}
