#include "cli/pgcli.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/select.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/clock.h"
#include "db/index.h"

__attribute__((format(printf, 2, 0))) static void verror(const char *cmd, const char *fmt,
                                                          va_list ap)
{
	pgcli_progress_clear();
	fprintf(stderr, "revd %s: ", cmd);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void pgcli_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	verror(cmd, fmt, ap);
	va_end(ap);
}

int pgcli_value_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	verror(cmd, fmt, ap);
	va_end(ap);
	fprintf(stderr, "(revd %s --help describes the options)\n", cmd);
	return CLI_USAGE;
}

int pgcli_usage_error(const char *cmd, const char *usage, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	verror(cmd, fmt, ap);
	va_end(ap);
	fputs(usage, stderr);
	return CLI_USAGE;
}

static bool progress_shown;

void pgcli_progress(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputc('\r', stderr);
	vfprintf(stderr, fmt, ap);
	fputs("\033[K", stderr);
	fflush(stderr);
	va_end(ap);
	progress_shown = true;
}

void pgcli_progress_clear(void)
{
	if (progress_shown)
		fputs("\r\033[K", stderr);
	progress_shown = false;
}

/* ---- options ---- */

static const struct option *find_long(const struct option *opts, int val)
{
	for (; opts->name != NULL; opts++)
		if (opts->val == val)
			return opts;
	return NULL;
}

int pgcli_getopt(const char *cmd, const char *usage, int argc, char **argv,
                 const struct option *opts, int *status)
{
	opterr = 0;
	int opt = getopt_long(argc, argv, ":h", opts, NULL);
	const char *bad = argv[optind - 1 < argc ? optind - 1 : argc - 1];
	switch (opt) {
	case 'h':
		fputs(usage, stdout);
		*status = CLI_OK;
		return PGCLI_OPT_EXIT;
	case ':':
		*status = pgcli_usage_error(cmd, usage, "option '%s' needs a value", bad);
		return PGCLI_OPT_EXIT;
	case '?':
		*status = pgcli_usage_error(cmd, usage, "unknown option '%s'", bad);
		return PGCLI_OPT_EXIT;
	default:
		break;
	}
	const struct option *o = opt >= 0 ? find_long(opts, opt) : NULL;
	if (o != NULL && o->has_arg == required_argument && optarg != NULL &&
	    strncmp(optarg, "--", 2) == 0) {
		/* "--dsn --issuer x": the value is missing, not "--issuer". */
		*status = pgcli_usage_error(cmd, usage, "option '--%s' needs a value", o->name);
		return PGCLI_OPT_EXIT;
	}
	return opt;
}

/* ---- connection ---- */

const char *pgcli_dsn(const char *opt)
{
	if (opt != NULL)
		return opt;
	const char *env = getenv("REVD_DSN");
	return env != NULL && env[0] != '\0' ? env : NULL;
}

/* Libpq hands its own notices to stderr; only warnings are worth an operator's time
 * (a migration's NOTICEs are not). */
static void on_notice(void *arg, const PGresult *r)
{
	const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
	const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
	if (sev != NULL && strcmp(sev, "WARNING") == 0 && msg != NULL)
		pgcli_error(arg, "server warning: %s", msg);
}

static void report_connect_failure(const char *cmd, PGconn *conn)
{
	const char *why = conn != NULL ? PQerrorMessage(conn) : "out of memory";
	size_t n = strlen(why);
	while (n > 0 && (why[n - 1] == '\n' || why[n - 1] == ' '))
		n--;
	const char *db = conn ? PQdb(conn) : NULL, *host = conn ? PQhost(conn) : NULL;
	const char *port = conn ? PQport(conn) : NULL, *user = conn ? PQuser(conn) : NULL;
	pgcli_error(cmd, "cannot connect to database '%s' on %s%s%s as user '%s': %.*s",
	            db && db[0] ? db : "?", host && host[0] ? host : "the default socket",
	            port && port[0] ? " port " : "", port && port[0] ? port : "",
	            user && user[0] ? user : "?", (int)n, why);
}

