//! The command line: global kubectl-style flags and one variant per verb.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

pub mod exit;
pub mod signals;

use exit::EXIT_CODES_HELP;

const EXAMPLES: &str = "\
Examples:
  # Deploy the commit you are on to qa, wait for the rollout, record it
  kubectl release deploy qa

  # Deploy a branch, tag or short SHA; or, in CI without a checkout, a full SHA
  kubectl release deploy qa main
  kubectl release deploy qa --commit 3f2a9c1e0b7d4a5f8e6c2b1a0d9f8e7c6b5a4d3e

  # Show what would change and every hook verdict, change nothing
  kubectl release deploy qa --dry-run

  # Ship exactly the digests running in qa to production (CI)
  kubectl release promote qa production --wait -o json

  # What runs where, and the history of an environment
  kubectl release status
  kubectl release where 3f2a9c1
  kubectl release history qa
  kubectl release rollback qa --to-revision 3

  # Run one hook in the sandbox with a request file
  kubectl release hooks test hooks/required_labels.wasm --input request.json";

/// Commit-hash deploys, environment promotion and sandboxed WASM policy hooks.
///
/// Every commit builds one image tagged with its full commit hash; `deploy` rolls that exact
/// image out by digest, waits for it and records it; `promote` ships exactly the digests that
/// run in one environment to the next; hooks written in any WASI language decide what may go.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl-release",
    bin_name = "kubectl release",
    version,
    after_help = format!("{EXAMPLES}\n\n{EXIT_CODES_HELP}"),
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Flags every verb understands, following kubectl's conventions.
#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// Kubeconfig context to use for every environment, overriding release.yaml's `context`
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,

    /// Namespace, overriding release.yaml's `namespace` of the environment
    #[arg(short = 'n', long, global = true, value_name = "NAME")]
    pub namespace: Option<String>,

    /// Output format of the result on stdout
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// Release config file (default: release.yaml in this directory or the nearest parent up to the git root)
    #[arg(short = 'f', long = "file", global = true, value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// More logs on stderr: -v info, -vv debug, -vvv trace
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl GlobalArgs {
    /// The kubeconfig flags, for the cluster gateway (which never sees the parser's types).
    pub fn kube_settings(&self) -> crate::cluster::KubeSettings {
        crate::cluster::KubeSettings {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            namespace: self.namespace.clone(),
        }
    }
}

pub use crate::output::OutputFormat;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Deploy a commit's image to an environment, wait for it and record it
    Deploy(DeployArgs),
    /// Ship exactly the image digests running in one environment to the next
    Promote(PromoteArgs),
    /// Record your approval of what would be promoted into an environment
    Approve(ApproveArgs),
    /// List approvals for what would be promoted into an environment
    Approvals(EnvArg),
    /// One table across environments: revision, commit, digest, readiness, age, who, drift
    Status(StatusArgs),
    /// Which environments run a commit
    Where(WhereArgs),
    /// The release records of an environment
    History(EnvArg),
    /// Re-deploy a recorded revision (hooks still run)
    Rollback(RollbackArgs),
    /// Show what a deploy would change and every hook verdict; changes nothing
    Plan(DeployArgs),
    /// Adopt a running app: write release.yaml and export each environment's objects as manifests
    Init(InitArgs),
    /// Preview environments per pull request: up, down, list, gc
    #[command(subcommand)]
    Preview(PreviewCommand),
    /// Render each environment's manifests from the app spec through the generator module
    Generate(GenerateArgs),
    /// Test, verify, push and pull WASM hooks
    #[command(subcommand)]
    Hooks(HooksCommand),
    /// The organisation's cluster-wide hooks
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The admission webhook: attested approvals and the cluster policy, whoever acts
    #[command(subcommand)]
    Webhook(WebhookCommand),
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Serve AdmissionReviews over HTTPS for the kubeconfig's cluster
    Serve(WebhookServeArgs),
    /// Print the webhook configurations to `kubectl apply -f -`
    Config(WebhookConfigArgs),
}

