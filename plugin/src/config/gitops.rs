//! `gitops:` of an environment: the release is written into a deployment repository (which
//! Argo CD, Flux or any controller applies) instead of patching the cluster.

use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use super::{ConfigError, Validator, locate, raw};

pub const DEFAULT_BRANCH: &str = "main";
pub const DEFAULT_AUTHOR_NAME: &str = "kubectl-release";
pub const DEFAULT_AUTHOR_EMAIL: &str = "kubectl-release@localhost";

/// The section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawGitops {
    pub repo: String,
    #[serde(default)]
    pub branch: Option<String>,
    pub path: PathBuf,
    #[serde(default)]
    pub author: Option<RawAuthor>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuthor {
    pub name: String,
    pub email: String,
}

/// A GitOps environment's repository, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gitops {
    /// A URL as git takes it, or an absolute path (a relative one is resolved against the
    /// directory of release.yaml).
    pub repo: String,
    pub branch: String,
    /// The environment's directory in the repository: a kustomization, or plain manifests.
    pub path: PathBuf,
    pub author_name: String,
    pub author_email: String,
}

/// Whether `repo` is something git reaches over the network (`https://…`, `ssh://…`,
/// `git@host:org/repo`) rather than a path on this machine.
fn is_url(repo: &str) -> bool {
    repo.contains("://")
        || repo
            .split_once(':')
            .is_some_and(|(host, _)| host.contains('@') && !host.contains('/'))
}

impl Validator<'_> {
    /// The repository, branch, path and author of environment `i`; a GitOps environment has
    /// no `manifests` of the app's own (they live in the repository).
    pub(super) fn check_gitops(
        &self,
        i: usize,
        env: &raw::RawEnvironment,
    ) -> Result<Option<Gitops>, ConfigError> {
        use locate::Seg::{Index, Key};

        let Some(g) = &env.gitops else {
            return Ok(None);
        };
        let at = |field: &'static str| [Key("environments"), Index(i), Key("gitops"), Key(field)];
        if env.manifests.is_some() {
            return Err(self.error(
                &[Key("environments"), Index(i), Key("manifests")],
                "a GitOps environment's manifests live in its repository (gitops.path): remove `manifests`",
            ));
        }
        if g.repo.trim().is_empty() {
            return Err(self.error(&at("repo"), "must name a repository (a URL or a path)"));
        }
        let inside = g
            .path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !inside || g.path.as_os_str().is_empty() {
            return Err(self.error(
                &at("path"),
                format!(
                    "`{}` must be a directory inside the repository (relative, no `..`), e.g. apps/{}",
                    g.path.display(),
                    env.name
                ),
            ));
        }
        let branch = g.branch.clone().unwrap_or_else(|| DEFAULT_BRANCH.into());
        if branch.is_empty() || branch.starts_with('-') || branch.contains(char::is_whitespace) {
            return Err(self.error(&at("branch"), format!("`{branch}` is not a branch name")));
        }
        let repo = if is_url(&g.repo) || Path::new(&g.repo).is_absolute() {
            g.repo.clone()
        } else {
            let base = self.path.parent().unwrap_or(Path::new("."));
            base.join(&g.repo).display().to_string()
        };
        let (author_name, author_email) = match &g.author {
            Some(a) if a.name.trim().is_empty() || !a.email.contains('@') => {
                return Err(self.error(&at("author"), "needs a `name` and an `email` (name@host)"));
            }
            Some(a) => (a.name.clone(), a.email.clone()),
            None => (DEFAULT_AUTHOR_NAME.into(), DEFAULT_AUTHOR_EMAIL.into()),
        };
        Ok(Some(Gitops {
            repo,
            branch,
            path: g.path.clone(),
            author_name,
            author_email,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::is_url;

    const HEAD: &str = "apiVersion: kubectl-release.io/v1alpha1\nkind: ReleaseConfig\napp: web\nimage: r/web\nenvironments:\n  - name: production\n    namespace: web\n";

    fn parse(env: &str) -> Result<super::super::ReleaseConfig, super::ConfigError> {
        super::super::parse(
            std::path::Path::new("/apps/web/release.yaml"),
            &format!("{HEAD}{env}"),
        )
    }

    #[test]
    fn urls_and_paths_are_told_apart() {
        assert!(is_url("https://github.com/org/deploy.git"));
        assert!(is_url("git@github.com:org/deploy.git"));
        assert!(is_url("ssh://git@host/org/deploy"));
        assert!(!is_url("../deploy"));
        assert!(!is_url("/srv/git/deploy.git"));
    }

    #[test]
    fn a_relative_repository_is_resolved_and_defaults_are_filled_in() {
        let cfg = parse("    gitops:\n      repo: ../deploy.git\n      path: apps/web\n").unwrap();
        let g = cfg.environments[0].gitops.clone().unwrap();
        assert_eq!(g.repo, "/apps/web/../deploy.git");
        assert_eq!(g.branch, "main");
        assert_eq!(g.author_name, "kubectl-release");
    }

    #[test]
    fn bad_sections_name_the_field() {
        let err = parse("    gitops:\n      repo: x\n      path: ../up\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("environments[0].gitops.path"), "{err}");
        let err = parse("    manifests: k\n    gitops:\n      repo: x\n      path: a\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("live in its repository"), "{err}");
        let err =
            parse("    gitops:\n      repo: x\n      path: a\n      author: {name: a, email: b}\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("gitops.author"), "{err}");
        let err = parse("    gitops:\n      repo: x\n      path: a\njobs:\n  - name: migrate\n    phase: pre-deploy\n    command: [sh]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("jobs[0]") && err.contains("released through Git"),
            "{err}"
        );
    }
}
