-- Dropping the audit schema is not supported: the Landscape is a legal record.
SELECT 1;
