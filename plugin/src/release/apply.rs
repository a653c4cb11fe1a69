//! Changing workloads one at a time, and putting them back.

use std::time::Duration;

use crate::cluster::{EnvGateway, Stamp, WaitFailure};
use crate::domain::{ContainerChange, Workload, WorkloadRef, plan};
use crate::progress::Progress;

use super::interrupt::Interrupt;
use super::journal::Journal;

/// Why applying stopped part-way.
#[derive(Debug)]
pub enum Stopped {
    /// Patching this workload failed.
    Refused {
        workload: WorkloadRef,
        reason: String,
    },
    /// A signal arrived between two patches.
    Interrupted,
    /// The lock could not be renewed: another run may hold it now.
    LockLost,
}

/// Patches every workload that `changes` touch, in kind and name order, noting each in the
/// journal. Returns the patched objects (their new generations are what the wait must see
/// observed), or why it stopped together with what it had patched by then.
pub async fn apply_all<G: EnvGateway>(
    journal: &mut Journal<'_, G>,
    gateway: &G,
    workloads: &[Workload],
    changes: &[ContainerChange],
    stamp: &Stamp,
    interrupt: &Interrupt,
) -> Result<Vec<Workload>, (Stopped, Vec<Workload>)> {
    let by_workload = plan::by_workload(changes);
    let mut patched = Vec::new();
    for w in workloads {
        let Some(mine) = by_workload.get(&w.id) else {
            continue;
        };
        if interrupt.raised() {
            return Err((Stopped::Interrupted, patched));
        }
        if gateway.lock_lost() {
            return Err((Stopped::LockLost, patched));
        }
        let moving: Vec<&ContainerChange> = mine.iter().copied().filter(|c| c.changes()).collect();
        if moving.is_empty() {
            // Already on the wanted images (a resumed release): nothing to patch, but waited for.
            patched.push(w.clone());
            continue;
        }
        match gateway.patch(w, &moving, stamp, true).await {
            Ok(object) => {
                journal.applied(&w.id).await;
                patched.push(object);
            }
            Err(e) => {
                let stopped = Stopped::Refused {
                    workload: w.id.clone(),
                    reason: format!("{e:#}"),
                };
                return Err((stopped, patched));
            }
        }
    }
    Ok(patched)
}

/// Puts the workloads in `patched` back on the images before `changes`, and waits for them.
/// `Ok` when every one of them runs its previous images again.
pub async fn undo<G: EnvGateway>(
    gateway: &G,
    patched: &[Workload],
    changes: &[ContainerChange],
    stamp: &Stamp,
    timeout: Duration,
) -> Result<(), String> {
    let ids: Vec<WorkloadRef> = patched.iter().map(|w| w.id.clone()).collect();
    let back: Vec<ContainerChange> = plan::inverse(&plan::touching(changes, &ids))
        .into_iter()
        .filter(ContainerChange::changes)
        .collect();
    if back.is_empty() {
        return Ok(());
    }
    let by_workload = plan::by_workload(&back);
    let mut reverted = Vec::new();
    for w in patched {
        let Some(mine) = by_workload.get(&w.id) else {
            continue;
        };
        match gateway.patch(w, mine, stamp, false).await {
            Ok(object) => reverted.push(object),
            Err(e) => return Err(format!("cannot restore {}: {e:#}", w.id)),
        }
    }
    gateway
        .wait(
            &reverted,
            &plan::new_images(&back),
            timeout,
            &Progress::new(),
        )
        .await
        .map(|_| ())
        .map_err(|f| describe_wait_failure(&f, timeout))
}

/// A failed wait in words.
pub fn describe_wait_failure(failure: &WaitFailure, timeout: Duration) -> String {
    match failure {
        WaitFailure::Failed { workload, reason } => format!("{workload} failed: {reason}"),
        WaitFailure::TimedOut { pending } => format!(
            "timed out after {} waiting for {}",
            humantime::format_duration(timeout),
            pending.join(", ")
        ),
    }
}
