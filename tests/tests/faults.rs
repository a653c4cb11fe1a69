//! Faults that leave the cluster itself up: releases racing for one lock, a lock that can no
//! longer be renewed, objects someone with RBAC wrote by hand into what the plugin reads, and
//! the rollout kinds `kubectl rollout status` calls complete (or refuses to wait for).
//!
//! Every test works in namespaces of its own, so they run in parallel. Faults of the API server
//! and the registry are in `faults_apiserver.rs` and `faults_registry.rs`, a malformed cluster
//! policy in `faults_policy.rs`: each of those breaks the whole environment of its binary.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::{Api, Client};
use kubectl_release_tests::records::RECORD_KEY;
use kubectl_release_tests::workloads::NAME_LABEL;
use kubectl_release_tests::{
    App, CmdOutput, app_with_a_slow_rollout, apply, assert_report, daemonset, deployer_rules,
    deployment, ensure_namespace, grant, has_applied, image_ids, lease_name, pretty, record_name,
    records, run, setup_policy_rbac, spawn_release, statefulset, wait_for_pods_on,
    wait_for_records, wait_until_denied,
};
use serde_json::{Value, json};

const APP: &str = "web";
const QA: &str = "qa";
const PRODUCTION: &str = "production";
/// Where approvals live (plugin/rbac/approvals.yaml, plugin/src/cluster/approvals.rs).
const APPROVALS_NAMESPACE: &str = "kubectl-release-approvals";
/// Longer than any rollout here takes; a test that needs a rollout to fail fast or at once
/// passes it as `--timeout`, so that waiting it out shows as exit 6, not as a hung test.
const ROLLOUT_TIMEOUT: &str = "2m";

/// Whether any warning of a report contains every one of `words`.
fn has_warning(report: &Value, words: &[&str]) -> bool {
    report["warnings"].as_array().is_some_and(|warnings| {
        warnings.iter().any(|w| {
            w.as_str()
                .is_some_and(|w| words.iter().all(|word| w.contains(word)))
        })
    })
}

