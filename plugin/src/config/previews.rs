//! The `previews:` section: one environment per pull request, started from an environment
//! with manifests.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Environment, Manifests, Validator, locate, parse_positive_duration};
use crate::domain::preview;

pub const DEFAULT_NAMESPACE: &str = "{app}-pr-{pr}";
pub const DEFAULT_TTL: Duration = Duration::from_secs(72 * 3600);
pub const DEFAULT_MAX: usize = 10;

/// The section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawPreviews {
    pub from: String,
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub ttl: Option<String>,
    #[serde(default)]
    pub max: Option<usize>,
}

/// Previews, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewsConfig {
    /// The environment whose manifests, hooks' settings and context a preview starts from.
    pub from: String,
    /// Kubeconfig context of the previews; `None`: `from`'s.
    pub context: Option<String>,
    /// Namespace pattern with `{app}` and `{pr}`.
    pub namespace: String,
    /// How long a preview lives after its last `preview up`.
    pub ttl: Duration,
    /// Live previews at most.
    pub max: usize,
}

impl PreviewsConfig {
    /// The environment a preview of `pr` is released into: `from`'s manifests (its namespace
    /// is made by `preview up`, not by the release), in the preview's namespace and context,
    /// named `preview`.
    pub fn environment(&self, from: &Environment, namespace: &str) -> Environment {
        Environment {
            name: preview::ENVIRONMENT.to_string(),
            context: self.context.clone().or_else(|| from.context.clone()),
            namespace: namespace.to_string(),
            promote_from: None,
            atomic: from.atomic,
            manifests: from.manifests.as_ref().map(|m| Manifests {
                create_namespace: false,
                ..m.clone()
            }),
            require_verification: false,
            gitops: None,
        }
    }
}

impl Validator<'_> {
    /// `from` names an environment with manifests; the pattern can make a valid name; ttl and
    /// max are positive.
    pub(super) fn check_previews(
        &self,
        raw: &super::raw::RawConfig,
    ) -> Result<Option<PreviewsConfig>, ConfigError> {
        use locate::Seg::Key;

        let Some(p) = &raw.previews else {
            return Ok(None);
        };
        let at = |field: &'static str| [Key("previews"), Key(field)];
        let Some(from) = raw.environments.iter().find(|e| e.name == p.from) else {
            return Err(self.error(
                &at("from"),
                format!(
                    "unknown environment `{}`; known: {}",
                    p.from,
                    super::join_names(&raw.environments)
                ),
            ));
        };
        if from.manifests.is_none() {
            return Err(self.error(
                &at("from"),
                format!(
                    "environment `{}` has no `manifests`: a preview deploys the app's manifests into a new namespace",
                    p.from
                ),
            ));
        }
        let namespace = p
            .namespace
            .clone()
            .unwrap_or_else(|| DEFAULT_NAMESPACE.into());
        preview::check_pattern(&namespace, &raw.app)
            .map_err(|m| self.error(&at("namespace"), m))?;
        let ttl = match &p.ttl {
            Some(text) => parse_positive_duration(text).map_err(|m| self.error(&at("ttl"), m))?,
            None => DEFAULT_TTL,
        };
        let max = p.max.unwrap_or(DEFAULT_MAX);
        if max == 0 {
            return Err(self.error(&at("max"), "must be at least 1"));
        }
        Ok(Some(PreviewsConfig {
            from: p.from.clone(),
            context: p.context.clone(),
            namespace,
            ttl,
            max,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    const HEAD: &str = "apiVersion: kubectl-release.io/v1alpha1\nkind: ReleaseConfig\napp: web\n\
        image: registry.example.com/web\nenvironments:\n  - name: qa\n    namespace: qa\n    manifests: kubernetes/qa\n  - name: production\n    namespace: production\n";

    fn parse(previews: &str) -> Result<super::super::ReleaseConfig, super::ConfigError> {
        super::super::parse(Path::new("release.yaml"), &format!("{HEAD}{previews}"))
    }

    #[test]
    fn a_previews_section_with_defaults() {
        let cfg = parse("previews:\n  from: qa\n").unwrap();
        let p = cfg.previews.unwrap();
        assert_eq!(p.namespace, "{app}-pr-{pr}");
        assert_eq!(p.ttl, super::DEFAULT_TTL);
        assert_eq!(p.max, 10);
        let cfg = parse("previews:\n  from: qa\n  ttl: 2h\n  max: 3\n  context: kind\n").unwrap();
        let p = cfg.previews.clone().unwrap();
        assert_eq!((p.ttl.as_secs(), p.max), (7200, 3));
        let env = p.environment(cfg.environment("qa").unwrap(), "web-pr-1");
        assert_eq!(env.name, "preview");
        assert_eq!(env.context.as_deref(), Some("kind"));
        assert!(!env.manifests.unwrap().create_namespace);
        assert!(parse("").unwrap().previews.is_none());
    }

    #[test]
    fn bad_previews_sections_name_line_and_field() {
        let cases = [
            (
                "previews:\n  from: staging\n",
                "previews.from",
                "unknown environment `staging`",
            ),
            (
                "previews:\n  from: production\n",
                "previews.from",
                "has no `manifests`",
            ),
            (
                "previews:\n  from: qa\n  namespace: \"{app}_{pr}\"\n",
                "previews.namespace",
                "not a valid",
            ),
            (
                "previews:\n  from: qa\n  namespace: \"{app}\"\n",
                "previews.namespace",
                "{pr}",
            ),
            (
                "previews:\n  from: qa\n  ttl: 0s\n",
                "previews.ttl",
                "longer than zero",
            ),
            (
                "previews:\n  from: qa\n  max: 0\n",
                "previews.max",
                "at least 1",
            ),
        ];
        for (text, field, message) in cases {
            let err = parse(text).unwrap_err();
            assert_eq!(err.field, field, "{text}: {err}");
            assert!(err.message.contains(message), "{text}: {err}");
            assert!(err.line.is_some(), "{text}: {err}");
        }
    }
}
