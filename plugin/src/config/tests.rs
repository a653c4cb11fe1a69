use std::path::Path;

use super::*;

const GOOD: &str = "\
apiVersion: kubectl-release.io/v1alpha1
kind: ReleaseConfig
app: web
image: registry.example.com/acme/web
environments:
  - name: qa
    context: qa-cluster
    namespace: web-qa
  - name: production
    context: prod-cluster
    namespace: web
    promoteFrom: qa
hooks:
  - name: same-image
    module: hooks/same_image.wasm
    sha256: 9f2c000000000000000000000000000000000000000000000000000000000abc
    phases: [pre-promote, pre-deploy]
    environments: [production]
    failurePolicy: Fail
    timeout: 3s
    memory: 32Mi
    settings: {strict: true}
";

fn parse_str(text: &str) -> Result<ReleaseConfig, ConfigError> {
    parse(Path::new("/repo/release.yaml"), text)
}

/// Parses `GOOD` with one substitution and returns the error's display text.
fn error_with(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "test substitution {from:?} not found");
    parse_str(&GOOD.replacen(from, to, 1))
        .expect_err("config should be rejected")
        .to_string()
}

#[test]
fn good_config_parses_with_defaults_filled_in() {
    let cfg = parse_str(GOOD).unwrap();
    assert_eq!(cfg.app, "web");
    assert_eq!(cfg.environment_names(), ["qa", "production"]);
    assert_eq!(cfg.environments[1].promote_from.as_deref(), Some("qa"));
    assert_eq!(cfg.history_limit, DEFAULT_HISTORY_LIMIT);
    let hook = &cfg.hooks[0];
    assert_eq!(hook.module, Path::new("/repo/hooks/same_image.wasm"));
    assert_eq!(hook.limits.timeout, Duration::from_secs(3));
    assert_eq!(hook.limits.memory_bytes, 32 << 20);
    assert_eq!(hook.limits.max_output_bytes, DEFAULT_HOOK_MAX_OUTPUT);
    assert!(hook.applies_to(Phase::PrePromote, "production"));
    assert!(!hook.applies_to(Phase::PrePromote, "qa"));
    assert!(!hook.applies_to(Phase::PostDeploy, "production"));
    assert_eq!(hook.settings, serde_json::json!({"strict": true}));
}

#[test]
fn hook_phases_default_to_every_pre_phase() {
    let text = GOOD.replace("    phases: [pre-promote, pre-deploy]\n", "");
    let cfg = parse_str(&text).unwrap();
    assert_eq!(
        cfg.hooks[0].phases,
        [Phase::PreDeploy, Phase::PrePromote, Phase::PreRollback]
    );
}

#[test]
fn workloads_default_to_every_kind_and_kinds_narrow_them_in_a_fixed_order() {
    use crate::domain::Kind;
    assert_eq!(parse_str(GOOD).unwrap().workloads.kinds, Kind::ALL);
    let text = GOOD.replace(
        "app: web\n",
        "app: web\nworkloads: {kinds: [CronJob, Deployment, CronJob], selector: tier=web}\n",
    );
    let cfg = parse_str(&text).unwrap();
    assert_eq!(cfg.workloads.kinds, [Kind::Deployment, Kind::CronJob]);
    assert_eq!(cfg.workloads.selector.as_deref(), Some("tier=web"));
}

#[test]
fn an_empty_or_unknown_workload_kind_is_refused_with_its_line() {
    let err = error_with("app: web\n", "app: web\nworkloads:\n  kinds: []\n");
    assert!(
        err.starts_with("/repo/release.yaml:5: workloads.kinds: lists no kind"),
        "{err}"
    );
    let err = error_with(
        "app: web\n",
        "app: web\nworkloads:\n  kinds: [Deploymnet]\n",
    );
    assert!(err.contains("unknown variant `Deploymnet`"), "{err}");
    assert!(err.contains("Deployment"), "{err}");
}

#[test]
fn unknown_field_is_named_with_its_line() {
    let err = error_with("    context: qa-cluster", "    contxt: qa-cluster");
    assert!(
        err.starts_with("/repo/release.yaml:7: environments[0]: unknown field `contxt`"),
        "{err}"
    );
}

#[test]
fn a_tab_in_the_indentation_is_named_with_its_line() {
    let err = error_with("  - name: qa", "\t- name: qa");
    assert!(err.starts_with("/repo/release.yaml:6: "), "{err}");
    assert!(
        err.contains("indented with a tab: YAML indents with spaces only"),
        "{err}"
    );
}

