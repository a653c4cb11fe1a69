//! `generate [ENV…] [--check] [--all]`: manifests from the app spec through the generator.
//!
//! Every environment is generated and checked before anything is written, so a generator that
//! fails (timeout, garbage, an object in another namespace) leaves every directory as it was.
//! Each environment's generator is the one its cluster policy mandates for its namespace, else
//! release.yaml's (`--offline` reads no policy).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::artifacts::oci_modules::ModuleStore;
use crate::cli::{GenerateArgs, GlobalArgs};
use crate::cluster::Clients;
use crate::config::{self, Environment, HookConfig, ReleaseConfig};
use crate::domain::error_text::one_line;
use crate::domain::{Failure, Outcome, spec};
use crate::hooks::{HookEngine, LoadedHook};
use crate::release::{generated, policy};

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
    let mut generators = Generators {
        engine: HookEngine::new(None)?,
        clients: if args.offline {
            None
        } else {
            Some(Clients::new(&global.kube_settings())?)
        },
        store: ModuleStore::default_location(),
        loaded: HashMap::new(),
    };
    let mut all = Vec::new();
    if args.all {
        if !args.envs.is_empty() {
            return Err(Failure::invalid("--all generates every environment: name none").into());
        }
        for path in super::monorepo_configs(global)? {
            let cfg = config::load(&path).map_err(|e| Failure::invalid(e.to_string()))?;
            if cfg.generate.is_some() {
                all.extend(generate_app(&mut generators, &cfg, &[]).await?);
            }
        }
    } else {
        let cfg = super::load_config(global)?;
        all = generate_app(&mut generators, &cfg, &args.envs).await?;
    }
    if args.check { check(&all) } else { write(&all) }
}

/// Where each environment's generator comes from, and every module loaded once.
struct Generators {
    engine: HookEngine,
    /// `None` with `--offline`: no cluster policy is read.
    clients: Option<Clients>,
    store: ModuleStore,
    /// (module path, sha256) → the module loaded.
    loaded: HashMap<(PathBuf, String), LoadedHook>,
}

/// One environment to generate: where, with which module and settings.
struct Target {
    env: String,
    dir: PathBuf,
    generator: LoadedHook,
    settings: serde_json::Value,
    /// Where the settings are written, for a refusal: release.yaml or the cluster policy.
    origin: String,
}

impl Generators {
    /// The generator of `env`: the one its cluster policy mandates for its namespace, else
    /// release.yaml's.
    async fn choose(
        &mut self,
        cfg: &ReleaseConfig,
        env: &Environment,
    ) -> Result<(HookConfig, String)> {
        let own = cfg.generate.as_ref().and_then(|g| g.generator.clone());
        if let Some(clients) = &self.clients {
            let target = clients.target(env).await.map_err(|e| {
                Failure::invalid(format!(
                    "{}/{}: cannot reach the cluster to read its policy ({}); \
                     pass --offline to generate with release.yaml's generator only",
                    cfg.app,
                    env.name,
                    one_line(&e)
                ))
            })?;
            if let Some(mandated) = policy::load_for(&target).await?.generator {
                let config = policy::fetch_generator(&mandated, &self.store).await?;
                if own.as_ref().is_some_and(|o| o.sha256 != config.sha256) {
                    eprintln!(
                        "{}/{}: the cluster policy mandates generator {}; release.yaml's generator is not used",
                        cfg.app, env.name, mandated.module.text
                    );
                }
                let origin = format!("the cluster policy of {}: generator.settings", env.name);
                return Ok((config, origin));
            }
        }
        let origin = format!("{}: generator.settings", cfg.path.display());
        own.map(|o| (o, origin)).ok_or_else(|| {
            Failure::invalid(format!(
                "{}/{}: release.yaml names no `generator:` and the cluster policy mandates none; \
                 add `generator:` (module and sha256) to {}",
                cfg.app,
                env.name,
                cfg.path.display()
            ))
            .into()
        })
    }

    /// The module of `config`, loaded once: the same module named by different relative
    /// paths is one module.
    fn load(&mut self, config: &HookConfig) -> Result<LoadedHook> {
        let module = &config.module;
        let key = (
            std::fs::canonicalize(module).unwrap_or_else(|_| module.clone()),
            config.sha256.clone(),
        );
        if let Some(hook) = self.loaded.get(&key) {
            return Ok(hook.clone());
        }
        let hook = self
            .engine
            .load(config)
            .map_err(|e| Failure::invalid(e.to_string()))?;
        self.loaded.insert(key, hook.clone());
        Ok(hook)
    }
}

/// The environments `names` (default: every one with `manifests`) of one app, generated.
async fn generate_app(
    generators: &mut Generators,
    cfg: &ReleaseConfig,
    names: &[String],
) -> Result<Vec<EnvFiles>> {
    if cfg.generate.is_none() {
        return Err(Failure::invalid(format!(
            "{} has no `spec:`: nothing to generate (see the README's Generate section)",
            cfg.path.display()
        ))
        .into());
    }
    let mut chosen = Vec::new();
    for (name, dir) in targets(cfg, names)? {
        let env = cfg.environment(&name)?;
        let (config, origin) = generators.choose(cfg, env).await?;
        chosen.push(Target {
            env: name,
            dir,
            generator: generators.load(&config)?,
            settings: config.settings,
            origin,
        });
    }
    let cfg = cfg.clone();
    tokio::task::spawn_blocking(move || generate_blocking(&cfg, &chosen))
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

/// Runs each target's generator (on this blocking thread) and checks its objects; settings
/// are validated once per generator and settings.
fn generate_blocking(cfg: &ReleaseConfig, targets: &[Target]) -> Result<Vec<EnvFiles>> {
    let Some(gen_cfg) = &cfg.generate else {
        return Ok(Vec::new());
    };
    let mut validated: Vec<(&str, &serde_json::Value)> = Vec::new();
    let mut all = Vec::new();
    for target in targets {
        let key = (target.generator.sha256(), &target.settings);
        if !validated.contains(&key) {
            generated::validate_settings(&target.generator, &target.settings, &target.origin)?;
            validated.push(key);
        }
        let env = cfg.environment(&target.env)?;
        let wanted =
            generated::files_for(&target.generator, &target.settings, cfg, env, &gen_cfg.spec)
                .map_err(|e| {
                    Failure::new(
                        Outcome::Error,
                        format!("{}/{}: {e}; nothing was written", cfg.app, target.env),
                    )
                })?;
        let current = current_files(&target.dir, &wanted)?;
        all.push(EnvFiles {
            label: format!("{}/{}", cfg.app, target.env),
            dir: target.dir.clone(),
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
