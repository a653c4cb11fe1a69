//! The release lock as a decision over data: who holds it, and whether their hold has lapsed.
//! The Lease itself is read and written by `cluster::lease`.

/// How long a lease stays valid without renewal.
pub const LEASE_DURATION_SECS: i64 = 30;

/// What a Lease says, as plain data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaseView {
    pub holder: Option<String>,
    pub acquired: Option<jiff::Timestamp>,
    pub renewed: Option<jiff::Timestamp>,
    pub duration_secs: Option<i32>,
}

/// Where a lock stands at a moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockState {
    /// No lease.
    Free,
    /// Held, renewed within its duration.
    Held { holder: String, age_secs: i64 },
    /// The holder stopped renewing: anyone may take it over.
    Expired { holder: String },
}

/// The lock's state at `now`. A lease without a renewal time (hand-made or damaged) has expired:
/// a lock nobody renews must never block forever.
pub fn lock_state(lease: Option<&LeaseView>, now: jiff::Timestamp) -> LockState {
    let Some(lease) = lease else {
        return LockState::Free;
    };
    let holder = lease.holder.clone().unwrap_or_else(|| "someone".into());
    let ttl = lease
        .duration_secs
        .map_or(LEASE_DURATION_SECS, i64::from)
        .clamp(1, 3600);
    let last = lease.renewed.or(lease.acquired);
    match last {
        Some(t) if now.duration_since(t).as_secs() <= ttl => LockState::Held {
            age_secs: lease
                .acquired
                .map_or(0, |a| now.duration_since(a).as_secs().max(0)),
            holder,
        },
        _ => LockState::Expired { holder },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn lease(acquired: i64, renewed: Option<i64>) -> LeaseView {
        LeaseView {
            holder: Some("ci".into()),
            acquired: Some(at(acquired)),
            renewed: renewed.map(at),
            duration_secs: Some(30),
        }
    }

    #[test]
    fn no_lease_is_free() {
        assert_eq!(lock_state(None, at(0)), LockState::Free);
    }

    #[test]
    fn renewed_within_its_duration_is_held() {
        assert_eq!(
            lock_state(Some(&lease(0, Some(50))), at(70)),
            LockState::Held {
                holder: "ci".into(),
                age_secs: 70
            }
        );
    }

    #[test]
    fn not_renewed_for_longer_than_its_duration_is_expired() {
        assert_eq!(
            lock_state(Some(&lease(0, Some(10))), at(41)),
            LockState::Expired {
                holder: "ci".into()
            }
        );
    }

    #[test]
    fn a_lease_without_times_or_with_an_absurd_duration_cannot_block_forever() {
        let bare = LeaseView {
            holder: None,
            ..Default::default()
        };
        assert!(matches!(
            lock_state(Some(&bare), at(0)),
            LockState::Expired { .. }
        ));
        let mut forever = lease(0, Some(0));
        forever.duration_secs = Some(i32::MAX);
        assert!(matches!(
            lock_state(Some(&forever), at(7200)),
            LockState::Expired { .. }
        ));
    }
}
