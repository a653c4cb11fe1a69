//! The hook engine: one wasmtime `Engine` and WASI linker per process, loading modules (pin
//! check, compiled-module cache, compile) into [`LoadedHook`]s that can be run many times.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use hooks_sdk::guest::Command;
use hooks_sdk::{HookRequest, HookResponse};
use sha2::{Digest, Sha256};
use wasmtime::{
    Config, Enabled, Engine, ExternType, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig,
};

use super::cache::{Lookup, ModuleCache};
use super::error::HookError;
use super::poll_guard;
use super::sandbox::{self, RunSpec, SandboxState, TABLE_ELEMENTS_PER_HOOK, TABLES_PER_HOOK, TICK};
use super::slots::{Slots, instance_slots};
use crate::config::{FailurePolicy, HookConfig, HookLimits};

/// Overrides the directory of compiled modules.
pub const CACHE_DIR_ENV: &str = "KUBECTL_RELEASE_CACHE_DIR";

/// The module that WASI preview 1 imports come from; a hook may import nothing else.
const WASI_P1_MODULE: &str = "wasi_snapshot_preview1";

/// Where hooks come from when not said otherwise: the app's release.yaml.
pub const SOURCE_APP: &str = "app";

/// Compiles, caches and instantiates hook modules. Cheap to clone; clones share the engine, the
/// cache and the epoch ticker.
#[derive(Clone)]
pub struct HookEngine {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for HookEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookEngine")
            .field("cache_dir", &self.cache_dir())
            .finish_non_exhaustive()
    }
}

struct Shared {
    engine: Engine,
    linker: Linker<SandboxState>,
    cache: Option<ModuleCache>,
    /// The pool's instance slots, which runs wait for.
    slots: Slots,
    /// The modules hooks of this engine hold, by sha256, each compiled (or read from the cache)
    /// once: the releases of `promote --all` load the same hooks, and 32 copies in flight were
    /// most of its memory. Weak, so that a module no hook holds any more is freed. Each digest
    /// has a slot of its own that a load holds while it compiles: 32 releases starting at once
    /// on a cold cache otherwise compiled the same module 16 times side by side (250 MB).
    modules: Mutex<HashMap<String, Arc<ModuleSlot>>>,
    /// Dropped with the last clone of the engine or of a hook loaded by it; the ticker thread
    /// sees the channel close and stops.
    _ticker: mpsc::Sender<()>,
}

/// A module ready to instantiate, checked to be a command the sandbox can run.
struct Compiled {
    pre: InstancePre<SandboxState>,
}

/// Where the engine finds a module hooks hold; locked while that module is being loaded.
type ModuleSlot = Mutex<Weak<Compiled>>;

/// How a module was loaded, for `-v` timings and benchmarks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadInfo {
    /// The module was not compiled: it came from the on-disk cache, or from another hook of
    /// this engine that holds it.
    pub from_cache: bool,
    /// Reading, hashing and compiling or deserializing.
    pub duration: Duration,
    /// Why the cache was not used, when there was a problem with it.
    pub cache_note: Option<String>,
}

impl HookEngine {
    /// An engine caching compiled modules in `cache_dir`, or if `None` in the default directory:
    /// `$KUBECTL_RELEASE_CACHE_DIR`, else `$XDG_CACHE_HOME/kubectl-release/modules`, else
    /// `~/.cache/kubectl-release/modules` (no cache if there is no home directory).
    ///
    /// # Errors
    ///
    /// When wasmtime cannot be configured for this machine, or the epoch thread cannot start.
    pub fn new(cache_dir: Option<PathBuf>) -> anyhow::Result<HookEngine> {
        Self::build(cache_dir.or_else(default_cache_dir))
    }

    /// An engine that compiles every module it loads (tests and benchmarks of compilation).
    ///
    /// # Errors
    ///
    /// As [`HookEngine::new`].
    pub fn without_cache() -> anyhow::Result<HookEngine> {
        Self::build(None)
    }

    fn build(cache_dir: Option<PathBuf>) -> anyhow::Result<HookEngine> {
        let engine = pooled_engine().or_else(|pooled| {
            // The pool reserves address space up front; where that is refused (a `ulimit -v`),
            // instances are allocated one by one: slower, otherwise the same.
            tracing::debug!("hooks run without the instance pool: {pooled:#}");
            Engine::new(&base_config())
        });
        let engine = engine.map_err(|e| anyhow::anyhow!("cannot configure wasmtime: {e}"))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, SandboxState::wasi)
            .map_err(|e| anyhow::anyhow!("cannot link WASI preview 1: {e}"))?;
        poll_guard::add_to_linker(&mut linker)
            .map_err(|e| anyhow::anyhow!("cannot link the sandbox's poll_oneoff: {e}"))?;

