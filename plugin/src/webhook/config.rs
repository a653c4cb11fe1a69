//! `webhook config`: the Mutating/ValidatingWebhookConfigurations that register the webhook
//! with the API server, to `kubectl apply`. Pure: settings in, objects out.

use serde_json::{Value, json};

/// Label of the namespace approvals live in (set by plugin/rbac/approvals.yaml): the approval
/// webhook sees that namespace only.
pub const APPROVALS_NAMESPACE_LABEL: &str = "kubectl-release.io/approvals";
/// Label of the namespaces whose workload changes the policy's `admission` hooks judge.
pub const GOVERNED_LABEL: &str = "kubectl-release.io/governed";
/// The API server waits at most 10 s for a webhook (and 30 s at most by config): answer well
/// within that, and the hooks' own 2 s default fits many times.
pub const TIMEOUT_SECONDS: u8 = 5;

/// Where the API server reaches the webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `https://host:port` (a server outside the cluster, e.g. on loopback in tests).
    Url(String),
    /// A Service in the cluster, port 443.
    Service { namespace: String, name: String },
}

/// What the configurations say.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub endpoint: Endpoint,
    /// The PEM of the CA that signed the server's certificate.
    pub ca_bundle_pem: Vec<u8>,
    /// `key=value`: the label governed namespaces carry.
    pub governed: (String, String),
}

/// What the API server requires of a `url` endpoint (`https`, a host, no user, query or
/// fragment), checked here: `kubectl apply` would refuse it only later, or, for a wrong scheme
/// it accepted, every change in a governed namespace would fail.
pub fn check_url(url: &str) -> Result<(), String> {
    let refused = |why: &str| Err(format!("--url `{url}`: {why}; e.g. https://10.0.0.5:9443"));
    let Ok(uri) = url.parse::<http::Uri>() else {
        return refused("not a URL");
    };
    match (uri.scheme_str(), uri.authority()) {
        (Some("https"), Some(authority)) if !authority.as_str().contains('@') => {}
        (Some("https"), Some(_)) => return refused("a user in the URL is not allowed"),
        (Some("https"), None) => return refused("no host"),
        _ => return refused("the API server calls webhooks over https only"),
    }
    if uri.query().is_some() {
        return refused("a query is not allowed");
    }
    // `http::Uri` drops a fragment without a word; the API server refuses one.
    if url.contains('#') {
        return refused("a fragment is not allowed");
    }
    Ok(())
}

/// The CA bundle must hold PEM certificates: the API server stores any bytes, and a bundle it
/// cannot use shows only as every admission call failing its TLS handshake.
pub fn check_ca_bundle(pem: &[u8]) -> Result<(), String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    match CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>() {
        Ok(certs) if !certs.is_empty() => Ok(()),
        Ok(_) => Err("holds no PEM `BEGIN CERTIFICATE` block".into()),
        Err(e) => Err(format!("is not PEM certificates: {e}")),
    }
}

/// The two configurations, as a YAML stream of two documents.
pub fn manifests(settings: &WebhookSettings) -> Result<String, serde_yaml_ng::Error> {
    let mut out = String::new();
    for object in [approvals(settings), workloads(settings)] {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&object)?);
    }
    Ok(out)
}

fn client_config(settings: &WebhookSettings, path: &str) -> Value {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(&settings.ca_bundle_pem);
    match &settings.endpoint {
        Endpoint::Url(url) => {
            json!({"url": format!("{}{path}", url.trim_end_matches('/')), "caBundle": ca})
        }
        Endpoint::Service { namespace, name } => json!({
            "service": {"namespace": namespace, "name": name, "path": path, "port": 443},
            "caBundle": ca
        }),
    }
}

/// Namespaces the webhook must never judge: the control plane's own, and its own (a webhook
/// that must admit its own pods can never start again).
fn never(settings: &WebhookSettings) -> Value {
    let mut names = vec!["kube-system".to_string(), "kube-public".to_string()];
    if let Endpoint::Service { namespace, .. } = &settings.endpoint {
        names.push(namespace.clone());
    }
    json!({"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": names})
}

fn approvals(settings: &WebhookSettings) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "kubectl-release-approvals", "labels": {"app.kubernetes.io/managed-by": "kubectl-release"}},
        "webhooks": [{
            "name": "approvals.kubectl-release.io",
            "clientConfig": client_config(settings, "/approvals"),
            "rules": [{
                "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"],
                "operations": ["CREATE", "UPDATE"], "scope": "Namespaced"
            }],
            "namespaceSelector": {
                "matchLabels": {APPROVALS_NAMESPACE_LABEL: "true"},
                "matchExpressions": [never(settings)]
            },
            "objectSelector": {"matchLabels": {"kubectl-release.io/approval": "true"}},
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": TIMEOUT_SECONDS,
            "reinvocationPolicy": "Never"
        }]
    })
}

