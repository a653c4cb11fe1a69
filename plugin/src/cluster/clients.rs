//! Kubernetes clients, one per environment: each environment may live in its own cluster.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result};
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::sync::OnceCell;

use super::ServerApis;
use crate::config::Environment;
use crate::domain::Failure;

/// Where the kubeconfig is and what overrides it, as kubectl's global flags say.
#[derive(Debug, Clone, Default)]
pub struct KubeSettings {
    /// `--kubeconfig`; else `$KUBECONFIG`, then `~/.kube/config`.
    pub kubeconfig: Option<std::path::PathBuf>,
    /// `--context`: overrides every environment's `context`.
    pub context: Option<String>,
    /// `-n`: overrides every environment's namespace.
    pub namespace: Option<String>,
}

/// An environment resolved against the kubeconfig: where it is and a client to reach it.
#[derive(Clone)]
pub struct EnvTarget {
    pub env: Environment,
    /// The kubeconfig context in use (the current context when neither flag nor config names one).
    pub context: String,
    /// The API server URL, for messages.
    pub server: String,
    pub namespace: String,
    /// The kubeconfig user of the context: who we act as, unverified.
    pub kube_user: String,
    pub client: kube::Client,
    /// What the server serves, asked once per context and process.
    apis: Arc<OnceCell<ServerApis>>,
}

impl EnvTarget {
    /// The server's API versions (asked on first use, then shared by every target of the same
    /// context).
    ///
    /// # Errors
    ///
    /// When the API server cannot be reached.
    pub async fn server_apis(&self) -> Result<ServerApis> {
        self.apis
            .get_or_try_init(|| ServerApis::discover(&self.client))
            .await
            .cloned()
            .map_err(|e| {
                let hint = advice(&e);
                anyhow::Error::new(e)
                    .context(format!("cannot reach the API server of {self}{hint}"))
            })
    }
}

impl fmt::Debug for EnvTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EnvTarget({self})")
    }
}

impl fmt::Display for EnvTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "environment `{}` (context `{}`, server {}, namespace `{}`)",
            self.env.name, self.context, self.server, self.namespace
        )
    }
}

/// What to do about an API server that cannot be reached, when the error says.
fn advice(err: &kube::Error) -> &'static str {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    let text = text.to_ascii_lowercase();
    if text.contains("certificate") || text.contains("tls") || text.contains("unknownissuer") {
        "; its TLS certificate is not trusted: check the cluster's certificate-authority in the kubeconfig"
    } else if text.contains("connection refused")
        || text.contains("timed out")
        || text.contains("dns")
    {
        "; check that the server is up and reachable from here (VPN, proxy), and the kubeconfig's server URL"
    } else {
        ""
    }
}

/// Reads the kubeconfig once; hands out a client per environment, one per context and process
/// (with its connection pool), so that reading another environment again, as every hook phase
/// of a promotion does, reuses its connections and what its server was found to serve.
pub struct Clients {
    kubeconfig: Kubeconfig,
    global: KubeSettings,
    connections: Mutex<HashMap<String, Connection>>,
}

/// A context's client, its server URL and what the server serves.
#[derive(Clone)]
struct Connection {
    client: kube::Client,
    server: String,
    apis: Arc<OnceCell<ServerApis>>,
}

impl Clients {
    /// Honours `--kubeconfig`, then `$KUBECONFIG` (a list of files, as kubectl reads it), then
    /// `~/.kube/config`.
    pub fn new(global: &KubeSettings) -> Result<Self> {
        // Which kubeconfig to use is the caller's configuration: a wrong one is exit 2.
        let kubeconfig = match &global.kubeconfig {
            Some(path) => Kubeconfig::read_from(path).map_err(|e| {
                Failure::invalid(format!("cannot read kubeconfig {}: {e}", path.display()))
            })?,
            None => Kubeconfig::read().map_err(|e| {
                Failure::invalid(format!(
                    "cannot read a kubeconfig from $KUBECONFIG or ~/.kube/config ({e}); \
                     pass --kubeconfig"
                ))
            })?,
        };
        Ok(Clients {
            kubeconfig,
            global: global.clone(),
            connections: Mutex::new(HashMap::new()),
        })
    }

    /// A client for `env`: `--context` wins over the environment's `context`, which wins over
    /// the kubeconfig's current context; `-n` wins over the environment's namespace.
    pub async fn target(&self, env: &Environment) -> Result<EnvTarget> {
        let context = self
            .global
            .context
            .clone()
            .or_else(|| env.context.clone())
            .or_else(|| self.kubeconfig.current_context.clone())
            .ok_or_else(|| {
                Failure::invalid(format!(
                    "environment `{}` names no context and the kubeconfig has no current context; \
                     set `context` in release.yaml or pass --context",
                    env.name
                ))
            })?;
        let named = self
            .kubeconfig
            .contexts
            .iter()
            .find(|c| c.name == context)
            .ok_or_else(|| {
                let known: Vec<_> = self.kubeconfig.contexts.iter().map(|c| c.name.as_str()).collect();
                Failure::invalid(format!(
                    "environment `{}`: context `{context}` is not in the kubeconfig; known contexts: {}",
                    env.name,
                    known.join(", ")
                ))
            })?;
        let kube_user = named
            .context
            .as_ref()
            .and_then(|c| c.user.clone())
            .unwrap_or_default();
        let connection = self.connection(&context, &env.name).await?;
        Ok(EnvTarget {
            env: env.clone(),
            namespace: self
                .global
                .namespace
                .clone()
                .unwrap_or_else(|| env.namespace.clone()),
            context,
            server: connection.server,
            kube_user,
            client: connection.client,
            apis: connection.apis,
        })
    }

