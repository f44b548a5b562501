#include "db/revoke.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/clock.h"
#include "db/index.h"

/* ---- the transaction ---- */

/* libpq's messages span lines: one line reads better in logs and answers. */
static void one_line(char *s)
{
	char *o = s;
	bool gap = false;
	for (const char *i = s; *i; i++) {
		if (*i == '\n' || *i == '\t' || *i == '\r' || *i == ' ') {
			gap = true;
			continue;
		}
		if (gap && o != s)
			*o++ = ' ';
		gap = false;
		*o++ = *i;
	}
	*o = 0;
}

/* The SQLSTATE of this thread's last failed statement ("" for none, or the connection's
 * own failure). */
static _Thread_local char last_state[6];

bool revoke_failure_is_transient(void)
{
	/* 40: serialization failure, deadlock; 53: insufficient resources; 55P03: lock not
	 * available; 57: operator intervention (statement timeout, shutdown); 08: connection. */
	return last_state[0] == 0 || strncmp(last_state, "40", 2) == 0 ||
	       strncmp(last_state, "53", 2) == 0 || strcmp(last_state, "55P03") == 0 ||
	       strncmp(last_state, "57", 2) == 0 || strncmp(last_state, "08", 2) == 0;
}

/* Puts "WHAT: the server's message" (or the connection's) in err. */
static void report(PGconn *c, const PGresult *r, const char *what, char *err, size_t errlen)
{
	const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	snprintf(last_state, sizeof(last_state), "%s", state ? state : "");
	const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	if (msg == NULL) {
		msg = PQerrorMessage(c);
		size_t n = strlen(msg);
		while (n > 0 && msg[n - 1] == '\n')
			n--;
		snprintf(err, errlen, "%s: %.*s", what, (int)n, n ? msg : "failed");
		one_line(err);
		return;
	}
	const char *detail = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
	snprintf(err, errlen, "%s: %s%s%s", what, msg, detail ? " (" : "", detail ? detail : "");
	if (detail != NULL && strlen(err) + 1 < errlen)
		strcat(err, ")");
	one_line(err);
}

/* The result when the statement succeeded; else NULL with why in err. */
static PGresult *query(PGconn *c, const char *what, const char *sql, int n,
                       const char *const *vals, const int *lens, const int *fmts, char *err,
                       size_t errlen)
{
	PGresult *r = n > 0 ? PQexecParams(c, sql, n, NULL, vals, lens, fmts, 0) : PQexec(c, sql);
	ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return r;
	report(c, r, what, err, errlen);
	PQclear(r);
	return NULL;
}

static bool run(PGconn *c, const char *what, const char *sql, char *err, size_t errlen)
{
	PGresult *r = query(c, what, sql, 0, NULL, NULL, NULL, err, errlen);
	PQclear(r);
	return r != NULL;
}

/* The columns every statement below returns, in this order. */
#define ROW_COLUMNS                                                                      \
	"revoked_at IS NOT NULL, reason, floor(extract(epoch FROM revoked_at))::bigint,"    \
	" floor(extract(epoch FROM invalidity_date))::bigint,"                               \
	" floor(extract(epoch FROM not_after))::bigint, change_seq, issuer_id"

static void read_row(const PGresult *r, struct revoke_state *st)
{
	memset(st, 0, sizeof(*st));
	st->revoked = PQgetvalue(r, 0, 0)[0] == 't';
	st->reason = PQgetisnull(r, 0, 1) ? STORE_REASON_NONE : atoi(PQgetvalue(r, 0, 1));
	st->revoked_at = PQgetisnull(r, 0, 2) ? 0 : atoll(PQgetvalue(r, 0, 2));
	st->invalidity_date = PQgetisnull(r, 0, 3) ? 0 : atoll(PQgetvalue(r, 0, 3));
	st->not_after = atoll(PQgetvalue(r, 0, 4));
	st->change_seq = strtoull(PQgetvalue(r, 0, 5), NULL, 10);
	st->issuer_id = atoi(PQgetvalue(r, 0, 6));
}

/* Parameters: $1 issuer name, $2 serial (binary), then what a statement adds. */
struct params {
	const char *vals[5];
	int lens[5];
	int fmts[5];
	char reason[8];
	char at[24], invalidity[24];
};

static void params_init(struct params *p, const char *issuer, const struct store_serial *serial)
{
	memset(p, 0, sizeof(*p));
	p->vals[0] = issuer;
	p->vals[1] = (const char *)serial->bytes;
	p->lens[1] = serial->len;
	p->fmts[1] = 1;
}

