/* Log lines on stderr: one line per event, saying what was being done. */
#ifndef REVD_CORE_LOG_H
#define REVD_CORE_LOG_H

#include <stdbool.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_set_level(enum log_level level);
/* Lines as JSON objects, one a line: {"ts":"...","level":"...","msg":"..."}. */
void log_set_json(bool json);
enum log_level log_get_level(void);
/* Parses "error", "warn", "info" or "debug"; returns -1 otherwise. */
int log_level_parse(const char *s);

void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* A line about one certificate: as JSON, issuer and serial (hex; either may be NULL)
 * are fields of their own (up to 40 characters each), besides the message. */
void log_cert(enum log_level level, const char *issuer, const char *serial, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Appends OpenSSL's error queue (and clears it) to a log line about what failed. */
void log_openssl(enum log_level level, const char *what);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) \
	do { \
		if (log_get_level() >= LOG_DEBUG) \
			log_msg(LOG_DEBUG, __VA_ARGS__); \
	} while (0)

#endif
