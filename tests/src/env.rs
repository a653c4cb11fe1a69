//! The test environment: one control plane, registry and fake kubelet per test process, started
//! by `testenv/testenv.sh supervise` and owned through its stdin pipe.

use std::fmt;
use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::{Namespace as CoreNamespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, ResourceExt as _};

use crate::wait::wait_for;

/// The script that starts and stops the environment.
pub const TESTENV_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testenv/testenv.sh");
/// Contexts of the environment's kubeconfig. `qa` and `production` are the admin on the same
/// cluster, standing in for one cluster per environment.
pub const CONTEXTS: [&str; 7] = [
    "admin",
    "developer",
    "approver",
    "approver2",
    "platform-admin",
    "qa",
    "production",
];
/// Set to keep the environment's directory (logs, etcd, registry) after the test process ends.
pub const KEEP_ENV_VAR: &str = "KUBECTL_RELEASE_KEEP_TESTENV";
/// The upper bound for starting the environment; the script bounds each component more tightly.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(300);
/// What the harness labels the objects it creates with.
pub const FIXTURE_LABEL: &str = "kubectl-release.io/test-fixture";

/// A running control plane, registry and fake kubelet.
pub struct TestEnv {
    dir: PathBuf,
    kubeconfig: PathBuf,
    registry: String,
    apiserver: String,
    started_in: Duration,
    /// `testenv.sh supervise`, with the write end of its stdin. Never closed by us: the pipe
    /// closes when this process exits, however it exits, and that stops the environment.
    _supervisor: Mutex<Child>,
}

impl fmt::Debug for TestEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestEnv")
            .field("dir", &self.dir)
            .field("registry", &self.registry)
            .field("apiserver", &self.apiserver)
            .finish_non_exhaustive()
    }
}

