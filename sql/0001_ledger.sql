-- The ledger: outbox, per-tenant chains, anchors, export jobs.
-- creates: schema compliance
-- creates: table compliance.outbox
-- creates: index compliance.outbox_shard
-- creates: table compliance.outbox_poison
-- creates: table compliance.events
-- creates: index compliance.events_event_id
-- creates: index compliance.events_occurred_at_brin
-- creates: table compliance.tenant_heads
-- creates: table compliance.tenant_anchor_state
-- creates: table compliance.anchors
-- creates: table compliance.anchor_ranges
-- creates: table compliance.export_jobs
-- creates: index compliance.export_jobs_status
-- creates: function compliance.refuse_change
-- creates: function compliance.event_chained
-- creates: trigger compliance.events/events_immutable
-- creates: trigger compliance.events/events_no_truncate
-- creates: trigger compliance.anchors/anchors_immutable
-- creates: trigger compliance.anchors/anchors_no_truncate
-- creates: trigger compliance.anchor_ranges/anchor_ranges_immutable
-- creates: trigger compliance.anchor_ranges/anchor_ranges_no_truncate

CREATE SCHEMA IF NOT EXISTS compliance;

-- Every tenant_id is compared byte by byte (COLLATE "C"): SPEC §3 orders tenants by their UTF-8 bytes,
-- and memcmp is also the cheapest comparison for the chains' primary key.

