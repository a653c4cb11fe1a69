//! Small pure functions most rules need: image references, labels on workload objects, times,
//! approvals. They work on the plain JSON of the request so that hooks need no Kubernetes types.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::types::{Approval, WorkloadRef};

// ---------------------------------------------------------------------------------------------
// Image references
// ---------------------------------------------------------------------------------------------

/// The digest of an image reference pinned by digest: `repo@sha256:<64 hex>` → `sha256:<64 hex>`.
///
/// `None` for a reference without a digest or with a malformed one. Everything after the first
/// `@` must be the digest, as [`ImageRef::parse`] splits it: `web@x@sha256:…` has none.
///
/// ```
/// # use hooks_sdk::helpers::image_digest;
/// let d = format!("sha256:{}", "a".repeat(64));
/// assert_eq!(image_digest(&format!("registry.example.com/web@{d}")), Some(d.as_str()));
/// assert_eq!(image_digest("registry.example.com/web:latest"), None);
/// ```
pub fn image_digest(reference: &str) -> Option<&str> {
    let (_, digest) = reference.split_once('@')?;
    is_digest(digest).then_some(digest)
}

/// Whether `text` is a sha256 digest: `sha256:` and 64 lower-case hex digits.
pub fn is_digest(text: &str) -> bool {
    text.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// The repository of an image reference, without tag or digest:
/// `registry.example.com:5000/acme/web:v1@sha256:…` → `registry.example.com:5000/acme/web`.
pub fn image_repository(reference: &str) -> &str {
    let without_digest = reference
        .split_once('@')
        .map_or(reference, |(repo, _)| repo);
    match tag_separator(without_digest) {
        Some(i) => &without_digest[..i],
        None => without_digest,
    }
}

/// The tag of an image reference, if it has one (a digest is not a tag).
pub fn image_tag(reference: &str) -> Option<&str> {
    let without_digest = reference
        .split_once('@')
        .map_or(reference, |(repo, _)| repo);
    tag_separator(without_digest).map(|i| &without_digest[i + 1..])
}

/// The position of the `:` before a tag: only in the last path segment, since a `:` in the first
/// one is a registry port.
fn tag_separator(reference: &str) -> Option<usize> {
    let last_segment = reference.rfind('/').map_or(0, |i| i + 1);
    reference[last_segment..]
        .rfind(':')
        .map(|i| last_segment + i)
}

/// An image reference split into its parts: the one image-reference type of the plugin and its
/// hooks, built on the same splitting rules as [`image_repository`], [`image_tag`] and
/// [`image_digest`].
///
/// ```
/// # use hooks_sdk::helpers::ImageRef;
/// let r = ImageRef::parse("localhost:5000/acme/web:v1");
/// assert_eq!(r.repository, "localhost:5000/acme/web");
/// assert_eq!(r.tag.as_deref(), Some("v1"));
/// assert_eq!(r.registry(), "localhost:5000");
/// assert_eq!(ImageRef::parse("nginx").registry(), "docker.io");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Everything before the tag or digest: `registry.example.com/acme/web`.
    pub repository: String,
    /// The tag, if any.
    pub tag: Option<String>,
    /// Whatever follows `@` (checked to be a sha256 digest only by [`image_digest`]).
    pub digest: Option<String>,
}

impl ImageRef {
    /// Splits `repo[:tag][@digest]`; a `:` in the registry host (a port) is not a tag.
    pub fn parse(reference: &str) -> ImageRef {
        ImageRef {
            repository: image_repository(reference).to_string(),
            tag: image_tag(reference).map(str::to_string),
            digest: reference.split_once('@').map(|(_, d)| d.to_string()),
        }
    }

    /// The registry host (`docker.io` for bare names, as Docker resolves them).
    pub fn registry(&self) -> &str {
        match self.repository.split_once('/') {
            Some((host, _)) if host.contains('.') || host.contains(':') || host == "localhost" => {
                host
            }
            _ => "docker.io",
        }
    }

    /// `repository@digest`: how the plugin pins every container.
    pub fn pinned(repository: &str, digest: &str) -> String {
        format!("{repository}@{digest}")
    }
}

