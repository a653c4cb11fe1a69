//! `webhook serve` and `webhook config`: the admission webhook, from the same binary.

use std::sync::Arc;

use anyhow::Result;

use crate::cli::{GlobalArgs, WebhookConfigArgs, WebhookServeArgs};
use crate::cluster::Clients;
use crate::domain::{Failure, Outcome};
use crate::webhook::admission::Admission;
use crate::webhook::config::{self, Endpoint, WebhookSettings};
use crate::webhook::metrics::Metrics;
use crate::webhook::server::{self, ServeSettings};
use crate::webhook::tls::ReloadingCert;

/// Serves until SIGINT or SIGTERM: the policy of the kubeconfig's cluster is loaded first (the
/// server is ready only then), then followed, so a policy change needs no restart.
pub async fn serve(global: &GlobalArgs, args: &WebhookServeArgs) -> Result<Outcome> {
    // The files named on the command line are checked before anything connects anywhere.
    let tls = ReloadingCert::load(&args.tls_cert, &args.tls_key).map_err(|e| {
        Failure::invalid(format!(
            "cannot load the webhook's TLS certificate (--tls-cert, --tls-key): {e}"
        ))
    })?;
    crate::hooks::serve_many_callers();
    let clients = Clients::new(&global.kube_settings())?;
    let (client, cluster) = clients.current().await?;
    let metrics = Metrics::new();
    let admission = Admission::new(client, &cluster, metrics.clone());
    if let Err(e) = admission.load_policy().await {
        // Not ready (the API server's failurePolicy refuses changes meanwhile); the policy
        // watch below retries on the next change.
        tracing::error!("cannot load the cluster policy yet: {e:#}");
    }
    tokio::spawn(admission.clone().follow_policy());
    let settings = ServeSettings {
        listen: args.listen,
        metrics_listen: args.metrics_listen,
        tls,
    };
    server::serve(settings, Arc::clone(&admission), metrics, shutdown_signal()).await?;
    Ok(Outcome::Succeeded)
}

/// Completes on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}

/// Prints the webhook configurations for `kubectl apply -f -`.
pub fn config(args: &WebhookConfigArgs) -> Result<Outcome> {
    let endpoint = match (&args.url, &args.service) {
        (Some(url), None) => {
            config::check_url(url).map_err(Failure::invalid)?;
            Endpoint::Url(url.clone())
        }
        (None, Some(service)) => {
            let (namespace, name) = service.split_once('/').ok_or_else(|| {
                Failure::invalid(format!("--service takes NAMESPACE/NAME, not `{service}`"))
            })?;
            Endpoint::Service {
                namespace: namespace.into(),
                name: name.into(),
            }
        }
        _ => return Err(Failure::invalid("give exactly one of --url and --service").into()),
    };
    let bundle = args.ca_bundle.display();
    let ca_bundle_pem = std::fs::read(&args.ca_bundle)
        .map_err(|e| Failure::invalid(format!("--ca-bundle: cannot read {bundle}: {e}")))?;
    config::check_ca_bundle(&ca_bundle_pem).map_err(|why| {
        Failure::invalid(format!(
            "--ca-bundle: {bundle} {why}; give the PEM of the CA that signed the webhook's certificate"
        ))
    })?;
    let governed = args
        .governed
        .split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| {
            Failure::invalid(format!(
                "--governed takes KEY=VALUE, not `{}`",
                args.governed
            ))
        })?;
    let text = config::manifests(&WebhookSettings {
        endpoint,
        ca_bundle_pem,
        governed,
    })?;
    crate::output::print_text(&text)?;
    Ok(Outcome::Succeeded)
}
