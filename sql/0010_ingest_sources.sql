-- The HTTP ingest service's sources: one API token each, stored as its SHA-256, scoped to tenants and event
-- types. The service logs in as the writer, which may not read this table: it asks
-- compliance.ingest_source(digest) about the one token it was shown, and learns nothing about the others.
-- creates: table compliance.ingest_sources
-- creates: function compliance.ingest_source

CREATE TABLE compliance.ingest_sources (
    name         text COLLATE "C" PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9._:-]{1,128}$'),
    token_sha256 bytea       NOT NULL UNIQUE CHECK (octet_length(token_sha256) = 32),
    tenants      text[],                -- NULL: every tenant
    event_types  text[],                -- NULL: every registered type
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    rotated_at   timestamptz,
    revoked_at   timestamptz
);

-- A revoked source is still answered (so the service can say "revoked" rather than "unknown").
CREATE FUNCTION compliance.ingest_source(p_token_sha256 bytea)
    RETURNS TABLE (name text, tenants text[], event_types text[], revoked boolean)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT s.name, s.tenants, s.event_types, s.revoked_at IS NOT NULL
    FROM compliance.ingest_sources s WHERE s.token_sha256 = p_token_sha256
$$;

REVOKE ALL ON compliance.ingest_sources FROM PUBLIC;
REVOKE ALL ON FUNCTION compliance.ingest_source(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compliance.ingest_source(bytea) TO compliance_writer;
