//! The one document every release verb prints, whatever the outcome: a table for people, JSON
//! or YAML for CI. Its JSON Schema is published as `hooks-sdk/schema/release-report.schema.json`.

use hooks_sdk::Approval;
use schemars::JsonSchema;
use serde::Serialize;

use super::Intent;
use crate::domain::error_text::one_line;
use crate::domain::{ContainerChange, Failure, Outcome, ReleaseKind, Verdict, plan};
use crate::output;

/// What `deploy`, `plan`, `promote` and `rollback` print on stdout: exactly one document for
/// every exit code once release.yaml is loaded. This is the stable `-o json` shape.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub outcome: Outcome,
    pub app: String,
    pub environment: String,
    pub kind: ReleaseKind,
    /// The full commit released, when known.
    pub commit: Option<String>,
    /// The revision recorded for this release (none when nothing was changed).
    pub revision: Option<u64>,
    pub changes: Vec<ContainerChange>,
    pub digests: Vec<String>,
    /// Every hook verdict, in the order the hooks ran (cluster policy first).
    pub hooks: Vec<Verdict>,
    /// Approvals that were valid for these digests and handed to the hooks.
    pub approvals: Vec<Approval>,
    /// What the user should know although it did not stop the release: hooks' warnings,
    /// post-deploy verdicts, a record that could not be written.
    pub warnings: Vec<String>,
    /// Why it ended so, in words (empty when it simply succeeded).
    pub message: String,
    /// For an environment with manifests: what the release does to each object (created,
    /// updated with its diff, unchanged, pruned).
    pub objects: Vec<super::manifests::ObjectChange>,
    /// `sha256:…` of the rendered manifests (none without manifests).
    pub manifests_digest: Option<String>,
    /// The release's Jobs: how each ended (a dry run: which would run, which are skipped),
    /// with the last lines of their logs.
    pub jobs: Vec<crate::domain::job::JobRun>,
    /// A GitOps environment's release: the repository, branch, path and commit written.
    pub gitops: Option<crate::domain::record::RecordedGitops>,
}

impl Report {
    /// The report of a release of `app` into `environment`, before anything happened.
    pub fn new(app: &str, environment: &str, intent: &Intent) -> Report {
        Report {
            outcome: Outcome::InProgress,
            app: app.into(),
            environment: environment.into(),
            kind: intent.kind,
            commit: intent.commit.as_ref().map(ToString::to_string),
            revision: None,
            changes: Vec::new(),
            digests: Vec::new(),
            hooks: Vec::new(),
            approvals: Vec::new(),
            warnings: Vec::new(),
            message: String::new(),
            objects: Vec::new(),
            manifests_digest: None,
            jobs: Vec::new(),
            gitops: None,
        }
    }

    /// The report of a verb that stopped before a release began (an unknown environment, a
    /// source that cannot be promoted, an unreachable cluster).
    pub fn early(app: &str, environment: &str, kind: ReleaseKind, err: &anyhow::Error) -> Report {
        let intent = Intent::new(kind);
        let mut report = Report::new(app, environment, &intent);
        report.outcome = crate::domain::outcome_of(err);
        report.message = one_line(err);
        report
    }

    pub fn with_changes(mut self, changes: Vec<ContainerChange>) -> Report {
        self.digests = plan::digests(&changes);
        self.changes = changes;
        self
    }

    /// Ends the report with `failure`'s message (if it has none yet).
    pub fn ended_by(mut self, outcome: Outcome, failure: Option<&Failure>) -> Report {
        self.outcome = outcome;
        if let Some(failure) = failure
            && self.message.is_empty()
        {
            self.message = failure.message.clone();
        }
        self
    }

    pub fn render(&self) -> String {
        let mut out = self.headline();
        let rows: Vec<Vec<String>> = self
            .changes
            .iter()
            .map(|c| {
                let mark = if c.changes() { "~" } else { "=" };
                vec![
                    c.workload.to_string(),
                    c.container.clone(),
                    format!("{mark} {}", c.after),
                    c.before.clone(),
                ]
            })
            .collect();
        if !rows.is_empty() {
            out.push_str(&output::table(
                &["WORKLOAD", "CONTAINER", "IMAGE", "BEFORE"],
                &rows,
            ));
        }
        if !self.objects.is_empty() {
            out.push_str(&self.render_objects());
        }
        if !self.jobs.is_empty() {
            let rows: Vec<Vec<String>> = self
                .jobs
                .iter()
                .map(|j| {
                    vec![
                        j.name.clone(),
                        j.phase.to_string(),
                        j.job.clone(),
                        format!("{:?}", j.outcome).to_lowercase(),
                        j.reason.clone(),
                    ]
                })
                .collect();
            out.push_str(&output::table(
                &["JOB", "PHASE", "NAME", "OUTCOME", "REASON"],
                &rows,
            ));
        }
        if !self.hooks.is_empty() {
            out.push_str(&render_verdicts(&self.hooks));
        }
        for warning in &self.warnings {
            out.push_str(&format!("warning: {warning}\n"));
        }
        out
    }

