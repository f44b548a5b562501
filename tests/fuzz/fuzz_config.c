/*
 * The configuration: the input is an INI file, read twice. Once by config_load_file
 * (through inih, from a temporary file), once line by line through config_set, the way
 * command-line flags reach it. Neither may crash or leak, messages stay within their
 * buffers, and a file that loads passes or fails config_validate with a message.
 */
#include <ctype.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "fuzz.h"

static char tmp_path[256];

static void remove_tmp(void)
{
	if (tmp_path[0])
		unlink(tmp_path);
}

static const char *temp_file(void)
{
	if (tmp_path[0] == 0) {
		const char *dir = getenv("TMPDIR");
		snprintf(tmp_path, sizeof(tmp_path), "%s/revd-fuzz-config-XXXXXX",
		         dir && dir[0] ? dir : "/tmp");
		int fd = mkstemp(tmp_path);
		FUZZ_CHECK(fd >= 0, "mkstemp %s", tmp_path);
		close(fd);
		atexit(remove_tmp);
	}
	return tmp_path;
}

/* err[] is filled with a marker beyond what a message may use. */
static void check_message(const char *err, size_t errlen, size_t total)
{
	FUZZ_CHECK(memchr(err, 0, errlen) != NULL, "message not terminated");
	for (size_t i = errlen; i < total; i++)
		FUZZ_CHECK(err[i] == 0x7f, "message written beyond its buffer");
}

static void load_file(const uint8_t *data, size_t size)
{
	const char *path = temp_file();
	FILE *f = fopen(path, "wb");
	FUZZ_CHECK(f != NULL, "fopen %s", path);
	FUZZ_CHECK(fwrite(data, 1, size, f) == size, "fwrite");
	fclose(f);
	struct config *c = malloc(sizeof(*c));
	FUZZ_CHECK(c != NULL, "malloc");
	config_init(c);
	char err[300];
	memset(err, 0x7f, sizeof(err));
	err[0] = 0;
	int r = config_load_file(c, path, err, 256);
	check_message(err, 256, sizeof(err));
	if (r == 0) {
		char verr[256] = "";
		if (config_validate(c, verr, sizeof(verr)) != 0)
			FUZZ_CHECK(verr[0] != 0, "validation failed without a message");
		FUZZ_CHECK(c->n_listen <= CONFIG_MAX_LISTEN && c->n_issuers <= CONFIG_MAX_ISSUERS,
		           "%zu listen, %zu issuers", c->n_listen, c->n_issuers);
		FUZZ_CHECK(c->path == NULL || c->path[0] == '/', "path '%s'", c->path);
		FUZZ_CHECK(c->validity >= 8 * 3600 && c->validity <= 10 * 86400, "validity %lld",
		           (long long)c->validity);
	} else {
		FUZZ_CHECK(r == -1 && err[0] != 0, "load returned %d with '%s'", r, err);
	}
	config_free(c);
	free(c);
}

static char *trim(char *s)
{
	while (*s && isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = 0;
	return s;
}

static void set_lines(const uint8_t *data, size_t size)
{
	struct config *c = malloc(sizeof(*c));
	FUZZ_CHECK(c != NULL, "malloc");
	config_init(c);
	char section[512] = "server";
	const char *p = (const char *)data, *end = p + size;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = (size_t)((nl ? nl : end) - p);
		char line[1024];
		if (n >= sizeof(line))
			n = sizeof(line) - 1;
		memcpy(line, p, n);
		line[n] = 0;
		p = nl ? nl + 1 : end;
		if (strlen(line) != n)
			continue; /* a NUL inside: not a C string */
		char *l = trim(line);
		if (l[0] == '[') {
			char *close = strchr(l, ']');
			if (close != NULL) {
				*close = 0;
				snprintf(section, sizeof(section), "%s", l + 1);
			}
			continue;
		}
		char *eq = strchr(l, '=');
		if (eq == NULL)
			continue;
		*eq = 0;
		const char *key = trim(l), *value = trim(eq + 1);
		char err[300];
		memset(err, 0x7f, sizeof(err));
		int r = config_set(c, section, key, value, err, 200);
		if (r != 0) {
			check_message(err, 200, sizeof(err));
			FUZZ_CHECK(r == -1 && err[0] != 0, "config_set returned %d with '%.200s'", r, err);
		}
		/* The value parsers on their own, on every value. */
		uint64_t v;
		if (config_parse_duration_ms(value, &v))
			FUZZ_CHECK(isdigit((unsigned char)value[0]), "duration '%s'", value);
		if (config_parse_size(value, &v))
			FUZZ_CHECK(isdigit((unsigned char)value[0]), "size '%s'", value);
	}
	char verr[256] = "";
	(void)config_validate(c, verr, sizeof(verr));
	config_free(c);
	free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 64 * 1024)
		return 0;
	load_file(data, size);
	set_lines(data, size);
	return 0;
}