    /// A client for the kubeconfig's current context (or `--context`), and words naming it.
    pub async fn current(&self) -> Result<(kube::Client, String)> {
        let context = self
            .global
            .context
            .clone()
            .or_else(|| self.kubeconfig.current_context.clone())
            .ok_or_else(|| {
                Failure::invalid("the kubeconfig has no current context; pass --context")
            })?;
        let connection = self.connection(&context, "(the webhook's cluster)").await?;
        Ok((
            connection.client,
            format!("context `{context}` ({})", connection.server),
        ))
    }

    /// The context's connection, made on first use.
    async fn connection(&self, context: &str, env: &str) -> Result<Connection> {
        let known = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(context)
            .cloned();
        if let Some(connection) = known {
            return Ok(connection);
        }
        let options = KubeConfigOptions {
            context: Some(context.to_string()),
            ..Default::default()
        };
        let config = kube::Config::from_custom_kubeconfig(self.kubeconfig.clone(), &options)
            .await
            .with_context(|| format!("cannot use context `{context}` for environment `{env}`"))?;
        let server = config.cluster_url.to_string();
        let client = client_for(config)
            .with_context(|| format!("cannot build a client for context `{context}` ({server})"))?;
        let made = Connection {
            client,
            server,
            apis: Arc::default(),
        };
        // Two environments of one context may race here; the first connection made is kept.
        Ok(self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(context.to_string())
            .or_insert(made)
            .clone())
    }
}

/// A client like kube's default one — the same timeouts, retries of throttled and unavailable
/// requests, auth and headers — but with `TCP_NODELAY` on its connections: without it every new
/// connection to the API server waits ~40 ms for a delayed ACK after the TLS handshake, half of
/// a no-op deploy's run time (measured: tests/benches/deploy_vs_kubectl.rs). kube builds its
/// connector itself, hence the stack spelled out here.
fn client_for(config: kube::Config) -> Result<kube::Client> {
    use kube::client::ConfigExt as _;
    use kube::client::retry::RetryPolicy;

    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = config.rustls_https_connector_with_connector(http)?;
    // Without a read timeout an API server that stops answering would hang a release.
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let hyper = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(connector);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .default_retry
                .then(|| tower::retry::RetryLayer::new(RetryPolicy::server_retry())),
        )
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_request(log_request)
        .map_err(tower::BoxError::from)
        .service(hyper);
    Ok(kube::Client::new(service, config.default_namespace))
}

/// One debug line per HTTP request, retries included: what `-vv` shows and the scale benchmark
/// counts (tests/benches/promote_scale.rs).
fn log_request<B>(request: http::Request<B>) -> http::Request<B> {
    tracing::debug!(http.method = %request.method(), http.url = %request.uri(), "requesting");
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECONFIG: &str = r#"
apiVersion: v1
kind: Config
clusters:
  - name: a
    cluster: { server: "https://127.0.0.1:6441" }
  - name: b
    cluster: { server: "https://127.0.0.1:6442" }
users:
  - name: u
    user: { token: t }
contexts:
  - name: ctx-a
    context: { cluster: a, user: u }
  - name: ctx-b
    context: { cluster: b, user: u }
current-context: ctx-a
"#;

    fn env(name: &str, context: Option<&str>) -> Environment {
        Environment {
            name: name.into(),
            context: context.map(Into::into),
            namespace: name.into(),
            promote_from: None,
            atomic: None,
            manifests: None,
            require_verification: false,
            gitops: None,
        }
    }

    #[test]
    fn a_kubeconfig_that_cannot_be_read_is_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        let broken = dir.path().join("broken");
        std::fs::write(&broken, "clusters: [unclosed").unwrap();
        for path in [dir.path().join("missing"), broken] {
            let err = Clients::new(&KubeSettings {
                kubeconfig: Some(path.clone()),
                ..Default::default()
            })
            .err()
            .expect("no client from a kubeconfig that cannot be read");
            let outcome = crate::domain::outcome_of(&err);
            assert_eq!(outcome, crate::domain::Outcome::Invalid, "{err:#}");
            assert!(
                err.to_string()
                    .starts_with(&format!("cannot read kubeconfig {}: ", path.display())),
                "{err:#}"
            );
        }
    }

    #[tokio::test]
    async fn environments_of_one_context_share_its_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        std::fs::write(&path, KUBECONFIG).unwrap();
        let clients = Clients::new(&KubeSettings {
            kubeconfig: Some(path),
            ..Default::default()
        })
        .unwrap();

        let qa = clients.target(&env("qa", None)).await.unwrap();
        let staging = clients
            .target(&env("staging", Some("ctx-a")))
            .await
            .unwrap();
        let production = clients
            .target(&env("production", Some("ctx-b")))
            .await
            .unwrap();
        let qa_again = clients.target(&env("qa", None)).await.unwrap();

        assert!(
            Arc::ptr_eq(&qa.apis, &staging.apis),
            "same context, one connection"
        );
        assert!(Arc::ptr_eq(&qa.apis, &qa_again.apis));
        assert!(!Arc::ptr_eq(&qa.apis, &production.apis));
        assert_eq!(staging.namespace, "staging");
        assert_eq!(production.server, "https://127.0.0.1:6442/");
    }
}
