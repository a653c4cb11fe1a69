//! One run of a hook module in a fresh, locked-down wasmtime `Store`.
//!
//! What the guest gets: the fixed argv, its request on stdin (from memory), stdout and stderr
//! into capped memory buffers, a clock and random numbers. What it does not get: preopened
//! directories (so no file can be opened at all), environment variables, sockets (WASI p1 has
//! none and the context allows no network), or more memory and time than its limits.
//!
//! Wall time is enforced in the two places a guest can spend it. Executing wasm, it is stopped by
//! epoch interruption: the engine's ticker bumps the epoch every [`TICK`], and the store's
//! deadline callback traps once the timeout has passed. Inside a host call, the only one that can
//! block is `poll_oneoff` (a sleep; stdin and stdout are memory pipes that are always ready), and
//! [`poll_guard`](super::poll_guard) refuses any sleep that would end past the deadline. So a run
//! needs no watchdog thread: it is a future, the guest running on a fiber of whatever task awaits
//! it, handing the thread back at every epoch tick, and it ends within about a [`TICK`] of its
//! timeout.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::{
    InstancePre, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline,
};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi::{HostMonotonicClock, WasiCtxBuilder};

use super::error::HookError;
use super::slots::Slots;
use crate::config::HookLimits;

/// How often the engine's epoch advances, i.e. how late after its deadline a looping guest stops.
pub(crate) const TICK: Duration = Duration::from_millis(10);

/// Most tables, and table elements, a hook may have (the pool is sized for them).
pub(crate) const TABLES_PER_HOOK: u32 = 4;
pub(crate) const TABLE_ELEMENTS_PER_HOOK: usize = 100_000;

/// How much of the guest's stderr goes into error messages.
const STDERR_TAIL_LINES: usize = 10;
const STDERR_TAIL_BYTES: usize = 2048;

/// The data of a hook's store.
pub(crate) struct SandboxState {
    wasi: WasiP1Ctx,
    limiter: Limiter,
    interrupted: Option<Interruption>,
    /// When the hook's timeout passes.
    deadline: Instant,
    /// The origin of the guest's monotonic clock, to turn its absolute deadlines into waits.
    clock: SandboxClock,
}

impl SandboxState {
    /// For `wasmtime_wasi::p1::add_to_linker_async`.
    pub(crate) fn wasi(&mut self) -> &mut WasiP1Ctx {
        &mut self.wasi
    }

    /// How long the hook may still run.
    pub(crate) fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Now, on the guest's monotonic clock.
    pub(crate) fn monotonic_now(&self) -> Duration {
        self.clock.origin.elapsed()
    }

    /// Stops the guest: its timeout would pass while it waits in a host call.
    pub(crate) fn time_out(&mut self) -> wasmtime::Error {
        self.interrupted = Some(Interruption::Timeout);
        wasmtime::Error::new(Interruption::Timeout)
    }
}

/// The guest's monotonic clock: nanoseconds since the run started (what wasmtime-wasi's default
/// clock does too), with an origin the poll guard can read.
#[derive(Debug, Clone, Copy)]
struct SandboxClock {
    origin: Instant,
}

impl HostMonotonicClock for SandboxClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Why the deadline callback stopped the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interruption {
    Timeout,
    OutputTooLarge,
}

impl std::fmt::Display for Interruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Interruption::Timeout => "the hook's timeout has passed",
            Interruption::OutputTooLarge => "the hook wrote more than its output limit",
        })
    }
}

impl std::error::Error for Interruption {}

