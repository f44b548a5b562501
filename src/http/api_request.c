/* The revocation API's requests: JSON bodies, status queries and client identities. */
#include <ctype.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/hex.h"
#include "http/api.h"

/* The issuer and serial every call names. */
static int set_issuer(struct api_call *out, const char *v, size_t len, char *err, size_t errlen)
{
	bool ok = len > 0 && len < sizeof(out->issuer);
	for (size_t i = 0; ok && i < len; i++)
		ok = v[i] >= 0x20 && v[i] < 0x7f; /* section names are printable ASCII */
	if (!ok) {
		snprintf(err, errlen, "issuer: expected the name of an [issuer] section");
		return -1;
	}
	memcpy(out->issuer, v, len);
	out->issuer[len] = 0;
	return 0;
}

static int set_serial(struct api_call *out, const char *v, size_t len, char *err, size_t errlen)
{
	char text[2 * STORE_MAX_SERIAL + 8];
	if (len == 0 || len >= sizeof(text) || memchr(v, 0, len) != NULL)
		goto bad;
	memcpy(text, v, len);
	text[len] = 0;
	if (revoke_serial_parse(text, &out->ch.serial))
		return 0;
bad:
	snprintf(err, errlen, "serial: expected a serial number in hex (1 to %d octets)",
	         STORE_MAX_SERIAL);
	return -1;
}

static int set_time(const char *key, const char *v, int64_t *t, char *err, size_t errlen)
{
	if (!revoke_time_parse(v, t) || *t <= 0) {
		snprintf(err, errlen, "%s: expected a time such as 2024-01-02T03:04:05Z", key);
		return -1;
	}
	return 0;
}

int api_parse_body(enum api_op op, const uint8_t *body, size_t len, struct api_call *out,
                   char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	out->op = op;
	out->ch.op = op == API_UNHOLD ? REVOKE_OP_UNHOLD : REVOKE_OP_REVOKE;
	out->ch.reason = -1;
	if (len > API_MAX_BODY) {
		snprintf(err, errlen, "the body is larger than %d bytes", API_MAX_BODY);
		return -1;
	}
	json_error_t je;
	json_t *root = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &je);
	if (root == NULL) {
		snprintf(err, errlen, "not JSON: %s (at byte %d)", je.text, je.position);
		return -1;
	}
	int rc = -1;
	if (!json_is_object(root)) {
		snprintf(err, errlen, "expected a JSON object");
		goto out;
	}
	bool has_issuer = false, has_serial = false;
	const char *key;
	json_t *v;
	json_object_foreach(root, key, v) {
		bool known = strcmp(key, "issuer") == 0 || strcmp(key, "serial") == 0 ||
		             (op == API_REVOKE && (strcmp(key, "reason") == 0 ||
		                                   strcmp(key, "invalidity_date") == 0 ||
		                                   strcmp(key, "revoked_at") == 0));
		if (!known) {
			snprintf(err, errlen, "unknown field '%.64s'%s", key,
			         op == API_UNHOLD ? " (unhold takes issuer and serial)" : "");
			goto out;
		}
		if (!json_is_string(v)) {
			snprintf(err, errlen, "%s: expected a string", key);
			goto out;
		}
		const char *s = json_string_value(v);
		size_t n = json_string_length(v);
		if (strcmp(key, "issuer") == 0) {
			if (set_issuer(out, s, n, err, errlen) != 0)
				goto out;
			has_issuer = true;
		} else if (strcmp(key, "serial") == 0) {
			if (set_serial(out, s, n, err, errlen) != 0)
				goto out;
			has_serial = true;
		} else if (strcmp(key, "reason") == 0) {
			out->ch.reason = strlen(s) == n ? revoke_reason_parse(s) : -1;
			if (out->ch.reason < 0) {
				snprintf(err, errlen, "reason: unknown reason (expected unspecified, "
				                      "keyCompromise, cACompromise, affiliationChanged, "
				                      "superseded, cessationOfOperation, certificateHold, "
				                      "privilegeWithdrawn or aACompromise)");
				goto out;
			}
		} else if (set_time(key, s,
		                    strcmp(key, "revoked_at") == 0 ? &out->ch.revoked_at
		                                                   : &out->ch.invalidity_date,
		                    err, errlen) != 0) {
			goto out;
		}
	}
	const char *missing = !has_issuer                               ? "issuer"
	                      : !has_serial                             ? "serial"
	                      : op == API_REVOKE && out->ch.reason < 0 ? "reason"
	                                                               : NULL;
	if (missing != NULL) {
		snprintf(err, errlen, "'%s' is required", missing);
		goto out;
	}
	rc = 0;
out:
	json_decref(root);
	return rc;
}

