-- 0004: the outbox towards the plant registry (db/plant). One row per ledger row and per
-- finished run, written in the same SQLite transaction as the record itself (by triggers,
-- so that no write path can forget it), sent in order by the plant syncer.

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    audit_seq       INTEGER,                       -- the ledger row (audit.id), or NULL
    run_id          INTEGER,                       -- the finished run (runs.id), or NULL
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER,                       -- acknowledged by the registry
    attempts        INTEGER NOT NULL DEFAULT 0,    -- failed sends
    last_error      TEXT NOT NULL DEFAULT '',
    last_attempt_at INTEGER,
    CHECK ((audit_seq IS NULL) <> (run_id IS NULL))
) STRICT;
CREATE INDEX outbox_pending ON outbox (id) WHERE sent_at IS NULL;
-- Not unique: a ledger rewritten behind the store's back re-queues its rows, and the
-- registry refuses them as a fork.

-- The link's state: when the registry last acknowledged, since when sends fail.
CREATE TABLE outbox_state (
    one           INTEGER PRIMARY KEY CHECK (one = 1),
    last_sent_at  INTEGER,
    failing_since INTEGER,
    last_error    TEXT NOT NULL DEFAULT ''
) STRICT;
INSERT INTO outbox_state (one) VALUES (1);

-- Rows written before this migration are sent too: the registry needs the whole chain.
INSERT INTO outbox (audit_seq, created_at) SELECT id, at FROM audit ORDER BY id;
INSERT INTO outbox (run_id, created_at) SELECT id, finished_at FROM runs WHERE result IS NOT NULL ORDER BY id;

CREATE TRIGGER outbox_audit AFTER INSERT ON audit
BEGIN
    INSERT INTO outbox (audit_seq, created_at) VALUES (NEW.id, NEW.at);
END;

CREATE TRIGGER outbox_run_finished AFTER UPDATE OF result ON runs
WHEN OLD.result IS NULL AND NEW.result IS NOT NULL
BEGIN
    INSERT INTO outbox (run_id, created_at) VALUES (NEW.id, COALESCE(NEW.finished_at, NEW.started_at));
END;
