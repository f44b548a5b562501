-- revd schema, version 2: published CRLs, and the numbering every instance shares.
-- revd writes these tables; the CA only reads them (or imports CRLs it signed itself).

-- One sequence of CRLs: an issuer's CRL, or one shard of a partitioned issuer (shard
-- 0 is the whole issuer when it is not partitioned). Full and delta CRLs of a series
-- share its numbers (RFC 5280 §5.2.3). A generator holds this row locked
-- (SELECT ... FOR UPDATE SKIP LOCKED) while it builds, so there is one generator per
-- series at a time and last_number only grows.
CREATE TABLE crl_series (
    issuer_id   integer NOT NULL REFERENCES issuers (id),
    shard       integer NOT NULL CHECK (shard >= 0),
    last_number bigint NOT NULL DEFAULT 0 CHECK (last_number >= 0),
    PRIMARY KEY (issuer_id, shard)
);

CREATE TABLE crls (
    issuer_id    integer NOT NULL,
    shard        integer NOT NULL,
    number       bigint NOT NULL CHECK (number > 0),
    -- NULL: a full CRL; else a delta CRL on the full CRL so numbered.
    delta_base   bigint CHECK (delta_base IS NULL OR (delta_base > 0 AND delta_base < number)),
    this_update  timestamptz NOT NULL,
    next_update  timestamptz NOT NULL CHECK (next_update > this_update),
    der          bytea NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (issuer_id, shard, number),
    FOREIGN KEY (issuer_id, shard) REFERENCES crl_series (issuer_id, shard)
);

-- Tells every instance a CRL was published: "issuer shard number".
CREATE FUNCTION revd_crls_published() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('revd_crls', NEW.issuer_id || ' ' || NEW.shard || ' ' || NEW.number);
    RETURN NEW;
END
$$;
CREATE TRIGGER crls_published AFTER INSERT ON crls
    FOR EACH ROW EXECUTE FUNCTION revd_crls_published();

-- The revoked certificates of an issuer in serial order, as a CRL build reads them.
CREATE INDEX certificates_revoked_serial ON certificates (issuer_id, serial)
    WHERE revoked_at IS NOT NULL;

-- Instances that only serve CRLs read them; the ones that generate them write.
GRANT SELECT ON crl_series, crls TO revd_reader;
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'revd_crl_writer') THEN
        CREATE ROLE revd_crl_writer NOLOGIN IN ROLE revd_reader;
    END IF;
END
$$;
GRANT INSERT, UPDATE, DELETE ON crl_series, crls TO revd_crl_writer;

INSERT INTO revd_schema (version) VALUES (2);
