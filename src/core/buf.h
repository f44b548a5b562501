/* A growable byte buffer with a hard ceiling decided by its owner. */
#ifndef REVD_CORE_BUF_H
#define REVD_CORE_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf {
	uint8_t *data;
	size_t len;
	size_t cap;
	size_t max;  /* never grows beyond this many bytes */
	bool failed; /* set once an append did not fit or allocation failed */
};

/* An empty buffer that may grow to max bytes; allocates nothing yet. */
void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b);
void buf_reset(struct buf *b);

/* Makes room for n more bytes; returns a pointer to them or NULL (and sets failed). */
uint8_t *buf_reserve(struct buf *b, size_t n);
bool buf_append(struct buf *b, const void *p, size_t n);
bool buf_append_byte(struct buf *b, uint8_t c);

/* Hands the bytes to the caller (who frees them) and leaves b empty. */
uint8_t *buf_steal(struct buf *b, size_t *len);

#endif
