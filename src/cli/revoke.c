/* revd revoke: revokes one certificate in the database, or releases a hold. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/pgcli.h"
#include "ocsp/ocsp.h"

static const char revoke_usage[] =
	"usage: revd revoke [--dsn DSN] --issuer NAME --serial HEX --reason REASON\n"
	"                   [--invalidity-date TIME] [--time TIME]\n"
	"       revd revoke [--dsn DSN] --unhold --issuer NAME --serial HEX\n"
	"\n"
	"Revokes a certificate the issuer issued (it must be in the database), or releases\n"
	"a certificateHold. A revoked certificate stays revoked; only a certificateHold may\n"
	"become another reason (keeping its revocation time) or be released.\n"
	"\n"
	"  --dsn DSN               libpq connection string or URI (default: $REVD_DSN)\n"
	"  --issuer NAME           the issuer, as registered with `revd db add-issuer`\n"
	"  --serial HEX            the serial number in hex, as openssl prints it\n"
	"  --reason REASON         unspecified, keyCompromise, cACompromise,\n"
	"                          affiliationChanged, superseded, cessationOfOperation,\n"
	"                          certificateHold, privilegeWithdrawn or aACompromise\n"
	"  --invalidity-date TIME  when the key was (or may have been) compromised\n"
	"  --time TIME             the revocation time (default: now)\n"
	"  --unhold                release a certificateHold\n"
	"  -h, --help              this text\n"
	"\n"
	"TIME: YYYYMMDDHHMMSSZ or ISO 8601 (2024-01-02T03:04:05Z, or with an offset).\n";

enum { OPT_DSN = 1000, OPT_ISSUER, OPT_SERIAL, OPT_REASON, OPT_INVALIDITY, OPT_TIME, OPT_UNHOLD };

#define CMD "revoke"

struct revoke_args {
	const char *dsn, *issuer, *serial_text;
	struct store_serial serial;
	char serial_hex[PGCLI_SERIAL_HEX_LEN];
	bool unhold;
	int reason;
	bool has_time, has_invalidity;
	char time[PGCLI_TIME_LEN], invalidity[PGCLI_TIME_LEN];
};

/* The certificate's row, locked for this transaction. */
struct cert_state {
	bool revoked;
	int reason; /* STORE_REASON_NONE: NULL */
	char revoked_at[PGCLI_TIME_LEN];
};

/* Parameters $1 issuer id, $2 serial (binary) for the statements below. */
struct cert_key {
	char id[16];
	const char *vals[5];
	int lens[5];
	int fmts[5];
};

static void cert_key_init(struct cert_key *k, int issuer_id, const struct store_serial *serial)
{
	memset(k, 0, sizeof(*k));
	snprintf(k->id, sizeof(k->id), "%d", issuer_id);
	k->vals[0] = k->id;
	k->vals[1] = (const char *)serial->bytes;
	k->lens[1] = serial->len;
	k->fmts[1] = 1;
}

/* 1 found (state filled), 0 not issued, -1 error. */
static int lock_cert(struct pgcli *c, struct cert_key *k, struct cert_state *st)
{
	PGresult *r = pgcli_query(c, "looking up the certificate",
	                          "SELECT revoked_at IS NOT NULL, reason,"
	                          " floor(extract(epoch FROM revoked_at))::bigint"
	                          " FROM certificates WHERE issuer_id = $1 AND serial = $2"
	                          " FOR UPDATE",
	                          2, k->vals, k->lens, k->fmts);
	if (r == NULL)
		return -1;
	int found = PQntuples(r) == 1;
	if (found) {
		st->revoked = PQgetvalue(r, 0, 0)[0] == 't';
		st->reason = PQgetisnull(r, 0, 1) ? STORE_REASON_NONE : atoi(PQgetvalue(r, 0, 1));
		st->revoked_at[0] = '\0';
		if (st->revoked)
			pgcli_time_format(atoll(PQgetvalue(r, 0, 2)), st->revoked_at);
	}
	PQclear(r);
	return found;
}

