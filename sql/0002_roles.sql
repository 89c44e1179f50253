-- Three login roles with least privilege. Passwords are set by `compliance roles rotate`.
-- creates: role compliance_writer
-- creates: role compliance_drainer
-- creates: role compliance_reader

DO $$
DECLARE r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['compliance_writer', 'compliance_drainer', 'compliance_reader'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT', r);
        END IF;
    END LOOP;
    -- A non-superuser owner (e.g. a managed service's admin) must be able to SET ROLE to them.
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT compliance_writer, compliance_drainer, compliance_reader TO %I', current_user);
    END IF;
END;
$$;

REVOKE ALL ON SCHEMA compliance FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA compliance FROM PUBLIC;
REVOKE ALL ON FUNCTION compliance.refuse_change() FROM PUBLIC;
REVOKE ALL ON FUNCTION compliance.event_chained(uuid) FROM PUBLIC;
GRANT USAGE ON SCHEMA compliance TO compliance_writer, compliance_drainer, compliance_reader;

-- writer: may only add to the outbox.
GRANT INSERT (event_id, tenant_id, occurred_at, actor_type, actor_id, source, event_type, payload, redacted_fields)
    ON compliance.outbox TO compliance_writer;
GRANT EXECUTE ON FUNCTION compliance.event_chained(uuid) TO compliance_writer;

-- drainer: moves outbox rows into the chains (deleting them as it chains them); may add events, never change one.
GRANT SELECT, DELETE ON compliance.outbox TO compliance_drainer;
-- FOR UPDATE (the claim's row locks) needs UPDATE on some column; enqueued_at is the least harmful one.
GRANT UPDATE (enqueued_at) ON compliance.outbox TO compliance_drainer;
GRANT SELECT, INSERT ON compliance.outbox_poison TO compliance_drainer;
GRANT SELECT, INSERT ON compliance.events TO compliance_drainer;
GRANT SELECT, INSERT, UPDATE ON compliance.tenant_heads TO compliance_drainer;

-- reader: read only.
GRANT SELECT ON ALL TABLES IN SCHEMA compliance TO compliance_reader;
