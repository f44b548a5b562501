/* core/config: INI loading, single keys, cross-checks, durations and sizes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "testpki.h"

/* Loads text through a temporary file; returns config_load_file's result and leaves the
 * file's path in *path (caller frees) so messages can be checked against it. */
static int load_text(struct config *c, const char *text, char **path, char *err, size_t errlen)
{
	*path = testpki_temp_file(text, strlen(text));
	int r = config_load_file(c, *path, err, errlen);
	unlink(*path);
	return r;
}

/* err must be exactly "PATH:LINE: rest" */
static void assert_file_error(const char *err, const char *path, int line, const char *rest)
{
	char want[600];
	snprintf(want, sizeof(want), "%s:%d: %s", path, line, rest);
	assert_string_equal(err, want);
}

static void test_defaults(void **state)
{
	(void)state;
	struct config c;
	config_init(&c);
	assert_int_equal(c.n_listen, 0);
	assert_int_equal(c.workers, 0);
	assert_int_equal(c.max_connections, 20000);
	assert_int_equal(c.max_header_bytes, 8192);
	assert_int_equal(c.max_url_bytes, 4096);
	assert_int_equal(c.max_body_bytes, 16384);
	assert_int_equal(c.header_timeout_ms, 10000);
	assert_int_equal(c.idle_timeout_ms, 60000);
	assert_int_equal(c.log_level, LOG_INFO);
	assert_null(c.path);
	assert_int_equal(c.validity, 86400);
	assert_int_equal(c.max_age, 0);
	assert_int_equal(c.nonce, CONFIG_NONCE_IGNORE);
	assert_int_equal(c.max_certids, 20);
	assert_int_equal(c.not_issued, CONFIG_NOT_ISSUED_UNKNOWN);
	assert_int_equal(c.responder_id, CONFIG_RID_KEY);
	assert_int_equal(c.index_poll_ms, 250);
	assert_int_equal(c.index_max_bytes, (size_t)1 << 30);
	assert_int_equal(c.n_issuers, 0);
	config_free(&c);
}

static void test_parse_duration(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		bool ok;
		uint64_t ms;
	} cases[] = {
		{"30s", true, 30000},     {"250ms", true, 250},        {"8h", true, 28800000},
		{"7d", true, 604800000},  {"3600", true, 3600000},     {"0", true, 0},
		{"2m", true, 120000},     {"2min", true, 120000},      {"0ms", true, 0},
		{"", false, 0},           {"s", false, 0},             {"-1", false, 0},
		{"+1", false, 0},         {" 1", false, 0},            {"1 s", false, 0},
		{"1S", false, 0},         {"1.5s", false, 0},          {"1sec", false, 0},
		{"1w", false, 0},         {"10x", false, 0},           {"0x10", false, 0},
		{"99999999999999999999", false, 0}, /* beyond unsigned long long */
		{"18446744073709551615ms", false, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t ms = 12345;
		bool ok = config_parse_duration_ms(cases[i].s, &ms);
		if (ok != cases[i].ok)
			fail_msg("'%s': %s", cases[i].s, ok ? "accepted" : "refused");
		if (ok && ms != cases[i].ms)
			fail_msg("'%s': %llu ms, want %llu", cases[i].s, (unsigned long long)ms,
			         (unsigned long long)cases[i].ms);
		if (!ok)
			assert_int_equal(ms, 12345);
	}
}

static void test_parse_size(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		bool ok;
		uint64_t bytes;
	} cases[] = {
		{"16384", true, 16384},
		{"16k", true, 16384},
		{"16K", true, 16384},
		{"1m", true, 1048576},
		{"1M", true, 1048576},
		{"1g", true, 1073741824},
		{"0", true, 0},
		{"17179869183g", true, 17179869183ULL << 30},
		{"17179869184g", false, 0}, /* 2^64: would wrap */
		{"18446744073709551615", true, UINT64_MAX},
		{"18446744073709551616", false, 0},
		{"", false, 0},
		{"k", false, 0},
		{"1kb", false, 0},
		{"1t", false, 0},
		{"-1", false, 0},
		{" 1", false, 0},
		{"1 k", false, 0},
		{"1.5m", false, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t v = 777;
		bool ok = config_parse_size(cases[i].s, &v);
		if (ok != cases[i].ok)
			fail_msg("'%s': %s", cases[i].s, ok ? "accepted" : "refused");
		if (ok && v != cases[i].bytes)
			fail_msg("'%s': %llu, want %llu", cases[i].s, (unsigned long long)v,
			         (unsigned long long)cases[i].bytes);
	}
}

