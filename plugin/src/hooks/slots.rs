//! Instance slots: hooks run in instances taken from wasmtime's pooling allocator, which has a
//! fixed number of them. A run waits here for a free slot instead of failing when a big
//! `promote --all` runs more hooks at once than the pool holds.
//!
//! The number of slots follows the CPUs. A hook run is pure computation, so more runs at once
//! than CPUs only queue for them, and each slot keeps the memory its hook wrote resident (a
//! Rust hook: about 2 MB). (What made `promote --all --concurrency 32` big was each release
//! holding its own copy of every module, not the slots: see `HookEngine`'s module sharing.)

/// How many hook instances may exist at once in one process: twice the CPUs, so that a run
/// never waits while a CPU idles, at least 4 and at most 32. Read once: the pool and the
/// semaphore over it must agree.
pub(crate) fn instance_slots() -> u32 {
    *SLOTS.get_or_init(|| {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        slots_for(cpus)
    })
}

/// The most slots, for a server answering many callers at once (`webhook serve`): a hook that
/// loops until its timeout holds its slot that long, and with a few slots unrelated reviews
/// would queue behind it past the API server's webhook timeout. Memory matters less there
/// than isolation. Call it before the first hook engine is built; after, it changes nothing.
pub fn serve_many_callers() {
    let _ = SLOTS.set(MOST_SLOTS);
}

static SLOTS: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
const MOST_SLOTS: u32 = 32;

fn slots_for(cpus: usize) -> u32 {
    u32::try_from(cpus.saturating_mul(2))
        .unwrap_or(u32::MAX)
        .clamp(4, MOST_SLOTS)
}

/// A counting semaphore over the pool's instance slots. Async, because runs happen on the
/// runtime's threads: a run waiting for a slot must not hold one of them.
#[derive(Debug)]
pub(crate) struct Slots {
    free: tokio::sync::Semaphore,
}

/// A slot, given back when dropped.
pub(crate) type Slot<'a> = tokio::sync::SemaphorePermit<'a>;

impl Slots {
    pub(crate) fn new(count: u32) -> Slots {
        Slots {
            free: tokio::sync::Semaphore::new(usize::try_from(count).unwrap_or(usize::MAX)),
        }
    }

    /// Waits until a slot is free and takes it until the returned guard is dropped.
    pub(crate) async fn take(&self) -> Slot<'_> {
        // The semaphore is never closed, so acquiring cannot fail.
        self.free
            .acquire()
            .await
            .unwrap_or_else(|_| unreachable!("the slots' semaphore is never closed"))
    }

    #[cfg(test)]
    fn free(&self) -> usize {
        self.free.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn slots_follow_the_cpus_within_bounds() {
        assert_eq!(slots_for(1), 4);
        assert_eq!(slots_for(2), 4);
        assert_eq!(slots_for(3), 6);
        assert_eq!(slots_for(16), 32);
        assert_eq!(slots_for(usize::MAX), 32);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn never_more_holders_than_slots() {
        let slots = Arc::new(Slots::new(2));
        let holders = Arc::new(AtomicU32::new(0));
        let most = Arc::new(AtomicU32::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (slots, holders, most) = (slots.clone(), holders.clone(), most.clone());
                tokio::spawn(async move {
                    let _slot = slots.take().await;
                    let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    holders.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
        assert_eq!(slots.free(), 2, "every slot was given back");
    }
}
