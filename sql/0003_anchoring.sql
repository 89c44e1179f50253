-- Anchor runs (the intent of an anchor, recorded before anything is written to the bucket) and the
-- anchorer role. An anchor run is frozen when it starts: its heads and anchored_at are stored here, so a
-- re-run after a crash writes the same objects, byte for byte, and the next anchor links to it.
-- creates: table compliance.anchor_runs
-- creates: role compliance_anchorer

CREATE TABLE compliance.anchor_runs (
    cadence_id         text        PRIMARY KEY CHECK (cadence_id ~ '^[0-9a-f]{32}$'),
    heads              jsonb       NOT NULL,   -- [[tenant_id, first_seq, last_seq, head_hash_hex], ...]
    anchored_at        text        NOT NULL,
    prev_cadence_id    text,
    prev_anchor_sha256 text,
    key_id             text        NOT NULL,
    started_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    completed_at       timestamptz
);

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'compliance_anchorer') THEN
        CREATE ROLE compliance_anchorer LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
    END IF;
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT compliance_anchorer TO %I', current_user);
    END IF;
END;
$$;

-- anchorer: reads the chains, records anchors; never writes an event.
GRANT USAGE ON SCHEMA compliance TO compliance_anchorer;
GRANT SELECT ON compliance.events, compliance.tenant_heads TO compliance_anchorer;
GRANT SELECT, INSERT ON compliance.anchors, compliance.anchor_ranges TO compliance_anchorer;
GRANT SELECT, INSERT, UPDATE ON compliance.tenant_anchor_state TO compliance_anchorer;
GRANT SELECT, INSERT ON compliance.anchor_runs TO compliance_anchorer;
GRANT UPDATE (completed_at) ON compliance.anchor_runs TO compliance_anchorer;
GRANT SELECT ON compliance.anchor_runs TO compliance_reader;
