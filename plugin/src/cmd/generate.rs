//! `generate [ENV…] [--check] [--all]`: manifests from the app spec through the generator.
//!
//! Every environment is generated and checked before anything is written, so a generator that
//! fails (timeout, garbage, an object in another namespace) leaves every directory as it was.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::cli::{GenerateArgs, GlobalArgs};
use crate::config::{self, ReleaseConfig};
use crate::domain::{Failure, Outcome, spec};
use crate::hooks::generator::{self, GenerateError};
use crate::hooks::{HookEngine, LoadedHook};

/// One environment's generated files, next to what its manifests directory holds.
struct EnvFiles {
    /// `app/env`, for messages.
    label: String,
    dir: PathBuf,
    /// File name → text, as generated.
    wanted: BTreeMap<String, String>,
    /// File name → text of the `.yaml` files there now that `generate` wrote (header), or
    /// that a generated file would replace.
    current: BTreeMap<String, String>,
}

pub async fn run(global: &GlobalArgs, args: &GenerateArgs) -> Result<Outcome> {
    let engine = HookEngine::new(None)?;
    let mut loaded = HashMap::new();
    let mut all = Vec::new();
    if args.all {
        if !args.envs.is_empty() {
            return Err(Failure::invalid("--all generates every environment: name none").into());
        }
        for path in super::monorepo_configs(global)? {
            let cfg = config::load(&path).map_err(|e| Failure::invalid(e.to_string()))?;
            if cfg.generate.is_some() {
                all.extend(generate_app(&engine, &mut loaded, &cfg, &[]).await?);
            }
        }
    } else {
        let cfg = super::load_config(global)?;
        all = generate_app(&engine, &mut loaded, &cfg, &args.envs).await?;
    }
    if args.check { check(&all) } else { write(&all) }
}

/// The environments `names` (default: every one with `manifests`) of one app, generated.
async fn generate_app(
    engine: &HookEngine,
    loaded: &mut HashMap<(PathBuf, String), LoadedHook>,
    cfg: &ReleaseConfig,
    names: &[String],
) -> Result<Vec<EnvFiles>> {
    let Some(gen_cfg) = &cfg.generate else {
        return Err(Failure::invalid(format!(
            "{} has no `spec:` and `generator:`: nothing to generate (see the README's Generate section)",
            cfg.path.display()
        ))
        .into());
    };
    let targets = targets(cfg, names)?;
    // The same module named by different relative paths is one module: load it once.
    let module = &gen_cfg.generator.module;
    let key = (
        std::fs::canonicalize(module).unwrap_or_else(|_| module.clone()),
        gen_cfg.generator.sha256.clone(),
    );
    let hook = match loaded.get(&key) {
        Some(hook) => hook.clone(),
        None => {
            let hook = engine
                .load(&gen_cfg.generator)
                .map_err(|e| Failure::invalid(e.to_string()))?;
            loaded.insert(key, hook.clone());
            hook
        }
    };
    let cfg = cfg.clone();
    tokio::task::spawn_blocking(move || generate_blocking(&hook, &cfg, &targets))
        .await
        .context("the generator's thread failed")?
}

/// The environments to generate, with their manifests directories.
fn targets(cfg: &ReleaseConfig, names: &[String]) -> Result<Vec<(String, PathBuf)>> {
    let base = cfg.path.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    for env in &cfg.environments {
        if !names.is_empty() && !names.contains(&env.name) {
            continue;
        }
        match &env.manifests {
            Some(m) => out.push((env.name.clone(), base.join(&m.path))),
            None if names.is_empty() => {}
            None => {
                return Err(Failure::invalid(format!(
                    "environment `{}` has no `manifests` directory to generate into",
                    env.name
                ))
                .into());
            }
        }
    }
    for name in names {
        cfg.environment(name)?;
    }
    Ok(out)
}

