/* core/buf: a growable buffer with a hard ceiling. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/buf.h"

static void test_init_allocates_nothing(void **state)
{
	(void)state;
	struct buf b;
	memset(&b, 0xa5, sizeof(b));
	buf_init(&b, 1000);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, 0);
	assert_int_equal(b.max, 1000);
	assert_false(b.failed);
	buf_free(&b);
	buf_free(&b); /* twice is harmless */
	assert_null(b.data);
}

static void test_append_and_contents(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 4096);
	assert_true(buf_append(&b, "abc", 3));
	assert_true(buf_append_byte(&b, 'd'));
	assert_true(buf_append(&b, NULL, 0));
	assert_int_equal(b.len, 4);
	assert_memory_equal(b.data, "abcd", 4);
	/* Growth keeps what was there. */
	uint8_t big[1000];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7);
	assert_true(buf_append(&b, big, sizeof(big)));
	assert_int_equal(b.len, 1004);
	assert_true(b.cap >= 1004);
	assert_memory_equal(b.data, "abcd", 4);
	assert_memory_equal(b.data + 4, big, sizeof(big));
	buf_free(&b);
}

static void test_ceiling_exact(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 300);
	uint8_t chunk[256];
	memset(chunk, 1, sizeof(chunk));
	assert_true(buf_append(&b, chunk, 256));
	assert_true(buf_append(&b, chunk, 44)); /* exactly max */
	assert_int_equal(b.len, 300);
	assert_true(b.cap <= 300); /* growth stops at the ceiling */
	assert_false(b.failed);
	assert_false(buf_append_byte(&b, 2)); /* one more: refused */
	assert_true(b.failed);
	assert_int_equal(b.len, 300);
	buf_free(&b);
}

static void test_failure_is_sticky_until_reset(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 10);
	assert_true(buf_append(&b, "12345", 5));
	assert_false(buf_append(&b, "123456", 6));
	assert_true(b.failed);
	assert_int_equal(b.len, 5);
	/* Even a byte that would fit is refused now: a half-written encoding is useless. */
	assert_false(buf_append_byte(&b, 'x'));
	assert_null(buf_reserve(&b, 1));
	assert_int_equal(b.len, 5);
	buf_reset(&b);
	assert_false(b.failed);
	assert_int_equal(b.len, 0);
	assert_true(buf_append(&b, "0123456789", 10));
	assert_memory_equal(b.data, "0123456789", 10);
	buf_free(&b);
}

static void test_reserve_huge_does_not_wrap(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 1024);
	assert_true(buf_append(&b, "ab", 2));
	assert_null(buf_reserve(&b, SIZE_MAX));
	assert_true(b.failed);
	buf_reset(&b);
	assert_null(buf_reserve(&b, SIZE_MAX - 1));
	buf_reset(&b);
	assert_null(buf_reserve(&b, 1025));
	buf_reset(&b);
	uint8_t *p = buf_reserve(&b, 1024);
	assert_non_null(p);
	assert_int_equal(b.len, 0); /* reserve does not commit */
	memset(p, 'z', 1024);
	b.len = 1024;
	assert_null(buf_reserve(&b, 1));
	buf_free(&b);
}

static void test_cap_never_exceeds_max_when_growing(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 1000);
	for (int i = 0; i < 1000; i++) {
		assert_true(buf_append_byte(&b, (uint8_t)i));
		assert_true(b.cap <= 1000);
		assert_true(b.cap >= b.len);
	}
	assert_false(buf_append_byte(&b, 0));
	for (int i = 0; i < 1000; i++)
		assert_int_equal(b.data[i], (uint8_t)i);
	buf_free(&b);
}

static void test_steal(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 100);
	assert_true(buf_append(&b, "hello", 5));
	size_t len = 0;
	uint8_t *p = buf_steal(&b, &len);
	assert_non_null(p);
	assert_int_equal(len, 5);
	assert_memory_equal(p, "hello", 5);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, 0);
	/* The buffer is usable again and does not share the stolen bytes. */
	assert_true(buf_append(&b, "world", 5));
	assert_memory_equal(p, "hello", 5);
	assert_memory_equal(b.data, "world", 5);
	free(p);
	buf_free(&b);
	/* Stealing from an empty buffer gives NULL and 0. */
	buf_init(&b, 100);
	len = 99;
	assert_null(buf_steal(&b, &len));
	assert_int_equal(len, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_allocates_nothing),
		cmocka_unit_test(test_append_and_contents),
		cmocka_unit_test(test_ceiling_exact),
		cmocka_unit_test(test_failure_is_sticky_until_reset),
		cmocka_unit_test(test_reserve_huge_does_not_wrap),
		cmocka_unit_test(test_cap_never_exceeds_max_when_growing),
		cmocka_unit_test(test_steal),
	};
	return cmocka_run_group_tests_name("buf", tests, NULL, NULL);
}
