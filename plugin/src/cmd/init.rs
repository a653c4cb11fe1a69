//! `init --app A --image R --env qa=NS …`: adopts a running app.
//!
//! Writes a release.yaml naming every environment given, and exports each environment's live
//! workloads, the Services selecting their pods and the ConfigMaps they read as clean
//! manifests into `kubernetes/<env>/`, so a team adopts the tool in one command. Secrets are
//! never exported (their values must not land in git); the notes name them instead.
//!
//! All or nothing: every environment is read and cleaned, and the release.yaml validated,
//! before the first file is written.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;

use crate::cli::{GlobalArgs, InitArgs};
use crate::cluster::{Clients, EnvTarget, export, workloads};
use crate::config::{self, Environment};
use crate::domain::export::{
    EnvArg, References, app_services, clean, file_name, manifest_text, manifests_dir,
    parse_env_arg, release_config_text, workload_object,
};
use crate::domain::{Failure, Outcome};
use crate::output;

/// What `init` wrote and what the team should know about it (`-o json`).
#[derive(Debug, Serialize)]
struct Written {
    files: Vec<String>,
    notes: Vec<String>,
}

/// One file to write, relative to `--dir`.
struct File {
    path: PathBuf,
    text: String,
}

pub async fn run(global: &GlobalArgs, args: &InitArgs) -> Result<Outcome> {
    let envs = parse_envs(&args.envs)?;
    if !args.force {
        refuse_existing(&args.dir, &envs)?;
    }
    let config_text = release_config_text(
        config::API_VERSION,
        config::KIND,
        &args.app,
        &args.image,
        &envs,
    )?;
    let config_path = args.dir.join(config::FILE_NAME);
    // A bug here must not leave a broken release.yaml behind: the file is what every other
    // verb reads first.
    config::parse(&config_path, &config_text).map_err(|e| {
        Failure::invalid(format!("the release.yaml init would write is invalid: {e}"))
    })?;

    let clients = Clients::new(&global.kube_settings())?;
    let mut files = vec![File {
        path: PathBuf::from(config::FILE_NAME),
        text: config_text,
    }];
    let mut notes = Vec::new();
    for env in &envs {
        let target = clients.target(&environment(env)).await?;
        let (exported, env_notes) = export_env(&target, &args.image).await?;
        files.extend(exported);
        notes.extend(env_notes);
    }
    let written = write_all(&args.dir, &files)?;
    let report = Written {
        files: written,
        notes,
    };
    output::emit(global.output, &report, || render(&report))?;
    Ok(Outcome::Succeeded)
}

/// Every `--env`, parsed; a name given twice is refused, as release.yaml would refuse it.
fn parse_envs(args: &[String]) -> Result<Vec<EnvArg>, Failure> {
    let envs = args
        .iter()
        .map(|a| parse_env_arg(a))
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen = BTreeSet::new();
    for env in &envs {
        if !seen.insert(env.name.as_str()) {
            return Err(Failure::invalid(format!(
                "--env `{}` is given twice",
                env.name
            )));
        }
    }
    Ok(envs)
}

/// Refuses to overwrite a release.yaml or an environment's manifests: the team's own files
/// are worth more than an export, which `--force` can redo.
fn refuse_existing(dir: &Path, envs: &[EnvArg]) -> Result<(), Failure> {
    let candidates = std::iter::once(PathBuf::from(config::FILE_NAME))
        .chain(envs.iter().map(|e| PathBuf::from(manifests_dir(&e.name))));
    let existing: Vec<String> = candidates
        .map(|p| dir.join(p))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if existing.is_empty() {
        Ok(())
    } else {
        Err(Failure::invalid(format!(
            "{} already exist{}; pass --force to overwrite",
            existing.join(", "),
            if existing.len() == 1 { "s" } else { "" }
        )))
    }
}

/// The environment as release.yaml will name it, for reaching its cluster.
fn environment(env: &EnvArg) -> Environment {
    Environment {
        name: env.name.clone(),
        context: env.context.clone(),
        namespace: env.namespace.clone(),
        promote_from: None,
        atomic: None,
        manifests: None,
        require_verification: false,
        gitops: None,
    }
}

/// The app's objects in one environment as files of `kubernetes/<env>/`, with notes on the
/// Secrets and missing ConfigMaps they reference.
async fn export_env(target: &EnvTarget, image: &str) -> Result<(Vec<File>, Vec<String>)> {
    let namespace = &target.namespace;
    let env = &target.env.name;
    let apis = target.server_apis().await?;
    let found = workloads::discover(&target.client, &apis, namespace, image, &Default::default())
        .await
        .with_context(|| format!("cannot read the workloads of {target}"))?;
    if found.is_empty() {
        return Err(Failure::invalid(format!(
            "environment `{env}`: no workload in namespace `{namespace}` runs a container of \
             image `{image}`; check the namespace and --image (a repository, without tag)"
        ))
        .into());
    }
    let mut refs = References::default();
    let mut objects = Vec::new();
    for w in &found {
        refs.extend(crate::domain::export::references(
            w.pod_spec().unwrap_or(&Value::Null),
        ));
        let api_version = w.id.kind.api_resource(apis.cronjob_version).api_version;
        objects.push(workload_object(w, &api_version));
    }
    let services = export::services(&target.client, namespace).await?;
    objects.extend(app_services(&services, &found).into_iter().cloned());
    let (config_maps, missing) =
        export::config_maps(&target.client, namespace, &refs.config_maps).await?;
    objects.extend(config_maps);

    let mut files = Vec::new();
    for object in &objects {
        let object = clean(object);
        files.push(File {
            path: Path::new(&manifests_dir(env)).join(file_name(&object)),
            text: manifest_text(&object, namespace)?,
        });
    }
    Ok((files, notes(env, namespace, &refs, &missing)))
}

/// What the export left out that the app needs.
fn notes(env: &str, namespace: &str, refs: &References, missing: &[String]) -> Vec<String> {
    let mut notes = Vec::new();
    if !refs.secrets.is_empty() {
        let names: Vec<&str> = refs.secrets.iter().map(String::as_str).collect();
        notes.push(format!(
            "environment `{env}`: the app references Secret(s) {} in namespace `{namespace}`; \
             they were not exported (their values must not land in git): add them to the \
             environment by other means",
            names.join(", ")
        ));
    }
    if !missing.is_empty() {
        notes.push(format!(
            "environment `{env}`: the app references ConfigMap(s) {} that namespace \
             `{namespace}` does not have; nothing was exported for them",
            missing.join(", ")
        ));
    }
    notes
}

/// Writes every file under `dir`; returns their paths as written.
fn write_all(dir: &Path, files: &[File]) -> Result<Vec<String>> {
    let mut written = Vec::new();
    for file in files {
        let path = dir.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, &file.text)
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path.display().to_string());
    }
    Ok(written)
}

/// One path per line, then the notes.
fn render(report: &Written) -> String {
    let mut out = String::new();
    for file in &report.files {
        out.push_str(file);
        out.push('\n');
    }
    for note in &report.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    out
}