/// Whether `tag` is a full git commit hash: 40 lower-case hex digits.
pub fn is_commit_tag(tag: &str) -> bool {
    tag.len() == 40 && tag.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether an image reference names one immutable image: pinned by digest, or tagged with a
/// full commit hash (the project's one-image-per-commit convention). `latest`, other tags and
/// untagged references are not.
pub fn is_immutable_reference(reference: &str) -> bool {
    image_digest(reference).is_some() || image_tag(reference).is_some_and(is_commit_tag)
}

// ---------------------------------------------------------------------------------------------
// Workload objects
// ---------------------------------------------------------------------------------------------

/// Labels as read from an object: key → value.
pub type Labels = BTreeMap<String, String>;

/// `kind`, `metadata.namespace` and `metadata.name` of a workload object.
pub fn workload_ref(workload: &Value) -> WorkloadRef {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    WorkloadRef {
        kind: text(&workload["kind"]),
        namespace: text(&workload["metadata"]["namespace"]),
        name: text(&workload["metadata"]["name"]),
    }
}

/// The workload's own labels (`metadata.labels`); empty if it has none.
pub fn workload_labels(workload: &Value) -> Labels {
    labels_at(&workload["metadata"]["labels"])
}

/// Where the pod template of a workload lives, as a dotted path: `spec.template` for
/// Deployments, StatefulSets, DaemonSets (and Jobs, ReplicaSets), and
/// `spec.jobTemplate.spec.template` for CronJobs. `None` if the object has no pod template.
pub fn pod_template_path(workload: &Value) -> Option<&'static str> {
    if workload["kind"] == "CronJob" {
        workload["spec"]["jobTemplate"]["spec"]["template"]
            .is_object()
            .then_some("spec.jobTemplate.spec.template")
    } else {
        workload["spec"]["template"]
            .is_object()
            .then_some("spec.template")
    }
}

/// The workload's pod template object, if it has one.
pub fn pod_template(workload: &Value) -> Option<&Value> {
    pod_template_path(workload)?;
    if workload["kind"] == "CronJob" {
        Some(&workload["spec"]["jobTemplate"]["spec"]["template"])
    } else {
        Some(&workload["spec"]["template"])
    }
}

/// The labels of the workload's pod template; empty if it has none.
pub fn pod_template_labels(workload: &Value) -> Labels {
    pod_template(workload).map_or_else(Labels::new, |t| labels_at(&t["metadata"]["labels"]))
}

/// A label of the workload itself, or `None`.
pub fn label<'a>(workload: &'a Value, key: &str) -> Option<&'a str> {
    workload["metadata"]["labels"][key].as_str()
}

fn labels_at(value: &Value) -> Labels {
    value
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_string),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A container of a pod template: where it is, its name and its image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodContainer<'a> {
    /// Dotted path of the container, e.g. `spec.template.spec.containers[0]`.
    pub field: String,
    /// The container's name.
    pub name: &'a str,
    /// Its image reference, empty if missing.
    pub image: &'a str,
}

/// Every container and init container of the workload's pod template, in order.
pub fn pod_containers(workload: &Value) -> Vec<PodContainer<'_>> {
    let (Some(path), Some(template)) = (pod_template_path(workload), pod_template(workload)) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for list in ["initContainers", "containers"] {
        let Some(containers) = template["spec"][list].as_array() else {
            continue;
        };
        for (i, container) in containers.iter().enumerate() {
            found.push(PodContainer {
                field: format!("{path}.spec.{list}[{i}]"),
                name: container["name"].as_str().unwrap_or_default(),
                image: container["image"].as_str().unwrap_or_default(),
            });
        }
    }
    found
}

// ---------------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------------

/// A point in time, from an RFC 3339 string; ordered, so rules can compare times without a
/// date library (which would make every hook module bigger).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub seconds: i64,
    /// Nanoseconds past `seconds`.
    pub nanos: u32,
}

