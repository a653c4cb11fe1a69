//! Who is releasing. The API server knows best (SelfSubjectReview, Kubernetes 1.26+); older
//! servers cannot say, so we fall back to the kubeconfig user and mark it unverified — hooks
//! see the difference and may refuse unverified approvals.

use serde_json::{Value, json};

use crate::cluster::EnvTarget;
use crate::domain::Actor;

pub async fn whoami(target: &EnvTarget) -> Actor {
    // Asked once per context and process, even by apps of `promote --all` asking at once: the
    // first asks, the others wait for its answer.
    type Cell = std::sync::Arc<tokio::sync::OnceCell<Actor>>;
    static KNOWN: std::sync::Mutex<std::collections::BTreeMap<String, Cell>> =
        std::sync::Mutex::new(std::collections::BTreeMap::new());
    let key = format!("{}@{}", target.context, target.server);
    let cell = KNOWN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(key)
        .or_default()
        .clone();
    cell.get_or_init(|| ask(target)).await.clone()
}

async fn ask(target: &EnvTarget) -> Actor {
    for version in ["v1", "v1beta1", "v1alpha1"] {
        let body = json!({"apiVersion": format!("authentication.k8s.io/{version}"), "kind": "SelfSubjectReview"});
        let Ok(request) = http::Request::post(format!(
            "/apis/authentication.k8s.io/{version}/selfsubjectreviews"
        ))
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&body).unwrap_or_default()) else {
            continue;
        };
        if let Ok(review) = target.client.request::<Value>(request).await
            && let Some(user) = review
                .pointer("/status/userInfo/username")
                .and_then(Value::as_str)
        {
            let groups = review
                .pointer("/status/userInfo/groups")
                .and_then(Value::as_array)
                .map(|g| {
                    g.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            return Actor {
                user: user.to_string(),
                groups,
                verified: true,
            };
        }
    }
    let user = if target.kube_user.is_empty() {
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    } else {
        target.kube_user.clone()
    };
    Actor {
        user,
        groups: Vec::new(),
        verified: false,
    }
}
