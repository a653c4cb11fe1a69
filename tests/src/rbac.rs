//! RBAC for tests that release as a user with limited rights: namespaced Roles granted as the
//! admin, and the cluster-wide manifests of `plugin/rbac/` that every releasing user needs.
//!
//! ```no_run
//! use kubectl_release_tests::{TestEnv, deployer_rules, grant};
//! # async fn example(env: &TestEnv) {
//! // `developer` may release into web-qa, patching Deployments but not StatefulSets.
//! grant(env, "web-qa", "developer", "deployer", deployer_rules(&["deployments"])).await;
//! # }
//! ```

use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Namespace as CoreNamespace;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

use crate::TestEnv;
use crate::env::FIXTURE_LABEL;
use crate::workloads::{FIELD_MANAGER, apply};

/// How long a new binding may take to reach the API server's authorizer.
const GRANT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the plugin reads and watches: the four workload kinds and their pods.
const READ: [&str; 3] = ["get", "list", "watch"];

/// A rule allowing `verbs` on `resources` of API group `group` (`""`: the core group).
pub fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..Default::default()
    }
}

/// What a user needs to release into a namespace: read the workloads and their pods, keep the
/// release records (ConfigMaps) and the lock (a Lease), and patch the workload kinds in
/// `patchable` (`deployments`, `statefulsets`, `daemonsets`, `cronjobs`) and no other.
pub fn deployer_rules(patchable: &[&str]) -> Vec<PolicyRule> {
    let mut rules = vec![
        rule(
            "apps",
            &["deployments", "statefulsets", "daemonsets"],
            &READ,
        ),
        rule("batch", &["cronjobs"], &READ),
        rule("", &["pods"], &READ),
        rule(
            "",
            &["configmaps"],
            &[
                "get", "list", "watch", "create", "update", "patch", "delete",
            ],
        ),
        rule(
            "coordination.k8s.io",
            &["leases"],
            &["get", "create", "update", "patch", "delete"],
        ),
    ];
    for resource in patchable {
        let group = match *resource {
            "deployments" | "statefulsets" | "daemonsets" => "apps",
            "cronjobs" => "batch",
            other => panic!("{other} is not a workload kind kubectl-release patches"),
        };
        rules.push(rule(group, &[resource], &["patch"]));
    }
    rules
}

/// Grants `user` the Role `role` with `rules` in `namespace` (a Role and a RoleBinding, applied
/// as the admin, so granting again replaces the rules), and returns once the API server's
/// authorizer has seen the binding.
pub async fn grant(env: &TestEnv, namespace: &str, user: &str, role: &str, rules: Vec<PolicyRule>) {
    let client = env.client("admin").await;
    let metadata = ObjectMeta {
        name: Some(role.to_string()),
        labels: Some([(FIXTURE_LABEL.to_string(), "true".to_string())].into()),
        ..Default::default()
    };
    let first = rules
        .first()
        .cloned()
        .expect("a Role grants at least one rule");
    apply(
        &client,
        namespace,
        &Role {
            metadata: metadata.clone(),
            rules: Some(rules),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("cannot create Role {namespace}/{role}: {e:#}"));
    apply(
        &client,
        namespace,
        &RoleBinding {
            metadata,
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "Role".into(),
                name: role.to_string(),
            },
            subjects: Some(vec![Subject {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "User".into(),
                name: user.to_string(),
                namespace: None,
            }]),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("cannot create RoleBinding {namespace}/{role}: {e:#}"));

    // The authorizer learns of bindings through an informer: wait for it to allow the first rule.
    let group = first.api_groups.as_ref().and_then(|g| g.first()).cloned();
    let resource = first.resources.as_ref().and_then(|r| r.first()).cloned();
    let verb = first.verbs.first().cloned();
    let started = Instant::now();
    while !allowed(&client, user, namespace, &group, &resource, &verb).await {
        assert!(
            started.elapsed() < GRANT_TIMEOUT,
            "{user} still may not {verb:?} {resource:?} in {namespace} {GRANT_TIMEOUT:?} after \
             the RoleBinding {role} was created"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Returns once the API server's authorizer no longer lets `user` do `verb` on `resource` (of
/// `group`) in `namespace`: after [`grant`] replaced a Role with fewer rules, the authorizer
/// learns of it through an informer, a moment later.
pub async fn wait_until_denied(
    env: &TestEnv,
    user: &str,
    namespace: &str,
    group: &str,
    resource: &str,
    verb: &str,
) {
    let started = Instant::now();
    // An access review cannot be watched: ask again until the answer changes.
    while may(env, user, namespace, group, resource, verb).await {
        assert!(
            started.elapsed() < GRANT_TIMEOUT,
            "{user} still may {verb} {resource} in {namespace} {GRANT_TIMEOUT:?} after the rule \
             was taken away"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the API server lets `user` do `verb` on `resource` (of `group`) in `namespace`.
pub async fn may(
    env: &TestEnv,
    user: &str,
    namespace: &str,
    group: &str,
    resource: &str,
    verb: &str,
) -> bool {
    let client = env.client("admin").await;
    allowed(
        &client,
        user,
        namespace,
        &Some(group.to_string()),
        &Some(resource.to_string()),
        &Some(verb.to_string()),
    )
    .await
}

async fn allowed(
    admin: &Client,
    user: &str,
    namespace: &str,
    group: &Option<String>,
    resource: &Option<String>,
    verb: &Option<String>,
) -> bool {
    let review = SubjectAccessReview {
        metadata: ObjectMeta::default(),
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_string()),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(namespace.to_string()),
                group: group.clone(),
                resource: resource.clone(),
                verb: verb.clone(),
                ..Default::default()
            }),
            ..Default::default()
        },
        status: None,
    };
    let api: Api<SubjectAccessReview> = Api::all(admin.clone());
    api.create(&PostParams::default(), &review)
        .await
        .unwrap_or_else(|e| panic!("cannot ask the API server what {user} may do: {e}"))
        .status
        .is_some_and(|s| s.allowed)
}

/// Applies `plugin/rbac/policy.yaml` once per test process, as a cluster admin would: every
/// user who releases must be able to read the cluster policy (it grants nothing else).
pub async fn setup_policy_rbac(env: &TestEnv) {
    static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    DONE.get_or_init(|| async {
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin/rbac/policy.yaml");
        env.kubectl(&["apply", "-f", manifest])
            .await
            .assert_success();
    })
    .await;
}

/// Creates namespace `name` unless it exists (server-side apply as the admin).
pub async fn ensure_namespace(env: &TestEnv, name: &str) {
    let api: Api<CoreNamespace> = Api::all(env.client("admin").await);
    let body =
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .unwrap_or_else(|e| panic!("cannot create namespace {name}: {e}"));
}
