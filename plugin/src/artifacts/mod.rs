//! What a release is made from, outside the cluster: `git` (a revision → the full commit),
//! `registry` (a commit's image → its digest), `manifests` (an environment's manifests at a commit)
//! and `oci_modules` (hook modules as OCI artifacts).

pub mod git;
pub mod gitops;
pub mod gitops_clones;
pub mod manifests;
pub mod oci_modules;
pub mod registry;
