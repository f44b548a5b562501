/*
 * ocsp_get_path_decode: never writes past out_max (each output buffer is a heap block
 * of exactly out_max bytes, so ASan sees a byte too far), the result does not depend on
 * out_max beyond fitting, and what it decodes survives standard base64 and back.
 */
#include <openssl/evp.h>
#include <string.h>

#include "fuzz.h"
#include "ocsp/request.h"

#define BIG 8192

static long decode_into_exact(const char *path, size_t len, size_t out_max, uint8_t **out)
{
	*out = malloc(out_max ? out_max : 1);
	FUZZ_CHECK(*out != NULL, "malloc");
	return ocsp_get_path_decode(path, len, *out, out_max);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *path = (const char *)data;
	uint8_t *big;
	long n = decode_into_exact(path, size, BIG, &big);
	FUZZ_CHECK(n == -1 || (n > 0 && n <= BIG), "returned %ld", n);
	/* Each symbol gives at most 6 bits; "%xx" is one symbol. */
	FUZZ_CHECK(n <= (long)(size * 3 / 4), "%ld bytes from %zu characters", n, size);

	if (n > 0) {
		/* Room for exactly the answer: the same answer. */
		uint8_t *exact;
		long m = decode_into_exact(path, size, (size_t)n, &exact);
		FUZZ_CHECK(m == n && memcmp(exact, big, (size_t)n) == 0, "exact fit: %ld vs %ld", m,
		           n);
		free(exact);
		/* One byte less: refused, and nothing written beyond it. */
		uint8_t *short_by_one;
		m = decode_into_exact(path, size, (size_t)n - 1, &short_by_one);
		FUZZ_CHECK(m == -1, "%ld bytes decoded into %ld", m, n - 1);
		free(short_by_one);

		/* Standard base64 of the result decodes to the same bytes. */
		char *b64 = malloc(4 * ((size_t)n + 2) / 3 + 1);
		FUZZ_CHECK(b64 != NULL, "malloc");
		int bl = EVP_EncodeBlock((unsigned char *)b64, big, (int)n);
		uint8_t *again;
		m = decode_into_exact(b64, (size_t)bl, (size_t)n, &again);
		FUZZ_CHECK(m == n && memcmp(again, big, (size_t)n) == 0,
		           "re-encoded '%s' decodes to %ld bytes, not %ld", b64, m, n);
		free(again);
		free(b64);
	} else {
		/* A text that is not base64 stays refused whatever the room. */
		uint8_t *small;
		size_t room = size / 2 < BIG ? size / 2 : BIG;
		long m = decode_into_exact(path, size, room, &small);
		FUZZ_CHECK(m == -1, "refused with %d bytes of room, decoded with %zu", BIG, room);
		free(small);
	}
	free(big);
	return 0;
}
