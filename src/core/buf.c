#include "core/buf.h"

#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b, size_t max)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max;
	b->failed = false;
}

void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	b->failed = false;
}

uint8_t *buf_reserve(struct buf *b, size_t n)
{
	if (b->failed)
		return NULL;
	if (n > b->max || b->len > b->max - n) {
		b->failed = true;
		return NULL;
	}
	size_t need = b->len + n;
	if (need > b->cap) {
		size_t cap = b->cap ? b->cap : (b->max < 256 ? b->max : 256);
		while (cap < need)
			cap = cap > b->max / 2 ? b->max : cap * 2;
		uint8_t *p = realloc(b->data, cap);
		if (p == NULL) {
			b->failed = true;
			return NULL;
		}
		b->data = p;
		b->cap = cap;
	}
	return b->data + b->len;
}

bool buf_append(struct buf *b, const void *p, size_t n)
{
	uint8_t *dst = buf_reserve(b, n);
	if (dst == NULL)
		return false;
	if (n > 0)
		memcpy(dst, p, n);
	b->len += n;
	return true;
}

bool buf_append_byte(struct buf *b, uint8_t c)
{
	return buf_append(b, &c, 1);
}

uint8_t *buf_steal(struct buf *b, size_t *len)
{
	uint8_t *p = b->data;
	*len = b->len;
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	return p;
}
