//! Source rows and tokens: create, fork, coalesce, expand, with token_parents
//! lineage. Multi-row operations are atomic.

use diesel::prelude::*;

use contracts::records::{OutcomeDetail, Row, Token, TokenLineage};
use contracts::{
    canonical::canonical_json_value, ContentHash, ExpandGroupId, ForkGroupId, JoinGroupId, NodeId, OutcomeId, RowId, RunId,
    TokenId, Value,
};

use super::{ensure_one, i32_of, i64_of, now, Recorder};
use crate::connection::DbConnection;
use crate::error::{LandscapeError, Result};
use crate::schema::{token_parents, tokens};

/// The documented fallback hash for source data that cannot be canonicalised
/// (for example an integer beyond ±2^53-1): SHA-256 of its plain JSON text,
/// prefixed so it can never collide with a canonical hash input.
pub fn fallback_hash(value: &Value) -> ContentHash {
    let text = serde_json::to_string(value).unwrap_or_else(|error| format!("unserialisable: {error}"));
    ContentHash::of_bytes(format!("elspeth-noncanonical-v1:{text}").as_bytes())
}

impl Recorder {
    /// Records a source row; its canonical JSON goes to the payload store
    /// first when one is configured.
    pub fn create_row(&mut self, run_id: &RunId, source_node_id: &NodeId, row_index: u64, data: &Value) -> Result<Row> {
        let canonical = canonical_json_value(data)?;
        let hash = ContentHash::of_bytes(canonical.as_bytes());
        let data_ref = self.store_payload(canonical.as_bytes())?;
        self.insert_row(run_id, source_node_id, row_index, hash, data_ref)
    }

    /// Records a quarantined source row: canonical hash when possible, the
    /// documented fallback hash otherwise. Never fails on the data itself.
    pub fn create_quarantined_row(
        &mut self,
        run_id: &RunId,
        source_node_id: &NodeId,
        row_index: u64,
        raw: &Value,
    ) -> Result<Row> {
        let (hash, bytes) = if let Ok(canonical) = canonical_json_value(raw) {
            (ContentHash::of_bytes(canonical.as_bytes()), canonical.into_bytes())
        } else {
            let text = serde_json::to_string(raw).unwrap_or_default();
            (fallback_hash(raw), serde_json::json!({ "_repr": text }).to_string().into_bytes())
        };
        let data_ref = self.store_payload(&bytes)?;
        self.insert_row(run_id, source_node_id, row_index, hash, data_ref)
    }

    fn insert_row(
        &mut self,
        run_id: &RunId,
        source_node_id: &NodeId,
        row_index: u64,
        hash: ContentHash,
        data_ref: Option<String>,
    ) -> Result<Row> {
        let row_id = RowId::new();
        let (at, naive) = now();
        // One write path: buffered in a unit, flushed at once outside one.
        self.buffer.rows.push(super::buffer::RowInsert {
            row_id: row_id.as_str().to_owned(),
            run_id: run_id.as_str().to_owned(),
            source_node_id: source_node_id.as_str().to_owned(),
            row_index: i64_of("row_index", row_index)?,
            source_data_hash: hash.as_str().to_owned(),
            source_data_ref: data_ref.clone(),
            created_at: crate::models::DbTime(naive),
        });
        if self.in_unit {
            self.buffered();
        } else {
            self.conn()?;
        }
        Ok(Row {
            row_id,
            run_id: run_id.clone(),
            source_node_id: source_node_id.clone(),
            row_index,
            source_data_hash: hash,
            source_data_ref: data_ref,
            created_at: at,
        })
    }

    /// The first token of a row.
    pub fn create_token(&mut self, row: &Row) -> Result<Token> {
        let token = Token {
            token_id: TokenId::new(),
            row_id: row.row_id.clone(),
            run_id: row.run_id.clone(),
            lineage: TokenLineage::Initial,
            step_in_pipeline: None,
            created_at: now().0,
        };
        if self.in_unit {
            self.buffer.tokens.push(super::buffer::TokenInsert::of(&token)?);
            self.buffered();
        } else {
            insert_token(self.conn()?, &token)?;
        }
        Ok(token)
    }