static const char full_config[] =
	"; revd test configuration\n"
	"[server]\n"
	"listen = 127.0.0.1:8080, [::1]:8080\n"
	"workers = 4\n"
	"max_connections = 100\n"
	"max_header_bytes = 16k\n"
	"max_headers = 32\n"
	"max_url_bytes = 2048\n"
	"max_body_bytes = 8k\n"
	"header_timeout = 5s\n"
	"body_timeout = 250ms\n"
	"idle_timeout = 2m\n"
	"write_timeout = 1h\n"
	"log_level = debug\n"
	"\n"
	"[ocsp]\n"
	"path = /ocsp\n"
	"validity = 7d\n"
	"max_age = 12h\n"
	"nonce = sign\n"
	"max_certids = 64\n"
	"not_issued = revoked\n"
	"responder_id = name\n"
	"sign_budget = 1000\n"
	"cache_entries = 4096\n"
	"index_poll = 1s\n"
	"index_max_bytes = 64m\n"
	"\n"
	"[issuer root-2024]\n"
	"ca = /etc/revd/root.pem\n"
	"signer_cert = /etc/revd/ocsp.pem\n"
	"signer_key = /etc/revd/ocsp.key\n"
	"signer_other = /etc/revd/other.pem\n"
	"index = /etc/revd/index.txt\n"
	"not_issued = unauthorized\n"
	"responder_id = key\n"
	"include_signer_cert = no\n"
	"\n"
	"[issuer \"sub_ca.2\"]\n"
	"ca = /etc/revd/sub.pem\n"
	"signer_key = /etc/revd/sub.key\n"
	"index = /etc/revd/sub-index.txt\n";

static void test_load_full_file(void **state)
{
	(void)state;
	struct config c;
	config_init(&c);
	char err[512] = "";
	char *path;
	int r = load_text(&c, full_config, &path, err, sizeof(err));
	free(path);
	if (r != 0)
		fail_msg("load failed: %s", err);
	assert_int_equal(c.n_listen, 2);
	assert_string_equal(c.listen[0], "127.0.0.1:8080");
	assert_string_equal(c.listen[1], "[::1]:8080");
	assert_int_equal(c.workers, 4);
	assert_int_equal(c.max_connections, 100);
	assert_int_equal(c.max_header_bytes, 16384);
	assert_int_equal(c.max_headers, 32);
	assert_int_equal(c.max_url_bytes, 2048);
	assert_int_equal(c.max_body_bytes, 8192);
	assert_int_equal(c.header_timeout_ms, 5000);
	assert_int_equal(c.body_timeout_ms, 250);
	assert_int_equal(c.idle_timeout_ms, 120000);
	assert_int_equal(c.write_timeout_ms, 3600000);
	assert_int_equal(c.log_level, LOG_DEBUG);
	assert_string_equal(c.path, "/ocsp");
	assert_int_equal(c.validity, 7 * 86400);
	assert_int_equal(c.max_age, 12 * 3600);
	assert_int_equal(c.nonce, CONFIG_NONCE_SIGN);
	assert_int_equal(c.max_certids, 64);
	assert_int_equal(c.not_issued, CONFIG_NOT_ISSUED_REVOKED);
	assert_int_equal(c.responder_id, CONFIG_RID_NAME);
	assert_int_equal(c.sign_budget, 1000);
	assert_int_equal(c.cache_entries, 4096);
	assert_int_equal(c.index_poll_ms, 1000);
	assert_int_equal(c.index_max_bytes, 64 << 20);
	assert_int_equal(c.n_issuers, 2);
	const struct config_issuer *a = &c.issuers[0], *b = &c.issuers[1];
	assert_string_equal(a->name, "root-2024");
	assert_string_equal(a->ca, "/etc/revd/root.pem");
	assert_string_equal(a->signer_cert, "/etc/revd/ocsp.pem");
	assert_string_equal(a->signer_key, "/etc/revd/ocsp.key");
	assert_string_equal(a->signer_other, "/etc/revd/other.pem");
	assert_string_equal(a->index, "/etc/revd/index.txt");
	assert_int_equal(a->not_issued, CONFIG_NOT_ISSUED_UNAUTHORIZED);
	assert_int_equal(a->responder_id, CONFIG_RID_KEY);
	assert_false(a->include_signer_cert);
	assert_string_equal(b->name, "sub_ca.2");
	assert_null(b->signer_cert);
	assert_null(b->signer_other);
	assert_int_equal(b->not_issued, -1); /* inherits [ocsp] */
	assert_int_equal(b->responder_id, -1);
	assert_true(b->include_signer_cert);
	assert_int_equal(config_validate(&c, err, sizeof(err)), 0);
	config_free(&c);
	assert_int_equal(c.n_issuers, 0);
	assert_null(c.path);
}

