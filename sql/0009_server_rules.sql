-- SPEC §1 on the server side. Whatever a role inserts into the outbox, the drain chains only what the rules
-- allow, and sets the rest aside in compliance.outbox_poison with the reason (tasks/drain.py,
-- compliance/chain.py): the type registered in compliance.event_types, the payload already redacted (a
-- second redaction changes nothing), no control or bidirectional character in actor_id or source, and the
-- tenant ledger:platform and the types admin.* only from the ledger's own roles. To tell who wrote a row,
-- the outbox records it in written_by, a column no writer role may set (its INSERT grants name the other
-- columns), filled by default with the inserting role. Rows enqueued before this migration have no writer
-- (NULL) and are chained as the rules of their time allowed.
--
-- The drainer no longer deletes from the outbox or updates the cursors itself: it moves cursors only
-- forward, never past the present (compliance.advance_cursors), and purges only rows already chained or
-- set aside (compliance.purge_drained).
-- creates: function compliance.text_problem
-- creates: function compliance.emit_checked
-- creates: function compliance.emit_ledger_event
-- creates: function compliance.snapshot_covers
-- creates: function compliance.advance_cursors
-- creates: function compliance.purge_drained

ALTER TABLE compliance.outbox ADD COLUMN written_by text;
ALTER TABLE compliance.outbox ALTER COLUMN written_by SET DEFAULT current_user;
-- New rows always name their writer; the rows already waiting keep NULL (enqueued before the rules).
ALTER TABLE compliance.outbox ADD CONSTRAINT outbox_written_by CHECK (written_by IS NOT NULL) NOT VALID;
ALTER TABLE compliance.outbox_poison ADD COLUMN written_by text;

