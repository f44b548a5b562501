/*
 * revd import: loads issued certificates (and their revocations) into PostgreSQL.
 *
 * Rows stream through COPY (binary) into a temporary table, then one INSERT ... ON
 * CONFLICT merges them, all in one transaction with revd.bulk on, so that listeners
 * get one 'resync' notification instead of one per row. Memory stays bounded: a
 * 64 KiB COPY buffer, and for --index what index_parse holds.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/pgcli.h"
#include "core/clock.h"
#include "db/index.h"

static const char import_usage[] =
	"usage: revd import [--dsn DSN] --issuer NAME (--index FILE | CERTFILE...)\n"
	"\n"
	"Loads the certificates an issuer issued into the database, in one transaction:\n"
	"from an OpenSSL CA database (index.txt: serial, expiry and revocation of each\n"
	"entry), or from certificate files (PEM with one or more certificates, or DER), each\n"
	"of which must have been issued by the issuer's certificate in the database.\n"
	"\n"
	"A certificate already in the database is left as it is, except that a revocation\n"
	"the database does not have yet is applied (a certificateHold may become another\n"
	"reason, keeping its revocation time). An import never un-revokes: release a hold\n"
	"with `revd revoke --unhold`. Importing the same data again changes nothing.\n"
	"\n"
	"  --dsn DSN      libpq connection string or URI (default: $REVD_DSN)\n"
	"  --issuer NAME  the issuer, as registered with `revd db add-issuer`\n"
	"  --index FILE   an OpenSSL index.txt\n"
	"  -h, --help     this text\n"
	"\n"
	"Prints \"imported N certificates (M new, K revocations applied) in T s\"; K counts\n"
	"the revocations the database did not have before, in new rows and in existing ones.\n";

enum { OPT_DSN = 1000, OPT_ISSUER, OPT_INDEX };

#define CMD "import"
#define COPY_BUF_SIZE (64 * 1024)
#define ROW_MAX 256 /* more than a row's binary COPY tuple */
#define PG_EPOCH 946684800 /* 2000-01-01T00:00:00Z: PostgreSQL's timestamp zero */

/* One certificates row to load. */
struct import_row {
	struct store_serial serial;
	bool has_not_before;
	int64_t not_before;
	int64_t not_after;
	bool revoked;
	int64_t revoked_at;
	int reason;              /* STORE_REASON_NONE: NULL */
	int64_t invalidity_date; /* 0: NULL */
};

struct importer {
	struct pgcli c;
	int issuer_id;
	X509 *issuer_cert; /* certificate files only */
	const char *issuer_name;
	bool in_copy;
	size_t len;
	size_t rows;
	bool tty;
	double t0, shown; /* the start; the last progress line */
	double merge_t0;
	unsigned char buf[COPY_BUF_SIZE];
};

static double now_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- progress ---- */

static void progress(struct importer *im, bool force)
{
	if (!im->tty)
		return;
	double t = now_mono();
	if (!force && t - im->shown < 0.25)
		return;
	im->shown = t;
	double dt = t - im->t0;
	pgcli_progress("revd import: %zu rows, %.0f rows/s", im->rows,
	               dt > 0 ? (double)im->rows / dt : 0.0);
}

static void progress_merge(void *arg)
{
	struct importer *im = arg;
	if (im->tty)
		pgcli_progress("revd import: %zu rows sent; merging into certificates: %.0f s",
		               im->rows, now_mono() - im->merge_t0);
}

/* ---- binary COPY ---- */

static unsigned char *put16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)(v >> 8);
	p[1] = (unsigned char)v;
	return p + 2;
}

static unsigned char *put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (24 - 8 * i));
	return p + 4;
}

static unsigned char *put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (56 - 8 * i));
	return p + 8;
}

static unsigned char *put_null(unsigned char *p)
{
	return put32(p, 0xffffffffu);
}

static unsigned char *put_time(unsigned char *p, int64_t t)
{
	p = put32(p, 8);
	return put64(p, (uint64_t)((t - PG_EPOCH) * 1000000));
}

static bool copy_flush(struct importer *im)
{
	if (im->len == 0)
		return true;
	if (PQputCopyData(im->c.conn, (const char *)im->buf, (int)im->len) != 1) {
		pgcli_report(&im->c, "sending rows", NULL);
		return false;
	}
	im->len = 0;
	return true;
}

