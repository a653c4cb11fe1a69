//! One file per verb. Each reads like the command's story; the domain logic lives outside `cmd`.
//! Verbs return the outcome they ended with; `main` turns it into the exit code.

pub mod approve;
pub mod deploy;
pub mod generate;
pub mod history;
pub mod hooks;
pub mod hooks_registry;
pub mod init;
pub mod policy;
pub mod preview;
pub mod promote;
pub mod rollback;
pub mod status;
pub mod webhook;
pub mod where_;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::cli::{
    Cli, Command, GlobalArgs, HooksCommand, PolicyCommand, RolloutArgs, WebhookCommand,
};
use crate::config::{self, Environment, ReleaseConfig};
use crate::domain::{Failure, Outcome, ReleaseKind};
use crate::release::{self, Interrupt, Ran, Report};

/// Runs the verb the user asked for.
pub async fn run(cli: Cli) -> Result<Outcome> {
    let global = &cli.global;
    match &cli.command {
        Command::Deploy(args) => deploy::run(global, &load_config(global)?, args, false).await,
        Command::Plan(args) => deploy::run(global, &load_config(global)?, args, true).await,
        Command::Init(args) => init::run(global, args).await,
        Command::Generate(args) => generate::run(global, args).await,
        Command::Preview(command) => preview::run(global, &load_config(global)?, command).await,
        Command::Status(args) => status::run(global, &load_config(global)?, args).await,
        Command::Where(args) => where_::run(global, &load_config(global)?, args).await,
        Command::History(args) => history::run(global, &load_config(global)?, &args.env).await,
        Command::Rollback(args) => rollback::run(global, &load_config(global)?, args).await,
        Command::Hooks(HooksCommand::Test(args)) => hooks::test(global, args).await,
        Command::Hooks(HooksCommand::Verify) => hooks::verify(global, &load_config(global)?).await,
        Command::Hooks(HooksCommand::Push(args)) => hooks_registry::push(global, args).await,
        Command::Hooks(HooksCommand::Pull(args)) => hooks_registry::pull(global, args).await,
        Command::Policy(PolicyCommand::Show(args)) => {
            policy::show(global, &load_config(global)?, args).await
        }
        Command::Promote(args) if args.all => promote::run_all(global, args).await,
        Command::Promote(args) => promote::run(global, &load_config(global)?, args).await,
        Command::Approve(args) => approve::approve(global, &load_config(global)?, args).await,
        Command::Approvals(args) => approve::list(global, &load_config(global)?, args).await,
        Command::Webhook(WebhookCommand::Serve(args)) => webhook::serve(global, args).await,
        Command::Webhook(WebhookCommand::Config(args)) => webhook::config(args),
    }
}

/// Finds and validates release.yaml; any problem is a config error (exit 2).
pub fn load_config(global: &GlobalArgs) -> Result<ReleaseConfig> {
    let cwd = std::env::current_dir()?;
    let found = config::discover(global.file.as_deref(), &cwd)
        .and_then(|path| config::load(Path::new(&path)))
        .map_err(|e| Failure::invalid(e.to_string()))?;
    Ok(found)
}

/// The release options the rollout flags and the config say for `env`.
pub fn options(cfg: &ReleaseConfig, env: &Environment, args: &RolloutArgs) -> release::Options {
    release::Options {
        timeout: args.timeout,
        atomic: cfg.atomic_for(env, args.atomic),
        dry_run: args.dry_run,
        force_conflicts: args.force_conflicts,
        rerun_jobs: args.rerun_jobs,
        gitops: release::GitopsOptions {
            wait: args.wait,
            pull_request: args.pull_request,
            pr_command: args.pr_command.clone(),
            clones: Default::default(),
        },
    }
}

/// The interrupt a release verb stops on: SIGINT and SIGTERM raise it from now on.
pub fn interrupt() -> Interrupt {
    let interrupt = Interrupt::new();
    if let Err(e) = crate::cli::signals::install(interrupt.clone()) {
        tracing::warn!("cannot handle signals; a signal ends the release at once: {e}");
    }
    interrupt
}

/// A release verb's ending: a verb that stopped before its release began still gets its one
/// report, made from the error.
pub fn ran_or_report(ran: Result<Ran>, app: &str, env: &str, kind: ReleaseKind) -> Ran {
    ran.unwrap_or_else(|err| {
        let report = Report::early(app, env, kind, &err);
        let failure = Failure::new(report.outcome, report.message.clone());
        Ran {
            report,
            end: Err(failure),
        }
    })
}

/// Prints a release verb's one report and returns how it ended.
pub fn conclude(global: &GlobalArgs, ran: Ran) -> Result<Outcome> {
    crate::output::emit(global.output, &ran.report, || ran.report.render())?;
    match ran.end {
        Ok(()) => Ok(ran.report.outcome),
        Err(failure) => Err(failure.into()),
    }
}

/// Every release.yaml of a monorepo: below `-f DIR`, or below the git root (`--all`).
pub fn monorepo_configs(global: &GlobalArgs) -> Result<Vec<PathBuf>> {
    let root = match &global.file {
        Some(dir) if dir.is_dir() => dir.clone(),
        Some(file) => {
            return Err(Failure::invalid(format!(
                "--all takes a directory with -f, not the file {}",
                file.display()
            ))
            .into());
        }
        None => {
            let cwd = std::env::current_dir()?;
            cwd.ancestors()
                .find(|d| d.join(".git").exists())
                .unwrap_or(&cwd)
                .to_path_buf()
        }
    };
    let configs = config::discover_all(&root)
        .with_context(|| format!("cannot search {} for release.yaml files", root.display()))?;
    if configs.is_empty() {
        return Err(Failure::invalid(format!("no release.yaml below {}", root.display())).into());
    }
    Ok(configs)
}
