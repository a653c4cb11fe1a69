//! The WASM hook sandbox: loading pinned modules, running them in a locked-down store, and
//! deciding a phase from their verdicts.
//!
//! ```no_run
//! # async fn example(config: &kubectl_release::config::ReleaseConfig) -> anyhow::Result<()> {
//! use kubectl_release::hooks::{HookEngine, run_phase, select};
//! use hooks_sdk::{HookRequest, Phase};
//!
//! let engine = HookEngine::new(None)?;
//! let hooks = config.hooks.iter().map(|cfg| engine.load(cfg)).collect::<Result<Vec<_>, _>>()?;
//! let report = run_phase(&select(&hooks, Phase::PreDeploy, "qa"), Phase::PreDeploy, &HookRequest::default()).await;
//! if report.denied() {
//!     anyhow::bail!("{}", report.render());
//! }
//! # Ok(()) }
//! ```
//!
//! - `engine`: one wasmtime engine and WASI linker; [`HookEngine::load`] checks the sha256 pin
//!   before compiling and uses `cache` for compiled modules;
//! - `sandbox`: one run in a fresh store with memory, time and output limits, on an instance
//!   slot (`slots`) of the engine's pool; `poll_guard` keeps sleeps within the timeout;
//! - `phase`: [`run_phase`] runs a phase's hooks into a [`PhaseReport`], one after another in
//!   the awaiting task (the guests on fibers of its thread), the next one starting beside them
//!   whenever one overstays `OVERSTAY`; each reads the phase's request serialized once
//!   (`phase_request`) behind its own header;
//! - `error`: [`HookError`], which is never a denial by itself.

mod cache;
mod engine;
mod error;
pub mod generator;
mod phase;
mod phase_request;
mod poll_guard;
mod sandbox;
mod slots;

pub use engine::{
    CACHE_DIR_ENV, Evaluation, HookEngine, LoadInfo, LoadedHook, SOURCE_APP, default_cache_dir,
};
pub use error::HookError;
pub use phase::{HookVerdict, Outcome, PhaseReport, run_phase, select};
pub use slots::serve_many_callers;
