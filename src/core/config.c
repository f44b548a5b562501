#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"

void config_init(struct config *c)
{
	memset(c, 0, sizeof(*c));
	c->workers = 0;
	c->max_connections = 20000;
	c->max_header_bytes = 8192;
	c->max_headers = 64;
	c->max_url_bytes = 4096;
	c->max_body_bytes = 16384;
	c->header_timeout_ms = 10000;
	c->body_timeout_ms = 10000;
	c->idle_timeout_ms = 60000;
	c->write_timeout_ms = 30000;
	c->log_level = LOG_INFO;
	c->validity = 24 * 3600;
	c->max_age = 0;
	c->nonce = CONFIG_NONCE_IGNORE;
	c->max_certids = 20;
	c->not_issued = CONFIG_NOT_ISSUED_UNKNOWN;
	c->responder_id = CONFIG_RID_KEY;
	c->sign_budget = 512;
	c->cache_entries = 1000000;
	c->index_poll_ms = 250;
	c->index_max_bytes = (size_t)1 << 30;
	c->pg_lookup_timeout_ms = 1000;
	c->pg_sweep_interval_ms = 10000;
	c->refresh = CONFIG_REFRESH_HALF;
	c->redis_timeout_ms = 250;
	c->redis_lock_ms = 500;
	c->redis_verify = CONFIG_VERIFY_STRUCTURE;
	c->redis_sample_interval_ms = 10000;
	c->redis_sample_size = 64;
	c->presign = true;
	c->presign_rate = 0;
	c->presign_interval_ms = 60000;
	c->presign_batch = 500;
	c->presign_hashes = 1u << 0; /* SHA-1, what most clients send */
	/* Baseline Requirements §4.9.7: reissued at least every 7 days and within 24 hours
	 * of a revocation, nextUpdate at most 10 days out. */
	c->crl_validity = 7 * 86400;
	c->crl_interval = 86400;
	c->crl_deltas = true;
	c->crl_build = true;
	c->crl_delta_validity = 3600;
	c->crl_delta_interval = 300;
	c->crl_delta_debounce_ms = 2000;
	c->crl_max_age = 0;
	c->crl_max_bytes = (size_t)512 << 20;
	c->api_live_timeout_ms = 5000;
}

static void issuer_free(struct config_issuer *is)
{
	free(is->name);
	free(is->ca);
	free(is->signer_cert);
	free(is->signer_key);
	free(is->signer_other);
	free(is->index);
	free(is->db_issuer);
	free(is->crl_key);
}

void config_free(struct config *c)
{
	for (size_t i = 0; i < c->n_listen; i++)
		free(c->listen[i]);
	for (size_t i = 0; i < c->n_issuers; i++)
		issuer_free(&c->issuers[i]);
	free(c->path);
	free(c->user);
	free(c->pg_dsn);
	free(c->redis_address);
	free(c->redis_prefix);
	free(c->crl_base_url);
	free(c->crl_dir);
	for (size_t i = 0; i < c->n_api_listen; i++)
		free(c->api_listen[i]);
	for (size_t i = 0; i < c->n_api_allow; i++)
		free(c->api_allow[i]);
	free(c->api_cert);
	free(c->api_key);
	free(c->api_client_ca);
	free(c->api_client_crl);
	free(c->api_dsn);
	memset(c, 0, sizeof(*c));
}

bool config_parse_duration_ms(const char *s, uint64_t *ms)
{
	char *end;
	errno = 0;
	if (!isdigit((unsigned char)s[0]))
		return false;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0)
		return false;
	uint64_t mult;
	if (*end == 0 || strcmp(end, "s") == 0)
		mult = 1000;
	else if (strcmp(end, "ms") == 0)
		mult = 1;
	else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
		mult = 60 * 1000;
	else if (strcmp(end, "h") == 0)
		mult = 3600 * 1000;
	else if (strcmp(end, "d") == 0)
		mult = 86400 * 1000;
	else
		return false;
	/* Headroom of 1000: any duration accepted converts to microseconds safely. */
	if (v > UINT64_MAX / mult / 1000)
		return false;
	*ms = v * mult;
	return true;
}

bool config_parse_size(const char *s, uint64_t *bytes)
{
	char *end;
	errno = 0;
	if (!isdigit((unsigned char)s[0]))
		return false;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0)
		return false;
	uint64_t mult;
	if (*end == 0)
		mult = 1;
	else if (strcasecmp(end, "k") == 0)
		mult = 1024;
	else if (strcasecmp(end, "m") == 0)
		mult = 1024 * 1024;
	else if (strcasecmp(end, "g") == 0)
		mult = 1024 * 1024 * 1024;
	else
		return false;
	if (v > UINT64_MAX / mult)
		return false;
	*bytes = v * mult;
	return true;
}