        let (ticker, stop) = mpsc::channel::<()>();
        let ticking = engine.clone();
        std::thread::Builder::new()
            .name("hook-epoch".into())
            .spawn(move || {
                // Ends when every sender is dropped: no engine or hook is left to interrupt.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(TICK) {
                    ticking.increment_epoch();
                }
            })
            .map_err(|e| anyhow::anyhow!("cannot start the hook epoch thread: {e}"))?;

        let cache = cache_dir.map(|dir| ModuleCache::new(dir, &engine));
        Ok(HookEngine {
            shared: Arc::new(Shared {
                engine,
                linker,
                cache,
                slots: Slots::new(instance_slots()),
                modules: Mutex::default(),
                _ticker: ticker,
            }),
        })
    }

    /// How many hooks can run at once in this process (the instance pool's slots).
    pub fn instance_slots(&self) -> u32 {
        instance_slots()
    }

    /// The directory of compiled modules, if caching.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.shared.cache.as_ref().map(ModuleCache::dir)
    }

    /// Loads a configured hook: reads the module, refuses it unless its sha256 is the pinned one
    /// (before compiling anything), then takes the compiled module from the cache or compiles it.
    ///
    /// # Errors
    ///
    /// [`HookError::UnreadableModule`], [`HookError::PinMismatch`], [`HookError::Compile`] or
    /// [`HookError::NotACommand`].
    pub fn load(&self, cfg: &HookConfig) -> Result<LoadedHook, HookError> {
        self.load_checked(cfg.clone(), Some(&cfg.sha256))
    }

    /// Loads a module that is not pinned (`hooks test`): the same as [`HookEngine::load`] without
    /// the pin check. The hook runs in every phase and environment, with `limits`.
    ///
    /// # Errors
    ///
    /// As [`HookEngine::load`], except [`HookError::PinMismatch`].
    pub fn load_unpinned(
        &self,
        name: &str,
        module: &Path,
        limits: HookLimits,
    ) -> Result<LoadedHook, HookError> {
        let cfg = HookConfig {
            name: name.to_string(),
            module: module.to_path_buf(),
            sha256: String::new(),
            phases: hooks_sdk::Phase::ALL.to_vec(),
            environments: None,
            failure_policy: FailurePolicy::Fail,
            needs: Vec::new(),
            limits,
            settings: serde_json::json!({}),
        };
        self.load_checked(cfg, None)
    }

    fn load_checked(
        &self,
        mut cfg: HookConfig,
        pin: Option<&str>,
    ) -> Result<LoadedHook, HookError> {
        let started = Instant::now();
        let bytes = std::fs::read(&cfg.module).map_err(|source| HookError::UnreadableModule {
            hook: cfg.name.clone(),
            path: cfg.module.clone(),
            source,
        })?;
        let actual = hex::encode(Sha256::digest(&bytes));
        if let Some(expected) = pin
            && !expected.eq_ignore_ascii_case(&actual)
        {
            return Err(HookError::PinMismatch {
                hook: cfg.name.clone(),
                path: cfg.module.clone(),
                expected: expected.to_string(),
                actual,
            });
        }
        cfg.sha256.clone_from(&actual);

        let slot = self.module_slot(&actual);
        let mut held = slot.lock().unwrap_or_else(PoisonError::into_inner);
        let (compiled, from_cache, cache_note) = match held.upgrade() {
            Some(compiled) => (compiled, true, None),
            None => {
                let (module, from_cache, cache_note) = self.compiled(&cfg, &bytes, &actual)?;
                check_command(&cfg, &module)?;
                let pre = self.shared.linker.instantiate_pre(&module).map_err(|e| {
                    HookError::NotACommand {
                        hook: cfg.name.clone(),
                        path: cfg.module.clone(),
                        message: format!("{e}"),
                    }
                })?;
                let compiled = Arc::new(Compiled { pre });
                *held = Arc::downgrade(&compiled);
                (compiled, from_cache, cache_note)
            }
        };
        drop(held);
        let load = LoadInfo {
            from_cache,
            duration: started.elapsed(),
            cache_note,
        };
        tracing::debug!(hook = %cfg.name, sha256 = %actual, from_cache, elapsed = ?load.duration, "hook loaded");
        Ok(LoadedHook {
            inner: Arc::new(Loaded {
                config: cfg,
                source: SOURCE_APP.to_string(),
                compiled,
                load,
                engine: self.shared.clone(),
            }),
        })
    }

    /// The slot of the module with this sha256, made when there is none. Slots that no load
    /// is using and whose module no hook holds are dropped on the way.
    fn module_slot(&self, sha256: &str) -> Arc<ModuleSlot> {
        let mut modules = self
            .shared
            .modules
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        modules.retain(|_, slot| {
            Arc::strong_count(slot) > 1
                || slot.try_lock().map_or(true, |held| held.strong_count() > 0)
        });
        modules.entry(sha256.to_string()).or_default().clone()
    }

    /// The compiled module: from the cache when a sound entry exists, else compiled (and
    /// cached). Cache problems are never fatal: the worst case is compiling.
    fn compiled(
        &self,
        cfg: &HookConfig,
        bytes: &[u8],
        sha256: &str,
    ) -> Result<(Module, bool, Option<String>), HookError> {
        let mut note = None;
        if let Some(cache) = &self.shared.cache {
            match cache.load(&self.shared.engine, sha256) {
                Lookup::Hit(module) => return Ok((module, true, None)),
                Lookup::Miss => {}
                Lookup::Damaged(reason) => {
                    tracing::warn!(hook = %cfg.name, "ignoring a damaged compiled-module cache entry and recompiling: {reason}");
                    note = Some(format!("damaged cache entry recompiled: {reason}"));
                }
            }
        }
        let module =
            Module::from_binary(&self.shared.engine, bytes).map_err(|e| HookError::Compile {
                hook: cfg.name.clone(),
                path: cfg.module.clone(),
                message: format!("{e}"),
            })?;
        if let Some(cache) = &self.shared.cache {
            match cache.store(sha256, &module) {
                Ok(path) => {
                    tracing::debug!(hook = %cfg.name, path = %path.display(), "compiled module cached")
                }
                Err(reason) => {
                    tracing::warn!(hook = %cfg.name, "cannot cache the compiled module (the next run compiles again): {reason}");
                }
            }
        }
        Ok((module, false, note))
    }
}

