//! The release-hook v1 contract of kubectl-release.
//!
//! A hook is a WASI preview 1 command module. The host runs it with argv
//! `["hook", "check"]` (or `["hook", "validate-settings"]`), writes one JSON [`HookRequest`] to
//! its stdin and reads one JSON [`HookResponse`] from its stdout; anything it writes to stderr is
//! shown as logs with `-v`. Exit status 0 with a valid response is a verdict; anything else is a
//! hook error, which the hook's `failurePolicy` turns into a denial (`Fail`) or a warning
//! (`Ignore`).
//!
//! This crate is that contract in Rust, shared by the host (`kubectl-release`) and by hooks:
//!
//! - [`types`]: the request and response documents (re-exported at the root);
//! - [`guest`]: [`guest::run`] / [`guest::run_with_settings`], the stdin/stdout/argv/exit
//!   plumbing of a hook's `main`;
//! - [`helpers`]: image references, labels, times, approvals;
//! - [`testing`]: a fixture harness for `cargo test`;
//! - [`schema`]: the JSON Schema of both documents, for authors in other languages;
//! - [`generator`]: the generator v1 contract (app spec, request, response, guest `run`).
//!
//! It depends on serde, serde_json and schemars only, and builds for `wasm32-wasip1`.

#![warn(missing_docs)]

pub mod generator;
pub mod guest;
pub mod helpers;
pub mod schema;
pub mod testing;
pub mod types;

pub use types::{
    API_VERSION, Actor, Approval, ContainerChange, EnvironmentState, HookRequest, HookResponse,
    Phase, REQUEST_KIND, Release, ReleaseKind, ReleaseOutcome, ReleaseSummary, RunningContainer,
    Violation, WorkloadRef,
};
