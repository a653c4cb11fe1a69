//! A workload change the API server asks the webhook about, as the hooks' `admission` phase
//! sees it: which of its pod template's images change, which app and environment it belongs to,
//! and the `HookRequest` built from it. Pure functions over the objects of the review.

use hooks_sdk::{Approval, HookRequest, Phase};
use kube::api::DynamicObject;

use super::{Kind, Release, ReleaseKind, Workload, WorkloadRef, names};

/// The kinds whose pod templates the webhook judges, by their API kind.
pub fn kind_of(api_kind: &str) -> Option<Kind> {
    Kind::ALL.into_iter().find(|k| format!("{k:?}") == api_kind)
}

/// One container whose image the change sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageChange {
    pub container: String,
    pub before: Option<String>,
    pub after: String,
}

/// The containers (and init containers) whose image differs between `old` and `new`; every
/// container of `new` when it is created.
pub fn image_changes(
    kind: Kind,
    old: Option<&DynamicObject>,
    new: &DynamicObject,
) -> Vec<ImageChange> {
    let workload = |object: &DynamicObject| Workload {
        id: WorkloadRef {
            kind,
            name: object.metadata.name.clone().unwrap_or_default(),
        },
        object: object.clone(),
    };
    let before = old.map(|o| workload(o).containers()).unwrap_or_default();
    workload(new)
        .containers()
        .into_iter()
        .filter_map(|c| {
            let was = before.iter().find(|b| b.name == c.name && b.init == c.init);
            (was.map(|b| &b.image) != Some(&c.image)).then(|| ImageChange {
                container: c.name,
                before: was.map(|b| b.image.clone()),
                after: c.image,
            })
        })
        .collect()
}

/// The app and environment a workload belongs to: the annotations a release stamps on it,
/// else the app's standard label and the namespace.
pub fn app_and_environment(object: &DynamicObject, namespace: &str) -> (String, String) {
    let annotation = |key: &str| object.metadata.annotations.as_ref()?.get(key).cloned();
    let label = |key: &str| object.metadata.labels.as_ref()?.get(key).cloned();
    let app = annotation(names::ANNOTATION_APP)
        .or_else(|| label("app.kubernetes.io/name"))
        .unwrap_or_else(|| object.metadata.name.clone().unwrap_or_default());
    let env = annotation(names::ANNOTATION_ENVIRONMENT).unwrap_or_else(|| namespace.to_string());
    (app, env)
}

/// Who made the change, as the API server authenticated them.
#[derive(Debug, Clone)]
pub struct Requester {
    pub user: String,
    pub groups: Vec<String>,
}

/// The request the `admission` phase's hooks see.
#[allow(clippy::too_many_arguments)]
pub fn request(
    kind: Kind,
    new: &DynamicObject,
    namespace: &str,
    changes: &[ImageChange],
    requester: &Requester,
    approvals: Vec<Approval>,
    history: &[Release],
    now: jiff::Timestamp,
) -> HookRequest {
    let (app, env) = app_and_environment(new, namespace);
    let name = new.metadata.name.clone().unwrap_or_default();
    let workload = hooks_sdk::WorkloadRef::new(format!("{kind:?}"), namespace, name);
    let containers = changes
        .iter()
        .map(|c| hooks_sdk::ContainerChange {
            workload: workload.clone(),
            container: c.container.clone(),
            image_before: c.before.clone(),
            image_after: c.after.clone(),
            digest_after: hooks_sdk::helpers::image_digest(&c.after)
                .unwrap_or_default()
                .to_string(),
        })
        .collect();
    let object = super::hook_request::workload_json(new, kind);
    let commit = new
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(names::ANNOTATION_COMMIT))
        .filter(|c| hooks_sdk::helpers::is_commit_tag(c))
        .cloned();
    HookRequest {
        api_version: hooks_sdk::API_VERSION.into(),
        kind: hooks_sdk::REQUEST_KIND.into(),
        phase: Phase::Admission,
        hook: String::new(),
        settings: serde_json::Value::Null,
        app,
        actor: hooks_sdk::Actor {
            user: requester.user.clone(),
            groups: requester.groups.clone(),
            verified: true,
        },
        now: now.to_string(),
        release: hooks_sdk::Release {
            kind: ReleaseKind::Deploy,
            revision: None,
            commit,
            target_environment: env,
            source_environment: None,
            forced_source: false,
            containers,
        },
        workloads: vec![object],
        environments: Vec::new(),
        approvals,
        history: history
            .iter()
            .take(10)
            .map(super::hook_request::summary)
            .collect(),
        objects: Vec::new(),
        jobs: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::workload::fixtures::workload;

    #[test]
    fn only_changed_images_count_and_a_creation_changes_them_all() {
        let old = workload(
            Kind::Deployment,
            "web",
            &[("web", "r/web@sha256:a"), ("proxy", "envoy:1")],
        );
        let new = workload(
            Kind::Deployment,
            "web",
            &[("web", "r/web@sha256:b"), ("proxy", "envoy:1")],
        );
        let changes = image_changes(Kind::Deployment, Some(&old.object), &new.object);
        assert_eq!(
            changes,
            [ImageChange {
                container: "web".into(),
                before: Some("r/web@sha256:a".into()),
                after: "r/web@sha256:b".into()
            }]
        );
        assert!(image_changes(Kind::Deployment, Some(&old.object), &old.object).is_empty());
        assert_eq!(image_changes(Kind::Deployment, None, &new.object).len(), 2);
    }

    #[test]
    fn the_app_and_environment_come_from_the_release_stamp_else_label_and_namespace() {
        let mut w = workload(Kind::Deployment, "web-1", &[("web", "r/web:1")]).object;
        assert_eq!(
            app_and_environment(&w, "prod"),
            ("web-1".into(), "prod".into())
        );
        w.metadata.labels =
            Some([("app.kubernetes.io/name".to_string(), "web".to_string())].into());
        assert_eq!(
            app_and_environment(&w, "prod"),
            ("web".into(), "prod".into())
        );
        w.metadata.annotations = Some(
            [
                (names::ANNOTATION_APP.to_string(), "shop".to_string()),
                (
                    names::ANNOTATION_ENVIRONMENT.to_string(),
                    "production".to_string(),
                ),
            ]
            .into(),
        );
        assert_eq!(
            app_and_environment(&w, "prod"),
            ("shop".into(), "production".into())
        );
    }

    #[test]
    fn the_request_names_the_new_digests_and_a_verified_actor() {
        let digest = format!("sha256:{}", "b".repeat(64));
        let new = workload(
            Kind::Deployment,
            "web",
            &[("web", &format!("r/web@{digest}"))],
        )
        .object;
        let changes = image_changes(Kind::Deployment, None, &new);
        let requester = Requester {
            user: "ann".into(),
            groups: vec!["ops".into()],
        };
        let req = request(
            Kind::Deployment,
            &new,
            "prod",
            &changes,
            &requester,
            vec![],
            &[],
            jiff::Timestamp::UNIX_EPOCH,
        );
        assert_eq!(req.phase, Phase::Admission);
        assert!(req.actor.verified);
        assert_eq!(req.release.digests(), [digest]);
        assert_eq!(req.workloads[0]["kind"], "Deployment");
    }
}
