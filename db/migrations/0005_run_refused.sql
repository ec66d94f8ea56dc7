-- 0005: a run can end "refused": the device was turned away before anything was issued
-- because the work order's quantity was reached (work order complete). It is neither a
-- pass nor a failure: the device is not marked failed and the order's failure counter is
-- untouched. SQLite cannot change a CHECK constraint in place, so runs is rebuilt (the
-- documented 12-step procedure, inside the migration's transaction), with its index and
-- triggers. Foreign keys stay on: the one reference to runs (issue_intents.run_id) is
-- set aside while the old table is dropped and put back against the new one, where every
-- value is checked again.

CREATE TEMP TABLE intent_runs AS SELECT id, run_id FROM issue_intents WHERE run_id IS NOT NULL;
UPDATE issue_intents SET run_id = NULL WHERE run_id IS NOT NULL;

CREATE TABLE runs_new (
    id          INTEGER PRIMARY KEY,
    device_id   INTEGER REFERENCES devices (id),
    slot        INTEGER NOT NULL,
    station     TEXT NOT NULL DEFAULT '',
    operator    TEXT NOT NULL DEFAULT '',
    work_order  TEXT REFERENCES work_orders (id),
    step        TEXT NOT NULL DEFAULT '',          -- last step reached
    result      TEXT CHECK (result IN ('ok', 'failed', 'refused')),
    error       TEXT NOT NULL DEFAULT '',
    durations   TEXT NOT NULL DEFAULT '{}',        -- JSON: step -> microseconds
    started_at  INTEGER NOT NULL,
    finished_at INTEGER
) STRICT;
INSERT INTO runs_new (id, device_id, slot, station, operator, work_order, step, result, error, durations, started_at, finished_at)
    SELECT id, device_id, slot, station, operator, work_order, step, result, error, durations, started_at, finished_at FROM runs;
DROP TABLE runs;
ALTER TABLE runs_new RENAME TO runs;
UPDATE issue_intents SET run_id = (SELECT t.run_id FROM intent_runs t WHERE t.id = issue_intents.id)
    WHERE id IN (SELECT id FROM intent_runs);
DROP TABLE intent_runs;
CREATE INDEX runs_device ON runs (device_id);

CREATE TRIGGER runs_started AFTER INSERT ON runs WHEN NEW.work_order IS NOT NULL
BEGIN
    UPDATE work_order_counters SET first_run_at = NEW.started_at
    WHERE work_order = NEW.work_order AND first_run_at IS NULL;
END;

CREATE TRIGGER runs_finished AFTER UPDATE OF result ON runs
WHEN OLD.result IS NULL AND NEW.result IS NOT NULL AND NEW.work_order IS NOT NULL
BEGIN
    UPDATE work_order_counters
    SET runs_ok = runs_ok + (NEW.result = 'ok'), runs_failed = runs_failed + (NEW.result = 'failed')
    WHERE work_order = NEW.work_order;
END;

CREATE TRIGGER outbox_run_finished AFTER UPDATE OF result ON runs
WHEN OLD.result IS NULL AND NEW.result IS NOT NULL
BEGIN
    INSERT INTO outbox (run_id, created_at) VALUES (NEW.id, COALESCE(NEW.finished_at, NEW.started_at));
END;
