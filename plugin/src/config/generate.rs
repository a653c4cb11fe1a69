//! The `spec:` and `generator:` sections: the app spec and the module that renders it into
//! each environment's manifests (`kubectl release generate`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{
    ConfigError, HookConfig, HookLimits, Validator, locate, parse_positive_duration,
    parse_quantity, raw,
};
use crate::domain::spec::{self, AppSpec};

/// The name the generator goes by in sandbox errors.
pub const GENERATOR_NAME: &str = "generator";

/// `generator:` as written: a module pinned like a hook's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawGenerator {
    pub module: PathBuf,
    pub sha256: String,
    #[serde(default)]
    pub settings: Option<serde_json::Value>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub memory: Option<String>,
    #[serde(default)]
    pub max_output: Option<String>,
    #[serde(default)]
    pub max_logs: Option<String>,
}

/// The spec and its generator, validated.
#[derive(Debug, Clone)]
pub struct GenerateConfig {
    pub spec: AppSpec,
    /// The generator as a hook config (no phases): loaded and pinned by the hook engine.
    /// `None` when the cluster policy is to provide it (a generator it mandates wins anyway).
    pub generator: Option<HookConfig>,
}

impl Validator<'_> {
    /// A generator needs a spec (a spec alone waits for the cluster policy's generator); the
    /// spec's rules; the generator's pin and limits.
    pub(super) fn check_generate(
        &self,
        raw: &raw::RawConfig,
    ) -> Result<Option<GenerateConfig>, ConfigError> {
        use locate::Seg::Key;

        let (spec, generator) = match (&raw.spec, &raw.generator) {
            (None, None) => return Ok(None),
            (None, Some(_)) => {
                return Err(self.error(&[Key("generator")], "needs a `spec:` to render"));
            }
            (Some(s), g) => (s, g.as_ref()),
        };
        let names: Vec<&str> = raw.environments.iter().map(|e| e.name.as_str()).collect();
        spec::check(spec, &names).map_err(|p| {
            let mut segments = vec![Key("spec")];
            segments.extend(p.at.iter().map(|k| Key(k)));
            ConfigError {
                file: self.path.to_path_buf(),
                line: locate::line_of(self.text, &segments),
                field: p.field,
                message: p.message,
            }
        })?;
        Ok(Some(GenerateConfig {
            spec: spec.clone(),
            generator: generator.map(|g| self.check_generator(g)).transpose()?,
        }))
    }

    fn check_generator(&self, g: &RawGenerator) -> Result<HookConfig, ConfigError> {
        use locate::Seg::Key;

        let at = |field: &'static str| [Key("generator"), Key(field)];
        let sha = g.sha256.trim().to_ascii_lowercase();
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.error(
                &at("sha256"),
                format!(
                    "`{}` is not a sha256 (64 hex digits); pin the module with the output of `sha256sum {}`",
                    g.sha256,
                    g.module.display()
                ),
            ));
        }
        let mut limits = HookLimits::default();
        if let Some(text) = &g.timeout {
            limits.timeout =
                parse_positive_duration(text).map_err(|m| self.error(&at("timeout"), m))?;
        }
        if let Some(text) = &g.memory {
            limits.memory_bytes = parse_quantity(text).map_err(|m| self.error(&at("memory"), m))?;
        }
        if let Some(text) = &g.max_output {
            limits.max_output_bytes =
                parse_quantity(text).map_err(|m| self.error(&at("maxOutput"), m))?;
        }
        if let Some(text) = &g.max_logs {
            limits.max_log_bytes =
                parse_quantity(text).map_err(|m| self.error(&at("maxLogs"), m))?;
        }
        let base = self.path.parent().unwrap_or(Path::new("."));
        Ok(HookConfig {
            name: GENERATOR_NAME.to_string(),
            module: base.join(&g.module),
            sha256: sha,
            phases: Vec::new(),
            environments: None,
            failure_policy: super::FailurePolicy::Fail,
            needs: Vec::new(),
            limits,
            settings: g.settings.clone().unwrap_or_else(|| serde_json::json!({})),
        })
    }
}

#[cfg(test)]
mod tests {
    const HEAD: &str = "apiVersion: kubectl-release.io/v1alpha1\nkind: ReleaseConfig\napp: web\nimage: r/web\n\
        environments:\n  - name: qa\n    namespace: web-qa\n    manifests: kubernetes/qa\n";
    const GEN: &str = "generator:\n  module: gen.wasm\n  sha256: 0000000000000000000000000000000000000000000000000000000000000000\n  timeout: 1s\n";

    fn parse(text: &str) -> Result<super::super::ReleaseConfig, super::ConfigError> {
        super::super::parse(std::path::Path::new("/repo/release.yaml"), text)
    }

    #[test]
    fn spec_and_generator_are_read() {
        let text = format!(
            "{HEAD}spec:\n  containers:\n    web:\n      ports: [{{name: http, port: 80}}]\n{GEN}"
        );
        let cfg = parse(&text).unwrap();
        let g = cfg.generate.unwrap();
        let generator = g.generator.unwrap();
        assert_eq!(generator.module, std::path::Path::new("/repo/gen.wasm"));
        assert_eq!(generator.limits.timeout, std::time::Duration::from_secs(1));
        assert!(g.spec.containers.contains_key("web"));
    }

    #[test]
    fn spec_errors_carry_file_line_and_field() {
        let text = format!("{HEAD}spec:\n  containers:\n    web:\n      portz: []\n{GEN}");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("/repo/release.yaml:12"), "{err}");
        assert!(
            err.contains("spec.containers.web") && err.contains("portz"),
            "{err}"
        );

        let text = format!("{HEAD}spec:\n  containers: {{}}\n{GEN}");
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.starts_with("/repo/release.yaml:10: spec.containers:"),
            "{err}"
        );

        // A spec alone is fine: the cluster policy may mandate the generator.
        let text = format!("{HEAD}spec:\n  containers: {{web: {{}}}}\n");
        assert!(parse(&text).unwrap().generate.unwrap().generator.is_none());
    }
}
