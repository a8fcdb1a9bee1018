DROP INDEX ix_artifacts_sink;
DROP INDEX ix_tokens_expand_group_id;
CREATE INDEX ix_tokens_expand_group_id ON tokens (expand_group_id);
DROP INDEX ix_tokens_fork_group_id;
DROP INDEX ix_validation_errors_row;
DROP INDEX ix_batch_members_token;
