#include "ocsp/response_parse.h"

#include <string.h>

#include "ocsp/der.h"
#include "ocsp/request.h"
#include "ocsp/signer.h"

/* DER of the OIDs revd recognises in responses (contents only). */
static const uint8_t oid_basic[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01};
static const uint8_t oid_nonce[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02};
static const uint8_t oid_ext_revoke[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x09};
static const uint8_t oid_invalidity[] = {0x55, 0x1d, 0x18};

/* Deepest nesting accepted in the parts revd carries without reading their values (a
 * Name, the certificates, signature parameters); real ones stay under a dozen. */
#define MAX_DEPTH 32
/* Most extensions in one Extensions list (each is checked against the others). */
#define MAX_EXTENSIONS 16
/* KeyHash is a SHA-1 digest (RFC 6960 §4.2.1). */
#define KEY_HASH_LEN 20

/* Set while parsing: well formed so far, but something revd cannot use was seen. */
struct parse_state {
	bool unsupported;
};

const char *ocsp_parse_result_str(enum ocsp_parse_result r)
{
	switch (r) {
	case OCSP_PARSE_OK: return "ok";
	case OCSP_PARSE_MALFORMED: return "malformed response";
	case OCSP_PARSE_UNSUPPORTED: return "unsupported response type or critical extension";
	}
	return "?";
}

static bool read_time(struct der_cursor *c, int64_t *t)
{
	struct der_cursor v, save = *c;
	if (!der_read(c, DER_GENERALIZED_TIME, &v) || !der_parse_gentime(&v, t)) {
		*c = save;
		return false;
	}
	return true;
}

/* der_read, also giving the whole encoding. */
static bool read_whole(struct der_cursor *c, int tag, struct der_cursor *contents,
                       struct der_cursor *whole)
{
	int t;
	return der_peek_tag(c) == tag && der_read_any(c, &t, contents, whole);
}

/*
 * The contents of singleExtensions [1] (single != NULL) or responseExtensions [1]
 * (single == NULL): Extensions ::= SEQUENCE SIZE (1..MAX) OF Extension. Extensions
 * revd knows are read and must be well formed; an unknown critical one makes the
 * response unsupported (RFC 5280 §4.2); a repeated one is malformed.
 */
static bool parse_extensions(struct der_cursor *tagged, struct parse_state *ps,
                             struct ocsp_parsed_single *single,
                             struct ocsp_parsed_response *resp)
{
	struct der_cursor exts;
	if (!der_read(tagged, DER_SEQUENCE, &exts) || der_at_end(&exts) || !der_at_end(tagged))
		return false;
	struct der_cursor seen[MAX_EXTENSIONS];
	size_t n_seen = 0;
	while (!der_at_end(&exts)) {
		struct der_cursor ext, oid, value, inner;
		bool critical = false;
		if (!der_read(&exts, DER_SEQUENCE, &ext) || !der_read_oid(&ext, &oid))
			return false;
		/* DER omits a DEFAULT value: an explicit FALSE is not DER. */
		if (der_peek_tag(&ext) == DER_BOOLEAN &&
		    (!der_read_boolean(&ext, &critical) || !critical))
			return false;
		if (!der_read(&ext, DER_OCTET_STRING, &value) || !der_at_end(&ext))
			return false;
		if (n_seen == MAX_EXTENSIONS)
			return false;
		for (size_t i = 0; i < n_seen; i++)
			if (der_equals(&oid, seen[i].p, der_len(&seen[i])))
				return false;
		seen[n_seen++] = oid;

		if (single != NULL && der_equals(&oid, oid_invalidity, sizeof(oid_invalidity))) {
			/* InvalidityDate ::= GeneralizedTime (RFC 5280 §5.3.2) */
			if (!read_time(&value, &single->invalidity_date) || !der_at_end(&value))
				return false;
		} else if (single == NULL && der_equals(&oid, oid_nonce, sizeof(oid_nonce))) {
			/* Nonce ::= OCTET STRING (SIZE(1..128)) (RFC 9654) */
			if (!der_read(&value, DER_OCTET_STRING, &inner) || !der_at_end(&value) ||
			    der_len(&inner) < OCSP_NONCE_MIN || der_len(&inner) > OCSP_NONCE_MAX)
				return false;
			resp->has_nonce = true;
		} else if (single == NULL &&
		           der_equals(&oid, oid_ext_revoke, sizeof(oid_ext_revoke))) {
			/* ExtendedRevoke ::= NULL, never critical (RFC 6960 §4.4.8) */
			if (critical || !der_read(&value, DER_NULL, &inner) || der_len(&inner) != 0 ||
			    !der_at_end(&value))
				return false;
			resp->extended_revoke = true;
		} else if (critical) {
			ps->unsupported = true;
		}
	}
	return true;
}