/// [`StoreLimits`] that also remembers whether it refused memory, so that a guest which dies
/// after a refused `memory.grow` (as Rust's allocator does) is reported as out of memory rather
/// than as an anonymous trap.
struct Limiter {
    limits: StoreLimits,
    refused_memory: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        self.refused_memory |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// What one run produced, when the guest exited 0.
#[derive(Debug)]
pub(crate) struct RunOutput {
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    pub(crate) stderr_truncated: bool,
}

/// What a run needs.
pub(crate) struct RunSpec {
    pub(crate) hook: String,
    pub(crate) argv: [&'static str; 2],
    pub(crate) stdin: Vec<u8>,
    pub(crate) limits: HookLimits,
}

/// Runs the module once, in a fresh store; returns within about a [`TICK`] of the hook's
/// timeout. The guest runs on a fiber of the task that awaits this (no thread of its own), and
/// gives the thread back to the runtime at every [`TICK`], so a hook that loops never holds up
/// the other tasks of a runtime thread for longer than that.
pub(crate) async fn run(
    pre: &InstancePre<SandboxState>,
    slots: &Slots,
    spec: RunSpec,
) -> Result<RunOutput, HookError> {
    let RunSpec {
        hook,
        argv,
        stdin,
        limits,
    } = spec;
    // Taken before the store, so given back after it is dropped (its instance with it); the
    // timeout counts from here, not while waiting.
    let _slot = slots.take().await;
    let started = Instant::now();
    let stdout = CappedPipe::new(usize_limit(limits.max_output_bytes), OnOverflow::Fail);
    let stderr = CappedPipe::new(usize_limit(limits.max_log_bytes), OnOverflow::Truncate);

    let mut store = sandbox_store(pre, &argv, stdin, &limits, started, &stdout, &stderr);
    let result = match pre.instantiate_async(&mut store).await {
        Ok(instance) => match instance.get_typed_func::<(), ()>(&mut store, "_start") {
            Ok(start) => start.call_async(&mut store, ()).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };

    let exit_code = match result {
        Ok(()) => 0,
        Err(err) => match err.downcast_ref::<wasmtime_wasi::I32Exit>() {
            Some(exit) => exit.0,
            None => {
                return Err(classify_failure(
                    &hook, &limits, &store, &stdout, &stderr, &err,
                ));
            }
        },
    };
    // A guest may flood stdout, ignore the write errors and still exit: the output is cut off,
    // and the verdict cannot be trusted.
    if stdout.overflowed() {
        return Err(HookError::OutputTooLarge {
            hook,
            limit: limits.max_output_bytes,
        });
    }
    if exit_code != 0 {
        return Err(HookError::NonZeroExit {
            hook,
            code: exit_code,
            stderr_tail: stderr_tail(&stderr.contents()),
        });
    }
    Ok(RunOutput {
        stdout: stdout.contents(),
        stderr: stderr.contents(),
        stderr_truncated: stderr.overflowed(),
    })
}

/// A fresh store for one run: WASI with the request on stdin and capped pipes for stdout and
/// stderr, memory limits, and an epoch deadline that stops the hook at its timeout or when its
/// output overflows.
fn sandbox_store(
    pre: &InstancePre<SandboxState>,
    argv: &[&str],
    stdin: Vec<u8>,
    limits: &HookLimits,
    started: Instant,
    stdout: &CappedPipe,
    stderr: &CappedPipe,
) -> Store<SandboxState> {
    let limits = *limits;
    let clock = SandboxClock { origin: started };
    // No preopens, no env, no network: WasiCtxBuilder starts with none of them.
    let wasi = WasiCtxBuilder::new()
        .args(argv)
        .monotonic_clock(clock)
        .stdin(MemoryInputPipe::new(stdin))
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .build_p1();
    let limiter = Limiter {
        limits: StoreLimitsBuilder::new()
            .memory_size(usize_limit(limits.memory_bytes))
            .instances(1)
            .memories(1)
            .tables(TABLES_PER_HOOK as usize)
            .table_elements(TABLE_ELEMENTS_PER_HOOK)
            .build(),
        refused_memory: false,
    };
    let mut store = Store::new(
        pre.module().engine(),
        SandboxState {
            wasi,
            limiter,
            interrupted: None,
            deadline: started + limits.timeout,
            clock,
        },
    );
    store.limiter(|state| &mut state.limiter);
    let overflow = stdout.clone();
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |mut ctx| {
        let reason = if overflow.overflowed() {
            Interruption::OutputTooLarge
        } else if started.elapsed() >= limits.timeout {
            Interruption::Timeout
        } else {
            // Not yet: the runtime's thread is handed back until the next tick.
            return Ok(UpdateDeadline::Yield(1));
        };
        ctx.data_mut().interrupted = Some(reason);
        Err(wasmtime::Error::new(reason))
    });

    store
}

/// Names the reason a run failed without an exit status, most specific first.
fn classify_failure(
    hook: &str,
    limits: &HookLimits,
    store: &Store<SandboxState>,
    stdout: &CappedPipe,
    stderr: &CappedPipe,
    err: &wasmtime::Error,
) -> HookError {
    let hook = hook.to_string();
    match store.data().interrupted {
        Some(Interruption::Timeout) => {
            return HookError::Timeout {
                hook,
                limit: limits.timeout,
            };
        }
        Some(Interruption::OutputTooLarge) => {
            return HookError::OutputTooLarge {
                hook,
                limit: limits.max_output_bytes,
            };
        }
        None => {}
    }
    if stdout.overflowed() {
        return HookError::OutputTooLarge {
            hook,
            limit: limits.max_output_bytes,
        };
    }
    if store.data().limiter.refused_memory {
        return HookError::MemoryLimit {
            hook,
            limit: limits.memory_bytes,
        };
    }
    let message = match err.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        // A host call that failed (e.g. WASI given a bad pointer or flags): the outermost error
        // is only "error while executing at wasm backtrace", the cause after it says what failed.
        None => err
            .chain()
            .map(ToString::to_string)
            .find(|message| !message.starts_with("error while executing"))
            .unwrap_or_else(|| {
                err.to_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string()
            }),
    };
    HookError::Trap {
        hook,
        message,
        stderr_tail: stderr_tail(&stderr.contents()),
    }
}

/// The last lines of the guest's stderr, for error messages.
pub(crate) fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("\n");
    if tail.len() <= STDERR_TAIL_BYTES {
        return tail;
    }
    let mut start = tail.len() - STDERR_TAIL_BYTES;
    while !tail.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &tail[start..])
}

