//! kubectl-release: commit-hash deploys, environment promotion and sandboxed WASM hooks.
//!
//! The layers, from the edge in; nothing below imports from above:
//!
//! - `cli` (flags, signals, exit codes) and `main`: the edge;
//! - `cmd`: one file per verb, the command's story;
//! - `release`: the engine — a release as a journal, its hooks gate, its report;
//! - the gateways: `cluster` (every API call and watch), `hooks` (every WASM run), and
//!   `artifacts` (git, the image registry, hook modules as OCI artifacts);
//! - `config` (release.yaml) and `domain` (plain data and pure decisions);
//! - leaves used everywhere: `output` (tables, JSON, YAML on stdout) and `progress` (stderr).

pub mod artifacts;
pub mod cli;
pub mod cluster;
pub mod cmd;
pub mod config;
pub mod domain;
pub mod hooks;
pub mod output;
pub mod progress;
pub mod release;
pub mod webhook;
