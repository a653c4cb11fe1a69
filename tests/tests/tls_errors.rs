//! TLS failures: an API server whose certificate the kubeconfig does not trust. The plugin must
//! fail cleanly (no panic) and say which server and that its certificate is the problem.

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