/* 1 row in st, 0 no row, -2 no issuer, -1 failed. lock: FOR UPDATE. */
static int select_row(PGconn *c, struct params *p, bool lock, struct revoke_state *st,
                      char *err, size_t errlen)
{
	static const char locked[] =
		"SELECT " ROW_COLUMNS " FROM certificates"
		" WHERE issuer_id = (SELECT id FROM issuers WHERE name = $1) AND serial = $2"
		" FOR UPDATE";
	static const char plain[] =
		"SELECT " ROW_COLUMNS " FROM certificates"
		" WHERE issuer_id = (SELECT id FROM issuers WHERE name = $1) AND serial = $2";
	PGresult *r = query(c, "looking up the certificate", lock ? locked : plain, 2, p->vals,
	                    p->lens, p->fmts, err, errlen);
	if (r == NULL)
		return -1;
	int found = PQntuples(r) == 1;
	if (found)
		read_row(r, st);
	PQclear(r);
	if (found)
		return 1;
	r = query(c, "looking up the issuer", "SELECT 1 FROM issuers WHERE name = $1", 1, p->vals,
	          NULL, NULL, err, errlen);
	if (r == NULL)
		return -1;
	found = PQntuples(r) == 1 ? 0 : -2;
	PQclear(r);
	return found;
}

/* Runs an UPDATE of the locked row that returns ROW_COLUMNS into after. */
static bool update_row(PGconn *c, struct params *p, const char *sql, int n,
                       struct revoke_state *after, char *err, size_t errlen)
{
	PGresult *r = query(c, "updating the certificate", sql, n, p->vals, p->lens, p->fmts, err,
	                    errlen);
	if (r == NULL)
		return false;
	bool ok = PQntuples(r) == 1;
	if (ok)
		read_row(r, after);
	else
		snprintf(err, errlen, "updating the certificate: the row went away");
	snprintf(last_state, sizeof(last_state), "%s", ok ? "" : "XX000"); /* not transient */
	PQclear(r);
	return ok;
}

static void format_time_param(int64_t t, char out[24], const char **val)
{
	if (t == 0) {
		*val = NULL;
		return;
	}
	snprintf(out, 24, "%lld", (long long)t);
	*val = out;
}

static enum revoke_result apply_locked(PGconn *c, const struct revoke_change *ch,
                                       struct params *p, const struct revoke_state *st,
                                       struct revoke_state *after, char *err, size_t errlen)
{
	bool held = st->revoked && st->reason == REVOKE_REASON_HOLD;
	if (ch->op == REVOKE_OP_UNHOLD) {
		if (!st->revoked)
			return REVOKE_NOT_REVOKED;
		if (!held)
			return REVOKE_NOT_HELD;
		return update_row(c, p,
		                  "UPDATE certificates SET revoked_at = NULL, reason = NULL,"
		                  " invalidity_date = NULL"
		                  " WHERE issuer_id = (SELECT id FROM issuers WHERE name = $1)"
		                  " AND serial = $2 RETURNING " ROW_COLUMNS,
		                  2, after, err, errlen)
		               ? REVOKE_RELEASED
		               : REVOKE_FAILED;
	}
	bool escalate = held && ch->reason != REVOKE_REASON_HOLD;
	if (st->revoked && !escalate)
		return REVOKE_ALREADY;
	/* The key was compromised before the certificate was revoked, not after: a hold
	 * keeps its time, so the date is checked against that. */
	if (escalate && ch->invalidity_date != 0 && ch->invalidity_date > st->revoked_at)
		return REVOKE_BAD_TIME;
	snprintf(p->reason, sizeof(p->reason), "%d", ch->reason);
	p->vals[2] = p->reason;
	format_time_param(ch->invalidity_date, p->invalidity, &p->vals[3]);
	format_time_param(ch->revoked_at, p->at, &p->vals[4]);
	/* A hold keeps its revocation time; a new revocation takes whole seconds, as OCSP
	 * carries them. */
	static const char escalate_sql[] =
		"UPDATE certificates SET reason = $3,"
		" invalidity_date = coalesce(to_timestamp($4::bigint), invalidity_date)"
		" WHERE issuer_id = (SELECT id FROM issuers WHERE name = $1) AND serial = $2"
		" RETURNING " ROW_COLUMNS;
	static const char revoke_sql[] =
		"UPDATE certificates SET reason = $3, invalidity_date = to_timestamp($4::bigint),"
		" revoked_at = coalesce(to_timestamp($5::bigint), date_trunc('second', now()))"
		" WHERE issuer_id = (SELECT id FROM issuers WHERE name = $1) AND serial = $2"
		" RETURNING " ROW_COLUMNS;
	if (!(escalate ? update_row(c, p, escalate_sql, 4, after, err, errlen)
	               : update_row(c, p, revoke_sql, 5, after, err, errlen)))
		return REVOKE_FAILED;
	return escalate ? REVOKE_REASON_CHANGED : REVOKE_REVOKED;
}

