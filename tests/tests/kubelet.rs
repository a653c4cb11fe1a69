//! The fake kubelet's Jobs and logs, end to end: Job pods run their `sh -c` script to success,
//! failure or past a deadline, the real Job controller sees it, and their logs reach
//! `kubectl logs`, the kube client and the plugin through the API server's log proxy.

use std::time::{Duration, Instant};

use futures::{AsyncBufReadExt as _, StreamExt as _};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use kube::api::{Api, LogParams, PostParams};
use kube::runtime::watcher;
use kubectl_release_tests::{App, DEFAULT_TIMEOUT, TestEnv, wait_for, wait_for_all};
use serde_json::json;

/// An image outside the test registry: "pulled" at once.
const IMAGE: &str = "busybox:1.36";

/// A Job `name` whose one container runs `sh -c script`, never restarted, no retries.
fn job(name: &str, script: &str, active_deadline_seconds: Option<i64>) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": name },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": active_deadline_seconds,
            "template": { "spec": {
                "restartPolicy": "Never",
                "containers": [{ "name": "main", "image": IMAGE, "command": ["sh", "-c", script] }],
            }},
        },
    }))
    .expect("a valid Job")
}

async fn create_job(env: &TestEnv, ns: &str, job: &Job) -> Api<Job> {
    let jobs: Api<Job> = Api::namespaced(env.client("admin").await, ns);
    jobs.create(&PostParams::default(), job)
        .await
        .expect("create the Job");
    jobs
}

/// The `(reason)` of the Job's condition `type_` once it is True.
fn condition(job: &Job, type_: &str) -> Option<String> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| c.reason.clone().unwrap_or_default())
}

async fn await_job_condition(jobs: &Api<Job>, name: &str, type_: &str) -> Job {
    wait_for(jobs, name, DEFAULT_TIMEOUT, |j| {
        j.is_some_and(|j| condition(j, type_).is_some())
    })
    .await
    .unwrap_or_else(|e| panic!("Job {name} never got condition {type_}: {e:#}"))
    .expect("the Job exists")
}

/// The pods of Job `name`, once `condition` holds for them.
async fn job_pods(pods: &Api<Pod>, name: &str, condition: impl Fn(&[Pod]) -> bool) -> Vec<Pod> {
    let config = watcher::Config::default().labels(&format!("job-name={name}"));
    wait_for_all(pods, config, DEFAULT_TIMEOUT, condition)
        .await
        .unwrap_or_else(|e| panic!("pods of Job {name}: {e:#}"))
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn terminated(pod: &Pod) -> Option<&ContainerStateTerminated> {
    pod.status.as_ref()?.container_statuses.as_ref()?[0]
        .state
        .as_ref()?
        .terminated
        .as_ref()
}

#[tokio::test]
async fn a_job_that_succeeds_completes_and_its_logs_go_through_the_api_server() {
    let env = TestEnv::shared();
    let ns = env.namespace("kubelet-job-ok").await;
    let client = env.client("admin").await;
    let pods: Api<Pod> = Api::namespaced(client, ns.name());
    let jobs = create_job(
        env,
        ns.name(),
        &job("migrate", "echo migrating; sleep 3; echo done", None),
    )
    .await;

    // Follow the logs of the running pod: `migrating` comes first, `done` some seconds later,
    // and the stream ends when the container does.
    let running = job_pods(&pods, "migrate", |p| {
        p.len() == 1 && phase(&p[0]) == "Running"
    })
    .await;
    let pod = running[0].metadata.name.clone().unwrap();
    let params = LogParams {
        follow: true,
        ..Default::default()
    };
    let mut lines = pods
        .log_stream(&pod, &params)
        .await
        .expect("follow the pod's logs")
        .lines();
    let first = tokio::time::timeout(DEFAULT_TIMEOUT, lines.next()).await;
    assert_eq!(first.expect("a first line").unwrap().unwrap(), "migrating");
    let first_at = Instant::now();
    let now = pods.get(&pod).await.unwrap();
    assert_eq!(
        phase(&now),
        "Running",
        "the line came while the container ran"
    );
    let second = tokio::time::timeout(DEFAULT_TIMEOUT, lines.next()).await;
    assert_eq!(second.expect("a second line").unwrap().unwrap(), "done");
    assert!(
        first_at.elapsed() > Duration::from_millis(500),
        "`done` was streamed when it was written, {:?} after `migrating`",
        first_at.elapsed()
    );
    let end = tokio::time::timeout(DEFAULT_TIMEOUT, lines.next()).await;
    assert!(
        end.expect("the stream ends").is_none(),
        "ends with the container"
    );

    let done = await_job_condition(&jobs, "migrate", "Complete").await;
    assert_eq!(done.status.unwrap().succeeded, Some(1));
    let pod_now = pods.get(&pod).await.unwrap();
    assert_eq!(phase(&pod_now), "Succeeded");
    let t = terminated(&pod_now).expect("terminated");
    assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));

    let out = env
        .kubectl(&["-n", ns.name(), "logs", "job/migrate"])
        .await
        .assert_success();
    assert_eq!(out.stdout, "migrating\ndone\n", "{out}");
    let out = env
        .kubectl(&["-n", ns.name(), "logs", &pod, "--tail=1", "--timestamps"])
        .await
        .assert_success();
    let (stamp, line) = out.stdout.trim_end().split_once(' ').expect("TIME LINE");
    assert_eq!(line, "done", "{out}");
    assert!(
        stamp.parse::<jiff::Timestamp>().is_ok(),
        "an RFC 3339 timestamp: {out}"
    );
}

