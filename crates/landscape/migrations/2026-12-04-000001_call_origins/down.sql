ALTER TABLE calls DROP COLUMN verification_json;
ALTER TABLE calls DROP COLUMN verification_status;
ALTER TABLE calls DROP COLUMN source_call_id;
