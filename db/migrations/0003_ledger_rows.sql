-- 0003: the audit ledger vouches for every row of the covered tables (db/ledger.go lists
-- them): each write appends, in the same transaction, an audit row whose detail carries the
-- SHA-256 of the rows written. When this migration runs on an existing database the store
-- appends "ledger.baseline" rows that reference the rows already present (Go hook in
-- migrate.go), in the same transaction.
--
-- Defence in depth (the hashes are the proof): what the ledger vouches for is never
-- deleted by the store, revocations are never edited, and a certificate's identity, DER and
-- chain never change once recorded.
CREATE TRIGGER revocations_no_update BEFORE UPDATE ON revocations
BEGIN
    SELECT RAISE(ABORT, 'revocations are append-only');
END;
CREATE TRIGGER revocations_no_delete BEFORE DELETE ON revocations
BEGIN
    SELECT RAISE(ABORT, 'revocations are append-only');
END;
CREATE TRIGGER certificates_no_delete BEFORE DELETE ON certificates
BEGIN
    SELECT RAISE(ABORT, 'certificates are never deleted');
END;
CREATE TRIGGER certificates_fixed BEFORE UPDATE OF serial_hex, device_id, key_id, intent_id, issuer_key_id, der, chain_id,
    not_before, not_after ON certificates
BEGIN
    SELECT RAISE(ABORT, 'a recorded certificate is never rewritten');
END;
CREATE TRIGGER chains_no_update BEFORE UPDATE ON chains
BEGIN
    SELECT RAISE(ABORT, 'chains are never rewritten');
END;
CREATE TRIGGER keys_no_delete BEFORE DELETE ON keys
BEGIN
    SELECT RAISE(ABORT, 'keys are never deleted');
END;
CREATE TRIGGER devices_no_delete BEFORE DELETE ON devices
BEGIN
    SELECT RAISE(ABORT, 'devices are never deleted');
END;