impl Timestamp {
    /// Parses RFC 3339: `2025-03-01T12:30:00Z`, `2025-03-01T12:30:00.250+02:00`, with `T` or
    /// a space between date and time. `None` if the text is not such a time.
    pub fn parse(text: &str) -> Option<Timestamp> {
        let b = text.trim().as_bytes();
        if b.len() < 20 {
            return None;
        }
        let num = |range: std::ops::Range<usize>| -> Option<i64> {
            let digits = b.get(range)?;
            digits.iter().try_fold(0i64, |acc, &d| {
                d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
            })
        };
        if b[4] != b'-'
            || b[7] != b'-'
            || !matches!(b[10], b'T' | b't' | b' ')
            || b[13] != b':'
            || b[16] != b':'
        {
            return None;
        }
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 60
        {
            return None;
        }
        let mut i = 19;
        let mut nanos: u32 = 0;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                if i - start < 9 {
                    nanos = nanos * 10 + u32::from(b[i] - b'0');
                }
                i += 1;
            }
            let digits = i - start;
            if digits == 0 {
                return None;
            }
            for _ in digits..9 {
                nanos *= 10;
            }
        }
        let offset_seconds = match b.get(i..)? {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let digit = |d: &u8| d.is_ascii_digit().then(|| i64::from(d - b'0'));
                let hours = digit(h1)? * 10 + digit(h2)?;
                let minutes = digit(m1)? * 10 + digit(m2)?;
                let offset = hours * 3600 + minutes * 60;
                if *sign == b'+' { offset } else { -offset }
            }
            _ => return None,
        };
        // A leap second reads as the second after it; nothing here needs more precision.
        let seconds =
            days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
                - offset_seconds;
        Some(Timestamp { seconds, nanos })
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Compares two RFC 3339 times; `None` if either does not parse.
pub fn compare_times(a: &str, b: &str) -> Option<Ordering> {
    Some(Timestamp::parse(a)?.cmp(&Timestamp::parse(b)?))
}

// ---------------------------------------------------------------------------------------------
// Approvals
// ---------------------------------------------------------------------------------------------

