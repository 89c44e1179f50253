-- The anchor flow's one ledger event: a retention it was told to lower (COMPLIANCE_ALLOW_LOWERED_RETENTION=1 or
-- `compliance anchor --i-understand-retention-is-lowered`), recorded before the first anchor locked for less.
-- The anchorer may write no other admin.* event and nothing else of ledger:platform: this function writes
-- exactly one type, and takes the retention it lowers from from the last anchor recorded, not from the caller.
-- creates: function compliance.record_retention_lowered

CREATE FUNCTION compliance.record_retention_lowered(p_to_days integer, p_stage text, p_bucket text, p_by text)
    RETURNS uuid
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT e.event_id FROM compliance.emit_ledger_event(
        'ledger:platform', 'admin.retention_lowered', 'service', 'anchor', 'compliance-anchor', clock_timestamp(),
        jsonb_build_object(
            'fromDays', (SELECT floor(extract(epoch FROM retain_until - anchored_at) / 86400)::integer
                         FROM compliance.anchors ORDER BY position DESC LIMIT 1),
            'toDays', p_to_days, 'stage', p_stage, 'bucket', p_bucket, 'by', p_by)) AS e
$$;

REVOKE ALL ON FUNCTION compliance.record_retention_lowered(integer, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compliance.record_retention_lowered(integer, text, text, text) TO compliance_anchorer;