-- Transactional outbox: written in the caller's transaction, drained into the chains.
-- payload, redacted_fields and occurred_at hold the exact text that will be hashed (RFC 8785 JSON, the
-- SPEC §2 timestamp form). A row waits here until the drain claims it: the drain deletes it in the same
-- transaction that chains it, or moves it to compliance.outbox_poison when it cannot be chained.
CREATE TABLE compliance.outbox (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        uuid        NOT NULL UNIQUE,
    tenant_id       text COLLATE "C" NOT NULL CHECK (tenant_id ~ '^[A-Za-z0-9._:-]{1,128}$'),
    shard           smallint    NOT NULL GENERATED ALWAYS AS (hashtext(tenant_id) & 63) STORED,
    occurred_at     text        NOT NULL CHECK (occurred_at ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$'),
    actor_type      text        NOT NULL CHECK (actor_type IN ('user', 'service', 'agent', 'system', 'operator')),
    actor_id        text        NOT NULL CHECK (length(actor_id) BETWEEN 1 AND 256),
    source          text        NOT NULL CHECK (length(source) BETWEEN 1 AND 128),
    event_type      text        NOT NULL,
    payload         text        NOT NULL CHECK (octet_length(payload) <= 1048576),
    redacted_fields text        NOT NULL DEFAULT '[]',
    enqueued_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- For drainers that share the work by shard; a single drainer walks the primary key.
CREATE INDEX outbox_shard ON compliance.outbox (shard, id);

-- Rows the drain could not chain, set aside with the reason; they hold up nobody.
CREATE TABLE compliance.outbox_poison (
    id              bigint      PRIMARY KEY,
    event_id        uuid        NOT NULL,
    tenant_id       text COLLATE "C" NOT NULL,
    occurred_at     text        NOT NULL,
    actor_type      text        NOT NULL,
    actor_id        text        NOT NULL,
    source          text        NOT NULL,
    event_type      text        NOT NULL,
    payload         text        NOT NULL,
    redacted_fields text        NOT NULL,
    enqueued_at     timestamptz NOT NULL,
    poisoned_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    error           text        NOT NULL
);

-- The chains. Rows are immutable (triggers below); prev_hash/event_hash per SPEC §2.
CREATE TABLE compliance.events (
    tenant_id       text COLLATE "C" NOT NULL,
    seq             bigint      NOT NULL CHECK (seq >= 1),
    event_id        uuid        NOT NULL,
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL,
    actor_type      text        NOT NULL,
    actor_id        text        NOT NULL,
    source          text        NOT NULL,
    event_type      text        NOT NULL,
    payload         text        NOT NULL,
    redacted_fields text        NOT NULL,
    prev_hash       bytea       NOT NULL CHECK (octet_length(prev_hash) = 32),
    event_hash      bytea       NOT NULL CHECK (octet_length(event_hash) = 32),
    PRIMARY KEY (tenant_id, seq)
);
CREATE UNIQUE INDEX events_event_id ON compliance.events (event_id);
-- occurred_at follows insertion order closely: a BRIN index serves time windows at almost no write cost.
CREATE INDEX events_occurred_at_brin ON compliance.events USING brin (occurred_at);

CREATE TABLE compliance.tenant_heads (
    tenant_id   text COLLATE "C" PRIMARY KEY,
    last_seq    bigint      NOT NULL CHECK (last_seq >= 0),
    head_hash   bytea       NOT NULL CHECK (octet_length(head_hash) = 32),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE compliance.tenant_anchor_state (
    tenant_id          text COLLATE "C" PRIMARY KEY,
    last_anchored_seq  bigint      NOT NULL,
    last_cadence_id    text        NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE compliance.anchors (
    position        bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,
    cadence_id      text        PRIMARY KEY CHECK (cadence_id ~ '^[0-9a-f]{32}$'),
    merkle_root     bytea       NOT NULL,
    tenant_count    integer     NOT NULL,
    event_count     bigint      NOT NULL,
    proofs_sha256   text        NOT NULL,
    anchor_sha256   text        NOT NULL,
    prev_cadence_id text        REFERENCES compliance.anchors (cadence_id),
    anchored_at     timestamptz NOT NULL,
    key_id          text        NOT NULL,
    proofs_key      text        NOT NULL,
    anchor_key      text        NOT NULL,
    lock_mode       text        NOT NULL,
    retain_until    timestamptz NOT NULL
);

CREATE TABLE compliance.anchor_ranges (
    tenant_id    text COLLATE "C" NOT NULL,
    first_seq    bigint  NOT NULL,
    last_seq     bigint  NOT NULL CHECK (last_seq >= first_seq),
    cadence_id   text    NOT NULL REFERENCES compliance.anchors (cadence_id),
    leaf_index   integer NOT NULL,
    head_hash    bytea   NOT NULL,
    events_root  bytea   NOT NULL,
    PRIMARY KEY (tenant_id, first_seq),
    UNIQUE (cadence_id, leaf_index)
);

CREATE TABLE compliance.export_jobs (
    job_id          uuid        PRIMARY KEY,
    operator        text        NOT NULL,
    format          text        NOT NULL CHECK (format IN ('csv', 'ndjson')),
    filter          jsonb       NOT NULL,
    status          text        NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'complete', 'failed')),
    requested_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at      timestamptz,
    finished_at     timestamptz,
    row_count       bigint,
    data_sha256     text,
    object_key      text,
    download_url    text,
    url_expires_at  timestamptz,
    job_error       text
);
CREATE INDEX export_jobs_status ON compliance.export_jobs (status, requested_at);

-- "Unique forever": emit asks whether an id is already chained without being able to read events.
CREATE FUNCTION compliance.event_chained(p_event_id uuid) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ SELECT EXISTS (SELECT 1 FROM compliance.events WHERE event_id = p_event_id) $$;

-- Append-only tables refuse UPDATE, DELETE and TRUNCATE for every role, the owner included.
CREATE FUNCTION compliance.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% on %.% is refused: rows are immutable', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'The ledger is append-only; record a correction as a new event.';
END;
$$;

CREATE TRIGGER events_immutable BEFORE UPDATE OR DELETE ON compliance.events
    FOR EACH ROW EXECUTE FUNCTION compliance.refuse_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON compliance.events
    FOR EACH STATEMENT EXECUTE FUNCTION compliance.refuse_change();
CREATE TRIGGER anchors_immutable BEFORE UPDATE OR DELETE ON compliance.anchors
    FOR EACH ROW EXECUTE FUNCTION compliance.refuse_change();
CREATE TRIGGER anchors_no_truncate BEFORE TRUNCATE ON compliance.anchors
    FOR EACH STATEMENT EXECUTE FUNCTION compliance.refuse_change();
CREATE TRIGGER anchor_ranges_immutable BEFORE UPDATE OR DELETE ON compliance.anchor_ranges
    FOR EACH ROW EXECUTE FUNCTION compliance.refuse_change();
CREATE TRIGGER anchor_ranges_no_truncate BEFORE TRUNCATE ON compliance.anchor_ranges
    FOR EACH STATEMENT EXECUTE FUNCTION compliance.refuse_change();