static bool reason_valid(int r)
{
	return r >= OCSP_REASON_UNSPECIFIED && r <= OCSP_REASON_AA_COMPROMISE && r != 7;
}

/*
 * SingleResponse ::= SEQUENCE { certID, certStatus, thisUpdate,
 *     nextUpdate [0] EXPLICIT OPTIONAL, singleExtensions [1] EXPLICIT OPTIONAL }
 * CertStatus ::= CHOICE { good [0] IMPLICIT NULL, revoked [1] IMPLICIT RevokedInfo,
 *     unknown [2] IMPLICIT NULL }
 */
static bool parse_single(struct der_cursor *list, struct parse_state *ps,
                         struct ocsp_parsed_single *s)
{
	struct der_cursor one, st, t;
	if (!der_read(list, DER_SEQUENCE, &one) || !ocsp_certid_decode(&one, &s->certid))
		return false;
	s->reason = OCSP_REASON_NONE;
	int tag = der_peek_tag(&one);
	if (tag == DER_CTX_PRIM(0) || tag == DER_CTX_PRIM(2)) {
		if (!der_read(&one, tag, &st) || der_len(&st) != 0)
			return false;
		s->status = tag == DER_CTX_PRIM(0) ? OCSP_STATUS_GOOD : OCSP_STATUS_UNKNOWN;
	} else if (tag == DER_CTX_CONS(1)) {
		/* RevokedInfo ::= SEQUENCE { revocationTime, revocationReason [0] EXPLICIT
		 * CRLReason OPTIONAL } */
		if (!der_read(&one, tag, &st) || !read_time(&st, &s->revoked_at))
			return false;
		if (der_peek_tag(&st) == DER_CTX_CONS(0) &&
		    (!der_read(&st, DER_CTX_CONS(0), &t) ||
		     !der_read_small_uint(&t, DER_ENUMERATED, &s->reason) || !der_at_end(&t) ||
		     !reason_valid(s->reason)))
			return false;
		if (!der_at_end(&st))
			return false;
		s->status = OCSP_STATUS_REVOKED;
	} else {
		return false;
	}
	if (!read_time(&one, &s->this_update))
		return false;
	if (der_peek_tag(&one) == DER_CTX_CONS(0) &&
	    (!der_read(&one, DER_CTX_CONS(0), &t) || !read_time(&t, &s->next_update) ||
	     !der_at_end(&t)))
		return false;
	if (der_peek_tag(&one) == DER_CTX_CONS(1) &&
	    (!der_read(&one, DER_CTX_CONS(1), &t) || !parse_extensions(&t, ps, s, NULL)))
		return false;
	return der_at_end(&one);
}

/* ResponderID ::= CHOICE { byName [1] EXPLICIT Name, byKey [2] EXPLICIT KeyHash } */
static bool parse_responder_id(struct der_cursor *c, struct ocsp_parsed_response *out)
{
	struct der_cursor contents, whole, key;
	int tag = der_peek_tag(c);
	if ((tag != DER_CTX_CONS(1) && tag != DER_CTX_CONS(2)) ||
	    !der_read_any(c, &tag, &contents, &whole))
		return false;
	if (tag == DER_CTX_CONS(2)) {
		if (!der_read(&contents, DER_OCTET_STRING, &key) || der_len(&key) != KEY_HASH_LEN)
			return false;
	} else if (!der_read_name(&contents)) {
		return false;
	}
	if (!der_at_end(&contents))
		return false;
	out->responder_id = whole.p;
	out->responder_id_len = der_len(&whole);
	return true;
}

/*
 * ResponseData ::= SEQUENCE { version [0] EXPLICIT DEFAULT v1, responderID,
 *     producedAt, responses SEQUENCE OF SingleResponse,
 *     responseExtensions [1] EXPLICIT Extensions OPTIONAL }
 */
static bool parse_tbs(struct der_cursor *c, struct parse_state *ps,
                      struct ocsp_parsed_response *out)
{
	struct der_cursor tbs, whole, list, t;
	if (!read_whole(c, DER_SEQUENCE, &tbs, &whole))
		return false;
	out->tbs = whole.p;
	out->tbs_len = der_len(&whole);
	/* Version v1 written out is not DER, but is tolerated as the request decoder
	 * tolerates it (OpenSSL keeps and re-encodes it as sent); any other is refused. */
	if (der_peek_tag(&tbs) == DER_CTX_CONS(0)) {
		int v;
		if (!der_read(&tbs, DER_CTX_CONS(0), &t) ||
		    !der_read_small_uint(&t, DER_INTEGER, &v) || !der_at_end(&t) || v != 0)
			return false;
	}
	if (!parse_responder_id(&tbs, out) || !read_time(&tbs, &out->produced_at) ||
	    !der_read(&tbs, DER_SEQUENCE, &list) || der_at_end(&list))
		return false;
	while (!der_at_end(&list)) {
		/* The first is kept; the others only checked. */
		struct ocsp_parsed_single other = {0};
		if (!parse_single(&list, ps, out->n_singles == 0 ? &out->single : &other))
			return false;
		out->n_singles++;
	}
	if (der_peek_tag(&tbs) == DER_CTX_CONS(1) &&
	    (!der_read(&tbs, DER_CTX_CONS(1), &t) || !parse_extensions(&t, ps, NULL, out)))
		return false;
	return der_at_end(&tbs);
}

