//! Checkpoints and secret resolutions.

use diesel::prelude::*;

use contracts::records::{Checkpoint, SecretResolution};
use contracts::{CheckpointId, ContentHash, NodeId, ResolutionId, RunId, SecretSource, TokenId};

use super::{ensure_one, i32_of, i64_of, now, Recorder};
use crate::error::{LandscapeError, Result};
use crate::loaders;
use crate::models::CheckpointRow;
use crate::schema::{checkpoints, secret_resolutions};

/// The checkpoint format this build writes and accepts.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 1;

/// A checkpoint to write.
#[derive(Debug, Clone)]
pub struct NewCheckpoint<'a> {
    pub token_id: &'a TokenId,
    pub node_id: &'a NodeId,
    pub sequence_number: u64,
    pub aggregation_state_json: Option<&'a str>,
    pub coalesce_state_json: Option<&'a str>,
    pub upstream_topology_hash: &'a ContentHash,
    pub checkpoint_node_config_hash: &'a ContentHash,
}

/// A resolved secret; only its fingerprint is stored.
#[derive(Debug, Clone)]
pub struct NewSecretResolution<'a> {
    pub timestamp: f64,
    pub env_var_name: &'a str,
    pub source: SecretSource,
    pub vault_url: Option<&'a str>,
    pub secret_name: Option<&'a str>,
    pub fingerprint: &'a ContentHash,
    pub resolution_latency_ms: Option<f64>,
}

impl Recorder {
    pub fn create_checkpoint(&mut self, run_id: &RunId, checkpoint: &NewCheckpoint<'_>) -> Result<Checkpoint> {
        let checkpoint_id = CheckpointId::new();
        let (at, naive) = now();
        let values = (
            checkpoints::checkpoint_id.eq(checkpoint_id.as_str().to_owned()),
            checkpoints::run_id.eq(run_id.as_str().to_owned()),
            checkpoints::token_id.eq(checkpoint.token_id.as_str().to_owned()),
            checkpoints::node_id.eq(checkpoint.node_id.as_str().to_owned()),
            checkpoints::sequence_number.eq(i64_of("sequence_number", checkpoint.sequence_number)?),
            checkpoints::aggregation_state_json.eq(checkpoint.aggregation_state_json.map(str::to_owned)),
            checkpoints::coalesce_state_json.eq(checkpoint.coalesce_state_json.map(str::to_owned)),
            checkpoints::created_at.eq(naive),
            checkpoints::upstream_topology_hash.eq(checkpoint.upstream_topology_hash.as_str().to_owned()),
            checkpoints::checkpoint_node_config_hash.eq(checkpoint.checkpoint_node_config_hash.as_str().to_owned()),
            checkpoints::format_version.eq(i32_of("format_version", CHECKPOINT_FORMAT_VERSION)?),
        );
        let id = checkpoint_id.clone();
        self.write(move |conn| {
            let affected = diesel::insert_into(checkpoints::table).values(values).execute(conn)?;
            ensure_one(affected, || format!("insert of checkpoint {id}"))
        })?;
        Ok(Checkpoint {
            checkpoint_id,
            run_id: run_id.clone(),
            token_id: checkpoint.token_id.clone(),
            node_id: checkpoint.node_id.clone(),
            sequence_number: checkpoint.sequence_number,
            aggregation_state_json: checkpoint.aggregation_state_json.map(str::to_owned),
            coalesce_state_json: checkpoint.coalesce_state_json.map(str::to_owned),
            created_at: at,
            upstream_topology_hash: checkpoint.upstream_topology_hash.clone(),
            checkpoint_node_config_hash: checkpoint.checkpoint_node_config_hash.clone(),
            format_version: CHECKPOINT_FORMAT_VERSION,
        })
    }

    /// The checkpoint with the highest sequence number; a checkpoint in another
    /// format is refused.
    pub fn latest_checkpoint(&mut self, run_id: &RunId) -> Result<Option<Checkpoint>> {
        let row: Option<CheckpointRow> = checkpoints::table
            .filter(checkpoints::run_id.eq(run_id.as_str()))
            .order((checkpoints::sequence_number.desc(), checkpoints::checkpoint_id.desc()))
            .select(CheckpointRow::as_select())
            .first(self.conn()?)
            .optional()?;
        let Some(checkpoint) = row.map(loaders::checkpoint).transpose()? else {
            return Ok(None);
        };
        if checkpoint.format_version != CHECKPOINT_FORMAT_VERSION {
            return Err(LandscapeError::integrity(format!(
                "checkpoint {} has format {}, this build reads format {CHECKPOINT_FORMAT_VERSION}",
                checkpoint.checkpoint_id, checkpoint.format_version
            )));
        }
        Ok(Some(checkpoint))
    }

    pub fn delete_checkpoints(&mut self, run_id: &RunId) -> Result<usize> {
        Ok(diesel::delete(checkpoints::table.filter(checkpoints::run_id.eq(run_id.as_str()))).execute(self.conn()?)?)
    }

    /// Records secret resolutions, all or nothing.
    pub fn record_secret_resolutions(
        &mut self,
        run_id: &RunId,
        resolutions: &[NewSecretResolution<'_>],
    ) -> Result<Vec<SecretResolution>> {
        let records: Vec<SecretResolution> = resolutions
            .iter()
            .map(|r| SecretResolution {
                resolution_id: ResolutionId::new(),
                run_id: run_id.clone(),
                timestamp: r.timestamp,
                env_var_name: r.env_var_name.to_owned(),
                source: r.source,
                vault_url: r.vault_url.map(str::to_owned),
                secret_name: r.secret_name.map(str::to_owned),
                fingerprint: r.fingerprint.clone(),
                resolution_latency_ms: r.resolution_latency_ms,
            })
            .collect();
        self.atomic(|conn| {
            for record in &records {
                if !record.timestamp.is_finite() {
                    return Err(LandscapeError::InvalidWrite("secret resolution timestamp is not finite".into()));
                }
                let affected = diesel::insert_into(secret_resolutions::table)
                    .values((
                        secret_resolutions::resolution_id.eq(record.resolution_id.as_str()),
                        secret_resolutions::run_id.eq(record.run_id.as_str()),
                        secret_resolutions::timestamp.eq(record.timestamp),
                        secret_resolutions::env_var_name.eq(&record.env_var_name),
                        secret_resolutions::source.eq(record.source.as_str()),
                        secret_resolutions::vault_url.eq(record.vault_url.as_deref()),
                        secret_resolutions::secret_name.eq(record.secret_name.as_deref()),
                        secret_resolutions::fingerprint.eq(record.fingerprint.as_str()),
                        secret_resolutions::resolution_latency_ms.eq(record.resolution_latency_ms),
                    ))
                    .execute(conn)?;
                ensure_one(affected, || format!("insert of secret resolution {}", record.resolution_id))?;
            }
            Ok(())
        })?;
        Ok(records)
    }
}
