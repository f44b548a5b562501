/* revd status: what an OCSP client would be told about one serial, and why. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/pgcli.h"
#include "core/clock.h"
#include "db/index.h"
#include "ocsp/status.h"

static const char status_usage[] =
	"usage: revd status [--dsn DSN | --index FILE] --issuer NAME --serial HEX\n"
	"                   [--not-issued unknown|unauthorized|revoked]\n"
	"\n"
	"Prints what revd would answer an OCSP client for one serial, and why: the record\n"
	"in the database (or in an OpenSSL index.txt) and the policy for serials never issued.\n"
	"\n"
	"  --dsn DSN         libpq connection string or URI (default: $REVD_DSN)\n"
	"  --index FILE      read an OpenSSL index.txt instead of the database\n"
	"  --issuer NAME     the issuer (with --index: only a label)\n"
	"  --serial HEX      the serial number in hex, as openssl prints it\n"
	"  --not-issued P    the answer for a serial never issued: unknown (default),\n"
	"                    unauthorized or revoked (as revd serve's not_issued)\n"
	"  -h, --help        this text\n"
	"\n"
	"Exits 0 when it could tell (whatever the answer), 1 when it could not.\n";

enum { OPT_DSN = 1000, OPT_INDEX, OPT_ISSUER, OPT_SERIAL, OPT_NOT_ISSUED };

#define CMD "status"

struct status_args {
	const char *dsn, *index, *issuer, *serial_text;
	struct store_serial serial;
	enum ocsp_not_issued policy;
};

static const char *const policy_names[] = {"unknown", "unauthorized", "revoked"};

/* ---- the record ---- */

/* 0 with *rec filled, or CLI_FAIL after a message. */
static int record_from_index(const struct status_args *a, struct store_record *rec,
                             bool *precert)
{
	struct index_snapshot *snap = pgcli_load_index(CMD, a->index);
	if (snap == NULL)
		return CLI_FAIL;
	memset(rec, 0, sizeof(*rec));
	*precert = false;
	if (!index_snapshot_find(snap, a->serial.bytes, a->serial.len, rec))
		rec->status = STORE_NOT_ISSUED;
	index_snapshot_free(snap);
	return CLI_OK;
}

static int64_t epoch_or_zero(const PGresult *r, int col)
{
	return PQgetisnull(r, 0, col) ? 0 : atoll(PQgetvalue(r, 0, col));
}

static int query_record(struct pgcli *c, int issuer_id, const struct store_serial *serial,
                        struct store_record *rec, bool *precert)
{
	char id[16];
	snprintf(id, sizeof(id), "%d", issuer_id);
	const char *vals[] = {id, (const char *)serial->bytes};
	int lens[] = {0, serial->len}, fmts[] = {0, 1};
	PGresult *r = pgcli_query(c, "looking up the certificate",
	                          "SELECT floor(extract(epoch FROM not_after))::bigint,"
	                          " revoked_at IS NOT NULL,"
	                          " floor(extract(epoch FROM revoked_at))::bigint, reason,"
	                          " floor(extract(epoch FROM invalidity_date))::bigint,"
	                          " precertificate"
	                          " FROM certificates WHERE issuer_id = $1 AND serial = $2",
	                          2, vals, lens, fmts);
	if (r == NULL)
		return CLI_FAIL;
	memset(rec, 0, sizeof(*rec));
	rec->reason = STORE_REASON_NONE;
	rec->status = STORE_NOT_ISSUED;
	if (PQntuples(r) == 1) {
		rec->not_after = epoch_or_zero(r, 0);
		rec->status = PQgetvalue(r, 0, 1)[0] == 't' ? STORE_REVOKED : STORE_GOOD;
		rec->revoked_at = epoch_or_zero(r, 2);
		if (!PQgetisnull(r, 0, 3))
			rec->reason = atoi(PQgetvalue(r, 0, 3));
		rec->invalidity_date = epoch_or_zero(r, 4);
		*precert = PQgetvalue(r, 0, 5)[0] == 't';
	}
	PQclear(r);
	return CLI_OK;
}

static int record_from_db(const struct status_args *a, struct store_record *rec, bool *precert)
{
	struct pgcli c;
	if (!pgcli_connect(&c, CMD, a->dsn))
		return CLI_FAIL;
	int issuer_id;
	int status = pgcli_issuer_find(&c, a->issuer, &issuer_id, NULL) == 1
	                     ? query_record(&c, issuer_id, &a->serial, rec, precert)
	                     : CLI_FAIL;
	pgcli_close(&c);
	return status;
}

/* ---- the explanation ---- */

static void print_revocation(const struct ocsp_single *s)
{
	char t[REVOKE_TIME_LEN];
	revoke_time_format(s->revoked_at, t);
	printf("revoked at %s, %s%s", t, s->reason == OCSP_REASON_NONE ? "" : "reason ",
	       revoke_reason_name(s->reason));
	if (s->invalidity_date != 0) {
		revoke_time_format(s->invalidity_date, t);
		printf(", invalidity date %s", t);
	}
}

