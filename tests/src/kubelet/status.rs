//! The pod status the fake kubelet reports: a pure function of the pod, what the image pulls came
//! to and the clock, so every state a test relies on is unit-tested here without a cluster. The
//! containers' logs come out of the same computation.
//!
//! What one run of a container does (its "program"), counted from the moment its image was
//! pulled (and the init containers before it are done):
//! - `sh -c SCRIPT` ([`super::script`]): the script's log lines at their offsets, for the
//!   script's duration, then its `exit` code; falling off the end is exit 0 in init containers
//!   and pods that run to completion, and runs forever in `Always` pods;
//! - no script: no log lines; `Always` app containers run forever, others exit 0 after
//!   [`Timing::ready_delay`] (init containers: at once);
//! - image marked [`super::image::CRASHLOOP_MARKER`]: the script's lines (or [`CRASH_LINE`]) and
//!   exit code 1, instantly.
//!
//! A run that ended is restarted by restartPolicy (`Always`: whatever the code; `OnFailure`, and
//! init containers of `Always` pods: non-zero codes; `Never`: never) [`Timing::crash_interval`]
//! after it ended, `waiting: CrashLoopBackOff` with `lastState.terminated` in between, the
//! restart count counting the ended runs; otherwise the container stays terminated (`Completed`
//! for 0, else `Error`). App containers are ready [`Timing::ready_delay`] after each start.
//!
//! A pull that failed: `waiting: ErrImagePull` for [`Timing::pull_backoff_after`], then
//! `waiting: ImagePullBackOff`. A pod still running past its `activeDeadlineSeconds` (from
//! `startTime`) is `Failed`, reason `DeadlineExceeded`, as it was at the deadline, with its
//! running containers terminated (exit code 137).

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use sha2::{Digest, Sha256};

use super::image::is_crashloop;
use super::logs::RunLog;
use super::script::container_timeline;

/// The delays of the simulated containers.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// From pull to ready (or to completion in pods that run to completion).
    pub ready_delay: Duration,
    /// Between two restarts of a crash-looping container.
    pub crash_interval: Duration,
    /// How long a failed pull shows `ErrImagePull` before `ImagePullBackOff`.
    pub pull_backoff_after: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            ready_delay: Duration::from_secs(1),
            crash_interval: Duration::from_secs(5),
            pull_backoff_after: Duration::from_secs(1),
        }
    }
}

/// Where the image of one container stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageState {
    /// Pulled at `at`; `image_id` as reported in `containerStatuses[].imageID`.
    /// `crashloop`: the image's manifest marks it as a build that crashes.
    Pulled {
        image_id: String,
        at: Timestamp,
        crashloop: bool,
    },
    /// Every pull since `since` has failed; `message` is why the last one did.
    Failed { message: String, since: Timestamp },
}

/// What the kubelet knows about a pod besides its spec.
#[derive(Clone, Debug)]
pub struct PodRuntime<'a> {
    /// When the kubelet took the pod on (`status.startTime`).
    pub started: Timestamp,
    /// Image state per container name, init containers included. A container missing here is
    /// reported as still pulling.
    pub images: &'a BTreeMap<String, ImageState>,
    pub pod_ip: &'a str,
    pub host_ip: &'a str,
}

/// The status to report, and when it will change by itself if nothing else happens.
#[derive(Clone, Debug, PartialEq)]
pub struct ComputedStatus {
    pub status: PodStatus,
    pub next_change: Option<Timestamp>,
    /// Per container (init containers included), the logs of its last two runs, oldest first;
    /// absent for containers that have not run.
    pub logs: BTreeMap<String, Vec<RunLog>>,
}

/// Reasons the kubelet and the tools reading pods agree on.
pub mod reason {
    pub const ERR_IMAGE_PULL: &str = "ErrImagePull";
    pub const IMAGE_PULL_BACK_OFF: &str = "ImagePullBackOff";
    pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";
    pub const CONTAINER_CREATING: &str = "ContainerCreating";
    pub const POD_INITIALIZING: &str = "PodInitializing";
    pub const COMPLETED: &str = "Completed";
    pub const ERROR: &str = "Error";
    /// The pod's `reason` once it ran past its `activeDeadlineSeconds`.
    pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
}

