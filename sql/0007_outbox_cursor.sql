-- The drain reads the outbox instead of deleting from it: each shard has a cursor made of PostgreSQL
-- snapshots (the PgQ way), so chaining a row costs no write to the outbox at all, and drained rows are
-- purged later, after a retention, in bulk.
--
-- Every outbox row carries the id of the transaction that wrote it (txid). A shard's cursor says which
-- of its rows are drained: those whose transaction the snapshot `lo` sees as finished, plus, while a
-- delta is being drained in several batches, those that the snapshot `hi` sees as finished and that come
-- at or before (pos_txid, pos_id) in (txid, id) order. Rows whose transaction was still running when a
-- snapshot was taken are in that snapshot's in-progress list, so a late commit is picked up by the next
-- delta instead of being skipped: nothing depends on ids committing in order.
-- creates: table compliance.outbox_cursor
-- creates: index compliance.outbox_order
-- creates: view compliance.outbox_pending
-- drops: index compliance.outbox_shard

-- Existing rows get this migration's transaction id: they are all pending for the first delta.
ALTER TABLE compliance.outbox ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();

-- A delta is read in (txid, id) order; shard is a key column so that a drainer of part of the shards
-- skips the others' rows inside the index, without fetching them.
CREATE INDEX outbox_order ON compliance.outbox (txid, id, shard);
DROP INDEX compliance.outbox_shard;

CREATE TABLE compliance.outbox_cursor (
    shard       smallint    PRIMARY KEY CHECK (shard BETWEEN 0 AND 63),
    lo          pg_snapshot NOT NULL,
    hi          pg_snapshot,
    pos_txid    xid8,
    pos_id      bigint,
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK ((hi IS NULL) = (pos_txid IS NULL) AND (pos_txid IS NULL) = (pos_id IS NULL))
);
-- '1:1:' sees no transaction as finished: every row already in the outbox is pending.
INSERT INTO compliance.outbox_cursor (shard, lo) SELECT s, '1:1:'::pg_snapshot FROM generate_series(0, 63) s;

-- The rows not yet drained (what "in the outbox" means to health, the watchdog and `events show`). A row its
-- cursor's lo does not see finished is at or after lo's xmax, or in lo's in-progress list: two index ranges,
-- however many drained rows wait for the purge (an xmin held back by a long transaction elsewhere does not
-- widen them).
CREATE VIEW compliance.outbox_pending AS
SELECT o.id, o.event_id, o.tenant_id, o.shard, o.occurred_at, o.actor_type, o.actor_id, o.source, o.event_type,
       o.payload, o.redacted_fields, o.enqueued_at, o.txid
FROM compliance.outbox o
JOIN compliance.outbox_cursor c ON c.shard = o.shard
WHERE (o.txid >= (SELECT min(pg_snapshot_xmax(lo)) FROM compliance.outbox_cursor)
       OR o.txid = ANY (ARRAY(SELECT DISTINCT pg_snapshot_xip(lo) FROM compliance.outbox_cursor)))
  AND NOT pg_visible_in_snapshot(o.txid, c.lo)
  AND NOT (c.hi IS NOT NULL AND pg_visible_in_snapshot(o.txid, c.hi) AND (o.txid, o.id) <= (c.pos_txid, c.pos_id));

-- drainer: reads the outbox and moves its shards' cursors; deletes only to purge drained rows.
REVOKE UPDATE (enqueued_at) ON compliance.outbox FROM compliance_drainer;
GRANT SELECT ON compliance.outbox_cursor TO compliance_drainer;
GRANT UPDATE (lo, hi, pos_txid, pos_id, updated_at) ON compliance.outbox_cursor TO compliance_drainer;
GRANT SELECT ON compliance.outbox_pending TO compliance_drainer;
GRANT SELECT ON compliance.outbox_cursor, compliance.outbox_pending TO compliance_reader, compliance_watchdog;