#[test]
fn unknown_top_level_field_is_named() {
    let err = error_with("app: web\n", "app: web\nimages: x\n");
    assert!(
        err.starts_with("/repo/release.yaml:4: unknown field `images`"),
        "{err}"
    );
    assert!(err.contains("unknown field `images`"), "{err}");
}

#[test]
fn missing_image_is_named() {
    let err = error_with("image: registry.example.com/acme/web\n", "");
    assert!(err.contains("missing field `image`"), "{err}");
    assert!(err.starts_with("/repo/release.yaml:"), "{err}");
}

#[test]
fn image_with_a_tag_is_refused() {
    let err = error_with("acme/web\n", "acme/web:latest\n");
    assert_eq!(
        err,
        "/repo/release.yaml:4: image: `registry.example.com/acme/web:latest` must be a repository \
         without a tag or digest: the tag is always the commit"
    );
}

#[test]
fn registry_port_is_not_mistaken_for_a_tag() {
    let cfg = parse_str(&GOOD.replace("registry.example.com/", "127.0.0.1:5000/")).unwrap();
    assert_eq!(cfg.image, "127.0.0.1:5000/acme/web");
}

#[test]
fn duplicate_environment_names_are_refused() {
    let err = error_with("  - name: production", "  - name: qa");
    assert_eq!(
        err,
        "/repo/release.yaml:9: environments[1].name: duplicate environment `qa`"
    );
}

#[test]
fn promote_from_an_unknown_environment_is_refused() {
    let err = error_with("promoteFrom: qa", "promoteFrom: staging");
    assert_eq!(
        err,
        "/repo/release.yaml:12: environments[1].promoteFrom: unknown environment `staging`; known: qa, production"
    );
}

#[test]
fn promotion_cycle_is_refused() {
    let err = error_with(
        "    namespace: web-qa\n",
        "    namespace: web-qa\n    promoteFrom: production\n",
    );
    assert_eq!(
        err,
        "/repo/release.yaml:9: environments[0].promoteFrom: promotion order forms a cycle: qa <- production <- qa"
    );
}

#[test]
fn promoting_from_itself_is_a_cycle() {
    let err = error_with("promoteFrom: qa", "promoteFrom: production");
    assert!(err.contains("cycle: production <- production"), "{err}");
}

#[test]
fn hook_without_sha256_is_refused() {
    let err = error_with(
        "    sha256: 9f2c000000000000000000000000000000000000000000000000000000000abc\n",
        "",
    );
    assert!(err.contains("hooks[0]: missing field `sha256`"), "{err}");
}

#[test]
fn hook_with_a_bad_sha256_is_refused() {
    let err = error_with("sha256: 9f2c0000", "sha256: 9f2g0000");
    assert!(
        err.starts_with("/repo/release.yaml:16: hooks[0].sha256: `9f2g"),
        "{err}"
    );
    assert!(err.contains("is not a sha256 (64 hex digits)"), "{err}");
    assert!(err.contains("sha256sum hooks/same_image.wasm"), "{err}");
}

#[test]
fn bad_durations_and_sizes_are_refused() {
    let err = error_with("timeout: 3s", "timeout: soon");
    assert!(
        err.starts_with("/repo/release.yaml:20: hooks[0].timeout: `soon` is not a duration"),
        "{err}"
    );
    let err = error_with("timeout: 3s", "timeout: 0s");
    assert!(
        err.contains("hooks[0].timeout: `0s` must be longer than zero"),
        "{err}"
    );
    let err = error_with("memory: 32Mi", "memory: lots");
    assert!(
        err.starts_with("/repo/release.yaml:21: hooks[0].memory: `lots` is not a size"),
        "{err}"
    );
}

#[test]
fn empty_environment_list_is_refused() {
    let text = "apiVersion: kubectl-release.io/v1alpha1\nkind: ReleaseConfig\napp: web\nimage: r/web\nenvironments: []\n";
    let err = parse_str(text).unwrap_err().to_string();
    assert_eq!(
        err,
        "/repo/release.yaml:5: environments: at least one environment is needed"
    );
}

#[test]
fn hook_naming_an_unknown_environment_is_refused() {
    let err = error_with("environments: [production]", "environments: [prod]");
    assert!(
        err.contains("hooks[0].environments[0]: unknown environment `prod`"),
        "{err}"
    );
}