/* A signature BIT STRING: no unused bits (whole octets) and at least one octet. */
static bool read_signature(struct der_cursor *c, struct der_cursor *sig)
{
	struct der_cursor bits;
	if (!der_read(c, DER_BIT_STRING, &bits) || der_len(&bits) < 2 || bits.p[0] != 0)
		return false;
	*sig = der_cursor_init(bits.p + 1, der_len(&bits) - 1);
	return true;
}

/*
 * Certificate (RFC 5280 §4.1): its fields and their tags; what a field holds (names'
 * values, times, keys, extensions) is not read, only required to be DER TLVs.
 */
static bool parse_certificate(struct der_cursor *c)
{
	struct der_cursor cert, tbs, field, inner, validity, spki, alg, oid;
	int tag;
	if (!der_read(c, DER_SEQUENCE, &cert) || !der_read(&cert, DER_SEQUENCE, &tbs) ||
	    !der_read_algid(&cert, &field) || !read_signature(&cert, &field) || !der_at_end(&cert))
		return false;
	/* version [0] EXPLICIT INTEGER */
	if (der_peek_tag(&tbs) == DER_CTX_CONS(0) &&
	    (!der_read(&tbs, DER_CTX_CONS(0), &field) || !der_read_integer(&field, &inner) ||
	     !der_at_end(&field)))
		return false;
	if (!der_read_integer(&tbs, &field) || !der_read_algid(&tbs, &field) || !der_read_name(&tbs) ||
	    !der_read(&tbs, DER_SEQUENCE, &validity) || !der_read_name(&tbs) ||
	    !der_read(&tbs, DER_SEQUENCE, &spki))
		return false;
	for (int i = 0; i < 2; i++) {
		tag = der_peek_tag(&validity); /* UTCTime or GeneralizedTime */
		if ((tag != 0x17 && tag != DER_GENERALIZED_TIME) || !der_read(&validity, tag, &field))
			return false;
	}
	if (!der_at_end(&validity))
		return false;
	/* SubjectPublicKeyInfo: an algorithm, whose parameters may be anything (a curve's
	 * OID, DSA's SEQUENCE), and the key. */
	if (!der_read(&spki, DER_SEQUENCE, &alg) || !der_read_oid(&alg, &oid) ||
	    (!der_at_end(&alg) && !der_read_any(&alg, &tag, NULL, NULL)) || !der_at_end(&alg) ||
	    !der_read(&spki, DER_BIT_STRING, &field) || der_len(&field) < 1 || !der_at_end(&spki))
		return false;
	/* issuerUniqueID [1], subjectUniqueID [2], extensions [3] EXPLICIT SEQUENCE */
	if (der_peek_tag(&tbs) == DER_CTX_PRIM(1) && !der_read(&tbs, DER_CTX_PRIM(1), &field))
		return false;
	if (der_peek_tag(&tbs) == DER_CTX_PRIM(2) && !der_read(&tbs, DER_CTX_PRIM(2), &field))
		return false;
	if (der_peek_tag(&tbs) == DER_CTX_CONS(3) &&
	    (!der_read(&tbs, DER_CTX_CONS(3), &field) || !der_read(&field, DER_SEQUENCE, &inner) ||
	     !der_at_end(&field)))
		return false;
	return der_at_end(&tbs);
}

/* certs [0] EXPLICIT SEQUENCE OF Certificate */
static bool parse_certs(struct der_cursor *c, struct ocsp_parsed_response *out)
{
	struct der_cursor tagged, whole, list;
	if (!read_whole(c, DER_CTX_CONS(0), &tagged, &whole) ||
	    !der_read(&tagged, DER_SEQUENCE, &list) || !der_at_end(&tagged) ||
	    !der_tree_valid(list, MAX_DEPTH))
		return false;
	while (!der_at_end(&list))
		if (!parse_certificate(&list))
			return false;
	out->certs = whole.p;
	out->certs_len = der_len(&whole);
	return true;
}

/* BasicOCSPResponse ::= SEQUENCE { tbsResponseData, signatureAlgorithm,
 *     signature BIT STRING, certs [0] EXPLICIT SEQUENCE OF Certificate OPTIONAL } */