#[derive(Debug, Args)]
pub struct WebhookServeArgs {
    /// HTTPS address to listen on
    #[arg(long, default_value = "0.0.0.0:8443", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// PEM certificate chain of the server (re-read when the file changes)
    #[arg(long, value_name = "FILE")]
    pub tls_cert: PathBuf,
    /// PEM private key of the server (re-read when the file changes)
    #[arg(long, value_name = "FILE")]
    pub tls_key: PathBuf,
    /// Plain-HTTP address for Prometheus metrics (GET /metrics)
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
pub struct WebhookConfigArgs {
    /// The server's URL, for a server outside the cluster: https://HOST:PORT
    #[arg(long, value_name = "URL", conflicts_with = "service")]
    pub url: Option<String>,
    /// The server's Service in the cluster: NAMESPACE/NAME (port 443)
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub service: Option<String>,
    /// PEM of the CA that signed the server's certificate
    #[arg(long, value_name = "FILE")]
    pub ca_bundle: PathBuf,
    /// The label of the namespaces whose workload changes the policy's admission hooks judge
    #[arg(
        long,
        default_value = "kubectl-release.io/governed=true",
        value_name = "KEY=VALUE"
    )]
    pub governed: String,
}

/// How to wait for a rollout; shared by every verb that changes workloads.
#[derive(Debug, Args, Clone)]
pub struct RolloutArgs {
    /// Give up waiting after this long (exit 6)
    #[arg(long, value_parser = parse_duration, default_value = "5m", value_name = "DURATION")]
    pub timeout: Duration,

    /// On failure put the previous images back and wait for them (default: release.yaml's `atomic`)
    #[arg(long)]
    pub atomic: bool,

    /// Show what would change and every hook verdict, change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Take over manifest fields another field manager (kubectl, a controller) owns
    #[arg(long)]
    pub force_conflicts: bool,

    /// Run pre-deploy Jobs again even if they succeeded for the same digests and manifests
    #[arg(long)]
    pub rerun_jobs: bool,

    /// Wait for the rollout: always done for a direct environment; a GitOps environment waits
    /// only with --wait, until its controller has applied the commit and the rollout is done
    #[arg(long)]
    pub wait: bool,

    /// GitOps: push the release to a new branch for review instead of the environment's branch
    #[arg(long)]
    pub pull_request: bool,

    /// GitOps, with --pull-request: a command run (by `sh -c`) to open the pull request; it
    /// gets RELEASE_BRANCH, RELEASE_BASE, RELEASE_REPO and RELEASE_TITLE in its environment
    #[arg(long, value_name = "COMMAND", requires = "pull_request")]
    pub pr_command: Option<String>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The app's name (release.yaml's `app`)
    #[arg(long)]
    pub app: String,
    /// The image repository, without tag (release.yaml's `image`)
    #[arg(long, value_name = "REPOSITORY")]
    pub image: String,
    /// An environment to adopt: NAME=NAMESPACE, or NAME=NAMESPACE@CONTEXT (repeat, in promotion order)
    #[arg(long = "env", value_name = "NAME=NAMESPACE[@CONTEXT]", required = true)]
    pub envs: Vec<String>,
    /// Directory of the app's repository to write into
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,
    /// Overwrite an existing release.yaml and manifests
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Environment to deploy to, as named in release.yaml
    pub env: String,

    #[command(flatten)]
    pub revision: RevisionArgs,

    #[command(flatten)]
    pub rollout: RolloutArgs,
}

/// Which commit to release, and how long to wait for its image: `deploy` and `preview up`.
#[derive(Debug, Clone, Args)]
pub struct RevisionArgs {
    /// Branch, tag, short or full SHA to deploy (default: HEAD)
    #[arg(conflicts_with = "commit")]
    pub rev: Option<String>,

    /// Full 40-hex commit to deploy, without a git checkout (CI)
    #[arg(long, value_name = "SHA")]
    pub commit: Option<String>,

    /// Wait this long for CI to push the commit's image before giving up
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub wait_for_image: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// Environment whose running digests are promoted
    pub from: String,
    /// Target environment (default: the environment whose `promoteFrom` is FROM)
    pub to: Option<String>,
    /// Promote into TO from a source other than its `promoteFrom` (hooks see that it was forced)
    #[arg(long)]
    pub force_source: bool,
    /// Block until the required approvals arrive, up to this long
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub wait_for_approval: Option<Duration>,
    /// Promote every app of a monorepo: each release.yaml below -f DIR (default: the git root)
    #[arg(long)]
    pub all: bool,
    /// With --all: how many apps are promoted at once
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    #[command(flatten)]
    pub rollout: RolloutArgs,
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// Environment the approval is for
    pub env: String,
    /// Commit being approved (default: what would be promoted into ENV)
    #[arg(long, value_name = "SHA")]
    pub commit: Option<String>,
    /// How long the approval stays valid
    #[arg(long, value_parser = parse_duration, default_value = "24h", value_name = "DURATION")]
    pub expires: Duration,
}

#[derive(Debug, Args)]
pub struct EnvArg {
    /// Environment, as named in release.yaml
    pub env: String,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Environments to show (default: all, in promotion order)
    pub envs: Vec<String>,
}