/// Computes the status of `pod` at `now`.
///
/// Condition transition times are carried over from `previous` (the status last reported) when
/// a condition keeps its value, as the kubelet does; otherwise they are `now`.
pub fn pod_status(
    pod: &Pod,
    runtime: &PodRuntime<'_>,
    timing: &Timing,
    previous: Option<&PodStatus>,
    now: Timestamp,
) -> ComputedStatus {
    let spec = pod.spec.as_ref();
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let restart_policy = spec
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    // Past its deadline, the pod is what it was at the deadline, stopped.
    let deadline = spec
        .and_then(|s| s.active_deadline_seconds)
        .map(|s| runtime.started + SignedDuration::from_secs(s.max(0)));
    let exceeded = deadline.filter(|d| now >= *d);
    let at = exceeded.unwrap_or(now);
    let mut next = NextChange::default();
    let mut logs = BTreeMap::new();

    // Init containers, in order: each completes as soon as it is pulled (or its script ends),
    // and the first one that cannot complete holds back the rest.
    let mut init_statuses = Vec::new();
    let mut init_done_at = Some(runtime.started);
    for container in spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default()
    {
        let Some(ready_since) = init_done_at else {
            init_statuses.push(waiting(container, reason::POD_INITIALIZING, None, 0));
            continue;
        };
        let c = ContainerRun {
            container,
            image: runtime.images.get(&container.name),
            uid,
            init: true,
            runs_to_completion: true,
            restart_policy,
            not_before: ready_since,
            run_for: Duration::ZERO,
        };
        let outcome = c.status(timing, at, &mut next);
        init_statuses.push(outcome.status);
        init_done_at = outcome.done_at;
        if !outcome.logs.is_empty() {
            logs.insert(container.name.clone(), outcome.logs);
        }
    }

    let app_containers = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    let runs_to_completion = restart_policy != "Always";
    let mut statuses: Vec<ContainerStatus> = app_containers
        .iter()
        .map(|container| match init_done_at {
            None => waiting(container, reason::POD_INITIALIZING, None, 0),
            Some(not_before) => {
                let c = ContainerRun {
                    container,
                    image: runtime.images.get(&container.name),
                    uid,
                    init: false,
                    runs_to_completion,
                    restart_policy,
                    not_before,
                    run_for: timing.ready_delay,
                };
                let outcome = c.status(timing, at, &mut next);
                if !outcome.logs.is_empty() {
                    logs.insert(container.name.clone(), outcome.logs);
                }
                outcome.status
            }
        })
        .collect();

    let mut phase = phase(init_done_at.is_some(), &statuses, restart_policy);
    let mut terminal = phase == "Succeeded" || phase == "Failed";
    let mut pod_reason = None;
    if let Some(deadline) = exceeded
        && !terminal
    {
        // As the kubelet: the pod fails and its containers are killed.
        for s in init_statuses.iter_mut().chain(statuses.iter_mut()) {
            killed(s, deadline);
        }
        for runs in logs.values_mut() {
            for run in runs {
                run.ended = true;
            }
        }
        phase = "Failed";
        terminal = true;
        pod_reason = Some(reason::DEADLINE_EXCEEDED);
    }
    if exceeded.is_some() {
        next = NextChange::default();
    } else if let Some(deadline) = deadline
        && !terminal
    {
        next.at(deadline);
    }
    let conditions = conditions(
        pod,
        init_done_at.is_some(),
        &init_statuses,
        &statuses,
        terminal,
    );
    let conditions = carry_transition_times(conditions, previous, now);

    let status = PodStatus {
        phase: Some(phase.to_string()),
        reason: pod_reason.map(str::to_string),
        message: pod_reason
            .map(|_| "Pod was active on the node longer than the specified deadline".to_string()),
        conditions: Some(conditions),
        host_ip: Some(runtime.host_ip.to_string()),
        pod_ip: Some(runtime.pod_ip.to_string()),
        pod_ips: Some(vec![PodIP {
            ip: runtime.pod_ip.to_string(),
        }]),
        start_time: Some(Time(runtime.started)),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        container_statuses: Some(statuses),
        ..Default::default()
    };
    ComputedStatus {
        status,
        next_change: next.0,
        logs,
    }
}

/// The earliest future moment at which some container changes state by itself.
#[derive(Default)]
struct NextChange(Option<Timestamp>);

impl NextChange {
    fn at(&mut self, t: Timestamp) {
        self.0 = Some(self.0.map_or(t, |current| current.min(t)));
    }
}

/// One container's simulated run.
struct ContainerRun<'a> {
    container: &'a Container,
    image: Option<&'a ImageState>,
    uid: &'a str,
    /// An init container: runs to completion, and counts as ready once completed.
    init: bool,
    runs_to_completion: bool,
    restart_policy: &'a str,
    /// The container cannot start before this (the end of the init containers).
    not_before: Timestamp,
    /// Without a script: how long it runs before ready (or completed, when it runs to
    /// completion).
    run_for: Duration,
}

/// The log line of each run of a crash-looping container without a script of its own.
pub const CRASH_LINE: &str = "fake crash: exit 1";

/// What one run of a container does; every run of it does the same.
struct Program {
    lines: Vec<(Duration, String)>,
    duration: Duration,
    /// `None`: runs until stopped.
    exit: Option<i32>,
}

/// Where the runs of a container stand.
#[derive(Clone, Copy)]
enum Runs {
    /// Run `k` is running.
    Running(u32),
    /// Run `k` ended and is not restarted: terminated for good.
    Done(u32),
    /// Run `k` ended; the next one starts after the back-off.
    BackOff(u32),
}

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

/// The output of [`ContainerRun::status`].
struct RunOutcome {
    status: ContainerStatus,
    /// When it completed successfully, if it did.
    done_at: Option<Timestamp>,
    /// Its last two runs' logs.
    logs: Vec<RunLog>,
}

