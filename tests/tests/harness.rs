//! The harness itself, against the real control plane: what the fake kubelet makes of pushed,
//! crash-looping and missing images, the four workload kinds, and the environment's users.
//! Every test here shares the one environment of this process.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, Job, JobSpec};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::watcher;
use kubectl_release_tests::workloads::NAME_LABEL;
use kubectl_release_tests::{
    DEFAULT_TIMEOUT, TestEnv, apply, cronjob, daemonset, deployment, deployment_rolled_out,
    image_ids, push_image, statefulset, wait_for, wait_for_all, waiting_reasons,
};

/// Pods of the workload `name` (as labelled by the builders).
fn pods_of(name: &str) -> watcher::Config {
    watcher::Config::default().labels(&format!("{NAME_LABEL}={name}"))
}

#[tokio::test]
async fn deployment_of_a_pushed_image_rolls_out_with_the_registry_digest() {
    let env = TestEnv::shared();
    let ns = env.namespace("pushed").await;
    let client = env.client("admin").await;
    let digest = push_image(env.registry(), "harness/web", "v1")
        .await
        .unwrap();
    let image = format!("{}/harness/web:v1", env.registry());

    apply(
        &client,
        ns.name(),
        &deployment("web").image(&image).replicas(3).build(),
    )
    .await
    .unwrap();
    env.kubectl(&[
        "-n",
        ns.name(),
        "rollout",
        "status",
        "deployment/web",
        "--timeout=60s",
    ])
    .await
    .assert_success();

    let pods: Api<Pod> = Api::namespaced(client, ns.name());
    let pods = wait_for_all(&pods, pods_of("web"), DEFAULT_TIMEOUT, |p| p.len() == 3)
        .await
        .unwrap();
    let expected = format!("docker-pullable://{}/harness/web@{digest}", env.registry());
    for pod in &pods {
        assert_eq!(
            image_ids(pod),
            [expected.as_str()],
            "pod {:?}",
            pod.metadata.name
        );
        let status = pod.status.as_ref().unwrap();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.container_statuses.as_ref().unwrap()[0].image, image);
    }
}

