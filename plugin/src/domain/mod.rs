//! The domain: plain data and the decisions taken on it, with no I/O. Everything above (the
//! release engine, the gateways to the cluster, the sandbox and the artifacts) speaks these
//! types; nothing here imports from above.
//!
//! - data: [`CommitSha`], [`ImageRef`], [`Workload`] and [`WorkloadRef`], [`ContainerChange`],
//!   [`Release`] (a record), [`Verdict`], [`Outcome`], [`Failure`];
//! - decisions: `plan` (what a release changes), `record` (the journal: resume, interrupted),
//!   `lock` (lease expiry), `rollout_state` (is a rollout done), `running` (which digests
//!   run, and whether the pods must be asked), `promotion` (what a source
//!   ships), `approvals` (does an approval count), `status` (drift), `hook_request` (what hooks
//!   are shown), `yaml_syntax` (the fix for a YAML error the parser does not name).

pub mod admission;
pub mod approvals;
pub mod attestation;
pub mod commit;
pub mod error_text;
pub mod export;
pub mod failure;
pub mod gitops;
pub mod hook_request;
pub mod job;
pub mod lock;
pub mod manifest;
pub mod names;
pub mod plan;
pub mod preview;
pub mod promotion;
pub mod record;
pub mod rollout_state;
pub mod running;
pub mod selector;
pub mod spec;
pub mod status;
pub mod verdict;
pub mod workload;
pub mod yaml_syntax;

pub use commit::CommitSha;
pub use failure::{Failure, outcome_of};
/// What started a release: the contract's own type, so records, output and hooks agree.
pub use hooks_sdk::ReleaseKind;
/// How a release ended: one vocabulary for reports, records and hook requests.
pub use hooks_sdk::ReleaseOutcome as Outcome;
pub use hooks_sdk::helpers::ImageRef;
pub use plan::ContainerChange;
pub use record::{Actor, Release};
pub use verdict::{FailurePolicy, Verdict, VerdictOutcome};
pub use workload::{Container, Kind, Workload, WorkloadRef, WorkloadScope};