static void test_load_errors_name_file_and_line(void **state)
{
	(void)state;
	struct config c;
	char err[512];
	char *path;

	config_init(&c);
	err[0] = 0;
	assert_int_equal(load_text(&c, "[server]\nworkers = 4\n\n[ocsp]\nbogus = 1\n", &path, err,
	                           sizeof(err)),
	                 -1);
	assert_file_error(err, path, 5, "unknown key 'bogus' in [ocsp]");
	free(path);
	config_free(&c);

	config_init(&c);
	assert_int_equal(load_text(&c, "workers = 4\n", &path, err, sizeof(err)), -1);
	assert_file_error(err, path, 1, "key 'workers' outside any section");
	free(path);
	config_free(&c);

	config_init(&c);
	assert_int_equal(load_text(&c, "[server]\nworkers = 4\nthis is not ini\n", &path, err,
	                           sizeof(err)),
	                 -1);
	assert_file_error(err, path, 3,
	                  "not an INI line (expected [section] or key = value)");
	free(path);
	config_free(&c);

	config_init(&c);
	assert_int_equal(load_text(&c, "[ocsp]\nvalidity = 1h\n", &path, err, sizeof(err)), -1);
	assert_file_error(err, path, 2, "validity: expected a duration from 8h to 10d, got '1h'");
	free(path);
	config_free(&c);

	config_init(&c);
	assert_int_equal(load_text(&c, "[frontend]\nworkers = 1\n", &path, err, sizeof(err)), -1);
	assert_file_error(err, path, 2,
	                  "unknown section [frontend] (expected server, ocsp, postgres, redis, presign, crl, api or issuer NAME)");
	free(path);
	config_free(&c);

	/* Two bad lines: the first is reported. */
	config_init(&c);
	assert_int_equal(load_text(&c, "[server]\nworkers = 0\nbogus = 1\n", &path, err,
	                           sizeof(err)),
	                 -1);
	assert_file_error(err, path, 2, "workers: expected a size from 1 to 256, got '0'");
	free(path);
	config_free(&c);
}

static void test_load_missing_file(void **state)
{
	(void)state;
	struct config c;
	config_init(&c);
	char err[512] = "";
	assert_int_equal(config_load_file(&c, "/nonexistent/revd.ini", err, sizeof(err)), -1);
	assert_string_equal(err, "/nonexistent/revd.ini: No such file or directory");
	config_free(&c);
}

/*
 * A syntax error that never reaches the handler, then a bad key on a later line: the
 * message must name the first error's line with the first error's text, not pair one
 * line's number with another line's complaint.
 */
