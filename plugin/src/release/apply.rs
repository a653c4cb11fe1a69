//! Changing workloads one at a time, and putting them back: by image patches, or — for an
//! environment with manifests — by applying the whole set in dependency order.

use std::time::Duration;

use crate::cluster::{EnvGateway, Stamp, WaitFailure};
use crate::domain::error_text::one_line;
use crate::domain::{ContainerChange, Workload, WorkloadRef, plan};
use crate::progress::Progress;

use super::interrupt::Interrupt;
use super::journal::Journal;
use super::manifests::{self, Staged};

/// Why applying stopped part-way.
#[derive(Debug)]
pub enum Stopped {
    /// Changing this object (a workload, or any object of the manifests) failed.
    Refused { object: String, reason: String },
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
                    object: w.id.to_string(),
                    reason: one_line(&e),
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
            Err(e) => {
                return Err(format!("cannot restore {}: {}", w.id, one_line(&e)));
            }
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

/// Applies every object of `staged` in dependency order (workloads stamped with the release),
/// noting each in the journal. The ApplySet parent is written first naming the old and new
/// kinds, so an interrupted run still has every member it may have left behind in the set.
/// Returns the workloads of the set (what the wait waits for).
pub async fn apply_set<G: EnvGateway>(
    journal: &mut Journal<'_, G>,
    gateway: &G,
    staged: &Staged,
    stamp: &Stamp,
    force: bool,
    interrupt: &Interrupt,
) -> Result<Vec<Workload>, (Stopped, Vec<Workload>)> {
    let mut kinds = staged.previous_kinds.clone();
    kinds.extend(staged.kinds.iter().cloned());
    if let Err(e) = gateway.write_applyset(&kinds).await {
        let reason = one_line(&e);
        let object = "the ApplySet parent".to_string();
        return Err((Stopped::Refused { object, reason }, Vec::new()));
    }
    let mut workloads = Vec::new();
    for o in &staged.objects {
        if interrupt.raised() {
            return Err((Stopped::Interrupted, workloads));
        }
        if gateway.lock_lost() {
            return Err((Stopped::LockLost, workloads));
        }
        let id = o.manifest.id();
        let object = manifests::stamp(&o.manifest, stamp);
        match gateway.apply_object(&object, false, force).await {
            Ok(applied) => {
                journal.applied_object(&id).await;
                if let Some(w) = manifests::as_workload(&id, &applied) {
                    workloads.push(w);
                }
            }
            Err(e) => {
                let reason = one_line(&e);
                return Err((
                    Stopped::Refused {
                        object: id.to_string(),
                        reason,
                    },
                    workloads,
                ));
            }
        }
    }
    Ok(workloads)
}

/// Deletes the previous set's objects the manifests no longer have, then narrows the ApplySet
/// to this set's kinds. Returns a warning for each object that could not be deleted.
pub async fn prune<G: EnvGateway>(gateway: &G, staged: &Staged) -> Vec<String> {
    let mut problems = Vec::new();
    for id in &staged.prune {
        match gateway.delete_object(id).await {
            Ok(()) => Progress::new().say(&format!("pruned {id}: no longer in {}", staged.path)),
            Err(e) => problems.push(format!("could not prune {id}: {}", one_line(&e))),
        }
    }
    if problems.is_empty()
        && let Err(e) = gateway.write_applyset(&staged.kinds).await
    {
        problems.push(format!(
            "could not update the ApplySet parent: {}",
            one_line(&e)
        ));
    }
    problems
}

/// Puts back the objects of `staged` this release applied (`applied`): an object it created is
/// deleted, one it changed gets its earlier self applied again; then waits for the workloads
/// that existed before to run their earlier pods.
pub async fn undo_set<G: EnvGateway>(
    gateway: &G,
    staged: &Staged,
    applied: &[crate::domain::manifest::ObjectRef],
    timeout: Duration,
) -> Result<(), String> {
    let mut restored = Vec::new();
    let mut images: std::collections::BTreeMap<WorkloadRef, Vec<String>> = Default::default();
    for o in staged.objects.iter().rev() {
        let id = o.manifest.id();
        if !applied.contains(&id) {
            continue;
        }
        let Some(before) = manifests::restoring(o) else {
            gateway.delete_object(&id).await.map_err(|e| {
                format!(
                    "cannot delete {id}, which this release created: {}",
                    one_line(&e)
                )
            })?;
            continue;
        };
        let object = gateway
            .apply_object(&before, false, true)
            .await
            .map_err(|e| format!("cannot restore {id}: {}", one_line(&e)))?;
        if let Some(w) = manifests::as_workload(&id, &object) {
            let wanted = w.containers().into_iter().map(|c| c.image).collect();
            images.insert(w.id.clone(), wanted);
            restored.push(w);
        }
    }
    if restored.is_empty() {
        return Ok(());
    }
    gateway
        .wait(&restored, &images, timeout, &Progress::new())
        .await
        .map(|_| ())
        .map_err(|f| describe_wait_failure(&f, timeout))
}