impl TestEnv {
    /// The environment of this test process, started by the first caller (the others wait for
    /// it). Panics with the reason, including the tail of the failing component's log, when it
    /// cannot start: an end-to-end test never skips silently.
    pub fn shared() -> &'static TestEnv {
        static ENV: OnceLock<Result<TestEnv, String>> = OnceLock::new();
        let env = ENV.get_or_init(|| {
            let dir = tempfile::Builder::new()
                .prefix("kubectl-release-testenv-")
                .tempdir()
                .map_err(|e| format!("cannot create the test environment's directory: {e}"))?
                .keep();
            let remove_dir = std::env::var_os(KEEP_ENV_VAR).is_none();
            let env = TestEnv::start(&dir, remove_dir).map_err(|e| format!("{e:#}"))?;
            // Shown with the output of a failing test: where the component logs are.
            eprintln!(
                "test environment ready in {:.1?}: {} (logs in {}/logs{})",
                env.started_in,
                env.apiserver,
                dir.display(),
                if remove_dir {
                    format!(", removed at exit unless {KEEP_ENV_VAR}=1")
                } else {
                    String::new()
                }
            );
            Ok(env)
        });
        match env {
            Ok(env) => env,
            // Every test of the process fails with the same reason; only the first one waited.
            Err(e) => panic!("the test environment did not start: {e}"),
        }
    }

    /// Starts an environment in `dir` (created if needed), owned by this process: it stops when
    /// the returned value's process exits. With `remove_dir`, `dir` is deleted then too.
    ///
    /// # Errors
    /// When the environment does not come up; the error carries the tail of the logs.
    pub fn start(dir: &Path, remove_dir: bool) -> anyhow::Result<TestEnv> {
        let started = Instant::now();
        fs::create_dir_all(dir).with_context(|| format!("Failed to create {}", dir.display()))?;
        let log_path = dir.join("supervise.log");
        let log = fs::File::create(&log_path)
            .with_context(|| format!("Failed to create {}", log_path.display()))?;
        let mut command = Command::new("bash");
        command
            .arg(TESTENV_SCRIPT)
            .arg("supervise")
            .arg(dir)
            .env("FAKE_KUBELET", fake_kubelet_bin())
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log);
        if remove_dir {
            command.env("TESTENV_REMOVE_DIR", "1");
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("Failed to run {TESTENV_SCRIPT}"))?;

        let ready = dir.join("ready");
        loop {
            if ready.exists() {
                break;
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "testenv.sh supervise {} exited with {status}:\n{}",
                    dir.display(),
                    read_lossy(&log_path)
                );
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                // TERM, not kill(): the script traps it and stops what it already started.
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
                let _ = child.wait();
                bail!(
                    "the test environment in {} was not ready within {STARTUP_TIMEOUT:?}:\n{}",
                    dir.display(),
                    read_lossy(&log_path)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }

        let vars = read_env_file(&dir.join("env"))?;
        let var = |name: &str| {
            vars.get(name)
                .cloned()
                .with_context(|| format!("{} does not set {name}", dir.join("env").display()))
        };
        Ok(TestEnv {
            dir: dir.to_path_buf(),
            kubeconfig: PathBuf::from(var("KUBECONFIG")?),
            registry: var("REGISTRY")?,
            apiserver: var("APISERVER")?,
            started_in: started.elapsed(),
            _supervisor: Mutex::new(child),
        })
    }

    /// The environment's directory: `logs/` has every component's log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kubeconfig with the contexts [`CONTEXTS`]; `admin` is the current context.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// `host:port` of the registry (plain HTTP).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// `https://127.0.0.1:PORT` of the API server.
    pub fn apiserver(&self) -> &str {
        &self.apiserver
    }

    /// How long the environment took to come up.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// A client acting as the user of `context` (one of [`CONTEXTS`]).
    ///
    /// A new client per call: a kube client belongs to the tokio runtime it was made on, and
    /// each `#[tokio::test]` has its own.
    pub async fn client(&self, context: &str) -> Client {
        let kubeconfig =
            Kubeconfig::read_from(&self.kubeconfig).expect("the test kubeconfig is readable");
        let options = KubeConfigOptions {
            context: Some(context.to_string()),
            ..Default::default()
        };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .unwrap_or_else(|e| panic!("no context {context:?} in the test kubeconfig: {e}"));
        Client::try_from(config).expect("a client for the test control plane")
    }

    /// Runs `kubectl --kubeconfig <env> ARGS` (as admin unless ARGS has `--context`).
    pub async fn kubectl(&self, args: &[&str]) -> CmdOutput {
        let kubectl = if Path::new("/usr/bin/kubectl").exists() {
            "/usr/bin/kubectl"
        } else {
            "kubectl"
        };
        let mut command = tokio::process::Command::new(kubectl);
        command.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        run(&mut command).await
    }

    /// A command running the `kubectl-release` binary with this environment's kubeconfig in
    /// `KUBECONFIG`, as kubectl would run the plugin.
    pub fn plugin(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(plugin_bin());
        command
            .env("KUBECONFIG", &self.kubeconfig)
            .env("NO_COLOR", "1");
        command
    }

    /// Stops `component` at once, as a crash would (`testenv.sh stop`), and returns the outage:
    /// [`Outage::end`] starts it again. Dropping the outage without ending it (a test that
    /// panicked) starts it again too, so the environment's next test finds it up.
    ///
    /// Every test of the process shares the environment: only a test binary whose tests run one
    /// at a time while a component is down may call this.
    ///
    /// Panics, with the script's output, when it cannot stop it.
    pub async fn stop(&self, component: Component) -> Outage<'_> {
        self.testenv("stop", component).await;
        Outage {
            env: self,
            component,
            ended: false,
        }
    }

    /// `testenv.sh MODE DIR COMPONENT`; panics with its output unless it succeeds.
    async fn testenv(&self, mode: &str, component: Component) {
        let mut command = tokio::process::Command::new("bash");
        command
            .arg(TESTENV_SCRIPT)
            .arg(mode)
            .arg(&self.dir)
            .arg(component.name());
        let out = run(&mut command).await;
        assert!(
            out.success(),
            "cannot {mode} the test environment's {component}: {out}"
        );
    }

    /// Creates a namespace with a unique name starting with `prefix`, so tests can run in
    /// parallel, and waits until pods can be created in it (its service account has a token).
    pub async fn namespace(&self, prefix: &str) -> Namespace {
        let client = self.client("admin").await;
        let api: Api<CoreNamespace> = Api::all(client.clone());
        let namespace = CoreNamespace {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}-", dns_label_prefix(prefix))),
                labels: Some([(FIXTURE_LABEL.to_string(), "true".to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let created = api
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("cannot create a namespace {prefix}-…: {e}"));
        let name = created.name_any();

        // v1.20 rejects pods until the service account controller has made the token secret.
        let accounts: Api<ServiceAccount> = Api::namespaced(client, &name);
        wait_for(&accounts, "default", Duration::from_secs(60), |sa| {
            sa.is_some_and(|sa| sa.secrets.as_ref().is_some_and(|s| !s.is_empty()))
        })
        .await
        .unwrap_or_else(|e| {
            panic!("namespace {name} never got its default service account: {e:#}")
        });
        Namespace { name }
    }
}

/// A part of the environment a test may stop and start again to see how the plugin copes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// kube-apiserver: every client of the cluster loses it; etcd keeps the state.
    ApiServer,
    /// The OCI registry: images can be neither resolved nor pulled.
    Registry,
}

impl Component {
    /// The component's name in `testenv.sh` (and its log, `logs/<name>.log`).
    pub fn name(self) -> &'static str {
        match self {
            Component::ApiServer => "kube-apiserver",
            Component::Registry => "registry",
        }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A component stopped by [`TestEnv::stop`], until [`Outage::end`] (or drop) starts it again.
#[must_use = "the component stays down until the outage is ended (or dropped)"]
#[derive(Debug)]
pub struct Outage<'e> {
    env: &'e TestEnv,
    component: Component,
    ended: bool,
}