static void test_load_error_message_matches_its_line(void **state)
{
	(void)state;
	struct config c;
	config_init(&c);
	char err[512] = "";
	char *path;
	int r = load_text(&c, "[server]\nthis is not ini\nbogus = 1\n", &path, err, sizeof(err));
	config_free(&c);
	char want[600];
	snprintf(want, sizeof(want),
	         "%s:2: not an INI line (expected [section] or key = value)",
	         path);
	free(path);
	assert_int_equal(r, -1);
	assert_string_equal(err, want);
}

/*
 * libinih (Debian's build: INI_MAX_LINE 200 on the stack) reads a longer line in
 * pieces and parses each as a line of its own: the first piece's value would be cut
 * short, and here the rest, "[::1]:8080", would read as a section header, so that the
 * file loads with one listen address silently lost. Such a line must be refused, by
 * its own line number.
 */
static void test_load_overlong_line_is_refused(void **state)
{
	(void)state;
	char text[512] = "[server]\nlisten = ";
	size_t start = strlen("[server]\n");
	for (int port = 8000; port < 8011; port++) {
		char one[32];
		snprintf(one, sizeof(one), "127.0.0.1:%d, ", port);
		strcat(text, one);
	}
	while (strlen(text) - start < 199)
		strcat(text, " ");
	strcat(text, "[::1]:8080\n");
	struct config c;
	config_init(&c);
	char err[512] = "";
	char *path;
	int r = load_text(&c, text, &path, err, sizeof(err));
	bool has_v6 = false;
	for (size_t i = 0; i < c.n_listen; i++)
		has_v6 = has_v6 || strcmp(c.listen[i], "[::1]:8080") == 0;
	size_t kept = c.n_listen;
	config_free(&c);
	char want[512];
	snprintf(want, sizeof(want), "%s:2: ", path);
	free(path);
	if (r == 0 && !has_v6)
		fail_msg("a %zu-character line loaded without error, and lost '[::1]:8080' "
		         "(%zu addresses kept)",
		         strlen(text) - start - 1, kept);
	/* Refused, by the long line's number (2). */
	assert_int_equal(r, -1);
	assert_true(strncmp(err, want, strlen(want)) == 0);
	assert_string_equal(err + strlen(want), "line longer than 198 characters");
}

/* 198 characters is the longest line, kept whole; 199 is refused. */
static void test_load_longest_line(void **state)
{
	(void)state;
	for (size_t len = 197; len <= 200; len++) {
		char text[400] = "[ocsp]\npath = /";
		size_t start = strlen("[ocsp]\n");
		while (strlen(text) - start < len)
			strcat(text, "p");
		strcat(text, "\n[server]\nworkers = 2\n");
		struct config c;
		config_init(&c);
		char err[512] = "";
		char *path;
		int r = load_text(&c, text, &path, err, sizeof(err));
		size_t path_len = c.path ? strlen(c.path) : 0;
		unsigned workers = c.workers;
		config_free(&c);
		char want[600];
		snprintf(want, sizeof(want), "%s:2: line longer than 198 characters", path);
		free(path);
		if (len <= 198) {
			if (r != 0)
				fail_msg("a %zu-character line: %s", len, err);
			assert_int_equal(path_len, len - strlen("path = "));
			assert_int_equal(workers, 2);
		} else {
			assert_int_equal(r, -1);
			assert_string_equal(err, want);
		}
	}
}

