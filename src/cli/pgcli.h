/*
 * What the database tools (revd db, import, revoke, status) share: option parsing that
 * refuses what it does not know, a blocking libpq connection whose errors say where and
 * why (never the password), statements that report the server's message, and the
 * operator's spellings of serials, times and revocation reasons.
 *
 * These tools are not on an event loop: blocking libpq is right here. `revd serve`
 * reads PostgreSQL through src/db/pg.c instead.
 */
#ifndef REVD_CLI_PGCLI_H
#define REVD_CLI_PGCLI_H

#include <getopt.h>
#include <libpq-fe.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stdint.h>

#include "db/revoke.h" /* serials, times and reasons as the operator spells them */
#include "db/store.h"

/* Prints "revd CMD: message" on stderr. */
void pgcli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A status line on a terminal: "\rtext", erased by the next message or by
 * pgcli_progress_clear. The caller decides whether stderr is a terminal. */
void pgcli_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void pgcli_progress_clear(void);

/* ---- options ---- */

/* pgcli_getopt's answer when the command must end now, with the status in *status. */
#define PGCLI_OPT_EXIT (-2)

/*
 * The next option of argv (getopt_long over opts; --help/-h is handled here). Returns
 * its val, -1 when the options are done (operands start at optind), or PGCLI_OPT_EXIT
 * after printing the usage: on --help (*status CLI_OK) or on an unknown option, a
 * missing value or a value that is itself an option (*status CLI_USAGE, on stderr).
 */
int pgcli_getopt(const char *cmd, const char *usage, int argc, char **argv,
                 const struct option *opts, int *status);

/* Prints "revd CMD: message" and the usage on stderr; returns CLI_USAGE. */
int pgcli_usage_error(const char *cmd, const char *usage, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prints "revd CMD: message" and where the usage is (for a bad value: the whole usage
 * would bury the message); returns CLI_USAGE. */
int pgcli_value_error(const char *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* ---- connection and statements ---- */

struct pgcli {
	PGconn *conn;
	const char *cmd; /* the message prefix: "import", "db migrate", ... */
};

/* The --dsn value, else $REVD_DSN, else NULL. */
const char *pgcli_dsn(const char *opt);

/*
 * Connects to dsn (a libpq conninfo string or URI), blocking. False after printing why,
 * naming the database, host, port and user tried; the DSN itself and any password are
 * never printed. The session runs in UTC.
 */
bool pgcli_connect(struct pgcli *c, const char *cmd, const char *dsn);
/* Closes the connection; safe on one that never connected. */
void pgcli_close(struct pgcli *c);

/*
 * Runs one statement with n parameters (values[i] NULL for SQL NULL; lengths and
 * formats may be NULL for text). Returns the result (caller PQclears it) when the
 * statement succeeded; else prints "revd CMD: WHAT: <the server's message>" and
 * returns NULL.
 */
PGresult *pgcli_query(struct pgcli *c, const char *what, const char *sql, int n,
                      const char *const *values, const int *lengths, const int *formats);
/* pgcli_query with text parameters for a long statement: calls tick(arg) a few times a
 * second until it is done (a progress line). */
PGresult *pgcli_query_ticking(struct pgcli *c, const char *what, const char *sql, int n,
                              const char *const *values, void (*tick)(void *), void *arg);
/* pgcli_query without parameters or rows. */
bool pgcli_run(struct pgcli *c, const char *what, const char *sql);
/* Prints "revd CMD: WHAT: <the server's message in r, or the connection's>". */
void pgcli_report(const struct pgcli *c, const char *what, const PGresult *r);
/* Rolls back the transaction in progress, if any; errors are ignored. */
void pgcli_rollback(struct pgcli *c);

/*
 * The issuer called name: its id and, when cert is not NULL, its certificate (a new
 * reference). Returns 1, 0 after printing "no issuer named NAME in the database", or
 * -1 after printing the error.
 */
int pgcli_issuer_find(struct pgcli *c, const char *name, int *id, X509 **cert);

/* ---- index.txt ---- */

struct index_snapshot;
/* Reads and parses an OpenSSL index.txt (index_parse); NULL after "revd CMD: path: why". */
struct index_snapshot *pgcli_load_index(const char *cmd, const char *path);

#endif
