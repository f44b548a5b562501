#include "core/clock.h"

#include <string.h>

#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

static _Atomic int64_t frozen_at; /* 0: not frozen */
static _Atomic int64_t offset;

int64_t clock_now(void)
{
	int64_t f = atomic_load_explicit(&frozen_at, memory_order_relaxed);
	if (f != 0)
		return f;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec + atomic_load_explicit(&offset, memory_order_relaxed);
}

void clock_freeze(int64_t t)
{
	atomic_store(&frozen_at, t);
}

void clock_advance(int64_t secs)
{
	if (atomic_load(&frozen_at) != 0)
		atomic_fetch_add(&frozen_at, secs);
	else
		atomic_fetch_add(&offset, secs);
}

void clock_reset(void)
{
	atomic_store(&frozen_at, 0);
	atomic_store(&offset, 0);
}

int clock_http_date(int64_t t, char out[30])
{
	static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	struct tm tm;
	time_t tt = (time_t)t;
	gmtime_r(&tt, &tm);
	return snprintf(out, 30, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday],
	                tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
	                tm.tm_sec);
}

bool clock_parse_http_date(const char *s, int64_t *t)
{
	static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	/* "Sun, 06 Nov 1994 08:49:37 GMT": fixed positions. */
	if (strlen(s) != 29 || s[3] != ',' || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' ||
	    s[16] != ' ' || s[19] != ':' || s[22] != ':' || s[25] != ' ' ||
	    memcmp(s + 26, "GMT", 3) != 0)
		return false;
	bool day_ok = false;
	for (int i = 0; i < 7; i++)
		day_ok |= memcmp(s, days[i], 3) == 0;
	int mon = 0;
	for (int i = 0; i < 12; i++)
		if (memcmp(s + 8, months[i], 3) == 0)
			mon = i + 1;
	static const int digits[] = {5, 6, 12, 13, 14, 15, 17, 18, 20, 21, 23, 24};
	for (size_t i = 0; i < sizeof(digits) / sizeof(digits[0]); i++)
		if (s[digits[i]] < '0' || s[digits[i]] > '9')
			return false;
	if (!day_ok || mon == 0)
		return false;
#define D2(i) ((s[i] - '0') * 10 + (s[(i) + 1] - '0'))
	int day = D2(5), year = D2(12) * 100 + D2(14), hour = D2(17), min = D2(20), sec = D2(23);
#undef D2
	if (day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60)
		return false;
	*t = clock_timegm(year, mon, day, hour, min, sec > 59 ? 59 : sec);
	return true;
}

int64_t clock_timegm(int year, int mon, int day, int hour, int min, int sec)
{
	/* Days from the civil date, counted in 400-year eras (H. Hinnant's method). */
	int64_t y = year - (mon <= 2);
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t mp = (mon + 9) % 12;
	int64_t doy = (153 * mp + 2) / 5 + day - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	int64_t days = era * 146097 + doe - 719468;
	return days * 86400 + hour * 3600 + min * 60 + sec;
}

static bool is_leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

bool clock_parse_asn1_time(const char *s, size_t len, int64_t *t)
{
	size_t ydigits;
	if (len == 15)
		ydigits = 4;
	else if (len == 13)
		ydigits = 2;
	else
		return false;
	if (s[len - 1] != 'Z')
		return false;
	int d[14];
	for (size_t i = 0; i < len - 1; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		d[i] = s[i] - '0';
	}
	int year;
	const int *r;
	if (ydigits == 4) {
		year = d[0] * 1000 + d[1] * 100 + d[2] * 10 + d[3];
		r = d + 4;
	} else {
		year = d[0] * 10 + d[1];
		year += year >= 50 ? 1900 : 2000;
		r = d + 2;
	}
	int mon = r[0] * 10 + r[1], day = r[2] * 10 + r[3];
	int hour = r[4] * 10 + r[5], min = r[6] * 10 + r[7], sec = r[8] * 10 + r[9];
	static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	if (mon < 1 || mon > 12 || day < 1 || hour > 23 || min > 59 || sec > 59)
		return false;
	if (day > mdays[mon - 1] + (mon == 2 && is_leap(year)))
		return false;
	*t = clock_timegm(year, mon, day, hour, min, sec);
	return true;
}