fn workloads(settings: &WebhookSettings) -> Value {
    let (key, value) = &settings.governed;
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "kubectl-release-workloads", "labels": {"app.kubernetes.io/managed-by": "kubectl-release"}},
        "webhooks": [{
            "name": "workloads.kubectl-release.io",
            "clientConfig": client_config(settings, "/workloads"),
            "rules": [
                {"apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments", "statefulsets", "daemonsets"],
                 "operations": ["CREATE", "UPDATE"], "scope": "Namespaced"},
                {"apiGroups": ["batch"], "apiVersions": ["v1", "v1beta1"], "resources": ["cronjobs"],
                 "operations": ["CREATE", "UPDATE"], "scope": "Namespaced"}
            ],
            "namespaceSelector": {
                "matchLabels": {key: value},
                "matchExpressions": [never(settings)]
            },
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": TIMEOUT_SECONDS
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(endpoint: Endpoint) -> WebhookSettings {
        WebhookSettings {
            endpoint,
            ca_bundle_pem: b"-----BEGIN CERTIFICATE-----\n".to_vec(),
            governed: (GOVERNED_LABEL.into(), "true".into()),
        }
    }

    #[test]
    fn both_configurations_fail_closed_answer_in_time_and_spare_the_control_plane() {
        let text = manifests(&settings(Endpoint::Service {
            namespace: "kubectl-release-system".into(),
            name: "webhook".into(),
        }))
        .unwrap();
        let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| Value::deserialize(d).unwrap())
            .collect();
        assert_eq!(docs.len(), 2);
        for doc in &docs {
            let hook = &doc["webhooks"][0];
            assert_eq!(hook["failurePolicy"], "Fail");
            assert!(hook["timeoutSeconds"].as_u64().unwrap() < 10);
            let never = &hook["namespaceSelector"]["matchExpressions"][0]["values"];
            for ns in ["kube-system", "kubectl-release-system"] {
                assert!(
                    never.as_array().unwrap().contains(&ns.into()),
                    "{ns}: {never}"
                );
            }
            assert_eq!(hook["clientConfig"]["service"]["port"], 443);
        }
        assert_eq!(docs[0]["kind"], "MutatingWebhookConfiguration");
        assert_eq!(
            docs[1]["webhooks"][0]["namespaceSelector"]["matchLabels"][GOVERNED_LABEL],
            "true"
        );
    }

    #[test]
    fn a_url_endpoint_gets_its_path() {
        let text = manifests(&settings(Endpoint::Url("https://127.0.0.1:9443/".into()))).unwrap();
        assert!(
            text.contains("url: https://127.0.0.1:9443/approvals"),
            "{text}"
        );
        assert!(
            text.contains("url: https://127.0.0.1:9443/workloads"),
            "{text}"
        );
    }

    #[test]
    fn urls_the_api_server_would_refuse_are_refused() {
        assert_eq!(check_url("https://127.0.0.1:9443"), Ok(()));
        assert_eq!(check_url("https://webhook.example.com/base"), Ok(()));
        for (url, why) in [
            ("http://127.0.0.1:9443", "https only"),
            ("127.0.0.1:9443", "https only"),
            ("https://user@127.0.0.1:9443", "user"),
            ("https://127.0.0.1:9443/?a=b", "query"),
            ("https://127.0.0.1:9443/#x", "fragment"),
            ("not a url", "not a URL"),
        ] {
            let err = check_url(url).unwrap_err();
            assert!(err.contains(why) && err.contains(url), "{url}: {err}");
        }
    }

    #[test]
    fn a_ca_bundle_must_hold_pem_certificates() {
        let pem = crate::webhook::tls::testing::TestCa::new()
            .server_pair()
            .cert_pem;
        assert_eq!(check_ca_bundle(pem.as_bytes()), Ok(()));
        assert!(check_ca_bundle(b"web-1\n").unwrap_err().contains("no PEM"));
        assert!(check_ca_bundle(b"").unwrap_err().contains("no PEM"));
        let truncated = b"-----BEGIN CERTIFICATE-----\nMIIB\n";
        assert!(check_ca_bundle(truncated).is_err());
    }

    use serde::Deserialize as _;
}