static void test_set_ranges_and_enums(void **state)
{
	(void)state;
	static const struct {
		const char *section, *key, *value;
		int want;
	} cases[] = {
		{"server", "workers", "auto", 0},
		{"server", "workers", "256", 0},
		{"server", "workers", "257", -1},
		{"server", "max_header_bytes", "256", 0},
		{"server", "max_header_bytes", "255", -1},
		{"server", "max_header_bytes", "1m", 0},
		{"server", "max_header_bytes", "1025k", -1},
		{"server", "max_url_bytes", "63", -1},
		{"server", "max_body_bytes", "16m", 0},
		{"server", "max_body_bytes", "17m", -1},
		{"server", "header_timeout", "9ms", -1},
		{"server", "header_timeout", "10ms", 0},
		{"server", "header_timeout", "1h", 0},
		{"server", "header_timeout", "61m", -1},
		{"server", "log_level", "warn", 0},
		{"server", "log_level", "verbose", -1},
		{"server", "listen", "", -1},
		{"server", "listen", " , ", -1},
		{"ocsp", "path", "/", 0},
		{"ocsp", "path", "ocsp", -1},
		{"ocsp", "validity", "8h", 0},
		{"ocsp", "validity", "7h", -1},
		{"ocsp", "validity", "10d", 0},
		{"ocsp", "validity", "11d", -1},
		{"ocsp", "validity", "28799", -1},
		{"ocsp", "max_age", "0", 0},
		{"ocsp", "max_age", "10d", 0},
		{"ocsp", "max_age", "241h", -1},
		{"ocsp", "nonce", "ignore", 0},
		{"ocsp", "nonce", "Sign", -1},
		{"ocsp", "max_certids", "0", -1},
		{"ocsp", "max_certids", "65", -1},
		{"ocsp", "not_issued", "good", -1},
		{"ocsp", "responder_id", "hash", -1},
		{"ocsp", "cache_entries", "15", -1},
		{"ocsp", "index_poll", "9ms", -1},
		{"ocsp", "index_poll", "1m", 0},
		{"ocsp", "index_max_bytes", "1023", -1},
		{"ocsp", "index_max_bytes", "16g", 0},
		{"ocsp", "index_max_bytes", "17g", -1},
		{"issuer a", "include_signer_cert", "yes", 0},
		{"issuer a", "include_signer_cert", "maybe", -1},
		{"issuer a", "signer", "x", -1},
		{"issuer", "ca", "x", -1},
		{"issuer  \"\"", "ca", "x", -1},
		{"issuer a/b", "ca", "x", -1},
		{"issuer a b", "ca", "x", -1},
		{"Server", "workers", "1", -1},
		{"", "workers", "1", -1},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config c;
		config_init(&c);
		char err[256] = "";
		int r = config_set(&c, cases[i].section, cases[i].key, cases[i].value, err,
		                   sizeof(err));
		if (r != cases[i].want)
			fail_msg("[%s] %s = '%s': got %d (%s), want %d", cases[i].section,
			         cases[i].key, cases[i].value, r, err, cases[i].want);
		if (r != 0 && err[0] == 0)
			fail_msg("[%s] %s = '%s': refused without a message", cases[i].section,
			         cases[i].key, cases[i].value);
		config_free(&c);
	}
}

static void test_set_messages(void **state)
{
	(void)state;
	struct config c;
	config_init(&c);
	char err[256];
	assert_int_equal(config_set(&c, "ocsp", "nonce", "always", err, sizeof(err)), -1);
	assert_string_equal(err, "nonce: expected one of ignore, sign, got 'always'");
	assert_int_equal(config_set(&c, "server", "max_headers", "0", err, sizeof(err)), -1);
	assert_string_equal(err, "max_headers: expected a size from 1 to 1000, got '0'");
	assert_int_equal(config_set(&c, "ocsp", "path", "x", err, sizeof(err)), -1);
	assert_string_equal(err, "path: must start with '/', got 'x'");
	assert_int_equal(config_set(&c, "issuer x!", "ca", "f", err, sizeof(err)), -1);
	assert_string_equal(err, "[issuer x!]: issuer names use letters, digits, '-', '_', '.'");
	/* A small err buffer truncates, and stays terminated. */
	char small[8];
	assert_int_equal(config_set(&c, "ocsp", "nonce", "always", small, sizeof(small)), -1);
	assert_string_equal(small, "nonce: ");
	config_free(&c);
}

