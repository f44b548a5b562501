#include "failmalloc.h"

static unsigned long countdown; /* 0: off */
static unsigned long seen;
static bool fired;

void failmalloc_arm(unsigned long nth)
{
	countdown = nth;
	seen = 0;
	fired = false;
}

bool failmalloc_fired(void)
{
	return fired;
}

unsigned long failmalloc_seen(void)
{
	return seen;
}

static bool should_fail(void)
{
	seen++;
	if (countdown == 0)
		return false;
	if (--countdown == 0) {
		fired = true;
		return true;
	}
	return false;
}

void *__wrap_malloc(size_t n)
{
	return should_fail() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
	return should_fail() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
	return should_fail() ? NULL : __real_realloc(p, n);
}