    /// Forks `parent` into one child per branch; records the parent's FORKED
    /// outcome with the branch list. Atomic.
    pub fn fork_token(&mut self, parent: &Token, branches: &[String], step: u32) -> Result<(Vec<Token>, ForkGroupId)> {
        if branches.is_empty() {
            return Err(LandscapeError::InvalidWrite(format!("fork of token {} needs at least one branch", parent.token_id)));
        }
        let fork_group_id = ForkGroupId::new();
        let at = now().0;
        let children: Vec<Token> = branches
            .iter()
            .map(|branch| Token {
                token_id: TokenId::new(),
                row_id: parent.row_id.clone(),
                run_id: parent.run_id.clone(),
                lineage: TokenLineage::Forked { fork_group_id: fork_group_id.clone(), branch_name: branch.clone() },
                step_in_pipeline: Some(step),
                created_at: at,
            })
            .collect();
        let detail = OutcomeDetail::Forked { fork_group_id: fork_group_id.clone(), expected_branches: branches.to_vec() };
        if self.parents_buffered(&[parent])? {
            let links: Vec<(&TokenId, &TokenId, usize)> =
                children.iter().enumerate().map(|(ordinal, child)| (&child.token_id, &parent.token_id, ordinal)).collect();
            self.buffer_tokens(&children, &links, Some((&parent.run_id, &parent.token_id, &detail)))?;
            return Ok((children, fork_group_id));
        }
        self.atomic(|conn| {
            check_parent(conn, parent)?;
            for (ordinal, child) in children.iter().enumerate() {
                insert_token(conn, child)?;
                insert_parent(conn, &child.token_id, &parent.token_id, ordinal)?;
            }
            super::outcomes::insert_outcome(conn, &OutcomeId::new(), &parent.run_id, &parent.token_id, &detail, None)
        })?;
        Ok((children, fork_group_id))
    }

    /// Creates `count` children of `parent` sharing an expand group; with
    /// `record_parent_outcome` the parent ends EXPANDED. Atomic.
    pub fn expand_token(
        &mut self,
        parent: &Token,
        count: u32,
        step: u32,
        record_parent_outcome: bool,
    ) -> Result<(Vec<Token>, ExpandGroupId)> {
        if count == 0 {
            return Err(LandscapeError::InvalidWrite(format!("expansion of token {} needs at least one child", parent.token_id)));
        }
        let expand_group_id = ExpandGroupId::new();
        let branch_name = match &parent.lineage {
            TokenLineage::Forked { branch_name, .. } => Some(branch_name.clone()),
            TokenLineage::Expanded { branch_name, .. } => branch_name.clone(),
            TokenLineage::Initial | TokenLineage::Joined { .. } => None,
        };
        let at = now().0;
        let children: Vec<Token> = (0..count)
            .map(|_| Token {
                token_id: TokenId::new(),
                row_id: parent.row_id.clone(),
                run_id: parent.run_id.clone(),
                lineage: TokenLineage::Expanded { expand_group_id: expand_group_id.clone(), branch_name: branch_name.clone() },
                step_in_pipeline: Some(step),
                created_at: at,
            })
            .collect();
        if self.parents_buffered(&[parent])? {
            let links: Vec<(&TokenId, &TokenId, usize)> =
                children.iter().enumerate().map(|(ordinal, child)| (&child.token_id, &parent.token_id, ordinal)).collect();
            let detail = OutcomeDetail::Expanded { expand_group_id: expand_group_id.clone(), count };
            let outcome = record_parent_outcome.then_some((&parent.run_id, &parent.token_id, &detail));
            self.buffer_tokens(&children, &links, outcome)?;
            return Ok((children, expand_group_id));
        }
        self.atomic(|conn| {
            check_parent(conn, parent)?;
            for (ordinal, child) in children.iter().enumerate() {
                insert_token(conn, child)?;
                insert_parent(conn, &child.token_id, &parent.token_id, ordinal)?;
            }
            if record_parent_outcome {
                let detail = OutcomeDetail::Expanded { expand_group_id: expand_group_id.clone(), count };
                super::outcomes::insert_outcome(conn, &OutcomeId::new(), &parent.run_id, &parent.token_id, &detail, None)?;
            }
            Ok(())
        })?;
        Ok((children, expand_group_id))
    }