static bool parse_basic(struct der_cursor *c, struct parse_state *ps,
                        struct ocsp_parsed_response *out)
{
	struct der_cursor basic, alg, sig;
	if (!der_read(c, DER_SEQUENCE, &basic) || !der_at_end(c))
		return false;
	if (!parse_tbs(&basic, ps, out) || !der_read_algid(&basic, &alg) ||
	    !read_signature(&basic, &sig))
		return false;
	out->sigalg = alg.p;
	out->sigalg_len = der_len(&alg);
	out->sig = sig.p;
	out->sig_len = der_len(&sig);
	if (der_peek_tag(&basic) == DER_CTX_CONS(0) && !parse_certs(&basic, out))
		return false;
	return der_at_end(&basic);
}

/*
 * OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED,
 *     responseBytes [0] EXPLICIT SEQUENCE { responseType OID, response OCTET STRING }
 *     OPTIONAL }: responseBytes present exactly when the status is successful.
 */
static bool parse_response(const uint8_t *der, size_t len, struct parse_state *ps,
                           struct ocsp_parsed_response *out)
{
	struct der_cursor top = der_cursor_init(der, len), resp, tagged, bytes, type, octets;
	int status;
	if (!der_read(&top, DER_SEQUENCE, &resp) || !der_at_end(&top) ||
	    !der_read_small_uint(&resp, DER_ENUMERATED, &status))
		return false;
	switch (status) {
	case OCSP_RESP_SUCCESSFUL:
	case OCSP_RESP_MALFORMED:
	case OCSP_RESP_INTERNAL_ERROR:
	case OCSP_RESP_TRY_LATER:
	case OCSP_RESP_SIG_REQUIRED:
	case OCSP_RESP_UNAUTHORIZED: break;
	default: return false;
	}
	out->status = (enum ocsp_resp_status)status;
	if (status != OCSP_RESP_SUCCESSFUL)
		return der_at_end(&resp);
	if (!der_read(&resp, DER_CTX_CONS(0), &tagged) || !der_at_end(&resp) ||
	    !der_read(&tagged, DER_SEQUENCE, &bytes) || !der_at_end(&tagged) ||
	    !der_read_oid(&bytes, &type) || !der_read(&bytes, DER_OCTET_STRING, &octets) ||
	    !der_at_end(&bytes))
		return false;
	if (!der_equals(&type, oid_basic, sizeof(oid_basic))) {
		ps->unsupported = true;
		return true;
	}
	return parse_basic(&octets, ps, out);
}

enum ocsp_parse_result ocsp_response_parse(const uint8_t *der, size_t len,
                                           struct ocsp_parsed_response *out)
{
	struct parse_state ps = {.unsupported = false};
	enum ocsp_parse_result r = OCSP_PARSE_OK;
	memset(out, 0, sizeof(*out));
	if (!parse_response(der, len, &ps, out))
		r = OCSP_PARSE_MALFORMED;
	else if (ps.unsupported)
		r = OCSP_PARSE_UNSUPPORTED;
	if (r != OCSP_PARSE_OK)
		memset(out, 0, sizeof(*out));
	return r;
}

static bool same_bytes(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

bool ocsp_parsed_matches(const struct ocsp_parsed_response *p, const struct ocsp_certid *id)
{
	const struct ocsp_certid *a = &p->single.certid;
	return p->status == OCSP_RESP_SUCCESSFUL && p->n_singles > 0 &&
	       a->hash != OCSP_HASH_UNKNOWN && a->hash == id->hash &&
	       a->hash_params_null == id->hash_params_null &&
	       same_bytes(a->name_hash, a->name_hash_len, id->name_hash, id->name_hash_len) &&
	       same_bytes(a->key_hash, a->key_hash_len, id->key_hash, id->key_hash_len) &&
	       same_bytes(a->serial, a->serial_len, id->serial, id->serial_len);
}

bool ocsp_parsed_signed_by(const struct ocsp_parsed_response *p, const struct ocsp_signer *s)
{
	size_t rid_len, alg_len, certs_len;
	const uint8_t *rid = ocsp_signer_responder_id(s, &rid_len);
	const uint8_t *alg = ocsp_signer_sigalg(s, &alg_len);
	const uint8_t *certs = ocsp_signer_certs(s, &certs_len);
	return p->status == OCSP_RESP_SUCCESSFUL && p->tbs != NULL &&
	       same_bytes(p->responder_id, p->responder_id_len, rid, rid_len) &&
	       same_bytes(p->sigalg, p->sigalg_len, alg, alg_len) &&
	       (certs == NULL ? p->certs == NULL
	                      : p->certs != NULL &&
	                            same_bytes(p->certs, p->certs_len, certs, certs_len)) &&
	       ocsp_signer_verify(s, p->tbs, p->tbs_len, p->sig, p->sig_len);
}
