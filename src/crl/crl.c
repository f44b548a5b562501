#include "crl/crl.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* id-ce arcs (2.5.29.x) of the extensions a CRL and its entries carry. */
#define OID_CE(x) {0x55, 0x1d, (x)}
static const uint8_t oid_aki[] = OID_CE(0x23);
static const uint8_t oid_number[] = OID_CE(0x14);
static const uint8_t oid_delta[] = OID_CE(0x1b);
static const uint8_t oid_idp[] = OID_CE(0x1c);
static const uint8_t oid_freshest[] = OID_CE(0x2e);
static const uint8_t oid_reason[] = OID_CE(0x15);
static const uint8_t oid_invalidity[] = OID_CE(0x18);

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	if (err == NULL || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

int crl_serial_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	if (alen != blen)
		return alen < blen ? -1 : 1;
	return memcmp(a, b, alen);
}

/* --- builder --- */

struct ext_marks {
	size_t seq, value;
};

static struct ext_marks ext_begin(struct buf *b, const uint8_t *oid, size_t oid_len,
                                  bool critical)
{
	static const uint8_t yes = 0xff;
	struct ext_marks m;
	m.seq = der_begin(b, DER_SEQUENCE);
	der_put(b, DER_OID, oid, oid_len);
	if (critical)
		der_put(b, DER_BOOLEAN, &yes, 1);
	m.value = der_begin(b, DER_OCTET_STRING);
	return m;
}

static bool ext_end(struct buf *b, struct ext_marks m)
{
	der_end(b, m.value);
	return der_end(b, m.seq);
}

/* DistributionPointName: fullName [0] with one uniformResourceIdentifier [6]. The CHOICE
 * makes the outer [0] explicit. */
static void put_dp_name(struct buf *b, const char *uri)
{
	size_t dp = der_begin(b, DER_CTX_CONS(0));
	size_t full = der_begin(b, DER_CTX_CONS(0));
	der_put(b, DER_CTX_PRIM(6), uri, strlen(uri));
	der_end(b, full);
	der_end(b, dp);
}

static bool put_entry(struct buf *b, const struct crl_entry *e)
{
	size_t m = der_begin(b, DER_SEQUENCE);
	der_put(b, DER_INTEGER, e->serial, e->serial_len);
	if (!der_put_time(b, e->revoked_at))
		return false;
	bool reason = e->reason != CRL_ENTRY_NO_REASON && e->reason != CRL_ENTRY_UNSPECIFIED;
	if (reason || e->invalidity_date != 0) {
		size_t exts = der_begin(b, DER_SEQUENCE);
		if (reason) {
			uint8_t r = (uint8_t)e->reason;
			struct ext_marks x = ext_begin(b, oid_reason, sizeof(oid_reason), false);
			der_put(b, DER_ENUMERATED, &r, 1);
			ext_end(b, x);
		}
		if (e->invalidity_date != 0) {
			struct ext_marks x =
				ext_begin(b, oid_invalidity, sizeof(oid_invalidity), false);
			if (!der_put_gentime(b, e->invalidity_date))
				return false;
			ext_end(b, x);
		}
		der_end(b, exts);
	}
	return der_end(b, m);
}

