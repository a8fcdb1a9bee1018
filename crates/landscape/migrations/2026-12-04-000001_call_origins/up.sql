-- Where a call's response came from: replayed from an earlier run's call, or
-- made live and compared with one (verify mode), with the verdict and the
-- differing paths. NULL in all three: a live call.
ALTER TABLE calls ADD COLUMN source_call_id VARCHAR(64) REFERENCES calls (call_id) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE calls ADD COLUMN verification_status VARCHAR(32);
ALTER TABLE calls ADD COLUMN verification_json TEXT;
