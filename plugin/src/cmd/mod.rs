//! One file per verb. Each reads like the command's story; the domain logic lives outside `cmd`.

pub mod approve;
pub mod deploy;
pub mod history;
pub mod hooks;
pub mod hooks_registry;
pub mod policy;
pub mod promote;
pub mod rollback;
pub mod status;
pub mod where_;

use std::path::Path;

use anyhow::Result;

use crate::cli::{Cli, Command, GlobalArgs, HooksCommand, PolicyCommand};
use crate::config::{self, ReleaseConfig};
use crate::exit::{ExitCode, Failure};

/// Runs the verb the user asked for.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    let global = &cli.global;
    match &cli.command {
        Command::Deploy(args) => deploy::run(global, &load_config(global)?, args, false).await,
        Command::Plan(args) => deploy::run(global, &load_config(global)?, args, true).await,
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
    }
}

/// Finds and validates release.yaml; any problem is a config error (exit 2).
pub fn load_config(global: &GlobalArgs) -> Result<ReleaseConfig> {
    let cwd = std::env::current_dir()?;
    let found = config::discover(global.file.as_deref(), &cwd)
        .and_then(|path| config::load(Path::new(&path)))
        .map_err(|e| Failure::usage(e.to_string()))?;
    Ok(found)
}
