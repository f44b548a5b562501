/* revd db: the schema (migrate) and the issuers table (add-issuer). */
#include <openssl/bio.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/pgcli.h"
#include "core/pem.h"
#include "db/migrations.h"
#include "ocsp/issuers.h"

static const char db_usage[] =
	"usage: revd db COMMAND [options]\n"
	"\n"
	"Manages revd's PostgreSQL database (the schema in sql/ is the contract with the CA).\n"
	"\n"
	"commands:\n"
	"  migrate      create or upgrade the schema (see revd db migrate --help)\n"
	"  add-issuer   register a CA certificate (see revd db add-issuer --help)\n";

static const char migrate_usage[] =
	"usage: revd db migrate [--dsn DSN]\n"
	"\n"
	"Applies the schema migrations built into revd that the database does not have yet,\n"
	"in order, in one transaction under an advisory lock (concurrent runs wait for each\n"
	"other). Running it again changes nothing. A database newer than this revd is refused.\n"
	"\n"
	"  --dsn DSN    libpq connection string or URI (default: $REVD_DSN)\n"
	"  -h, --help   this text\n";

static const char add_issuer_usage[] =
	"usage: revd db add-issuer [--dsn DSN] --name NAME --cert CA.pem\n"
	"\n"
	"Registers a CA certificate under NAME with its OCSP CertID hashes (SHA-1, SHA-256,\n"
	"SHA-384, SHA-512 of its subject name and public key). Running it again with the same\n"
	"name and certificate changes nothing; the same name with another certificate, or the\n"
	"same CA under another name, is refused.\n"
	"\n"
	"  --dsn DSN     libpq connection string or URI (default: $REVD_DSN)\n"
	"  --name NAME   the name the CA's records use: letters, digits, '.', '_', '-'\n"
	"  --cert FILE   the CA certificate, PEM or DER\n"
	"  -h, --help    this text\n";

enum { OPT_DSN = 1000, OPT_NAME, OPT_CERT };

/* ---- migrate ---- */

/* The schema version recorded in the database; 0 before the first migration. */
static int schema_version(struct pgcli *c)
{
	PGresult *r = pgcli_query(c, "reading the schema version",
	                          "SELECT to_regclass('revd_schema') IS NOT NULL", 0, NULL, NULL,
	                          NULL);
	if (r == NULL)
		return -1;
	bool exists = PQgetvalue(r, 0, 0)[0] == 't';
	PQclear(r);
	if (!exists)
		return 0;
	r = pgcli_query(c, "reading the schema version",
	                "SELECT coalesce(max(version), 0) FROM revd_schema", 0, NULL, NULL, NULL);
	if (r == NULL)
		return -1;
	int v = atoi(PQgetvalue(r, 0, 0));
	PQclear(r);
	return v;
}

static bool apply_migration(struct pgcli *c, const struct db_migration *m)
{
	char what[160], version[16];
	snprintf(what, sizeof(what), "applying migration %s", m->name);
	if (!pgcli_run(c, what, m->sql))
		return false;
	/* Each file records its own version; this covers one that forgets. */
	snprintf(version, sizeof(version), "%d", m->version);
	const char *params[] = {version};
	PGresult *r = pgcli_query(c, what,
	                          "INSERT INTO revd_schema (version) VALUES ($1) "
	                          "ON CONFLICT (version) DO NOTHING",
	                          1, params, NULL, NULL);
	PQclear(r);
	return r != NULL;
}

/* Within the transaction: applies what is missing. Returns how many, or -1. */
static int migrate_locked(struct pgcli *c, int *from)
{
	char lock[128];
	snprintf(lock, sizeof(lock), "SELECT pg_advisory_xact_lock(%d, %d)", DB_MIGRATE_LOCK_CLASS,
	         DB_MIGRATE_LOCK_OBJECT);
	if (!pgcli_run(c, "waiting for the migration lock", lock))
		return -1;
	int current = schema_version(c);
	if (current < 0)
		return -1;
	*from = current;
	int newest = db_migrations[db_migrations_count - 1].version;
	if (current > newest) {
		pgcli_error(c->cmd, "database schema is at version %d, newer than this revd knows "
		                    "(%d): upgrade revd", current, newest);
		return -1;
	}
	int applied = 0;
	for (size_t i = 0; i < db_migrations_count; i++) {
		if (db_migrations[i].version <= current)
			continue;
		if (!apply_migration(c, &db_migrations[i]))
			return -1;
		applied++;
	}
	return applied;
}