enum revoke_result revoke_apply(PGconn *c, const struct revoke_change *ch,
                                struct revoke_state *before, struct revoke_state *after,
                                char *err, size_t errlen)
{
	struct params p;
	params_init(&p, ch->issuer, &ch->serial);
	last_state[0] = 0;
	memset(before, 0, sizeof(*before));
	memset(after, 0, sizeof(*after));
	if (!run(c, "starting the transaction", "BEGIN", err, errlen))
		return REVOKE_FAILED;
	enum revoke_result res;
	switch (select_row(c, &p, true, before, err, errlen)) {
	case 1:
		res = apply_locked(c, ch, &p, before, after, err, errlen);
		break;
	case 0: res = REVOKE_NOT_ISSUED; break;
	case -2: res = REVOKE_UNKNOWN_ISSUER; break;
	default: res = REVOKE_FAILED; break;
	}
	bool changed = res == REVOKE_REVOKED || res == REVOKE_REASON_CHANGED ||
	               res == REVOKE_RELEASED;
	if (changed && !run(c, "committing", "COMMIT", err, errlen))
		res = REVOKE_FAILED;
	if (PQtransactionStatus(c) != PQTRANS_IDLE)
		PQclear(PQexec(c, "ROLLBACK"));
	return res;
}

int revoke_read(PGconn *c, const char *issuer, const struct store_serial *serial,
                struct revoke_state *st, char *err, size_t errlen)
{
	struct params p;
	params_init(&p, issuer, serial);
	last_state[0] = 0;
	return select_row(c, &p, false, st, err, errlen);
}

/* ---- a long-lived connection ---- */

struct revoke_db {
	char *dsn;
	PGconn *conn;
};

struct revoke_db *revoke_db_new(const char *dsn)
{
	struct revoke_db *db = calloc(1, sizeof(*db));
	if (db == NULL || (db->dsn = strdup(dsn)) == NULL) {
		free(db);
		return NULL;
	}
	return db;
}

void revoke_db_free(struct revoke_db *db)
{
	if (db == NULL)
		return;
	PQfinish(db->conn);
	free(db->dsn);
	free(db);
}

PGconn *revoke_db_conn(struct revoke_db *db, char *err, size_t errlen)
{
	if (db->conn != NULL && PQstatus(db->conn) == CONNECTION_OK)
		return db->conn;
	PQfinish(db->conn);
	/* Earlier keywords are defaults: what the DSN says wins. */
	static const char *const keys[] = {"connect_timeout", "application_name", "dbname", NULL};
	const char *vals[] = {"5", "revd-api", db->dsn, NULL};
	db->conn = PQconnectdbParams(keys, vals, 1);
	if (db->conn != NULL && PQstatus(db->conn) == CONNECTION_OK &&
	    run(db->conn, "setting timeouts",
	        "SET statement_timeout = '5s'; SET lock_timeout = '3s'; SET TimeZone = 'UTC'", err,
	        errlen))
		return db->conn;
	if (db->conn == NULL) {
		snprintf(err, errlen, "connecting to PostgreSQL: out of memory");
	} else if (PQstatus(db->conn) != CONNECTION_OK) {
		const char *why = PQerrorMessage(db->conn);
		size_t n = strlen(why);
		while (n > 0 && (why[n - 1] == '\n' || why[n - 1] == ' '))
			n--;
		snprintf(err, errlen, "connecting to PostgreSQL (database %s on %s:%s as %s): %.*s",
		         PQdb(db->conn), PQhost(db->conn), PQport(db->conn), PQuser(db->conn), (int)n,
		         why);
		one_line(err);
	}
	PQfinish(db->conn);
	db->conn = NULL;
	return NULL;
}

bool revoke_db_lost(struct revoke_db *db)
{
	if (db->conn == NULL)
		return true;
	if (PQstatus(db->conn) == CONNECTION_OK)
		return false;
	PQfinish(db->conn);
	db->conn = NULL;
	return true;
}

/* ---- spellings ---- */

bool revoke_serial_parse(const char *text, struct store_serial *out)
{
	bool negative = text[0] == '-';
	const char *h = text + negative;
	if (h[0] == '0' && (h[1] == 'x' || h[1] == 'X'))
		h += 2;
	if (h[0] == '\0' || h[0] == '-')
		return false;
	char buf[2 * STORE_MAX_SERIAL + 4];
	int n = snprintf(buf, sizeof(buf), "%s%s", negative ? "-" : "", h);
	return n > 0 && (size_t)n < sizeof(buf) && index_serial_from_hex(buf, (size_t)n, out);
}

