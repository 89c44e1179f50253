-- Exports may be written as Parquet too (docs/format.md §4): the job's format check admits it. The marker
-- names the table whose check is replaced (a check constraint is not a kind drift probes on its own).
-- creates: table compliance.export_jobs

ALTER TABLE compliance.export_jobs DROP CONSTRAINT export_jobs_format_check;
ALTER TABLE compliance.export_jobs
    ADD CONSTRAINT export_jobs_format_check CHECK (format IN ('csv', 'ndjson', 'parquet'));