static bool put_crl_extensions(struct buf *b, const struct crl_spec *spec)
{
	size_t m0 = der_begin(b, DER_CTX_CONS(0));
	size_t m = der_begin(b, DER_SEQUENCE);
	struct ext_marks x;
	if (spec->key_id != NULL) {
		x = ext_begin(b, oid_aki, sizeof(oid_aki), false);
		size_t s = der_begin(b, DER_SEQUENCE);
		der_put(b, DER_CTX_PRIM(0), spec->key_id, spec->key_id_len);
		der_end(b, s);
		ext_end(b, x);
	}
	x = ext_begin(b, oid_number, sizeof(oid_number), false);
	der_put_uint(b, DER_INTEGER, spec->number);
	ext_end(b, x);
	if (spec->delta_base != 0) {
		x = ext_begin(b, oid_delta, sizeof(oid_delta), true);
		der_put_uint(b, DER_INTEGER, spec->delta_base);
		ext_end(b, x);
	}
	if (spec->idp_uri != NULL) {
		/* Critical, as RFC 5280 §5.2.5 requires. */
		x = ext_begin(b, oid_idp, sizeof(oid_idp), true);
		size_t s = der_begin(b, DER_SEQUENCE);
		put_dp_name(b, spec->idp_uri);
		der_end(b, s);
		ext_end(b, x);
	}
	if (spec->freshest_uri != NULL && spec->delta_base == 0) {
		x = ext_begin(b, oid_freshest, sizeof(oid_freshest), false);
		size_t s = der_begin(b, DER_SEQUENCE);
		size_t dp = der_begin(b, DER_SEQUENCE);
		put_dp_name(b, spec->freshest_uri);
		der_end(b, dp);
		der_end(b, s);
		ext_end(b, x);
	}
	der_end(b, m);
	return der_end(b, m0);
}

bool crl_build(const struct crl_spec *spec, const struct crl_entry *entries, size_t n,
               const struct ocsp_signer *signer, struct buf *out, char *err, size_t errlen)
{
	static const uint8_t v2 = 1;
	size_t len;
	const uint8_t *sigalg = ocsp_signer_sigalg(signer, &len);

	if (spec->number == 0 || spec->next_update <= spec->this_update) {
		set_err(err, errlen, "a CRL needs a number and a nextUpdate after its thisUpdate");
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		const struct crl_entry *e = &entries[i];
		if (e->serial_len == 0 || e->serial_len > CRL_MAX_SERIAL ||
		    (i > 0 && crl_serial_cmp(entries[i - 1].serial, entries[i - 1].serial_len,
		                             e->serial, e->serial_len) >= 0)) {
			set_err(err, errlen, "CRL entry %zu: serial empty, repeated or out of order", i);
			return false;
		}
		if (e->reason < CRL_ENTRY_NO_REASON || e->reason > 10 || e->reason == 7 ||
		    (e->reason == CRL_ENTRY_REMOVE && spec->delta_base == 0)) {
			set_err(err, errlen, "CRL entry %zu: reason %d not allowed here", i, e->reason);
			return false;
		}
	}

	size_t start = out->len;
	size_t m_list = der_begin(out, DER_SEQUENCE);
	size_t tbs_start = out->len;
	size_t m_tbs = der_begin(out, DER_SEQUENCE);
	der_put(out, DER_INTEGER, &v2, 1);
	buf_append(out, sigalg, len);
	buf_append(out, spec->issuer_name, spec->issuer_name_len);
	if (!der_put_time(out, spec->this_update) || !der_put_time(out, spec->next_update)) {
		set_err(err, errlen, "thisUpdate or nextUpdate out of range");
		goto fail;
	}
	if (n > 0) {
		size_t m_entries = der_begin(out, DER_SEQUENCE);
		for (size_t i = 0; i < n; i++)
			if (!put_entry(out, &entries[i])) {
				set_err(err, errlen, "CRL entry %zu: a time out of range", i);
				goto fail;
			}
		der_end(out, m_entries);
	}
	put_crl_extensions(out, spec);
	if (!der_end(out, m_tbs) || out->failed)
		goto fail;

	size_t siglen = 0;
	uint8_t sig[1024];
	if (ocsp_signer_max_sig(signer) > sizeof(sig) ||
	    !ocsp_signer_sign(signer, out->data + tbs_start, out->len - tbs_start, sig,
	                      &siglen)) {
		set_err(err, errlen, "signing the CRL failed");
		goto fail;
	}
	buf_append(out, sigalg, len);
	size_t m_sig = der_begin(out, DER_BIT_STRING);
	buf_append_byte(out, 0);
	buf_append(out, sig, siglen);
	der_end(out, m_sig);
	if (der_end(out, m_list) && !out->failed)
		return true;
fail:
	/* A full buffer is the reason whatever step noticed it. */
	if (out->failed)
		set_err(err, errlen, "the CRL does not fit in %zu bytes", out->max);
	out->len = start;
	return false;
}