    /// Creates a token for a transform-mode aggregation output with parent
    /// links to every batch member (an expansion without a parent outcome).
    pub fn create_batch_output_token(&mut self, members: &[&Token], step: u32) -> Result<Token> {
        let first = members.first().ok_or_else(|| LandscapeError::InvalidWrite("a batch output needs members".into()))?;
        let token = Token {
            token_id: TokenId::new(),
            row_id: first.row_id.clone(),
            run_id: first.run_id.clone(),
            lineage: TokenLineage::Expanded { expand_group_id: ExpandGroupId::new(), branch_name: None },
            step_in_pipeline: Some(step),
            created_at: now().0,
        };
        if let Some(member) = members.iter().find(|m| m.run_id != token.run_id) {
            return Err(LandscapeError::InvalidWrite(format!("batch member {} belongs to another run", member.token_id)));
        }
        // Members come from many rows and units; in a unit the links wait in
        // the buffer and the foreign keys check the members at its flush.
        if self.in_unit {
            let links: Vec<(&TokenId, &TokenId, usize)> =
                members.iter().enumerate().map(|(ordinal, member)| (&token.token_id, &member.token_id, ordinal)).collect();
            self.buffer_tokens(std::slice::from_ref(&token), &links, None)?;
            return Ok(token);
        }
        self.atomic(|conn| {
            insert_token(conn, &token)?;
            for (ordinal, member) in members.iter().enumerate() {
                insert_parent(conn, &token.token_id, &member.token_id, ordinal)?;
            }
            Ok(())
        })?;
        Ok(token)
    }

    /// Merges branch tokens of one row into a new token with a join group and
    /// one parent link per consumed token, in the given order. Atomic. The
    /// parents' COALESCED outcomes are recorded by the caller.
    pub fn coalesce_tokens(&mut self, parents: &[&Token], step: u32) -> Result<(Token, JoinGroupId)> {
        let first = parents.first().ok_or_else(|| LandscapeError::InvalidWrite("a coalesce needs at least one parent".into()))?;
        for parent in parents {
            if parent.row_id != first.row_id || parent.run_id != first.run_id {
                return Err(LandscapeError::InvalidWrite(format!(
                    "coalesce parents must share one row and run; {} does not",
                    parent.token_id
                )));
            }
        }
        let join_group_id = JoinGroupId::new();
        let token = Token {
            token_id: TokenId::new(),
            row_id: first.row_id.clone(),
            run_id: first.run_id.clone(),
            lineage: TokenLineage::Joined { join_group_id: join_group_id.clone() },
            step_in_pipeline: Some(step),
            created_at: now().0,
        };
        if self.parents_buffered(parents)? {
            let links: Vec<(&TokenId, &TokenId, usize)> =
                parents.iter().enumerate().map(|(ordinal, parent)| (&token.token_id, &parent.token_id, ordinal)).collect();
            self.buffer_tokens(std::slice::from_ref(&token), &links, None)?;
            return Ok((token, join_group_id));
        }
        self.atomic(|conn| {
            for parent in parents {
                check_parent(conn, parent)?;
            }
            insert_token(conn, &token)?;
            for (ordinal, parent) in parents.iter().enumerate() {
                insert_parent(conn, &token.token_id, &parent.token_id, ordinal)?;
            }
            Ok(())
        })?;
        Ok((token, join_group_id))
    }
}

impl Recorder {
    /// Inside a unit, whether every parent is a token this unit's buffer
    /// will write — checked there for the row and run the caller claims, so
    /// the new tokens can be buffered too and no statement runs. A parent
    /// the buffer does not hold is checked in the database instead.
    fn parents_buffered(&self, parents: &[&Token]) -> Result<bool> {
        if !self.in_unit {
            return Ok(false);
        }
        for parent in parents {
            let Some(buffered) = self.buffer.token(parent.token_id.as_str()) else { return Ok(false) };
            if buffered.row_id != parent.row_id.as_str() || buffered.run_id != parent.run_id.as_str() {
                return Err(LandscapeError::InvalidWrite(format!("token {} belongs to another row or run", parent.token_id)));
            }
        }
        Ok(true)
    }