#[tokio::test]
async fn five_deploys_at_once_one_proceeds_and_four_are_locked_out() {
    let app = app_with_a_slow_rollout("fiveatonce").await;
    let runs = (0..5).map(|_| app.release(&["deploy", QA, "-o", "json"]));
    let outs: Vec<CmdOutput> = futures::future::join_all(runs).await;

    let (winners, losers): (Vec<&CmdOutput>, Vec<&CmdOutput>) =
        outs.iter().partition(|out| out.code() == Some(0));
    let all = || {
        outs.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(winners.len(), 1, "exactly one proceeds:\n{}", all());
    let report = assert_report(winners[0], 0, "succeeded");
    for locked in losers {
        assert_report(locked, 7, "locked");
    }
    let recs = records(&app.env.client("admin").await, app.qa.name(), APP, QA).await;
    assert_eq!(recs.len(), 1, "one record: {}", pretty(&recs));
    assert_eq!(recs[0]["revision"], report["revision"]);
    assert_eq!(recs[0]["outcome"], "succeeded", "{}", pretty(&recs));
}

#[tokio::test]
async fn a_lock_that_can_no_longer_be_renewed_stops_the_release_and_records_why() {
    let mut app = App::new("norenew", 2).await;
    for commit in app.commits() {
        app.push(&commit).await;
    }
    let env = app.env;
    let qa = app.qa.name();
    // No node has this label: web's pods stay Pending (unschedulable, no reason to give up),
    // so its rollout neither completes nor fails by itself.
    let web = deployment("web")
        .image(format!("{}:{}", app.image, app.commits()[0]))
        .node_selector("kubectl-release.test/no-such-node", "true")
        .build();
    apply(&env.client("admin").await, qa, &web)
        .await
        .expect("create the unschedulable deployment");
    setup_policy_rbac(env).await;
    let rules = deployer_rules(&["deployments"]);
    grant(env, qa, "developer", "deployer", rules.clone()).await;

    let deploy = spawn_release(
        &app,
        &[
            "--context",
            "developer",
            "deploy",
            QA,
            "--timeout",
            "3m",
            "-o",
            "json",
        ],
    );
    let admin = env.client("admin").await;
    let running = |r: &Value| r["outcome"] == "in-progress" && has_applied(r, "Deployment", "web");
    let found = wait_for_records(&admin, qa, APP, QA, Duration::from_secs(60), |recs| {
        recs.iter().any(running)
    })
    .await
    .unwrap_or_else(|e| panic!("no in-progress record that applied Deployment/web: {e:#}"));
    let revision = found.iter().find(|r| running(r)).expect("found")["revision"].clone();

    // The same Role without its rule on leases: renewals are refused from now on.
    let without_leases = rules
        .into_iter()
        .filter(|r| !r.resources.iter().flatten().any(|res| res == "leases"))
        .collect();
    grant(env, qa, "developer", "deployer", without_leases).await;
    wait_until_denied(
        env,
        "developer",
        qa,
        "coordination.k8s.io",
        "leases",
        "patch",
    )
    .await;

    // Renewals are due every 10 s and it gives up 20 s after the last one that succeeded: it
    // stops by itself within about a lease duration (30 s). The bound leaves room, and is far
    // below the 3 m --timeout a release that ignored its lost lock would still be waiting out.
    let out = deploy.finish(Duration::from_secs(100)).await;
    let report = assert_report(&out, 5, "interrupted");
    assert_eq!(report["revision"], revision, "{out}");
    let about_the_lock = |m: &str| m.contains("lock");
    assert!(
        about_the_lock(report["message"].as_str().unwrap_or_default()),
        "the message says the lock was lost: {out}"
    );
    let recs = records(&admin, qa, APP, QA).await;
    let record = recs
        .iter()
        .find(|r| r["revision"] == revision)
        .unwrap_or_else(|| panic!("no record of revision {revision}: {}", pretty(&recs)));
    assert_eq!(record["outcome"], "interrupted", "{}", pretty(&recs));
    assert!(
        about_the_lock(record["message"].as_str().unwrap_or_default()),
        "the record says why: {record:#}"
    );
}

/// Runs `kubectl-release ARGS` in the app's repository with `RUST_BACKTRACE=1`, so that a panic
/// cannot go unseen.
async fn release_with_backtraces(app: &App, args: &[&str]) -> CmdOutput {
    let mut command = app.env.plugin();
    command
        .env("RUST_BACKTRACE", "1")
        .args(args)
        .current_dir(app.repo.path());
    run(&mut command).await
}

/// Panics unless `out` ended with an exit code of its own: not a panic (101), no backtrace.
#[track_caller]
fn assert_no_panic(out: &CmdOutput) {
    assert!(
        out.code().is_some() && out.code() != Some(101),
        "a panic or a signal: {out}"
    );
    for sign in ["panicked at", "stack backtrace", "RUST_BACKTRACE"] {
        assert!(!out.stderr.contains(sign), "{sign:?} on stderr: {out}");
    }
}

/// Panics unless a warning line of `out`'s stderr says it skipped `name`.
#[track_caller]
fn assert_skipped_with_a_warning(out: &CmdOutput, name: &str) {
    assert!(
        out.stderr
            .lines()
            .any(|line| line.contains("skipping") && line.contains(name)),
        "no warning that {name} was skipped: {out}"
    );
}

/// Creates a ConfigMap in `namespace` as the admin: written by hand, as anyone allowed to
/// write ConfigMaps there could.
async fn create_config_map(
    client: &Client,
    namespace: &str,
    name: &str,
    labels: &[(&str, &str)],
    data: BTreeMap<String, String>,
) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    };
    api.create(&PostParams::default(), &cm)
        .await
        .unwrap_or_else(|e| panic!("cannot create ConfigMap {namespace}/{name}: {e}"));
}

