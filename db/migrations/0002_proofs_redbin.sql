-- 0002: which proof each certificate rests on, and a red bin that sticks.

-- The attestation proof the station demanded for an issuance ('tpm', 'atecc608', 'unattested');
-- the certificate row takes it from its intent.
ALTER TABLE issue_intents ADD COLUMN proof TEXT NOT NULL DEFAULT '';
ALTER TABLE certificates ADD COLUMN proof TEXT NOT NULL DEFAULT '';
-- The proof the device's chip binding rests on.
ALTER TABLE devices ADD COLUMN proof TEXT NOT NULL DEFAULT '';

-- Red bin, keyed on the chip's identity (EK public-key hash for TPMs, the SE's chip identity,
-- the key hash for unattested devices) — never on the serial a device reports, which it chooses.
-- A row is active until a supervisor releases it.
CREATE TABLE red_bin (
    id           INTEGER PRIMARY KEY,
    chip_id      BLOB NOT NULL,
    serial       TEXT NOT NULL DEFAULT '',           -- as reported (informational)
    reason       TEXT NOT NULL,
    cert_serial  TEXT NOT NULL DEFAULT '',
    operator     TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    released_at  INTEGER,
    released_by  TEXT,
    release_note TEXT,
    CHECK ((released_at IS NULL) = (released_by IS NULL))
) STRICT;
-- At most one active red-bin entry per chip.
CREATE UNIQUE INDEX red_bin_active ON red_bin (chip_id) WHERE released_at IS NULL;
CREATE INDEX devices_chip ON devices (ek_pub_hash);