static void test_listen_list(void **state)
{
	(void)state;
	struct config c;
	config_init(&c);
	char err[256];
	assert_int_equal(config_set(&c, "server", "listen", "a:1,b:2\tc:3 ,, d:4", err,
	                            sizeof(err)),
	                 0);
	assert_int_equal(c.n_listen, 4);
	assert_string_equal(c.listen[0], "a:1");
	assert_string_equal(c.listen[3], "d:4");
	/* Setting it again replaces the list (and frees the old one). */
	assert_int_equal(config_set(&c, "server", "listen", "e:5", err, sizeof(err)), 0);
	assert_int_equal(c.n_listen, 1);
	assert_string_equal(c.listen[0], "e:5");
	/* 16 addresses fit, 17 do not. */
	char many[512] = "";
	for (int i = 0; i < 16; i++) {
		char one[16];
		snprintf(one, sizeof(one), "h%d:%d,", i, i);
		strcat(many, one);
	}
	assert_int_equal(config_set(&c, "server", "listen", many, err, sizeof(err)), 0);
	assert_int_equal(c.n_listen, 16);
	strcat(many, "h16:16");
	assert_int_equal(config_set(&c, "server", "listen", many, err, sizeof(err)), -1);
	assert_string_equal(err, "listen: at most 16 entries");
	config_free(&c);
}

static void test_issuer_names_and_limit(void **state)
{
	(void)state;
	struct config *c = malloc(sizeof(*c));
	assert_non_null(c);
	config_init(c);
	char err[256];
	char name[200];
	/* 127 characters is the longest name. */
	memset(name, 'n', 127);
	name[127] = 0;
	char section[256];
	snprintf(section, sizeof(section), "issuer %s", name);
	assert_int_equal(config_set(c, section, "ca", "x", err, sizeof(err)), 0);
	assert_string_equal(c->issuers[0].name, name);
	snprintf(section, sizeof(section), "issuer %sn", name);
	assert_int_equal(config_set(c, section, "ca", "x", err, sizeof(err)), -1);
	/* Quotes and surrounding blanks are not part of the name; the same name is one issuer. */
	assert_int_equal(config_set(c, "issuer \t\"q.1\"", "ca", "a", err, sizeof(err)), 0);
	assert_int_equal(config_set(c, "issuer q.1", "ca", "b", err, sizeof(err)), 0);
	assert_int_equal(c->n_issuers, 2);
	assert_string_equal(c->issuers[1].name, "q.1");
	assert_string_equal(c->issuers[1].ca, "b");
	config_free(c);

	config_init(c);
	for (int i = 0; i < CONFIG_MAX_ISSUERS; i++) {
		snprintf(section, sizeof(section), "issuer i%d", i);
		assert_int_equal(config_set(c, section, "index", "x", err, sizeof(err)), 0);
	}
	assert_int_equal(c->n_issuers, CONFIG_MAX_ISSUERS);
	assert_int_equal(config_set(c, "issuer one-too-many", "index", "x", err, sizeof(err)), -1);
	assert_string_equal(err, "at most 256 issuer sections");
	assert_int_equal(c->n_issuers, CONFIG_MAX_ISSUERS);
	config_free(c);
	free(c);
}

static void set_ok(struct config *c, const char *section, const char *key, const char *value)
{
	char err[256];
	if (config_set(c, section, key, value, err, sizeof(err)) != 0)
		fail_msg("[%s] %s = %s: %s", section, key, value, err);
}

