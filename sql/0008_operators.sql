-- Operators who prove who they are (SPEC §8): enrolled addresses, TOTP secrets that only the owner's
-- functions read, tenant grants, and the functions through which an operator reaches events and jobs.
-- Download links are minted on request and never stored, so export_jobs loses its link columns.
-- creates: schema compliance_crypto
-- creates: role compliance_operator
-- creates: table compliance.operators
-- creates: table compliance.operator_secrets
-- creates: table compliance.operator_failures
-- creates: index compliance.operator_failures_address
-- creates: function compliance.operator_address
-- creates: function compliance.totp_code
-- creates: function compliance.operator_authenticate
-- creates: function compliance.new_event_id
-- creates: function compliance.utc_text
-- creates: function compliance.ledger_event
-- creates: function compliance.operator_events
-- creates: function compliance.operator_event
-- creates: function compliance.export_job_status
-- creates: function compliance.export_jobs_recent
-- creates: function compliance.operator_export_link

CREATE SCHEMA compliance_crypto;
REVOKE ALL ON SCHEMA compliance_crypto FROM PUBLIC;

DO $$
DECLARE
    crypto text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pgcrypto') THEN
        CREATE EXTENSION pgcrypto SCHEMA compliance_crypto;
    END IF;
    SELECT n.nspname INTO crypto FROM pg_extension x JOIN pg_namespace n ON n.oid = x.extnamespace
        WHERE x.extname = 'pgcrypto';
    -- RFC 6238 (SHA-1, 6 digits) for one 30-second step; pgcrypto may already live in another schema.
    EXECUTE format($f$
        CREATE FUNCTION compliance.totp_code(p_secret bytea, p_step bigint) RETURNS text
            LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, %I AS $b$
            SELECT lpad((((((get_byte(d, o) & 127)::bigint << 24) | (get_byte(d, o + 1) << 16)
                          | (get_byte(d, o + 2) << 8) | get_byte(d, o + 3)) %% 1000000))::text, 6, '0')
            FROM (SELECT d, get_byte(d, 19) & 15 AS o
                  FROM (SELECT hmac(int8send(p_step), p_secret, 'sha1') AS d) h) x
        $b$ $f$, crypto);
END;
$$;
REVOKE ALL ON FUNCTION compliance.totp_code(bytea, bigint) FROM PUBLIC;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'compliance_operator') THEN
        CREATE ROLE compliance_operator LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
    END IF;
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT compliance_operator TO %I', current_user);
    END IF;
END;
$$;

-- The one form of an address (trimmed, lower-cased, NFC) that every table and check uses.
CREATE FUNCTION compliance.operator_address(p_address text) RETURNS text
    LANGUAGE sql STABLE SET search_path = pg_catalog AS $$
    SELECT normalize(lower(btrim(p_address, E' \t\n\r\f\v')), NFC)
$$;

