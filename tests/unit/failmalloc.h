/*
 * Allocation-failure injection (curl's `runtests -t` torture, in-process). A test
 * executable linked with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc gets these
 * wrappers for every call made from its own objects and from the static revdcore
 * archive; shared libraries (libcrypto, libc's strdup) keep the real allocator.
 * Off until armed.
 */
#ifndef REVD_TESTS_FAILMALLOC_H
#define REVD_TESTS_FAILMALLOC_H

#include <stdbool.h>
#include <stddef.h>

/* The nth wrapped allocation from now fails (1: the next one); 0 disarms. Resets the
 * counters below. */
void failmalloc_arm(unsigned long nth);
/* Did the armed failure happen? */
bool failmalloc_fired(void);
/* Wrapped allocations seen since the last arm. */
unsigned long failmalloc_seen(void);

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);

#endif