static void test_validate(void **state)
{
	(void)state;
	struct config c;
	char err[256];
	config_init(&c);
	assert_int_equal(config_validate(&c, err, sizeof(err)), -1);
	assert_string_equal(err, "no issuer configured (give --CA/--index/--rkey or an "
	                         "[issuer NAME] section)");
	set_ok(&c, "issuer a", "index", "i");
	assert_int_equal(config_validate(&c, err, sizeof(err)), -1);
	assert_string_equal(err, "[issuer a]: 'ca' is required");
	set_ok(&c, "issuer a", "ca", "c");
	assert_int_equal(config_validate(&c, err, sizeof(err)), -1);
	assert_string_equal(err, "[issuer a]: 'signer_key' is required");
	set_ok(&c, "issuer a", "signer_key", "k");
	assert_int_equal(config_validate(&c, err, sizeof(err)), 0);
	set_ok(&c, "issuer b", "ca", "c");
	set_ok(&c, "issuer b", "signer_key", "k");
	assert_int_equal(config_validate(&c, err, sizeof(err)), -1);
	assert_string_equal(err, "[issuer b]: needs 'index', or store = postgres with [postgres] dsn");
	set_ok(&c, "issuer b", "index", "i2");
	assert_int_equal(config_validate(&c, err, sizeof(err)), 0);

	set_ok(&c, "server", "max_header_bytes", "1024");
	set_ok(&c, "server", "max_url_bytes", "1025");
	assert_int_equal(config_validate(&c, err, sizeof(err)), -1);
	assert_string_equal(err, "max_url_bytes (1025) cannot exceed max_header_bytes (1024)");
	set_ok(&c, "server", "max_url_bytes", "1024");
	assert_int_equal(config_validate(&c, err, sizeof(err)), 0);

	set_ok(&c, "ocsp", "validity", "8h");
	set_ok(&c, "ocsp", "max_age", "9h");
	assert_int_equal(config_validate(&c, err, sizeof(err)), -1);
	assert_string_equal(err, "max_age cannot exceed validity");
	set_ok(&c, "ocsp", "max_age", "28801"); /* one second over */
	assert_int_equal(config_validate(&c, err, sizeof(err)), -1);
	set_ok(&c, "ocsp", "max_age", "8h");
	assert_int_equal(config_validate(&c, err, sizeof(err)), 0);
	config_free(&c);
}

/* Where an issuer's status comes from: [issuer] store, its index, or [postgres]. */
static void test_store_choice(void **state)
{
	(void)state;
	struct config c;
	char err[256];
	config_init(&c);
	assert_null(c.pg_dsn);
	assert_int_equal(c.pg_lookup_timeout_ms, 1000);
	assert_int_equal(c.pg_sweep_interval_ms, 10000);
	set_ok(&c, "issuer a", "ca", "c");
	set_ok(&c, "issuer a", "signer_key", "k");
	const struct config_issuer *a = &c.issuers[0];
	assert_int_equal(a->store, -1);
	assert_null(a->db_issuer);
	/* Neither an index nor a database: the index is what is missing. */
	assert_int_equal(config_issuer_store(&c, a), CONFIG_STORE_INDEX);
	assert_int_equal(config_validate(&c, err, sizeof(err)), -1);
	assert_string_equal(err, "[issuer a]: needs 'index', or store = postgres with [postgres] dsn");
	/* A dsn makes PostgreSQL the default for issuers without an index. */
	set_ok(&c, "postgres", "dsn", "host=/run/postgresql dbname=ca");
	assert_string_equal(c.pg_dsn, "host=/run/postgresql dbname=ca");
	assert_int_equal(config_issuer_store(&c, a), CONFIG_STORE_POSTGRES);
	assert_int_equal(config_validate(&c, err, sizeof(err)), 0);
	/* An index wins over the default... */
	set_ok(&c, "issuer a", "index", "i");
	assert_int_equal(config_issuer_store(&c, a), CONFIG_STORE_INDEX);
	/* ...and store = says it outright. */
	set_ok(&c, "issuer a", "store", "postgres");
	assert_int_equal(a->store, CONFIG_STORE_POSTGRES);
	assert_int_equal(config_issuer_store(&c, a), CONFIG_STORE_POSTGRES);
	set_ok(&c, "issuer a", "db_issuer", "Root CA 2024");
	assert_string_equal(a->db_issuer, "Root CA 2024");
	set_ok(&c, "issuer a", "db_issuer", "Root CA 2025"); /* replaced, not leaked */
	assert_int_equal(config_validate(&c, err, sizeof(err)), 0);
	config_free(&c);

	config_init(&c);
	set_ok(&c, "issuer b", "ca", "c");
	set_ok(&c, "issuer b", "signer_key", "k");
	set_ok(&c, "issuer b", "index", "i");
	set_ok(&c, "issuer b", "store", "postgres");
	assert_int_equal(config_validate(&c, err, sizeof(err)), -1);
	assert_string_equal(err, "[issuer b]: store = postgres needs [postgres] dsn");
	set_ok(&c, "issuer b", "store", "index");
	assert_int_equal(config_issuer_store(&c, &c.issuers[0]), CONFIG_STORE_INDEX);
	assert_int_equal(config_validate(&c, err, sizeof(err)), 0);
	assert_int_equal(config_set(&c, "issuer b", "store", "redis", err, sizeof(err)), -1);
	assert_string_equal(err, "store: expected one of index, postgres, got 'redis'");
	config_free(&c);
}

