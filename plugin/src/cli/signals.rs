//! SIGINT and SIGTERM during a release: the first asks the release to stop (it restores with
//! `--atomic`, records the outcome, releases its lock and prints its report); a second exits
//! at once, leaving the journal for the next run to finish.

use std::sync::atomic::{AtomicI32, Ordering};

use tokio::signal::unix::{SignalKind, signal};

use crate::release::Interrupt;

/// The number of the first signal received, 0 before any.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// The first signal received, if any.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        n => Some(n),
    }
}

/// Turns the first SIGINT or SIGTERM into `interrupt`, and a second into an immediate exit.
/// Must be called inside the tokio runtime.
pub fn install(interrupt: Interrupt) -> std::io::Result<()> {
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        let mut first = true;
        loop {
            let number = tokio::select! {
                _ = int.recv() => 2,
                _ = term.recv() => 15,
            };
            if !first {
                eprintln!(
                    "second signal: exiting now; the next release of this app and environment finishes its record"
                );
                std::process::exit(128 + number);
            }
            first = false;
            RECEIVED.store(number, Ordering::SeqCst);
            eprintln!("signal received: stopping the release (a second signal exits at once)");
            interrupt.raise();
        }
    });
    Ok(())
}