/// The default directory of compiled modules, per the rules of [`HookEngine::new`].
pub fn default_cache_dir() -> Option<PathBuf> {
    let non_empty = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = non_empty(CACHE_DIR_ENV) {
        return Some(dir);
    }
    let base = non_empty("XDG_CACHE_HOME")
        .or_else(|| non_empty("HOME").map(|home| home.join(".cache")))?;
    Some(base.join("kubectl-release").join("modules"))
}

/// What every engine is configured with.
fn base_config() -> Config {
    let mut config = Config::new();
    // Wall time is enforced with epochs rather than fuel: it costs a counter check per loop and
    // call instead of per instruction.
    config.epoch_interruption(true);
    config
}

/// An engine whose instances come from a pool of [`instance_slots`] pre-reserved slots.
///
/// A fresh store per run is the sandbox's promise; with the default allocator every run maps and
/// unmaps its linear memory, which in a multi-threaded process means a TLB shootdown on every
/// core (measured: most of a warm evaluation). A pooled slot is reset in place instead. With
/// Linux's `PAGEMAP_SCAN` (6.7 and later) only the pages the hook wrote are restored, so a slot
/// can keep a lot resident cheaply; without it the whole resident part is rewritten, so less is
/// kept (the rest is handed back to the OS and faulted in again by the next run).
fn pooled_engine() -> wasmtime::Result<Engine> {
    let keep_resident = if PoolingAllocationConfig::is_pagemap_scan_available() {
        4 << 20
    } else {
        2 << 20
    };
    let mut pool = PoolingAllocationConfig::new();
    let slots = instance_slots();
    pool.total_core_instances(slots)
        .total_memories(slots)
        .total_tables(slots * TABLES_PER_HOOK)
        .max_tables_per_module(TABLES_PER_HOOK)
        .table_elements(TABLE_ELEMENTS_PER_HOOK)
        .linear_memory_keep_resident(keep_resident)
        .table_keep_resident(64 << 10)
        .total_stacks(slots)
        .pagemap_scan(Enabled::Auto);
    let mut config = base_config();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
}