impl ContainerRun<'_> {
    fn program(&self, crashes: bool) -> Program {
        let script = container_timeline(self.container);
        if crashes {
            // A crash is instantaneous: the script's lines, then exit code 1, whatever it says.
            let lines = match script {
                Some(t) if !t.lines.is_empty() => t
                    .lines
                    .into_iter()
                    .map(|(_, l)| (Duration::ZERO, l))
                    .collect(),
                _ => vec![(Duration::ZERO, CRASH_LINE.to_string())],
            };
            return Program {
                lines,
                duration: Duration::ZERO,
                exit: Some(1),
            };
        }
        match script {
            Some(t) => Program {
                exit: t.exit.or(self.runs_to_completion.then_some(0)),
                lines: t.lines,
                duration: t.duration,
            },
            None => Program {
                lines: Vec::new(),
                duration: self.run_for,
                exit: self.runs_to_completion.then_some(0),
            },
        }
    }

    /// Whether a run that exited with `code` is restarted.
    fn restarts(&self, code: i32) -> bool {
        // Init containers of `Always` pods are restarted on failure only.
        match (self.init, self.restart_policy) {
            (_, "Never") => false,
            (true, _) | (_, "OnFailure") => code != 0,
            _ => true,
        }
    }

    fn status(&self, timing: &Timing, now: Timestamp, next: &mut NextChange) -> RunOutcome {
        let no_run = |status| RunOutcome {
            status,
            done_at: None,
            logs: Vec::new(),
        };
        let name = &self.container.name;
        let (image_id, pulled_at, crashes) = match self.image {
            None => {
                return no_run(waiting(self.container, reason::CONTAINER_CREATING, None, 0));
            }
            Some(ImageState::Failed { message, since }) => {
                let backoff_at = *since + timing.pull_backoff_after;
                let reason = if now < backoff_at {
                    next.at(backoff_at);
                    reason::ERR_IMAGE_PULL
                } else {
                    reason::IMAGE_PULL_BACK_OFF
                };
                let image = image_of(self.container);
                let message = if reason == reason::IMAGE_PULL_BACK_OFF {
                    format!("Back-off pulling image {image:?}: {message}")
                } else {
                    format!("failed to pull image {image:?}: {message}")
                };
                return no_run(waiting(self.container, reason, Some(message), 0));
            }
            Some(ImageState::Pulled {
                image_id,
                at,
                crashloop,
            }) => (image_id.as_str(), *at, *crashloop),
        };
        let start = pulled_at.max(self.not_before);
        let mut status = ContainerStatus {
            image_id: image_id.to_string(),
            started: Some(false),
            ..waiting(self.container, reason::CONTAINER_CREATING, None, 0)
        };
        if now < start {
            // Pulled, but the init containers are not done yet.
            next.at(start);
            return no_run(status);
        }

        let crashes = crashes || is_crashloop(&image_of(self.container));
        let program = self.program(crashes);
        let duration = signed(program.duration);
        let elapsed = now.duration_since(start);
        let cycle = (duration + signed(timing.crash_interval)).max(SignedDuration::from_millis(1));
        let run_start = |k: u32| start + cycle * i32::try_from(k).unwrap_or(i32::MAX);
        let runs = match program.exit {
            None => Runs::Running(0),
            Some(code) if !self.restarts(code) => {
                if elapsed < duration {
                    next.at(start + duration);
                    Runs::Running(0)
                } else {
                    Runs::Done(0)
                }
            }
            Some(_) => {
                let k = u32::try_from(elapsed.as_nanos() / cycle.as_nanos())
                    .unwrap_or(u32::MAX - 1)
                    .min(i32::MAX as u32 - 1);
                if now < run_start(k) + duration {
                    next.at(run_start(k) + duration);
                    Runs::Running(k)
                } else {
                    next.at(run_start(k + 1));
                    Runs::BackOff(k)
                }
            }
        };
        let exit_code = program.exit.unwrap_or(0);
        let terminated = |k: u32| ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code,
                reason: Some(
                    if exit_code == 0 {
                        reason::COMPLETED
                    } else {
                        reason::ERROR
                    }
                    .to_string(),
                ),
                started_at: Some(Time(run_start(k))),
                finished_at: Some(Time(run_start(k) + duration)),
                container_id: Some(container_id(self.uid, name, restart_number(k))),
                ..Default::default()
            }),
            ..Default::default()
        };
        let run_log = |k: u32, ended: bool| RunLog {
            index: k,
            lines: program
                .lines
                .iter()
                .map(|(offset, line)| (run_start(k) + signed(*offset), line.clone()))
                .filter(|(at, _)| *at <= now)
                .collect(),
            ended,
        };
        let previous_runs = |k: u32| -> Vec<RunLog> {
            k.checked_sub(1)
                .map(|p| run_log(p, true))
                .into_iter()
                .collect()
        };

        match runs {
            Runs::Running(k) => {
                let rs = run_start(k);
                if let Some((offset, _)) = program
                    .lines
                    .iter()
                    .find(|(offset, _)| rs + signed(*offset) > now)
                {
                    next.at(rs + signed(*offset));
                }
                let ready_at = rs + timing.ready_delay;
                if !self.init && now < ready_at {
                    next.at(ready_at);
                }
                status.container_id = Some(container_id(self.uid, name, restart_number(k)));
                status.started = Some(true);
                status.ready = !self.init && now >= ready_at;
                status.restart_count = restart_number(k);
                status.last_state = k.checked_sub(1).map(terminated);
                status.state = Some(ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(Time(rs)),
                    }),
                    ..Default::default()
                });
                let mut logs = previous_runs(k);
                logs.push(run_log(k, false));
                RunOutcome {
                    status,
                    done_at: None,
                    logs,
                }
            }
            Runs::Done(k) => {
                status.container_id = Some(container_id(self.uid, name, restart_number(k)));
                // The kubelet reports completed init containers as ready, finished app
                // containers not.
                status.ready = self.init && exit_code == 0;
                status.restart_count = restart_number(k);
                status.state = Some(terminated(k));
                RunOutcome {
                    status,
                    done_at: (exit_code == 0).then(|| run_start(k) + duration),
                    logs: vec![run_log(k, true)],
                }
            }
            Runs::BackOff(k) => {
                status.restart_count = restart_number(k + 1);
                status.container_id = Some(container_id(self.uid, name, restart_number(k)));
                status.last_state = Some(terminated(k));
                status.state = Some(ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some(reason::CRASH_LOOP_BACK_OFF.to_string()),
                        message: Some(format!(
                            "back-off {}s restarting failed container={name} pod={}",
                            timing.crash_interval.as_secs(),
                            self.uid
                        )),
                    }),
                    ..Default::default()
                });
                let mut logs = previous_runs(k);
                logs.push(run_log(k, true));
                RunOutcome {
                    status,
                    done_at: None,
                    logs,
                }
            }
        }
    }
}

