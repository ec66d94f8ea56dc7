-- 0001: the plant registry. Every station's ledger rows as witnessed, and the records
-- derived from them (device bindings, certificates, runs, revocations), with per-station
-- write isolation: a station's role may INSERT (and SELECT) only its own rows (row-level
-- security on station_id); no station may UPDATE or DELETE anything.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'wsc_station') THEN
        CREATE ROLE wsc_station NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'wsc_reader') THEN
        CREATE ROLE wsc_reader NOLOGIN;
    END IF;
END $$;

CREATE TABLE stations (
    id           text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9._-]{1,64}$'),
    role         name NOT NULL UNIQUE,      -- the PostgreSQL login role of this station
    audit_key    bytea NOT NULL,            -- pinned audit public key, PKIX DER
    audit_key_id bytea NOT NULL,            -- SHA-256 of audit_key
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- The station a login role writes for (NULL for any other role).
CREATE FUNCTION plant_station_of(r name) RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$ SELECT id FROM public.stations WHERE role = r $$;
REVOKE ALL ON FUNCTION plant_station_of(name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION plant_station_of(name) TO wsc_station, wsc_reader;

-- Every ledger row of every station, as the station sent it (detail byte for byte).
CREATE TABLE ledger (
    station_id  text NOT NULL REFERENCES stations (id),
    seq         bigint NOT NULL CHECK (seq > 0),
    hash        bytea NOT NULL CHECK (octet_length(hash) = 32),
    prev_hash   bytea NOT NULL CHECK (octet_length(prev_hash) = 32),
    at          bigint NOT NULL,            -- station clock, Unix nanoseconds
    kind        text NOT NULL,
    actor       text NOT NULL,
    detail      text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (station_id, seq)
);

-- Server-side witness: whatever client inserts, a row must extend the chain held for its
-- station (the previous row exists and its hash is this row's prev_hash). With the primary
-- key this refuses forks, gaps and rewrites even from a client that skips the Go checks.
CREATE FUNCTION ledger_extends_chain() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    h bytea;
BEGIN
    IF NEW.seq = 1 THEN
        IF NEW.prev_hash <> decode(repeat('00', 32), 'hex') THEN
            RAISE EXCEPTION 'ledger row 1 of station % does not start a chain', NEW.station_id USING ERRCODE = 'WS002';
        END IF;
        RETURN NEW;
    END IF;
    SELECT l.hash INTO h FROM public.ledger l WHERE l.station_id = NEW.station_id AND l.seq = NEW.seq - 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ledger row % of station % arrives before row %', NEW.seq, NEW.station_id, NEW.seq - 1 USING ERRCODE = 'WS001';
    END IF;
    IF h <> NEW.prev_hash THEN
        RAISE EXCEPTION 'ledger row % of station % does not extend the chain held by the registry', NEW.seq, NEW.station_id
            USING ERRCODE = 'WS002';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER ledger_extends_chain BEFORE INSERT ON ledger FOR EACH ROW EXECUTE FUNCTION ledger_extends_chain();

CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the witnessed ledger is append-only' USING ERRCODE = 'WS003';
END $$;
CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON ledger FOR EACH ROW EXECUTE FUNCTION ledger_append_only();

-- Signed checkpoints, verified against the station's pinned audit key at ingest.
CREATE TABLE checkpoints (
    station_id  text NOT NULL,
    seq         bigint NOT NULL,            -- the checkpoint row
    covers_seq  bigint NOT NULL,
    covers_hash bytea NOT NULL,
    key_id      bytea NOT NULL,
    sig         bytea NOT NULL,
    PRIMARY KEY (station_id, seq),
    FOREIGN KEY (station_id, seq) REFERENCES ledger (station_id, seq)
);

-- Device bindings: a device serial bound to a chip identity (EK or chip key hash) and a
-- certified key, at a station (from each "cert.issue" row).
CREATE TABLE devices (
    station_id  text NOT NULL,
    seq         bigint NOT NULL,
    serial      text NOT NULL,
    ek_hash     bytea,
    key_hash    bytea NOT NULL,
    backend     text NOT NULL DEFAULT '',
    model       text NOT NULL DEFAULT '',
    work_order  text NOT NULL DEFAULT '',
    bound_at    timestamptz NOT NULL,
    PRIMARY KEY (station_id, seq),
    FOREIGN KEY (station_id, seq) REFERENCES ledger (station_id, seq)
);
CREATE INDEX devices_serial ON devices (serial);
CREATE INDEX devices_ek ON devices (ek_hash);
CREATE INDEX devices_key ON devices (key_hash);

CREATE TABLE certificates (
    station_id    text NOT NULL,
    seq           bigint NOT NULL,
    serial_hex    text NOT NULL,
    device_serial text NOT NULL,
    issuer_key_id bytea NOT NULL,
    der           bytea NOT NULL,
    run_id        bigint NOT NULL DEFAULT 0,
    work_order    text NOT NULL DEFAULT '',
    not_before    timestamptz NOT NULL,
    not_after     timestamptz NOT NULL,
    issued_at     timestamptz NOT NULL,
    PRIMARY KEY (station_id, seq),
    FOREIGN KEY (station_id, seq) REFERENCES ledger (station_id, seq)
);
CREATE INDEX certificates_serial ON certificates (serial_hex);
CREATE INDEX certificates_device ON certificates (device_serial);
CREATE INDEX certificates_issued ON certificates (issued_at);

CREATE TABLE confirmations (
    station_id    text NOT NULL,
    seq           bigint NOT NULL,
    serial_hex    text NOT NULL,
    device_serial text NOT NULL,
    at            timestamptz NOT NULL,
    PRIMARY KEY (station_id, seq),
    FOREIGN KEY (station_id, seq) REFERENCES ledger (station_id, seq)
);
CREATE INDEX confirmations_serial ON confirmations (serial_hex);

CREATE TABLE revocations (
    station_id    text NOT NULL,
    seq           bigint NOT NULL,
    serial_hex    text NOT NULL,
    device_serial text NOT NULL DEFAULT '',
    reason        text NOT NULL,
    at            timestamptz NOT NULL,
    PRIMARY KEY (station_id, seq),
    FOREIGN KEY (station_id, seq) REFERENCES ledger (station_id, seq)
);
CREATE INDEX revocations_serial ON revocations (serial_hex);

CREATE TABLE red_bins (
    station_id    text NOT NULL,
    seq           bigint NOT NULL,
    device_serial text NOT NULL,
    reason        text NOT NULL DEFAULT '',
    at            timestamptz NOT NULL,
    PRIMARY KEY (station_id, seq),
    FOREIGN KEY (station_id, seq) REFERENCES ledger (station_id, seq)
);

-- Provisioning attempts (not in the ledger: keyed on the station's run id, with the hash
-- of the finished run's content so that a replay is a no-op and a change is a tamper alarm).
CREATE TABLE runs (
    station_id    text NOT NULL REFERENCES stations (id),
    run_id        bigint NOT NULL,
    content_hash  bytea NOT NULL,
    device_serial text NOT NULL DEFAULT '',
    slot          int NOT NULL DEFAULT 0,
    operator      text NOT NULL DEFAULT '',
    work_order    text NOT NULL DEFAULT '',
    step          text NOT NULL DEFAULT '',
    result        text NOT NULL CHECK (result IN ('ok', 'failed')),
    error         text NOT NULL DEFAULT '',
    durations     jsonb NOT NULL DEFAULT '{}',
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz NOT NULL,
    PRIMARY KEY (station_id, run_id)
);
CREATE INDEX runs_finished ON runs (finished_at);
CREATE INDEX runs_device ON runs (device_serial);

-- Tamper and consistency alarms. A station may raise alarms about itself; the fingerprint
-- makes a re-sent bad batch raise its alarm once.
CREATE TABLE alarms (
    id          bigserial PRIMARY KEY,
    station_id  text NOT NULL REFERENCES stations (id),
    kind        text NOT NULL,
    seq         bigint NOT NULL DEFAULT 0,
    detail      text NOT NULL,
    fingerprint bytea NOT NULL,
    raised_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (station_id, kind, seq, fingerprint)
);

-- Revocations asked for by the plant (wsc plant revoke); the station holding the issuing
-- intermediate applies them on its next sync, which shows as a row in revocations.
CREATE TABLE revocation_requests (
    id           bigserial PRIMARY KEY,
    serial_hex   text NOT NULL UNIQUE,
    reason       text NOT NULL,
    requested_by text NOT NULL DEFAULT current_user,
    requested_at timestamptz NOT NULL DEFAULT now()
);

-- Each station's issuing intermediates and its current CRLs, published by the station
-- (wsc plant bundle collects them into one trust bundle for QA).
CREATE TABLE issuers (
    station_id text NOT NULL REFERENCES stations (id),
    key_id     bytea NOT NULL,
    der        bytea NOT NULL,
    PRIMARY KEY (station_id, key_id)
);
CREATE TABLE crls (
    station_id    text NOT NULL REFERENCES stations (id),
    issuer_key_id bytea NOT NULL,
    number        numeric NOT NULL,
    this_update   timestamptz NOT NULL,
    der           bytea NOT NULL,
    PRIMARY KEY (station_id, issuer_key_id, number)
);

-- Grants: stations INSERT and SELECT their own rows; readers SELECT everything.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['ledger', 'checkpoints', 'devices', 'certificates', 'confirmations', 'revocations',
                             'red_bins', 'runs', 'alarms', 'issuers', 'crls'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY station_own ON %I TO wsc_station USING (station_id = plant_station_of(current_user))
                        WITH CHECK (station_id = plant_station_of(current_user))', t);
        EXECUTE format('CREATE POLICY reader_all ON %I FOR SELECT TO wsc_reader USING (true)', t);
        EXECUTE format('GRANT SELECT, INSERT ON %I TO wsc_station', t);
        EXECUTE format('GRANT SELECT ON %I TO wsc_reader', t);
    END LOOP;
END $$;
GRANT USAGE ON SEQUENCE alarms_id_seq TO wsc_station;
ALTER TABLE stations ENABLE ROW LEVEL SECURITY;
CREATE POLICY station_self ON stations FOR SELECT TO wsc_station USING (role = current_user);
CREATE POLICY reader_all ON stations FOR SELECT TO wsc_reader USING (true);
GRANT SELECT ON stations TO wsc_station, wsc_reader;
GRANT SELECT ON revocation_requests TO wsc_station, wsc_reader;
