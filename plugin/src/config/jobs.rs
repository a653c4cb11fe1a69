//! The `jobs` of release.yaml: migrations and verification in short form.

use std::collections::HashSet;
use std::time::Duration;

use super::{ConfigError, Validator, join_names, locate, parse_positive_duration, raw};
use crate::domain::job::JobSpec;

/// A Job's `timeout` when none is given: long enough for a migration, short enough to notice.
pub const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(600);
/// Job names go into object names with the app and the revision: keep room for both.
const MAX_JOB_NAME: usize = 30;

impl Validator<'_> {
    pub(super) fn check_jobs(
        &self,
        raw: &raw::RawConfig,
        names: &HashSet<&str>,
    ) -> Result<Vec<JobSpec>, ConfigError> {
        use locate::Seg::{Index, Key};

        let mut jobs = Vec::new();
        let mut seen: HashSet<&str> = HashSet::new();
        for (i, job) in raw.jobs.iter().enumerate() {
            let at = |field: &'static str| [Key("jobs"), Index(i), Key(field)];
            if !crate::domain::names::is_dns_label(&job.name) || job.name.len() > MAX_JOB_NAME {
                return Err(self.error(
                    &at("name"),
                    format!(
                        "`{}` is not a valid job name: at most {MAX_JOB_NAME} lower-case letters, digits and '-'",
                        job.name
                    ),
                ));
            }
            if !seen.insert(&job.name) {
                return Err(self.error(&at("name"), format!("duplicate job `{}`", job.name)));
            }
            if let Some(envs) = &job.environments {
                for (j, name) in envs.iter().enumerate() {
                    if !names.contains(name.as_str()) {
                        return Err(self.error(
                            &[Key("jobs"), Index(i), Key("environments"), Index(j)],
                            format!(
                                "unknown environment `{name}`; known: {}",
                                join_names(&raw.environments)
                            ),
                        ));
                    }
                }
            }
            let timeout = match &job.timeout {
                Some(text) => {
                    parse_positive_duration(text).map_err(|m| self.error(&at("timeout"), m))?
                }
                None => DEFAULT_JOB_TIMEOUT,
            };
            jobs.push(JobSpec {
                name: job.name.clone(),
                phase: job.phase,
                command: job.command.clone(),
                args: job.args.clone(),
                env: job.env.clone(),
                timeout,
                backoff_limit: job.backoff_limit.unwrap_or(0),
                environments: job.environments.clone(),
            });
        }
        Ok(jobs)
    }
}