/* Runs an UPDATE of the locked row; when it returns the revocation time, into at. */
static bool set_revocation(struct pgcli *c, struct cert_key *k, const char *sql, int n,
                           char at[PGCLI_TIME_LEN])
{
	PGresult *r = pgcli_query(c, "updating the certificate", sql, n, k->vals, k->lens, k->fmts);
	if (r != NULL && at != NULL && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
		pgcli_time_format(atoll(PQgetvalue(r, 0, 0)), at);
	PQclear(r);
	return r != NULL;
}

static int do_unhold(struct pgcli *c, const struct revoke_args *a, struct cert_key *k,
                     const struct cert_state *st)
{
	if (!st->revoked) {
		pgcli_error(CMD, "serial %s of %s is not revoked: there is no hold to release",
		            a->serial_hex, a->issuer);
		return CLI_FAIL;
	}
	if (st->reason != OCSP_REASON_CERTIFICATE_HOLD) {
		pgcli_error(CMD, "serial %s of %s is revoked (%s, at %s), not on hold: only a "
		                 "certificateHold can be released", a->serial_hex, a->issuer,
		            pgcli_reason_name(st->reason), st->revoked_at);
		return CLI_FAIL;
	}
	if (!set_revocation(c, k,
	                    "UPDATE certificates SET revoked_at = NULL, reason = NULL,"
	                    " invalidity_date = NULL WHERE issuer_id = $1 AND serial = $2",
	                    2, NULL) ||
	    !pgcli_run(c, "committing", "COMMIT"))
		return CLI_FAIL;
	printf("released serial %s of %s from certificateHold (held since %s)\n", a->serial_hex,
	       a->issuer, st->revoked_at);
	return CLI_OK;
}

static int do_revoke(struct pgcli *c, const struct revoke_args *a, struct cert_key *k,
                     const struct cert_state *st)
{
	bool escalate = st->revoked && st->reason == OCSP_REASON_CERTIFICATE_HOLD &&
	                a->reason != OCSP_REASON_CERTIFICATE_HOLD;
	if (st->revoked && !escalate) {
		pgcli_error(CMD, "serial %s of %s is already revoked (at %s, %s)", a->serial_hex,
		            a->issuer, st->revoked_at, pgcli_reason_name(st->reason));
		return CLI_FAIL;
	}
	char reason[8];
	snprintf(reason, sizeof(reason), "%d", a->reason);
	k->vals[2] = reason;
	k->vals[3] = a->has_invalidity ? a->invalidity : NULL;
	k->vals[4] = a->has_time ? a->time : NULL;
	static const char escalate_sql[] =
		"UPDATE certificates SET reason = $3, invalidity_date = $4::timestamptz"
		" WHERE issuer_id = $1 AND serial = $2";
	/* Whole seconds, as OCSP carries them. */
	static const char revoke_sql[] =
		"UPDATE certificates SET reason = $3, invalidity_date = $4::timestamptz,"
		" revoked_at = coalesce($5::timestamptz, date_trunc('second', now()))"
		" WHERE issuer_id = $1 AND serial = $2"
		" RETURNING floor(extract(epoch FROM revoked_at))::bigint";
	char at[PGCLI_TIME_LEN] = "";
	bool ok = escalate ? set_revocation(c, k, escalate_sql, 4, NULL)
	                   : set_revocation(c, k, revoke_sql, 5, at);
	if (!ok || !pgcli_run(c, "committing", "COMMIT"))
		return CLI_FAIL;
	if (escalate)
		printf("serial %s of %s, on hold since %s, is now revoked: %s (revocation time "
		       "kept%s)\n", a->serial_hex, a->issuer, st->revoked_at,
		       pgcli_reason_name(a->reason), a->has_time ? "; --time ignored" : "");
	else
		printf("revoked serial %s of %s at %s, reason %s%s%s\n", a->serial_hex, a->issuer,
		       at, pgcli_reason_name(a->reason),
		       a->has_invalidity ? ", invalidity date " : "",
		       a->has_invalidity ? a->invalidity : "");
	return CLI_OK;
}

static int revoke_run(struct pgcli *c, const struct revoke_args *a)
{
	int issuer_id;
	if (!pgcli_run(c, "starting the transaction", "BEGIN"))
		return CLI_FAIL;
	if (pgcli_issuer_find(c, a->issuer, &issuer_id, NULL) != 1)
		return CLI_FAIL;
	struct cert_key k;
	struct cert_state st;
	cert_key_init(&k, issuer_id, &a->serial);
	int found = lock_cert(c, &k, &st);
	if (found < 0)
		return CLI_FAIL;
	if (found == 0) {
		pgcli_error(CMD, "serial %s is not in the database: not issued by %s", a->serial_hex,
		            a->issuer);
		return CLI_FAIL;
	}
	return a->unhold ? do_unhold(c, a, &k, &st) : do_revoke(c, a, &k, &st);
}

static int parse_time_arg(const char *opt, const char *text, char out[PGCLI_TIME_LEN])
{
	int64_t t;
	if (!pgcli_time_parse(text, &t))
		return pgcli_value_error(CMD, "%s: '%s' is not YYYYMMDDHHMMSSZ or ISO 8601 "
		                              "(2024-01-02T03:04:05Z)", opt, text);
	pgcli_time_format(t, out);
	return CLI_OK;
}

/* Checks what the options say together; CLI_OK or CLI_USAGE after a message. */
static int check_args(struct revoke_args *a, const char *reason)
{
	if (a->dsn == NULL || a->issuer == NULL || a->serial_text == NULL)
		return pgcli_usage_error(CMD, revoke_usage, "%s is required",
		                         a->dsn == NULL      ? "--dsn (or REVD_DSN)"
		                         : a->issuer == NULL ? "--issuer"
		                                             : "--serial");
	if (!pgcli_serial_parse(a->serial_text, &a->serial))
		return pgcli_value_error(CMD, "--serial: '%s' is not a serial number in hex (1 to "
		                              "%d octets)", a->serial_text, STORE_MAX_SERIAL);
	pgcli_serial_hex(&a->serial, a->serial_hex);
	if (a->unhold) {
		if (reason != NULL || a->has_time || a->has_invalidity)
			return pgcli_usage_error(CMD, revoke_usage, "--unhold takes no --reason, "
			                                            "--time or --invalidity-date");
		return CLI_OK;
	}
	if (reason == NULL)
		return pgcli_usage_error(CMD, revoke_usage, "--reason is required");
	a->reason = pgcli_reason_parse(reason);
	if (a->reason < 0)
		return pgcli_value_error(CMD, "--reason: unknown reason '%s'", reason);
	return CLI_OK;
}

int cli_revoke(int argc, char **argv)
{
	static const struct option opts[] = {
		{"dsn", required_argument, NULL, OPT_DSN},
		{"issuer", required_argument, NULL, OPT_ISSUER},
		{"serial", required_argument, NULL, OPT_SERIAL},
		{"reason", required_argument, NULL, OPT_REASON},
		{"invalidity-date", required_argument, NULL, OPT_INVALIDITY},
		{"time", required_argument, NULL, OPT_TIME},
		{"unhold", no_argument, NULL, OPT_UNHOLD},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct revoke_args a = {0};
	const char *reason = NULL;
	int opt, status = CLI_OK;
	while (status == CLI_OK &&
	       (opt = pgcli_getopt(CMD, revoke_usage, argc, argv, opts, &status)) != -1) {
		switch (opt) {
		case PGCLI_OPT_EXIT: return status;
		case OPT_DSN: a.dsn = optarg; break;
		case OPT_ISSUER: a.issuer = optarg; break;
		case OPT_SERIAL: a.serial_text = optarg; break;
		case OPT_REASON: reason = optarg; break;
		case OPT_UNHOLD: a.unhold = true; break;
		case OPT_INVALIDITY:
			a.has_invalidity = true;
			status = parse_time_arg("--invalidity-date", optarg, a.invalidity);
			break;
		case OPT_TIME:
			a.has_time = true;
			status = parse_time_arg("--time", optarg, a.time);
			break;
		}
	}
	if (status != CLI_OK)
		return status;
	if (optind < argc)
		return pgcli_usage_error(CMD, revoke_usage, "unexpected argument '%s'", argv[optind]);
	a.dsn = pgcli_dsn(a.dsn);
	if ((status = check_args(&a, reason)) != CLI_OK)
		return status;

	struct pgcli c;
	if (!pgcli_connect(&c, CMD, a.dsn))
		return CLI_FAIL;
	status = revoke_run(&c, &a);
	pgcli_rollback(&c);
	pgcli_close(&c);
	return status;
}
