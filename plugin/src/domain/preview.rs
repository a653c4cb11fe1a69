//! Preview environments as decisions over data: pull request numbers, namespace names, the
//! labels and annotations a preview's namespace carries, expiry, what `gc` deletes and the
//! limit on live previews. The namespaces themselves are read and written by
//! `cluster::previews`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use sha2::Digest as _;

use super::Failure;
use super::names;

/// The environment name a preview's hooks, records and lock see.
pub const ENVIRONMENT: &str = "preview";

/// On a preview's namespace: `true`.
pub const LABEL_PREVIEW: &str = "kubectl-release.io/preview";
/// On a preview's namespace: the pull request's number.
pub const LABEL_PR: &str = "kubectl-release.io/pr";
/// On a preview's namespace: the kubeconfig user who last ran `preview up`.
pub const ANNOTATION_CREATOR: &str = "kubectl-release.io/creator";
/// On a preview's namespace: when `preview gc` may delete it (RFC 3339).
pub const ANNOTATION_EXPIRES_AT: &str = "kubectl-release.io/expires-at";

/// Kubernetes' limit on a namespace name (an RFC 1123 label).
pub const MAX_NAME: usize = 63;

/// A pull request's number: a positive integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PrNumber(pub u64);

impl PrNumber {
    /// `42` → 42; anything but a positive integer is a usage error.
    pub fn parse(text: &str) -> Result<PrNumber, Failure> {
        let t = text.trim().trim_start_matches('#');
        match t.parse::<u64>() {
            Ok(n) if n > 0 && t.bytes().all(|b| b.is_ascii_digit()) => Ok(PrNumber(n)),
            _ => Err(Failure::invalid(format!(
                "`{text}` is not a pull request number: give a positive integer, e.g. --pr 42"
            ))),
        }
    }
}

impl std::fmt::Display for PrNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The pattern with `{app}` and `{pr}` filled in, as written (not yet a valid name).
pub fn render_pattern(pattern: &str, app: &str, pr: PrNumber) -> String {
    pattern
        .replace("{app}", app)
        .replace("{pr}", &pr.to_string())
}

