//! Run lifecycle: begin, complete (guarded), resume, export status,
//! reproducibility grade, owner heartbeat.

use diesel::prelude::*;

use contracts::records::{Run, RunOwner, RunState};
use contracts::{
    canonical_json, sha256_hex, ContentHash, Determinism, ExportStatus, ReproducibilityGrade, RunId, RunStatus, CANONICAL_VERSION,
};

use super::{ensure_one, now, Recorder};
use crate::error::{LandscapeError, Result};
use crate::schema::{nodes, runs};

impl Recorder {
    /// Begins a run with the resolved settings (secrets already fingerprinted).
    pub fn begin_run(&mut self, settings: &serde_json::Value, owner: Option<(String, u32)>) -> Result<Run> {
        let settings_json = canonical_json(settings)?;
        let config_hash = ContentHash::of_bytes(settings_json.as_bytes());
        let run_id = RunId::new();
        let (at, naive) = now();
        let owner = owner.map(|(host, pid)| RunOwner { host, pid, heartbeat_at: at });
        let affected = diesel::insert_into(runs::table)
            .values((
                runs::run_id.eq(run_id.as_str()),
                runs::started_at.eq(naive),
                runs::config_hash.eq(config_hash.as_str()),
                runs::settings_json.eq(&settings_json),
                runs::canonical_version.eq(CANONICAL_VERSION),
                runs::status.eq(RunStatus::Running.as_str()),
                runs::owner_host.eq(owner.as_ref().map(|o| o.host.as_str())),
                runs::owner_pid.eq(owner.as_ref().map(|o| i64::from(o.pid))),
                runs::heartbeat_at.eq(owner.as_ref().map(|_| naive)),
            ))
            .execute(self.conn()?)?;
        ensure_one(affected, || format!("insert of run {run_id}"))?;
        Ok(Run {
            run_id,
            started_at: at,
            state: RunState::Running,
            config_hash,
            settings_json,
            reproducibility_grade: None,
            canonical_version: CANONICAL_VERSION.to_owned(),
            source_schema_json: None,
            source_field_resolution_json: None,
            export: None,
            schema_contract_json: None,
            schema_contract_hash: None,
            owner,
        })
    }

    /// Ends a running run, then seals the payload store (see
    /// [`crate::PayloadStore::seal`]). Completing an ended run is an illegal
    /// transition.
    pub fn complete_run(&mut self, run_id: &RunId, status: RunStatus, grade: Option<ReproducibilityGrade>) -> Result<Run> {
        if !status.is_terminal() {
            return Err(LandscapeError::InvalidWrite(format!("complete_run needs a terminal status, not {status}")));
        }
        let (_, naive) = now();
        let from: Vec<&str> = RunStatus::ALL.iter().filter(|s| s.can_transition_to(status)).map(|s| s.as_str()).collect();
        let affected = self.atomic(|conn| {
            let target = runs::table.filter(runs::run_id.eq(run_id.as_str())).filter(runs::status.eq_any(&from));
            Ok(match grade {
                Some(grade) => diesel::update(target)
                    .set((
                        runs::status.eq(status.as_str()),
                        runs::completed_at.eq(naive),
                        runs::reproducibility_grade.eq(grade.as_str()),
                    ))
                    .execute(conn)?,
                None => {
                    diesel::update(target).set((runs::status.eq(status.as_str()), runs::completed_at.eq(naive))).execute(conn)?
                }
            })
        })?;
        if affected == 0 {
            let current = self.get_run(run_id)?;
            return Err(LandscapeError::IllegalTransition(format!(
                "run {run_id} is {}; it cannot become {status} (ended runs are immutable)",
                current.state.status()
            )));
        }
        ensure_one(affected, || format!("completion of run {run_id}"))?;
        // The run's blobs are durable already; sealing indexes them for reads.
        if let Some(store) = &self.payloads {
            store.seal()?;
        }
        self.get_run(run_id)
    }

    /// Computes the grade from the nodes' determinism, then ends the run.
    pub fn finalize_run(&mut self, run_id: &RunId, status: RunStatus) -> Result<Run> {
        let grade = self.compute_reproducibility_grade(run_id)?;
        self.complete_run(run_id, status, Some(grade))
    }

