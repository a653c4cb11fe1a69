//! Connection failures: an API server whose certificate the kubeconfig does not trust, or that
//! nobody listens for. The plugin must fail cleanly (no panic) and say which server and why.

use base64::Engine as _;
use kubectl_release_tests::{App, TestCa};
use serde_yaml_ng::Value;

/// The test environment's kubeconfig, verifying TLS against `ca_pem` instead of skipping it.
fn kubeconfig_trusting(kubeconfig: &std::path::Path, ca_pem: &str) -> String {
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    let mut config: Value = serde_yaml_ng::from_str(&text).unwrap();
    let clusters = config["clusters"].as_sequence_mut().unwrap();
    assert!(!clusters.is_empty(), "no clusters in {text}");
    for cluster in clusters {
        let cluster = cluster["cluster"].as_mapping_mut().unwrap();
        cluster.remove("insecure-skip-tls-verify");
        cluster.insert(
            "certificate-authority-data".into(),
            base64::engine::general_purpose::STANDARD
                .encode(ca_pem)
                .into(),
        );
    }
    serde_yaml_ng::to_string(&config).unwrap()
}

#[tokio::test]
async fn an_api_server_certificate_the_kubeconfig_does_not_trust_is_a_clean_error() {
    let app = App::new("tls-untrusted", 1).await;
    let unrelated = TestCa::new();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        kubeconfig_trusting(app.env.kubeconfig(), &unrelated.pem()),
    )
    .unwrap();

    let out = app
        .release(&["--kubeconfig", file.path().to_str().unwrap(), "status"])
        .await
        .assert_failure();
    assert_ne!(out.code(), Some(101), "a panic: {out}");
    assert!(!out.stderr.contains("panicked"), "a panic: {out}");
    assert!(
        out.stderr.contains(app.env.apiserver()),
        "does not name the API server {}: {out}",
        app.env.apiserver()
    );
    assert!(
        out.stderr.to_lowercase().contains("certificate"),
        "does not mention the certificate: {out}"
    );
}

/// The test environment's kubeconfig, pointing every cluster at `server`.
fn kubeconfig_pointing_at(kubeconfig: &std::path::Path, server: &str) -> String {
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    let mut config: Value = serde_yaml_ng::from_str(&text).unwrap();
    for cluster in config["clusters"].as_sequence_mut().unwrap() {
        cluster["cluster"]["server"] = server.into();
    }
    serde_yaml_ng::to_string(&config).unwrap()
}

#[tokio::test]
async fn an_api_server_nobody_listens_for_is_named_with_each_cause_once_in_the_report() {
    let mut app = App::new("unreachable", 1).await;
    let head = app.repo.head();
    app.push(&head).await;
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = format!("https://127.0.0.1:{port}");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        kubeconfig_pointing_at(app.env.kubeconfig(), &server),
    )
    .unwrap();

    let kubeconfig = file.path().to_str().unwrap();
    let out = app
        .release(&["--kubeconfig", kubeconfig, "deploy", "qa", "-o", "json"])
        .await;
    assert_eq!(out.code(), Some(1), "{out}");
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["outcome"], "error", "{out}");
    let message = report["message"].as_str().unwrap();
    assert!(message.contains("cannot reach the API server"), "{message}");
    assert!(
        message.contains(&server),
        "does not name {server}: {message}"
    );
    assert!(message.contains("Connection refused"), "{message}");
    // The HTTP client's error says its cause and chains it too: the report says it once.
    let parts: Vec<&str> = message.split(": ").collect();
    for pair in parts.windows(2) {
        assert_ne!(pair[0], pair[1], "a cause said twice: {message}");
    }
}
