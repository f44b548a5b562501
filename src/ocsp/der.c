#include "ocsp/der.h"

#include "core/clock.h"

#include <string.h>
#include <time.h>

int der_peek_tag(const struct der_cursor *c)
{
	return c->p < c->end ? c->p[0] : -1;
}

bool der_read_any(struct der_cursor *c, int *tag, struct der_cursor *contents,
                  struct der_cursor *whole)
{
	const uint8_t *p = c->p;
	size_t avail = (size_t)(c->end - p);
	if (avail < 2)
		return false;
	int t = p[0];
	if ((t & 0x1f) == 0x1f) /* high tag numbers never occur in OCSP */
		return false;
	size_t len;
	size_t hdr;
	uint8_t l0 = p[1];
	if (l0 < 0x80) {
		len = l0;
		hdr = 2;
	} else {
		size_t n = l0 & 0x7f;
		if (n == 0 || n > 4) /* 0: indefinite (BER only); >4: beyond any sane size */
			return false;
		if (avail < 2 + n)
			return false;
		if (p[2] == 0) /* leading zero octet: not minimal */
			return false;
		len = 0;
		for (size_t i = 0; i < n; i++)
			len = (len << 8) | p[2 + i];
		if (len < 0x80) /* long form for a short length: not minimal */
			return false;
		hdr = 2 + n;
	}
	if (len > avail - hdr)
		return false;
	/* Primitive-only universal types must not come constructed (BER segmenting). */
	if ((t & (DER_CONTEXT | 0x40)) == 0 && (t & DER_CONSTRUCTED) &&
	    (t & 0x1f) != 0x10 && (t & 0x1f) != 0x11)
		return false;
	if (tag != NULL)
		*tag = t;
	if (contents != NULL)
		*contents = der_cursor_init(p + hdr, len);
	if (whole != NULL)
		*whole = der_cursor_init(p, hdr + len);
	c->p = p + hdr + len;
	return true;
}

bool der_read(struct der_cursor *c, int tag, struct der_cursor *contents)
{
	struct der_cursor save = *c;
	int t;
	if (der_peek_tag(c) != tag || !der_read_any(c, &t, contents, NULL)) {
		*c = save;
		return false;
	}
	return true;
}

bool der_read_integer(struct der_cursor *c, struct der_cursor *val)
{
	struct der_cursor save = *c, v;
	if (!der_read(c, DER_INTEGER, &v))
		return false;
	size_t n = der_len(&v);
	if (n == 0 || (n > 1 && ((v.p[0] == 0x00 && !(v.p[1] & 0x80)) ||
	                         (v.p[0] == 0xff && (v.p[1] & 0x80))))) {
		*c = save;
		return false;
	}
	*val = v;
	return true;
}

bool der_read_boolean(struct der_cursor *c, bool *val)
{
	struct der_cursor save = *c, v;
	if (!der_read(c, DER_BOOLEAN, &v))
		return false;
	if (der_len(&v) != 1 || (v.p[0] != 0x00 && v.p[0] != 0xff)) {
		*c = save;
		return false;
	}
	*val = v.p[0] == 0xff;
	return true;
}

bool der_read_small_uint(struct der_cursor *c, int tag, int *val)
{
	struct der_cursor save = *c, v;
	if (!der_read(c, tag, &v))
		return false;
	size_t n = der_len(&v);
	bool minimal = n >= 1 && !(n > 1 && v.p[0] == 0x00 && !(v.p[1] & 0x80));
	if (!minimal || (v.p[0] & 0x80) || n > 4) {
		*c = save;
		return false;
	}
	int x = 0;
	for (size_t i = 0; i < n; i++)
		x = (x << 8) | v.p[i];
	*val = x;
	return true;
}

static size_t len_octets(size_t len)
{
	if (len < 0x80)
		return 1;
	size_t n = 1;
	while (len > 0) {
		n++;
		len >>= 8;
	}
	return n;
}

static void write_len(uint8_t *p, size_t len, size_t octets)
{
	if (octets == 1) {
		p[0] = (uint8_t)len;
		return;
	}
	p[0] = (uint8_t)(0x80 | (octets - 1));
	for (size_t i = octets - 1; i >= 1; i--) {
		p[i] = (uint8_t)(len & 0xff);
		len >>= 8;
	}
}

bool der_put(struct buf *b, int tag, const void *contents, size_t len)
{
	size_t lo = len_octets(len);
	uint8_t *p = buf_reserve(b, 1 + lo + len);
	if (p == NULL)
		return false;
	p[0] = (uint8_t)tag;
	write_len(p + 1, len, lo);
	if (len > 0)
		memcpy(p + 1 + lo, contents, len);
	b->len += 1 + lo + len;
	return true;
}

size_t der_begin(struct buf *b, int tag)
{
	size_t mark = b->len;
	uint8_t hdr[2] = {(uint8_t)tag, 0};
	buf_append(b, hdr, 2);
	return mark;
}

bool der_end(struct buf *b, size_t mark)
{
	if (b->failed)
		return false;
	size_t start = mark + 2;
	size_t len = b->len - start;
	size_t lo = len_octets(len);
	if (lo > 1) {
		if (buf_reserve(b, lo - 1) == NULL)
			return false;
		memmove(b->data + start + lo - 1, b->data + start, len);
		b->len += lo - 1;
	}
	write_len(b->data + mark + 1, len, lo);
	return true;
}

