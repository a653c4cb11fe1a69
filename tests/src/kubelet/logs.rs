//! Container logs, in memory: per pod (namespace and name, the pod's uid telling a new pod of the
//! same name from the old one) and container, the lines of the container's last two runs (the
//! current one and `previous`). The pod workers keep it in step with the status they report;
//! the kubelet API ([`super::server`]) reads it, and `follow` readers wake up on every change.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;

/// The log of one run of a container (`index` 0 is the first run, 1 the first restart…).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunLog {
    pub index: u32,
    /// The lines so far, each with when it was written.
    pub lines: Vec<(Timestamp, String)>,
    /// The run is over: no more lines will come.
    pub ended: bool,
}

/// Why there is no log to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogError {
    /// No such pod on this kubelet (or it was deleted).
    NotFound(String),
    /// The container has not run yet (or is unknown), or has no previous run.
    NotStarted(String),
}

impl std::fmt::Display for LogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogError::NotFound(m) | LogError::NotStarted(m) => f.write_str(m),
        }
    }
}

#[derive(Debug)]
struct PodLogs {
    uid: String,
    containers: BTreeMap<String, Vec<RunLog>>,
}

/// Every container log of the fake kubelet.
#[derive(Debug)]
pub struct LogStore {
    pods: Mutex<HashMap<(String, String), PodLogs>>,
    /// Bumped on every change.
    changed: watch::Sender<u64>,
}

impl Default for LogStore {
    fn default() -> Self {
        Self {
            pods: Mutex::new(HashMap::new()),
            changed: watch::channel(0).0,
        }
    }
}

impl LogStore {
    /// Sets the logs of pod `namespace/name` (uid `uid`) to `containers`: per container, its
    /// runs, oldest first; only the last two are kept. A pod of another uid under the same
    /// name is replaced.
    pub fn sync(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        containers: &BTreeMap<String, Vec<RunLog>>,
    ) {
        let trimmed: BTreeMap<String, Vec<RunLog>> = containers
            .iter()
            .filter(|(_, runs)| !runs.is_empty())
            .map(|(c, runs)| (c.clone(), runs[runs.len().saturating_sub(2)..].to_vec()))
            .collect();
        let mut pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        let key = (namespace.to_string(), name.to_string());
        if let Some(current) = pods.get(&key)
            && current.uid == uid
            && current.containers == trimmed
        {
            return;
        }
        pods.insert(
            key,
            PodLogs {
                uid: uid.to_string(),
                containers: trimmed,
            },
        );
        drop(pods);
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Drops the logs of the pod with this uid (deleted).
    pub fn forget(&self, uid: &str) {
        let mut pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        let before = pods.len();
        pods.retain(|_, p| p.uid != uid);
        let removed = pods.len() != before;
        drop(pods);
        if removed {
            self.changed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// The current run's log of a container (`previous`: the run before it).
    ///
    /// # Errors
    /// When the pod or container is unknown, or that run does not exist.
    pub fn read(
        &self,
        namespace: &str,
        name: &str,
        container: &str,
        previous: bool,
    ) -> Result<RunLog, LogError> {
        let pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        let not_started = || {
            LogError::NotStarted(format!(
                "container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"
            ))
        };
        let pod = pods
            .get(&(namespace.to_string(), name.to_string()))
            .ok_or_else(|| LogError::NotFound(format!("pod \"{namespace}/{name}\" not found")))?;
        let runs = pod.containers.get(container).ok_or_else(not_started)?;
        let run = if previous {
            runs.iter().rev().nth(1).ok_or_else(|| {
                LogError::NotStarted(format!(
                    "previous terminated container \"{container}\" in pod \"{name}\" not found"
                ))
            })?
        } else {
            runs.last().ok_or_else(not_started)?
        };
        Ok(run.clone())
    }

    /// The run `index` of a container, if the store still has it.
    pub fn read_run(
        &self,
        namespace: &str,
        name: &str,
        container: &str,
        index: u32,
    ) -> Option<RunLog> {
        let pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        pods.get(&(namespace.to_string(), name.to_string()))?
            .containers
            .get(container)?
            .iter()
            .find(|r| r.index == index)
            .cloned()
    }

    /// Wakes up on every change of the store.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// The options of a log request, as the kubelet API takes them in its query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<usize>,
    pub limit_bytes: Option<usize>,
    pub since_seconds: Option<i64>,
    pub since_time: Option<Timestamp>,
}

impl LogOptions {
    /// Parses `follow=true&tailLines=5…`; unknown or malformed parameters are ignored.
    pub fn from_query(query: &str) -> LogOptions {
        let mut o = LogOptions::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, "true"));
            let value = percent_decode(value);
            let flag = matches!(value.as_str(), "true" | "1" | "");
            match key {
                "follow" => o.follow = flag,
                "previous" => o.previous = flag,
                "timestamps" => o.timestamps = flag,
                "tailLines" => o.tail_lines = value.parse().ok(),
                "limitBytes" => o.limit_bytes = value.parse().ok().filter(|n| *n > 0),
                "sinceSeconds" => o.since_seconds = value.parse().ok().filter(|n| *n > 0),
                "sinceTime" => o.since_time = value.parse().ok(),
                _ => {}
            }
        }
        o
    }