/// Refuses modules the sandbox cannot run, with a message a hook author can act on.
fn check_command(cfg: &HookConfig, module: &Module) -> Result<(), HookError> {
    let refuse = |message: String| HookError::NotACommand {
        hook: cfg.name.clone(),
        path: cfg.module.clone(),
        message,
    };
    match module.get_export("_start") {
        Some(ExternType::Func(ty)) if ty.params().len() == 0 && ty.results().len() == 0 => {}
        Some(_) => {
            return Err(refuse(
                "its `_start` export is not a function without parameters or results".into(),
            ));
        }
        None => {
            return Err(refuse(
                "it exports no `_start`; build a command (a binary with `main`, e.g. `cargo build --target wasm32-wasip1`), not a library".into(),
            ));
        }
    }
    if let Some(import) = module.imports().find(|i| i.module() != WASI_P1_MODULE) {
        return Err(refuse(format!(
            "it imports `{}::{}`; hooks may only import WASI preview 1 (`{WASI_P1_MODULE}`)",
            import.module(),
            import.name()
        )));
    }
    Ok(())
}

/// A hook ready to run: its module compiled and linked, its config and limits.
///
/// Cheap to clone and safe to share between threads; every run gets a fresh store.
#[derive(Clone)]
pub struct LoadedHook {
    inner: Arc<Loaded>,
}

#[derive(Clone)]
struct Loaded {
    config: HookConfig,
    source: String,
    compiled: Arc<Compiled>,
    load: LoadInfo,
    /// The engine's slots; keeps the epoch ticker alive while the hook can run.
    engine: Arc<Shared>,
}

impl std::fmt::Debug for LoadedHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedHook")
            .field("name", &self.name())
            .field("source", &self.source())
            .field("sha256", &self.sha256())
            .finish_non_exhaustive()
    }
}

/// One evaluation: the verdict, the guest's logs and how long it took.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The hook's response.
    pub response: HookResponse,
    /// What the hook wrote to stderr (up to its log limit).
    pub stderr: String,
    /// Whether stderr was cut at the log limit.
    pub stderr_truncated: bool,
    /// Wall time of the run, instantiation included.
    pub duration: Duration,
}

impl LoadedHook {
    /// The hook's name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// Where the hook comes from: `app` (release.yaml) unless set with [`LoadedHook::with_source`].
    pub fn source(&self) -> &str {
        &self.inner.source
    }

    /// Marks where the hook comes from, e.g. `cluster-policy`, for reports.
    #[must_use]
    pub fn with_source(self, source: impl Into<String>) -> LoadedHook {
        let mut loaded = Arc::unwrap_or_clone(self.inner);
        loaded.source = source.into();
        LoadedHook {
            inner: Arc::new(loaded),
        }
    }

    /// The hook's config (for an unpinned load, one made up for it).
    pub fn config(&self) -> &HookConfig {
        &self.inner.config
    }

    /// The sha256 of the module's bytes (lower-case hex).
    pub fn sha256(&self) -> &str {
        &self.inner.config.sha256
    }

    /// The settings the hook is configured with.
    pub fn settings(&self) -> &serde_json::Value {
        &self.inner.config.settings
    }

    /// What a hook error means for the release.
    pub fn failure_policy(&self) -> FailurePolicy {
        self.inner.config.failure_policy
    }

    /// The sandbox limits of the hook.
    pub fn limits(&self) -> &HookLimits {
        &self.inner.config.limits
    }

    /// How the module was loaded.
    pub fn load_info(&self) -> &LoadInfo {
        &self.inner.load
    }

    /// Runs `check` on `req` and returns the verdict. Blocks the calling thread for at most
    /// about the hook's timeout; from async code call it in `tokio::task::spawn_blocking` (on an
    /// async worker thread it panics, as it blocks on a Tokio runtime), or run a phase with
    /// [`crate::hooks::run_phase`], which awaits the run instead.
    ///
    /// # Errors
    ///
    /// Any [`HookError`] of a run: trap, timeout, memory limit, non-zero exit, output too
    /// large, invalid response.
    pub fn check(&self, req: &HookRequest) -> Result<HookResponse, HookError> {
        self.evaluate(Command::Check, req).map(|e| e.response)
    }

    /// [`LoadedHook::check`] of a request already serialized (`stdin`, as the hook reads it),
    /// awaited: the guest runs on the awaiting task's thread.
    pub(crate) async fn check_json(&self, stdin: Vec<u8>) -> Result<HookResponse, HookError> {
        self.evaluate_json(Command::Check, stdin)
            .await
            .map(|e| e.response)
    }