static bool copy_begin(struct importer *im)
{
	PGresult *r = PQexec(im->c.conn, "COPY revd_import FROM STDIN (FORMAT binary)");
	bool ok = r != NULL && PQresultStatus(r) == PGRES_COPY_IN;
	if (!ok)
		pgcli_report(&im->c, "starting COPY", r);
	PQclear(r);
	if (!ok)
		return false;
	im->in_copy = true;
	static const unsigned char header[11] = "PGCOPY\n\377\r\n";
	memcpy(im->buf, header, sizeof(header));
	unsigned char *p = put32(im->buf + sizeof(header), 0); /* flags */
	p = put32(p, 0);                                        /* header extension */
	im->len = (size_t)(p - im->buf);
	return true;
}

static bool copy_row(struct importer *im, const struct import_row *row)
{
	if (im->len + ROW_MAX > sizeof(im->buf) && !copy_flush(im))
		return false;
	unsigned char *p = put16(im->buf + im->len, 6);
	p = put32(p, row->serial.len);
	memcpy(p, row->serial.bytes, row->serial.len);
	p += row->serial.len;
	p = row->has_not_before ? put_time(p, row->not_before) : put_null(p);
	p = put_time(p, row->not_after);
	p = row->revoked ? put_time(p, row->revoked_at) : put_null(p);
	if (row->revoked && row->reason != STORE_REASON_NONE)
		p = put16(put32(p, 2), (uint16_t)row->reason);
	else
		p = put_null(p);
	p = row->revoked && row->invalidity_date != 0 ? put_time(p, row->invalidity_date)
	                                              : put_null(p);
	im->len = (size_t)(p - im->buf);
	im->rows++;
	if ((im->rows & 1023) == 0)
		progress(im, false);
	return true;
}

/* Ends the COPY: with the trailer when ok, else aborting it. */
static bool copy_end(struct importer *im, bool ok)
{
	im->in_copy = false;
	if (ok) {
		if (im->len + 2 > sizeof(im->buf) && !copy_flush(im))
			ok = false;
		else {
			put16(im->buf + im->len, 0xffff);
			im->len += 2;
			ok = copy_flush(im);
		}
	}
	if (PQputCopyEnd(im->c.conn, ok ? NULL : "revd import aborted") != 1) {
		pgcli_report(&im->c, "ending COPY", NULL);
		ok = false;
	}
	PGresult *r;
	while ((r = PQgetResult(im->c.conn)) != NULL) {
		if (PQresultStatus(r) == PGRES_COPY_IN) {
			/* PQputCopyEnd failed: the connection is unusable; do not spin. */
			PQclear(r);
			ok = false;
			break;
		}
		if (ok && PQresultStatus(r) != PGRES_COMMAND_OK) {
			pgcli_report(&im->c, "loading rows", r);
			ok = false;
		}
		PQclear(r);
	}
	return ok;
}

/* ---- rows from index.txt ---- */

static bool send_index(struct importer *im, const struct index_snapshot *snap)
{
	size_t n = index_snapshot_count(snap);
	for (size_t i = 0; i < n; i++) {
		struct import_row row = {0};
		struct store_record rec;
		index_snapshot_entry(snap, i, &row.serial, &rec);
		row.not_after = rec.not_after;
		row.revoked = rec.status == STORE_REVOKED;
		row.revoked_at = rec.revoked_at;
		row.reason = rec.reason;
		row.invalidity_date = rec.invalidity_date;
		if (!copy_row(im, &row))
			return false;
	}
	return true;
}

/* ---- rows from certificate files ---- */

static bool asn1_time_to_unix(const ASN1_TIME *a, int64_t *t)
{
	struct tm tm;
	if (a == NULL || ASN1_TIME_to_tm(a, &tm) != 1)
		return false;
	*t = clock_timegm(tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
	                  tm.tm_sec);
	return true;
}

/* The serial's INTEGER contents octets. False if longer than STORE_MAX_SERIAL. */
static bool cert_serial(X509 *x, struct store_serial *out)
{
	unsigned char der[2 + 4 + 128], *p = der;
	const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
	int n = i2d_ASN1_INTEGER(sn, NULL);
	if (n <= 2 || (size_t)n > sizeof(der) || i2d_ASN1_INTEGER(sn, &p) != n)
		return false;
	/* tag 02, then a short or long form length */
	size_t hdr = (der[1] & 0x80) ? 2 + (size_t)(der[1] & 0x7f) : 2;
	size_t len = (size_t)n - hdr;
	if (hdr >= (size_t)n || len > STORE_MAX_SERIAL)
		return false;
	out->len = (uint8_t)len;
	memcpy(out->bytes, der + hdr, len);
	return true;
}

static void cert_subject(X509 *x, char *out, size_t outlen)
{
	X509_NAME_oneline(X509_get_subject_name(x), out, (int)outlen);
}

/* Checks one certificate and queues its row. False after a message naming file and
 * position. */
