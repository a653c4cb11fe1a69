//! The plugin's rollout watch started from a known resourceVersion (`cluster::resumed_watch`),
//! against the real API server: from a current version it sees the next change without a list,
//! and from a version the server cannot serve it falls back to listing, so the object is still
//! seen.

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kubectl_release::cluster::resumed_watch::{Start, watch_from};
use kubectl_release_tests::{DEFAULT_TIMEOUT, TestEnv};
use serde_json::json;

/// The value of `key` in the first event of `events` that carries one.
async fn next_value(
    events: &mut (impl futures::Stream<Item = Result<Event<ConfigMap>, watcher::Error>> + Unpin),
    key: &str,
) -> String {
    loop {
        let event = tokio::time::timeout(DEFAULT_TIMEOUT, events.next())
            .await
            .expect("an event in time")
            .expect("the stream goes on")
            .expect("no watch error");
        if let Event::Apply(cm) | Event::InitApply(cm) = event
            && let Some(value) = cm.data.as_ref().and_then(|d| d.get(key))
        {
            return value.clone();
        }
    }
}

#[tokio::test]
async fn a_watch_from_a_version_sees_what_follows_and_one_the_server_forgot_lists_again() {
    let env = TestEnv::shared();
    let ns = env.namespace("resumed-watch").await;
    let api: Api<ConfigMap> = Api::namespaced(env.client("admin").await, ns.name());
    let created = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "c"}, "data": {"step": "1"}}))
                .unwrap(),
        )
        .await
        .unwrap();
    let version = created.metadata.resource_version.clone().unwrap();
    let config = watcher::Config::default().fields("metadata.name=c");

    // From the version just written: the known object first, then the change made after it.
    let mut events = watch_from(
        api.clone(),
        config.clone(),
        Start::From {
            version: version.clone(),
            known: Some(created),
        },
    );
    assert_eq!(next_value(&mut events, "step").await, "1");
    api.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"step": "2"}})),
    )
    .await
    .unwrap();
    assert_eq!(next_value(&mut events, "step").await, "2");

    // From an old version: the server replays what followed it (while its history has it) or
    // answers 410 Gone (when compacted) and the watch lists; either way "2" arrives.
    let mut events = watch_from(
        api.clone(),
        config.clone(),
        Start::From {
            version: "1".into(),
            known: None,
        },
    );
    while next_value(&mut events, "step").await != "2" {}

    // A version the server cannot serve at all is refused; the watch falls back to a list,
    // whose first event is the object as it is now.
    let mut events = watch_from(
        api.clone(),
        config,
        Start::From {
            version: "not-a-version".into(),
            known: None,
        },
    );
    assert_eq!(next_value(&mut events, "step").await, "2");
}
