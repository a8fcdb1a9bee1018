-- Indexes the lineage queries (`elspeth explain`) need so that one row of a
-- million-row run is explained with index lookups only.
CREATE INDEX ix_batch_members_token ON batch_members (token_id);
CREATE INDEX ix_validation_errors_row ON validation_errors (row_id);
CREATE INDEX ix_tokens_fork_group_id ON tokens (fork_group_id);
CREATE INDEX ix_artifacts_sink ON artifacts (sink_node_id, run_id);
