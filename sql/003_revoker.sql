-- revd's revocation API writes revocations for CAs that call it over mutual TLS. Its
-- role changes only the revocation columns of existing rows: it cannot issue,
-- delete, or touch CRLs.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'revd_revoker') THEN
        CREATE ROLE revd_revoker NOLOGIN IN ROLE revd_reader;
    END IF;
END
$$;
GRANT UPDATE (revoked_at, reason, invalidity_date) ON certificates TO revd_revoker;
-- The trigger stamps change_seq from the sequence on every update.
GRANT USAGE ON SEQUENCE revd_change_seq TO revd_revoker;

INSERT INTO revd_schema (version) VALUES (3);
