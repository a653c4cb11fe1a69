//! The names we write into the cluster: labels, annotations, object names. One place, since
//! users select on them and other tools read them.

/// Field manager and `app.kubernetes.io/managed-by` value.
pub const MANAGER: &str = "kubectl-release";

pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_APP: &str = "kubectl-release.io/app";
pub const LABEL_ENVIRONMENT: &str = "kubectl-release.io/environment";
pub const LABEL_REVISION: &str = "kubectl-release.io/revision";
pub const LABEL_RECORD: &str = "kubectl-release.io/record";
/// On a release's Jobs and their pods: the Job's name in release.yaml.
pub const LABEL_JOB: &str = "kubectl-release.io/job";
/// On a Job template in the manifests: the phase it runs in (`pre-deploy`, `post-deploy`).
pub const ANNOTATION_JOB_PHASE: &str = "kubectl-release.io/job-phase";

/// On workloads: the release that last changed them.
pub const ANNOTATION_REVISION: &str = "kubectl-release.io/revision";
pub const ANNOTATION_COMMIT: &str = "kubectl-release.io/commit";
/// The tag the digest was resolved from (`repo:<sha>`), so the human-readable name stays visible.
pub const ANNOTATION_IMAGE_TAG: &str = "kubectl-release.io/image-tag";
pub const ANNOTATION_ENVIRONMENT: &str = "kubectl-release.io/environment";
/// The app, so the admission webhook knows whose approvals and history a change is judged by.
pub const ANNOTATION_APP: &str = "kubectl-release.io/app";

/// ConfigMap holding one release record.
pub fn record_name(app: &str, env: &str, revision: u64) -> String {
    format!("kubectl-release.{app}.{env}.v{revision}")
}

/// Lease that serialises releases of one app into one environment.
pub fn lock_name(app: &str, env: &str) -> String {
    format!("kubectl-release.{app}.{env}")
}

/// Label selector of an app's records in an environment.
pub fn records_selector(app: &str, env: &str) -> String {
    format!("{LABEL_RECORD}=true,{LABEL_APP}={app},{LABEL_ENVIRONMENT}={env}")
}

/// An RFC 1123 label: what Kubernetes accepts as a namespace, and what we accept as an app,
/// environment, job or container name.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}