/* Percent-decodes [s, s + len) ('+' is a space) into out; false if malformed or long. */
static bool unescape(const char *s, size_t len, char *out, size_t cap, size_t *n)
{
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		int c = (unsigned char)s[i];
		if (c == '%') {
			if (i + 2 >= len)
				return false;
			int hi = hex_digit(s[i + 1]), lo = hex_digit(s[i + 2]);
			if (hi < 0 || lo < 0)
				return false;
			c = hi * 16 + lo;
			i += 2;
		} else if (c == '+') {
			c = ' ';
		}
		if (o + 1 >= cap || c == 0)
			return false;
		out[o++] = (char)c;
	}
	out[o] = 0;
	*n = o;
	return true;
}

int api_parse_query(const char *query, size_t len, struct api_call *out, char *err,
                    size_t errlen)
{
	memset(out, 0, sizeof(*out));
	out->op = API_STATUS;
	bool has_issuer = false, has_serial = false;
	const char *p = query, *end = query + len;
	while (p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *stop = amp ? amp : end;
		const char *eq = memchr(p, '=', (size_t)(stop - p));
		if (eq == NULL) {
			snprintf(err, errlen, "the query is not NAME=VALUE pairs");
			return -1;
		}
		char value[256];
		size_t n;
		if (!unescape(eq + 1, (size_t)(stop - eq - 1), value, sizeof(value), &n)) {
			snprintf(err, errlen, "the query has a malformed or overlong value");
			return -1;
		}
		size_t klen = (size_t)(eq - p);
		if (klen == 6 && memcmp(p, "issuer", 6) == 0 && !has_issuer) {
			if (set_issuer(out, value, n, err, errlen) != 0)
				return -1;
			has_issuer = true;
		} else if (klen == 6 && memcmp(p, "serial", 6) == 0 && !has_serial) {
			if (set_serial(out, value, n, err, errlen) != 0)
				return -1;
			has_serial = true;
		} else {
			snprintf(err, errlen, "unknown or repeated query parameter '%.*s' (status takes "
			                      "issuer and serial)", (int)(klen > 64 ? 64 : klen), p);
			return -1;
		}
		p = stop + (amp != NULL);
	}
	if (!has_issuer || !has_serial) {
		snprintf(err, errlen, "'%s' is required", has_issuer ? "serial" : "issuer");
		return -1;
	}
	return 0;
}

/* Bytes as a C string, if they are all printable ASCII (names that go into logs and
 * answers; DNS names and URIs are ASCII anyway). */
static bool text_of(const unsigned char *d, int n, char *out, size_t cap)
{
	if (n <= 0 || (size_t)n >= cap)
		return false;
	for (int i = 0; i < n; i++)
		if (d[i] < 0x20 || d[i] >= 0x7f)
			return false;
	memcpy(out, d, (size_t)n);
	out[n] = 0;
	return true;
}

/* An allow entry with "://" names a URI (matched exactly); any other a DNS name
 * (matched in any case) or, for a certificate without DNS or URI names, a commonName
 * (matched exactly). */
static bool listed(const char *name, int kind, char *const *allow, size_t n_allow)
{
	for (size_t i = 0; i < n_allow; i++) {
		bool uri_entry = strstr(allow[i], "://") != NULL;
		if (kind == GEN_URI ? uri_entry && strcmp(allow[i], name) == 0
		    : kind == GEN_DNS ? !uri_entry && strcasecmp(allow[i], name) == 0
		                      : !uri_entry && strcmp(allow[i], name) == 0)
			return true;
	}
	return false;
}

bool api_identity_allowed(X509 *x, char *const *allow, size_t n_allow, char *who,
                          size_t wholen)
{
	snprintf(who, wholen, "(no name)");
	if (x == NULL)
		return false;
	bool ok = false, named = false;
	char name[512];
	GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	for (int i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans) && !ok; i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
		if (g->type != GEN_DNS && g->type != GEN_URI)
			continue;
		/* A DNS or URI name, even one that cannot match (not printable, too long),
		 * means the certificate is named by them: its commonName no longer counts. */
		named = true;
		const ASN1_STRING *v = g->type == GEN_DNS ? g->d.dNSName : g->d.uniformResourceIdentifier;
		if (!text_of(ASN1_STRING_get0_data(v), ASN1_STRING_length(v), name, sizeof(name)))
			continue;
		if (strcmp(who, "(no name)") == 0)
			snprintf(who, wholen, "%s", name);
		if (listed(name, g->type, allow, n_allow)) {
			snprintf(who, wholen, "%s", name);
			ok = true;
		}
	}
	GENERAL_NAMES_free(sans);
	ERR_clear_error();
	if (!named) {
		/* No DNS or URI name: the subject's common name stands for the client. */
		const X509_NAME *subj = X509_get_subject_name(x);
		int at = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
		unsigned char *utf8 = NULL;
		int n = at < 0 ? -1
		               : ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(
		                                                X509_NAME_get_entry(subj, at)));
		if (text_of(utf8, n, name, sizeof(name))) {
			snprintf(who, wholen, "CN=%s", name);
			ok = listed(name, -1, allow, n_allow);
		}
		OPENSSL_free(utf8);
		ERR_clear_error();
	}
	return ok;
}
