-- `compliance export list` names the operator who asked for each job (the normalised address, as the
-- watchdog's export-jobs artifact does). compliance.export_job_status, which `export status` shows for any
-- one job id, keeps its four fields.
-- creates: function compliance.export_jobs_recent

CREATE OR REPLACE FUNCTION compliance.export_jobs_recent(p_limit int) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(
        jsonb_agg(compliance.export_job_status(j.job_id) || jsonb_build_object('operator', j.operator)
                  ORDER BY j.requested_at DESC),
        '[]'::jsonb)
    FROM (SELECT job_id, operator, requested_at FROM compliance.export_jobs
          ORDER BY requested_at DESC LIMIT greatest(1, least(coalesce(p_limit, 50), 1000))) j
$$;
