/*
 * What revd reads back from Redis: l2_value_decode, then the DER answer behind the
 * header through ocsp_response_parse. Never crashes; a decoded header re-encodes to the
 * same bytes; the answer's slice lies inside the value.
 */
#include <string.h>

#include "cache/l2.h"
#include "fuzz.h"
#include "ocsp/response_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct l2_value lv;
	if (!l2_value_decode(data, size, &lv))
		return 0;
	FUZZ_CHECK(size >= L2_HDR_LEN, "decoded %zu bytes", size);
	char hdr[L2_HDR_LEN + 1];
	l2_value_header(hdr, lv.version, lv.produced_at, lv.refresh_at);
	/* Hex digits are accepted in either case; revd writes lowercase. */
	for (size_t i = 0; i < L2_HDR_LEN; i++) {
		char c = (char)data[i];
		if (c >= 'A' && c <= 'F')
			c = (char)(c - 'A' + 'a');
		FUZZ_CHECK(c == hdr[i], "header byte %zu", i);
	}
	if (lv.der == NULL) {
		FUZZ_CHECK(size == L2_HDR_LEN && lv.der_len == 0, "tombstone of %zu bytes", size);
		return 0;
	}
	FUZZ_CHECK(lv.der == data + L2_HDR_LEN && lv.der_len == size - L2_HDR_LEN, "slice");
	struct ocsp_parsed_response p;
	if (ocsp_response_parse(lv.der, lv.der_len, &p) == OCSP_PARSE_OK &&
	    p.status == OCSP_RESP_SUCCESSFUL) {
		FUZZ_CHECK(p.tbs >= lv.der && p.tbs + p.tbs_len <= lv.der + lv.der_len, "tbs");
		FUZZ_CHECK(p.n_singles >= 1, "no SingleResponse");
	}
	return 0;
}
