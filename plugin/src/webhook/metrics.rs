//! The webhook's Prometheus metrics: reviews by kind and verdict, their latency, hook errors and
//! the number of policy hooks loaded, in the text exposition format on `GET /metrics`.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// What a review was about, from the path it was posted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// `/approvals`: an approval ConfigMap.
    Approval,
    /// `/workloads`: a Deployment, StatefulSet, DaemonSet or CronJob.
    Workload,
    /// Anything else posted to the server.
    Other,
}

impl RequestKind {
    /// The kind a request path stands for.
    pub fn of_path(path: &str) -> Self {
        match path {
            "/approvals" => Self::Approval,
            "/workloads" => Self::Workload,
            _ => Self::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approval => "approval",
            Self::Workload => "workload",
            Self::Other => "other",
        }
    }
}

/// How a review ended, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReviewVerdict {
    Allowed,
    Denied,
    /// No verdict: the body was not an AdmissionReview, or the answer could not be made.
    Error,
}

impl ReviewVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
            Self::Error => "error",
        }
    }
}

impl EncodeLabelValue for RequestKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

impl EncodeLabelValue for ReviewVerdict {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    kind: RequestKind,
    verdict: ReviewVerdict,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabels {
    kind: RequestKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct HookLabels {
    hook: String,
}

/// Upper bounds in seconds: fine below 10 ms, where the goal (p99 ≤ 5 ms) is judged, coarse up to
/// the API server's 10 s deadline.
const DURATION_BUCKETS: [f64; 20] = [
    0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25,
    0.5, 1.0, 2.0, 3.0, 5.0, 10.0,
];

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The webhook's metrics; clones share one registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<KindLabels, Histogram, fn() -> Histogram>,
    hook_errors: Family<HookLabels, Counter>,
    fresh_reads: Counter,
    policy_hooks: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let durations = Family::new_with_constructor(duration_histogram as fn() -> Histogram);
        let hook_errors = Family::<HookLabels, Counter>::default();
        let fresh_reads = Counter::default();
        let policy_hooks = Gauge::default();
        let mut registry = Registry::with_prefix("kubectl_release_webhook");
        // Counters get their `_total` suffix from the encoder.
        registry.register(
            "requests",
            "AdmissionReviews answered, by kind and verdict",
            requests.clone(),
        );
        registry.register_with_unit(
            "request_duration",
            "Time from the request to the answer, by kind",
            Unit::Seconds,
            durations.clone(),
        );
        registry.register(
            "hook_errors",
            "Hook runs that gave no verdict (trap, timeout, bad output), by hook",
            hook_errors.clone(),
        );
        registry.register(
            "fresh_reads",
            "Workload reviews the watched caches would deny, judged again on a read of the API server",
            fresh_reads.clone(),
        );
        registry.register(
            "policy_hooks",
            "Cluster-policy hooks currently loaded for admission",
            policy_hooks.clone(),
        );
        let inner = Inner {
            registry,
            requests,
            durations,
            hook_errors,
            fresh_reads,
            policy_hooks,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Counts one answered request and records how long it took.
    pub fn observe(&self, kind: RequestKind, verdict: ReviewVerdict, duration: Duration) {
        let inner = &self.inner;
        inner
            .requests
            .get_or_create(&RequestLabels { kind, verdict })
            .inc();
        inner
            .durations
            .get_or_create(&KindLabels { kind })
            .observe(duration.as_secs_f64());
    }

    /// Counts one hook run that gave no verdict.
    pub fn hook_error(&self, hook: &str) {
        let labels = HookLabels {
            hook: hook.to_string(),
        };
        self.inner.hook_errors.get_or_create(&labels).inc();
    }

    /// Counts one review judged again on a fresh read: the caches are a moment behind, or
    /// the denial stands. Most allowed reviews should never need one.
    pub fn fresh_read(&self) {
        self.inner.fresh_reads.inc();
    }

    /// Records how many policy hooks are loaded now.
    pub fn set_policy_hooks(&self, n: usize) {
        self.inner
            .policy_hooks
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The metrics in the (OpenMetrics) text exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail; an encoder error would be a bug in a metric's type.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.inner.registry) {
            tracing::error!("cannot encode the webhook metrics: {e}");
        }
        text
    }
}

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_starting(text: &str, prefix: &str) -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn counts_requests_by_kind_and_verdict() {
        let metrics = Metrics::new();
        let ms = Duration::from_micros(700);
        metrics.observe(RequestKind::Approval, ReviewVerdict::Allowed, ms);
        metrics.observe(RequestKind::Approval, ReviewVerdict::Allowed, ms);
        metrics.observe(RequestKind::Workload, ReviewVerdict::Denied, ms);
        metrics
            .clone()
            .observe(RequestKind::Other, ReviewVerdict::Error, ms);
        let mut counts =
            lines_starting(&metrics.encode(), "kubectl_release_webhook_requests_total");
        counts.sort();
        assert_eq!(
            counts,
            [
                r#"kubectl_release_webhook_requests_total{kind="approval",verdict="allowed"} 2"#,
                r#"kubectl_release_webhook_requests_total{kind="other",verdict="error"} 1"#,
                r#"kubectl_release_webhook_requests_total{kind="workload",verdict="denied"} 1"#,
            ]
        );
    }

    #[test]
    fn records_durations_in_fine_buckets() {
        let metrics = Metrics::new();
        metrics.observe(
            RequestKind::Workload,
            ReviewVerdict::Allowed,
            Duration::from_micros(1800),
        );
        let text = metrics.encode();
        assert!(text.contains("# TYPE kubectl_release_webhook_request_duration_seconds histogram"));
        assert!(text.contains("# UNIT kubectl_release_webhook_request_duration_seconds seconds"));
        let bucket = |le: &str| {
            format!(
                r#"kubectl_release_webhook_request_duration_seconds_bucket{{le="{le}",kind="workload"}}"#
            )
        };
        assert!(
            text.contains(&format!("{} 0\n", bucket("0.0015"))),
            "{text}"
        );
        assert!(text.contains(&format!("{} 1\n", bucket("0.002"))), "{text}");
        assert!(text.contains(&format!("{} 1\n", bucket("10.0"))), "{text}");
        assert!(text.contains(&format!("{} 1\n", bucket("+Inf"))), "{text}");
        assert!(text.contains(
            r#"kubectl_release_webhook_request_duration_seconds_count{kind="workload"} 1"#
        ));
    }

    #[test]
    fn reports_hook_errors_and_loaded_hooks() {
        let metrics = Metrics::new();
        metrics.hook_error("approval-rules");
        metrics.hook_error("approval-rules");
        metrics.set_policy_hooks(3);
        let text = metrics.encode();
        assert!(text.contains("# TYPE kubectl_release_webhook_hook_errors counter\n"));
        assert!(
            text.contains("kubectl_release_webhook_hook_errors_total{hook=\"approval-rules\"} 2\n")
        );
        assert!(text.contains("# TYPE kubectl_release_webhook_policy_hooks gauge\n"));
        assert!(text.contains("kubectl_release_webhook_policy_hooks 3\n"));
        assert!(text.ends_with("# EOF\n"));
    }
}
