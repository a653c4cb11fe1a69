//! The API server goes away in the middle of a release: restarted, the release rides it out;
//! down past `--timeout`, the release ends with one report and leaves its record for the next
//! run to finish.
//!
//! These tests stop the API server of the environment this binary shares between its tests
//! (`TestEnv::shared`), which every other test of the binary needs: they run one at a time
//! behind [`ONE_OUTAGE_AT_A_TIME`], and no test that does not stop it belongs in this binary.

use std::time::Duration;

use kubectl_release_tests::{
    App, Component, app_with_a_slow_rollout, assert_report, delete_lease, entries, history, lease,
    mid_rollout, pretty, records, spawn_release, wait_for_pods_on,
};
use serde_json::Value;
use tokio::sync::Mutex;

const APP: &str = "web";
const QA: &str = "qa";
/// Held by each test for its whole run: another test's API server outage would fail it.
static ONE_OUTAGE_AT_A_TIME: Mutex<()> = Mutex::const_new(());
/// How long a release that had the API server pulled from under it may take to end: the rest
/// of its rollout after the restart, with the watches' backoff (up to half a minute) on top.
const RELEASE_EXIT_TIMEOUT: Duration = Duration::from_secs(180);

/// Whether the report's `warnings` say that the release's record could not be written.
fn says_the_record_was_not_updated(report: &Value) -> bool {
    report["warnings"].as_array().is_some_and(|warnings| {
        warnings.iter().any(|w| {
            w.as_str()
                .is_some_and(|w| w.contains("record") && w.contains("could not be updated"))
        })
    })
}

#[tokio::test]
async fn an_api_server_restart_mid_rollout_is_ridden_out_and_recorded_once() {
    let _alone = ONE_OUTAGE_AT_A_TIME.lock().await;
    let app = app_with_a_slow_rollout("apirestart").await;
    let head = app.repo.head();

    let deploy = spawn_release(&app, &["deploy", QA, "-o", "json"]);
    let record = mid_rollout(&app, &head).await;
    let revision = record["revision"].clone();
    app.env.stop(Component::ApiServer).await.end().await;

    let out = deploy.finish(RELEASE_EXIT_TIMEOUT).await;
    let report = assert_report(&out, 0, "succeeded");
    assert_eq!(report["revision"], revision, "{out}");
    let after = history(&app, QA).await;
    assert_eq!(after.len(), 1, "one release: {}", pretty(&after));
    let listed = entries(&after, &revision);
    assert_eq!(listed.len(), 1, "{}", pretty(&after));
    assert_eq!(listed[0]["outcome"], "succeeded", "{}", pretty(&after));
    wait_for_pods_on(&app, app.qa.name(), "web", 12, &app.digests[&head]).await;
}

#[tokio::test]
async fn an_api_server_down_past_the_timeout_leaves_the_record_for_the_next_deploy() {
    let _alone = ONE_OUTAGE_AT_A_TIME.lock().await;
    let app: App = app_with_a_slow_rollout("apidown").await;
    let qa = app.qa.name();
    let head = app.repo.head();

    // The timeout must come before the release concludes it has lost its lock, which it does
    // once no renewal has succeeded for 20 s (renewals every 10 s): at the earliest 10 s after
    // the API server went away. 6 s from the start of the wait is well before that, and still
    // leaves the test time to see the rollout begin.
    let deploy = spawn_release(&app, &["deploy", QA, "--timeout", "6s", "-o", "json"]);
    let record = mid_rollout(&app, &head).await;
    let revision = record["revision"].clone();
    let outage = app.env.stop(Component::ApiServer).await;
    let out = deploy.finish(RELEASE_EXIT_TIMEOUT).await;
    outage.end().await;

    let report = assert_report(&out, 6, "timed-out");
    assert_eq!(report["revision"], revision, "{out}");
    assert!(
        says_the_record_was_not_updated(&report),
        "the report's warnings say the record could not be updated: {out}"
    );
    // It could not finish its record, nor let go of its lock.
    let admin = app.env.client("admin").await;
    let recs = records(&admin, qa, APP, QA).await;
    assert_eq!(recs.len(), 1, "{}", pretty(&recs));
    assert_eq!(recs[0]["outcome"], "in-progress", "{}", pretty(&recs));
    assert!(
        lease(&admin, qa, APP, QA).await.is_some(),
        "the lock is left"
    );

    // The lock expires 30 s after its last renewal; an operator who knows the run has ended
    // deletes it rather than wait, and so does this test (the takeover of an expired lock is
    // deploy.rs' a_lock_whose_holder_died_expires_and_is_taken_over).
    delete_lease(&admin, qa, APP, QA).await;
    let before = history(&app, QA).await;
    let listed = entries(&before, &revision);
    assert_eq!(listed.len(), 1, "{}", pretty(&before));
    assert_eq!(listed[0]["outcome"], "interrupted", "{}", pretty(&before));

    // The next deploy of the same commit finishes that revision rather than starting another.
    let out = app.release(&["deploy", QA, "-o", "json"]).await;
    let report = assert_report(&out, 0, "succeeded");
    assert_eq!(report["revision"], revision, "{out}");
    let recs = records(&admin, qa, APP, QA).await;
    assert_eq!(
        recs.len(),
        1,
        "one record, revision {revision}: {}",
        pretty(&recs)
    );
    assert_eq!(recs[0]["revision"], revision);
    assert_eq!(recs[0]["outcome"], "succeeded", "{}", pretty(&recs));
    let after = history(&app, QA).await;
    assert_eq!(after.len(), 1, "{}", pretty(&after));
    assert_eq!(entries(&after, &revision)[0]["outcome"], "succeeded");
    wait_for_pods_on(&app, qa, "web", 12, &app.digests[&head]).await;
}