    /// Objects of the manifests with what happens to each; a plan also shows every diff.
    fn render_objects(&self) -> String {
        use super::manifests::ObjectAction;
        let rows: Vec<Vec<String>> = self
            .objects
            .iter()
            .map(|o| {
                let action = match o.action {
                    ObjectAction::Create => "+ create",
                    ObjectAction::Update => "~ update",
                    ObjectAction::Unchanged => "= unchanged",
                    ObjectAction::Prune => "- prune",
                };
                vec![o.object.to_string(), action.to_string()]
            })
            .collect();
        let mut out = output::table(&["OBJECT", "ACTION"], &rows);
        if self.outcome == Outcome::Planned {
            for o in self.objects.iter().filter(|o| !o.diff.is_empty()) {
                out.push_str(&o.diff);
                if !o.diff.ends_with('\n') {
                    out.push('\n');
                }
            }
        }
        out
    }

    fn headline(&self) -> String {
        let kind = format!("{:?}", self.kind).to_lowercase();
        let commit = self
            .commit
            .as_deref()
            .map_or(String::new(), |c| format!(" {}", &c[..c.len().min(7)]));
        let (app, env) = (&self.app, &self.environment);
        match self.outcome {
            Outcome::Unchanged => {
                format!("{app}{commit} already deployed to {env}: nothing to do\n")
            }
            Outcome::Planned => {
                format!("plan: {kind} {app}{commit} to {env} (dry run, nothing changed)\n")
            }
            outcome => {
                let revision = self
                    .revision
                    .map_or(String::new(), |r| format!(" (revision {r})"));
                let message = if outcome.is_success() || self.message.is_empty() {
                    String::new()
                } else {
                    format!("\n{}", self.message)
                };
                format!("{kind} {app}{commit} to {env}: {outcome}{revision}{message}\n")
            }
        }
    }
}

/// Hook verdicts as a table.
pub fn render_verdicts(verdicts: &[Verdict]) -> String {
    let rows: Vec<Vec<String>> = verdicts
        .iter()
        .map(|v| {
            let mut message = v.message().to_string();
            for w in &v.warnings {
                message.push_str(&format!(" (warning: {w})"));
            }
            vec![
                v.hook.clone(),
                v.phase.to_string(),
                v.verdict_word().to_string(),
                message,
            ]
        })
        .collect();
    output::table(&["HOOK", "PHASE", "VERDICT", "MESSAGE"], &rows)
}

/// The JSON Schema (draft 2020-12) of [`Report`], as published.
pub fn schema() -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(Report)).unwrap_or_default();
    if let Some(object) = schema.as_object_mut() {
        object.insert(
            "$id".into(),
            "https://kubectl-release.io/schemas/v1/release-report.schema.json".into(),
        );
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `UPDATE_SCHEMA=1 cargo test -p kubectl-release report_schema` rewrites the published copy.
    #[test]
    fn report_schema_is_published_and_current() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../hooks-sdk/schema/release-report.schema.json"
        );
        let text = hooks_sdk::schema::to_file_text(&schema());
        if std::env::var_os("UPDATE_SCHEMA").is_some() {
            std::fs::write(path, &text).unwrap();
        }
        let published = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            published == text,
            "{path} is out of date: run UPDATE_SCHEMA=1 cargo test -p kubectl-release report_schema"
        );
    }

    #[test]
    fn an_early_failure_still_reports_its_outcome_and_message() {
        let err = anyhow::Error::new(Failure::new(Outcome::Locked, "held by ci"));
        let report = Report::early("web", "qa", ReleaseKind::Deploy, &err);
        assert_eq!(report.outcome, Outcome::Locked);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["outcome"], "locked");
        assert_eq!(json["message"], "held by ci");
    }
}