static int set_str(char **dst, const char *value, char *err, size_t errlen)
{
	char *v = strdup(value);
	if (v == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	free(*dst);
	*dst = v;
	return 0;
}

static int set_size(size_t *dst, const char *key, const char *value, uint64_t lo, uint64_t hi,
                    char *err, size_t errlen)
{
	uint64_t v;
	if (!config_parse_size(value, &v) || v < lo || v > hi) {
		snprintf(err, errlen, "%s: expected a size from %llu to %llu, got '%s'", key,
		         (unsigned long long)lo, (unsigned long long)hi, value);
		return -1;
	}
	*dst = (size_t)v;
	return 0;
}

static int set_ms(unsigned *dst, const char *key, const char *value, uint64_t lo, uint64_t hi,
                  char *err, size_t errlen)
{
	uint64_t v;
	if (!config_parse_duration_ms(value, &v) || v < lo || v > hi) {
		snprintf(err, errlen, "%s: expected a duration from %llums to %llums, got '%s'", key,
		         (unsigned long long)lo, (unsigned long long)hi, value);
		return -1;
	}
	*dst = (unsigned)v;
	return 0;
}

static int set_enum(int *dst, const char *key, const char *value, const char *const *names,
                    int n, char *err, size_t errlen)
{
	for (int i = 0; i < n; i++) {
		if (strcmp(value, names[i]) == 0) {
			*dst = i;
			return 0;
		}
	}
	char choices[128] = "";
	for (int i = 0; i < n; i++) {
		strncat(choices, names[i], sizeof(choices) - strlen(choices) - 1);
		if (i + 1 < n)
			strncat(choices, ", ", sizeof(choices) - strlen(choices) - 1);
	}
	snprintf(err, errlen, "%s: expected one of %s, got '%s'", key, choices, value);
	return -1;
}

static const char *const not_issued_names[] = {"unknown", "unauthorized", "revoked"};
static const char *const rid_names[] = {"key", "name"};
static const char *const nonce_names[] = {"ignore", "sign"};
static const char *const store_names[] = {"index", "postgres"};
static const char *const refresh_names[] = {"half", "cabf"};
static const char *const verify_names[] = {"structure", "signature"};
/* In enum ocsp_hash order. */
static const char *const hash_names[] = {"sha1", "sha256", "sha384", "sha512"};

static int set_bool(bool *dst, const char *key, const char *value, char *err, size_t errlen)
{
	if (strcmp(value, "yes") == 0 || strcmp(value, "true") == 0 || strcmp(value, "1") == 0) {
		*dst = true;
		return 0;
	}
	if (strcmp(value, "no") == 0 || strcmp(value, "false") == 0 || strcmp(value, "0") == 0) {
		*dst = false;
		return 0;
	}
	snprintf(err, errlen, "%s: expected yes or no, got '%s'", key, value);
	return -1;
}

/* A list: "127.0.0.1:8080, [::1]:8080" (commas or blanks). Setting it replaces it. */
static int set_list(char **items, size_t *n, size_t max, const char *key, const char *value,
                    char *err, size_t errlen)
{
	for (size_t i = 0; i < *n; i++)
		free(items[i]);
	*n = 0;
	const char *p = value;
	while (*p) {
		while (*p == ' ' || *p == ',' || *p == '\t')
			p++;
		size_t len = strcspn(p, " ,\t");
		if (len == 0)
			break;
		if (*n == max) {
			snprintf(err, errlen, "%s: at most %zu entries", key, max);
			return -1;
		}
		items[*n] = strndup(p, len);
		if (items[*n] == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		(*n)++;
		p += len;
	}
	if (*n == 0) {
		snprintf(err, errlen, "%s: empty list", key);
		return -1;
	}
	return 0;
}

static int set_server(struct config *c, const char *key, const char *value, char *err,
                      size_t errlen)
{
	if (strcmp(key, "listen") == 0)
		return set_list(c->listen, &c->n_listen, CONFIG_MAX_LISTEN, key, value, err, errlen);
	if (strcmp(key, "workers") == 0) {
		if (strcmp(value, "auto") == 0) {
			c->workers = 0;
			return 0;
		}
		size_t w;
		if (set_size(&w, key, value, 1, 256, err, errlen) != 0)
			return -1;
		c->workers = (unsigned)w;
		return 0;
	}
	if (strcmp(key, "max_connections") == 0)
		return set_size(&c->max_connections, key, value, 1, 10000000, err, errlen);
	if (strcmp(key, "max_header_bytes") == 0)
		return set_size(&c->max_header_bytes, key, value, 256, 1024 * 1024, err, errlen);
	if (strcmp(key, "max_headers") == 0)
		return set_size(&c->max_headers, key, value, 1, 1000, err, errlen);
	if (strcmp(key, "max_url_bytes") == 0)
		return set_size(&c->max_url_bytes, key, value, 64, 1024 * 1024, err, errlen);
	if (strcmp(key, "max_body_bytes") == 0)
		return set_size(&c->max_body_bytes, key, value, 64, 16 * 1024 * 1024, err, errlen);
	if (strcmp(key, "header_timeout") == 0)
		return set_ms(&c->header_timeout_ms, key, value, 10, 3600000, err, errlen);
	if (strcmp(key, "body_timeout") == 0)
		return set_ms(&c->body_timeout_ms, key, value, 10, 3600000, err, errlen);
	if (strcmp(key, "idle_timeout") == 0)
		return set_ms(&c->idle_timeout_ms, key, value, 10, 3600000, err, errlen);
	if (strcmp(key, "write_timeout") == 0)
		return set_ms(&c->write_timeout_ms, key, value, 10, 3600000, err, errlen);
	if (strcmp(key, "user") == 0)
		return set_str(&c->user, value, err, errlen);
	if (strcmp(key, "log_format") == 0) {
		if (strcmp(value, "text") != 0 && strcmp(value, "json") != 0) {
			snprintf(err, errlen, "log_format: expected text or json, got '%s'", value);
			return -1;
		}
		c->log_json = strcmp(value, "json") == 0;
		return 0;
	}
	if (strcmp(key, "log_level") == 0) {
		int l = log_level_parse(value);
		if (l < 0) {
			snprintf(err, errlen, "log_level: expected error, warn, info or debug, got '%s'",
			         value);
			return -1;
		}
		c->log_level = l;
		return 0;
	}
	snprintf(err, errlen, "unknown key '%s' in [server]", key);
	return -1;
}

static int set_ocsp(struct config *c, const char *key, const char *value, char *err,
                    size_t errlen)
{
	if (strcmp(key, "path") == 0) {
		if (value[0] != '/') {
			snprintf(err, errlen, "path: must start with '/', got '%s'", value);
			return -1;
		}
		return set_str(&c->path, value, err, errlen);
	}
	if (strcmp(key, "validity") == 0) {
		uint64_t ms;
		/* RFC 9919 / Baseline Requirements: at least 8 hours, at most 10 days. */
		if (!config_parse_duration_ms(value, &ms) || ms < 8ull * 3600 * 1000 ||
		    ms > 10ull * 86400 * 1000) {
			snprintf(err, errlen, "validity: expected a duration from 8h to 10d, got '%s'",
			         value);
			return -1;
		}
		c->validity = (int64_t)(ms / 1000);
		return 0;
	}
	if (strcmp(key, "max_age") == 0) {
		uint64_t ms;
		if (!config_parse_duration_ms(value, &ms) || ms > 10ull * 86400 * 1000) {
			snprintf(err, errlen, "max_age: expected a duration up to 10d, got '%s'", value);
			return -1;
		}
		c->max_age = (int64_t)(ms / 1000);
		return 0;
	}
	if (strcmp(key, "nonce") == 0)
		return set_enum(&c->nonce, key, value, nonce_names, 2, err, errlen);
	if (strcmp(key, "max_certids") == 0)
		return set_size(&c->max_certids, key, value, 1, 64, err, errlen);
	if (strcmp(key, "not_issued") == 0)
		return set_enum(&c->not_issued, key, value, not_issued_names, 3, err, errlen);
	if (strcmp(key, "responder_id") == 0)
		return set_enum(&c->responder_id, key, value, rid_names, 2, err, errlen);
	if (strcmp(key, "sign_budget") == 0) {
		size_t v;
		if (set_size(&v, key, value, 1, 1000000, err, errlen) != 0)
			return -1;
		c->sign_budget = (unsigned)v;
		return 0;
	}
	if (strcmp(key, "cache_entries") == 0)
		return set_size(&c->cache_entries, key, value, 16, (uint64_t)1 << 32, err, errlen);
	if (strcmp(key, "index_poll") == 0)
		return set_ms(&c->index_poll_ms, key, value, 10, 60000, err, errlen);
	if (strcmp(key, "index_max_bytes") == 0)
		return set_size(&c->index_max_bytes, key, value, 1024, (uint64_t)16 << 30, err,
		                errlen);
	if (strcmp(key, "refresh") == 0)
		return set_enum(&c->refresh, key, value, refresh_names, 2, err, errlen);
	snprintf(err, errlen, "unknown key '%s' in [ocsp]", key);
	return -1;
}

static int set_postgres(struct config *c, const char *key, const char *value, char *err,
                        size_t errlen)
{
	if (strcmp(key, "dsn") == 0)
		return set_str(&c->pg_dsn, value, err, errlen);
	if (strcmp(key, "lookup_timeout") == 0)
		return set_ms(&c->pg_lookup_timeout_ms, key, value, 10, 60000, err, errlen);
	if (strcmp(key, "sweep_interval") == 0)
		return set_ms(&c->pg_sweep_interval_ms, key, value, 100, 3600000, err, errlen);
	snprintf(err, errlen, "unknown key '%s' in [postgres]", key);
	return -1;
}

static int set_redis(struct config *c, const char *key, const char *value, char *err,
                     size_t errlen)
{
	if (strcmp(key, "address") == 0) {
		const char *colon = strrchr(value, ':');
		if (strncmp(value, "unix:/", 6) != 0 &&
		    (colon == NULL || colon == value || colon[1] == 0)) {
			snprintf(err, errlen,
			         "address: expected HOST:PORT, [V6]:PORT or unix:/PATH, got '%s'", value);
			return -1;
		}
		return set_str(&c->redis_address, value, err, errlen);
	}
	if (strcmp(key, "prefix") == 0) {
		if (strlen(value) > 64) {
			snprintf(err, errlen, "prefix: at most 64 characters");
			return -1;
		}
		return set_str(&c->redis_prefix, value, err, errlen);
	}
	if (strcmp(key, "timeout") == 0)
		return set_ms(&c->redis_timeout_ms, key, value, 5, 60000, err, errlen);
	if (strcmp(key, "lock_ttl") == 0)
		return set_ms(&c->redis_lock_ms, key, value, 100, 60000, err, errlen);
	if (strcmp(key, "verify") == 0)
		return set_enum(&c->redis_verify, key, value, verify_names, 2, err, errlen);
	if (strcmp(key, "sample_interval") == 0)
		return set_ms(&c->redis_sample_interval_ms, key, value, 100, 86400000, err, errlen);
	if (strcmp(key, "sample_size") == 0)
		return set_size(&c->redis_sample_size, key, value, 0, 100000, err, errlen);
	snprintf(err, errlen, "unknown key '%s' in [redis]", key);
	return -1;
}

static int set_presign(struct config *c, const char *key, const char *value, char *err,
                       size_t errlen)
{
	if (strcmp(key, "enabled") == 0)
		return set_bool(&c->presign, key, value, err, errlen);
	if (strcmp(key, "rate") == 0) {
		size_t v;
		if (set_size(&v, key, value, 0, 10000000, err, errlen) != 0)
			return -1;
		c->presign_rate = (unsigned)v;
		return 0;
	}
	if (strcmp(key, "interval") == 0)
		return set_ms(&c->presign_interval_ms, key, value, 100, 86400000, err, errlen);
	if (strcmp(key, "batch") == 0)
		return set_size(&c->presign_batch, key, value, 1, 10000, err, errlen);
	if (strcmp(key, "hashes") == 0) {
		/* A comma-separated list of sha1, sha256, sha384, sha512. */
		unsigned mask = 0;
		const char *p = value;
		while (*p) {
			while (*p == ' ' || *p == ',')
				p++;
			if (*p == 0)
				break;
			size_t n = strcspn(p, ", ");
			int h = -1;
			for (int i = 0; i < 4; i++)
				if (strlen(hash_names[i]) == n && strncmp(p, hash_names[i], n) == 0)
					h = i;
			if (h < 0) {
				snprintf(err, errlen,
				         "hashes: expected a list of sha1, sha256, sha384, sha512, got '%s'",
				         value);
				return -1;
			}
			mask |= 1u << h;
			p += n;
		}
		if (mask == 0) {
			snprintf(err, errlen, "hashes: name at least one of sha1, sha256, sha384, sha512");
			return -1;
		}
		c->presign_hashes = mask;
		return 0;
	}
	snprintf(err, errlen, "unknown key '%s' in [presign]", key);
	return -1;
}

static int set_secs(int64_t *dst, const char *key, const char *value, uint64_t lo_s,
                    uint64_t hi_s, char *err, size_t errlen)
{
	uint64_t ms;
	if (!config_parse_duration_ms(value, &ms) || ms % 1000 != 0 || ms < lo_s * 1000 ||
	    ms > hi_s * 1000) {
		snprintf(err, errlen, "%s: expected whole seconds from %llus to %llus, got '%s'", key,
		         (unsigned long long)lo_s, (unsigned long long)hi_s, value);
		return -1;
	}
	*dst = (int64_t)(ms / 1000);
	return 0;
}

static int set_crl(struct config *c, const char *key, const char *value, char *err,
                   size_t errlen)
{
	if (strcmp(key, "base_url") == 0) {
		size_t n = strlen(value);
		if (strncmp(value, "http://", 7) != 0 || n < 8 || value[n - 1] == '/') {
			snprintf(err, errlen, "base_url: expected http://HOST/PATH without a trailing "
			                      "'/' (RFC 5280 distribution points are http), got '%s'",
			         value);
			return -1;
		}
		return set_str(&c->crl_base_url, value, err, errlen);
	}
	if (strcmp(key, "dir") == 0)
		return set_str(&c->crl_dir, value, err, errlen);
	if (strcmp(key, "validity") == 0)
		return set_secs(&c->crl_validity, key, value, 60, 366 * 86400, err, errlen);
	if (strcmp(key, "interval") == 0)
		return set_secs(&c->crl_interval, key, value, 10, 366 * 86400, err, errlen);
	if (strcmp(key, "deltas") == 0)
		return set_bool(&c->crl_deltas, key, value, err, errlen);
	if (strcmp(key, "build") == 0)
		return set_bool(&c->crl_build, key, value, err, errlen);
	if (strcmp(key, "delta_validity") == 0)
		return set_secs(&c->crl_delta_validity, key, value, 60, 30 * 86400, err, errlen);
	if (strcmp(key, "delta_interval") == 0)
		return set_secs(&c->crl_delta_interval, key, value, 10, 30 * 86400, err, errlen);
	if (strcmp(key, "delta_debounce") == 0)
		return set_ms(&c->crl_delta_debounce_ms, key, value, 0, 3600000, err, errlen);
	if (strcmp(key, "max_age") == 0)
		return set_secs(&c->crl_max_age, key, value, 0, 30 * 86400, err, errlen);
	if (strcmp(key, "max_bytes") == 0)
		return set_size(&c->crl_max_bytes, key, value, 4096, (uint64_t)4 << 30, err, errlen);
	snprintf(err, errlen, "unknown key '%s' in [crl]", key);
	return -1;
}

static int set_api(struct config *c, const char *key, const char *value, char *err,
                   size_t errlen)
{
	if (strcmp(key, "listen") == 0)
		return set_list(c->api_listen, &c->n_api_listen, CONFIG_MAX_LISTEN, key, value, err,
		                errlen);
	if (strcmp(key, "allow") == 0)
		return set_list(c->api_allow, &c->n_api_allow, CONFIG_MAX_ALLOW, key, value, err,
		                errlen);
	if (strcmp(key, "cert") == 0)
		return set_str(&c->api_cert, value, err, errlen);
	if (strcmp(key, "key") == 0)
		return set_str(&c->api_key, value, err, errlen);
	if (strcmp(key, "client_ca") == 0)
		return set_str(&c->api_client_ca, value, err, errlen);
	if (strcmp(key, "client_crl") == 0)
		return set_str(&c->api_client_crl, value, err, errlen);
	if (strcmp(key, "dsn") == 0)
		return set_str(&c->api_dsn, value, err, errlen);
	if (strcmp(key, "live_timeout") == 0)
		return set_ms(&c->api_live_timeout_ms, key, value, 0, 60000, err, errlen);
	snprintf(err, errlen, "unknown key '%s' in [api]", key);
	return -1;
}

static struct config_issuer *issuer_for(struct config *c, const char *name, char *err,
                                        size_t errlen)
{
	for (size_t i = 0; i < c->n_issuers; i++)
		if (strcmp(c->issuers[i].name, name) == 0)
			return &c->issuers[i];
	if (c->n_issuers == CONFIG_MAX_ISSUERS) {
		snprintf(err, errlen, "at most %d issuer sections", CONFIG_MAX_ISSUERS);
		return NULL;
	}
	struct config_issuer *is = &c->issuers[c->n_issuers];
	memset(is, 0, sizeof(*is));
	is->name = strdup(name);
	if (is->name == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	is->not_issued = -1;
	is->responder_id = -1;
	is->store = -1;
	is->include_signer_cert = true;
	c->n_issuers++;
	return is;
}

static int set_issuer(struct config *c, const char *name, const char *key, const char *value,
                      char *err, size_t errlen)
{
	struct config_issuer *is = issuer_for(c, name, err, errlen);
	if (is == NULL)
		return -1;
	if (strcmp(key, "ca") == 0)
		return set_str(&is->ca, value, err, errlen);
	if (strcmp(key, "signer_cert") == 0)
		return set_str(&is->signer_cert, value, err, errlen);
	if (strcmp(key, "signer_key") == 0)
		return set_str(&is->signer_key, value, err, errlen);
	if (strcmp(key, "signer_other") == 0)
		return set_str(&is->signer_other, value, err, errlen);
	if (strcmp(key, "index") == 0)
		return set_str(&is->index, value, err, errlen);
	if (strcmp(key, "store") == 0)
		return set_enum(&is->store, key, value, store_names, 2, err, errlen);
	if (strcmp(key, "db_issuer") == 0)
		return set_str(&is->db_issuer, value, err, errlen);
	if (strcmp(key, "not_issued") == 0)
		return set_enum(&is->not_issued, key, value, not_issued_names, 3, err, errlen);
	if (strcmp(key, "responder_id") == 0)
		return set_enum(&is->responder_id, key, value, rid_names, 2, err, errlen);
	if (strcmp(key, "include_signer_cert") == 0)
		return set_bool(&is->include_signer_cert, key, value, err, errlen);
	if (strcmp(key, "crl") == 0)
		return set_bool(&is->crl, key, value, err, errlen);
	if (strcmp(key, "crl_import") == 0) {
		if (set_bool(&is->crl_import, key, value, err, errlen) != 0)
			return -1;
		is->crl = is->crl || is->crl_import;
		return 0;
	}
	if (strcmp(key, "crl_key") == 0) {
		is->crl = true;
		return set_str(&is->crl_key, value, err, errlen);
	}
	if (strcmp(key, "crl_shards") == 0) {
		size_t n;
		if (set_size(&n, key, value, 0, 4096, err, errlen) != 0)
			return -1;
		is->crl_shards = (unsigned)n;
		return 0;
	}
	snprintf(err, errlen, "unknown key '%s' in [issuer %s]", key, name);
	return -1;
}

int config_set(struct config *c, const char *section, const char *key, const char *value,
               char *err, size_t errlen)
{
	if (strcmp(section, "server") == 0)
		return set_server(c, key, value, err, errlen);
	if (strcmp(section, "ocsp") == 0)
		return set_ocsp(c, key, value, err, errlen);
	if (strcmp(section, "postgres") == 0)
		return set_postgres(c, key, value, err, errlen);
	if (strcmp(section, "redis") == 0)
		return set_redis(c, key, value, err, errlen);
	if (strcmp(section, "presign") == 0)
		return set_presign(c, key, value, err, errlen);
	if (strcmp(section, "api") == 0)
		return set_api(c, key, value, err, errlen);
	if (strcmp(section, "crl") == 0)
		return set_crl(c, key, value, err, errlen);
	if (strncmp(section, "issuer", 6) == 0 && (section[6] == ' ' || section[6] == '\t')) {
		char name[128];
		const char *p = section + 7;
		while (*p == ' ' || *p == '\t')
			p++;
		size_t n = strlen(p);
		if (n >= 2 && p[0] == '"' && p[n - 1] == '"') {
			p++;
			n -= 2;
		}
		if (n == 0 || n >= sizeof(name)) {
			snprintf(err, errlen, "[%s]: an issuer needs a name of 1 to 127 characters",
			         section);
			return -1;
		}
		for (size_t i = 0; i < n; i++) {
			if (!isalnum((unsigned char)p[i]) && p[i] != '-' && p[i] != '_' && p[i] != '.') {
				snprintf(err, errlen, "[%s]: issuer names use letters, digits, '-', '_', '.'",
				         section);
				return -1;
			}
		}
		memcpy(name, p, n);
		name[n] = 0;
		return set_issuer(c, name, key, value, err, errlen);
	}
	snprintf(err, errlen,
	         "unknown section [%s] (expected server, ocsp, postgres, redis, presign, crl, api or "
	         "issuer NAME)",
	         section);
	return -1;
}

/*
 * inih reads through our reader, so we know the line each handler call comes from,
 * and can refuse a line longer than inih's buffer instead of letting it be cut.
 */
struct load_ctx {
	struct config *c;
	FILE *f;
	int line;          /* lines read so far */
	int err_line;      /* the first line with an error, 0 if none */
	char err[256];     /* what is wrong there */
	bool in_long_line; /* the reader is inside an overlong line */
};

#define INI_LINE_MAX 200 /* Debian's libinih is built with INI_MAX_LINE 200 */

static void record_error(struct load_ctx *ctx, int line, const char *what)
{
	if (ctx->err_line == 0 || line < ctx->err_line) {
		ctx->err_line = line;
		snprintf(ctx->err, sizeof(ctx->err), "%s", what);
	}
}

static char *read_line(char *str, int num, void *stream)
{
	struct load_ctx *ctx = stream;
	if (fgets(str, num, ctx->f) == NULL)
		return NULL;
	size_t n = strlen(str);
	bool complete = n > 0 && str[n - 1] == '\n';
	if (!ctx->in_long_line)
		ctx->line++;
	if (!complete && !feof(ctx->f)) {
		if (!ctx->in_long_line) {
			char what[96];
			snprintf(what, sizeof(what), "line longer than %d characters", INI_LINE_MAX - 2);
			record_error(ctx, ctx->line, what);
		}
		ctx->in_long_line = true;
		str[0] = 0; /* hand inih an empty line instead of a piece */
		return str;
	}
	if (ctx->in_long_line) {
		ctx->in_long_line = false;
		str[0] = 0;
	}
	return str;
}

static int on_ini_line(void *user, const char *section, const char *name, const char *value)
{
	struct load_ctx *ctx = user;
	char err[256];
	if (section[0] == 0) {
		snprintf(err, sizeof(err), "key '%s' outside any section", name);
	} else if (config_set(ctx->c, section, name, value, err, sizeof(err)) == 0) {
		return 1;
	}
	record_error(ctx, ctx->line, err);
	return 0;
}

int config_load_file(struct config *c, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	struct load_ctx ctx = {.c = c, .f = f};
	int r = ini_parse_stream(read_line, &ctx, on_ini_line, &ctx);
	fclose(f);
	if (r < 0) {
		snprintf(err, errlen, "%s: cannot read", path);
		return -1;
	}
	/* inih's own complaint (a line that is not INI) counts when it comes first. */
	if (r > 0 && (ctx.err_line == 0 || r < ctx.err_line))
		record_error(&ctx, r, "not an INI line (expected [section] or key = value)");
	if (ctx.err_line == 0)
		return 0;
	snprintf(err, errlen, "%s:%d: %s", path, ctx.err_line, ctx.err);
	return -1;
}

int config_apply_env(struct config *c, char *const *env, char *err, size_t errlen)
{
	static const char prefix[] = "REVD_CONF_";
	static const char *const sections[] = {"server", "ocsp", "postgres", "redis", "presign",
	                                       "crl",    "api"};
	for (; env != NULL && *env != NULL; env++) {
		const char *v = *env;
		if (strncmp(v, prefix, sizeof(prefix) - 1) != 0)
			continue;
		const char *eq = strchr(v, '=');
		const char *name = v + sizeof(prefix) - 1;
		size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
		char section[16] = "", key[64];
		for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
			size_t n = strlen(sections[i]);
			if (name_len > n + 1 && strncasecmp(name, sections[i], n) == 0 && name[n] == '_') {
				snprintf(section, sizeof(section), "%s", sections[i]);
				name += n + 1;
				name_len -= n + 1;
				break;
			}
		}
		if (eq == NULL || section[0] == 0 || name_len >= sizeof(key)) {
			snprintf(err, errlen,
			         "environment %.*s: expected REVD_CONF_<SECTION>_<KEY>=VALUE with SECTION "
			         "one of server, ocsp, postgres, redis, presign, crl",
			         (int)(eq ? (size_t)(eq - v) : strlen(v)), v);
			return -1;
		}
		for (size_t i = 0; i < name_len; i++)
			key[i] = (char)tolower((unsigned char)name[i]);
		key[name_len] = 0;
		char e[256];
		if (config_set(c, section, key, eq + 1, e, sizeof(e)) != 0) {
			snprintf(err, errlen, "environment %.*s: %s", (int)(eq - v), v, e);
			return -1;
		}
	}
	return 0;
}

int config_issuer_store(const struct config *c, const struct config_issuer *is)
{
	if (is->store >= 0)
		return is->store;
	return is->index != NULL || c->pg_dsn == NULL ? CONFIG_STORE_INDEX : CONFIG_STORE_POSTGRES;
}

static int validate_api(const struct config *c, char *err, size_t errlen)
{
	if (c->n_api_listen == 0)
		return 0;
	const char *missing = c->api_cert == NULL        ? "cert"
	                      : c->api_key == NULL       ? "key"
	                      : c->api_client_ca == NULL ? "client_ca"
	                      : c->n_api_allow == 0      ? "allow"
	                                                 : NULL;
	if (missing != NULL) {
		snprintf(err, errlen, "[api] '%s' is required with listen (the API is HTTPS, and "
		                      "only listed clients with certificates from client_ca may call it)",
		         missing);
		return -1;
	}
	if (c->api_dsn == NULL && c->pg_dsn == NULL) {
		snprintf(err, errlen, "[api] needs dsn (or [postgres] dsn): revocations are written to "
		                      "PostgreSQL");
		return -1;
	}
	bool any = false;
	for (size_t i = 0; i < c->n_issuers; i++)
		any |= config_issuer_store(c, &c->issuers[i]) == CONFIG_STORE_POSTGRES;
	if (!any) {
		snprintf(err, errlen, "[api] changes issuers served from PostgreSQL, and there is none "
		                      "(index.txt belongs to `openssl ca -revoke`)");
		return -1;
	}
	return 0;
}

int config_validate(const struct config *c, char *err, size_t errlen)
{
	if (c->n_issuers == 0) {
		snprintf(err, errlen, "no issuer configured (give --CA/--index/--rkey or an "
		                      "[issuer NAME] section)");
		return -1;
	}
	for (size_t i = 0; i < c->n_issuers; i++) {
		const struct config_issuer *is = &c->issuers[i];
		const char *missing = is->ca == NULL           ? "ca"
		                      : is->signer_key == NULL ? "signer_key"
		                                               : NULL;
		if (missing != NULL) {
			snprintf(err, errlen, "[issuer %s]: '%s' is required", is->name, missing);
			return -1;
		}
		int store = config_issuer_store(c, is);
		if (store == CONFIG_STORE_INDEX && is->index == NULL) {
			snprintf(err, errlen,
			         "[issuer %s]: needs 'index', or store = postgres with [postgres] dsn",
			         is->name);
			return -1;
		}
		if (store == CONFIG_STORE_POSTGRES && c->pg_dsn == NULL) {
			snprintf(err, errlen, "[issuer %s]: store = postgres needs [postgres] dsn", is->name);
			return -1;
		}
		if (!is->crl)
			continue;
		if (is->crl_import && is->crl_key != NULL) {
			snprintf(err, errlen,
			         "[issuer %s]: crl_import (the CA signs its CRLs) and crl_key (revd "
			         "signs them) exclude each other",
			         is->name);
			return -1;
		}
		if (!is->crl_import && is->crl_key == NULL && is->signer_cert != NULL) {
			snprintf(err, errlen,
			         "[issuer %s]: CRLs are signed by the CA; its OCSP signer is delegated, "
			         "so set crl_key to the CA's key",
			         is->name);
			return -1;
		}
		if (store == CONFIG_STORE_INDEX && c->crl_dir == NULL) {
			snprintf(err, errlen,
			         "[issuer %s]: CRLs from an index file need [crl] dir, where CRL numbers "
			         "are kept across restarts",
			         is->name);
			return -1;
		}
		if (is->crl_shards > 0 && c->crl_base_url == NULL) {
			snprintf(err, errlen,
			         "[issuer %s]: partitioned CRLs need [crl] base_url (their "
			         "distribution points)",
			         is->name);
			return -1;
		}
	}
	if (c->crl_interval >= c->crl_validity) {
		snprintf(err, errlen, "[crl] interval must be shorter than validity, or CRLs lapse");
		return -1;
	}
	if (c->crl_delta_interval >= c->crl_delta_validity) {
		snprintf(err, errlen,
		         "[crl] delta_interval must be shorter than delta_validity, or deltas lapse");
		return -1;
	}
	if (c->max_url_bytes > c->max_header_bytes) {
		snprintf(err, errlen, "max_url_bytes (%zu) cannot exceed max_header_bytes (%zu)",
		         c->max_url_bytes, c->max_header_bytes);
		return -1;
	}
	if (c->max_age > c->validity) {
		snprintf(err, errlen, "max_age cannot exceed validity");
		return -1;
	}
	return validate_api(c, err, errlen);
}
