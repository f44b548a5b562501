/*
 * CRLs in PostgreSQL (sql/002_crls.sql): every instance reads the same published
 * bytes; the generator of a series holds its crl_series row locked for the length of
 * one transaction, in which it reads the last number, builds, inserts and commits.
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crl/repo.h"

struct pg_repo {
	struct crl_repo base;
	char *dsn;
	PGconn *conn;
	bool in_tx;
	size_t max_bytes; /* a larger CRL row is refused in the query, never fetched */
};

static bool connected(struct pg_repo *r, char *err, size_t errlen)
{
	if (r->conn != NULL && PQstatus(r->conn) == CONNECTION_OK)
		return true;
	PQfinish(r->conn);
	r->in_tx = false;
	r->conn = PQconnectdb(r->dsn);
	if (PQstatus(r->conn) != CONNECTION_OK) {
		snprintf(err, errlen, "postgres: %s", PQerrorMessage(r->conn));
		PQfinish(r->conn);
		r->conn = NULL;
		return false;
	}
	return true;
}

static void errmsg(PGresult *res, const char *what, char *err, size_t errlen)
{
	const char *m = PQresultErrorMessage(res);
	size_t n = strlen(m);
	while (n > 0 && (m[n - 1] == '\n' || m[n - 1] == ' '))
		n--;
	snprintf(err, errlen, "postgres %s: %.*s", what, (int)n, m);
}

/* Runs a statement with text parameters; NULL (and the reason) unless it succeeds. */
static PGresult *run(struct pg_repo *r, const char *what, const char *sql, int n,
                     const char *const *values, int binary, char *err, size_t errlen)
{
	if (!connected(r, err, errlen))
		return NULL;
	PGresult *res = PQexecParams(r->conn, sql, n, NULL, values, NULL, NULL, binary);
	ExecStatusType st = PQresultStatus(res);
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		errmsg(res, what, err, errlen);
		PQclear(res);
		return NULL;
	}
	return res;
}

/* A binary-format integer of n octets (PostgreSQL's int4 and int8). */
static uint64_t be_n(const char *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = v << 8 | (uint8_t)p[i];
	return v;
}

static uint64_t be64(const char *p)
{
	return be_n(p, 8);
}

#define SERIES_WHERE                                                                       \
	"issuer_id = (SELECT id FROM issuers WHERE name = $1) AND shard = $2::integer"
/* Rows count once published through the series (its last_number raised with them):
 * a row written around it is never served. */
#define PUBLISHED                                                                          \
	" AND number <= (SELECT last_number FROM crl_series WHERE " SERIES_WHERE ")"