#[test]
fn unknown_phase_is_refused() {
    let err = error_with("[pre-promote, pre-deploy]", "[pre-promote, before-deploy]");
    assert!(err.contains("unknown variant `before-deploy`"), "{err}");
}

#[test]
fn wrong_api_version_and_kind_are_refused() {
    let err = error_with("v1alpha1", "v2");
    assert!(
        err.contains("apiVersion: must be `kubectl-release.io/v1alpha1`"),
        "{err}"
    );
    let err = error_with("kind: ReleaseConfig", "kind: Deployment");
    assert!(
        err.contains("kind: must be `ReleaseConfig`, found `Deployment`"),
        "{err}"
    );
}

#[test]
fn invalid_app_name_is_refused() {
    let err = error_with("app: web", "app: Web_App");
    assert!(
        err.starts_with("/repo/release.yaml:3: app: `Web_App` is not a valid app name"),
        "{err}"
    );
}

#[test]
fn promotion_order_puts_sources_first() {
    let text = GOOD.replace(
        "  - name: qa\n    context: qa-cluster\n    namespace: web-qa\n",
        "",
    ) + "";
    // production listed first, qa appended after it: order must still be qa, production.
    let text = text.replace("hooks:", "  - name: qa\n    namespace: web-qa\nhooks:");
    let cfg = parse_str(&text).unwrap();
    assert_eq!(cfg.environment_names(), ["production", "qa"]);
    let order: Vec<_> = cfg
        .promotion_order()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(order, ["qa", "production"]);
}