bool pgcli_connect(struct pgcli *c, const char *cmd, const char *dsn)
{
	c->conn = NULL;
	c->cmd = cmd;
	char *perr = NULL;
	PQconninfoOption *parsed = PQconninfoParse(dsn, &perr);
	if (parsed == NULL) {
		/* libpq's reason may quote the string, password included: only the reasons
		 * that name nothing but an option are printed. */
		bool safe = perr != NULL && (strncmp(perr, "invalid connection option", 25) == 0 ||
		                             strncmp(perr, "invalid URI query parameter", 27) == 0);
		size_t n = safe ? strcspn(perr, "\n") : 0;
		pgcli_error(cmd, "the DSN is not a valid libpq connection string or URI "
		                 "(key=value pairs, or postgresql://user@host:port/dbname)%s%.*s",
		            safe ? ": " : "", (int)n, safe ? perr : "");
		PQfreemem(perr);
		return false;
	}
	PQconninfoFree(parsed);
	char appname[64];
	snprintf(appname, sizeof(appname), "revd %s", cmd);
	/* Keywords before dbname are defaults the DSN overrides; a NULL value is skipped
	 * (PGCONNECT_TIMEOUT then applies). */
	const char *keys[] = {"connect_timeout", "fallback_application_name", "dbname", NULL};
	const char *vals[] = {getenv("PGCONNECT_TIMEOUT") ? NULL : "10", appname, dsn, NULL};
	c->conn = PQconnectdbParams(keys, vals, 1);
	if (c->conn == NULL || PQstatus(c->conn) != CONNECTION_OK) {
		report_connect_failure(cmd, c->conn);
		pgcli_close(c);
		return false;
	}
	PQsetNoticeReceiver(c->conn, on_notice, (void *)cmd);
	if (!pgcli_run(c, "setting the session time zone", "SET TIME ZONE 'UTC'")) {
		pgcli_close(c);
		return false;
	}
	return true;
}

void pgcli_close(struct pgcli *c)
{
	if (c->conn != NULL)
		PQfinish(c->conn);
	c->conn = NULL;
}

void pgcli_report(const struct pgcli *c, const char *what, const PGresult *r)
{
	const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	if (msg == NULL) {
		/* No server message: the connection's (lost, out of memory, ...). */
		const char *why = PQerrorMessage(c->conn);
		size_t n = strlen(why);
		while (n > 0 && why[n - 1] == '\n')
			n--;
		pgcli_error(c->cmd, "%s: %.*s", what, (int)n, n ? why : "failed");
		return;
	}
	const char *detail = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
	const char *hint = PQresultErrorField(r, PG_DIAG_MESSAGE_HINT);
	const char *where = PQresultErrorField(r, PG_DIAG_CONTEXT);
	pgcli_error(c->cmd, "%s: %s%s%s%s%s%s%s", what, msg, detail ? "\n  DETAIL: " : "",
	            detail ? detail : "", hint ? "\n  HINT: " : "", hint ? hint : "",
	            where ? "\n  CONTEXT: " : "", where ? where : "");
}

/* r if the statement succeeded; else reports it, frees it and returns NULL. */
static PGresult *keep_if_ok(struct pgcli *c, const char *what, PGresult *r)
{
	ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return r;
	pgcli_report(c, what, r);
	PQclear(r);
	return NULL;
}

PGresult *pgcli_query(struct pgcli *c, const char *what, const char *sql, int n,
                      const char *const *values, const int *lengths, const int *formats)
{
	PGresult *r = n > 0 ? PQexecParams(c->conn, sql, n, NULL, values, lengths, formats, 0)
	                    : PQexec(c->conn, sql);
	return keep_if_ok(c, what, r);
}

/* Waits up to ms for the connection's socket to be readable. */
static void wait_readable(PGconn *conn, int ms)
{
	int fd = PQsocket(conn);
	if (fd < 0 || fd >= FD_SETSIZE)
		return;
	fd_set rd;
	FD_ZERO(&rd);
	FD_SET(fd, &rd);
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	(void)select(fd + 1, &rd, NULL, NULL, &tv);
}

PGresult *pgcli_query_ticking(struct pgcli *c, const char *what, const char *sql, int n,
                              const char *const *values, void (*tick)(void *), void *arg)
{
	if (!PQsendQueryParams(c->conn, sql, n, NULL, values, NULL, NULL, 0)) {
		pgcli_report(c, what, NULL);
		return NULL;
	}
	while (PQisBusy(c->conn)) {
		wait_readable(c->conn, 250);
		if (!PQconsumeInput(c->conn))
			break; /* the connection's error comes with the result below */
		tick(arg);
	}
	PGresult *r = PQgetResult(c->conn), *extra;
	while ((extra = PQgetResult(c->conn)) != NULL)
		PQclear(extra);
	return keep_if_ok(c, what, r);
}

