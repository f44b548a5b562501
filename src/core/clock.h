/* The one clock every expiry decision reads. Tests freeze or move it. */
#ifndef REVD_CORE_CLOCK_H
#define REVD_CORE_CLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Seconds since the Unix epoch, UTC. */
int64_t clock_now(void);

/* Freezes the clock at t (tests only). */
void clock_freeze(int64_t t);

/* Adds secs to the clock: to a frozen clock, or as an offset to the real one. */
void clock_advance(int64_t secs);

/* Back to real time. */
void clock_reset(void);

/* Seconds since the epoch for a UTC calendar date (proleptic Gregorian, no leap
 * seconds); fields are not range-checked. */
int64_t clock_timegm(int year, int mon, int day, int hour, int min, int sec);

/* Parses YYYYMMDDHHMMSSZ (15 chars, as RFC 5280 requires of GeneralizedTime) and,
 * with len 13, YYMMDDHHMMSSZ (UTCTime: YY >= 50 is 19YY). False on anything else. */
bool clock_parse_asn1_time(const char *s, size_t len, int64_t *t);

/* Formats t as an IMF-fixdate (RFC 9110 §5.6.7) into out[30]; returns 29. */
int clock_http_date(int64_t t, char out[30]);

/* Parses an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"); false on anything else (the
 * obsolete HTTP date forms included: a conditional request with one is unconditional). */
bool clock_parse_http_date(const char *s, int64_t *t);

#endif