fn restart_number(k: u32) -> i32 {
    i32::try_from(k).unwrap_or(i32::MAX)
}

/// A container the kubelet stopped (the pod's deadline passed): terminated as by SIGKILL.
fn killed(status: &mut ContainerStatus, at: Timestamp) {
    let Some(running) = status.state.as_ref().and_then(|s| s.running.as_ref()) else {
        return;
    };
    status.state = Some(ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: 137,
            reason: Some(reason::ERROR.to_string()),
            started_at: running.started_at.clone(),
            finished_at: Some(Time(at)),
            container_id: status.container_id.clone(),
            ..Default::default()
        }),
        ..Default::default()
    });
    status.ready = false;
    status.started = Some(false);
}

fn image_of(container: &Container) -> String {
    container.image.clone().unwrap_or_default()
}

/// A container that has not started (yet).
fn waiting(
    container: &Container,
    reason: &str,
    message: Option<String>,
    restart_count: i32,
) -> ContainerStatus {
    ContainerStatus {
        name: container.name.clone(),
        image: image_of(container),
        image_id: String::new(),
        ready: false,
        restart_count,
        started: Some(false),
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.to_string()),
                message,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A made-up runtime container ID, stable for the same container and restart.
fn container_id(uid: &str, name: &str, restart: i32) -> String {
    let digest = Sha256::digest(format!("{uid}/{name}/{restart}").as_bytes());
    format!("containerd://{}", hex::encode(digest))
}

/// The kubelet's `getPhase`: a container waiting without ever having run keeps the pod Pending;
/// a crash-looping one (waiting, with a last state) counts as stopped.
fn phase(initialized: bool, statuses: &[ContainerStatus], restart_policy: &str) -> &'static str {
    if !initialized {
        return "Pending";
    }
    let (mut waiting, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in statuses {
        let state = s.state.as_ref();
        if state.is_some_and(|st| st.running.is_some()) {
            running += 1;
        } else if let Some(t) = state.and_then(|st| st.terminated.as_ref()) {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if s
            .last_state
            .as_ref()
            .is_some_and(|l| l.terminated.is_some())
        {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    match () {
        _ if waiting > 0 => "Pending",
        _ if running > 0 => "Running",
        _ if stopped == 0 => "Pending",
        _ if restart_policy == "Always" => "Running",
        _ if stopped == succeeded => "Succeeded",
        _ if restart_policy == "Never" => "Failed",
        _ => "Running",
    }
}

fn conditions(
    pod: &Pod,
    initialized: bool,
    init_statuses: &[ContainerStatus],
    statuses: &[ContainerStatus],
    terminal: bool,
) -> Vec<PodCondition> {
    let condition =
        |type_: &str, ok: bool, reason: Option<&str>, message: Option<String>| PodCondition {
            type_: type_.to_string(),
            status: if ok { "True" } else { "False" }.to_string(),
            reason: (!ok).then(|| reason.unwrap_or_default().to_string()),
            message: if ok { None } else { message },
            ..Default::default()
        };
    let names = |statuses: &[ContainerStatus], pick: fn(&ContainerStatus) -> bool| {
        let names: Vec<&str> = statuses
            .iter()
            .filter(|s| pick(s))
            .map(|s| s.name.as_str())
            .collect();
        format!("[{}]", names.join(" "))
    };

    let initialized_condition = if terminal {
        PodCondition {
            reason: Some("PodCompleted".to_string()),
            ..condition("Initialized", true, None, None)
        }
    } else {
        condition(
            "Initialized",
            initialized,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: {}",
                names(init_statuses, |s| !completed(s))
            )),
        )
    };

    let all_ready = statuses.iter().all(|s| s.ready);
    let unready = Some(format!(
        "containers with unready status: {}",
        names(statuses, |s| !s.ready)
    ));
    let (containers_ready, ready) = if terminal {
        (
            condition("ContainersReady", false, Some("PodCompleted"), None),
            condition("Ready", false, Some("PodCompleted"), None),
        )
    } else {
        // Readiness gates are set by someone else on the pod; Ready also waits for them.
        let current = pod.status.as_ref().and_then(|s| s.conditions.as_deref());
        let gates_open = pod
            .spec
            .as_ref()
            .and_then(|s| s.readiness_gates.as_deref())
            .unwrap_or_default()
            .iter()
            .all(|gate| {
                current
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == gate.condition_type && c.status == "True")
            });
        let ready = if !all_ready {
            condition("Ready", false, Some("ContainersNotReady"), unready.clone())
        } else {
            condition(
                "Ready",
                gates_open,
                Some("ReadinessGatesNotReady"),
                Some("the status of pod readiness gate is not \"True\"".to_string()),
            )
        };
        (
            condition(
                "ContainersReady",
                all_ready,
                Some("ContainersNotReady"),
                unready,
            ),
            ready,
        )
    };

    vec![
        condition("PodScheduled", true, None, None),
        initialized_condition,
        containers_ready,
        ready,
    ]
}

/// Whether a container ran to completion successfully.
fn completed(status: &ContainerStatus) -> bool {
    let terminated = status.state.as_ref().and_then(|st| st.terminated.as_ref());
    terminated.is_some_and(|t| t.exit_code == 0)
}

/// Keeps `lastTransitionTime` of conditions whose status did not change.
fn carry_transition_times(
    conditions: Vec<PodCondition>,
    previous: Option<&PodStatus>,
    now: Timestamp,
) -> Vec<PodCondition> {
    let previous = previous
        .and_then(|p| p.conditions.as_deref())
        .unwrap_or_default();
    conditions
        .into_iter()
        .map(|mut c| {
            let before = previous.iter().find(|p| p.type_ == c.type_);
            c.last_transition_time = match before {
                Some(p) if p.status == c.status && p.last_transition_time.is_some() => {
                    p.last_transition_time.clone()
                }
                _ => Some(Time(now)),
            };
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    const IMAGE_ID: &str = "docker-pullable://127.0.0.1:5000/web@sha256:aaaa";

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn pod(containers: &[(&str, &str)], restart_policy: &str) -> Pod {
        Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("web-1".into()),
                uid: Some("uid-1".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: containers
                    .iter()
                    .map(|(name, image)| Container {
                        name: name.to_string(),
                        image: Some(image.to_string()),
                        ..Default::default()
                    })
                    .collect(),
                restart_policy: Some(restart_policy.into()),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn pulled(at: i64) -> ImageState {
        ImageState::Pulled {
            image_id: IMAGE_ID.into(),
            at: t(at),
            crashloop: false,
        }
    }

    fn failed(since: i64) -> ImageState {
        ImageState::Failed {
            message: "manifest unknown".into(),
            since: t(since),
        }
    }

    fn compute(pod: &Pod, images: &[(&str, ImageState)], now: i64) -> ComputedStatus {
        let images: BTreeMap<String, ImageState> = images
            .iter()
            .map(|(n, s)| (n.to_string(), s.clone()))
            .collect();
        let runtime = PodRuntime {
            started: t(0),
            images: &images,
            pod_ip: "10.244.0.5",
            host_ip: "127.0.1.1",
        };
        pod_status(pod, &runtime, &Timing::default(), None, t(now))
    }

    fn condition(status: &PodStatus, type_: &str) -> (String, Option<String>) {
        let c = status
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap_or_else(|| panic!("no {type_} condition"));
        (c.status.clone(), c.reason.clone())
    }

    fn waiting_reason(status: &ContainerStatus) -> Option<&str> {
        status.state.as_ref()?.waiting.as_ref()?.reason.as_deref()
    }

    #[test]
    fn pulled_container_runs_then_becomes_ready_after_the_delay() {
        let pod = pod(&[("web", "127.0.0.1:5000/web:v1")], "Always");

        let early = compute(&pod, &[("web", pulled(0))], 0);
        let s = &early.status;
        assert_eq!(s.phase.as_deref(), Some("Running"));
        let c = &s.container_statuses.as_ref().unwrap()[0];
        assert!(c.state.as_ref().unwrap().running.is_some());
        assert!(!c.ready);
        assert_eq!(c.image_id, IMAGE_ID);
        assert_eq!(c.image, "127.0.0.1:5000/web:v1", "image as the spec has it");
        assert_eq!(condition(s, "Ready").0, "False");
        assert_eq!(condition(s, "ContainersReady").0, "False");
        assert_eq!(condition(s, "Initialized").0, "True");
        assert_eq!(condition(s, "PodScheduled").0, "True");
        assert_eq!(early.next_change, Some(t(1)), "wakes up when ready");

        let later = compute(&pod, &[("web", pulled(0))], 1);
        let s = &later.status;
        assert!(s.container_statuses.as_ref().unwrap()[0].ready);
        assert_eq!(condition(s, "Ready").0, "True");
        assert_eq!(condition(s, "ContainersReady").0, "True");
        assert_eq!(later.next_change, None, "nothing changes any more");
        assert_eq!(s.pod_ip.as_deref(), Some("10.244.0.5"));
        assert_eq!(s.start_time, Some(Time(t(0))));
    }

    #[test]
    fn failed_pull_is_err_image_pull_then_image_pull_back_off() {
        let pod = pod(&[("web", "127.0.0.1:5000/web:missing")], "Always");

        let first = compute(&pod, &[("web", failed(0))], 0);
        let c = &first.status.container_statuses.as_ref().unwrap()[0];
        assert_eq!(waiting_reason(c), Some(reason::ERR_IMAGE_PULL));
        assert_eq!(first.status.phase.as_deref(), Some("Pending"));
        assert_eq!(first.next_change, Some(t(1)));

        let later = compute(&pod, &[("web", failed(0))], 30);
        let c = &later.status.container_statuses.as_ref().unwrap()[0];
        assert_eq!(waiting_reason(c), Some(reason::IMAGE_PULL_BACK_OFF));
        let message = c
            .state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .message
            .as_deref();
        assert!(
            message.unwrap().contains("127.0.0.1:5000/web:missing"),
            "{message:?}"
        );
        assert!(c.image_id.is_empty());
        assert_eq!(later.status.phase.as_deref(), Some("Pending"));
        assert_eq!(
            condition(&later.status, "Ready"),
            ("False".into(), Some("ContainersNotReady".into()))
        );
    }

    #[test]
    fn crashloop_image_restarts_forever_and_is_never_ready() {
        let pod = pod(&[("web", "127.0.0.1:5000/web:crashloop")], "Always");
        let restarts = |now| {
            let s = compute(&pod, &[("web", pulled(0))], now);
            let c = s.status.container_statuses.clone().unwrap().remove(0);
            assert_eq!(waiting_reason(&c), Some(reason::CRASH_LOOP_BACK_OFF));
            assert!(!c.ready);
            let last = c.last_state.unwrap().terminated.unwrap();
            assert_eq!(last.exit_code, 1);
            assert_eq!(
                s.status.phase.as_deref(),
                Some("Running"),
                "a crash-looping pod is Running"
            );
            assert_eq!(condition(&s.status, "Ready").0, "False");
            (c.restart_count, s.next_change)
        };
        assert_eq!(restarts(0), (1, Some(t(5))));
        assert_eq!(restarts(4), (1, Some(t(5))));
        assert_eq!(restarts(5), (2, Some(t(10))));
        assert_eq!(restarts(61), (13, Some(t(65))));
    }

    #[test]
    fn crashloop_with_restart_policy_never_fails_the_pod() {
        let pod = pod(&[("job", "127.0.0.1:5000/job:crashloop")], "Never");
        let s = compute(&pod, &[("job", pulled(0))], 3).status;
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        let c = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(
            c.state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .exit_code,
            1
        );
        assert_eq!(c.restart_count, 0);
    }

    #[test]
    fn job_pods_succeed_after_the_delay() {
        let pod = pod(&[("job", "127.0.0.1:5000/job:v1")], "OnFailure");
        let running = compute(&pod, &[("job", pulled(0))], 0);
        assert_eq!(running.status.phase.as_deref(), Some("Running"));
        assert_eq!(running.next_change, Some(t(1)));

        let done = compute(&pod, &[("job", pulled(0))], 2);
        assert_eq!(done.status.phase.as_deref(), Some("Succeeded"));
        let c = &done.status.container_statuses.as_ref().unwrap()[0];
        let terminated = c.state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(terminated.exit_code, 0);
        assert_eq!(terminated.reason.as_deref(), Some("Completed"));
        assert_eq!(
            condition(&done.status, "Ready"),
            ("False".into(), Some("PodCompleted".into()))
        );
        assert_eq!(done.next_change, None);
    }

    #[test]
    fn job_pod_with_missing_image_stays_pending() {
        let pod = pod(&[("job", "127.0.0.1:5000/job:missing")], "Never");
        let s = compute(&pod, &[("job", failed(0))], 10).status;
        assert_eq!(s.phase.as_deref(), Some("Pending"));
    }

    #[test]
    fn one_unready_container_keeps_the_pod_unready_and_is_named() {
        let pod = pod(
            &[
                ("web", "127.0.0.1:5000/web:v1"),
                ("sidecar", "127.0.0.1:5000/side:gone"),
            ],
            "Always",
        );
        let s = compute(&pod, &[("web", pulled(0)), ("sidecar", failed(0))], 10).status;
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let ready = s
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [sidecar]")
        );
        let statuses = s.container_statuses.as_ref().unwrap();
        assert!(statuses[0].ready);
        assert!(!statuses[1].ready);
    }

    #[test]
    fn containers_not_pulled_yet_are_creating() {
        let pod = pod(&[("web", "127.0.0.1:5000/web:v1")], "Always");
        let s = compute(&pod, &[], 0).status;
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let c = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(waiting_reason(c), Some(reason::CONTAINER_CREATING));
    }

    #[test]
    fn a_failing_init_container_holds_back_the_app_containers() {
        let mut pod = pod(&[("web", "127.0.0.1:5000/web:v1")], "Always");
        pod.spec.as_mut().unwrap().init_containers = Some(vec![Container {
            name: "migrate".into(),
            image: Some("127.0.0.1:5000/migrate:gone".into()),
            ..Default::default()
        }]);

        let blocked = compute(&pod, &[("migrate", failed(0)), ("web", pulled(0))], 10).status;
        assert_eq!(blocked.phase.as_deref(), Some("Pending"));
        assert_eq!(condition(&blocked, "Initialized").0, "False");
        let app = &blocked.container_statuses.as_ref().unwrap()[0];
        assert_eq!(waiting_reason(app), Some(reason::POD_INITIALIZING));
        let init = &blocked.init_container_statuses.as_ref().unwrap()[0];
        assert_eq!(waiting_reason(init), Some(reason::IMAGE_PULL_BACK_OFF));

        // Pulled at 10 after a retry: the init container completes, the app starts then.
        let fine = compute(&pod, &[("migrate", pulled(10)), ("web", pulled(0))], 12).status;
        assert_eq!(condition(&fine, "Initialized").0, "True");
        let app = &fine.container_statuses.as_ref().unwrap()[0];
        let started = app
            .state
            .as_ref()
            .unwrap()
            .running
            .as_ref()
            .unwrap()
            .started_at
            .clone();
        assert_eq!(started, Some(Time(t(10))));
        assert!(app.ready);
        assert!(fine.init_container_statuses.as_ref().unwrap()[0].ready);
    }

    #[test]
    fn readiness_gates_keep_ready_false_until_their_condition_is_true() {
        let mut pod = pod(&[("web", "127.0.0.1:5000/web:v1")], "Always");
        pod.spec.as_mut().unwrap().readiness_gates =
            Some(vec![k8s_openapi::api::core::v1::PodReadinessGate {
                condition_type: "example.com/lb".into(),
            }]);
        let s = compute(&pod, &[("web", pulled(0))], 5).status;
        assert_eq!(condition(&s, "ContainersReady").0, "True");
        assert_eq!(
            condition(&s, "Ready"),
            ("False".into(), Some("ReadinessGatesNotReady".into()))
        );

        pod.status = Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "example.com/lb".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let s = compute(&pod, &[("web", pulled(0))], 5).status;
        assert_eq!(condition(&s, "Ready").0, "True");
    }

    #[test]
    fn transition_times_only_move_when_a_condition_flips() {
        let pod = pod(&[("web", "127.0.0.1:5000/web:v1")], "Always");
        let images: BTreeMap<String, ImageState> = [("web".to_string(), pulled(0))].into();
        let runtime = PodRuntime {
            started: t(0),
            images: &images,
            pod_ip: "10.244.0.5",
            host_ip: "127.0.1.1",
        };
        let timing = Timing::default();
        let at0 = pod_status(&pod, &runtime, &timing, None, t(0)).status;
        let at3 = pod_status(&pod, &runtime, &timing, Some(&at0), t(3)).status;
        let time = |s: &PodStatus, ty: &str| {
            s.conditions
                .as_ref()
                .unwrap()
                .iter()
                .find(|c| c.type_ == ty)
                .unwrap()
                .last_transition_time
                .clone()
        };
        assert_eq!(time(&at3, "PodScheduled"), Some(Time(t(0))), "unchanged");
        assert_eq!(time(&at3, "Ready"), Some(Time(t(3))), "flipped to True");
        let at9 = pod_status(&pod, &runtime, &timing, Some(&at3), t(9)).status;
        assert_eq!(at9, at3, "a settled pod reports the same status");
    }

    fn scripted(script: &str, restart_policy: &str) -> Pod {
        let mut pod = pod(&[("job", "busybox:1.36")], restart_policy);
        let c = &mut pod.spec.as_mut().unwrap().containers[0];
        c.command = Some(vec!["sh".into(), "-c".into(), script.into()]);
        pod
    }

    fn state(s: &ComputedStatus) -> ContainerState {
        s.status.container_statuses.as_ref().unwrap()[0]
            .state
            .clone()
            .unwrap()
    }

    fn lines(s: &ComputedStatus) -> Vec<(u32, Vec<String>, bool)> {
        s.logs["job"]
            .iter()
            .map(|r| {
                (
                    r.index,
                    r.lines.iter().map(|(_, l)| l.clone()).collect(),
                    r.ended,
                )
            })
            .collect()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_scripted_job_logs_as_it_runs_then_succeeds() {
        let pod = scripted("echo migrating; sleep 1; echo done", "Never");
        let running = compute(&pod, &[("job", pulled(0))], 0);
        assert_eq!(running.status.phase.as_deref(), Some("Running"));
        assert!(state(&running).running.is_some());
        assert_eq!(lines(&running), vec![(0, strings(&["migrating"]), false)]);
        assert_eq!(
            running.next_change,
            Some(t(1)),
            "wakes up for the next line"
        );

        let done = compute(&pod, &[("job", pulled(0))], 1);
        assert_eq!(done.status.phase.as_deref(), Some("Succeeded"));
        let terminated = state(&done).terminated.unwrap();
        assert_eq!(terminated.exit_code, 0);
        assert_eq!(terminated.reason.as_deref(), Some(reason::COMPLETED));
        assert_eq!(terminated.finished_at, Some(Time(t(1))));
        assert_eq!(
            lines(&done),
            vec![(0, strings(&["migrating", "done"]), true)]
        );
        assert_eq!(done.logs["job"][0].lines[1].0, t(1), "written when it ran");
        assert_eq!(done.next_change, None);
    }

    #[test]
    fn a_scripted_job_that_exits_non_zero_fails_with_its_exit_code() {
        let pod = scripted("echo boom; exit 3; echo never", "Never");
        let s = compute(&pod, &[("job", pulled(0))], 0);
        assert_eq!(s.status.phase.as_deref(), Some("Failed"));
        let terminated = state(&s).terminated.unwrap();
        assert_eq!(terminated.exit_code, 3);
        assert_eq!(terminated.reason.as_deref(), Some(reason::ERROR));
        assert_eq!(lines(&s), vec![(0, strings(&["boom"]), true)]);
        assert_eq!(
            s.status.container_statuses.as_ref().unwrap()[0].restart_count,
            0
        );
    }

    #[test]
    fn on_failure_restarts_a_failing_script_after_the_crash_interval() {
        // Runs 2 s, then 5 s of back-off: run k starts at 7k.
        let pod = scripted("echo try; sleep 2; exit 1", "OnFailure");
        let at = |now| compute(&pod, &[("job", pulled(0))], now);
        let status = |s: &ComputedStatus| s.status.container_statuses.clone().unwrap().remove(0);

        let first = at(1);
        assert!(state(&first).running.is_some());
        assert_eq!(status(&first).restart_count, 0);

        let backoff = at(3);
        assert_eq!(
            backoff.status.phase.as_deref(),
            Some("Running"),
            "not failed"
        );
        let c = status(&backoff);
        assert_eq!(waiting_reason(&c), Some(reason::CRASH_LOOP_BACK_OFF));
        assert_eq!(c.restart_count, 1);
        assert_eq!(c.last_state.unwrap().terminated.unwrap().exit_code, 1);
        assert_eq!(backoff.next_change, Some(t(7)));

        let second = at(8);
        let c = status(&second);
        assert!(c.state.unwrap().running.is_some());
        assert_eq!(c.restart_count, 1);
        assert_eq!(
            c.last_state.unwrap().terminated.unwrap().finished_at,
            Some(Time(t(2)))
        );
        assert_eq!(
            lines(&second),
            vec![(0, strings(&["try"]), true), (1, strings(&["try"]), false)]
        );
    }

    #[test]
    fn on_failure_does_not_restart_a_script_that_succeeds() {
        let pod = scripted("sleep 2", "OnFailure");
        let s = compute(&pod, &[("job", pulled(0))], 5);
        assert_eq!(s.status.phase.as_deref(), Some("Succeeded"));
    }

    #[test]
    fn a_pod_past_its_active_deadline_fails_with_deadline_exceeded() {
        let mut pod = scripted("echo waiting; sleep 30", "Never");
        pod.spec.as_mut().unwrap().active_deadline_seconds = Some(2);
        let before = compute(&pod, &[("job", pulled(0))], 1);
        assert_eq!(before.status.phase.as_deref(), Some("Running"));
        assert_eq!(before.next_change, Some(t(2)), "wakes up at the deadline");

        let after = compute(&pod, &[("job", pulled(0))], 3);
        let s = &after.status;
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        assert_eq!(s.reason.as_deref(), Some(reason::DEADLINE_EXCEEDED));
        assert!(s.message.as_deref().unwrap().contains("deadline"));
        let terminated = state(&after).terminated.unwrap();
        assert_eq!(terminated.exit_code, 137);
        assert_eq!(terminated.finished_at, Some(Time(t(2))));
        assert_eq!(lines(&after), vec![(0, strings(&["waiting"]), true)]);
        assert_eq!(after.next_change, None);
        assert_eq!(condition(s, "Ready").1.as_deref(), Some("PodCompleted"));
    }

    #[test]
    fn a_pod_done_before_its_deadline_keeps_its_phase() {
        let mut pod = scripted("sleep 1", "Never");
        pod.spec.as_mut().unwrap().active_deadline_seconds = Some(5);
        let s = compute(&pod, &[("job", pulled(0))], 10).status;
        assert_eq!(s.phase.as_deref(), Some("Succeeded"));
        assert_eq!(s.reason, None);
    }

    #[test]
    fn crash_looping_containers_log_every_run() {
        let pod = pod(&[("job", "127.0.0.1:5000/web:crashloop")], "Always");
        let s = compute(&pod, &[("job", pulled(0))], 6);
        assert_eq!(
            lines(&s),
            vec![
                (0, strings(&[CRASH_LINE]), true),
                (1, strings(&[CRASH_LINE]), true)
            ]
        );

        // With a script of its own, its lines, every run.
        let mut pod = scripted(
            "echo connecting to db; sleep 3; echo db unreachable",
            "Always",
        );
        pod.spec.as_mut().unwrap().containers[0].image = Some("app:crashloop".into());
        let s = compute(&pod, &[("job", pulled(0))], 0);
        assert_eq!(
            lines(&s),
            vec![(0, strings(&["connecting to db", "db unreachable"]), true)]
        );
    }

    #[test]
    fn always_pods_run_their_script_and_crash_loop_on_exit() {
        let pod = scripted("echo serving", "Always");
        let s = compute(&pod, &[("job", pulled(0))], 100);
        assert!(state(&s).running.is_some(), "falls off its end: runs on");
        assert!(s.status.container_statuses.as_ref().unwrap()[0].ready);
        assert_eq!(lines(&s), vec![(0, strings(&["serving"]), false)]);

        let pod = scripted("echo bad config; exit 2", "Always");
        let s = compute(&pod, &[("job", pulled(0))], 6);
        let c = &s.status.container_statuses.as_ref().unwrap()[0];
        assert_eq!(waiting_reason(c), Some(reason::CRASH_LOOP_BACK_OFF));
        assert_eq!(c.restart_count, 2);
        let last = c.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(last.exit_code, 2);
    }
}
