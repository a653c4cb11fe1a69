//! Hook modules in a registry that requires credentials: a second `docker-registry`, started by
//! the test with htpasswd (bcrypt) auth on loopback, and the credentials in a Docker config that
//! the plugin finds through `DOCKER_CONFIG` (the `docker_credential` crate reads
//! `$DOCKER_CONFIG/config.json`, falling back to `~/.docker/config.json`).

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use kubectl_release_tests::{CmdOutput, TestEnv, example_hook, run};
use serde_json::Value;

const USER: &str = "user";
const PASSWORD: &str = "secret";

/// A `docker-registry` with htpasswd auth, killed when dropped.
struct PrivateRegistry {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl PrivateRegistry {
    fn start() -> PrivateRegistry {
        let dir = tempfile::tempdir().unwrap();
        let htpasswd = Command::new("htpasswd")
            .args(["-Bbn", USER, PASSWORD])
            .output()
            .expect("htpasswd (apache2-utils) runs: tests/testenv/install.sh installs it");
        assert!(
            htpasswd.status.success(),
            "htpasswd failed: {}",
            String::from_utf8_lossy(&htpasswd.stderr)
        );
        std::fs::write(dir.path().join("htpasswd"), &htpasswd.stdout).unwrap();

        // A free loopback port: bound by us, released, then taken by the registry.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {root}\n\
             http:\n  addr: {addr}\nauth:\n  htpasswd:\n    realm: kubectl-release-e2e\n    path: {htpasswd}\n",
            root = dir.path().join("data").display(),
            htpasswd = dir.path().join("htpasswd").display(),
        );
        let config_path = dir.path().join("registry.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry runs: tests/testenv/install.sh installs it");
        let mut registry = PrivateRegistry {
            child,
            addr,
            _dir: dir,
        };
        registry.wait_until_listening();
        registry
    }

    fn wait_until_listening(&mut self) {
        let started = Instant::now();
        while TcpStream::connect(&self.addr).is_err() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "docker-registry exited with {status}: {}",
                    std::fs::read_to_string(self._dir.path().join("registry.log"))
                        .unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "docker-registry is not listening on {} after 30 s",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PrivateRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Docker config directory with the registry's credentials (`auths.<host:port>.auth`).
fn docker_config(registry: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let config = serde_json::json!({ "auths": { registry: { "auth": auth } } });
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    dir
}

/// `kubectl-release ARGS` with `DOCKER_CONFIG=docker_config` and a fresh module cache.
async fn plugin(env: &TestEnv, docker_config: &Path, args: &[&str]) -> CmdOutput {
    let cache = tempfile::tempdir().unwrap();
    let mut cmd = env.plugin();
    cmd.args(args)
        .env("DOCKER_CONFIG", docker_config)
        .env("KUBECTL_RELEASE_CACHE_DIR", cache.path());
    run(&mut cmd).await
}

fn mentions_denied_access(out: &CmdOutput) -> bool {
    let stderr = out.stderr.to_lowercase();
    ["authoriz", "authenticat", "access", "denied", "401"]
        .iter()
        .any(|word| stderr.contains(word))
}

#[tokio::test]
async fn hook_modules_are_pushed_to_and_pulled_from_a_registry_that_requires_credentials() {
    let env = TestEnv::shared();
    let registry = PrivateRegistry::start();
    let with_credentials = docker_config(&registry.addr);
    // An empty Docker config directory: no config.json, so no credentials (and never the
    // user's own ~/.docker/config.json).
    let without_credentials = tempfile::tempdir().unwrap();
    let (module, sha) = example_hook("required-labels");
    let module = module.to_str().unwrap();
    let target = format!("oci://{}/policies/labels:v1", registry.addr);

    // Without credentials the registry refuses the push.
    let out = plugin(
        env,
        without_credentials.path(),
        &["hooks", "push", module, &target],
    )
    .await
    .assert_failure();
    assert_ne!(out.code(), Some(101), "a panic: {out}");
    assert!(mentions_denied_access(&out), "{out}");

    // With them it is pushed, and pinned by digest.
    let out = plugin(
        env,
        with_credentials.path(),
        &["hooks", "push", module, &target, "-o", "json"],
    )
    .await
    .assert_success();
    let pushed: Value = serde_json::from_str(&out.stdout).unwrap();
    let pinned = pushed["reference"].as_str().unwrap().to_string();
    assert!(
        pinned.starts_with(&format!("oci://{}/policies/labels", registry.addr))
            && pinned.contains("@sha256:"),
        "{out}"
    );
    assert_eq!(pushed["sha256"], sha.as_str(), "{out}");

    // Pulled into an empty cache with the credentials: the module, byte for byte.
    let out = plugin(
        env,
        with_credentials.path(),
        &["hooks", "pull", &pinned, "-o", "json"],
    )
    .await
    .assert_success();
    let pulled: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(pulled["sha256"], sha.as_str(), "{out}");

    // Into an empty cache without them: refused.
    let out = plugin(env, without_credentials.path(), &["hooks", "pull", &pinned])
        .await
        .assert_failure();
    assert_ne!(out.code(), Some(101), "a panic: {out}");
    assert!(mentions_denied_access(&out), "{out}");

    drop(registry);
}