/* --- reader --- */

/* A non-negative INTEGER below 2^64. */
static bool read_u64(struct der_cursor *c, uint64_t *v)
{
	struct der_cursor save = *c, i;
	if (!der_read_integer(c, &i) || (i.p[0] & 0x80) || der_len(&i) > 9 ||
	    (der_len(&i) == 9 && i.p[0] != 0)) {
		*c = save;
		return false;
	}
	uint64_t x = 0;
	for (const uint8_t *p = i.p; p < i.end; p++)
		x = x << 8 | *p;
	*v = x;
	return true;
}

enum ext_kind { EXT_UNKNOWN, EXT_AKI, EXT_NUMBER, EXT_DELTA, EXT_IDP, EXT_FRESHEST,
	            EXT_REASON, EXT_INVALIDITY };

static enum ext_kind ext_kind_of(const struct der_cursor *oid)
{
	static const struct {
		const uint8_t *oid;
		enum ext_kind kind;
	} known[] = {
		{oid_aki, EXT_AKI},       {oid_number, EXT_NUMBER}, {oid_delta, EXT_DELTA},
		{oid_idp, EXT_IDP},       {oid_freshest, EXT_FRESHEST},
		{oid_reason, EXT_REASON}, {oid_invalidity, EXT_INVALIDITY},
	};
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (der_equals(oid, known[i].oid, 3))
			return known[i].kind;
	return EXT_UNKNOWN;
}

/* One Extension: its kind, criticality and value contents. A kind revd knows may
 * appear once in a list: seen (0 before the first) keeps track. */
static bool read_extension(struct der_cursor *exts, unsigned *seen, enum ext_kind *kind,
                           bool *critical, struct der_cursor *value)
{
	struct der_cursor ext, oid;
	if (!der_read(exts, DER_SEQUENCE, &ext) || !der_read_oid(&ext, &oid))
		return false;
	*critical = false;
	if (der_peek_tag(&ext) == DER_BOOLEAN) {
		/* DER leaves a DEFAULT FALSE out, so a present value must be TRUE. */
		if (!der_read_boolean(&ext, critical) || !*critical)
			return false;
	}
	if (!der_read(&ext, DER_OCTET_STRING, value) || !der_at_end(&ext))
		return false;
	*kind = ext_kind_of(&oid);
	if (*kind != EXT_UNKNOWN && (*seen & (1u << *kind)))
		return false;
	*seen |= 1u << *kind;
	return true;
}

static bool read_entry(struct der_cursor *entries, struct crl_entry *e)
{
	struct der_cursor ent, serial;
	if (!der_read(entries, DER_SEQUENCE, &ent) || !der_read_integer(&ent, &serial) ||
	    der_len(&serial) > CRL_MAX_SERIAL || !der_read_time(&ent, &e->revoked_at))
		return false;
	e->serial_len = (uint8_t)der_len(&serial);
	memcpy(e->serial, serial.p, der_len(&serial));
	e->reason = CRL_ENTRY_NO_REASON;
	e->invalidity_date = 0;
	if (der_at_end(&ent))
		return true;
	struct der_cursor exts;
	if (!der_read(&ent, DER_SEQUENCE, &exts) || !der_at_end(&ent) || der_at_end(&exts))
		return false;
	unsigned seen = 0;
	while (!der_at_end(&exts)) {
		enum ext_kind kind;
		bool critical;
		struct der_cursor v;
		if (!read_extension(&exts, &seen, &kind, &critical, &v))
			return false;
		if (kind == EXT_REASON) {
			int r;
			if (!der_read_small_uint(&v, DER_ENUMERATED, &r) || !der_at_end(&v) || r > 10 ||
			    r == 7)
				return false;
			e->reason = r;
		} else if (kind == EXT_INVALIDITY) {
			struct der_cursor t;
			if (!der_read(&v, DER_GENERALIZED_TIME, &t) || !der_at_end(&v) ||
			    !der_parse_gentime(&t, &e->invalidity_date))
				return false;
		} else if (critical) {
			return false; /* e.g. certificateIssuer: indirect CRLs are not read here */
		}
	}
	return true;
}

