//! How an approval stands against what would be released now: a pure decision shared by
//! `approvals`, the release report and the hooks' request.

use std::collections::BTreeSet;

use hooks_sdk::Approval;
use hooks_sdk::helpers::Timestamp;
use serde::Serialize;

/// How an approval stands against what would be released now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Standing {
    Valid,
    Expired,
    /// Approved other digests (an older or rebuilt image).
    OtherDigests,
}

impl std::fmt::Display for Standing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Standing::Valid => "valid",
            Standing::Expired => "expired",
            Standing::OtherDigests => "other digests",
        })
    }
}

/// Judges `approval` against the digests that would be released, at `now`, by the rules the
/// hooks apply (`hooks_sdk::helpers::valid_approvals`): the SDK reads the times, an expiry it
/// cannot read has passed, and digests compare as sets (order and duplicates aside).
pub fn standing(approval: &Approval, digests: &[String], now: jiff::Timestamp) -> Standing {
    let expired = Timestamp::parse(&approval.expires_at).is_none_or(|t| t <= sdk_time(now));
    let approved: BTreeSet<&String> = approval.digests.iter().collect();
    let wanted: BTreeSet<&String> = digests.iter().collect();
    if expired {
        Standing::Expired
    } else if approved != wanted {
        Standing::OtherDigests
    } else {
        Standing::Valid
    }
}

/// `now` as the SDK's timestamp. jiff's range (years -9999 to 9999) fits an i64 of seconds.
fn sdk_time(now: jiff::Timestamp) -> Timestamp {
    let nanos = now.as_nanosecond();
    Timestamp {
        seconds: nanos.div_euclid(1_000_000_000) as i64,
        nanos: nanos.rem_euclid(1_000_000_000) as u32,
    }
}

/// The approvals that count for releasing `digests` at `now`.
pub fn valid_approvals(
    approvals: &[Approval],
    digests: &[String],
    now: jiff::Timestamp,
) -> Vec<Approval> {
    approvals
        .iter()
        .filter(|a| standing(a, digests, now) == Standing::Valid)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approval(digests: &[&str], expires_at: &str) -> Approval {
        Approval {
            user: "ann".into(),
            environment: "production".into(),
            commit: "c".repeat(40),
            digests: digests.iter().map(|d| d.to_string()).collect(),
            approved_at: "2026-01-01T00:00:00Z".into(),
            expires_at: expires_at.into(),
            verified: false,
            ..Default::default()
        }
    }

    #[test]
    fn an_approval_is_bound_to_the_digests_and_expires() {
        let now: jiff::Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
        let wanted = vec!["sha256:b".to_string(), "sha256:a".to_string()];
        assert_eq!(
            standing(
                &approval(&["sha256:a", "sha256:b"], "2026-01-02T00:00:00Z"),
                &wanted,
                now
            ),
            Standing::Valid
        );
        assert_eq!(
            standing(
                &approval(&["sha256:a"], "2026-01-02T00:00:00Z"),
                &wanted,
                now
            ),
            Standing::OtherDigests
        );
        assert_eq!(
            standing(
                &approval(&["sha256:a", "sha256:b"], "2026-01-01T06:00:00Z"),
                &wanted,
                now
            ),
            Standing::Expired
        );
    }
}
