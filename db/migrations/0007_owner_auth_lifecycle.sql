-- 0007: issue 15 loose ends.
--
-- The owner authorisation record gets an explicit lifecycle: 'pending' (sealed and recorded
-- durably BEFORE the station asks the chip to take it: from then on the chip may hold it, and
-- the gate treats it as set) → 'set' (the chip confirmed it) or → 'abandoned' (the run failed
-- before the set command was sent, or the agent refused the request before any TPM command ran:
-- the chip provably kept its previous owner authorisation). A timeout after the command was sent stays
-- 'pending' ("maybe set"). abandoned_at and abandon_reason say when and why. SQLite cannot
-- change a CHECK constraint in place, so owner_auths is rebuilt (nothing references it).
-- The rows become covered by the ledger (db/ledger.go): the Go hook vouches for the rows
-- already present, and for the certificate role (see certificatesSel).

CREATE TABLE owner_auths_new (
    id             INTEGER PRIMARY KEY,
    device_id      INTEGER NOT NULL REFERENCES devices (id),
    run_id         INTEGER REFERENCES runs (id),
    chip_id        BLOB NOT NULL,
    work_order     TEXT NOT NULL DEFAULT '',
    policy         TEXT NOT NULL CHECK (policy IN ('sealed', 'none')),
    escrow_key_id  BLOB,
    suite          TEXT NOT NULL DEFAULT '',
    enc            BLOB,
    sealed         BLOB,
    state          TEXT NOT NULL CHECK (state IN ('pending', 'set', 'abandoned', 'none')),
    created_at     INTEGER NOT NULL,
    set_at         INTEGER,
    abandoned_at   INTEGER,
    abandon_reason TEXT NOT NULL DEFAULT '',
    CHECK ((policy = 'sealed') = (sealed IS NOT NULL AND enc IS NOT NULL AND escrow_key_id IS NOT NULL)),
    CHECK ((state = 'none') = (policy = 'none')),
    CHECK ((state = 'set') = (set_at IS NOT NULL)),
    CHECK ((state = 'abandoned') = (abandoned_at IS NOT NULL))
) STRICT;
INSERT INTO owner_auths_new (id, device_id, run_id, chip_id, work_order, policy, escrow_key_id, suite, enc, sealed, state, created_at, set_at)
    SELECT id, device_id, run_id, chip_id, work_order, policy, escrow_key_id, suite, enc, sealed, state, created_at, set_at FROM owner_auths;
DROP TABLE owner_auths;
ALTER TABLE owner_auths_new RENAME TO owner_auths;
CREATE INDEX owner_auths_device ON owner_auths (device_id, id);
-- The run's end names the records it wrote (db/ownerauth.go noteRunOwnerAuths).
CREATE INDEX owner_auths_run ON owner_auths (run_id) WHERE run_id IS NOT NULL;

-- Defence in depth (the ledger's hash is the proof): the store never changes a
-- certificate's role once recorded.
CREATE TRIGGER certificates_role_fixed BEFORE UPDATE OF role ON certificates
BEGIN
    SELECT RAISE(ABORT, 'a recorded certificate''s role is never rewritten');
END;