#[derive(Debug, Args)]
pub struct WhereArgs {
    /// Commit (short or full SHA, branch or tag)
    pub rev: String,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Environment to roll back
    pub env: String,
    /// Revision to restore (default: the one before the current)
    #[arg(long, value_name = "N")]
    pub to_revision: Option<u64>,
    #[command(flatten)]
    pub rollout: RolloutArgs,
}

#[derive(Debug, Subcommand)]
pub enum HooksCommand {
    /// Run one hook module in the sandbox against a request file and print its verdict
    Test(HooksTestArgs),
    /// Check that every configured hook loads, matches its sha256 pin and accepts its settings
    Verify,
    /// Publish a hook module as an OCI artifact; prints the pinned reference for a policy
    Push(HooksPushArgs),
    /// Fetch a hook module by digest into the local cache, verifying it
    Pull(HooksPullArgs),
}

#[derive(Debug, Args)]
pub struct HooksPushArgs {
    /// The hook's .wasm module
    pub module: PathBuf,
    /// Where to push it: oci://registry/repository[:tag]
    pub reference: String,
}

#[derive(Debug, Args)]
pub struct HooksPullArgs {
    /// The module to fetch: oci://registry/repository@sha256:…
    pub reference: String,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Environments to generate (default: every environment with `manifests`)
    pub envs: Vec<String>,
    /// Write nothing; exit 1 with a diff when the committed manifests differ (the CI check)
    #[arg(long)]
    pub check: bool,
    /// Every app of a monorepo (each release.yaml below -f DIR or the git root)
    #[arg(long)]
    pub all: bool,
    /// Do not read the environments' cluster policies: use release.yaml's generator, even
    /// where a policy mandates another (its releases will be denied)
    #[arg(long)]
    pub offline: bool,
}

#[derive(Debug, Subcommand)]
pub enum PreviewCommand {
    /// Deploy a pull request's commit into its own namespace (again: update it in place)
    Up(PreviewUpArgs),
    /// Delete a pull request's preview and everything in it
    Down(PreviewPrArgs),
    /// The app's previews: pull request, commit, age, expiry, readiness
    List,
    /// Delete expired previews, and with --keep those of closed pull requests
    Gc(PreviewGcArgs),
}

#[derive(Debug, Args)]
pub struct PreviewUpArgs {
    /// The pull request's number
    #[arg(long, value_name = "N")]
    pub pr: String,
    #[command(flatten)]
    pub revision: RevisionArgs,
    #[command(flatten)]
    pub rollout: RolloutArgs,
}

#[derive(Debug, Args)]
pub struct PreviewPrArgs {
    /// The pull request's number
    #[arg(long, value_name = "N")]
    pub pr: String,
}

#[derive(Debug, Args)]
pub struct PreviewGcArgs {
    /// The open pull requests (as CI knows them): previews of any other are deleted too
    #[arg(long, value_delimiter = ',', value_name = "N,M,…")]
    pub keep: Option<Vec<String>>,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// The effective hooks of environments: the cluster policy's, then the app's
    Show(StatusArgs),
}

#[derive(Debug, Args)]
pub struct HooksTestArgs {
    /// The hook's .wasm module
    pub module: PathBuf,
    /// A HookRequest JSON document
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// Settings (JSON or YAML) handed to the hook, replacing the request's
    #[arg(long, value_name = "FILE")]
    pub settings: Option<PathBuf>,
}

/// Durations as people write them: `90s`, `5m`, `2h30m`, `1d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("invalid duration `{text}`: {e} (write e.g. 30s, 5m, 2h)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_lists_every_verb_and_the_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        for verb in [
            "deploy",
            "promote",
            "approve",
            "approvals",
            "status",
            "where",
            "history",
            "rollback",
            "plan",
            "hooks",
            "policy",
        ] {
            assert!(help.contains(verb), "--help does not mention {verb}");
        }
        for code in ["3  denied by a hook", "7  locked by another release"] {
            assert!(help.contains(code), "--help lacks exit code line {code:?}");
        }
    }

    #[test]
    fn rev_and_commit_conflict() {
        let err = Cli::try_parse_from([
            "kubectl-release",
            "deploy",
            "qa",
            "main",
            "--commit",
            "3f2a9c1e0b7d4a5f8e6c2b1a0d9f8e7c6b5a4d3e",
        ])
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn bad_duration_names_the_value() {
        let err = Cli::try_parse_from(["kubectl-release", "deploy", "qa", "--timeout", "soon"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid duration `soon`"), "{err}");
    }
}