/// Hand-written release records of `web` in qa that the plugin cannot read, by name: right
/// labels, wrong contents. `good` is a record the plugin wrote, to start from.
async fn write_malformed_records(client: &Client, qa: &str, good: &Value) -> Vec<String> {
    let with = |revision: u64, changes: &[(&str, Value)]| {
        let mut record = good.clone();
        record["revision"] = revision.into();
        for (key, value) in changes {
            record[*key] = value.clone();
        }
        record.to_string()
    };
    let short_commit = with(90, &[("commit", "abc".into())]);
    let wrong_types = json!({
        "revision": "ninety-one", "app": 7, "environment": ["qa"], "kind": {"deploy": true},
        "commit": 42, "containers": "web", "outcome": false, "startedAt": null,
    })
    .to_string();
    let non_ascii = with(
        92,
        &[
            ("commit", "é".repeat(40).into()),
            ("message", "déployé à 12:00 ✓ — 🚀".into()),
        ],
    );
    // A ConfigMap holds at most 1 MiB: the whole record stays just under it.
    let huge = with(93, &[("commit", "z".repeat(1_000_000).into())]);
    let documents = [
        (90, Some(short_commit)),
        (91, Some(wrong_types)),
        (92, Some(non_ascii)),
        (93, Some(huge)),
        (94, None),
    ];
    let mut names = Vec::new();
    for (revision, document) in documents {
        let name = record_name(APP, QA, revision);
        let revision = revision.to_string();
        let labels = [
            ("app.kubernetes.io/managed-by", "kubectl-release"),
            ("kubectl-release.io/record", "true"),
            ("kubectl-release.io/app", APP),
            ("kubectl-release.io/environment", QA),
            ("kubectl-release.io/revision", revision.as_str()),
        ];
        let data = match document {
            Some(document) => BTreeMap::from([(RECORD_KEY.to_string(), document)]),
            None => BTreeMap::from([("notes".to_string(), "written by hand".to_string())]),
        };
        create_config_map(client, qa, &name, &labels, data).await;
        names.push(name);
    }
    names
}

/// Hand-written approvals of `web` for production: one whose strings are not what a commit,
/// digest or time look like (readable, so it may be listed), one that is not JSON at all.
/// Returns the name of the unreadable one.
async fn write_malformed_approvals(client: &Client, unique: &str) -> String {
    let labels = [
        ("app.kubernetes.io/managed-by", "kubectl-release"),
        ("kubectl-release.io/approval", "true"),
        ("kubectl-release.io/app", APP),
        ("kubectl-release.io/environment", PRODUCTION),
    ];
    let odd = json!({
        "user": "ápprover", "environment": PRODUCTION, "commit": "é",
        "digests": ["sha256:éééééééééééééééé", "é"], "approvedAt": "é", "expiresAt": "ééé",
    });
    create_config_map(
        client,
        APPROVALS_NAMESPACE,
        &format!("{APP}.{PRODUCTION}.approval-odd-{unique}"),
        &labels,
        BTreeMap::from([("approval.json".to_string(), odd.to_string())]),
    )
    .await;
    let garbage = format!("{APP}.{PRODUCTION}.approval-garbage-{unique}");
    create_config_map(
        client,
        APPROVALS_NAMESPACE,
        &garbage,
        &labels,
        BTreeMap::from([(
            "approval.json".to_string(),
            "{\"commit\": \u{0}garbage ]]] é".to_string(),
        )]),
    )
    .await;
    garbage
}