void revoke_serial_hex(const struct store_serial *s, char out[REVOKE_SERIAL_HEX_LEN])
{
	uint8_t mag[STORE_MAX_SERIAL];
	size_t len = s->len;
	bool negative = len > 0 && (s->bytes[0] & 0x80);
	memcpy(mag, s->bytes, len);
	if (negative) {
		/* The magnitude of a negative two's complement value: invert, add one. */
		int carry = 1;
		for (size_t k = len; k-- > 0;) {
			int v = (uint8_t)~mag[k] + carry;
			mag[k] = (uint8_t)v;
			carry = v >> 8;
		}
	}
	size_t start = 0;
	while (start + 1 < len && mag[start] == 0)
		start++;
	char *o = out;
	o += sprintf(o, "%s0x", negative ? "-" : "");
	for (size_t k = start; k < len; k++)
		o += sprintf(o, "%02X", mag[k]);
	if (len == 0)
		sprintf(o, "00");
}

static bool digits(const char *s, int n, int *v)
{
	*v = 0;
	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return false;
		*v = *v * 10 + (s[i] - '0');
	}
	return true;
}

/* "Z", "+HH:MM", "+HHMM", "+HH" (and '-') -> seconds east of UTC. */
static bool parse_offset(const char *s, int *secs)
{
	int hh, mm = 0;
	if (strcmp(s, "Z") == 0 || strcmp(s, "z") == 0) {
		*secs = 0;
		return true;
	}
	if ((s[0] != '+' && s[0] != '-') || !digits(s + 1, 2, &hh))
		return false;
	const char *m = s + 3;
	if (*m == ':')
		m++;
	if (*m != '\0' && (!digits(m, 2, &mm) || m[2] != '\0'))
		return false;
	if (hh > 23 || mm > 59)
		return false;
	*secs = (s[0] == '-' ? -1 : 1) * (hh * 3600 + mm * 60);
	return true;
}

static bool parse_iso8601(const char *s, int64_t *t)
{
	int y, mo, d, h, mi, se, off;
	if (strlen(s) < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) ||
	    s[7] != '-' || !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
	    !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
	    !digits(s + 17, 2, &se))
		return false;
	const char *z = s + 19;
	if (*z == '.') /* fractions of a second: OCSP times are whole seconds */
		for (z++; isdigit((unsigned char)*z); z++)
			;
	if (!parse_offset(z, &off))
		return false;
	/* The calendar check is clock_parse_asn1_time's. */
	char asn1[64];
	snprintf(asn1, sizeof(asn1), "%04d%02d%02d%02d%02d%02dZ", y, mo, d, h, mi, se);
	if (!clock_parse_asn1_time(asn1, strlen(asn1), t))
		return false;
	*t -= off;
	return true;
}

bool revoke_time_parse(const char *text, int64_t *t)
{
	size_t len = strlen(text);
	if (len == 15 && clock_parse_asn1_time(text, len, t))
		return true;
	return parse_iso8601(text, t);
}

void revoke_time_format(int64_t t, char out[REVOKE_TIME_LEN])
{
	struct tm tm;
	time_t tt = (time_t)t;
	if (gmtime_r(&tt, &tm) == NULL) {
		snprintf(out, REVOKE_TIME_LEN, "@%lld", (long long)t);
		return;
	}
	strftime(out, REVOKE_TIME_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static const char *const reason_names[] = {
	"unspecified",          "keyCompromise",   "cACompromise",   "affiliationChanged",
	"superseded",           "cessationOfOperation", "certificateHold", NULL /* 7 */,
	"removeFromCRL",        "privilegeWithdrawn",   "aACompromise",
};
#define N_REASONS (sizeof(reason_names) / sizeof(reason_names[0]))

int revoke_reason_parse(const char *name)
{
	/* removeFromCRL is not a state: a hold is released with --unhold. */
	for (size_t i = 0; i < N_REASONS; i++)
		if (reason_names[i] != NULL && i != 8 && strcasecmp(reason_names[i], name) == 0)
			return (int)i;
	return -1;
}

const char *revoke_reason_name(int reason)
{
	if (reason == STORE_REASON_NONE)
		return "no reason given";
	if (reason < 0 || (size_t)reason >= N_REASONS || reason_names[reason] == NULL)
		return "an unknown reason";
	return reason_names[reason];
}