static int db_migrate(int argc, char **argv)
{
	static const struct option opts[] = {
		{"dsn", required_argument, NULL, OPT_DSN},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *cmd = "db migrate", *dsn_opt = NULL;
	int opt, status = CLI_FAIL;
	while ((opt = pgcli_getopt(cmd, migrate_usage, argc, argv, opts, &status)) != -1) {
		if (opt == PGCLI_OPT_EXIT)
			return status;
		dsn_opt = optarg;
	}
	if (optind < argc)
		return pgcli_usage_error(cmd, migrate_usage, "unexpected argument '%s'", argv[optind]);
	const char *dsn = pgcli_dsn(dsn_opt);
	if (dsn == NULL)
		return pgcli_usage_error(cmd, migrate_usage, "no database: give --dsn or set REVD_DSN");

	struct pgcli c;
	if (!pgcli_connect(&c, cmd, dsn))
		return CLI_FAIL;
	int from = 0;
	status = CLI_FAIL;
	if (!pgcli_run(&c, "starting the transaction", "BEGIN"))
		goto out;
	int applied = migrate_locked(&c, &from);
	if (applied < 0 || !pgcli_run(&c, "committing the migrations", "COMMIT"))
		goto out;
	for (size_t i = 0; i < db_migrations_count; i++)
		if (db_migrations[i].version > from)
			printf("applied migration %d (%s)\n", db_migrations[i].version,
			       db_migrations[i].name);
	if (applied == 0)
		printf("schema is up to date (version %d)\n", from);
	else
		printf("schema is now at version %d\n", db_migrations[db_migrations_count - 1].version);
	status = CLI_OK;
out:
	pgcli_rollback(&c);
	pgcli_close(&c);
	return status;
}

/* ---- add-issuer ---- */

static bool valid_issuer_name(const char *s)
{
	size_t n = strlen(s);
	if (n < 1 || n > 127)
		return false;
	return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

/* What the issuers row holds besides the name: the DER and the eight CertID hashes. */
struct issuer_row {
	unsigned char *der;
	int der_len;
	uint8_t name_hash[OCSP_HASH_COUNT][64];
	uint8_t key_hash[OCSP_HASH_COUNT][64];
	char subject[256];
};

static X509 *load_ca(const char *cmd, const char *path)
{
	char err[512];
	STACK_OF(X509) *certs = pem_load_certs(path, err, sizeof(err));
	if (certs == NULL) {
		pgcli_error(cmd, "%s", err);
		return NULL;
	}
	X509 *ca = NULL;
	if (sk_X509_num(certs) != 1)
		pgcli_error(cmd, "%s holds %d certificates: give the one CA certificate", path,
		            sk_X509_num(certs));
	else if (X509_check_ca(sk_X509_value(certs, 0)) == 0)
		pgcli_error(cmd, "%s is not a CA certificate (basicConstraints CA:TRUE)", path);
	else
		ca = X509_dup(sk_X509_value(certs, 0));
	sk_X509_pop_free(certs, X509_free);
	return ca;
}

static bool issuer_row_fill(struct issuer_row *row, X509 *ca)
{
	row->der = NULL;
	row->der_len = i2d_X509(ca, &row->der);
	if (row->der_len <= 0 || !ocsp_issuer_hashes(ca, row->name_hash, row->key_hash))
		return false;
	X509_NAME_oneline(X509_get_subject_name(ca), row->subject, sizeof(row->subject));
	return true;
}

/* The row already called name: 1 (same certificate: done), 0 (none), -1 (refused). */
static int existing_issuer(struct pgcli *c, const char *name, const struct issuer_row *row)
{
	const char *params[] = {name};
	PGresult *r = pgcli_query(c, "looking up the issuer",
	                          "SELECT id, certificate FROM issuers WHERE name = $1 FOR UPDATE",
	                          1, params, NULL, NULL);
	if (r == NULL)
		return -1;
	int res = 0;
	if (PQntuples(r) == 1) {
		size_t len;
		unsigned char *der =
			PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 1), &len);
		bool same = der && len == (size_t)row->der_len && memcmp(der, row->der, len) == 0;
		PQfreemem(der);
		if (same) {
			printf("issuer '%s' is already registered with this certificate (id %s): "
			       "nothing to do\n", name, PQgetvalue(r, 0, 0));
			res = 1;
		} else {
			pgcli_error(c->cmd, "issuer '%s' is already registered (id %s) with a different "
			                    "certificate: refusing to replace it", name, PQgetvalue(r, 0, 0));
			res = -1;
		}
	}
	PQclear(r);
	return res;
}

