/*
 * Strict DER: a reader that accepts only distinguished encodings (definite, minimal
 * lengths; low tag numbers; no trailing bytes) and borrows from its input, and a
 * writer that appends to a capped buffer.
 *
 * OpenSSL's d2i functions accept BER and allocate an object per field; requests are
 * small, fixed in shape and arrive at line rate, so revd reads them in place. Every
 * reader path has a fuzz target that cross-checks it against OpenSSL's decoder.
 */
#ifndef REVD_OCSP_DER_H
#define REVD_OCSP_DER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

enum {
	DER_BOOLEAN = 0x01,
	DER_INTEGER = 0x02,
	DER_BIT_STRING = 0x03,
	DER_OCTET_STRING = 0x04,
	DER_NULL = 0x05,
	DER_OID = 0x06,
	DER_ENUMERATED = 0x0a,
	DER_UTC_TIME = 0x17,
	DER_GENERALIZED_TIME = 0x18,
	DER_SEQUENCE = 0x30,
	DER_SET = 0x31,
	DER_CONTEXT = 0x80,     /* class bits: context-specific */
	DER_CONSTRUCTED = 0x20, /* constructed bit */
};
#define DER_CTX_CONS(n) (DER_CONTEXT | DER_CONSTRUCTED | (n))
#define DER_CTX_PRIM(n) (DER_CONTEXT | (n))

/* What remains to be read of one encoding; borrows the bytes. */
struct der_cursor {
	const uint8_t *p;
	const uint8_t *end;
};

static inline struct der_cursor der_cursor_init(const uint8_t *p, size_t len)
{
	struct der_cursor c = {p, p + len};
	return c;
}

static inline bool der_at_end(const struct der_cursor *c)
{
	return c->p == c->end;
}

/* The tag of the next element, or -1 at the end. */
int der_peek_tag(const struct der_cursor *c);

/*
 * Reads the next element, which must carry tag; its contents go to *contents (may be
 * NULL to skip it). Returns false on a tag mismatch or any non-DER encoding, and then
 * leaves c where it was.
 */
bool der_read(struct der_cursor *c, int tag, struct der_cursor *contents);

/* Reads any element; its tag to *tag, its whole encoding (header included) to *whole. */
bool der_read_any(struct der_cursor *c, int *tag, struct der_cursor *contents,
                  struct der_cursor *whole);

/* Reads an INTEGER, checking that its encoding is minimal; contents to *val. */
bool der_read_integer(struct der_cursor *c, struct der_cursor *val);

/* Reads a BOOLEAN (DER: 0x00 or 0xff only). */
bool der_read_boolean(struct der_cursor *c, bool *val);

/* Reads a small non-negative INTEGER or ENUMERATED (tag given) that fits in an int. */
bool der_read_small_uint(struct der_cursor *c, int tag, int *val);
/* An OBJECT IDENTIFIER: non-empty, every subidentifier minimal (no leading 0x80 octet),
 * the last one ended. On failure c is left where it was. */
bool der_read_oid(struct der_cursor *c, struct der_cursor *oid);

/* How deep der_tree_valid looks into what revd passes on without reading. */
#define DER_MAX_DEPTH 32

/*
 * Every element in c, and in every constructed element within (depth levels), is DER
 * at the level of tags and lengths: for the parts revd passes on without reading their
 * values. The reserved tag 0 (BER's end-of-contents) is refused.
 */
bool der_tree_valid(struct der_cursor c, int depth);

/* A Name (RFC 5280 §4.1.2.4): SEQUENCE OF RelativeDistinguishedName, each a non-empty
 * SET OF SEQUENCE { type OID, value ANY }; the values are not read. */
bool der_read_name(struct der_cursor *c);

/* A signature AlgorithmIdentifier: an OID, parameters absent, NULL, or a SEQUENCE
 * (RSASSA-PSS). Its whole encoding to *whole. */
bool der_read_algid(struct der_cursor *c, struct der_cursor *whole);

static inline size_t der_len(const struct der_cursor *c)
{
	return (size_t)(c->end - c->p);
}

static inline bool der_equals(const struct der_cursor *c, const uint8_t *p, size_t len)
{
	return der_len(c) == len && (len == 0 || __builtin_memcmp(c->p, p, len) == 0);
}

/* --- writer --- */

/* Appends a complete TLV. */
bool der_put(struct buf *b, int tag, const void *contents, size_t len);

/*
 * Opens a constructed element: writes the tag and a one-byte length placeholder and
 * returns the offset to pass to der_end. der_end fixes the length, moving the
 * contents along when the length needs more bytes.
 */
size_t der_begin(struct buf *b, int tag);
bool der_end(struct buf *b, size_t mark);

/* An INTEGER from unsigned magnitude bytes (adds the 0x00 a set top bit needs). */
bool der_put_uint(struct buf *b, int tag, uint64_t v);

/* GeneralizedTime YYYYMMDDHHMMSSZ for t (seconds since the epoch, UTC). */
bool der_put_gentime(struct buf *b, int64_t t);

/* A Time as RFC 5280 §4.1.2.5 wants it: UTCTime for 1950 through 2049, GeneralizedTime
 * otherwise. */
bool der_put_time(struct buf *b, int64_t t);

/* Reads a Time: UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ). */
bool der_read_time(struct der_cursor *c, int64_t *t);

/* Parses a DER GeneralizedTime's contents (YYYYMMDDHHMMSSZ only, as RFC 5280 requires). */
bool der_parse_gentime(const struct der_cursor *contents, int64_t *t);

#endif