bool der_put_uint(struct buf *b, int tag, uint64_t v)
{
	uint8_t tmp[9];
	size_t n = 0;
	uint8_t be[8];
	for (int i = 7; i >= 0; i--) {
		be[i] = (uint8_t)(v & 0xff);
		v >>= 8;
	}
	size_t first = 0;
	while (first < 7 && be[first] == 0)
		first++;
	if (be[first] & 0x80)
		tmp[n++] = 0;
	memcpy(tmp + n, be + first, 8 - first);
	n += 8 - first;
	return der_put(b, tag, tmp, n);
}

bool der_put_gentime(struct buf *b, int64_t t)
{
	struct tm tm;
	time_t tt = (time_t)t;
	if (gmtime_r(&tt, &tm) == NULL || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0) {
		b->failed = true;
		return false;
	}
	char s[16];
	int year = tm.tm_year + 1900;
	int vals[6] = {year, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec};
	s[0] = (char)('0' + (year / 1000) % 10);
	s[1] = (char)('0' + (year / 100) % 10);
	s[2] = (char)('0' + (year / 10) % 10);
	s[3] = (char)('0' + year % 10);
	for (int i = 1; i < 6; i++) {
		s[2 + 2 * i] = (char)('0' + vals[i] / 10);
		s[3 + 2 * i] = (char)('0' + vals[i] % 10);
	}
	s[14] = 'Z';
	return der_put(b, DER_GENERALIZED_TIME, s, 15);
}

bool der_put_time(struct buf *b, int64_t t)
{
	struct tm tm;
	time_t tt = (time_t)t;
	if (gmtime_r(&tt, &tm) == NULL) {
		b->failed = true;
		return false;
	}
	int year = tm.tm_year + 1900;
	if (year < 1950 || year > 2049)
		return der_put_gentime(b, t);
	char s[13];
	int vals[6] = {year % 100, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec};
	for (int i = 0; i < 6; i++) {
		s[2 * i] = (char)('0' + vals[i] / 10);
		s[2 * i + 1] = (char)('0' + vals[i] % 10);
	}
	s[12] = 'Z';
	return der_put(b, DER_UTC_TIME, s, 13);
}

bool der_read_time(struct der_cursor *c, int64_t *t)
{
	struct der_cursor save = *c, v;
	int tag = der_peek_tag(c);
	size_t want = tag == DER_UTC_TIME ? 13 : 15;
	if ((tag != DER_UTC_TIME && tag != DER_GENERALIZED_TIME) || !der_read(c, tag, &v) ||
	    der_len(&v) != want || !clock_parse_asn1_time((const char *)v.p, want, t)) {
		*c = save;
		return false;
	}
	return true;
}

bool der_parse_gentime(const struct der_cursor *v, int64_t *t)
{
	return der_len(v) == 15 && clock_parse_asn1_time((const char *)v->p, 15, t);
}

bool der_read_oid(struct der_cursor *c, struct der_cursor *oid)
{
	struct der_cursor save = *c;
	if (!der_read(c, DER_OID, oid))
		return false;
	size_t n = der_len(oid);
	bool start = true, ok = n > 0;
	for (size_t i = 0; ok && i < n; i++) {
		ok = !(start && oid->p[i] == 0x80);
		start = !(oid->p[i] & 0x80);
	}
	if (!ok || !start) {
		*c = save;
		return false;
	}
	return true;
}

bool der_tree_valid(struct der_cursor c, int depth)
{
	while (!der_at_end(&c)) {
		int tag;
		struct der_cursor inner;
		if (!der_read_any(&c, &tag, &inner, NULL) || tag == 0)
			return false;
		if ((tag & DER_CONSTRUCTED) && (depth == 0 || !der_tree_valid(inner, depth - 1)))
			return false;
	}
	return true;
}

bool der_read_name(struct der_cursor *c)
{
	struct der_cursor save = *c, name;
	if (!der_read(c, DER_SEQUENCE, &name) || !der_tree_valid(name, DER_MAX_DEPTH))
		goto fail;
	while (!der_at_end(&name)) {
		struct der_cursor rdn;
		if (!der_read(&name, DER_SET, &rdn) || der_at_end(&rdn))
			goto fail;
		while (!der_at_end(&rdn)) {
			struct der_cursor atv, oid;
			int tag;
			if (!der_read(&rdn, DER_SEQUENCE, &atv) || !der_read_oid(&atv, &oid) ||
			    !der_read_any(&atv, &tag, NULL, NULL) || !der_at_end(&atv))
				goto fail;
		}
	}
	return true;
fail:
	*c = save;
	return false;
}

bool der_read_algid(struct der_cursor *c, struct der_cursor *whole)
{
	struct der_cursor save = *c, alg, oid, params;
	int tag;
	if (der_peek_tag(c) != DER_SEQUENCE || !der_read_any(c, &tag, &alg, whole) ||
	    !der_read_oid(&alg, &oid))
		goto fail;
	if (!der_at_end(&alg)) {
		if (!der_read_any(&alg, &tag, &params, NULL) || !der_at_end(&alg))
			goto fail;
		if (tag == DER_NULL && der_len(&params) != 0)
			goto fail;
		if (tag != DER_NULL && (tag != DER_SEQUENCE || !der_tree_valid(params, DER_MAX_DEPTH)))
			goto fail;
	}
	return true;
fail:
	*c = save;
	return false;
}
