//! Config drift: where the live objects of an environment with manifests differ from what its
//! newest release applied. The release's manifests are rendered again at its commit with its
//! images (the same bytes it applied) and every field they set is compared with the live object.

use crate::cluster::EnvTarget;
use crate::cluster::objects::Objects;
use crate::config::{Environment, ReleaseConfig};
use crate::domain::error_text::one_line;
use crate::domain::{Outcome, Release, manifest};

use super::manifests::{Pins, render};

/// `Kind/name field: …` for every field that differs, or why the config could not be checked.
pub async fn config_drift(
    cfg: &ReleaseConfig,
    env: &Environment,
    target: &EnvTarget,
    newest: &Release,
) -> Result<Vec<String>, String> {
    if env.manifests.is_none() || newest.manifests.is_none() {
        return Ok(Vec::new());
    }
    // A release that did not succeed left the previous config (or part of its own): the image
    // drift already says so.
    if newest.outcome != Outcome::Succeeded {
        return Ok(Vec::new());
    }
    let commit = newest
        .commit
        .as_ref()
        .ok_or_else(|| format!("revision {} names no commit", newest.revision))?;
    let images = newest.images();
    let desired = render(cfg, env, commit, &Pins::Exact(&images))
        .map_err(|f| f.message)?
        .ok_or_else(|| "no manifests".to_string())?;
    let objects = Objects::new(&target.client, &target.namespace);
    let mut drift = Vec::new();
    for m in &desired.objects {
        let id = m.id();
        match objects.get(&id).await.map_err(|e| one_line(&e))? {
            None => drift.push(format!(
                "{id}: missing (revision {} applied it)",
                newest.revision
            )),
            Some(live) => {
                let fields = manifest::drift(&m.object, &live);
                if !fields.is_empty() {
                    drift.push(format!(
                        "{id}: {} changed since revision {}",
                        fields.join(", "),
                        newest.revision
                    ));
                }
            }
        }
    }
    Ok(drift)
}
