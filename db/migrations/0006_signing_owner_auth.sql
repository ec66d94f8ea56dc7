-- 0006: issue 15. A device may hold two live certificates, one per role: its identity
-- certificate (IEEE 802.1AR IDevID, clientAuth) and its code-signing certificate (an LDevID,
-- codeSigning). And the TPM owner authorisation the station sets, sealed to the escrow key.

ALTER TABLE issue_intents ADD COLUMN role TEXT NOT NULL DEFAULT 'idevid' CHECK (role IN ('idevid', 'ldevid'));
ALTER TABLE certificates ADD COLUMN role TEXT NOT NULL DEFAULT 'idevid' CHECK (role IN ('idevid', 'ldevid'));
-- Never two live certificates of one role for one device.
DROP INDEX certificates_one_live;
CREATE UNIQUE INDEX certificates_one_live ON certificates (device_id, role) WHERE revoked_at IS NULL;

-- The owner authorisation of a device's TPM, sealed (HPKE) to the escrow public key that
-- security staff hold offline, recorded BEFORE the station sets it on the chip. The value
-- itself is never stored: only security staff with the escrow private key can open it
-- (wsc owner-auth unseal). policy 'none' records that the work order left the owner
-- hierarchy as it was (no row holds a secret then).
CREATE TABLE owner_auths (
    id            INTEGER PRIMARY KEY,
    device_id     INTEGER NOT NULL REFERENCES devices (id),
    run_id        INTEGER REFERENCES runs (id),
    chip_id       BLOB NOT NULL,
    work_order    TEXT NOT NULL DEFAULT '',
    policy        TEXT NOT NULL CHECK (policy IN ('sealed', 'none')),
    escrow_key_id BLOB,                             -- SHA-256 of the escrow public key (PKIX DER)
    suite         TEXT NOT NULL DEFAULT '',         -- HPKE suite name
    enc           BLOB,                             -- HPKE encapsulated key
    sealed        BLOB,                             -- HPKE ciphertext of the owner authorisation
    state         TEXT NOT NULL CHECK (state IN ('pending', 'set', 'none')),
    created_at    INTEGER NOT NULL,
    set_at        INTEGER,
    CHECK ((policy = 'sealed') = (sealed IS NOT NULL AND enc IS NOT NULL AND escrow_key_id IS NOT NULL))
) STRICT;
CREATE INDEX owner_auths_device ON owner_auths (device_id, id);
