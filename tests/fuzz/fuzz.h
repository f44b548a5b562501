/* Shared by the fuzz targets: the libFuzzer entry point and a check that aborts. */
#ifndef REVD_TESTS_FUZZ_H
#define REVD_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A violated invariant is a crash, so that libFuzzer saves the input. */
#define FUZZ_CHECK(cond, ...) \
	do { \
		if (!(cond)) { \
			fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__); \
			fputc('\n', stderr); \
			abort(); \
		} \
	} while (0)

/* Rebuilding DER in differential checks: a header's length, a header written at o (the
 * next byte returned), bytes copied. */
static inline size_t fuzz_der_hdr_len(size_t n)
{
	return n < 0x80 ? 2 : n < 0x100 ? 3 : n < 0x10000 ? 4 : 5;
}

static inline uint8_t *fuzz_der_put(uint8_t *o, int tag, size_t n)
{
	size_t hl = fuzz_der_hdr_len(n);
	o[0] = (uint8_t)tag;
	if (hl == 2) {
		o[1] = (uint8_t)n;
	} else {
		o[1] = (uint8_t)(0x80 | (hl - 2));
		for (size_t i = hl - 1; i >= 2; i--, n >>= 8)
			o[i] = (uint8_t)n;
	}
	return o + hl;
}

static inline uint8_t *fuzz_put_bytes(uint8_t *o, const void *p, size_t n)
{
	memcpy(o, p, n);
	return o + n;
}

#endif
