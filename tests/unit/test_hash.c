/*
 * core/hash: SipHash-1-3. Checked three ways: against published SipHash-1-3 outputs
 * (key 0, messages 00 01 02 ..., as produced by the reference implementation at
 * github.com/veorq/SipHash), against an independent SipHash-c-d written here and
 * itself checked against the SipHash-2-4 vectors of the SipHash paper, and for key
 * sensitivity.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/hash.h"

/* An independent SipHash-c-d over bytes, written from the paper's description. */
static uint64_t ref_rotl(uint64_t x, unsigned b)
{
	return (x << b) | (x >> (64 - b));
}

static void ref_round(uint64_t v[4])
{
	v[0] += v[1];
	v[1] = ref_rotl(v[1], 13) ^ v[0];
	v[0] = ref_rotl(v[0], 32);
	v[2] += v[3];
	v[3] = ref_rotl(v[3], 16) ^ v[2];
	v[0] += v[3];
	v[3] = ref_rotl(v[3], 21) ^ v[0];
	v[2] += v[1];
	v[1] = ref_rotl(v[1], 17) ^ v[2];
	v[2] = ref_rotl(v[2], 32);
}

static uint64_t ref_siphash(int c, int d, const uint8_t key[16], const uint8_t *m, size_t len)
{
	uint64_t k0 = 0, k1 = 0;
	for (int i = 0; i < 8; i++) {
		k0 |= (uint64_t)key[i] << (8 * i);
		k1 |= (uint64_t)key[8 + i] << (8 * i);
	}
	uint64_t v[4] = {k0 ^ 0x736f6d6570736575ULL, k1 ^ 0x646f72616e646f6dULL,
	                 k0 ^ 0x6c7967656e657261ULL, k1 ^ 0x7465646279746573ULL};
	size_t blocks = len / 8 + 1; /* the last block carries the length */
	for (size_t b = 0; b < blocks; b++) {
		uint64_t w = 0;
		for (size_t i = 0; i < 8; i++) {
			size_t at = b * 8 + i;
			if (at < len)
				w |= (uint64_t)m[at] << (8 * i);
		}
		if (b == blocks - 1)
			w |= (uint64_t)(len & 0xff) << 56;
		v[3] ^= w;
		for (int r = 0; r < c; r++)
			ref_round(v);
		v[0] ^= w;
	}
	v[2] ^= 0xff;
	for (int r = 0; r < d; r++)
		ref_round(v);
	return v[0] ^ v[1] ^ v[2] ^ v[3];
}

static const uint8_t key_0to15[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

/* SipHash-2-4, key 00..0f, message 00 01 .. (len-1): the paper's Appendix A vectors. */
static void test_reference_is_siphash24(void **state)
{
	(void)state;
	static const uint64_t want[16] = {
		0x726fdb47dd0e0e31ULL, 0x74f839c593dc67fdULL, 0x0d6c8009d9a94f5aULL,
		0x85676696d7fb7e2dULL, 0xcf2794e0277187b7ULL, 0x18765564cd99a68dULL,
		0xcbc9466e58fee3ceULL, 0xab0200f58b01d137ULL, 0x93f5f5799a932462ULL,
		0x9e0082df0ba9e4b0ULL, 0x7a5dbbc594ddb9f3ULL, 0xf4b32f46226bada7ULL,
		0x751e8fbc860ee5fbULL, 0x14ea5627c0843d90ULL, 0xf723ca908e7af2eeULL,
		0xa129ca6149be45e5ULL,
	};
	uint8_t msg[16];
	for (int i = 0; i < 16; i++)
		msg[i] = (uint8_t)i;
	for (size_t len = 0; len < 16; len++)
		assert_int_equal(ref_siphash(2, 4, key_0to15, msg, len), want[len]);
}

/* SipHash-1-3, key all zero, message 00 01 .. (len-1). */
static void test_siphash13_vectors(void **state)
{
	(void)state;
	static const struct {
		size_t len;
		uint64_t h;
	} want[] = {
		{0, 0xd1fba762150c532cULL},  {1, 0x68a914128e01e473ULL},  {2, 0x010bac45c41e3669ULL},
		{3, 0x4d4c9a4a8ef6e0adULL},  {7, 0x2f098ab0c751325aULL},  {8, 0xead411e67ebe2eeaULL},
		{9, 0x75927f9d95124362ULL},  {15, 0xf30eb725bb91c9eaULL}, {16, 0x8972188433a5c5b7ULL},
		{17, 0x4883c49a2c009c1dULL}, {31, 0x169739443111d49bULL}, {32, 0x31ef8061c910629bULL},
		{63, 0x385d3e39e5f37359ULL},
	};
	static const uint8_t zero_key[16] = {0};
	uint8_t msg[64];
	for (int i = 0; i < 64; i++)
		msg[i] = (uint8_t)i;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		uint64_t got = hash_siphash13(zero_key, msg, want[i].len);
		if (got != want[i].h)
			fail_msg("len %zu: got %016llx, want %016llx", want[i].len,
			         (unsigned long long)got, (unsigned long long)want[i].h);
		assert_int_equal(ref_siphash(1, 3, zero_key, msg, want[i].len), want[i].h);
	}
}