static void print_issued(const struct status_args *a, const char *hex,
                         const struct store_record *rec, bool precert,
                         const struct ocsp_single *s)
{
	char t[REVOKE_TIME_LEN];
	printf("serial %s issued by %s%s: ", hex, a->issuer, precert ? " (a precertificate)" : "");
	if (s->status == OCSP_STATUS_REVOKED)
		print_revocation(s);
	else
		printf("not revoked");
	if (rec->not_after != 0) {
		revoke_time_format(rec->not_after, t);
		if (rec->not_after <= clock_now())
			printf(", expired %.10s (status unchanged by expiry)", t);
		else
			printf(", valid until %s", t);
	}
	printf(" -> OCSP: %s\n", s->status == OCSP_STATUS_REVOKED ? "revoked" : "good");
}

static void print_not_issued(const struct status_args *a, const char *hex, bool answered,
                             const struct ocsp_single *s, bool extended)
{
	printf("serial %s is not in %s's records -> OCSP: ", hex, a->issuer);
	if (!answered)
		printf("unauthorized");
	else if (s->status == OCSP_STATUS_REVOKED) {
		print_revocation(s);
		if (extended)
			printf(", with the Extended Revoked Definition extension");
	} else
		printf("unknown");
	printf(" (not_issued = %s)\n", policy_names[a->policy]);
}

static int explain(const struct status_args *a, const struct store_record *rec, bool precert)
{
	struct ocsp_single s = {0};
	bool extended = false;
	bool answered = ocsp_status_decide(rec, a->policy, &s, &extended);
	char hex[REVOKE_SERIAL_HEX_LEN];
	revoke_serial_hex(&a->serial, hex);
	if (rec->status == STORE_NOT_ISSUED)
		print_not_issued(a, hex, answered, &s, extended);
	else
		print_issued(a, hex, rec, precert, &s);
	return CLI_OK;
}

/* ---- options ---- */

static int check_args(struct status_args *a, const char *policy)
{
	if (a->dsn != NULL && a->index != NULL)
		return pgcli_usage_error(CMD, status_usage, "give --dsn or --index, not both");
	if (a->index == NULL)
		a->dsn = pgcli_dsn(a->dsn);
	if (a->index == NULL && a->dsn == NULL)
		return pgcli_usage_error(CMD, status_usage,
		                         "no records: give --dsn (or set REVD_DSN) or --index");
	if (a->issuer == NULL || a->serial_text == NULL)
		return pgcli_usage_error(CMD, status_usage, "%s is required",
		                         a->issuer == NULL ? "--issuer" : "--serial");
	if (!revoke_serial_parse(a->serial_text, &a->serial))
		return pgcli_value_error(CMD, "--serial: '%s' is not a serial number in hex (1 to "
		                              "%d octets)", a->serial_text, STORE_MAX_SERIAL);
	a->policy = OCSP_NOT_ISSUED_UNKNOWN;
	if (policy == NULL)
		return CLI_OK;
	for (size_t i = 0; i < sizeof(policy_names) / sizeof(policy_names[0]); i++) {
		if (strcmp(policy, policy_names[i]) == 0) {
			a->policy = (enum ocsp_not_issued)i;
			return CLI_OK;
		}
	}
	return pgcli_value_error(CMD, "--not-issued must be unknown, unauthorized or revoked");
}

int cli_status(int argc, char **argv)
{
	static const struct option opts[] = {
		{"dsn", required_argument, NULL, OPT_DSN},
		{"index", required_argument, NULL, OPT_INDEX},
		{"issuer", required_argument, NULL, OPT_ISSUER},
		{"serial", required_argument, NULL, OPT_SERIAL},
		{"not-issued", required_argument, NULL, OPT_NOT_ISSUED},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct status_args a = {0};
	const char *policy = NULL;
	int opt, status = CLI_FAIL;
	while ((opt = pgcli_getopt(CMD, status_usage, argc, argv, opts, &status)) != -1) {
		switch (opt) {
		case PGCLI_OPT_EXIT: return status;
		case OPT_DSN: a.dsn = optarg; break;
		case OPT_INDEX: a.index = optarg; break;
		case OPT_ISSUER: a.issuer = optarg; break;
		case OPT_SERIAL: a.serial_text = optarg; break;
		case OPT_NOT_ISSUED: policy = optarg; break;
		}
	}
	if (optind < argc)
		return pgcli_usage_error(CMD, status_usage, "unexpected argument '%s'", argv[optind]);
	if ((status = check_args(&a, policy)) != CLI_OK)
		return status;

	struct store_record rec;
	bool precert = false;
	status = a.index != NULL ? record_from_index(&a, &rec, &precert)
	                         : record_from_db(&a, &rec, &precert);
	return status == CLI_OK ? explain(&a, &rec, precert) : status;
}
