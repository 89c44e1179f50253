-- Emitting from any runtime with only the writer role: compliance.emit_event(...) validates, redacts and
-- canonicalises exactly as the Python emit() does, then adds the event to the outbox in the caller's
-- transaction. The registry is data: compliance.event_types, synced from compliance/data/event_types.json
-- by `compliance migrate`.
-- creates: table compliance.event_types
-- creates: function compliance.jcs
-- creates: function compliance.jcs_number
-- creates: function compliance.redact_value
-- creates: function compliance.redact_object
-- creates: function compliance.emit_event

CREATE TABLE compliance.event_types (
    event_type text PRIMARY KEY CHECK (event_type ~ '^[a-z0-9_]+(\.[a-z0-9_]+)+$'),
    keep       text[] NOT NULL,
    caps       jsonb  NOT NULL DEFAULT '{}',
    urls       text[] NOT NULL DEFAULT '{}'
);

-- ECMAScript Number.prototype.toString of a JSON number (RFC 8785 §3.2.2.3).
CREATE FUNCTION compliance.jcs_number(n numeric) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    d double precision;
    t text;
    mant text;
    e int;
    digits text;
    k int;
    pos int;
    whole text;
    frac text;
BEGIN
    IF n = trunc(n) AND abs(n) <= 9007199254740991 THEN
        RETURN trunc(n)::text;
    END IF;
    IF n = trunc(n) AND abs(n) < 1e21 THEN
        RAISE EXCEPTION 'integer % is outside +-(2**53 - 1); send it as a string', n
            USING ERRCODE = '22003';
    END IF;
    d := n::double precision;
    IF d = 0 THEN RETURN '0'; END IF;
    -- float8out gives the shortest round-tripping digits (extra_float_digits >= 1, the default).
    t := abs(d)::text;
    pos := position('e' in t);
    IF pos > 0 THEN
        mant := substr(t, 1, pos - 1);
        e := substr(t, pos + 1)::int;
    ELSE
        mant := t;
        e := 0;
    END IF;
    whole := split_part(mant, '.', 1);
    frac := split_part(mant, '.', 2);
    digits := ltrim(whole || frac, '0');
    IF whole <> '0' THEN
        e := length(whole) + e;           -- value = 0.digits * 10^e
    ELSE
        e := e - (length(frac) - length(ltrim(frac, '0')));
    END IF;
    digits := rtrim(digits, '0');
    IF digits = '' THEN digits := '0'; END IF;
    k := length(digits);
    IF k <= e AND e <= 21 THEN
        t := digits || repeat('0', e - k);
    ELSIF 0 < e AND e <= 21 THEN
        t := substr(digits, 1, e) || '.' || substr(digits, e + 1);
    ELSIF -6 < e AND e <= 0 THEN
        t := '0.' || repeat('0', -e) || digits;
    ELSE
        t := substr(digits, 1, 1) || CASE WHEN k > 1 THEN '.' || substr(digits, 2) ELSE '' END
             || 'e' || CASE WHEN e - 1 > 0 THEN '+' ELSE '-' END || abs(e - 1)::text;
    END IF;
    RETURN CASE WHEN d < 0 THEN '-' ELSE '' END || t;
END;
$$;

-- RFC 8785 text of a jsonb value. Keys sort by UTF-8 bytes (COLLATE "C"), which is RFC 8785's UTF-16
-- order for every key inside the Basic Multilingual Plane; keys beyond it are refused here.
CREATE FUNCTION compliance.jcs(v jsonb) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    kind text := jsonb_typeof(v);
    parts text[];
    k text;
