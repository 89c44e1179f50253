-- The watchdog's figures, kept for `compliance health`, and its least-privilege role.
-- creates: table compliance.watchdog_runs
-- creates: index compliance.watchdog_runs_at
-- creates: role compliance_watchdog

CREATE TABLE compliance.watchdog_runs (
    id       bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    figures  jsonb       NOT NULL,   -- {"anchor_lag_seconds": 0, ...}
    states   jsonb       NOT NULL,   -- {"anchor_lag_seconds": "ok" | "breached" | "critical", ...}
    critical boolean     NOT NULL
);
CREATE INDEX watchdog_runs_at ON compliance.watchdog_runs (run_at DESC);

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'compliance_watchdog') THEN
        CREATE ROLE compliance_watchdog LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
    END IF;
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT compliance_watchdog TO %I', current_user);
    END IF;
END;
$$;

-- watchdog: reads everything; may only mark stalled export jobs failed and record its own figures.
GRANT USAGE ON SCHEMA compliance TO compliance_watchdog;
GRANT SELECT ON ALL TABLES IN SCHEMA compliance TO compliance_watchdog;
GRANT UPDATE (status, finished_at, job_error) ON compliance.export_jobs TO compliance_watchdog;
GRANT INSERT ON compliance.watchdog_runs TO compliance_watchdog;
GRANT SELECT ON compliance.watchdog_runs TO compliance_reader;