/* Every length 0..255 and a few keys, against the independent implementation. */
static void test_matches_reference(void **state)
{
	(void)state;
	uint8_t msg[256];
	for (int i = 0; i < 256; i++)
		msg[i] = (uint8_t)(i * 131 + 7);
	uint8_t keys[3][16];
	memcpy(keys[0], key_0to15, 16);
	memset(keys[1], 0xff, 16);
	for (int i = 0; i < 16; i++)
		keys[2][i] = (uint8_t)(0x80 ^ (i * 29));
	for (int k = 0; k < 3; k++) {
		for (size_t len = 0; len <= sizeof(msg); len++) {
			uint64_t got = hash_siphash13(keys[k], msg, len);
			uint64_t want = ref_siphash(1, 3, keys[k], msg, len);
			if (got != want)
				fail_msg("key %d len %zu: got %016llx, want %016llx", k, len,
				         (unsigned long long)got, (unsigned long long)want);
		}
	}
}

static void test_unaligned_input(void **state)
{
	(void)state;
	uint8_t raw[80];
	for (int i = 0; i < 80; i++)
		raw[i] = (uint8_t)(i ^ 0x5a);
	uint64_t base = hash_siphash13(key_0to15, raw + 8, 40);
	for (int off = 1; off < 8; off++) {
		uint8_t moved[80];
		memcpy(moved + off, raw + 8, 40);
		assert_int_equal(hash_siphash13(key_0to15, moved + off, 40), base);
	}
}

static void test_key_and_message_sensitivity(void **state)
{
	(void)state;
	const uint8_t serial[] = {0x00, 0x80, 0x12, 0x34};
	uint64_t h = hash_siphash13(key_0to15, serial, sizeof(serial));
	assert_int_equal(hash_siphash13(key_0to15, serial, sizeof(serial)), h);
	for (int byte = 0; byte < 16; byte++) {
		uint8_t k[16];
		memcpy(k, key_0to15, 16);
		k[byte] ^= 1;
		assert_true(hash_siphash13(k, serial, sizeof(serial)) != h);
	}
	uint8_t m[sizeof(serial)];
	for (size_t byte = 0; byte < sizeof(serial); byte++) {
		memcpy(m, serial, sizeof(serial));
		m[byte] ^= 0x40;
		assert_true(hash_siphash13(key_0to15, m, sizeof(m)) != h);
	}
	/* A trailing zero changes the length, and so the hash. */
	const uint8_t longer[] = {0x00, 0x80, 0x12, 0x34, 0x00};
	assert_true(hash_siphash13(key_0to15, longer, sizeof(longer)) != h);
}

static void test_process_key_is_stable_and_random(void **state)
{
	(void)state;
	const uint8_t *k1 = hash_process_key();
	const uint8_t *k2 = hash_process_key();
	assert_ptr_equal(k1, k2);
	static const uint8_t zero[16] = {0};
	assert_memory_not_equal(k1, zero, 16);
	uint8_t fill[16];
	memset(fill, 0x5a, sizeof(fill)); /* the fallback when the OS has no randomness */
	assert_memory_not_equal(k1, fill, 16);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reference_is_siphash24),
		cmocka_unit_test(test_siphash13_vectors),
		cmocka_unit_test(test_matches_reference),
		cmocka_unit_test(test_unaligned_input),
		cmocka_unit_test(test_key_and_message_sensitivity),
		cmocka_unit_test(test_process_key_is_stable_and_random),
	};
	return cmocka_run_group_tests_name("hash", tests, NULL, NULL);
}