static void test_postgres_keys(void **state)
{
	(void)state;
	struct config c;
	char err[256];
	config_init(&c);
	set_ok(&c, "postgres", "lookup_timeout", "10ms");
	assert_int_equal(c.pg_lookup_timeout_ms, 10);
	set_ok(&c, "postgres", "lookup_timeout", "60s");
	assert_int_equal(c.pg_lookup_timeout_ms, 60000);
	assert_int_equal(config_set(&c, "postgres", "lookup_timeout", "9ms", err, sizeof(err)), -1);
	assert_int_equal(config_set(&c, "postgres", "lookup_timeout", "61s", err, sizeof(err)), -1);
	set_ok(&c, "postgres", "sweep_interval", "100ms");
	assert_int_equal(c.pg_sweep_interval_ms, 100);
	set_ok(&c, "postgres", "sweep_interval", "1h");
	assert_int_equal(c.pg_sweep_interval_ms, 3600000);
	assert_int_equal(config_set(&c, "postgres", "sweep_interval", "99ms", err, sizeof(err)),
	                 -1);
	assert_string_equal(err, "sweep_interval: expected a duration from 100ms to 3600000ms, "
	                         "got '99ms'");
	assert_int_equal(config_set(&c, "postgres", "host", "db", err, sizeof(err)), -1);
	assert_string_equal(err, "unknown key 'host' in [postgres]");
	set_ok(&c, "postgres", "dsn", "a");
	set_ok(&c, "postgres", "dsn", "b");
	assert_string_equal(c.pg_dsn, "b");
	config_free(&c);
	assert_null(c.pg_dsn);
}

static void test_strings_replaced_not_leaked(void **state)
{
	(void)state;
	struct config c;
	config_init(&c);
	set_ok(&c, "ocsp", "path", "/a");
	set_ok(&c, "ocsp", "path", "/b");
	set_ok(&c, "issuer x", "ca", "1");
	set_ok(&c, "issuer x", "ca", "2");
	set_ok(&c, "issuer x", "signer_cert", "1");
	set_ok(&c, "issuer x", "signer_cert", "2");
	assert_string_equal(c.path, "/b");
	assert_string_equal(c.issuers[0].ca, "2");
	assert_string_equal(c.issuers[0].signer_cert, "2");
	config_free(&c); /* LeakSanitizer checks the rest in the sanitizer build */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_load_full_file),
		cmocka_unit_test(test_load_errors_name_file_and_line),
		cmocka_unit_test(test_load_missing_file),
		cmocka_unit_test(test_load_error_message_matches_its_line),
		cmocka_unit_test(test_load_overlong_line_is_refused),
		cmocka_unit_test(test_load_longest_line),
		cmocka_unit_test(test_set_ranges_and_enums),
		cmocka_unit_test(test_set_messages),
		cmocka_unit_test(test_listen_list),
		cmocka_unit_test(test_issuer_names_and_limit),
		cmocka_unit_test(test_validate),
		cmocka_unit_test(test_store_choice),
		cmocka_unit_test(test_postgres_keys),
		cmocka_unit_test(test_strings_replaced_not_leaked),
	};
	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
