-- Indexes the lineage queries (`elspeth explain`) need so that one row of a
-- million-row run is explained with index lookups only. The group-id indexes
-- on tokens are partial: most tokens have no group, and an index entry per
-- token would cost every row an insert for nothing.
CREATE INDEX ix_batch_members_token ON batch_members (token_id);
CREATE INDEX ix_validation_errors_row ON validation_errors (row_id);
CREATE INDEX ix_tokens_fork_group_id ON tokens (fork_group_id) WHERE fork_group_id IS NOT NULL;
DROP INDEX ix_tokens_expand_group_id;
CREATE INDEX ix_tokens_expand_group_id ON tokens (expand_group_id) WHERE expand_group_id IS NOT NULL;
CREATE INDEX ix_artifacts_sink ON artifacts (sink_node_id, run_id);
