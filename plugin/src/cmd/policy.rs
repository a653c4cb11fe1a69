//! `policy show [ENV…]`: the hooks that will run for each environment — the cluster policy's
//! (mandatory, first), then the app's own.

use anyhow::Result;
use serde::Serialize;

use crate::cli::{GlobalArgs, StatusArgs};
use crate::cluster::Clients;
use crate::config::ReleaseConfig;
use crate::domain::Outcome;
use crate::output;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EffectiveHook {
    environment: String,
    source: String,
    hook: String,
    module: String,
    phases: Vec<String>,
    failure_policy: String,
}

pub async fn show(global: &GlobalArgs, cfg: &ReleaseConfig, args: &StatusArgs) -> Result<Outcome> {
    let envs = if args.envs.is_empty() {
        cfg.promotion_order()
    } else {
        args.envs
            .iter()
            .map(|n| cfg.environment(n))
            .collect::<Result<Vec<_>, _>>()?
    };
    let clients = Clients::new(&global.kube_settings())?;
    let mut rows = Vec::new();
    for env in envs {
        let target = clients.target(env).await?;
        let policy = crate::release::policy::load_for(&target).await?;
        if let Some(generator) = &policy.generator {
            rows.push(EffectiveHook {
                environment: env.name.clone(),
                source: crate::release::policy::SOURCE.into(),
                hook: "generator".into(),
                module: generator.module.text.clone(),
                phases: vec!["generate".into()],
                failure_policy: "Fail".into(),
            });
        }
        for hook in policy.hooks {
            rows.push(EffectiveHook {
                environment: env.name.clone(),
                source: crate::release::policy::SOURCE.into(),
                hook: hook.name.clone(),
                module: hook.module.text.clone(),
                phases: hook.phases.iter().map(|p| p.to_string()).collect(),
                failure_policy: format!("{:?}", hook.failure_policy),
            });
        }
        for hook in cfg.hooks.iter().filter(|h| {
            h.environments
                .as_ref()
                .is_none_or(|e| e.contains(&env.name))
        }) {
            rows.push(EffectiveHook {
                environment: env.name.clone(),
                source: "app".into(),
                hook: hook.name.clone(),
                module: hook.module.display().to_string(),
                phases: hook.phases.iter().map(|p| p.to_string()).collect(),
                failure_policy: format!("{:?}", hook.failure_policy),
            });
        }
    }
    output::emit(global.output, &rows, || {
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.environment.clone(),
                    r.source.clone(),
                    r.hook.clone(),
                    r.phases.join(","),
                    r.failure_policy.clone(),
                    r.module.clone(),
                ]
            })
            .collect();
        output::table(
            &["ENV", "SOURCE", "HOOK", "PHASES", "FAILURE", "MODULE"],
            &table,
        )
    })?;
    Ok(Outcome::Succeeded)
}