fn usize_limit(limit: u64) -> usize {
    usize::try_from(limit).unwrap_or(usize::MAX)
}

/// What a [`CappedPipe`] does with bytes past its capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnOverflow {
    /// Refuse them with an I/O error (stdout: a cut-off response is worthless).
    Fail,
    /// Drop them and pretend they were written (stderr: logs are best effort).
    Truncate,
}

/// An in-memory stdout/stderr with a hard cap and a flag that says the cap was hit.
///
/// wasmtime-wasi's `MemoryOutputPipe` also caps, but gives no cheap way to learn that the cap was
/// reached, which the deadline callback needs to stop a guest that ignores write errors.
#[derive(Debug, Clone)]
pub(crate) struct CappedPipe {
    inner: Arc<PipeInner>,
}

#[derive(Debug)]
struct PipeInner {
    buffer: Mutex<Vec<u8>>,
    capacity: usize,
    on_overflow: OnOverflow,
    overflowed: AtomicBool,
}

impl CappedPipe {
    fn new(capacity: usize, on_overflow: OnOverflow) -> CappedPipe {
        CappedPipe {
            inner: Arc::new(PipeInner {
                buffer: Mutex::new(Vec::new()),
                capacity,
                on_overflow,
                overflowed: AtomicBool::new(false),
            }),
        }
    }

    fn overflowed(&self) -> bool {
        self.inner.overflowed.load(Ordering::Relaxed)
    }

    fn contents(&self) -> Vec<u8> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // A poisoned lock only means another writer panicked mid-append; the bytes are still
        // the best record we have.
        self.inner
            .buffer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut buffer = self.lock();
        let room = self.inner.capacity.saturating_sub(buffer.len());
        if bytes.len() <= room {
            buffer.extend_from_slice(bytes);
            return Ok(bytes.len());
        }
        buffer.extend_from_slice(&bytes[..room]);
        self.inner.overflowed.store(true, Ordering::Relaxed);
        match self.inner.on_overflow {
            OnOverflow::Truncate => Ok(bytes.len()),
            OnOverflow::Fail => Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "hook output limit reached",
            )),
        }
    }
}

/// How much a guest may write in one go; the cap itself is enforced by [`CappedPipe::write`].
const WRITE_PERMIT: usize = 64 * 1024;

// The pipe is a synchronous WASI output stream of its own. wasmtime-wasi would otherwise wrap
// the `AsyncWrite` below in a stream that hands every write to a task on its Tokio runtime: two
// thread wake-ups per `fd_write`, most of a warm evaluation's cost.
#[wasmtime_wasi::async_trait]
impl OutputStream for CappedPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        match CappedPipe::write(self, &bytes) {
            Ok(_) => Ok(()),
            // Trapping stops the guest now rather than at the next epoch tick; the run is
            // reported as output too large because the pipe says it overflowed.
            Err(e) => Err(StreamError::Trap(wasmtime::Error::new(e))),
        }
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedPipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CappedPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(CappedPipe::write(&self, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_pipe_fails_or_truncates_past_capacity() {
        let out = CappedPipe::new(4, OnOverflow::Fail);
        assert_eq!(out.write(b"abc").unwrap(), 3);
        assert!(out.write(b"de").is_err());
        assert!(out.overflowed());
        assert_eq!(out.contents(), b"abcd");

        let err = CappedPipe::new(2, OnOverflow::Truncate);
        assert_eq!(err.write(b"abc").unwrap(), 3);
        assert!(err.overflowed());
        assert_eq!(err.contents(), b"ab");
    }

    #[test]
    fn stderr_tail_keeps_the_last_lines() {
        let text: String = (0..30).map(|i| format!("line {i}\n")).collect();
        let tail = stderr_tail(text.as_bytes());
        assert!(
            tail.starts_with("line 20\n") && tail.ends_with("line 29"),
            "{tail}"
        );
        let long = "é".repeat(5000);
        assert!(stderr_tail(long.as_bytes()).len() <= STDERR_TAIL_BYTES + "…".len());
    }
}
