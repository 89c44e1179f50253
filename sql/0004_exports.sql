-- Export jobs: the exporter role, the manifest's key, and the index the rate limit reads.
-- creates: role compliance_exporter
-- creates: index compliance.export_jobs_operator

ALTER TABLE compliance.export_jobs ADD COLUMN manifest_key text;
CREATE INDEX export_jobs_operator ON compliance.export_jobs (operator, requested_at);

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'compliance_exporter') THEN
        CREATE ROLE compliance_exporter LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
    END IF;
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT compliance_exporter TO %I', current_user);
    END IF;
END;
$$;

-- exporter: reads the ledger, manages export jobs, and audits each request through the outbox.
GRANT USAGE ON SCHEMA compliance TO compliance_exporter;
GRANT SELECT ON compliance.events, compliance.anchors, compliance.anchor_ranges TO compliance_exporter;
GRANT SELECT, INSERT ON compliance.export_jobs TO compliance_exporter;
GRANT UPDATE (status, started_at, finished_at, row_count, data_sha256, object_key, manifest_key, download_url,
              url_expires_at, job_error) ON compliance.export_jobs TO compliance_exporter;
GRANT INSERT (event_id, tenant_id, occurred_at, actor_type, actor_id, source, event_type, payload, redacted_fields)
    ON compliance.outbox TO compliance_exporter;
GRANT EXECUTE ON FUNCTION compliance.event_chained(uuid) TO compliance_exporter;