/// The approvals that count for releasing exactly `digests` into `environment` at `now`, at
/// most one per user, leaving out `excluded_user` (usually the deployer).
///
/// An approval counts when it is for `environment`, names exactly the set of `digests` (order
/// and duplicates aside: a rebuilt image needs a new approval, and so does a release that
/// changes more images than were approved), was given no later than `now` and expires after
/// `now`. Approvals with unreadable times never count. For each user the first counting
/// approval is returned, in the order given.
pub fn valid_approvals<'a>(
    approvals: &'a [Approval],
    environment: &str,
    digests: &[String],
    now: &str,
    excluded_user: Option<&str>,
) -> Vec<&'a Approval> {
    let Some(now) = Timestamp::parse(now) else {
        return Vec::new();
    };
    let wanted: BTreeSet<&str> = digests.iter().map(String::as_str).collect();
    let mut users: BTreeSet<&str> = BTreeSet::new();
    approvals
        .iter()
        .filter(|a| a.environment == environment)
        .filter(|a| excluded_user != Some(a.user.as_str()))
        .filter(|a| {
            !wanted.is_empty()
                && a.digests
                    .iter()
                    .map(String::as_str)
                    .collect::<BTreeSet<_>>()
                    == wanted
        })
        .filter(|a| Timestamp::parse(&a.approved_at).is_some_and(|t| t <= now))
        .filter(|a| Timestamp::parse(&a.expires_at).is_some_and(|t| t > now))
        .filter(|a| users.insert(a.user.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn image_reference_parts() {
        let d = digest('a');
        let reference = format!("localhost:5000/acme/web:v1@{d}");
        assert_eq!(image_digest(&reference), Some(d.as_str()));
        assert_eq!(image_repository(&reference), "localhost:5000/acme/web");
        assert_eq!(image_tag(&reference), Some("v1"));
        assert_eq!(image_repository("localhost:5000/web"), "localhost:5000/web");
        assert_eq!(image_tag("localhost:5000/web"), None);
        assert_eq!(image_digest("web@sha256:abc"), None);
        assert_eq!(image_digest(&format!("web@{}", d.to_uppercase())), None);
    }

    #[test]
    fn immutable_references() {
        let sha = "3f2a9c1e0b7d4a5f8e6c2b1a0d9f8e7c6b5a4d3e";
        assert!(is_commit_tag(sha));
        assert!(!is_commit_tag(&sha[..39]));
        assert!(!is_commit_tag(&sha.to_uppercase()));
        assert!(is_immutable_reference(&format!("r/web:{sha}")));
        assert!(is_immutable_reference(&format!("r/web@{}", digest('b'))));
        assert!(!is_immutable_reference("r/web:latest"));
        assert!(!is_immutable_reference("r/web"));
        assert!(!is_immutable_reference("localhost:5000/web"));
    }

    #[test]
    fn labels_of_deployments_and_cronjobs() {
        let deployment = json!({
            "kind": "Deployment", "metadata": {"name": "web", "namespace": "qa", "labels": {"team": "a"}},
            "spec": {"template": {"metadata": {"labels": {"team": "b"}}, "spec": {
                "initContainers": [{"name": "init", "image": "i"}], "containers": [{"name": "app", "image": "x"}]}}}
        });
        assert_eq!(workload_labels(&deployment)["team"], "a");
        assert_eq!(pod_template_labels(&deployment)["team"], "b");
        assert_eq!(label(&deployment, "team"), Some("a"));
        assert_eq!(
            workload_ref(&deployment),
            WorkloadRef::new("Deployment", "qa", "web")
        );
        let containers = pod_containers(&deployment);
        assert_eq!(containers.len(), 2);
        assert_eq!(containers[1].field, "spec.template.spec.containers[0]");

        let cronjob = json!({
            "kind": "CronJob", "metadata": {"name": "job"},
            "spec": {"jobTemplate": {"spec": {"template": {"metadata": {"labels": {"owner": "x"}},
                "spec": {"containers": [{"name": "c", "image": "y"}]}}}}}
        });
        assert_eq!(pod_template_labels(&cronjob)["owner"], "x");
        assert!(workload_labels(&cronjob).is_empty());
        assert_eq!(
            pod_containers(&cronjob)[0].field,
            "spec.jobTemplate.spec.template.spec.containers[0]"
        );
        assert!(pod_containers(&json!({"kind": "Service"})).is_empty());
    }

    #[test]
    fn timestamps() {
        let t = |s| Timestamp::parse(s).unwrap_or_else(|| panic!("{s}"));
        assert_eq!(t("1970-01-01T00:00:00Z").seconds, 0);
        assert_eq!(t("2000-03-01T00:00:00Z").seconds, 951_868_800);
        assert_eq!(t("2025-06-01T12:00:00+02:00"), t("2025-06-01T10:00:00Z"));
        assert_eq!(t("2025-06-01T10:00:00.5Z").nanos, 500_000_000);
        assert!(t("2025-06-01T10:00:00.000000001Z") > t("2025-06-01T10:00:00Z"));
        for bad in [
            "2025-02-30T00:00:00Z",
            "2025-06-01",
            "2025-06-01T10:00:00",
            "2025-06-01T10:00:00+0200",
            "soon",
        ] {
            assert_eq!(Timestamp::parse(bad), None, "{bad}");
        }
        assert_eq!(
            compare_times("2025-01-01T00:00:00Z", "2024-12-31T23:59:59Z"),
            Some(Ordering::Greater)
        );
    }

    #[test]
    fn approvals_count_once_per_user_for_exact_digests() {
        let approval = |user: &str, env: &str, digests: Vec<String>, expires: &str| Approval {
            user: user.into(),
            environment: env.into(),
            commit: "c".into(),
            digests,
            approved_at: "2025-01-01T00:00:00Z".into(),
            expires_at: expires.into(),
            verified: true,
            ..Default::default()
        };
        let wanted = vec![digest('a'), digest('b')];
        let later = "2025-01-02T00:00:00Z";
        let approvals = vec![
            approval("bob", "production", vec![digest('b'), digest('a')], later),
            approval("bob", "production", wanted.clone(), later),
            approval("carol", "production", vec![digest('a')], later),
            approval("dave", "qa", wanted.clone(), later),
            approval("erin", "production", wanted.clone(), "2025-01-01T06:00:00Z"),
            approval("alice", "production", wanted.clone(), later),
        ];
        let valid = valid_approvals(
            &approvals,
            "production",
            &wanted,
            "2025-01-01T12:00:00Z",
            Some("alice"),
        );
        let users: Vec<&str> = valid.iter().map(|a| a.user.as_str()).collect();
        assert_eq!(users, ["bob"]);
        assert!(valid_approvals(&approvals, "production", &wanted, "not a time", None).is_empty());
    }
}
