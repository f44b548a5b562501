#include "core/log.h"

#include <openssl/err.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static _Atomic int current_level = LOG_INFO;
static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_set_level(enum log_level level)
{
	atomic_store(&current_level, (int)level);
}

enum log_level log_get_level(void)
{
	return (enum log_level)atomic_load_explicit(&current_level, memory_order_relaxed);
}

int log_level_parse(const char *s)
{
	for (int i = 0; i <= LOG_DEBUG; i++)
		if (strcmp(s, level_names[i]) == 0)
			return i;
	return -1;
}

__attribute__((format(printf, 2, 0)))
static void log_vwrite(enum log_level level, const char *fmt, va_list ap, const char *suffix)
{
	char line[2048];
	struct timeval tv;
	struct tm tm;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ",
	                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
	                 tm.tm_sec, (long)(tv.tv_usec / 1000), level_names[level]);
	if (n < 0)
		return;
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	if (m < 0)
		return;
	size_t len = (size_t)n + (size_t)m;
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	if (suffix != NULL) {
		int k = snprintf(line + len, sizeof(line) - len, "%s", suffix);
		if (k > 0)
			len += (size_t)k;
		if (len > sizeof(line) - 2)
			len = sizeof(line) - 2;
	}
	line[len++] = '\n';
	/* One write per line so lines from several threads never interleave. */
	fwrite(line, 1, len, stderr);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	if ((int)level > atomic_load_explicit(&current_level, memory_order_relaxed))
		return;
	va_list ap;
	va_start(ap, fmt);
	log_vwrite(level, fmt, ap, NULL);
	va_end(ap);
}

static void log_openssl_inner(enum log_level level, const char *detail, ...)
{
	va_list ap;
	va_start(ap, detail);
	log_vwrite(level, "%s", ap, detail);
	va_end(ap);
}

void log_openssl(enum log_level level, const char *what)
{
	char detail[512] = "";
	size_t used = 0;
	unsigned long e;
	while ((e = ERR_get_error()) != 0) {
		char one[256];
		ERR_error_string_n(e, one, sizeof(one));
		int k = snprintf(detail + used, sizeof(detail) - used, ": %s", one);
		if (k < 0 || (size_t)k >= sizeof(detail) - used) {
			ERR_clear_error();
			break;
		}
		used += (size_t)k;
	}
	if ((int)level <= atomic_load_explicit(&current_level, memory_order_relaxed))
		log_openssl_inner(level, detail, what);
}
