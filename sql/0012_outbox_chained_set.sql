-- The outbox's batch insert asks once per batch, not once per row, which of its ids are already chained
-- (and perhaps purged from the outbox since): an anti-join against this function's answer. The writer
-- still cannot read compliance.events; it learns only which of the ids it sent are there.
-- creates: function compliance.events_chained

CREATE FUNCTION compliance.events_chained(p_event_ids uuid[]) RETURNS SETOF uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ SELECT e.event_id FROM compliance.events e WHERE e.event_id = ANY (p_event_ids) $$;

REVOKE ALL ON FUNCTION compliance.events_chained(uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compliance.events_chained(uuid[]) TO compliance_writer, compliance_exporter;
