//! The journal of one release: its record, written `in-progress` before the first change,
//! updated as workloads change, and finished with a definite outcome on every path. Like a
//! write-ahead log: say what you are about to do, do it, say how it ended.

use crate::cluster::EnvGateway;
use crate::domain::error_text::one_line;
use crate::domain::{Outcome, Release, Verdict, WorkloadRef};

/// A release's record and the gateway it is written through.
pub struct Journal<'g, G: EnvGateway> {
    gateway: &'g G,
    pub record: Release,
    /// Problems writing the record, for the report: a write that failed is said, not hidden.
    pub problems: Vec<String>,
}

impl<'g, G: EnvGateway> Journal<'g, G> {
    /// Writes `record` (`in-progress`) as a new revision; nothing may change before this
    /// succeeds, so an error here stops the release with the cluster untouched.
    pub async fn begin(gateway: &'g G, record: Release) -> anyhow::Result<Journal<'g, G>> {
        gateway.create_record(&record).await?;
        Ok(Journal {
            gateway,
            record,
            problems: Vec::new(),
        })
    }

    /// Takes over an abandoned record (a dead run's) as this release's own.
    pub async fn adopt(
        gateway: &'g G,
        mut record: Release,
        holder: &str,
    ) -> anyhow::Result<Journal<'g, G>> {
        let previous = std::mem::replace(&mut record.lock_holder, holder.to_string());
        record.message =
            format!("resumed by {holder}: the run of {previous} stopped before it finished");
        gateway.update_record(&record).await?;
        Ok(Journal {
            gateway,
            record,
            problems: Vec::new(),
        })
    }

    /// Notes that `workload` has been changed. A failed write is a problem, not a stop: the
    /// record already lists the planned changes and stays `in-progress` for the next run.
    pub async fn applied(&mut self, workload: &WorkloadRef) {
        if !self.record.applied.contains(workload) {
            self.record.applied.push(workload.clone());
        }
        self.write().await;
    }

    /// Notes that an object of the manifests has been applied.
    pub async fn applied_object(&mut self, object: &crate::domain::manifest::ObjectRef) {
        if !self.record.applied_objects.contains(object) {
            self.record.applied_objects.push(object.clone());
        }
        self.write().await;
    }

    /// Notes how one of the release's Jobs ended.
    pub async fn job(&mut self, run: crate::domain::job::JobRun) {
        self.record.jobs.push(run);
        self.write().await;
    }

    /// Ends the record with `outcome`.
    pub async fn finish(
        &mut self,
        outcome: Outcome,
        message: &str,
        hooks: &[Verdict],
        warnings: &[String],
    ) {
        self.record.outcome = outcome;
        if !message.is_empty() {
            self.record.message = if self.record.message.is_empty() {
                message.to_string()
            } else {
                format!("{}; {message}", self.record.message)
            };
        }
        self.record.hooks = hooks.to_vec();
        self.record.warnings = warnings.to_vec();
        self.record.finished_at = jiff::Timestamp::now().to_string();
        self.write().await;
    }

    async fn write(&mut self) {
        if let Err(e) = self.gateway.update_record(&self.record).await {
            tracing::warn!(
                revision = self.record.revision,
                "cannot update the release record: {}",
                one_line(&e)
            );
            self.problems.push(format!(
                "the record of revision {} could not be updated ({}); the next release of this app and environment finishes it",
                self.record.revision, one_line(&e)
            ));
        }
    }
}

/// Finishes a dead run's record as `interrupted`, saying what it had changed.
pub async fn close_abandoned<G: EnvGateway>(
    gateway: &G,
    record: &Release,
    holder: &str,
) -> Option<String> {
    let mut closed = record.clone();
    closed.outcome = Outcome::Interrupted;
    closed.finished_at = jiff::Timestamp::now().to_string();
    closed.message = format!(
        "the run of {} stopped before it finished ({}); closed by {holder}",
        record.lock_holder,
        crate::domain::record::describe_applied(record)
    );
    match gateway.update_record(&closed).await {
        Ok(()) => Some(format!(
            "revision {} was left in progress by a run that stopped; recorded it as interrupted ({})",
            record.revision,
            crate::domain::record::describe_applied(record)
        )),
        Err(e) => Some(format!(
            "revision {} was left in progress by a run that stopped and could not be closed: {}",
            record.revision,
            one_line(&e)
        )),
    }
}