    /// Lines written before this are left out (`sinceSeconds`/`sinceTime`).
    pub fn since(&self, now: Timestamp) -> Option<Timestamp> {
        let by_seconds = self
            .since_seconds
            .map(|s| now - SignedDuration::from_secs(s));
        match (by_seconds, self.since_time) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// The first lines to send of `run`: `sinceSeconds`/`sinceTime`, then `tailLines`.
    pub fn initial<'a>(&self, run: &'a RunLog, now: Timestamp) -> &'a [(Timestamp, String)] {
        let since = self.since(now);
        let from = since.map_or(0, |s| run.lines.partition_point(|(t, _)| *t < s));
        let lines = &run.lines[from..];
        match self.tail_lines {
            Some(n) => &lines[lines.len().saturating_sub(n)..],
            None => lines,
        }
    }

    /// One line as sent: `TIMESTAMP ` before it with `timestamps`, a newline after it.
    pub fn render(&self, at: Timestamp, line: &str) -> String {
        if self.timestamps {
            format!("{at} {line}\n")
        } else {
            format!("{line}\n")
        }
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (hex, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Cuts `text` so that at most `budget` bytes are sent in all; `None` once the budget is spent.
pub fn within_budget(text: String, budget: &mut Option<usize>) -> Option<String> {
    let Some(left) = budget.as_mut() else {
        return Some(text);
    };
    if *left == 0 {
        return None;
    }
    let mut text = text;
    if text.len() > *left {
        let mut cut = *left;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    *left -= text.len();
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn run(index: u32, lines: &[(i64, &str)], ended: bool) -> RunLog {
        RunLog {
            index,
            lines: lines.iter().map(|(s, l)| (t(*s), l.to_string())).collect(),
            ended,
        }
    }

    fn containers(runs: Vec<RunLog>) -> BTreeMap<String, Vec<RunLog>> {
        [("app".to_string(), runs)].into()
    }

    #[test]
    fn current_and_previous_runs_are_read_back() {
        let store = LogStore::default();
        store.sync(
            "ns",
            "pod",
            "uid-1",
            &containers(vec![
                run(0, &[(0, "zero")], true),
                run(1, &[(5, "one")], true),
                run(2, &[(10, "two")], false),
            ]),
        );
        assert_eq!(store.read("ns", "pod", "app", false).unwrap().index, 2);
        assert_eq!(store.read("ns", "pod", "app", true).unwrap().index, 1);
        assert_eq!(
            store.read_run("ns", "pod", "app", 0),
            None,
            "only two runs kept"
        );
        assert!(matches!(
            store.read("ns", "pod", "other", false),
            Err(LogError::NotStarted(_))
        ));
        assert!(matches!(
            store.read("ns", "nope", "app", false),
            Err(LogError::NotFound(_))
        ));
    }

    #[test]
    fn a_first_run_has_no_previous() {
        let store = LogStore::default();
        store.sync("ns", "pod", "uid-1", &containers(vec![run(0, &[], false)]));
        let e = store.read("ns", "pod", "app", true).unwrap_err();
        assert!(
            e.to_string().contains("previous terminated container"),
            "{e}"
        );
    }

    #[test]
    fn changes_wake_followers_and_a_deleted_pod_forgets_its_logs() {
        let store = LogStore::default();
        let mut rx = store.subscribe();
        rx.mark_unchanged();
        let logs = containers(vec![run(0, &[(0, "a")], false)]);
        store.sync("ns", "pod", "uid-1", &logs);
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        store.sync("ns", "pod", "uid-1", &logs);
        assert!(!rx.has_changed().unwrap(), "the same logs are no change");

        store.forget("uid-other");
        assert!(store.read("ns", "pod", "app", false).is_ok());
        store.forget("uid-1");
        assert!(rx.has_changed().unwrap());
        assert!(store.read("ns", "pod", "app", false).is_err());
    }

    #[test]
    fn query_options_parse_as_the_kubelet_api_takes_them() {
        let o = LogOptions::from_query(
            "follow=true&tailLines=5&previous=false&timestamps=1&limitBytes=100&sinceSeconds=30&x=y",
        );
        assert_eq!(
            o,
            LogOptions {
                follow: true,
                previous: false,
                timestamps: true,
                tail_lines: Some(5),
                limit_bytes: Some(100),
                since_seconds: Some(30),
                since_time: None,
            }
        );
        let o = LogOptions::from_query("sinceTime=2023-11-14T22%3A13%3A20Z");
        assert_eq!(o.since_time, Some(t(0)));
        assert_eq!(LogOptions::from_query(""), LogOptions::default());
    }

    #[test]
    fn tail_and_since_pick_the_initial_lines() {
        let r = run(0, &[(0, "a"), (10, "b"), (20, "c"), (30, "d")], false);
        let texts = |o: &LogOptions| -> Vec<String> {
            o.initial(&r, t(40))
                .iter()
                .map(|(_, l)| l.clone())
                .collect()
        };
        assert_eq!(texts(&LogOptions::default()), ["a", "b", "c", "d"]);
        let tail = LogOptions {
            tail_lines: Some(2),
            ..Default::default()
        };
        assert_eq!(texts(&tail), ["c", "d"]);
        let since = LogOptions {
            since_seconds: Some(25),
            tail_lines: Some(0),
            ..Default::default()
        };
        assert!(texts(&since).is_empty());
        let since = LogOptions {
            since_seconds: Some(25),
            ..Default::default()
        };
        assert_eq!(texts(&since), ["c", "d"]);
    }

    #[test]
    fn lines_render_with_optional_timestamps_within_the_byte_limit() {
        let o = LogOptions {
            timestamps: true,
            ..Default::default()
        };
        assert_eq!(o.render(t(0), "hi"), "2023-11-14T22:13:20Z hi\n");
        assert_eq!(LogOptions::default().render(t(0), "hi"), "hi\n");

        let mut budget = Some(5);
        assert_eq!(
            within_budget("abc\n".into(), &mut budget).as_deref(),
            Some("abc\n")
        );
        assert_eq!(
            within_budget("def\n".into(), &mut budget).as_deref(),
            Some("d")
        );
        assert_eq!(within_budget("x\n".into(), &mut budget), None);
        let mut unlimited = None;
        assert_eq!(
            within_budget("x".into(), &mut unlimited).as_deref(),
            Some("x")
        );
    }
}