CREATE TABLE compliance.operators (
    address      text        PRIMARY KEY CHECK (address <> ''),
    cross_tenant boolean     NOT NULL DEFAULT false,
    tenants      text[]      NOT NULL DEFAULT '{}',
    enrolled_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    changed_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Readable by no role but the owner: the functions below check codes with the owner's rights.
CREATE TABLE compliance.operator_secrets (
    address      text        PRIMARY KEY REFERENCES compliance.operators ON DELETE CASCADE,
    secret       bytea       NOT NULL CHECK (octet_length(secret) >= 16),
    last_step    bigint,
    locked_until timestamptz
);

CREATE TABLE compliance.operator_failures (
    address   text        NOT NULL REFERENCES compliance.operators ON DELETE CASCADE,
    failed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX operator_failures_address ON compliance.operator_failures (address, failed_at);

REVOKE ALL ON compliance.operators, compliance.operator_secrets, compliance.operator_failures FROM PUBLIC;
REVOKE ALL ON compliance.operator_secrets, compliance.operator_failures
    FROM compliance_writer, compliance_drainer, compliance_reader, compliance_anchorer, compliance_exporter,
         compliance_watchdog, compliance_operator;
GRANT SELECT ON compliance.operators TO compliance_reader, compliance_watchdog;

-- 'OK', or '<CODE>: <what to change>'. It never raises for a refusal, so the failure it counts commits
-- even when the caller then refuses; the row lock makes accepting a code's step atomic.
CREATE FUNCTION compliance.operator_authenticate(
    p_address text, p_code text, p_tenants text[], p_cross_tenant boolean
) RETURNS text
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    addr text := compliance.operator_address(coalesce(p_address, ''));
    op compliance.operators%ROWTYPE;
    sec compliance.operator_secrets%ROWTYPE;
    step bigint := floor(extract(epoch FROM clock_timestamp()) / 30)::bigint;
    matched bigint;
    used boolean := false;
    failures int;
    missing text[];
BEGIN
    SELECT * INTO op FROM compliance.operators o WHERE o.address = addr;
    IF NOT FOUND THEN
        RETURN format('OPERATOR_NOT_ALLOWED: %L is not an enrolled operator; an owner enrols operators with '
                      '`compliance operators add EMAIL`', addr);
    END IF;
    SELECT * INTO sec FROM compliance.operator_secrets s WHERE s.address = addr FOR UPDATE;
    IF sec.locked_until > clock_timestamp() THEN
        RETURN format('OPERATOR_NOT_AUTHENTICATED: %s is locked out until %s after five refused codes in 15 '
                      'minutes; wait until then and use a fresh code', addr,
                      to_char(sec.locked_until AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'));
    END IF;
    IF p_code ~ '^[0-9]{6}$' THEN
        SELECT s INTO matched FROM unnest(ARRAY[step, step - 1]) AS s
            WHERE compliance.totp_code(sec.secret, s) = p_code AND s > coalesce(sec.last_step, -1)
            ORDER BY s DESC LIMIT 1;
        used := matched IS NULL AND EXISTS (
            SELECT 1 FROM unnest(ARRAY[step, step - 1]) AS s
            WHERE compliance.totp_code(sec.secret, s) = p_code AND s <= sec.last_step);
    END IF;
    IF matched IS NULL THEN
        DELETE FROM compliance.operator_failures f
            WHERE f.address = addr AND f.failed_at <= clock_timestamp() - interval '15 minutes';
        INSERT INTO compliance.operator_failures (address) VALUES (addr);
        SELECT count(*) INTO failures FROM compliance.operator_failures f WHERE f.address = addr;
        IF failures >= 5 THEN
            UPDATE compliance.operator_secrets s SET locked_until = clock_timestamp() + interval '15 minutes'
                WHERE s.address = addr;
        END IF;
        RETURN 'OPERATOR_NOT_AUTHENTICATED: ' || CASE
            WHEN coalesce(p_code, '') = '' THEN 'no code given; pass the 6-digit code your authenticator app '
                                                 'shows for ' || addr
            WHEN used THEN 'that code was already used; wait for the next code in your authenticator app'
            ELSE 'the code is wrong or expired; pass the current 6-digit code your authenticator app shows for '
                 || addr END;
    END IF;
    IF p_cross_tenant AND NOT op.cross_tenant THEN
        RETURN format('TENANT_NOT_GRANTED: %s holds no cross-tenant grant; name one tenant it is granted (%s), '
                      'or ask an owner for `compliance operators grant %s --cross-tenant`', addr,
                      coalesce(nullif(array_to_string(op.tenants, ', '), ''), 'none'), addr);
    END IF;
    IF NOT op.cross_tenant THEN
        missing := ARRAY(SELECT t FROM unnest(coalesce(p_tenants, '{}')) AS t WHERE NOT (t = ANY (op.tenants)));
        IF cardinality(missing) > 0 THEN
            RETURN format('TENANT_NOT_GRANTED: %s holds no grant on %s; ask an owner for '
                          '`compliance operators grant %s --tenant %s`', addr, array_to_string(missing, ', '),
                          addr, missing[1]);
        END IF;
    END IF;
    UPDATE compliance.operator_secrets s SET last_step = matched WHERE s.address = addr;
    RETURN 'OK';
END;
$$;

-- UUID v7: 48-bit unix milliseconds, version 7, random bits from gen_random_uuid() (variant kept).
CREATE FUNCTION compliance.new_event_id() RETURNS uuid
    LANGUAGE sql VOLATILE SET search_path = pg_catalog AS $$
    SELECT (substr(u, 1, 8) || '-' || substr(u, 9, 4) || '-' || substr(u, 13, 4) || '-' || substr(u, 17, 4)
            || '-' || substr(u, 21, 12))::uuid
    FROM (SELECT lpad(to_hex(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0') || '7'
                 || substr(r, 14, 3) || substr(r, 17, 16) AS u
          FROM (SELECT replace(gen_random_uuid()::text, '-', '') AS r) g) x
$$;

-- The ledger's own events (tenant ledger:platform) about operators, with the type's allow-list applied.
CREATE FUNCTION compliance.ledger_event(p_event_type text, p_operator text, p_payload jsonb) RETURNS uuid
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rule compliance.event_types%ROWTYPE;
    id uuid := compliance.new_event_id();
    kept jsonb;
    redacted text[] := ARRAY[]::text[];
    fields text;
BEGIN
    SELECT * INTO STRICT rule FROM compliance.event_types t WHERE t.event_type = p_event_type;
    SELECT r.redacted, r.result INTO redacted, kept
        FROM compliance.redact_object(jsonb_strip_nulls(p_payload), rule.keep, rule.caps, rule.urls, '', redacted) r;
    SELECT coalesce(string_agg(to_json(f)::text, ',' ORDER BY f COLLATE "C"), '') INTO fields
        FROM (SELECT DISTINCT f FROM unnest(redacted) AS f) d;
    INSERT INTO compliance.outbox (event_id, tenant_id, occurred_at, actor_type, actor_id, source, event_type,
                                   payload, redacted_fields)
        VALUES (id, 'ledger:platform', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                'operator', p_operator, 'compliance-operators', p_event_type, compliance.jcs(kept),
                '[' || fields || ']');
    RETURN id;
END;
$$;
REVOKE ALL ON FUNCTION compliance.ledger_event(text, text, jsonb) FROM PUBLIC;

CREATE FUNCTION compliance.utc_text(t timestamptz) RETURNS text
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- The events an operator may list: newest first, within its grants, by default the last 7 days. A refusal is
-- {"refused": CODE, "message": ...} (the failure count it wrote commits); a cross-tenant list is audited.
CREATE FUNCTION compliance.operator_events(
    p_address text, p_code text, p_tenant text, p_since timestamptz, p_until timestamptz,
    p_event_types text[], p_actor_types text[], p_limit int, p_prefect_user text DEFAULT NULL
) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    addr text := compliance.operator_address(coalesce(p_address, ''));
    tenant text := nullif(p_tenant, '');
    until timestamptz := coalesce(p_until, clock_timestamp());
    since timestamptz := coalesce(p_since, until - interval '7 days');
    verdict text;
    listed jsonb;
BEGIN
    verdict := compliance.operator_authenticate(
        addr, p_code, CASE WHEN tenant IS NULL THEN '{}'::text[] ELSE ARRAY[tenant] END, tenant IS NULL);
    IF verdict <> 'OK' THEN
        RETURN jsonb_build_object('refused', split_part(verdict, ':', 1),
                                  'message', substr(verdict, strpos(verdict, ':') + 2));
    END IF;
    IF tenant IS NULL THEN
        PERFORM compliance.ledger_event('data.cross_tenant_read', addr, jsonb_build_object(
            'operator', addr, 'prefectUser', p_prefect_user,
            'filter', jsonb_strip_nulls(jsonb_build_object(
                'since', compliance.utc_text(since), 'until', compliance.utc_text(until),
                'event_types', p_event_types, 'actor_types', p_actor_types))));
    END IF;
    SELECT coalesce(jsonb_agg(row ORDER BY ord), '[]'::jsonb) INTO listed FROM (
        SELECT row_number() OVER (ORDER BY e.recorded_at DESC, e.tenant_id, e.seq DESC) AS ord,
               jsonb_build_object(
                   'tenant_id', e.tenant_id, 'seq', e.seq, 'event_id', e.event_id::text,
                   'occurred_at', compliance.utc_text(e.occurred_at), 'recorded_at', compliance.utc_text(e.recorded_at),
                   'actor_type', e.actor_type, 'actor_id', e.actor_id, 'source', e.source,
                   'event_type', e.event_type, 'event_hash', encode(e.event_hash, 'hex'),
                   'anchor', coalesce((SELECT 'ANCHORED ' || r.cadence_id FROM compliance.anchor_ranges r
                                       WHERE r.tenant_id = e.tenant_id AND r.first_seq <= e.seq
                                         AND r.last_seq >= e.seq), 'PENDING')) AS row
        FROM compliance.events e
        WHERE (tenant IS NULL OR e.tenant_id = tenant)
          AND e.occurred_at >= since AND e.occurred_at < until
          AND (p_event_types IS NULL OR cardinality(p_event_types) = 0 OR e.event_type = ANY (p_event_types))
          AND (p_actor_types IS NULL OR cardinality(p_actor_types) = 0 OR e.actor_type = ANY (p_actor_types))
        ORDER BY e.recorded_at DESC, e.tenant_id, e.seq DESC
        LIMIT greatest(1, least(coalesce(p_limit, 100), 10000))) x;
    RETURN jsonb_build_object('since', compliance.utc_text(since), 'until', compliance.utc_text(until),
                              'events', listed);
END;
$$;

-- One event, by id or by (tenant, seq), or with p_prev the one before it in its chain: its fields, chain
-- position and anchor. The payload only when p_payload asks for it, and that view is audited.
CREATE FUNCTION compliance.operator_event(
    p_address text, p_code text, p_event_id uuid, p_tenant text, p_seq bigint, p_prev boolean,
    p_payload boolean, p_prefect_user text DEFAULT NULL
) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    addr text := compliance.operator_address(coalesce(p_address, ''));
    v_tenant text := nullif(p_tenant, '');
    v_seq bigint := p_seq;
    w_tenant text;
    w_error text;
    e compliance.events%ROWTYPE;
    r compliance.anchor_ranges%ROWTYPE;
    verdict text;
    detail jsonb;
BEGIN
    IF p_event_id IS NOT NULL THEN
        SELECT x.tenant_id, x.seq INTO v_tenant, v_seq FROM compliance.events x
            WHERE x.event_id = p_event_id AND (p_tenant IS NULL OR x.tenant_id = p_tenant);
        IF NOT FOUND THEN
            SELECT w.tenant_id, w.error INTO w_tenant, w_error FROM (
                SELECT o.tenant_id, NULL::text AS error FROM compliance.outbox_pending o WHERE o.event_id = p_event_id
                UNION ALL
                SELECT q.tenant_id, q.error FROM compliance.outbox_poison q WHERE q.event_id = p_event_id) w
                WHERE p_tenant IS NULL OR w.tenant_id = p_tenant LIMIT 1;
            v_tenant := w_tenant;
        END IF;
    END IF;
    verdict := compliance.operator_authenticate(
        addr, p_code, CASE WHEN v_tenant IS NULL THEN '{}'::text[] ELSE ARRAY[v_tenant] END, false);
    IF verdict <> 'OK' THEN
        RETURN jsonb_build_object('refused', split_part(verdict, ':', 1),
                                  'message', substr(verdict, strpos(verdict, ':') + 2));
    END IF;
    IF w_tenant IS NOT NULL THEN
        RETURN jsonb_build_object('found', true, 'event_id', p_event_id::text, 'tenant_id', w_tenant,
            'status', CASE WHEN w_error IS NULL THEN 'IN OUTBOX (not chained yet)'
                           ELSE 'POISONED: ' || w_error END, 'anchor', 'PENDING');
    END IF;
    IF p_prev THEN
        v_seq := v_seq - 1;
        IF v_seq = 0 THEN
            RETURN jsonb_build_object('found', false, 'reason',
                format('seq 1 is the first event of tenant %s: its prev_hash is 32 zero bytes', v_tenant));
        END IF;
    END IF;
    SELECT * INTO e FROM compliance.events x WHERE x.tenant_id = v_tenant AND x.seq = v_seq;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('found', false, 'reason', CASE WHEN p_event_id IS NOT NULL
            THEN format('no event %s', p_event_id) ELSE format('no event %s of tenant %s', v_seq, v_tenant) END);
    END IF;
    SELECT * INTO r FROM compliance.anchor_ranges x
        WHERE x.tenant_id = e.tenant_id AND x.first_seq <= e.seq AND x.last_seq >= e.seq;
    detail := jsonb_build_object(
        'found', true, 'tenant_id', e.tenant_id, 'seq', e.seq, 'event_id', e.event_id::text,
        'occurred_at', compliance.utc_text(e.occurred_at), 'recorded_at', compliance.utc_text(e.recorded_at),
        'actor_type', e.actor_type, 'actor_id', e.actor_id, 'source', e.source, 'event_type', e.event_type,
        'redacted_fields', e.redacted_fields::jsonb, 'prev_hash', encode(e.prev_hash, 'hex'),
        'event_hash', encode(e.event_hash, 'hex'),
        'anchor', CASE WHEN r.cadence_id IS NULL THEN 'PENDING' ELSE 'ANCHORED ' || r.cadence_id END);
    IF r.cadence_id IS NOT NULL THEN
        detail := detail || jsonb_build_object('event_index', e.seq - r.first_seq, 'range_first_seq', r.first_seq,
                                         'range_last_seq', r.last_seq);
    END IF;
    IF p_payload THEN
        PERFORM compliance.ledger_event('data.payload_viewed', addr, jsonb_build_object(
            'eventId', e.event_id::text, 'operator', addr, 'prefectUser', p_prefect_user));
        detail := detail || jsonb_build_object('payload', e.payload::jsonb);
    END IF;
    RETURN detail;
END;
$$;

-- What anyone may know of a job: its state, format, rows and age (never a link, a filter or an operator).
CREATE FUNCTION compliance.export_job_status(p_job_id uuid) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object('job_id', j.job_id::text, 'status', j.status, 'format', j.format,
                              'rows', j.row_count,
                              'age_seconds', floor(extract(epoch FROM clock_timestamp() - j.requested_at))::bigint)
    FROM compliance.export_jobs j WHERE j.job_id = p_job_id
$$;

CREATE FUNCTION compliance.export_jobs_recent(p_limit int) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(jsonb_agg(compliance.export_job_status(j.job_id) ORDER BY j.requested_at DESC), '[]'::jsonb)
    FROM (SELECT job_id, requested_at FROM compliance.export_jobs
          ORDER BY requested_at DESC LIMIT greatest(1, least(coalesce(p_limit, 50), 1000))) j
$$;

-- The object behind a download link, for an operator whose grants cover the job's filter; issuing the link
-- is recorded (data.export_url_issued) before the caller signs it. The link itself is never stored.
CREATE FUNCTION compliance.operator_export_link(
    p_address text, p_code text, p_job_id uuid, p_prefect_user text DEFAULT NULL
) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    addr text := compliance.operator_address(coalesce(p_address, ''));
    job compliance.export_jobs%ROWTYPE;
    verdict text;
BEGIN
    SELECT * INTO job FROM compliance.export_jobs j WHERE j.job_id = p_job_id;
    verdict := compliance.operator_authenticate(
        addr, p_code, CASE WHEN job.filter ? 'tenant_id' THEN ARRAY[job.filter ->> 'tenant_id'] ELSE '{}' END,
        job.job_id IS NOT NULL AND NOT job.filter ? 'tenant_id');
    IF verdict <> 'OK' THEN
        RETURN jsonb_build_object('refused', split_part(verdict, ':', 1),
                                  'message', substr(verdict, strpos(verdict, ':') + 2));
    END IF;
    IF job.job_id IS NULL OR job.status <> 'complete' THEN
        RETURN jsonb_build_object('unavailable', format('export %s is %s; only a complete export has a download',
                                                        p_job_id, coalesce(job.status, 'unknown')));
    END IF;
    PERFORM compliance.ledger_event('data.export_url_issued', addr, jsonb_build_object(
        'exportJobId', job.job_id::text, 'operator', addr, 'prefectUser', p_prefect_user));
    RETURN jsonb_build_object('object_key', job.object_key);
END;
$$;

REVOKE ALL ON FUNCTION compliance.operator_authenticate(text, text, text[], boolean),
    compliance.operator_events(text, text, text, timestamptz, timestamptz, text[], text[], int, text),
    compliance.operator_event(text, text, uuid, text, bigint, boolean, boolean, text),
    compliance.export_job_status(uuid), compliance.export_jobs_recent(int),
    compliance.operator_export_link(text, text, uuid, text) FROM PUBLIC;
GRANT USAGE ON SCHEMA compliance TO compliance_operator;
GRANT EXECUTE ON FUNCTION compliance.operator_authenticate(text, text, text[], boolean),
    compliance.operator_events(text, text, text, timestamptz, timestamptz, text[], text[], int, text),
    compliance.operator_event(text, text, uuid, text, bigint, boolean, boolean, text),
    compliance.export_job_status(uuid), compliance.export_jobs_recent(int),
    compliance.operator_export_link(text, text, uuid, text) TO compliance_operator;
GRANT EXECUTE ON FUNCTION compliance.export_job_status(uuid), compliance.export_jobs_recent(int)
    TO compliance_reader, compliance_exporter, compliance_watchdog;

-- Links are minted per request for an authenticated operator and never stored.
ALTER TABLE compliance.export_jobs DROP COLUMN download_url, DROP COLUMN url_expires_at;