#[tokio::test]
async fn hand_written_malformed_objects_are_skipped_with_a_warning_and_never_panic() {
    let mut app = App::new("malformed", 2).await;
    for commit in app.commits() {
        app.push(&commit).await;
    }
    let env = app.env;
    let admin = env.client("admin").await;
    let (qa, production) = (app.qa.name(), app.production.name());
    let first = format!("{}:{}", app.image, app.commits()[0]);
    // Workloads of the app whose commit annotation is not a commit: not hex, or as long as
    // the API server allows (annotations are limited to 256 KiB in all, so not 1 MiB).
    let long_commit = "0123456789abcdef".repeat(16_000);
    for ns in [qa, production] {
        app.create_workloads(ns, &first).await;
        for (name, commit) in [("odd", "ééé"), ("long", long_commit.as_str())] {
            let workload = deployment(name)
                .image(&first)
                .annotation("kubectl-release.io/commit", commit)
                .build();
            apply(&admin, ns, &workload)
                .await
                .unwrap_or_else(|e| panic!("cannot create {ns}/{name}: {e:#}"));
        }
    }
    // One record the plugin wrote, to copy from and to be read among the broken ones.
    app.release(&["deploy", QA, &app.commits()[0]])
        .await
        .assert_success();
    let good = records(&admin, qa, APP, QA)
        .await
        .pop()
        .expect("the deploy's record");

    let broken_records = write_malformed_records(&admin, qa, &good).await;
    ensure_namespace(env, APPROVALS_NAMESPACE).await;
    let broken_approval = write_malformed_approvals(&admin, qa).await;
    // A release lock with neither holder nor times, as a hand-made or damaged Lease would be.
    let leases: Api<Lease> = Api::namespaced(admin.clone(), qa);
    let empty = Lease {
        metadata: ObjectMeta {
            name: Some(lease_name(APP, QA)),
            ..Default::default()
        },
        spec: Some(LeaseSpec::default()),
    };
    leases
        .create(&PostParams::default(), &empty)
        .await
        .expect("create the empty lease");

    let commands: [&[&str]; 6] = [
        &["status"],
        &["history", QA],
        &["where", "HEAD"],
        &["approvals", PRODUCTION],
        &["deploy", QA, "-o", "json"],
        &["promote", QA, PRODUCTION, "-o", "json"],
    ];
    for args in commands {
        let out = release_with_backtraces(&app, args).await;
        assert_no_panic(&out);
        assert!(
            out.success(),
            "malformed objects are skipped, not fatal: {out}"
        );
        // `where` judges by the live workloads alone; every other command reads qa's records.
        if args[0] != "where" {
            for name in &broken_records {
                assert_skipped_with_a_warning(&out, name);
            }
        }
        if args[0] == "approvals" {
            assert_skipped_with_a_warning(&out, &broken_approval);
        }
    }
    wait_for_pods_on(&app, production, "web", 3, &app.digests[&app.repo.head()]).await;
}

#[tokio::test]
async fn an_unreadable_record_holding_the_next_revision_stops_the_deploy_and_names_the_fix() {
    let mut app = App::new("unreadable-next", 2).await;
    for commit in app.commits() {
        app.push(&commit).await;
    }
    let admin = app.env.client("admin").await;
    let qa = app.qa.name().to_string();
    let (first, second) = (app.commits()[0].clone(), app.commits()[1].clone());
    app.create_workloads(&qa, &format!("{}:{first}", app.image))
        .await;
    app.release(&["deploy", QA, &first]).await.assert_success();
    // Revision 2, the next one, written by hand into something no release can be read from.
    let taken = record_name(APP, QA, 2);
    let labels = [
        ("app.kubernetes.io/managed-by", "kubectl-release"),
        ("kubectl-release.io/record", "true"),
        ("kubectl-release.io/app", APP),
        ("kubectl-release.io/environment", QA),
        ("kubectl-release.io/revision", "2"),
    ];
    let garbage = BTreeMap::from([(RECORD_KEY.to_string(), "{\"revision\": 2, ]]]".to_string())]);
    create_config_map(&admin, &qa, &taken, &labels, garbage).await;

    let out = app.release(&["deploy", QA, &second]).await;
    assert_no_panic(&out);
    assert_eq!(out.code(), Some(1), "{out}");
    assert_skipped_with_a_warning(&out, &taken);
    let fix = format!("kubectl delete configmap -n {qa} {taken}");
    assert!(
        out.stderr.contains(&format!(
            "record {taken}: a record with that revision already exists"
        )) && out.stderr.contains(&fix),
        "the error names the record in the way and how to clear it: {out}"
    );
    // Nothing changed: qa still runs the first commit, no record was added, and the record in
    // the way is as it was written.
    wait_for_pods_on(&app, &qa, "web", 3, &app.digests[&first]).await;
    let configmaps: Api<ConfigMap> = Api::namespaced(admin.clone(), &qa);
    let selector = kubectl_release_tests::records::records_selector(APP, QA);
    let mut names: Vec<String> = configmaps
        .list(&ListParams::default().labels(&selector))
        .await
        .expect("list the records")
        .items
        .into_iter()
        .filter_map(|cm| cm.metadata.name)
        .collect();
    names.sort();
    assert_eq!(names, [record_name(APP, QA, 1), taken.clone()]);
    let broken = configmaps
        .get(&taken)
        .await
        .expect("the hand-written record");
    assert!(
        broken.data.as_ref().unwrap()[RECORD_KEY].ends_with("]]]"),
        "the record in the way is left as it was: {broken:?}"
    );

    // Following the message clears the way.
    let fix_args: Vec<&str> = fix.split(' ').skip(1).collect();
    app.env.kubectl(&fix_args).await.assert_success();
    app.release(&["deploy", QA, &second]).await.assert_success();
    let newest = records(&admin, &qa, APP, QA).await.pop().expect("a record");
    assert_eq!(newest["revision"], 2, "{}", newest);
    assert_eq!(newest["commit"], second.as_str(), "{}", newest);
}

