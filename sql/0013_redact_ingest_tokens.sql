-- The ledger's own ingest tokens (clg_ and 256 random bits, compliance.ingest.new_token) are a credential
-- shape too: one pasted into a payload is scrubbed by emit_event as by compliance.events, and a row holding one
-- is set aside by the drain (a second redaction would change it). Otherwise word for word 0006's function.
-- creates: function compliance.redact_value

CREATE OR REPLACE FUNCTION compliance.redact_value(v jsonb, path text, cap int, INOUT redacted text[], OUT result jsonb)
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
            OR s ~ '\ynpm_[A-Za-z0-9]{30,}'
            OR s ~ '\yclg_[A-Za-z0-9_-]{32,}') THEN
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
