-- compliance.purge_drained (sql/0009_server_rules.sql) at the cost of the rows it deletes, under the same
-- contract: up to p_limit of the oldest rows that every cursor has drained, enqueued more than
-- p_retention_seconds ago, and chained (their event_id is in the chains) or set aside (in outbox_poison).
--
-- The 0009 body cost more the longer the ledger ran: each call walked the outbox from its oldest row to the
-- first one inside the retention (all of it, with a retention of zero) to find its bound; the test for
-- "chained" was an EXISTS under OR, which the planner may answer by hashing every event ever chained, once a
-- call; and the large estimates of both had every call JIT-compiled (about half a second each).
--
-- Here one ordered walk of the outbox_order index does it all, and stops after p_limit rows it may delete:
-- each row's event_id is looked up in the events_event_id index (and its id in outbox_poison's primary key),
-- one probe a row, never a hash of the chains; and the retention cuts the walk at the first row still inside
-- it (a running bool_and over the walk), as 0009's bound did: what is deleted is the oldest rows, up to the
-- first one still kept.
-- creates: function compliance.purge_drained

CREATE OR REPLACE FUNCTION compliance.purge_drained(p_retention_seconds double precision, p_limit int) RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    SET enable_seqscan = off SET enable_sort = off SET jit = off AS $$
DECLARE
    bound xid8;
    cutoff timestamptz := clock_timestamp() - make_interval(secs => p_retention_seconds);
    n bigint;
BEGIN
    SELECT min(pg_snapshot_xmin(lo)) INTO bound FROM compliance.outbox_cursor;
    IF bound IS NULL THEN
        RETURN 0;
    END IF;
    DELETE FROM compliance.outbox WHERE ctid = ANY(ARRAY(
        SELECT w.tid FROM (
            SELECT o.ctid AS tid,
                   bool_and(o.enqueued_at < cutoff) OVER (ORDER BY o.txid, o.id ROWS UNBOUNDED PRECEDING) AS past_retention
            FROM compliance.outbox o
            WHERE o.txid < bound
              AND ((SELECT true FROM compliance.events e WHERE e.event_id = o.event_id)
                   OR (SELECT true FROM compliance.outbox_poison p WHERE p.id = o.id))
            ORDER BY o.txid, o.id LIMIT p_limit) w
        WHERE w.past_retention));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;