/// An app with `commits` commits, every image pushed (the last one crash-looping when
/// `last_crashes`), and nothing in its namespaces yet.
async fn app_with_its_images(prefix: &str, commits: usize, last_crashes: bool) -> App {
    let mut app = App::new(prefix, commits).await;
    let all = app.commits();
    for (i, commit) in all.iter().enumerate() {
        if last_crashes && i + 1 == all.len() {
            app.push_crashing(commit).await;
        } else {
            app.push(commit).await;
        }
    }
    app
}

/// Applies `workload` in the app's qa namespace as the admin.
async fn create_in_qa<K>(app: &App, workload: &K)
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + serde::Serialize
        + serde::de::DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    apply(&app.env.client("admin").await, app.qa.name(), workload)
        .await
        .unwrap_or_else(|e| panic!("cannot create the workload: {e:#}"));
}

/// The pods of `workload` in qa by name, each with the image it runs (its first `imageID`).
async fn pod_images(app: &App, workload: &str) -> BTreeMap<String, String> {
    let pods: Api<Pod> = Api::namespaced(app.env.client("admin").await, app.qa.name());
    pods.list(&ListParams::default().labels(&format!("{NAME_LABEL}={workload}")))
        .await
        .expect("list pods")
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            let image = image_ids(p).first().map(|i| i.to_string());
            (
                p.metadata.name.clone().unwrap_or_default(),
                image.unwrap_or_default(),
            )
        })
        .collect()
}

/// The `imageID` the fake kubelet reports for a pod running `app`'s image of `commit`.
fn image_id(app: &App, commit: &str) -> String {
    format!("docker-pullable://{}@{}", app.image, app.digests[commit])
}

/// Where `kubectl rollout status` calls a rollout complete, or will not wait, so does the
/// plugin: it does not wait out `--timeout` for pods that are never going to change.
mod rollout_kinds {
    use super::*;

    #[tokio::test]
    async fn a_statefulset_with_a_partition_is_done_once_the_pods_above_it_are_updated() {
        let app = app_with_its_images("partition", 2, false).await;
        let [first, head] = <[String; 2]>::try_from(app.commits()).unwrap();
        let db = statefulset("db")
            .image(format!("{}:{first}", app.image))
            .replicas(3)
            .partition(2)
            .build();
        create_in_qa(&app, &db).await;
        wait_for_pods_on(&app, app.qa.name(), "db", 3, &app.digests[&first]).await;

        let out = app
            .release(&["deploy", QA, "--timeout", ROLLOUT_TIMEOUT, "-o", "json"])
            .await;
        assert_report(&out, 0, "succeeded");
        // Only the pod at the partition's ordinal and above (db-2) is updated.
        let expected = BTreeMap::from([
            ("db-0".to_string(), image_id(&app, &first)),
            ("db-1".to_string(), image_id(&app, &first)),
            ("db-2".to_string(), image_id(&app, &head)),
        ]);
        assert_eq!(pod_images(&app, "db").await, expected, "{out}");
    }

