//! Kubernetes clients, one per environment: each environment may live in its own cluster.

use std::fmt;

use anyhow::{Context, Result};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::cli::GlobalArgs;
use crate::config::Environment;
use crate::exit::Failure;

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

/// Reads the kubeconfig once; hands out a client per environment.
pub struct Clients {
    kubeconfig: Kubeconfig,
    global: GlobalArgs,
}

impl Clients {
    /// Honours `--kubeconfig`, then `$KUBECONFIG` (a list of files, as kubectl reads it), then
    /// `~/.kube/config`.
    pub fn new(global: &GlobalArgs) -> Result<Self> {
        let kubeconfig = match &global.kubeconfig {
            Some(path) => Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read kubeconfig {}", path.display()))?,
            None => Kubeconfig::read().context(
                "cannot read a kubeconfig from $KUBECONFIG or ~/.kube/config; pass --kubeconfig",
            )?,
        };
        Ok(Clients {
            kubeconfig,
            global: global.clone(),
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
                Failure::usage(format!(
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
                Failure::usage(format!(
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
        let options = KubeConfigOptions {
            context: Some(context.clone()),
            ..Default::default()
        };
        let config = kube::Config::from_custom_kubeconfig(self.kubeconfig.clone(), &options)
            .await
            .with_context(|| {
                format!(
                    "cannot use context `{context}` for environment `{}`",
                    env.name
                )
            })?;
        let server = config.cluster_url.to_string();
        let client = client_for(config)
            .with_context(|| format!("cannot build a client for context `{context}` ({server})"))?;
        Ok(EnvTarget {
            env: env.clone(),
            namespace: self
                .global
                .namespace
                .clone()
                .unwrap_or_else(|| env.namespace.clone()),
            context,
            server,
            kube_user,
            client,
        })
    }
}

/// A client like kube's default one, but with `TCP_NODELAY` on its connections: without it every
/// new connection to the API server waits ~40 ms for a delayed ACK after the TLS handshake —
/// half of a no-op deploy's run time (measured: tests/benches/deploy_vs_kubectl.rs).
fn client_for(config: kube::Config) -> Result<kube::Client> {
    use kube::client::ConfigExt as _;
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = config.rustls_https_connector_with_connector(http)?;
    let hyper = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(https);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(hyper);
    Ok(kube::Client::new(service, config.default_namespace))
}