static int fetch(struct pg_repo *r, const struct crl_series_id *s, bool delta, uint64_t have,
                 struct crl_blob *b, char *err, size_t errlen)
{
	char shard[16], hv[24], max[24];
	snprintf(shard, sizeof(shard), "%u", s->shard);
	snprintf(hv, sizeof(hv), "%llu", (unsigned long long)have);
	snprintf(max, sizeof(max), "%zu", r->max_bytes);
	const char *values[4] = {s->issuer, shard, hv, max};
	/* The bytes only when they are not the ones the caller holds, and never more than
	 * [crl] max_bytes of them. */
#define FETCH_COLUMNS                                                                     \
	"SELECT number, CASE WHEN number = $3::bigint OR octet_length(der) > $4::bigint "    \
	"THEN NULL ELSE der END, octet_length(der) FROM crls WHERE " SERIES_WHERE PUBLISHED
	PGresult *res = run(r, "reading a CRL",
	                    delta ? FETCH_COLUMNS " AND delta_base IS NOT NULL ORDER BY number DESC LIMIT 1"
	                          : FETCH_COLUMNS " AND delta_base IS NULL ORDER BY number DESC LIMIT 1",
	                    4, values, 1, err, errlen);
#undef FETCH_COLUMNS
	if (res == NULL)
		return -1;
	if (PQntuples(res) == 1 && PQgetlength(res, 0, 0) == 8 && PQgetisnull(res, 0, 1) &&
	    be64(PQgetvalue(res, 0, 0)) != have) {
		snprintf(err, errlen, "%s CRL number %llu of %s is %llu bytes, over [crl] max_bytes "
		         "(%zu): not read", delta ? "delta" : "full",
		         (unsigned long long)be64(PQgetvalue(res, 0, 0)), s->issuer,
		         (unsigned long long)(PQgetlength(res, 0, 2) == 4 ? be_n(PQgetvalue(res, 0, 2), 4)
		                                                          : 0),
		         r->max_bytes);
		PQclear(res);
		return -1;
	}
	if (PQntuples(res) == 1 && PQgetlength(res, 0, 0) == 8 && PQgetisnull(res, 0, 1)) {
		b->number = be64(PQgetvalue(res, 0, 0));
	} else if (PQntuples(res) == 1 && PQgetlength(res, 0, 0) == 8) {
		size_t len = (size_t)PQgetlength(res, 0, 1);
		b->der = malloc(len > 0 ? len : 1);
		if (b->der == NULL) {
			PQclear(res);
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		memcpy(b->der, PQgetvalue(res, 0, 1), len);
		b->len = len;
		b->number = be64(PQgetvalue(res, 0, 0));
	}
	PQclear(res);
	return 0;
}

static int pg_load(struct crl_repo *base, const struct crl_series_id *s, uint64_t have_full,
                   uint64_t have_delta, struct crl_blob *full, struct crl_blob *delta,
                   uint64_t *last, char *err, size_t errlen)
{
	struct pg_repo *r = (struct pg_repo *)base;
	if (fetch(r, s, false, have_full, full, err, errlen) != 0)
		return -1;
	if (fetch(r, s, true, have_delta, delta, err, errlen) != 0) {
		crl_blob_clear(full);
		return -1;
	}
	char shard[16];
	snprintf(shard, sizeof(shard), "%u", s->shard);
	const char *values[2] = {s->issuer, shard};
	PGresult *res = run(r, "reading the CRL number",
	                    "SELECT last_number FROM crl_series WHERE " SERIES_WHERE, 2, values, 0,
	                    err, errlen);
	if (res == NULL) {
		crl_blob_clear(full);
		crl_blob_clear(delta);
		return -1;
	}
	*last = PQntuples(res) == 1 ? strtoull(PQgetvalue(res, 0, 0), NULL, 10) : 0;
	PQclear(res);
	return 0;
}

static int pg_head(struct crl_repo *base, const struct crl_series_id *s, uint64_t *full,
                   uint64_t *delta, char *err, size_t errlen)
{
	struct pg_repo *r = (struct pg_repo *)base;
	char shard[16];
	snprintf(shard, sizeof(shard), "%u", s->shard);
	const char *values[2] = {s->issuer, shard};
	PGresult *res = run(r, "reading CRL numbers",
	                    "SELECT coalesce(max(number) FILTER (WHERE delta_base IS NULL), 0), "
	                    "coalesce(max(number) FILTER (WHERE delta_base IS NOT NULL), 0) "
	                    "FROM crls WHERE " SERIES_WHERE PUBLISHED,
	                    2, values, 0, err, errlen);
	if (res == NULL)
		return -1;
	*full = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	*delta = strtoull(PQgetvalue(res, 0, 1), NULL, 10);
	PQclear(res);
	return 0;
}

static int pg_lock(struct crl_repo *base, const struct crl_series_id *s, char *err,
                   size_t errlen)
{
	struct pg_repo *r = (struct pg_repo *)base;
	char shard[16];
	snprintf(shard, sizeof(shard), "%u", s->shard);
	const char *values[2] = {s->issuer, shard};
	PGresult *res = run(r, "creating the CRL series",
	                    "INSERT INTO crl_series (issuer_id, shard) "
	                    "SELECT id, $2::integer FROM issuers WHERE name = $1 "
	                    "ON CONFLICT DO NOTHING",
	                    2, values, 0, err, errlen);
	if (res == NULL)
		return -1;
	PQclear(res);
	if ((res = run(r, "BEGIN", "BEGIN", 0, NULL, 0, err, errlen)) == NULL)
		return -1;
	PQclear(res);
	r->in_tx = true;
	res = run(r, "locking the CRL series",
	          "SELECT last_number FROM crl_series WHERE " SERIES_WHERE
	          " FOR UPDATE SKIP LOCKED",
	          2, values, 0, err, errlen);
	int got = res == NULL ? -1 : PQntuples(res) == 1 ? 1 : 0;
	PQclear(res);
	if (got != 1) {
		PQclear(PQexec(r->conn, "ROLLBACK"));
		r->in_tx = false;
		if (got == 0) {
			/* Locked by another generator, or an issuer the database does not know. */
			res = run(r, "finding the issuer", "SELECT 1 FROM issuers WHERE name = $1", 1,
			          values, 0, err, errlen);
			if (res == NULL)
				return -1;
			if (PQntuples(res) == 0) {
				snprintf(err, errlen, "issuer '%s' is not in the database", s->issuer);
				got = -1;
			}
			PQclear(res);
		}
	}
	return got;
}

static int pg_publish(struct crl_repo *base, const struct crl_series_id *s, uint64_t number,
                      uint64_t delta_base, int64_t this_update, int64_t next_update,
                      const uint8_t *der, size_t len, char *err, size_t errlen)
{
	struct pg_repo *r = (struct pg_repo *)base;
	if (!r->in_tx) {
		snprintf(err, errlen, "publishing a CRL without holding its series");
		return -1;
	}
	char shard[16], num[24], basenum[24], tu[24], nu[24];
	snprintf(shard, sizeof(shard), "%u", s->shard);
	snprintf(num, sizeof(num), "%llu", (unsigned long long)number);
	snprintf(basenum, sizeof(basenum), "%llu", (unsigned long long)delta_base);
	snprintf(tu, sizeof(tu), "%lld", (long long)this_update);
	snprintf(nu, sizeof(nu), "%lld", (long long)next_update);
	const char *values[7] = {s->issuer, shard, num, delta_base ? basenum : NULL, tu, nu,
	                         (const char *)der};
	int lengths[7] = {0, 0, 0, 0, 0, 0, (int)len};
	int formats[7] = {0, 0, 0, 0, 0, 0, 1};
	if (len > (size_t)INT32_MAX) {
		snprintf(err, errlen, "a CRL of %zu bytes is too large for PostgreSQL", len);
		return -1;
	}
	/* The number must be above every number used: the row lock makes this the check. */
	PGresult *res = PQexecParams(
		r->conn,
		"WITH s AS (UPDATE crl_series SET last_number = $3::bigint WHERE " SERIES_WHERE
		" AND last_number < $3::bigint RETURNING issuer_id, shard) "
		"INSERT INTO crls (issuer_id, shard, number, delta_base, this_update, next_update, der) "
		"SELECT issuer_id, shard, $3::bigint, $4::bigint, to_timestamp($5), to_timestamp($6), "
		"$7::bytea FROM s",
		7, NULL, values, lengths, formats, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		errmsg(res, "publishing a CRL", err, errlen);
		PQclear(res);
		return -1;
	}
	bool inserted = strcmp(PQcmdTuples(res), "1") == 0;
	PQclear(res);
	if (!inserted) {
		snprintf(err, errlen, "CRL number %s is not above the series' last number", num);
		return -1;
	}
	if (delta_base == 0) {
		/* Keeps the previous full CRL and what followed it; older ones go. */
		const char *v2[3] = {s->issuer, shard, num};
		res = run(r, "pruning old CRLs",
		          "DELETE FROM crls WHERE " SERIES_WHERE " AND number < coalesce(("
		          "SELECT max(number) FROM crls WHERE " SERIES_WHERE
		          " AND delta_base IS NULL AND number < $3::bigint), 0)",
		          3, v2, 0, err, errlen);
		if (res == NULL)
			return -1;
		PQclear(res);
	}
	return 0;
}

static int pg_unlock(struct crl_repo *base, const struct crl_series_id *s, bool commit,
                     char *err, size_t errlen)
{
	(void)s;
	struct pg_repo *r = (struct pg_repo *)base;
	if (!r->in_tx || r->conn == NULL) {
		snprintf(err, errlen, "the CRL series was not held");
		return -1;
	}
	r->in_tx = false;
	PGresult *res = PQexec(r->conn, commit ? "COMMIT" : "ROLLBACK");
	/* A COMMIT that fails rolls back: PostgreSQL reports it as an error. */
	bool ok = PQresultStatus(res) == PGRES_COMMAND_OK &&
	          strcmp(PQcmdStatus(res), commit ? "COMMIT" : "ROLLBACK") == 0;
	if (!ok && commit)
		errmsg(res, "committing a CRL", err, errlen);
	PQclear(res);
	return ok && commit ? 0 : -1;
}

static void pg_free(struct crl_repo *base)
{
	struct pg_repo *r = (struct pg_repo *)base;
	PQfinish(r->conn);
	free(r->dsn);
	free(r);
}

static const struct crl_repo_ops pg_ops = {
	.kind = "postgres",
	.load = pg_load,
	.head = pg_head,
	.lock = pg_lock,
	.publish = pg_publish,
	.unlock = pg_unlock,
	.free = pg_free,
};

struct crl_repo *crl_repo_pg_new(const char *dsn, size_t max_bytes, char *err, size_t errlen)
{
	struct pg_repo *r = calloc(1, sizeof(*r));
	if (r == NULL || (r->dsn = strdup(dsn ? dsn : "")) == NULL) {
		free(r);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->base.ops = &pg_ops;
	r->max_bytes = max_bytes;
	/* Connected on first use: the database may come up after revd. */
	return &r->base;
}