BEGIN
    IF kind = 'object' THEN
        parts := ARRAY[]::text[];
        FOR k IN SELECT key FROM jsonb_object_keys(v) AS key ORDER BY key COLLATE "C" LOOP
            IF k ~ '[\U00010000-\U0010FFFF]' THEN
                RAISE EXCEPTION 'object key % lies outside the Basic Multilingual Plane; use the Python emit()', k
                    USING ERRCODE = '22023';
            END IF;
            parts := parts || (to_json(k)::text || ':' || compliance.jcs(v -> k));
        END LOOP;
        RETURN '{' || array_to_string(parts, ',') || '}';
    ELSIF kind = 'array' THEN
        SELECT coalesce(string_agg(compliance.jcs(x), ',' ORDER BY i), '') INTO k
            FROM jsonb_array_elements(v) WITH ORDINALITY AS a(x, i);
        RETURN '[' || k || ']';
    ELSIF kind = 'string' THEN
        RETURN to_json(v #>> '{}')::text;
    ELSIF kind = 'number' THEN
        RETURN compliance.jcs_number((v #>> '{}')::numeric);
    ELSE
        RETURN v::text;  -- true, false, null
    END IF;
END;
$$;

-- One kept value: credential-shaped strings scrubbed, strings capped at `cap` bytes, containers walked.
CREATE FUNCTION compliance.redact_value(v jsonb, path text, cap int, INOUT redacted text[], OUT result jsonb)
    LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    kind text := jsonb_typeof(v);
    s text;
    k text;
    n int;
    item jsonb;
    acc jsonb;
BEGIN
    IF kind = 'string' THEN
        s := v #>> '{}';
        IF length(s) >= 15 AND (
               s ~* '\ybearer\s+[A-Za-z0-9._~+/=-]{8,}'
            OR s ~ '\yeyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*'
            OR s ~ '\y(AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\y'
            OR s ~ '\yAIza[0-9A-Za-z_-]{35}\y'
            OR s ~ '\y(ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}\y' OR s ~ '\ygithub_pat_[A-Za-z0-9_]{30,}'
            OR s ~ '\yxox[abposr]-[A-Za-z0-9-]{10,}'
            OR s ~ '\y(sk|rk|pk)_(live|test)_[A-Za-z0-9]{16,}'
            OR s ~ '\ysk-(proj-|ant-)?[A-Za-z0-9_-]{20,}'
            OR s ~ '\yglpat-[A-Za-z0-9_-]{20,}'
            OR s ~ '\ynpm_[A-Za-z0-9]{30,}') THEN
            redacted := redacted || (path || ':scrubbed');
            result := to_jsonb('<REDACTED:secret>'::text);
            RETURN;
        END IF;
        IF octet_length(s) > cap THEN
            n := cap;
            WHILE octet_length(left(s, n)) > cap LOOP
                n := n - greatest(1, (octet_length(left(s, n)) - cap) / 4);
            END LOOP;
            redacted := redacted || (path || ':truncated');
            result := to_jsonb(left(s, n));
            RETURN;
        END IF;
        result := v;
    ELSIF kind = 'object' THEN
        acc := '{}'::jsonb;
        FOR k, item IN SELECT key, value FROM jsonb_each(v) LOOP
            SELECT r.redacted, r.result INTO redacted, item FROM compliance.redact_value(item, path || '.' || k, cap, redacted) r;
            acc := acc || jsonb_build_object(k, item);
        END LOOP;
        result := acc;
    ELSIF kind = 'array' THEN
        acc := '[]'::jsonb;
        FOR item IN SELECT x FROM jsonb_array_elements(v) AS a(x) LOOP
            SELECT r.redacted, r.result INTO redacted, item FROM compliance.redact_value(item, path, cap, redacted) r;
            acc := acc || jsonb_build_array(item);
        END LOOP;
        result := acc;
    ELSE
        result := v;
    END IF;
END;
$$;

-- The allow-list of one object level: kept keys whole, dotted keys one level down, the rest dropped.
CREATE FUNCTION compliance.redact_object(obj jsonb, keep text[], caps jsonb, urls text[], prefix text,
                                         INOUT redacted text[], OUT result jsonb)
    LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    k text;
    v jsonb;
    s text;
    stripped text;
    sub text[];
BEGIN
    result := '{}'::jsonb;
    FOR k, v IN SELECT key, value FROM jsonb_each(obj) LOOP
        IF k = ANY(keep) THEN
            IF k = ANY(urls) AND jsonb_typeof(v) = 'string' THEN
                s := v #>> '{}';
                stripped := regexp_replace(s, '^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#@]*@', '\1');
                stripped := regexp_replace(stripped,
                    '([?&])[^=&#]*(token|secret|password|passwd|pwd|key|sig|signature|auth|credential)[^=&#]*=[^&#]*',
                    '\1', 'gi');
                stripped := regexp_replace(regexp_replace(stripped, '([?&])&+', '\1', 'g'), '[?&]+(#|$)', '\1');
                IF stripped <> s THEN
                    redacted := redacted || (prefix || k || ':scrubbed');
                    v := to_jsonb(stripped);
                END IF;
            END IF;
            SELECT r.redacted, r.result INTO redacted, v
                FROM compliance.redact_value(v, prefix || k, coalesce((caps ->> k)::int, 4096), redacted) r;
            result := result || jsonb_build_object(k, v);
        ELSE
            SELECT array_agg(substr(x, length(k) + 2)) INTO sub FROM unnest(keep) AS x WHERE x LIKE k || '.%';
            IF sub IS NOT NULL AND jsonb_typeof(v) = 'object' THEN
                SELECT r.redacted, r.result INTO redacted, v FROM compliance.redact_object(v, sub, '{}'::jsonb,
                    '{}'::text[], prefix || k || '.', redacted) r;
                result := result || jsonb_build_object(k, v);
            ELSE
                redacted := redacted || (prefix || k);
            END IF;
        END IF;
    END LOOP;
END;
$$;

CREATE FUNCTION compliance.emit_event(
    p_tenant_id text, p_event_type text, p_actor_type text, p_actor_id text, p_source text,
    p_occurred_at timestamptz, p_payload jsonb, p_event_id uuid DEFAULT NULL
) RETURNS TABLE (event_id uuid, stored boolean)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
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
        RAISE EXCEPTION 'actor_type: must be one of agent, operator, service, system, user; got %', p_actor_type
            USING ERRCODE = '22023';
    END IF;
    SELECT * INTO rule FROM compliance.event_types t WHERE t.event_type = p_event_type;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'event_type: % is not a registered event type', p_event_type USING ERRCODE = '22023';
    END IF;
    IF p_actor_id IS NULL OR length(p_actor_id) NOT BETWEEN 1 AND 256 THEN
        RAISE EXCEPTION 'actor_id: must be 1 to 256 characters' USING ERRCODE = '22023';
    END IF;
    IF p_source IS NULL OR length(p_source) NOT BETWEEN 1 AND 128 THEN
        RAISE EXCEPTION 'source: must be 1 to 128 characters' USING ERRCODE = '22023';
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
                                   payload, redacted_fields)
        SELECT id, p_tenant_id, to_char(p_occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
               p_actor_type, p_actor_id, p_source, p_event_type, compliance.jcs(kept), '[' || fields || ']'
        WHERE NOT compliance.event_chained(id)
        ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN QUERY SELECT id, n = 1;
END;
$$;

REVOKE ALL ON FUNCTION compliance.emit_event(text, text, text, text, text, timestamptz, jsonb, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compliance.emit_event(text, text, text, text, text, timestamptz, jsonb, uuid)
    TO compliance_writer;
GRANT SELECT ON compliance.event_types TO compliance_reader;