#[test]
fn unknown_environment_lookup_lists_known_ones() {
    let cfg = parse_str(GOOD).unwrap();
    let err = cfg.environment("staging").unwrap_err();
    assert_eq!(err.outcome, crate::domain::Outcome::Invalid);
    assert!(
        err.message.contains("unknown environment `staging`"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("known: qa, production"),
        "{}",
        err.message
    );
}

#[test]
fn discovery_walks_up_to_the_git_root() {
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("repo");
    let deep = repo.join("services/web/src");
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::write(repo.join("services/web/release.yaml"), GOOD).unwrap();
    assert_eq!(
        discover(None, &deep).unwrap(),
        repo.join("services/web/release.yaml")
    );

    // Above the git root is not searched, even if a release.yaml is there.
    std::fs::remove_file(repo.join("services/web/release.yaml")).unwrap();
    std::fs::write(root.path().join("release.yaml"), GOOD).unwrap();
    let err = discover(None, &deep).unwrap_err().to_string();
    assert!(
        err.contains("no release.yaml here or in a parent directory up to the git root"),
        "{err}"
    );
}

#[test]
fn explicit_missing_file_is_an_error() {
    let err = discover(Some(Path::new("/nope/release.yaml")), Path::new("/")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "/nope/release.yaml: no such file (given with -f/--file)"
    );
}

#[test]
fn quantities() {
    assert_eq!(parse_quantity("64Mi"), Ok(64 << 20));
    assert_eq!(parse_quantity("1Gi"), Ok(1 << 30));
    assert_eq!(parse_quantity("1000"), Ok(1000));
    assert!(parse_quantity("1.5Gi").is_err());
    assert!(parse_quantity("0").is_err());
}

#[test]
fn discover_all_finds_every_app_of_a_monorepo() {
    let root = tempfile::tempdir().unwrap();
    for dir in [
        "services/web",
        "services/api",
        "target/debug",
        ".git/x",
        "tools",
    ] {
        std::fs::create_dir_all(root.path().join(dir)).unwrap();
    }
    for file in [
        "services/web/release.yaml",
        "services/api/release.yaml",
        "target/debug/release.yaml",
        ".git/x/release.yaml",
        "tools/other.yaml",
    ] {
        std::fs::write(root.path().join(file), GOOD).unwrap();
    }
    let found = discover_all(root.path()).unwrap();
    assert_eq!(
        found,
        [
            root.path().join("services/api/release.yaml"),
            root.path().join("services/web/release.yaml")
        ]
    );
}

#[test]
fn manifests_and_their_options_are_read_per_environment() {
    let text = GOOD.replacen(
        "    namespace: web-qa\n",
        "    namespace: web-qa\n    manifests: kubernetes/qa\n    createNamespace: true\n    allow: [clusterScoped]\n",
        1,
    );
    let cfg = parse_str(&text).unwrap();
    let qa = cfg.environment("qa").unwrap().manifests.clone().unwrap();
    assert_eq!(qa.path, Path::new("kubernetes/qa"));
    assert!(qa.create_namespace);
    assert!(qa.allowed.cluster_scoped && !qa.allowed.other_namespaces);
    assert!(cfg.environment("production").unwrap().manifests.is_none());
}

#[test]
fn manifests_outside_the_app_directory_are_refused() {
    let err = error_with(
        "    namespace: web-qa\n",
        "    namespace: web-qa\n    manifests: ../other/kubernetes\n",
    );
    assert!(
        err.contains("environments[0].manifests") && err.contains("no `..`"),
        "{err}"
    );
    let err = error_with(
        "    namespace: web-qa\n",
        "    namespace: web-qa\n    manifests: /etc/kubernetes\n",
    );
    assert!(err.contains("not absolute"), "{err}");
}

#[test]
fn manifest_options_without_manifests_are_refused() {
    let err = error_with(
        "    namespace: web-qa\n",
        "    namespace: web-qa\n    createNamespace: true\n",
    );
    assert!(
        err.contains("environments[0].createNamespace")
            && err.contains("only applies to an environment with `manifests`"),
        "{err}"
    );
    let err = error_with(
        "    namespace: web-qa\n",
        "    namespace: web-qa\n    manifests: k\n    allow: [everything]\n",
    );
    assert!(err.contains("allow"), "{err}");
}

#[test]
fn jobs_are_read_with_their_defaults() {
    let text = format!(
        "{GOOD}jobs:\n  - name: migrate\n    phase: pre-deploy\n    command: [bin/migrate]\n    env: {{LEVEL: debug}}\n    timeout: 5m\n  - name: smoke\n    phase: post-deploy\n    environments: [qa]\n"
    );
    let cfg = parse_str(&text).unwrap();
    assert_eq!(cfg.jobs.len(), 2);
    assert_eq!(cfg.jobs[0].timeout, Duration::from_secs(300));
    assert_eq!(cfg.jobs[0].backoff_limit, 0);
    assert_eq!(cfg.jobs[1].timeout, jobs::DEFAULT_JOB_TIMEOUT);
    assert!(cfg.jobs[1].applies_to("qa") && !cfg.jobs[1].applies_to("production"));
}

#[test]
fn bad_jobs_are_named_with_their_field() {
    let with = |jobs: &str| {
        parse_str(&format!("{GOOD}jobs:\n{jobs}"))
            .expect_err("config should be rejected")
            .to_string()
    };
    let err = with("  - {name: migrate, phase: during-deploy}\n");
    assert!(
        err.contains("jobs[0].phase") || err.contains("during-deploy"),
        "{err}"
    );
    let err = with("  - {name: m, phase: pre-deploy}\n  - {name: m, phase: post-deploy}\n");
    assert!(
        err.contains("jobs[1].name") && err.contains("duplicate"),
        "{err}"
    );
    let err = with("  - {name: m, phase: pre-deploy, environments: [staging]}\n");
    assert!(err.contains("unknown environment `staging`"), "{err}");
    let err = with("  - {name: m, phase: pre-deploy, timeout: soon}\n");
    assert!(err.contains("jobs[0].timeout"), "{err}");
}

#[test]
fn require_verification_needs_a_source() {
    let err = error_with(
        "    namespace: web-qa\n",
        "    namespace: web-qa\n    requireVerification: true\n",
    );
    assert!(
        err.contains("requireVerification") && err.contains("promoteFrom"),
        "{err}"
    );
}

#[test]
fn hooks_may_name_the_preview_environment_when_there_are_previews() {
    let hook_for_previews =
        GOOD.replacen("environments: [production]", "environments: [preview]", 1);
    let err = parse_str(&hook_for_previews)
        .expect_err("no previews: `preview` is unknown")
        .to_string();
    assert!(err.contains("unknown environment `preview`"), "{err}");
    let with_previews = hook_for_previews.replacen("hooks:\n", "previews: {from: qa}\nhooks:\n", 1);
    let with_previews = with_previews.replacen(
        "    namespace: web-qa\n",
        "    namespace: web-qa\n    manifests: kubernetes/qa\n",
        1,
    );
    let cfg = parse_str(&with_previews).unwrap();
    assert!(cfg.hooks[0].applies_to(hooks_sdk::Phase::PreDeploy, "preview"));
}