static bool insert_issuer(struct pgcli *c, const char *name, const struct issuer_row *row)
{
	const char *vals[10] = {name, (const char *)row->der};
	int lens[10] = {0, row->der_len};
	int fmts[10] = {0, 1};
	for (int h = 0; h < OCSP_HASH_COUNT; h++) {
		vals[2 + 2 * h] = (const char *)row->name_hash[h];
		vals[3 + 2 * h] = (const char *)row->key_hash[h];
		lens[2 + 2 * h] = lens[3 + 2 * h] = (int)ocsp_hash_len((enum ocsp_hash)h);
		fmts[2 + 2 * h] = fmts[3 + 2 * h] = 1;
	}
	/* The same CA under another name would make CertIDs ambiguous: say which name. */
	PGresult *r = pgcli_query(c, "looking up the CA's hashes",
	                          "SELECT name FROM issuers WHERE sha1_name_hash = $1 "
	                          "AND sha1_key_hash = $2",
	                          2, vals + 2, lens + 2, fmts + 2);
	if (r == NULL)
		return false;
	if (PQntuples(r) > 0) {
		pgcli_error(c->cmd, "this CA is already registered as issuer '%s'",
		            PQgetvalue(r, 0, 0));
		PQclear(r);
		return false;
	}
	PQclear(r);
	r = pgcli_query(c, "adding the issuer",
	                "INSERT INTO issuers (name, certificate, sha1_name_hash, sha1_key_hash, "
	                "sha256_name_hash, sha256_key_hash, sha384_name_hash, sha384_key_hash, "
	                "sha512_name_hash, sha512_key_hash) "
	                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
	                10, vals, lens, fmts);
	if (r == NULL)
		return false;
	printf("added issuer '%s' (id %s): %s\n", name, PQgetvalue(r, 0, 0), row->subject);
	PQclear(r);
	return true;
}

static int add_issuer_run(struct pgcli *c, const char *name, const struct issuer_row *row)
{
	if (!pgcli_run(c, "starting the transaction", "BEGIN"))
		return CLI_FAIL;
	int found = existing_issuer(c, name, row);
	if (found < 0 || (found == 0 && !insert_issuer(c, name, row)))
		return CLI_FAIL;
	return pgcli_run(c, "committing", "COMMIT") ? CLI_OK : CLI_FAIL;
}

static int db_add_issuer(int argc, char **argv)
{
	static const struct option opts[] = {
		{"dsn", required_argument, NULL, OPT_DSN},
		{"name", required_argument, NULL, OPT_NAME},
		{"cert", required_argument, NULL, OPT_CERT},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *cmd = "db add-issuer", *dsn_opt = NULL, *name = NULL, *cert = NULL;
	int opt, status = CLI_FAIL;
	while ((opt = pgcli_getopt(cmd, add_issuer_usage, argc, argv, opts, &status)) != -1) {
		switch (opt) {
		case PGCLI_OPT_EXIT: return status;
		case OPT_DSN: dsn_opt = optarg; break;
		case OPT_NAME: name = optarg; break;
		case OPT_CERT: cert = optarg; break;
		}
	}
	if (optind < argc)
		return pgcli_usage_error(cmd, add_issuer_usage, "unexpected argument '%s'",
		                         argv[optind]);
	const char *dsn = pgcli_dsn(dsn_opt);
	if (dsn == NULL || name == NULL || cert == NULL)
		return pgcli_usage_error(cmd, add_issuer_usage, "%s is required",
		                         dsn == NULL ? "--dsn (or REVD_DSN)"
		                         : name == NULL ? "--name" : "--cert");
	if (!valid_issuer_name(name))
		return pgcli_value_error(cmd, "'%s' is not a valid issuer name (1 to 127 letters, "
		                              "digits, '.', '_', '-')", name);

	struct pgcli c = {0};
	struct issuer_row row = {0};
	X509 *ca = load_ca(cmd, cert);
	status = CLI_FAIL;
	if (ca == NULL)
		goto out;
	if (!issuer_row_fill(&row, ca)) {
		pgcli_error(cmd, "%s: cannot compute the CA's CertID hashes", cert);
		goto out;
	}
	if (!pgcli_connect(&c, cmd, dsn))
		goto out;
	status = add_issuer_run(&c, name, &row);
out:
	pgcli_rollback(&c);
	pgcli_close(&c);
	OPENSSL_free(row.der);
	X509_free(ca);
	return status;
}

int cli_db(int argc, char **argv)
{
	if (argc < 2) {
		fputs(db_usage, stderr);
		return CLI_USAGE;
	}
	const char *sub = argv[1];
	if (strcmp(sub, "migrate") == 0)
		return db_migrate(argc - 1, argv + 1);
	if (strcmp(sub, "add-issuer") == 0)
		return db_add_issuer(argc - 1, argv + 1);
	if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
		fputs(db_usage, stdout);
		return CLI_OK;
	}
	fprintf(stderr, "revd db: unknown command '%s'\n%s", sub, db_usage);
	return CLI_USAGE;
}