bool crl_next_entry(struct der_cursor *entries, struct crl_entry *e)
{
	return !der_at_end(entries) && read_entry(entries, e);
}

static bool read_crl_extensions(struct der_cursor *c, struct crl_info *info)
{
	struct der_cursor wrap, exts;
	if (!der_read(c, DER_CTX_CONS(0), &wrap) || !der_read(&wrap, DER_SEQUENCE, &exts) ||
	    !der_at_end(&wrap) || der_at_end(&exts))
		return false;
	unsigned seen = 0;
	while (!der_at_end(&exts)) {
		enum ext_kind kind;
		bool critical;
		struct der_cursor v;
		if (!read_extension(&exts, &seen, &kind, &critical, &v))
			return false;
		switch (kind) {
		case EXT_NUMBER:
			if (!read_u64(&v, &info->number) || !der_at_end(&v))
				return false;
			info->has_number = true;
			break;
		case EXT_DELTA:
			if (!critical || !read_u64(&v, &info->delta_base) || !der_at_end(&v))
				return false;
			info->is_delta = true;
			break;
		case EXT_IDP:
			if (!der_read(&v, DER_SEQUENCE, &info->idp) || !der_at_end(&v))
				return false;
			break;
		case EXT_AKI:
		case EXT_FRESHEST:
			break;
		default:
			if (critical)
				return false;
		}
	}
	return true;
}

bool crl_parse(const uint8_t *der, size_t len, struct crl_info *info)
{
	memset(info, 0, sizeof(*info));
	struct der_cursor c = der_cursor_init(der, len), list, tbs, bits, tbs_alg;
	int tag;
	if (!der_read(&c, DER_SEQUENCE, &list) || !der_at_end(&c) ||
	    !der_read_any(&list, &tag, &tbs, &info->tbs) || tag != DER_SEQUENCE ||
	    !der_read_algid(&list, &info->sigalg) ||
	    !der_read(&list, DER_BIT_STRING, &bits) || !der_at_end(&list) || der_len(&bits) < 2 ||
	    bits.p[0] != 0)
		return false;
	info->sig = der_cursor_init(bits.p + 1, der_len(&bits) - 1);

	int version;
	struct der_cursor name_start = tbs;
	if (!der_read_small_uint(&tbs, DER_INTEGER, &version) || version != 1 ||
	    !der_read_algid(&tbs, &tbs_alg) ||
	    !der_equals(&tbs_alg, info->sigalg.p, der_len(&info->sigalg)))
		return false;
	name_start = tbs;
	if (!der_read_name(&tbs))
		return false;
	info->issuer = der_cursor_init(name_start.p, (size_t)(tbs.p - name_start.p));
	if (!der_read_time(&tbs, &info->this_update))
		return false;
	tag = der_peek_tag(&tbs);
	if ((tag == DER_UTC_TIME || tag == DER_GENERALIZED_TIME) &&
	    !der_read_time(&tbs, &info->next_update))
		return false;
	if (der_peek_tag(&tbs) == DER_SEQUENCE) {
		if (!der_read(&tbs, DER_SEQUENCE, &info->entries) || der_at_end(&info->entries))
			return false;
		struct der_cursor it = info->entries;
		struct crl_entry e;
		while (!der_at_end(&it)) {
			if (!read_entry(&it, &e))
				return false;
			info->n_entries++;
		}
	}
	if (der_peek_tag(&tbs) == DER_CTX_CONS(0) && !read_crl_extensions(&tbs, info))
		return false;
	return der_at_end(&tbs);
}