    /// Asks the hook whether `settings` are acceptable: `allowed` says so, `message` why not.
    ///
    /// The request carries the settings, the hook's name and its first phase; the other fields
    /// are placeholders.
    ///
    /// # Errors
    ///
    /// As [`LoadedHook::check`].
    pub fn validate_settings(
        &self,
        settings: &serde_json::Value,
    ) -> Result<HookResponse, HookError> {
        let request = HookRequest {
            phase: self
                .inner
                .config
                .phases
                .first()
                .copied()
                .unwrap_or(hooks_sdk::Phase::PreDeploy),
            hook: self.name().to_string(),
            settings: settings.clone(),
            now: jiff::Timestamp::now().to_string(),
            ..HookRequest::default()
        };
        self.evaluate(Command::ValidateSettings, &request)
            .map(|e| e.response)
    }

    /// One run of the module with `argv` and `stdin` in the hook sandbox (same store, limits
    /// and slots as [`LoadedHook::evaluate`]), for contracts other than the hook's (generators).
    pub(crate) fn run_raw(
        &self,
        argv: [&'static str; 2],
        stdin: Vec<u8>,
    ) -> Result<sandbox::RunOutput, HookError> {
        wasmtime_wasi::runtime::in_tokio(sandbox::run(
            &self.inner.compiled.pre,
            &self.inner.engine.slots,
            RunSpec {
                hook: self.name().to_string(),
                argv,
                stdin,
                limits: self.inner.config.limits,
            },
        ))
    }

    /// Runs the hook with `command` and returns the verdict with the logs and timing.
    ///
    /// # Errors
    ///
    /// As [`LoadedHook::check`].
    pub fn evaluate(&self, command: Command, req: &HookRequest) -> Result<Evaluation, HookError> {
        let stdin = serde_json::to_vec(req).map_err(|e| HookError::Sandbox {
            hook: self.name().to_string(),
            message: format!("cannot serialize the request: {e}"),
        })?;
        wasmtime_wasi::runtime::in_tokio(self.evaluate_json(command, stdin))
    }

    /// [`LoadedHook::evaluate`] of a request already serialized, awaited.
    async fn evaluate_json(
        &self,
        command: Command,
        stdin: Vec<u8>,
    ) -> Result<Evaluation, HookError> {
        let started = Instant::now();
        let hook = self.name().to_string();
        let output = sandbox::run(
            &self.inner.compiled.pre,
            &self.inner.engine.slots,
            RunSpec {
                hook: hook.clone(),
                argv: ["hook", command.as_str()],
                stdin,
                limits: self.inner.config.limits,
            },
        )
        .await?;
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
            tracing::info!(hook = %hook, "{line}");
        }
        if output.stderr_truncated {
            tracing::info!(hook = %hook, "(more logs were dropped at the hook's log limit)");
        }
        let response = parse_response(&hook, &output.stdout)?;
        Ok(Evaluation {
            response,
            stderr,
            stderr_truncated: output.stderr_truncated,
            duration: started.elapsed(),
        })
    }
}

/// How much of a bad response goes into the error message.
const EXCERPT_CHARS: usize = 200;

fn parse_response(hook: &str, stdout: &[u8]) -> Result<HookResponse, HookError> {
    parse_document(hook, stdout, "HookResponse")
}

/// One JSON document of type `T` from a module's stdout (`what` names it in the error), or
/// an invalid-response error with an excerpt of what it wrote.
pub(crate) fn parse_document<T: serde::de::DeserializeOwned>(
    hook: &str,
    stdout: &[u8],
    what: &str,
) -> Result<T, HookError> {
    let invalid = |reason: String| HookError::InvalidResponse {
        hook: hook.to_string(),
        reason,
        excerpt: String::from_utf8_lossy(stdout)
            .chars()
            .take(EXCERPT_CHARS)
            .collect(),
    };
    if stdout.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid("it wrote nothing to stdout".into()));
    }
    serde_json::from_slice::<T>(stdout)
        .map_err(|e| invalid(format!("not one {what} JSON document ({e})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_must_be_one_json_document() {
        assert!(
            parse_response("h", b"{\"allowed\":true}\n")
                .unwrap()
                .allowed
        );
        let err = parse_response("h", b"hello world").unwrap_err();
        assert!(
            matches!(&err, HookError::InvalidResponse { excerpt, .. } if excerpt == "hello world"),
            "{err}"
        );
        assert!(parse_response("h", b"{\"allowed\":true}{\"allowed\":false}").is_err());
        assert!(parse_response("h", b"{\"message\":\"no verdict\"}").is_err());
        assert!(
            parse_response("h", b"  \n")
                .unwrap_err()
                .to_string()
                .contains("nothing")
        );
    }
}
