//! A watch that starts where a read left off.
//!
//! kube-runtime's watcher begins with a list. A release that has just patched a workload
//! already holds its state and resourceVersion, so that list is a request spent learning what it
//! knows (two per workload: the workload and its pods). [`watch_from`] watches from the known
//! version instead. On the first error (a 410 Gone when the version has left the server's watch
//! window, a selector the server refuses, a dropped connection) or when the server ends the
//! watch, it goes on with kube-runtime's watcher — list, then watch, with its backoff — so
//! nothing is missed: at worst it is read again.

use std::fmt::Debug;

use futures::stream::{self, BoxStream};
use futures::{StreamExt as _, TryStreamExt as _};
use kube::Resource;
use kube::api::{Api, WatchEvent, WatchParams};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;

/// Where a watch starts.
pub enum Start<K> {
    /// With a list, like kube-runtime's watcher.
    Listed,
    /// After `version`, with `known` (if any) as the first event: what the caller read at it.
    From { version: String, known: Option<K> },
}

/// The events of `api`'s objects matching `config`'s selectors, from `start`.
pub fn watch_from<K>(
    api: Api<K>,
    config: watcher::Config,
    start: Start<K>,
) -> BoxStream<'static, Result<Event<K>, watcher::Error>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let listed = watcher::watcher(api.clone(), config.clone()).default_backoff();
    let Start::From { version, known } = start else {
        return listed.boxed();
    };
    let params = WatchParams {
        label_selector: config.label_selector.clone(),
        field_selector: config.field_selector.clone(),
        ..WatchParams::default()
    };
    let first = stream::iter(known.map(|k| Ok(Event::Apply(k))));
    let from_version = stream::once(async move { api.watch(&params, &version).await })
        .try_flatten()
        .take_while(|event| {
            let goes_on = matches!(
                event,
                Ok(WatchEvent::Added(_)
                    | WatchEvent::Modified(_)
                    | WatchEvent::Deleted(_)
                    | WatchEvent::Bookmark(_))
            );
            if !goes_on {
                tracing::debug!("watch from a known version ended ({event:?}); listing again");
            }
            std::future::ready(goes_on)
        })
        .filter_map(|event| {
            std::future::ready(match event {
                Ok(WatchEvent::Added(k) | WatchEvent::Modified(k)) => Some(Ok(Event::Apply(k))),
                Ok(WatchEvent::Deleted(k)) => Some(Ok(Event::Delete(k))),
                _ => None,
            })
        });
    first.chain(from_version).chain(listed).boxed()
}