#[tokio::test]
async fn a_job_that_fails_is_failed_with_its_exit_code() {
    let env = TestEnv::shared();
    let ns = env.namespace("kubelet-job-fail").await;
    let pods: Api<Pod> = Api::namespaced(env.client("admin").await, ns.name());
    let jobs = create_job(
        env,
        ns.name(),
        &job("broken", "echo cannot connect to db; exit 3", None),
    )
    .await;

    let failed = await_job_condition(&jobs, "broken", "Failed").await;
    assert_eq!(
        condition(&failed, "Failed").as_deref(),
        Some("BackoffLimitExceeded")
    );
    let pods_now = job_pods(&pods, "broken", |p| {
        p.len() == 1 && phase(&p[0]) == "Failed"
    })
    .await;
    let t = terminated(&pods_now[0]).expect("terminated");
    assert_eq!((t.exit_code, t.reason.as_deref()), (3, Some("Error")));

    let name = pods_now[0].metadata.name.clone().unwrap();
    let text = pods.logs(&name, &LogParams::default()).await.expect("logs");
    assert_eq!(text, "cannot connect to db\n");
    let out = env
        .kubectl(&["-n", ns.name(), "logs", &name, "--previous"])
        .await
        .assert_failure();
    assert!(
        out.stderr.contains("previous terminated container"),
        "{out}"
    );
}

#[tokio::test]
async fn a_job_past_its_deadline_fails() {
    let env = TestEnv::shared();
    let ns = env.namespace("kubelet-job-deadline").await;
    let pods: Api<Pod> = Api::namespaced(env.client("admin").await, ns.name());
    let jobs = create_job(
        env,
        ns.name(),
        // The script outlasts the wait below many times over, so a Job that fails within that
        // wait was failed by its deadline, not by the script ending; no clock is read.
        &job("slow", "echo working; sleep 3600; echo finished", Some(2)),
    )
    .await;
    let failed = await_job_condition(&jobs, "slow", "Failed").await;
    assert_eq!(
        condition(&failed, "Failed").as_deref(),
        Some("DeadlineExceeded")
    );
    // The Job controller deletes the active pod; the kubelet lets it go at once.
    job_pods(&pods, "slow", <[Pod]>::is_empty).await;

    // A bare pod past its own deadline fails on the kubelet's side.
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "bounded" },
        "spec": {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": 1,
            "containers": [{ "name": "main", "image": IMAGE, "command": ["sh", "-c", "sleep 30"] }],
        },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let failed = wait_for(&pods, "bounded", DEFAULT_TIMEOUT, |p| {
        p.is_some_and(|p| phase(p) == "Failed")
    })
    .await
    .expect("the pod fails at its deadline")
    .unwrap();
    assert_eq!(
        failed.status.as_ref().unwrap().reason.as_deref(),
        Some("DeadlineExceeded")
    );
}

#[tokio::test]
async fn a_crash_looping_pod_logs_its_last_lines_and_the_plugin_shows_them() {
    let mut app = App::new("crashlogs", 2).await;
    let [first, second] = <[String; 2]>::try_from(app.commits()).unwrap();
    let good = app.push(&first).await;
    app.push_crashing(&second).await;
    app.create_workloads(app.qa.name(), &format!("{}:{first}", app.image))
        .await;
    kubectl_release_tests::wait_for_pods_on(&app, app.qa.name(), "web", 3, &good).await;
    app.release(&["deploy", "qa", &first])
        .await
        .assert_success();

    let out = app.release(&["deploy", "qa", "--atomic"]).await;
    assert_eq!(out.code(), Some(5), "{out:?}");
    assert!(out.stderr.contains("CrashLoopBackOff"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("last log lines:\n    fake crash: exit 1"),
        "the crash-looping container's log, through the API server: {}",
        out.stderr
    );
}