/// Why a namespace pattern cannot name previews, if it cannot: it must use `{pr}` (else every
/// pull request would share one namespace), no other placeholder than `{app}` and `{pr}`, and
/// produce a valid RFC 1123 label (after shortening).
pub fn check_pattern(pattern: &str, app: &str) -> Result<(), String> {
    if !pattern.contains("{pr}") {
        return Err(format!(
            "`{pattern}` must contain `{{pr}}`, or every pull request would share one namespace; e.g. {{app}}-pr-{{pr}}"
        ));
    }
    let rest = pattern.replace("{app}", "").replace("{pr}", "");
    if rest.contains('{') || rest.contains('}') {
        return Err(format!(
            "`{pattern}` may use only the placeholders {{app}} and {{pr}}"
        ));
    }
    let rendered = render_pattern(pattern, app, PrNumber(1));
    if !is_label(&shorten(&rendered.to_ascii_lowercase())) {
        return Err(format!(
            "`{pattern}` gives `{rendered}`, not a valid namespace name: use lower-case letters, digits and '-', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// The namespace of `app`'s preview of `pr`: deterministic, lower-cased, any character a name
/// cannot have turned into '-', and at most 63 characters — a longer name is cut and ends in a
/// short hash of the full one, so distinct inputs stay distinct.
pub fn namespace_name(pattern: &str, app: &str, pr: PrNumber) -> String {
    let rendered = render_pattern(pattern, app, pr);
    let cleaned: String = rendered
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    let cleaned = cleaned.trim_matches('-');
    if cleaned.is_empty() {
        return format!("preview-{}", short_hash(&rendered));
    }
    if cleaned.len() <= MAX_NAME {
        return cleaned.to_string();
    }
    cut_with_hash(cleaned, &rendered)
}

/// Names longer than 63 characters: the first ones, '-', and 8 hex digits of a hash of `full`.
fn shorten(name: &str) -> String {
    if name.len() <= MAX_NAME {
        name.to_string()
    } else {
        cut_with_hash(name, name)
    }
}

fn cut_with_hash(name: &str, full: &str) -> String {
    let hash = short_hash(full);
    let mut keep = MAX_NAME - hash.len() - 1;
    // A pattern may hold any character: cut on a character boundary, never inside one.
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    let head = name[..keep].trim_end_matches('-');
    format!("{head}-{hash}")
}

fn short_hash(text: &str) -> String {
    hex::encode(&sha2::Sha256::digest(text.as_bytes())[..4])
}

fn is_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// When a preview made or refreshed at `now` expires.
pub fn expires_at(now: jiff::Timestamp, ttl: Duration) -> jiff::Timestamp {
    let ttl = jiff::SignedDuration::try_from(ttl).unwrap_or(jiff::SignedDuration::MAX);
    now.checked_add(ttl).unwrap_or(jiff::Timestamp::MAX)
}

/// What `preview up` writes on the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewMeta {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// The labels (app, preview, pull request) and annotations (commit, creator, expiry) of a
/// preview's namespace.
pub fn metadata(
    app: &str,
    pr: PrNumber,
    commit: &str,
    creator: &str,
    expires: jiff::Timestamp,
) -> PreviewMeta {
    let pairs = |items: &[(&str, String)]| {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    PreviewMeta {
        labels: pairs(&[
            (names::LABEL_MANAGED_BY, names::MANAGER.to_string()),
            (names::LABEL_APP, app.to_string()),
            (LABEL_PREVIEW, "true".to_string()),
            (LABEL_PR, pr.to_string()),
        ]),
        annotations: pairs(&[
            (names::ANNOTATION_COMMIT, commit.to_string()),
            (ANNOTATION_CREATOR, creator.to_string()),
            (ANNOTATION_EXPIRES_AT, expires.to_string()),
        ]),
    }
}

/// Label selector of an app's previews.
pub fn selector(app: &str) -> String {
    format!("{LABEL_PREVIEW}=true,{}={app}", names::LABEL_APP)
}

/// One preview, as its namespace says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Preview {
    pub namespace: String,
    /// `None`: a label that is not a pull request number (hand-edited).
    pub pr: Option<PrNumber>,
    pub commit: Option<String>,
    pub creator: Option<String>,
    pub created_at: Option<jiff::Timestamp>,
    pub expires_at: Option<jiff::Timestamp>,
    /// Being deleted.
    pub terminating: bool,
}

impl Preview {
    /// Reads a preview from its namespace's name, labels, annotations and times.
    pub fn from_namespace(
        namespace: &str,
        labels: &BTreeMap<String, String>,
        annotations: &BTreeMap<String, String>,
        created_at: Option<jiff::Timestamp>,
        terminating: bool,
    ) -> Preview {
        Preview {
            namespace: namespace.to_string(),
            pr: labels.get(LABEL_PR).and_then(|v| PrNumber::parse(v).ok()),
            commit: annotations.get(names::ANNOTATION_COMMIT).cloned(),
            creator: annotations.get(ANNOTATION_CREATOR).cloned(),
            created_at,
            expires_at: annotations
                .get(ANNOTATION_EXPIRES_AT)
                .and_then(|v| v.parse().ok()),
            terminating,
        }
    }

    /// Past its expiry at `now` (a preview without one never expires by itself).
    pub fn expired(&self, now: jiff::Timestamp) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// How many of the app's Deployment replicas in a preview are ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Readiness {
    pub ready: i64,
    pub desired: i64,
}

impl std::fmt::Display for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.ready, self.desired)
    }
}

/// Where a preview can be reached: its Services (`name ClusterIP:port/protocol`) and its
/// Ingresses' hosts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Reachable {
    pub services: Vec<String>,
    pub hosts: Vec<String>,
}

/// Why `gc` deletes a preview.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum GcReason {
    Expired,
    /// Its pull request is not among `--keep` (closed).
    NotKept,
}

/// The previews `gc` deletes at `now`: the expired ones, and with `keep` (the open pull
/// requests) those whose pull request is not listed. Ones already being deleted are skipped.
pub fn to_collect<'p>(
    previews: &'p [Preview],
    now: jiff::Timestamp,
    keep: Option<&[PrNumber]>,
) -> Vec<(&'p Preview, GcReason)> {
    previews
        .iter()
        .filter(|p| !p.terminating)
        .filter_map(|p| {
            if p.expired(now) {
                Some((p, GcReason::Expired))
            } else if keep.is_some_and(|k| !p.pr.is_some_and(|pr| k.contains(&pr))) {
                Some((p, GcReason::NotKept))
            } else {
                None
            }
        })
        .collect()
}

