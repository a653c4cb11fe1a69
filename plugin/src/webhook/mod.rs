//! `kubectl release webhook`: an admission webhook built from the same binary, sandbox and
//! pinned modules, so the rules hold whoever acts. Client-side checks give fast feedback; what
//! must hold against anyone with RBAC runs here, in the API server's path.
//!
//! - `server`: HTTPS (certificates reloaded when their files change), `/healthz`, `/readyz`;
//!   `metrics`: Prometheus counters and latency on a port of their own; `tls`: the certificates;
//! - `admission`: the judgements — approvals stamped with the authenticated identity, workload
//!   changes judged by the cluster policy's `admission` hooks;
//! - `config`: the Mutating/ValidatingWebhookConfigurations to `kubectl apply`.

pub mod admission;
pub mod config;
pub mod metrics;
pub mod server;
pub mod tls;
