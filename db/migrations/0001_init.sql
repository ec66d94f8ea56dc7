-- 0001: initial schema of the provisioning station database.
-- Times are Unix nanoseconds (INTEGER); hashes are raw SHA-256 bytes (BLOB).

CREATE TABLE work_orders (
    id          TEXT PRIMARY KEY,                  -- the plant's work-order number
    product     TEXT NOT NULL,
    quantity    INTEGER NOT NULL CHECK (quantity >= 0),
    profile     TEXT NOT NULL DEFAULT '',
    lock_policy TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL
) STRICT;

-- One row per work order, maintained by triggers and by BeginIssue, so that Stats is one
-- primary-key lookup whatever the number of devices.
CREATE TABLE work_order_counters (
    work_order TEXT PRIMARY KEY REFERENCES work_orders (id),
    assigned   INTEGER NOT NULL DEFAULT 0,         -- devices holding a quota unit
    done       INTEGER NOT NULL DEFAULT 0,         -- devices provisioned (read-back confirmed)
    runs_ok    INTEGER NOT NULL DEFAULT 0,
    runs_failed INTEGER NOT NULL DEFAULT 0,
    first_run_at INTEGER,                          -- first run started
    last_done_at INTEGER                           -- last device provisioned
) STRICT;

CREATE TRIGGER work_orders_counters AFTER INSERT ON work_orders
BEGIN
    INSERT INTO work_order_counters (work_order) VALUES (NEW.id);
END;

CREATE TABLE operators (
    id         TEXT PRIMARY KEY,                   -- badge number or login
    name       TEXT NOT NULL DEFAULT '',
    role       TEXT NOT NULL DEFAULT '',
    pin_hash   TEXT NOT NULL,                      -- PBKDF2-SHA256, never the PIN itself
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE devices (
    id             INTEGER PRIMARY KEY,
    serial         TEXT NOT NULL UNIQUE,
    backend        TEXT NOT NULL DEFAULT '',
    model          TEXT NOT NULL DEFAULT '',
    ek_pub_hash    BLOB,
    status         TEXT NOT NULL DEFAULT 'new',
    work_order     TEXT REFERENCES work_orders (id),
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    provisioned_at INTEGER
) STRICT;
CREATE INDEX devices_work_order ON devices (work_order, provisioned_at);
CREATE INDEX devices_provisioned_at ON devices (provisioned_at) WHERE provisioned_at IS NOT NULL;

CREATE TRIGGER devices_done AFTER UPDATE OF provisioned_at ON devices
WHEN OLD.provisioned_at IS NULL AND NEW.provisioned_at IS NOT NULL AND NEW.work_order IS NOT NULL
BEGIN
    UPDATE work_order_counters SET done = done + 1, last_done_at = NEW.provisioned_at
    WHERE work_order = NEW.work_order;
END;

-- Keys certified for a device. A key belongs to exactly one device, for ever.
CREATE TABLE keys (
    id         INTEGER PRIMARY KEY,
    device_id  INTEGER NOT NULL REFERENCES devices (id),
    pub_hash   BLOB NOT NULL UNIQUE,               -- SHA-256 of the PKIX public key
    public_der BLOB NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX keys_device ON keys (device_id);

-- Intent to issue, recorded (and committed) before the CA signs.
CREATE TABLE issue_intents (
    id         INTEGER PRIMARY KEY,
    device_id  INTEGER NOT NULL REFERENCES devices (id),
    key_hash   BLOB NOT NULL,
    key_der    BLOB NOT NULL,
    work_order TEXT REFERENCES work_orders (id),
    run_id     INTEGER REFERENCES runs (id),
    state      TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'completed', 'abandoned')),
    created_at INTEGER NOT NULL,
    closed_at  INTEGER
) STRICT;
-- At most one pending intent per key.
CREATE UNIQUE INDEX issue_intents_pending_key ON issue_intents (key_hash) WHERE state = 'pending';
CREATE INDEX issue_intents_pending_device ON issue_intents (device_id) WHERE state = 'pending';