/// Whether a preview of `pr` may be made: the app's live previews other than `pr`'s must be
/// fewer than `max`; else a refusal naming the oldest ones.
pub fn check_limit(previews: &[Preview], pr: PrNumber, max: usize) -> Result<(), Failure> {
    let mut others: Vec<&Preview> = previews
        .iter()
        .filter(|p| !p.terminating && p.pr != Some(pr))
        .collect();
    if others.len() < max {
        return Ok(());
    }
    others.sort_by_key(|p| (p.created_at, p.namespace.clone()));
    let oldest: Vec<String> = others
        .iter()
        .take(3)
        .map(|p| match p.pr {
            Some(n) => format!("#{n} ({})", p.namespace),
            None => p.namespace.clone(),
        })
        .collect();
    Err(Failure::invalid(format!(
        "{} previews are live, the most `previews.max` allows; the oldest: {}. \
         Delete one with `kubectl release preview down --pr N`, or run `preview gc`",
        others.len(),
        oldest.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_pattern_with_other_characters_is_cut_without_a_panic() {
        let pattern = format!("{{app}}-{}-{{pr}}", "é".repeat(40));
        let name = namespace_name(&pattern, "web", PrNumber::parse("7").unwrap());
        assert!(name.len() <= 63, "{name}");
        assert!(name.is_ascii(), "{name}");
        assert!(cut_with_hash(&"é".repeat(40), "x").len() <= 63);
    }

    fn at(secs: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn preview(pr: u64, created: i64, expires: i64) -> Preview {
        Preview {
            namespace: format!("web-pr-{pr}"),
            pr: Some(PrNumber(pr)),
            commit: None,
            creator: None,
            created_at: Some(at(created)),
            expires_at: Some(at(expires)),
            terminating: false,
        }
    }

    #[test]
    fn pull_request_numbers_are_positive_integers() {
        assert_eq!(PrNumber::parse("42").unwrap(), PrNumber(42));
        assert_eq!(PrNumber::parse("#7").unwrap(), PrNumber(7));
        for bad in ["abc", "0", "-3", "4.2", "", "+5", "1e3"] {
            let err = PrNumber::parse(bad).unwrap_err();
            assert!(err.to_string().contains("positive integer"), "{bad}: {err}");
        }
    }

    #[test]
    fn namespace_names_follow_the_pattern() {
        assert_eq!(
            namespace_name("{app}-pr-{pr}", "web", PrNumber(42)),
            "web-pr-42"
        );
        assert_eq!(
            namespace_name("Preview_{app}.{pr}", "web", PrNumber(1)),
            "preview-web-1"
        );
    }

    #[test]
    fn long_names_are_cut_with_a_hash_and_stay_distinct() {
        let app = "a".repeat(40);
        let pattern = format!("{}-{{app}}-{{pr}}", "b".repeat(30));
        let one = namespace_name(&pattern, &app, PrNumber(1));
        let two = namespace_name(&pattern, &app, PrNumber(2));
        assert_eq!(one.len(), 63, "{one}");
        assert!(is_label(&one) && is_label(&two));
        assert_ne!(one, two);
        assert_eq!(
            one,
            namespace_name(&pattern, &app, PrNumber(1)),
            "deterministic"
        );
    }

    #[test]
    fn patterns_need_pr_and_a_valid_name() {
        assert!(check_pattern("{app}-pr-{pr}", "web").is_ok());
        assert!(
            check_pattern("{app}-preview", "web")
                .unwrap_err()
                .contains("{pr}")
        );
        assert!(check_pattern("{app}-{branch}-{pr}", "web").is_err());
        assert!(check_pattern("{app}_pr_{pr}", "web").is_err());
        assert!(check_pattern("-{pr}", "web").is_err());
        assert!(check_pattern(&format!("{}{{pr}}", "x".repeat(80)), "web").is_ok());
    }

    #[test]
    fn metadata_names_app_pr_commit_creator_and_expiry() {
        let meta = metadata("web", PrNumber(42), "abc", "alice", at(0));
        assert_eq!(meta.labels[LABEL_PREVIEW], "true");
        assert_eq!(meta.labels[LABEL_PR], "42");
        assert_eq!(meta.labels[names::LABEL_APP], "web");
        assert_eq!(
            meta.annotations[ANNOTATION_EXPIRES_AT],
            "2023-11-14T22:13:20Z"
        );
        let back =
            Preview::from_namespace("web-pr-42", &meta.labels, &meta.annotations, None, false);
        assert_eq!(back.pr, Some(PrNumber(42)));
        assert_eq!(back.expires_at, Some(at(0)));
        assert_eq!(back.creator.as_deref(), Some("alice"));
    }

    #[test]
    fn expiry_is_now_plus_ttl() {
        assert_eq!(expires_at(at(0), Duration::from_secs(3600)), at(3600));
    }

    #[test]
    fn gc_takes_the_expired_and_those_not_kept() {
        let all = [preview(1, 0, 100), preview(2, 0, 300), preview(3, 0, 300)];
        let expired: Vec<_> = to_collect(&all, at(200), None);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0], (&all[0], GcReason::Expired));
        let kept = [PrNumber(2)];
        let taken: Vec<_> = to_collect(&all, at(200), Some(&kept))
            .into_iter()
            .map(|(p, r)| (p.pr.unwrap().0, r))
            .collect();
        assert_eq!(taken, [(1, GcReason::Expired), (3, GcReason::NotKept)]);
    }

    #[test]
    fn the_limit_counts_other_live_previews_and_names_the_oldest() {
        let all = [preview(1, 50, 999), preview(2, 10, 999)];
        assert!(check_limit(&all, PrNumber(3), 3).is_ok());
        assert!(
            check_limit(&all, PrNumber(1), 2).is_ok(),
            "an update is no new preview"
        );
        let err = check_limit(&all, PrNumber(3), 2).unwrap_err().to_string();
        assert!(err.contains("#2 (web-pr-2), #1 (web-pr-1)"), "{err}");
        let mut gone = all.clone();
        gone[0].terminating = true;
        assert!(check_limit(&gone, PrNumber(3), 2).is_ok());
    }
}
