//! kubectl-release: commit-hash deploys, environment promotion and sandboxed WASM hooks.
//!
//! The binary (`main.rs`) only wires: it parses the command line, runs the verb from `cmd`,
//! and turns the error into a documented exit code (`exit`). The domain lives beside it:
//!
//! - `config`: release.yaml, found, parsed and validated;
//! - `git` and `registry`: a revision → the full commit → the digest of the commit's image;
//! - `workloads`: the app's workloads and which containers carry its image;
//! - `plan`: what a release changes (pure functions);
//! - `release`: carrying a release out — `lock`, `gate` (hooks), `rollout` (patch and watch),
//!   `records` (history in the cluster);
//! - `status`: live state against records;
//! - `hooks`: the WASM sandbox; `kube_client`, `identity`, `progress`, `output`: the edges.

pub mod approvals;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod exit;
pub mod gate;
pub mod git;
pub mod hooks;
pub mod identity;
pub mod kube_client;
pub mod lock;
pub mod names;
pub mod oci_modules;
pub mod output;
pub mod plan;
pub mod policy;
pub mod progress;
pub mod promotion;
pub mod records;
pub mod registry;
pub mod release;
pub mod rollout;
pub mod status;
pub mod workloads;
