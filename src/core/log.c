#include "core/log.h"

#include <openssl/err.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static _Atomic int current_level = LOG_INFO;
static _Atomic bool json_lines = false;

void log_set_json(bool json)
{
	atomic_store(&json_lines, json);
}

/* text as the contents of a JSON string (RFC 8259): quotes, backslashes and control
 * characters escaped; bytes of 0x80 and above passed on (revd logs UTF-8 or ASCII). */
static size_t json_escape(char *out, size_t cap, const char *text, size_t len)
{
	size_t o = 0;
	for (size_t i = 0; i < len && o + 7 < cap; i++) {
		unsigned char c = (unsigned char)text[i];
		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c < 0x20) {
			o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
		} else {
			out[o++] = (char)c;
		}
	}
	return o;
}
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

/* The certificate a line is about: JSON lines carry it as fields of their own. */
struct log_cert {
	const char *issuer, *serial;
};

__attribute__((format(printf, 2, 0)))
static void log_vwrite_cert(enum log_level level, const char *fmt, va_list ap,
                            const char *suffix, const struct log_cert *cert)
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
	if (atomic_load_explicit(&json_lines, memory_order_relaxed)) {
		/* The same line as an object: the stamp and level, then the message. */
		char obj[2048 * 6 + 96];
		size_t msg_at = (size_t)n;
		int h = snprintf(obj, sizeof(obj), "{\"ts\":\"%.24s\",\"level\":\"%s\",", line,
		                 level_names[level]);
		size_t o = (size_t)h;
		if (cert != NULL) {
			static const char *const keys[] = {"\"issuer\":\"", "\"serial\":\""};
			const char *vals[] = {cert->issuer, cert->serial};
			for (int i = 0; i < 2; i++) {
				if (vals[i] == NULL)
					continue;
				size_t k = strlen(keys[i]);
				memcpy(obj + o, keys[i], k);
				o += k;
				o += json_escape(obj + o, 256, vals[i], strnlen(vals[i], 40));
				memcpy(obj + o, "\",", 2);
				o += 2;
			}
		}
		memcpy(obj + o, "\"msg\":\"", 7);
		o += 7;
		o += json_escape(obj + o, sizeof(obj) - o - 3, line + msg_at, len - msg_at);
		memcpy(obj + o, "\"}\n", 3);
		fwrite(obj, 1, o + 3, stderr);
		return;
	}
	line[len++] = '\n';
	/* One write per line so lines from several threads never interleave. */
	fwrite(line, 1, len, stderr);
}

__attribute__((format(printf, 2, 0)))
static void log_vwrite(enum log_level level, const char *fmt, va_list ap, const char *suffix)
{
	log_vwrite_cert(level, fmt, ap, suffix, NULL);
}

void log_cert(enum log_level level, const char *issuer, const char *serial, const char *fmt, ...)
{
	if ((int)level > atomic_load_explicit(&current_level, memory_order_relaxed))
		return;
	struct log_cert c = {issuer, serial};
	va_list ap;
	va_start(ap, fmt);
	log_vwrite_cert(level, fmt, ap, NULL, &c);
	va_end(ap);
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
