-- 0002: a station run can end "refused" (work order complete: turned away before anything
-- was issued), neither a pass nor a failure.
ALTER TABLE runs DROP CONSTRAINT runs_result_check;
ALTER TABLE runs ADD CONSTRAINT runs_result_check CHECK (result IN ('ok', 'failed', 'refused'));