bool pgcli_run(struct pgcli *c, const char *what, const char *sql)
{
	PGresult *r = pgcli_query(c, what, sql, 0, NULL, NULL, NULL);
	PQclear(r);
	return r != NULL;
}

void pgcli_rollback(struct pgcli *c)
{
	if (c->conn != NULL && PQtransactionStatus(c->conn) != PQTRANS_IDLE)
		PQclear(PQexec(c->conn, "ROLLBACK"));
}

int pgcli_issuer_find(struct pgcli *c, const char *name, int *id, X509 **cert)
{
	const char *params[] = {name};
	PGresult *r = pgcli_query(c, "looking up the issuer",
	                          "SELECT id, certificate FROM issuers WHERE name = $1", 1,
	                          params, NULL, NULL);
	if (r == NULL)
		return -1;
	int found = PQntuples(r) == 1;
	if (!found) {
		pgcli_error(c->cmd, "no issuer named '%s' in the database (add it with "
		                    "`revd db add-issuer`)", name);
		goto out;
	}
	*id = atoi(PQgetvalue(r, 0, 0));
	if (cert == NULL)
		goto out;
	size_t len;
	unsigned char *der = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 1), &len);
	const unsigned char *p = der;
	*cert = der ? d2i_X509(NULL, &p, (long)len) : NULL;
	PQfreemem(der);
	if (*cert == NULL) {
		pgcli_error(c->cmd, "issuer '%s': the certificate stored in the database is not "
		                    "a DER certificate", name);
		found = -1;
	}
out:
	PQclear(r);
	return found;
}

/* ---- index.txt ---- */

/* path's contents, mapped (NULL with *len 0 for an empty file). False after a message. */
static bool map_file(const char *cmd, const char *path, const char **text, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	bool ok = false;
	*text = NULL;
	*len = 0;
	if (fd < 0 || fstat(fd, &st) != 0) {
		pgcli_error(cmd, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (st.st_size > 0) {
		void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (m == MAP_FAILED) {
			pgcli_error(cmd, "%s: %s", path, strerror(errno));
			goto out;
		}
		*text = m;
		*len = (size_t)st.st_size;
	}
	ok = true;
out:
	if (fd >= 0)
		close(fd);
	return ok;
}

struct index_snapshot *pgcli_load_index(const char *cmd, const char *path)
{
	const char *text;
	size_t len;
	if (!map_file(cmd, path, &text, &len))
		return NULL;
	char err[256];
	struct index_snapshot *s = index_parse(text ? text : "", len, err, sizeof(err));
	if (s == NULL)
		pgcli_error(cmd, "%s: %s", path, err);
	if (text != NULL)
		munmap((void *)text, len);
	return s;
}

/* ---- values ---- */

bool pgcli_serial_parse(const char *text, struct store_serial *out)
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

void pgcli_serial_hex(const struct store_serial *s, char out[PGCLI_SERIAL_HEX_LEN])
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

bool pgcli_time_parse(const char *text, int64_t *t)
{
	size_t len = strlen(text);
	if (len == 15 && clock_parse_asn1_time(text, len, t))
		return true;
	return parse_iso8601(text, t);
}

void pgcli_time_format(int64_t t, char out[PGCLI_TIME_LEN])
{
	struct tm tm;
	time_t tt = (time_t)t;
	if (gmtime_r(&tt, &tm) == NULL) {
		snprintf(out, PGCLI_TIME_LEN, "@%lld", (long long)t);
		return;
	}
	strftime(out, PGCLI_TIME_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static const char *const reason_names[] = {
	"unspecified",          "keyCompromise",   "cACompromise",   "affiliationChanged",
	"superseded",           "cessationOfOperation", "certificateHold", NULL /* 7 */,
	"removeFromCRL",        "privilegeWithdrawn",   "aACompromise",
};
#define N_REASONS (sizeof(reason_names) / sizeof(reason_names[0]))

int pgcli_reason_parse(const char *name)
{
	/* removeFromCRL is not a state: a hold is released with --unhold. */
	for (size_t i = 0; i < N_REASONS; i++)
		if (reason_names[i] != NULL && i != 8 && strcasecmp(reason_names[i], name) == 0)
			return (int)i;
	return -1;
}

const char *pgcli_reason_name(int reason)
{
	if (reason == STORE_REASON_NONE)
		return "no reason given";
	if (reason < 0 || (size_t)reason >= N_REASONS || reason_names[reason] == NULL)
		return "an unknown reason";
	return reason_names[reason];
}