static bool send_cert(struct importer *im, X509 *x, const char *path, int pos)
{
	char subject[256];
	cert_subject(x, subject, sizeof(subject));
	EVP_PKEY *ikey = X509_get0_pubkey(im->issuer_cert);
	if (X509_check_issued(im->issuer_cert, x) != X509_V_OK || ikey == NULL ||
	    X509_verify(x, ikey) != 1) {
		ERR_clear_error();
		pgcli_error(CMD, "%s: certificate %d (%s) was not issued by '%s'", path, pos, subject,
		            im->issuer_name);
		return false;
	}
	struct import_row row = {0};
	if (!cert_serial(x, &row.serial)) {
		pgcli_error(CMD, "%s: certificate %d (%s): serial number longer than %d octets",
		            path, pos, subject, STORE_MAX_SERIAL);
		return false;
	}
	row.has_not_before = asn1_time_to_unix(X509_get0_notBefore(x), &row.not_before);
	if (!row.has_not_before || !asn1_time_to_unix(X509_get0_notAfter(x), &row.not_after)) {
		pgcli_error(CMD, "%s: certificate %d (%s): unreadable validity dates", path, pos,
		            subject);
		return false;
	}
	return copy_row(im, &row);
}

/* Every certificate in path, one at a time: PEM (any number) or one DER certificate. */
static bool send_cert_file(struct importer *im, const char *path)
{
	BIO *bio = BIO_new_file(path, "rb");
	if (bio == NULL) {
		ERR_clear_error();
		pgcli_error(CMD, "%s: %s", path, strerror(errno ? errno : ENOENT));
		return false;
	}
	bool ok = true;
	int pos = 0;
	X509 *x;
	while (ok && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		ok = send_cert(im, x, path, ++pos);
		X509_free(x);
	}
	unsigned long e = ERR_peek_last_error();
	bool clean_end = ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
	ERR_clear_error();
	if (ok && pos == 0) {
		(void)BIO_reset(bio);
		x = d2i_X509_bio(bio, NULL);
		ERR_clear_error();
		if (x == NULL)
			pgcli_error(CMD, "%s: no certificate found (expected PEM or DER)", path);
		ok = x != NULL && send_cert(im, x, path, ++pos);
		X509_free(x);
	} else if (ok && !clean_end) {
		pgcli_error(CMD, "%s: certificate %d: not a readable PEM certificate", path, pos + 1);
		ok = false;
	}
	BIO_free(bio);
	return ok;
}

/* ---- the transaction ---- */

/* What the merge did. */
struct merge_counts {
	long long inserted, revocations;
};

static bool merge(struct importer *im, bool dedup, struct merge_counts *mc)
{
	/* Certificate files may name one certificate twice; index_parse already merged its
	 * duplicates, and ON CONFLICT cannot touch one row twice. Revoked rows win. */
	static const char plain[] = "revd_import";
	static const char distinct[] =
		"(SELECT DISTINCT ON (serial) * FROM revd_import "
		"ORDER BY serial, revoked_at IS NULL, revoked_at)";
	/* "The row brings nothing new": no revocation, or the database has one already that
	 * is not a hold being turned into another reason. The anti-join skips those rows in
	 * bulk (ON CONFLICT would lock each one); ON CONFLICT's WHERE, its negation, decides
	 * again on the latest row version, for rows a concurrent writer changed. */
#define NOTHING_NEW(e, i) \
	"(" i ".revoked_at IS NULL OR (" e ".revoked_at IS NOT NULL AND (" e ".reason IS " \
	"DISTINCT FROM 6 OR " i ".reason IS NOT DISTINCT FROM 6)))"
	char sql[2048];
	snprintf(sql, sizeof(sql),
	         "WITH merged AS ("
	         " INSERT INTO certificates AS c (issuer_id, serial, not_before, not_after,"
	         "  revoked_at, reason, invalidity_date)"
	         " SELECT $1, i.serial, i.not_before, i.not_after, i.revoked_at, i.reason,"
	         "  i.invalidity_date FROM %s i"
	         " WHERE NOT EXISTS (SELECT FROM certificates e WHERE e.issuer_id = $1"
	         "  AND e.serial = i.serial AND " NOTHING_NEW("e", "i") ")"
	         " ORDER BY i.serial" /* index inserts in key order */
	         " ON CONFLICT (issuer_id, serial) DO UPDATE SET"
	         "  revoked_at = coalesce(c.revoked_at, EXCLUDED.revoked_at),"
	         "  reason = EXCLUDED.reason, invalidity_date = EXCLUDED.invalidity_date"
	         " WHERE NOT " NOTHING_NEW("c", "EXCLUDED")
	         " RETURNING xmax = 0 AS inserted, revoked_at IS NOT NULL AS revoked)"
	         " SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE revoked)"
	         " FROM merged",
	         dedup ? distinct : plain);
#undef NOTHING_NEW
	char id[16];
	snprintf(id, sizeof(id), "%d", im->issuer_id);
	const char *params[] = {id};
	PGresult *r = pgcli_query_ticking(&im->c, "merging the rows into certificates", sql, 1,
	                                  params, progress_merge, im);
	if (r == NULL)
		return false;
	mc->inserted = atoll(PQgetvalue(r, 0, 0));
	mc->revocations = atoll(PQgetvalue(r, 0, 1));
	PQclear(r);
	return true;
}