-- Issuer chains (without the leaf), stored once and shared by all certificates they issued.
CREATE TABLE chains (
    id     INTEGER PRIMARY KEY,
    sha256 BLOB NOT NULL UNIQUE,
    der    BLOB NOT NULL                            -- concatenated DER, closest issuer first
) STRICT;

CREATE TABLE certificates (
    id            INTEGER PRIMARY KEY,
    serial_hex    TEXT NOT NULL UNIQUE,
    device_id     INTEGER NOT NULL REFERENCES devices (id),
    key_id        INTEGER NOT NULL UNIQUE REFERENCES keys (id),
    intent_id     INTEGER UNIQUE REFERENCES issue_intents (id),
    issuer_key_id BLOB NOT NULL,
    der           BLOB NOT NULL,
    chain_id      INTEGER REFERENCES chains (id),
    not_before    INTEGER NOT NULL,
    not_after     INTEGER NOT NULL,
    status        TEXT NOT NULL DEFAULT 'issued' CHECK (status IN ('issued', 'delivered', 'confirmed', 'revoked')),
    issued_at     INTEGER NOT NULL,
    delivered_at  INTEGER,
    confirmed_at  INTEGER,
    revoked_at    INTEGER,
    revoke_reason INTEGER,
    CHECK ((revoked_at IS NULL) = (revoke_reason IS NULL)),
    CHECK ((revoked_at IS NULL) = (status <> 'revoked'))
) STRICT;
-- Never two live certificates for one device.
CREATE UNIQUE INDEX certificates_one_live ON certificates (device_id) WHERE revoked_at IS NULL;
CREATE INDEX certificates_device ON certificates (device_id);

-- Every revocation the CA must publish, including certificates this station never recorded.
CREATE TABLE revocations (
    serial_hex    TEXT PRIMARY KEY,
    issuer_key_id BLOB NOT NULL,
    reason        INTEGER NOT NULL,
    revoked_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX revocations_issuer ON revocations (issuer_key_id, revoked_at);

CREATE TABLE crl_numbers (
    issuer_key_id BLOB PRIMARY KEY,
    number        INTEGER NOT NULL
) STRICT;

-- One row per provisioning attempt.
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    device_id   INTEGER REFERENCES devices (id),
    slot        INTEGER NOT NULL,
    station     TEXT NOT NULL DEFAULT '',
    operator    TEXT NOT NULL DEFAULT '',
    work_order  TEXT REFERENCES work_orders (id),
    step        TEXT NOT NULL DEFAULT '',          -- last step reached
    result      TEXT CHECK (result IN ('ok', 'failed')),
    error       TEXT NOT NULL DEFAULT '',
    durations   TEXT NOT NULL DEFAULT '{}',        -- JSON: step -> microseconds
    started_at  INTEGER NOT NULL,
    finished_at INTEGER
) STRICT;
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

-- QA results (wsc verify).
CREATE TABLE verifications (
    id          INTEGER PRIMARY KEY,
    device_id   INTEGER NOT NULL REFERENCES devices (id),
    cert_serial TEXT NOT NULL DEFAULT '',
    verifier    TEXT NOT NULL DEFAULT '',
    result      TEXT NOT NULL CHECK (result IN ('pass', 'fail')),
    detail      TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX verifications_device ON verifications (device_id);

-- Append-only ledger; hash = SHA-256 over (id, at, kind, actor, detail, prev_hash).
-- AUTOINCREMENT so that sqlite_sequence remembers the highest id ever used (a deleted tail shows).
CREATE TABLE audit (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    actor     TEXT NOT NULL,
    detail    TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash      BLOB NOT NULL
) STRICT;
CREATE INDEX audit_checkpoints ON audit (id) WHERE kind = 'checkpoint';

-- The ledger's head (last id and hash), moved in the same transaction as each append: a row
-- appended or a tail deleted behind the store's back shows as a mismatch with the head.
CREATE TABLE audit_head (
    one  INTEGER PRIMARY KEY CHECK (one = 1),
    seq  INTEGER NOT NULL,
    hash BLOB NOT NULL
) STRICT;
INSERT INTO audit_head (one, seq, hash) VALUES (1, 0, zeroblob(32));

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit is append-only');
END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit is append-only');
END;
