/* core/log: text and JSON lines, as written to stderr. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

/* What one log_msg (or, with an issuer, log_cert) call writes to stderr. */
static char *captured_cert(enum log_level level, const char *issuer, const char *serial,
                           const char *msg)
{
	fflush(stderr);
	int saved = dup(2);
	FILE *tmp = tmpfile();
	assert_non_null(tmp);
	assert_int_equal(dup2(fileno(tmp), 2), 2);
	if (issuer != NULL || serial != NULL)
		log_cert(level, issuer, serial, "%s", msg);
	else
		log_msg(level, "%s", msg);
	fflush(stderr);
	assert_int_equal(dup2(saved, 2), 2);
	close(saved);
	long n = ftell(tmp);
	assert_true(n > 0);
	char *out = calloc(1, (size_t)n + 1);
	rewind(tmp);
	assert_int_equal(fread(out, 1, (size_t)n, tmp), (size_t)n);
	fclose(tmp);
	return out;
}

static char *captured(enum log_level level, const char *msg)
{
	return captured_cert(level, NULL, NULL, msg);
}

static void test_text_line(void **state)
{
	(void)state;
	log_set_json(false);
	char *out = captured(LOG_WARN, "plain words");
	/* 2026-12-01T23:45:16.123Z warn plain words\n */
	assert_int_equal(strlen(out), 24 + 1 + 4 + 1 + 11 + 1);
	assert_int_equal(out[10], 'T');
	assert_string_equal(out + 24, " warn plain words\n");
	free(out);
}

static void test_json_line_escapes(void **state)
{
	(void)state;
	log_set_json(true);
	char *out = captured(LOG_ERROR, "a \"quoted\" \\ path\tand\nnewline \x01");
	const char *want = "\",\"level\":\"error\",\"msg\":\"a \\\"quoted\\\" \\\\ path\\u0009and"
	                   "\\u000anewline \\u0001\"}\n";
	assert_true(strncmp(out, "{\"ts\":\"", 7) == 0);
	/* The stamp: 24 characters, then the rest exactly. */
	assert_string_equal(out + 7 + 24, want);
	/* One line: the only newline is the last byte. */
	assert_ptr_equal(strchr(out, '\n'), out + strlen(out) - 1);
	free(out);
	log_set_json(false);
}

static void test_cert_fields(void **state)
{
	(void)state;
	log_set_json(true);
	char *out = captured_cert(LOG_INFO, "main \"CA\"", "0x1001", "revoked");
	assert_string_equal(out + 7 + 24, "\",\"level\":\"info\",\"issuer\":\"main \\\"CA\\\"\","
	                                  "\"serial\":\"0x1001\",\"msg\":\"revoked\"}\n");
	free(out);
	out = captured_cert(LOG_INFO, NULL, "0A", "no issuer");
	assert_string_equal(out + 7 + 24, "\",\"level\":\"info\",\"serial\":\"0A\",\"msg\":\"no "
	                                  "issuer\"}\n");
	free(out);
	/* As text, the message alone: it names them itself. */
	log_set_json(false);
	out = captured_cert(LOG_INFO, "main", "0x1001", "issuer main serial 0x1001 revoked");
	assert_string_equal(out + 24, " info issuer main serial 0x1001 revoked\n");
	free(out);
}

static void test_level_filter(void **state)
{
	(void)state;
	log_set_level(LOG_WARN);
	fflush(stderr);
	int saved = dup(2);
	FILE *tmp = tmpfile();
	dup2(fileno(tmp), 2);
	log_msg(LOG_INFO, "not written");
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	assert_int_equal(ftell(tmp), 0);
	fclose(tmp);
	log_set_level(LOG_INFO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text_line),
		cmocka_unit_test(test_json_line_escapes),
		cmocka_unit_test(test_cert_fields),
		cmocka_unit_test(test_level_filter),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
