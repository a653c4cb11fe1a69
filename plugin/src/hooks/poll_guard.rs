//! WASI's `poll_oneoff`, the one host call in which a hook can block, implemented by the sandbox
//! so that no sleep outlasts the hook's timeout.
//!
//! Epoch interruption stops a guest only while it executes wasm; inside wasmtime-wasi's
//! `poll_oneoff` a guest could sleep through its timeout, and the host function cannot be wrapped
//! (it reads the caller's memory, which a host-to-host call does not have). The sandbox's own
//! version is small because a hook has little to wait for: its descriptors are stdin (fd 0) and
//! stdout and stderr (1 and 2), memory pipes that are always ready. So a poll with a descriptor
//! subscription returns at once; a poll of clocks alone sleeps until the earliest of them, unless
//! that falls past the hook's deadline: then the hook is stopped as timed out, at once.
//!
//! The results are those of wasmtime-wasi's version for the same descriptors: readiness events
//! with `nbytes` 1, `EBADF` for any other descriptor, `EINVAL` for an empty poll or an unknown
//! clock, `EFAULT` for pointers outside memory.

use std::time::{Duration, SystemTime};

use wasmtime::{Caller, Extern, Linker, Memory};

use super::sandbox::SandboxState;

const MODULE: &str = "wasi_snapshot_preview1";

/// Layout of `subscription` (48 bytes) and `event` (32 bytes) in WASI preview 1.
const SUBSCRIPTION_SIZE: usize = 48;
const EVENT_SIZE: usize = 32;

/// `eventtype`.
const CLOCK: u8 = 0;
const FD_READ: u8 = 1;
const FD_WRITE: u8 = 2;

/// `clockid` and `subclockflags`.
const REALTIME: u32 = 0;
const MONOTONIC: u32 = 1;
const ABSTIME: u16 = 1;

/// `errno`.
const SUCCESS: i32 = 0;
const BADF: i32 = 8;
const FAULT: i32 = 21;
const INVAL: i32 = 28;

const STDIN: u32 = 0;
const STDOUT: u32 = 1;
const STDERR: u32 = 2;

/// Replaces wasmtime-wasi's `poll_oneoff` in `linker` (which already has the rest of WASI).
///
/// # Errors
///
/// When the function cannot be defined (a wasmtime bug).
pub(crate) fn add_to_linker(linker: &mut Linker<SandboxState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap_async(
        MODULE,
        "poll_oneoff",
        |caller, (subscriptions, events, count, nevents): (i32, i32, i32, i32)| {
            Box::new(poll_oneoff(caller, subscriptions, events, count, nevents))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// One subscription, as far as the sandbox needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Subscription {
    userdata: u64,
    kind: u8,
    /// For a clock: how long until it fires; zero for a descriptor, which is always ready.
    wait: Duration,
}

async fn poll_oneoff(
    mut caller: Caller<'_, SandboxState>,
    subscriptions: i32,
    events: i32,
    count: i32,
    nevents: i32,
) -> wasmtime::Result<i32> {
    let Some(memory) = caller.get_export("memory").and_then(Extern::into_memory) else {
        return Err(wasmtime::Error::msg(
            "poll_oneoff needs the hook to export its memory as `memory`",
        ));
    };
    let subscriptions = match read(&memory, &caller, subscriptions, count) {
        Ok(subscriptions) => subscriptions,
        Err(errno) => return Ok(errno),
    };

    // A descriptor subscription is ready now: the poll returns without waiting for any clock.
    let ready_fd = subscriptions.iter().any(|s| s.kind != CLOCK);
    let sleep = if ready_fd {
        Duration::ZERO
    } else {
        subscriptions
            .iter()
            .map(|s| s.wait)
            .min()
            .unwrap_or_default()
    };
    if sleep > caller.data().remaining() {
        return Err(caller.data_mut().time_out());
    }
    if !sleep.is_zero() {
        tokio::time::sleep(sleep).await;
    }

    let fired: Vec<&Subscription> = subscriptions.iter().filter(|s| s.wait <= sleep).collect();
    let mut bytes = vec![0; fired.len() * EVENT_SIZE];
    for (sub, event) in fired.iter().zip(bytes.chunks_exact_mut(EVENT_SIZE)) {
        event[0..8].copy_from_slice(&sub.userdata.to_le_bytes());
        // error (bytes 8..10) is SUCCESS.
        event[10] = sub.kind;
        if sub.kind != CLOCK {
            event[16..24].copy_from_slice(&1u64.to_le_bytes()); // nbytes, as wasmtime-wasi says
        }
    }
    let written = u32::try_from(fired.len()).unwrap_or(u32::MAX).to_le_bytes();
    let stored = address(events)
        .and_then(|at| memory.write(&mut caller, at, &bytes).ok())
        .and_then(|()| address(nevents))
        .and_then(|at| memory.write(&mut caller, at, &written).ok());
    Ok(if stored.is_some() { SUCCESS } else { FAULT })
}

/// Reads and checks the subscriptions, or says which errno the poll returns.
fn read(
    memory: &Memory,
    caller: &Caller<'_, SandboxState>,
    at: i32,
    count: i32,
) -> Result<Vec<Subscription>, i32> {
    let count = usize::try_from(count.cast_unsigned()).map_err(|_| FAULT)?;
    if count == 0 {
        return Err(INVAL);
    }
    let len = count.checked_mul(SUBSCRIPTION_SIZE).ok_or(FAULT)?;
    let start = address(at).ok_or(FAULT)?;
    let raw = memory
        .data(caller)
        .get(start..start.checked_add(len).ok_or(FAULT)?)
        .ok_or(FAULT)?;
    raw.chunks_exact(SUBSCRIPTION_SIZE)
        .map(|sub| {
            let u16_at = |i: usize| u16::from_le_bytes([sub[i], sub[i + 1]]);
            let u32_at =
                |i: usize| u32::from_le_bytes(sub[i..i + 4].try_into().unwrap_or_default());
            let u64_at =
                |i: usize| u64::from_le_bytes(sub[i..i + 8].try_into().unwrap_or_default());
            let kind = sub[8];
            let wait = match kind {
                CLOCK => clock_wait(
                    caller.data(),
                    u32_at(16),
                    Duration::from_nanos(u64_at(24)),
                    u16_at(40) & ABSTIME != 0,
                )?,
                FD_READ if u32_at(16) == STDIN => Duration::ZERO,
                FD_WRITE if matches!(u32_at(16), STDOUT | STDERR) => Duration::ZERO,
                FD_READ | FD_WRITE => return Err(BADF),
                _ => return Err(INVAL),
            };
            Ok(Subscription {
                userdata: u64_at(0),
                kind,
                wait,
            })
        })
        .collect()
}

/// How long until a clock subscription fires.
fn clock_wait(
    state: &SandboxState,
    clock: u32,
    timeout: Duration,
    absolute: bool,
) -> Result<Duration, i32> {
    Ok(match (clock, absolute) {
        (REALTIME | MONOTONIC, false) => timeout,
        (MONOTONIC, true) => timeout.saturating_sub(state.monotonic_now()),
        (REALTIME, true) => timeout.saturating_sub(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
        ),
        _ => return Err(INVAL),
    })
}

/// A guest pointer as an offset into its memory.
fn address(pointer: i32) -> Option<usize> {
    usize::try_from(pointer.cast_unsigned()).ok()
}