-- Why a text field is refused for the characters it holds (Unicode Cc, the bidirectional controls), or NULL;
-- word for word the reason of compliance.events.text_problem.
CREATE FUNCTION compliance.text_problem(s text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT 'holds the control or bidirectional character U+' || upper(lpad(to_hex(ascii(c)), 4, '0')) || '; remove it'
    FROM (SELECT substring(s FROM '[\x01-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]') AS c) f
    WHERE c IS NOT NULL
$$;

-- The rules and the insert, shared by the writer's emit_event and the ledger's emit_ledger_event. Not
-- executable by any role but the owner: it runs inside those two.
CREATE FUNCTION compliance.emit_checked(
    p_tenant_id text, p_event_type text, p_actor_type text, p_actor_id text, p_source text,
    p_occurred_at timestamptz, p_payload jsonb, p_event_id uuid, p_ledger boolean, p_written_by text
) RETURNS TABLE (event_id uuid, stored boolean)
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    rule compliance.event_types%ROWTYPE;
    id uuid := p_event_id;
    kept jsonb;
    redacted text[] := ARRAY[]::text[];
    fields text;
    u text;
    ms bigint;
    n int;
BEGIN
    IF p_tenant_id IS NULL OR p_tenant_id !~ '^[A-Za-z0-9._:-]{1,128}$' THEN
        RAISE EXCEPTION 'tenant_id: is required: 1 to 128 characters of A-Z a-z 0-9 . _ : -' USING ERRCODE = '22023';
    END IF;
    IF p_actor_type IS NULL OR p_actor_type NOT IN ('user', 'service', 'agent', 'system', 'operator') THEN
        RAISE EXCEPTION 'actor_type: must be one of agent, operator, service, system, user; got %',
            coalesce(quote_literal(p_actor_type), 'None') USING ERRCODE = '22023';
    END IF;
    SELECT * INTO rule FROM compliance.event_types t WHERE t.event_type = p_event_type;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'event_type: % is not a registered event type', coalesce(quote_literal(p_event_type), 'None')
            USING ERRCODE = '22023';
    END IF;
    IF NOT p_ledger THEN
        IF p_tenant_id = 'ledger:platform' THEN
            RAISE EXCEPTION 'tenant_id: ledger:platform is written only by the ledger itself; use your own tenant id'
                USING ERRCODE = '42501';
        ELSIF p_event_type LIKE 'admin.%' THEN
            RAISE EXCEPTION 'event_type: admin.* types are written only by the ledger itself' USING ERRCODE = '42501';
        END IF;
    END IF;
    IF p_actor_id IS NULL THEN
        RAISE EXCEPTION 'actor_id: is required' USING ERRCODE = '22023';
    ELSIF length(p_actor_id) NOT BETWEEN 1 AND 256 THEN
        RAISE EXCEPTION 'actor_id: must be 1 to 256 characters, got %', length(p_actor_id) USING ERRCODE = '22023';
    ELSIF compliance.text_problem(p_actor_id) IS NOT NULL THEN
        RAISE EXCEPTION 'actor_id: %', compliance.text_problem(p_actor_id) USING ERRCODE = '22023';
    END IF;
    IF p_source IS NULL THEN
        RAISE EXCEPTION 'source: is required' USING ERRCODE = '22023';
    ELSIF length(p_source) NOT BETWEEN 1 AND 128 THEN
        RAISE EXCEPTION 'source: must be 1 to 128 characters, got %', length(p_source) USING ERRCODE = '22023';
    ELSIF compliance.text_problem(p_source) IS NOT NULL THEN
        RAISE EXCEPTION 'source: %', compliance.text_problem(p_source) USING ERRCODE = '22023';
    END IF;
    IF p_occurred_at IS NULL OR NOT isfinite(p_occurred_at) THEN
        RAISE EXCEPTION 'occurred_at: is required, as a timestamp with time zone' USING ERRCODE = '22023';
    END IF;
    IF p_payload IS NULL THEN p_payload := '{}'::jsonb; END IF;
    IF jsonb_typeof(p_payload) <> 'object' THEN
        RAISE EXCEPTION 'payload: must be a JSON object' USING ERRCODE = '22023';
    END IF;
    n := octet_length(compliance.jcs(p_payload));
    IF n > 65536 THEN
        RAISE EXCEPTION 'payload: is % bytes serialized; the limit is 65536 (64 KiB)', n USING ERRCODE = '22023';
    END IF;
    IF id IS NULL THEN
        -- UUID v7: 48-bit unix milliseconds, version 7, random bits from gen_random_uuid() (variant kept).
        ms := floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint;
        u := replace(gen_random_uuid()::text, '-', '');
        u := lpad(to_hex(ms), 12, '0') || '7' || substr(u, 14, 3) || substr(u, 17, 16);
        id := (substr(u, 1, 8) || '-' || substr(u, 9, 4) || '-' || substr(u, 13, 4) || '-' || substr(u, 17, 4)
               || '-' || substr(u, 21, 12))::uuid;
    ELSIF substr(id::text, 15, 1) <> '7' OR substr(id::text, 20, 1) NOT IN ('8', '9', 'a', 'b') THEN
        RAISE EXCEPTION 'event_id: % is not a UUID v7', id USING ERRCODE = '22023';
    END IF;
    SELECT r.redacted, r.result INTO redacted, kept
        FROM compliance.redact_object(p_payload, rule.keep, rule.caps, rule.urls, '', redacted) r;
    SELECT coalesce(string_agg(to_json(f)::text, ',' ORDER BY f COLLATE "C"), '') INTO fields
        FROM (SELECT DISTINCT f FROM unnest(redacted) AS f) d;
    INSERT INTO compliance.outbox (event_id, tenant_id, occurred_at, actor_type, actor_id, source, event_type,
                                   payload, redacted_fields, written_by)
        SELECT id, p_tenant_id, to_char(p_occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
               p_actor_type, p_actor_id, p_source, p_event_type, compliance.jcs(kept), '[' || fields || ']',
               p_written_by
        WHERE NOT compliance.event_chained(id)
        ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN QUERY SELECT id, n = 1;
END;
$$;


-- The writer's path (any runtime): every rule, the ledger's own tenant and types refused. The row records the
-- login role that called (the function itself runs as its owner).
CREATE OR REPLACE FUNCTION compliance.emit_event(
    p_tenant_id text, p_event_type text, p_actor_type text, p_actor_id text, p_source text,
    p_occurred_at timestamptz, p_payload jsonb, p_event_id uuid DEFAULT NULL
) RETURNS TABLE (event_id uuid, stored boolean)
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM compliance.emit_checked(p_tenant_id, p_event_type, p_actor_type, p_actor_id, p_source,
                                          p_occurred_at, p_payload, p_event_id, false, session_user::text)
$$;

-- The ledger's own path (ledger:platform, admin.*): for the owner and for SECURITY DEFINER functions it owns;
-- no other role may execute it.
CREATE FUNCTION compliance.emit_ledger_event(
    p_tenant_id text, p_event_type text, p_actor_type text, p_actor_id text, p_source text,
    p_occurred_at timestamptz, p_payload jsonb, p_event_id uuid DEFAULT NULL
) RETURNS TABLE (event_id uuid, stored boolean)
    LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM compliance.emit_checked(p_tenant_id, p_event_type, p_actor_type, p_actor_id, p_source,
                                          p_occurred_at, p_payload, p_event_id, true, current_user::text)
$$;

REVOKE ALL ON FUNCTION compliance.text_problem(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION compliance.emit_checked(text, text, text, text, text, timestamptz, jsonb, uuid, boolean, text)
    FROM PUBLIC;
REVOKE ALL ON FUNCTION compliance.emit_ledger_event(text, text, text, text, text, timestamptz, jsonb, uuid)
    FROM PUBLIC;

-- Whether snapshot a sees as finished every transaction that b sees as finished.
CREATE FUNCTION compliance.snapshot_covers(a pg_snapshot, b pg_snapshot) RETURNS boolean
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT pg_snapshot_xmax(a) >= pg_snapshot_xmax(b)
       AND NOT EXISTS (SELECT 1 FROM pg_snapshot_xip(a) x WHERE pg_visible_in_snapshot(x, b))
$$;

-- The drainer's only way to move the shards' cursors: forward (the drained rows of every shard only ever
-- grow), and never past the present (a cursor cannot claim rows not committed yet as drained).
CREATE FUNCTION compliance.advance_cursors(p_shards int[], p_lo pg_snapshot, p_hi pg_snapshot, p_pos_txid xid8,
                                           p_pos_id bigint) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    c compliance.outbox_cursor%ROWTYPE;
    now_snap pg_snapshot := pg_current_snapshot();
    ok boolean;
BEGIN
    IF (p_hi IS NULL) <> (p_pos_txid IS NULL) OR (p_pos_txid IS NULL) <> (p_pos_id IS NULL) THEN
        RAISE EXCEPTION 'a cursor position needs hi, pos_txid and pos_id together' USING ERRCODE = '22023';
    END IF;
    IF NOT compliance.snapshot_covers(now_snap, p_lo)
       OR (p_hi IS NOT NULL AND NOT (compliance.snapshot_covers(now_snap, p_hi)
                                     AND compliance.snapshot_covers(p_hi, p_lo))) THEN
        RAISE EXCEPTION 'outbox cursor %/% lies ahead of the present or hi behind lo', p_lo, p_hi
            USING ERRCODE = '42501';
    END IF;
    FOR c IN SELECT * FROM compliance.outbox_cursor WHERE shard = ANY(p_shards) ORDER BY shard FOR UPDATE LOOP
        IF p_lo::text = c.lo::text THEN
            -- the same delta: its position only moves on (or a new delta starts)
            ok := c.hi IS NULL OR (p_hi::text = c.hi::text AND (p_pos_txid, p_pos_id) >= (c.pos_txid, c.pos_id));
        ELSE
            -- a new lo: it finishes every row the old cursor had drained, the delta's included
            ok := compliance.snapshot_covers(p_lo, coalesce(c.hi, c.lo));
        END IF;
        IF NOT ok THEN
            RAISE EXCEPTION 'outbox cursor of shard % would move backwards', c.shard USING ERRCODE = '42501',
                HINT = 'A drainer only ever moves a cursor forward; see docs/oncall.md.';
        END IF;
    END LOOP;
    UPDATE compliance.outbox_cursor SET lo = p_lo, hi = p_hi, pos_txid = p_pos_txid, pos_id = p_pos_id,
        updated_at = clock_timestamp()
        WHERE shard = ANY(p_shards);
END;
$$;

-- The drainer's only way to delete from the outbox: up to p_limit of the oldest rows that every cursor has
-- drained, enqueued more than p_retention_seconds ago, and chained (their event_id is in the chains) or set
-- aside (in outbox_poison). The number deleted.
CREATE FUNCTION compliance.purge_drained(p_retention_seconds double precision, p_limit int) RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    SET enable_seqscan = off SET enable_sort = off AS $$
DECLARE
    bound xid8;
    n bigint;
BEGIN
    SELECT LEAST(
        (SELECT min(pg_snapshot_xmin(lo)) FROM compliance.outbox_cursor),
        (SELECT txid FROM compliance.outbox WHERE enqueued_at >= clock_timestamp() - make_interval(secs => p_retention_seconds)
         ORDER BY txid, id LIMIT 1)) INTO bound;
    IF bound IS NULL THEN
        RETURN 0;
    END IF;
    DELETE FROM compliance.outbox WHERE ctid = ANY(ARRAY(
        SELECT o.ctid FROM compliance.outbox o WHERE o.txid < bound
           AND (EXISTS (SELECT 1 FROM compliance.events e WHERE e.event_id = o.event_id)
                OR EXISTS (SELECT 1 FROM compliance.outbox_poison p WHERE p.id = o.id))
         ORDER BY o.txid, o.id LIMIT p_limit));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;

REVOKE ALL ON FUNCTION compliance.snapshot_covers(pg_snapshot, pg_snapshot) FROM PUBLIC;
REVOKE ALL ON FUNCTION compliance.advance_cursors(int[], pg_snapshot, pg_snapshot, xid8, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION compliance.purge_drained(double precision, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compliance.advance_cursors(int[], pg_snapshot, pg_snapshot, xid8, bigint),
    compliance.purge_drained(double precision, int) TO compliance_drainer;

-- drainer: reads the outbox and the registry it holds rows to; deletes and moves cursors only as above.
REVOKE DELETE ON compliance.outbox FROM compliance_drainer;
REVOKE UPDATE (lo, hi, pos_txid, pos_id, updated_at) ON compliance.outbox_cursor FROM compliance_drainer;
GRANT SELECT ON compliance.event_types TO compliance_drainer;