static bool prepare(struct importer *im)
{
	return pgcli_run(&im->c, "starting the transaction", "BEGIN") &&
	       pgcli_run(&im->c, "setting revd.bulk", "SET LOCAL revd.bulk = 'on'") &&
	       pgcli_run(&im->c, "creating the temporary table",
	                 "CREATE TEMP TABLE revd_import (serial bytea NOT NULL,"
	                 " not_before timestamptz, not_after timestamptz NOT NULL,"
	                 " revoked_at timestamptz, reason smallint, invalidity_date timestamptz)"
	                 " ON COMMIT DROP");
}

/* Everything after connecting: the transaction, the rows, the merge, the commit. */
static int import_run(struct importer *im, const struct index_snapshot *snap, char **files,
                      int nfiles)
{
	struct merge_counts mc;
	im->shown = now_mono();
	if (!prepare(im) || !copy_begin(im))
		return CLI_FAIL;
	bool ok = true;
	if (snap != NULL)
		ok = send_index(im, snap);
	for (int i = 0; ok && i < nfiles; i++)
		ok = send_cert_file(im, files[i]);
	progress(im, true);
	if (!copy_end(im, ok))
		return CLI_FAIL;
	im->merge_t0 = now_mono();
	progress_merge(im);
	if (!pgcli_run(&im->c, "analyzing the rows", "ANALYZE revd_import") ||
	    !merge(im, snap == NULL, &mc))
		return CLI_FAIL;
	if (!pgcli_run(&im->c, "committing", "COMMIT"))
		return CLI_FAIL;
	pgcli_progress_clear();
	printf("imported %zu certificates (%lld new, %lld revocations applied) in %.2f s\n",
	       im->rows, mc.inserted, mc.revocations, now_mono() - im->t0);
	return CLI_OK;
}

int cli_import(int argc, char **argv)
{
	static const struct option opts[] = {
		{"dsn", required_argument, NULL, OPT_DSN},
		{"issuer", required_argument, NULL, OPT_ISSUER},
		{"index", required_argument, NULL, OPT_INDEX},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *dsn_opt = NULL, *issuer = NULL, *index = NULL;
	int opt, status = CLI_FAIL;
	while ((opt = pgcli_getopt(CMD, import_usage, argc, argv, opts, &status)) != -1) {
		switch (opt) {
		case PGCLI_OPT_EXIT: return status;
		case OPT_DSN: dsn_opt = optarg; break;
		case OPT_ISSUER: issuer = optarg; break;
		case OPT_INDEX: index = optarg; break;
		}
	}
	const char *dsn = pgcli_dsn(dsn_opt);
	if (dsn == NULL || issuer == NULL)
		return pgcli_usage_error(CMD, import_usage, "%s is required",
		                         dsn == NULL ? "--dsn (or REVD_DSN)" : "--issuer");
	if ((index != NULL) == (optind < argc))
		return pgcli_usage_error(CMD, import_usage,
		                         index ? "give --index or certificate files, not both"
		                               : "give --index FILE or certificate files");

	struct importer *im = calloc(1, sizeof(*im));
	struct index_snapshot *snap = NULL;
	status = CLI_FAIL;
	if (im == NULL) {
		pgcli_error(CMD, "out of memory");
		goto out;
	}
	im->issuer_name = issuer;
	im->t0 = now_mono();
	im->tty = isatty(STDERR_FILENO);
	/* A file that does not parse is refused before anything is sent. */
	if (index != NULL && (snap = pgcli_load_index(CMD, index)) == NULL)
		goto out;
	if (!pgcli_connect(&im->c, CMD, dsn))
		goto out;
	if (pgcli_issuer_find(&im->c, issuer, &im->issuer_id,
	                      index == NULL ? &im->issuer_cert : NULL) != 1)
		goto out;
	status = import_run(im, snap, argv + optind, index ? 0 : argc - optind);
out:
	pgcli_progress_clear();
	if (im != NULL) {
		if (im->in_copy)
			copy_end(im, false);
		pgcli_rollback(&im->c);
		pgcli_close(&im->c);
		X509_free(im->issuer_cert);
	}
	free(im);
	index_snapshot_free(snap);
	return status;
}