/// Runs the generator for every target (on this blocking thread) and checks its objects.
fn generate_blocking(
    hook: &LoadedHook,
    cfg: &ReleaseConfig,
    targets: &[(String, PathBuf)],
) -> Result<Vec<EnvFiles>> {
    let Some(gen_cfg) = &cfg.generate else {
        return Ok(Vec::new());
    };
    let failed = |env: &str, e: &dyn std::fmt::Display| {
        Failure::new(
            Outcome::Error,
            format!("{}/{env}: {e}; nothing was written", cfg.app),
        )
    };
    generator::validate_settings(hook, &gen_cfg.generator.settings).map_err(|e| match e {
        GenerateError::Refused(m) => {
            Failure::invalid(format!("{}: generator.settings: {m}", cfg.path.display()))
        }
        other => failed("settings", &other),
    })?;
    let mut all = Vec::new();
    for (name, dir) in targets {
        let env = cfg.environment(name)?;
        let request = spec::request(
            &gen_cfg.spec,
            &cfg.app,
            &cfg.image,
            name,
            &env.namespace,
            &gen_cfg.generator.settings,
        );
        let objects = generator::generate(hook, &request).map_err(|e| failed(name, &e))?;
        let allowed = env
            .manifests
            .as_ref()
            .map(|m| m.allowed)
            .unwrap_or_default();
        let wanted = spec::render(&objects, &env.namespace, allowed, hook.sha256())
            .map_err(|e| failed(name, &e))?;
        let current = current_files(dir, &wanted)?;
        all.push(EnvFiles {
            label: format!("{}/{name}", cfg.app),
            dir: dir.clone(),
            wanted,
            current,
        });
    }
    Ok(all)
}

/// The files of `dir` that `generate` owns (header) or that a wanted file would replace.
fn current_files(
    dir: &Path,
    wanted: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    let mut current = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(current),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if !path.is_file() || !(name.ends_with(".yaml") || name.ends_with(".yml")) {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if spec::is_generated(&text) || wanted.contains_key(&name) {
            current.insert(name, text);
        }
    }
    Ok(current)
}

/// `--check`: a unified diff of every difference on stdout, exit 1 if there is one.
fn check(all: &[EnvFiles]) -> Result<Outcome> {
    let mut differing = Vec::new();
    for env in all {
        let names = env.wanted.keys().chain(env.current.keys());
        let names: std::collections::BTreeSet<&String> = names.collect();
        for name in names {
            let old = env.current.get(name).map_or("", String::as_str);
            let new = env.wanted.get(name).map_or("", String::as_str);
            if old == new {
                continue;
            }
            let path = env.dir.join(name).display().to_string();
            let diff = similar::TextDiff::from_lines(old, new);
            print!(
                "{}",
                diff.unified_diff()
                    .context_radius(3)
                    .header(&format!("a/{path}"), &format!("b/{path}"))
            );
            differing.push(path);
        }
        if !differing.iter().any(|p| Path::new(p).starts_with(&env.dir)) {
            eprintln!("{}: manifests are up to date", env.label);
        }
    }
    if differing.is_empty() {
        return Ok(Outcome::Unchanged);
    }
    Err(Failure::new(
        Outcome::Error,
        format!(
            "the manifests differ from what the generator produces ({}); run `kubectl release generate` and commit the result",
            differing.join(", ")
        ),
    )
    .into())
}

/// Writes the wanted files and deletes generated files that are no longer wanted; refuses to
/// overwrite a file `generate` did not write.
fn write(all: &[EnvFiles]) -> Result<Outcome> {
    for env in all {
        for (name, text) in &env.current {
            if env.wanted.contains_key(name) && !spec::is_generated(text) {
                return Err(Failure::invalid(format!(
                    "{} was not written by `generate` and would be replaced by a generated file: remove it first",
                    env.dir.join(name).display()
                ))
                .into());
            }
        }
    }
    let mut changed = false;
    for env in all {
        std::fs::create_dir_all(&env.dir)
            .with_context(|| format!("cannot create {}", env.dir.display()))?;
        let (mut written, mut deleted) = (0, 0);
        for (name, text) in &env.wanted {
            if env.current.get(name) != Some(text) {
                let path = env.dir.join(name);
                let tmp = env.dir.join(format!(".{name}.tmp"));
                std::fs::write(&tmp, text)
                    .and_then(|()| std::fs::rename(&tmp, &path))
                    .with_context(|| format!("cannot write {}", path.display()))?;
                written += 1;
            }
        }
        for name in env.current.keys().filter(|n| !env.wanted.contains_key(*n)) {
            let path = env.dir.join(name);
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot delete {}", path.display()))?;
            deleted += 1;
        }
        changed |= written + deleted > 0;
        println!(
            "{}: {} files in {} ({written} written, {deleted} deleted)",
            env.label,
            env.wanted.len(),
            env.dir.display()
        );
    }
    Ok(if changed {
        Outcome::Succeeded
    } else {
        Outcome::Unchanged
    })
}