    /// Buffers new tokens, their parent links (child, parent, ordinal) and
    /// the parent's outcome, as one step of the unit.
    fn buffer_tokens(
        &mut self,
        tokens: &[Token],
        links: &[(&TokenId, &TokenId, usize)],
        outcome: Option<(&RunId, &TokenId, &OutcomeDetail)>,
    ) -> Result<()> {
        for token in tokens {
            self.buffer.tokens.push(super::buffer::TokenInsert::of(token)?);
        }
        for (child, parent, ordinal) in links {
            let ordinal = i32::try_from(*ordinal).map_err(|_| LandscapeError::InvalidWrite("too many parents".into()))?;
            self.buffer.parents.push(super::buffer::ParentInsert {
                token_id: child.as_str().to_owned(),
                parent_token_id: parent.as_str().to_owned(),
                ordinal,
            });
        }
        if let Some((run_id, token_id, detail)) = outcome {
            let row = super::outcomes::outcome_row(&OutcomeId::new(), run_id, token_id, detail, None)?;
            self.buffer.outcomes.push(row);
        }
        self.buffered();
        Ok(())
    }
}

/// A parent must exist in the database with the row and run the caller claims.
fn check_parent(conn: &mut DbConnection, parent: &Token) -> Result<()> {
    let found: Option<(String, String)> = tokens::table
        .filter(tokens::token_id.eq(parent.token_id.as_str()))
        .select((tokens::row_id, tokens::run_id))
        // By primary key, so at most one row; without LIMIT's bound
        // parameter SQLite keeps the prepared statement instead of
        // preparing it again on every call.
        .get_result(conn)
        .optional()?;
    match found {
        Some((row_id, run_id)) if row_id == parent.row_id.as_str() && run_id == parent.run_id.as_str() => Ok(()),
        Some(_) => Err(LandscapeError::InvalidWrite(format!("token {} belongs to another row or run", parent.token_id))),
        None => Err(LandscapeError::NotFound(format!("token {}", parent.token_id))),
    }
}

/// A token's lineage as its nullable columns.
pub(crate) type TokenColumns<'a> = (&'a Token, Option<&'a str>, Option<&'a str>, Option<&'a str>, Option<&'a str>, Option<i32>);

pub(crate) fn token_columns(token: &Token) -> Result<TokenColumns<'_>> {
    let (fork, join, expand, branch) = match &token.lineage {
        TokenLineage::Initial => (None, None, None, None),
        TokenLineage::Forked { fork_group_id, branch_name } => {
            (Some(fork_group_id.as_str()), None, None, Some(branch_name.as_str()))
        }
        TokenLineage::Joined { join_group_id } => (None, Some(join_group_id.as_str()), None, None),
        TokenLineage::Expanded { expand_group_id, branch_name } => {
            (None, None, Some(expand_group_id.as_str()), branch_name.as_deref())
        }
    };
    let step = token.step_in_pipeline.map(|s| i32_of("step_in_pipeline", s)).transpose()?;
    Ok((token, fork, join, expand, branch, step))
}

pub(crate) fn insert_token(conn: &mut DbConnection, token: &Token) -> Result<()> {
    let (_, fork, join, expand, branch, step) = token_columns(token)?;
    let affected = crate::on_backend!(conn, |c| diesel::insert_into(tokens::table)
        .values((
            tokens::token_id.eq(token.token_id.as_str()),
            tokens::row_id.eq(token.row_id.as_str()),
            tokens::run_id.eq(token.run_id.as_str()),
            tokens::fork_group_id.eq(fork),
            tokens::join_group_id.eq(join),
            tokens::expand_group_id.eq(expand),
            tokens::branch_name.eq(branch),
            tokens::step_in_pipeline.eq(step),
            tokens::created_at.eq(token.created_at.naive_utc()),
        ))
        .execute(c))?;
    ensure_one(affected, || format!("insert of token {}", token.token_id))
}

fn insert_parent(conn: &mut DbConnection, child: &TokenId, parent: &TokenId, ordinal: usize) -> Result<()> {
    let ordinal = i32::try_from(ordinal).map_err(|_| LandscapeError::InvalidWrite("too many parents".into()))?;
    let affected = diesel::insert_into(token_parents::table)
        .values((
            token_parents::token_id.eq(child.as_str()),
            token_parents::parent_token_id.eq(parent.as_str()),
            token_parents::ordinal.eq(ordinal),
        ))
        .execute(conn)?;
    ensure_one(affected, || format!("insert of parent link {child} -> {parent}"))
}
