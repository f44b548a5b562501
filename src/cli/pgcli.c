#include "cli/pgcli.h"

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
