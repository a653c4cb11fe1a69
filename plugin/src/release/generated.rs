//! Generated manifests: what a generator module produces for one environment of an app, and
//! the check that a release's manifests are exactly that when the cluster policy mandates the
//! generator (so nobody can release hand-written or stale manifests into such a namespace).

use std::collections::BTreeMap;

use crate::config::{Environment, HookConfig, ReleaseConfig};
use crate::domain::{Failure, Outcome, spec};
use crate::hooks::LoadedHook;
use crate::hooks::generator::{self, GenerateError};

/// The files (`<kind>-<name>.yaml` → text, headed with the generator's digest) `generator`
/// produces for `env` from the app's spec. Blocks for about the generator's timeout at most:
/// call it on a blocking thread.
///
/// # Errors
///
/// The generator failed (sandbox limit, garbage, refusal), or an object it produced is not a
/// manifest the environment may hold; the message names neither app nor environment.
pub fn files_for(
    generator: &LoadedHook,
    settings: &serde_json::Value,
    cfg: &ReleaseConfig,
    env: &Environment,
    app_spec: &spec::AppSpec,
) -> Result<BTreeMap<String, String>, String> {
    let request = spec::request(
        app_spec,
        &cfg.app,
        &cfg.image,
        &env.name,
        &env.namespace,
        settings,
    );
    let objects = generator::generate(generator, &request).map_err(|e| e.to_string())?;
    let allowed = env
        .manifests
        .as_ref()
        .map(|m| m.allowed)
        .unwrap_or_default();
    spec::render(&objects, &env.namespace, allowed, generator.sha256())
}

/// Asks the generator whether `settings` are acceptable; a refusal names `origin` (where the
/// settings are written) as the place to fix.
///
/// # Errors
///
/// The settings are refused (an `invalid` failure), or the generator could not be run.
pub fn validate_settings(
    generator: &LoadedHook,
    settings: &serde_json::Value,
    origin: &str,
) -> Result<(), Failure> {
    generator::validate_settings(generator, settings).map_err(|e| match e {
        GenerateError::Refused(m) => Failure::invalid(format!("{origin}: {m}")),
        other => Failure::new(Outcome::Error, format!("{origin}: {other}")),
    })
}

/// The generator the cluster policy mandates for the release's namespace, loaded, with its
/// settings.
#[derive(Clone)]
pub struct Mandated {
    pub generator: LoadedHook,
    pub config: HookConfig,
}

/// Whether the manifests of a release (`committed`: file name → text of the commit's manifests
/// directory, `None` for a kustomization) are what the mandated generator produces. Blocks:
/// call it on a blocking thread.
///
/// # Errors
///
/// A `denied` failure naming the first file that differs and how to fix it.
pub fn check(
    mandated: &Mandated,
    cfg: &ReleaseConfig,
    env: &Environment,
    committed: Option<&BTreeMap<String, String>>,
) -> Result<(), Failure> {
    let sha = mandated.generator.sha256();
    let short = &sha[..sha.len().min(12)];
    let deny = |why: String| {
        Failure::new(
            Outcome::Denied,
            format!(
                "the cluster policy mandates generator sha256:{short}… for namespace {}, and {why}; \
                 run `kubectl release generate {}`, commit the result and release again",
                env.namespace, env.name
            ),
        )
    };
    let dir = env
        .manifests
        .as_ref()
        .map_or(String::new(), |m| m.path.display().to_string());
    let Some(generate) = &cfg.generate else {
        return Err(deny(format!(
            "{} has no `spec:` to generate {dir} from",
            cfg.path.display()
        )));
    };
    let Some(committed) = committed else {
        return Err(deny(format!(
            "{dir} is a kustomization, not the generated files"
        )));
    };
    let wanted = files_for(
        &mandated.generator,
        &mandated.config.settings,
        cfg,
        env,
        &generate.spec,
    )
    .map_err(|e| {
        Failure::new(
            Outcome::Denied,
            format!(
                "the cluster policy's generator failed for {}: {e}",
                env.name
            ),
        )
    })?;
    for (name, text) in &wanted {
        match committed.get(name) {
            Some(found) if found == text => {}
            Some(_) => {
                return Err(deny(format!("{dir}/{name} differs from what it produces")));
            }
            None => return Err(deny(format!("{dir}/{name} is missing"))),
        }
    }
    if let Some(stale) = committed
        .iter()
        .find(|(name, text)| spec::is_generated(text) && !wanted.contains_key(*name))
    {
        return Err(deny(format!(
            "{dir}/{} was generated but is no longer produced",
            stale.0
        )));
    }
    Ok(())
}