    #[tokio::test]
    async fn on_delete_statefulsets_and_daemonsets_are_done_at_once_with_a_warning() {
        let app = app_with_its_images("ondelete", 2, false).await;
        let first = app.commits()[0].clone();
        let image = format!("{}:{first}", app.image);
        create_in_qa(&app, &statefulset("db").image(&image).on_delete().build()).await;
        create_in_qa(&app, &daemonset("agent").image(&image).on_delete().build()).await;
        wait_for_pods_on(&app, app.qa.name(), "db", 1, &app.digests[&first]).await;
        wait_for_pods_on(&app, app.qa.name(), "agent", 1, &app.digests[&first]).await;

        let out = app
            .release(&["deploy", QA, "--timeout", ROLLOUT_TIMEOUT, "-o", "json"])
            .await;
        let report = assert_report(&out, 0, "succeeded");
        for workload in ["StatefulSet/db", "DaemonSet/agent"] {
            assert!(
                has_warning(&report, &[workload, "OnDelete", "deleted"]),
                "a warning that {workload}'s pods take the new image when deleted: {out}"
            );
        }
        // Nobody deleted them: they still run the image they had.
        for workload in ["db", "agent"] {
            let images = pod_images(&app, workload).await;
            assert!(
                !images.is_empty() && images.values().all(|i| *i == image_id(&app, &first)),
                "{workload}: {images:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_deployment_selecting_its_pods_by_expression_is_waited_for_promoted_and_fails_fast() {
        let app = app_with_its_images("matchexpr", 3, true).await;
        let [first, second, crashing] = <[String; 3]>::try_from(app.commits()).unwrap();
        let web = deployment("web")
            .image(format!("{}:{first}", app.image))
            .replicas(2)
            .select_by_expression()
            .build();
        create_in_qa(&app, &web).await;
        let production = app.production.name();
        apply(&app.env.client("admin").await, production, &web)
            .await
            .expect("create web in production");
        wait_for_pods_on(&app, app.qa.name(), "web", 2, &app.digests[&first]).await;

        let out = app
            .release(&[
                "deploy",
                QA,
                &second,
                "--timeout",
                ROLLOUT_TIMEOUT,
                "-o",
                "json",
            ])
            .await;
        assert_report(&out, 0, "succeeded");
        wait_for_pods_on(&app, app.qa.name(), "web", 2, &app.digests[&second]).await;
        // A promotion ships what the source's pods run: it must see them as web's.
        let out = app
            .release(&[
                "promote",
                QA,
                PRODUCTION,
                "--timeout",
                ROLLOUT_TIMEOUT,
                "-o",
                "json",
            ])
            .await;
        assert_report(&out, 0, "succeeded");
        wait_for_pods_on(&app, production, "web", 2, &app.digests[&second]).await;

        // A crash-looping build: the pods the selector picks are watched, and the first one
        // stuck ends the release at once, by name.
        let out = app
            .release(&[
                "deploy",
                QA,
                &crashing,
                "--timeout",
                ROLLOUT_TIMEOUT,
                "-o",
                "json",
            ])
            .await;
        let report = assert_report(&out, 5, "failed");
        let message = report["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("pod web-") && message.contains("CrashLoopBackOff"),
            "the message names the crash-looping pod: {out}"
        );
    }

    #[tokio::test]
    async fn a_paused_deployment_fails_at_once_saying_to_resume_it() {
        let app = app_with_its_images("paused", 2, false).await;
        let web = deployment("web")
            .image(format!("{}:{}", app.image, app.commits()[0]))
            .paused()
            .build();
        create_in_qa(&app, &web).await;

        let out = app
            .release(&["deploy", QA, "--timeout", ROLLOUT_TIMEOUT, "-o", "json"])
            .await;
        let report = assert_report(&out, 5, "failed");
        let message = report["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("paused") && message.contains("kubectl rollout resume"),
            "the message says it is paused and how to resume it: {out}"
        );
    }
}