#[tokio::test]
async fn new_image_replaces_every_pod() {
    let env = TestEnv::shared();
    let ns = env.namespace("update").await;
    let client = env.client("admin").await;
    let repo = format!("{}/harness/update", env.registry());
    let old = push_image(env.registry(), "harness/update", "old")
        .await
        .unwrap();
    let new = push_image(env.registry(), "harness/update", "new")
        .await
        .unwrap();
    assert_ne!(old, new, "every tag has its own bytes");

    apply(
        &client,
        ns.name(),
        &deployment("web")
            .image(format!("{repo}:old"))
            .replicas(2)
            .build(),
    )
    .await
    .unwrap();
    env.kubectl(&[
        "-n",
        ns.name(),
        "rollout",
        "status",
        "deployment/web",
        "--timeout=60s",
    ])
    .await
    .assert_success();
    apply(
        &client,
        ns.name(),
        &deployment("web")
            .image(format!("{repo}:new"))
            .replicas(2)
            .build(),
    )
    .await
    .unwrap();
    env.kubectl(&[
        "-n",
        ns.name(),
        "rollout",
        "status",
        "deployment/web",
        "--timeout=60s",
    ])
    .await
    .assert_success();

    // Old pods are deleted (grace period 0), so only new ones remain.
    let pods: Api<Pod> = Api::namespaced(client, ns.name());
    let expected = format!("docker-pullable://{repo}@{new}");
    wait_for_all(&pods, pods_of("web"), DEFAULT_TIMEOUT, |p| {
        p.len() == 2 && p.iter().all(|pod| image_ids(pod) == [expected.as_str()])
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn crashloop_image_never_becomes_ready() {
    let env = TestEnv::shared();
    let ns = env.namespace("crashloop").await;
    let client = env.client("admin").await;
    push_image(env.registry(), "harness/crashloop-web", "v1")
        .await
        .unwrap();
    let image = format!("{}/harness/crashloop-web:v1", env.registry());

    apply(&client, ns.name(), &deployment("web").image(image).build())
        .await
        .unwrap();
    env.kubectl(&[
        "-n",
        ns.name(),
        "rollout",
        "status",
        "deployment/web",
        "--timeout=10s",
    ])
    .await
    .assert_failure();

    let pods: Api<Pod> = Api::namespaced(client, ns.name());
    let pods = wait_for_all(&pods, pods_of("web"), DEFAULT_TIMEOUT, |p| {
        p.iter()
            .any(|pod| waiting_reasons(pod) == ["CrashLoopBackOff"])
    })
    .await
    .unwrap();
    let status = pods[0]
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .clone();
    assert!(status.restart_count >= 1);
    assert!(!status.ready);
    let last = status.last_state.unwrap().terminated.unwrap();
    assert_eq!(last.exit_code, 1);
}

#[tokio::test]
async fn missing_image_backs_off_until_it_is_pushed() {
    let env = TestEnv::shared();
    let ns = env.namespace("missing").await;
    let client = env.client("admin").await;
    let image = format!("{}/harness/late:v1", env.registry());

    apply(&client, ns.name(), &deployment("web").image(&image).build())
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let pods_now = wait_for_all(&pods, pods_of("web"), DEFAULT_TIMEOUT, |p| {
        p.iter()
            .any(|pod| waiting_reasons(pod) == ["ImagePullBackOff"])
    })
    .await
    .unwrap();
    let waiting = pods_now[0]
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .state
        .clone()
        .unwrap()
        .waiting
        .unwrap();
    assert!(
        waiting.message.unwrap().contains(&image),
        "the message names the image"
    );
    assert_eq!(
        pods_now[0].status.as_ref().unwrap().phase.as_deref(),
        Some("Pending")
    );

    // As with a real kubelet, the pull is retried: the pod heals once the image exists.
    push_image(env.registry(), "harness/late", "v1")
        .await
        .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client, ns.name());
    wait_for(&deployments, "web", DEFAULT_TIMEOUT, |d| {
        d.is_some_and(deployment_rolled_out)
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn statefulset_and_daemonset_roll_out() {
    let env = TestEnv::shared();
    let ns = env.namespace("kinds").await;
    let client = env.client("admin").await;
    push_image(env.registry(), "harness/db", "v1")
        .await
        .unwrap();
    push_image(env.registry(), "harness/agent", "v1")
        .await
        .unwrap();

    apply(
        &client,
        ns.name(),
        &statefulset("db")
            .image(format!("{}/harness/db:v1", env.registry()))
            .replicas(2)
            .build(),
    )
    .await
    .unwrap();
    apply(
        &client,
        ns.name(),
        &daemonset("agent")
            .image(format!("{}/harness/agent:v1", env.registry()))
            .build(),
    )
    .await
    .unwrap();
    for workload in ["statefulset/db", "daemonset/agent"] {
        env.kubectl(&[
            "-n",
            ns.name(),
            "rollout",
            "status",
            workload,
            "--timeout=60s",
        ])
        .await
        .assert_success();
    }
}

#[tokio::test]
async fn job_pods_succeed_and_cronjobs_apply_on_the_old_api() {
    let env = TestEnv::shared();
    let ns = env.namespace("batch").await;
    let client = env.client("admin").await;
    push_image(env.registry(), "harness/report", "v1")
        .await
        .unwrap();
    let image = format!("{}/harness/report:v1", env.registry());

    // A CronJob's job template, run at once as a Job: its pod runs to completion.
    let cron = cronjob("report").image(&image).build();
    let job = Job {
        metadata: ObjectMeta {
            name: Some("report-now".into()),
            ..Default::default()
        },
        spec: Some(JobSpec {
            ..cron.spec.job_template.spec.clone().unwrap()
        }),
        status: None,
    };
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns.name());
    jobs.create(&PostParams::default(), &job).await.unwrap();
    wait_for(&jobs, "report-now", DEFAULT_TIMEOUT, |j| {
        j.and_then(|j| j.status.as_ref()?.succeeded).unwrap_or(0) == 1
    })
    .await
    .unwrap();

    // batch/v1 CronJob (all k8s-openapi has) lands as batch/v1beta1 on the v1.20 server.
    let stored: CronJob = apply(&client, ns.name(), &cron).await.unwrap();
    assert_eq!(
        stored
            .spec
            .job_template
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .containers[0]
            .image
            .as_deref(),
        Some(image.as_str())
    );
    let listed = env
        .kubectl(&[
            "-n",
            ns.name(),
            "get",
            "cronjobs.v1beta1.batch",
            "report",
            "-o",
            "name",
        ])
        .await
        .assert_success();
    assert_eq!(listed.stdout.trim(), "cronjob.batch/report");
}

#[tokio::test]
async fn users_and_contexts_are_who_they_say() {
    let env = TestEnv::shared();
    let ns = env.namespace("rbac").await;
    // No role is bound to the ordinary users: RBAC stops them, by name.
    for user in ["developer", "approver", "platform-admin"] {
        let out = env
            .kubectl(&["--context", user, "-n", ns.name(), "get", "pods"])
            .await
            .assert_failure();
        assert!(out.stderr.contains(&format!("User \"{user}\"")), "{out}");
    }
    // qa and production are the admin, on the same cluster.
    for context in ["admin", "qa", "production"] {
        env.kubectl(&["--context", context, "-n", ns.name(), "get", "pods"])
            .await
            .assert_success();
    }
    let nodes = env
        .kubectl(&["get", "nodes", "-o", "name"])
        .await
        .assert_success();
    assert_eq!(nodes.stdout.trim(), "node/fake-node-1");
}

/// Hundreds of pods at once, to see the fake kubelet keep up. Slow on 2 cores, so opt-in:
/// `cargo test -p kubectl-release-tests --test harness -- --ignored`.
#[tokio::test]
#[ignore = "scale run, opt-in"]
async fn hundreds_of_pods_roll_out() {
    let env = TestEnv::shared();
    let ns = env.namespace("scale").await;
    let client = env.client("admin").await;
    push_image(env.registry(), "harness/scale", "v1")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    apply(
        &client,
        ns.name(),
        &deployment("web")
            .image(format!("{}/harness/scale:v1", env.registry()))
            .replicas(300)
            .build(),
    )
    .await
    .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client, ns.name());
    wait_for(&deployments, "web", Duration::from_secs(300), |d| {
        d.is_some_and(deployment_rolled_out)
    })
    .await
    .unwrap();
    eprintln!("300 pods ready in {:?}", started.elapsed());
}
