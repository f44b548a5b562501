/*
 * The revocation API's request parsers: the first byte picks one, the rest is its
 * input. 0: a revoke body, 1: an unhold body (JSON, through jansson), 2: a status query
 * string, 3: a client certificate (DER) matched against an allow list. What parses
 * must be what the API may act on: a printable issuer name, a serial of 1 to 32
 * octets, a reason a revocation may have; messages stay within their buffers.
 */
#include <string.h>

#include "fuzz.h"
#include "http/api.h"

static void check_message(const char *err, size_t errlen, size_t total)
{
	FUZZ_CHECK(memchr(err, 0, errlen) != NULL, "message not terminated");
	for (size_t i = errlen; i < total; i++)
		FUZZ_CHECK(err[i] == 0x7f, "message written beyond its buffer");
}

static void check_call(const struct api_call *c)
{
	size_t n = strnlen(c->issuer, sizeof(c->issuer));
	FUZZ_CHECK(n > 0 && n < sizeof(c->issuer), "issuer name empty or unterminated");
	for (size_t i = 0; i < n; i++)
		FUZZ_CHECK(c->issuer[i] >= 0x20 && c->issuer[i] < 0x7f, "issuer name not printable");
	FUZZ_CHECK(c->ch.serial.len >= 1 && c->ch.serial.len <= STORE_MAX_SERIAL, "serial length");
	if (c->op == API_REVOKE)
		FUZZ_CHECK(c->ch.reason >= 0 && c->ch.reason <= 10 && c->ch.reason != 7 &&
		               c->ch.reason != 8,
		           "reason %d", c->ch.reason);
	FUZZ_CHECK(c->ch.revoked_at >= 0 && c->ch.invalidity_date >= 0, "negative time");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned mode = data[0] % 4;
	data++;
	size--;
	char err[160];
	memset(err, 0x7f, sizeof(err));
	struct api_call call;
	if (mode <= 1) {
		enum api_op op = mode == 0 ? API_REVOKE : API_UNHOLD;
		if (api_parse_body(op, data, size, &call, err, 128) == 0) {
			FUZZ_CHECK(call.op == op, "op");
			check_call(&call);
		} else {
			check_message(err, 128, sizeof(err));
		}
	} else if (mode == 2) {
		if (api_parse_query((const char *)data, size, &call, err, 128) == 0) {
			FUZZ_CHECK(call.op == API_STATUS, "op");
			check_call(&call);
		} else {
			check_message(err, 128, sizeof(err));
		}
	} else {
		static char *const allow[] = {"ca-service.example", "spiffe://example.org/ca",
		                              "Payments CA client"};
		char who[64];
		memset(who, 0x7f, sizeof(who));
		const unsigned char *p = data;
		X509 *x = d2i_X509(NULL, &p, (long)size);
		(void)api_identity_allowed(x, allow, 3, who, 48);
		X509_free(x);
		check_message(who, 48, sizeof(who));
	}
	return 0;
}