impl Outage<'_> {
    /// Starts the component again with the flags and ports it had, and returns once it is
    /// healthy (the API server ready, the registry answering). Panics when it does not come up.
    pub async fn end(mut self) {
        self.ended = true;
        self.env.testenv("start", self.component).await;
    }
}

impl Drop for Outage<'_> {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        // Only reached when the test failed with the component down: blocking here is fine,
        // and panicking again would hide the first failure, so a failed start is only said.
        let started = Command::new("bash")
            .arg(TESTENV_SCRIPT)
            .arg("start")
            .arg(&self.env.dir)
            .arg(self.component.name())
            .stdin(Stdio::null())
            .status();
        if !matches!(started, Ok(status) if status.success()) {
            eprintln!(
                "could not start {} again in {}: {started:?}",
                self.component,
                self.env.dir.display()
            );
        }
    }
}

/// A namespace made for one test. Left in place at the end: the environment goes away with the
/// test process, and a failed test's objects stay inspectable until then.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    name: String,
}

impl Namespace {
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl AsRef<str> for Namespace {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

/// Turns a free-form prefix (a test name, say) into the start of a DNS label, leaving room for
/// the 5 characters the API server appends.
fn dns_label_prefix(prefix: &str) -> String {
    let cleaned: String = prefix
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let trimmed = cleaned.trim_matches('-');
    let mut label: String = trimmed.chars().take(50).collect();
    label = label.trim_end_matches('-').to_string();
    if label.is_empty() || !label.starts_with(|c: char| c.is_ascii_alphabetic()) {
        label = format!("t-{label}");
    }
    label.trim_end_matches('-').to_string()
}

/// What a finished command printed, and how it ended.
#[derive(Clone, Debug)]
pub struct CmdOutput {
    /// The command line, for messages.
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The exit code; `None` when killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Panics, showing the command and its output, unless it succeeded.
    #[track_caller]
    pub fn assert_success(self) -> Self {
        assert!(self.success(), "command failed: {self}");
        self
    }

    /// Panics, showing the command and its output, unless it failed.
    #[track_caller]
    pub fn assert_failure(self) -> Self {
        assert!(!self.success(), "command unexpectedly succeeded: {self}");
        self
    }
}

impl fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` ({})\n--- stdout\n{}\n--- stderr\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `command` to completion, capturing its output.
pub async fn run(command: &mut tokio::process::Command) -> CmdOutput {
    let std = command.as_std();
    let line = std::iter::once(std.get_program())
        .chain(std.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let output = command
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run `{line}`: {e}"));
    CmdOutput {
        command: line,
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The cargo target directory of the running test binary (`target/debug`): test binaries live
/// in its `deps/`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the running test binary");
    let deps = exe.parent().expect("the test binary is in a directory");
    let dir = if deps.ends_with("deps") {
        deps.parent().expect("deps/ is inside the target directory")
    } else {
        deps
    };
    dir.to_path_buf()
}

/// The `kubectl-release` binary of this build.
///
/// Panics when it has not been built: `cargo test -p kubectl-release-tests` does not build other
/// packages' binaries.
pub fn plugin_bin() -> PathBuf {
    let path = target_dir().join("kubectl-release");
    assert!(
        path.is_file(),
        "{} not found: build it first with `cargo build -p kubectl-release` \
         (cargo test only builds the binaries of the package under test)",
        path.display()
    );
    path
}

/// The `fake-kubelet` binary: `$FAKE_KUBELET`, or the one cargo built next to the test binary.
pub fn fake_kubelet_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("FAKE_KUBELET") {
        return PathBuf::from(path);
    }
    let path = target_dir().join("fake-kubelet");
    assert!(
        path.is_file(),
        "{} not found: build it with `cargo build -p kubectl-release-tests --bin fake-kubelet` \
         (cargo builds it before this package's integration tests) or set FAKE_KUBELET",
        path.display()
    );
    path
}

fn read_lossy(path: &Path) -> String {
    let mut bytes = Vec::new();
    match fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)) {
        Ok(_) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Reads the `export NAME=value` lines `testenv.sh` writes.
fn read_env_file(path: &Path) -> anyhow::Result<std::collections::HashMap<String, String>> {
    let text =
        fs::read_to_string(path).with_context(|| format!("Failed to read {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("export ")?.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_prefixes_become_dns_labels() {
        assert_eq!(dns_label_prefix("deploy_qa"), "deploy-qa");
        assert_eq!(dns_label_prefix("Promote::Twice"), "promote--twice");
        assert_eq!(dns_label_prefix("42"), "t-42");
        assert_eq!(dns_label_prefix(""), "t");
        assert!(dns_label_prefix(&"x".repeat(100)).len() <= 52);
    }
}