    /// Puts a failed or interrupted run back to running (resume); clears its
    /// completion time and takes ownership.
    pub fn resume_run(&mut self, run_id: &RunId, owner: (&str, u32)) -> Result<Run> {
        let (_, naive) = now();
        let from: Vec<&str> =
            RunStatus::ALL.iter().filter(|s| s.can_transition_to(RunStatus::Running)).map(|s| s.as_str()).collect();
        let affected = diesel::update(runs::table.filter(runs::run_id.eq(run_id.as_str())).filter(runs::status.eq_any(&from)))
            .set((
                runs::status.eq(RunStatus::Running.as_str()),
                runs::completed_at.eq(None::<chrono::NaiveDateTime>),
                runs::owner_host.eq(owner.0),
                runs::owner_pid.eq(i64::from(owner.1)),
                runs::heartbeat_at.eq(naive),
            ))
            .execute(self.conn()?)?;
        if affected == 0 {
            let current = self.get_run(run_id)?;
            return Err(LandscapeError::IllegalTransition(format!(
                "run {run_id} is {}; only failed or interrupted runs can be resumed",
                current.state.status()
            )));
        }
        self.get_run(run_id)
    }

    /// Records that the owning process is alive.
    pub fn heartbeat(&mut self, run_id: &RunId) -> Result<()> {
        let (_, naive) = now();
        let id = run_id.as_str().to_owned();
        self.write(move |conn| {
            let affected =
                diesel::update(runs::table.filter(runs::run_id.eq(&id))).set(runs::heartbeat_at.eq(naive)).execute(conn)?;
            ensure_one(affected, || format!("heartbeat of run {id}"))
        })
    }

    /// Records how the source named its fields: original header → field
    /// name (`runs.source_field_resolution_json`, canonical JSON).
    pub fn record_source_field_resolution(&mut self, run_id: &RunId, resolution: &serde_json::Value) -> Result<()> {
        let json = contracts::canonical_json(resolution)?;
        let affected = diesel::update(runs::table.filter(runs::run_id.eq(run_id.as_str())))
            .set(runs::source_field_resolution_json.eq(Some(json)))
            .execute(self.conn()?)?;
        ensure_one(affected, || format!("field resolution of run {run_id}"))
    }

    /// Records the export status; an error message only with `failed`.
    pub fn set_export_status(
        &mut self,
        run_id: &RunId,
        status: ExportStatus,
        error: Option<&str>,
        format: Option<&str>,
        sink: Option<&str>,
    ) -> Result<()> {
        let error = match (status, error) {
            (ExportStatus::Failed, Some(message)) if !message.is_empty() => Some(message),
            (ExportStatus::Failed, _) => {
                return Err(LandscapeError::InvalidWrite("a failed export needs an error message".into()));
            }
            (ExportStatus::Pending | ExportStatus::Completed, None) => None,
            (ExportStatus::Pending | ExportStatus::Completed, Some(_)) => {
                return Err(LandscapeError::InvalidWrite("only a failed export carries an error message".into()));
            }
        };
        let exported_at = match status {
            ExportStatus::Completed => Some(now().1),
            ExportStatus::Pending | ExportStatus::Failed => None,
        };
        let affected = diesel::update(runs::table.filter(runs::run_id.eq(run_id.as_str())))
            .set((
                runs::export_status.eq(status.as_str()),
                runs::export_error.eq(error),
                runs::exported_at.eq(exported_at),
                runs::export_format.eq(format),
                runs::export_sink.eq(sink),
            ))
            .execute(self.conn()?)?;
        ensure_one(affected, || format!("export status of run {run_id}"))
    }

    /// `replay_reproducible` if any node reads, writes, calls out or is
    /// non-deterministic; `full_reproducible` otherwise. Unknown runs and
    /// unknown determinism values are errors.
    pub fn compute_reproducibility_grade(&mut self, run_id: &RunId) -> Result<ReproducibilityGrade> {
        self.get_run(run_id)?;
        let values: Vec<String> =
            nodes::table.filter(nodes::run_id.eq(run_id.as_str())).select(nodes::determinism).distinct().load(self.conn()?)?;
        let mut grade = ReproducibilityGrade::FullReproducible;
        for value in values {
            let determinism: Determinism = value.parse()?;
            if determinism.limits_reproducibility() {
                grade = ReproducibilityGrade::ReplayReproducible;
            }
        }
        Ok(grade)
    }

    /// Verifies a stored settings document still hashes to its config hash.
    pub fn verify_run_settings(run: &Run) -> bool {
        sha256_hex(run.settings_json.as_bytes()) == run.config_hash.as_str()
    }
}
