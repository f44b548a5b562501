/*
 * revd's configuration: one INI file, and command-line flags that set the same keys.
 * Parsing only; no other module's types. Defaults meet RFC 9919 and the CA/Browser
 * Forum Baseline Requirements.
 */
#ifndef REVD_CORE_CONFIG_H
#define REVD_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFIG_MAX_LISTEN 16
#define CONFIG_MAX_ALLOW 64
#define CONFIG_MAX_ISSUERS 256

enum config_not_issued { CONFIG_NOT_ISSUED_UNKNOWN, CONFIG_NOT_ISSUED_UNAUTHORIZED,
	                     CONFIG_NOT_ISSUED_REVOKED };
enum config_responder_id { CONFIG_RID_KEY, CONFIG_RID_NAME };
enum config_nonce { CONFIG_NONCE_IGNORE, CONFIG_NONCE_SIGN };
enum config_store { CONFIG_STORE_INDEX, CONFIG_STORE_POSTGRES };
enum config_refresh { CONFIG_REFRESH_HALF, CONFIG_REFRESH_CABF };
enum config_redis_verify { CONFIG_VERIFY_STRUCTURE, CONFIG_VERIFY_SIGNATURE };

struct config_issuer {
	char *name;
	char *ca;          /* PEM file with one or more CA certificates */
	char *signer_cert; /* NULL: the CA signs its own answers */
	char *signer_key;
	char *signer_other; /* extra certificates for the certs field */
	char *index;
	int store;        /* CONFIG_STORE_*; -1: index if set, else postgres */
	char *db_issuer;  /* the issuers.name in PostgreSQL; NULL: this section's name */
	int not_issued;   /* -1: inherit [ocsp] */
	int responder_id; /* -1: inherit [ocsp] */
	bool include_signer_cert; /* send the delegated signer's certificate (default yes) */
	/* CRLs: published when crl is set; signed by crl_key (default: signer_key when the
	 * CA signs its own OCSP answers) */
	bool crl;
	bool crl_import; /* the CA signs its CRLs itself; revd crl import publishes them */
	char *crl_key;
	unsigned crl_shards; /* 0: one CRL; else that many partitioned CRLs */
};

struct config {
	/* [server] */
	char *listen[CONFIG_MAX_LISTEN];
	size_t n_listen;
	unsigned workers; /* 0: one per core */
	size_t max_connections;
	size_t max_header_bytes;
	size_t max_headers;
	size_t max_url_bytes;
	size_t max_body_bytes;
	unsigned header_timeout_ms;
	unsigned body_timeout_ms;
	unsigned idle_timeout_ms;
	unsigned write_timeout_ms;
	int log_level;
	bool log_json; /* log_format = json */
	char *user;    /* run as this user (and its group) once the ports are bound */
	/* [ocsp] */
	char *path; /* GET prefix, "/" or "/ocsp" */
	int64_t validity;
	int64_t max_age; /* Cache-Control max-age ceiling; 0: until nextUpdate */
	int nonce;
	size_t max_certids;
	int not_issued;
	int responder_id;
	unsigned sign_budget;
	size_t cache_entries;
	unsigned index_poll_ms;
	size_t index_max_bytes;
	int refresh; /* CONFIG_REFRESH_*: when a signed answer is re-signed */
	/* [postgres] */
	char *pg_dsn;
	unsigned pg_lookup_timeout_ms;
	unsigned pg_sweep_interval_ms;
	/* [redis]: the shared tier of signed answers; off unless address is set */
	char *redis_address; /* "HOST:PORT", "[V6]:PORT" or "unix:/PATH" */
	char *redis_prefix;  /* every key starts with it */
	unsigned redis_timeout_ms;
	unsigned redis_lock_ms;
	int redis_verify; /* CONFIG_VERIFY_* */
	unsigned redis_sample_interval_ms;
	size_t redis_sample_size;
	/* [presign]: signing every certificate's answer before it is asked for */
	bool presign;
	unsigned presign_rate; /* signatures per second per instance; 0: no limit */
	unsigned presign_interval_ms; /* a round starts at most this often */
	size_t presign_batch;
	unsigned presign_hashes; /* bit per enum ocsp_hash value; CertIDs pre-signed */
	/* [crl]: CRL generation and serving */
	char *crl_base_url;  /* where the CRLs are published: IDP and Freshest CRL URIs */
	char *crl_dir;       /* state for CRLs of issuers outside PostgreSQL */
	int64_t crl_validity;        /* full CRLs: nextUpdate - thisUpdate, seconds */
	int64_t crl_interval;        /* a full CRL is republished at least this often */
	bool crl_deltas;
	bool crl_build; /* no: serve what other instances publish, build nothing */
	int64_t crl_delta_validity;
	int64_t crl_delta_interval;  /* a delta CRL is republished at least this often */
	unsigned crl_delta_debounce_ms; /* after a change, the next delta waits this long */
	int64_t crl_max_age;         /* Cache-Control ceiling; 0: from the schedule */
	size_t crl_max_bytes;
	/* [api]: the revocation API for CAs (HTTPS, client certificates required); off
	 * unless listen is set */
	char *api_listen[CONFIG_MAX_LISTEN];
	size_t n_api_listen;
	char *api_cert;       /* the API's certificate chain (PEM) */
	char *api_key;        /* its key */
	char *api_client_ca;  /* clients must present a certificate chaining to these */
	char *api_client_crl; /* optional: revoked client certificates */
	char *api_allow[CONFIG_MAX_ALLOW]; /* client identities that may call it */
	size_t n_api_allow;
	char *api_dsn;        /* writes revocations; default: [postgres] dsn */
	unsigned api_live_timeout_ms; /* a write waits this long for its change to be served */
	/* [issuer NAME] */
	struct config_issuer issuers[CONFIG_MAX_ISSUERS];
	size_t n_issuers;
};

void config_init(struct config *c);
void config_free(struct config *c);

/* Reads an INI file on top of c. Returns 0, or -1 with "FILE:LINE: what" in err. */
int config_load_file(struct config *c, const char *path, char *err, size_t errlen);

/*
 * Sets one key. section is "server", "ocsp" or "issuer NAME" (the issuer is created
 * on first use). Returns 0, or -1 with a message in err.
 */
int config_set(struct config *c, const char *section, const char *key, const char *value,
               char *err, size_t errlen);

/*
 * Applies environment overrides, for containers: REVD_CONF_<SECTION>_<KEY>=VALUE sets
 * KEY in [section] (server, ocsp, postgres, redis, presign or crl; the key in lower
 * case), e.g. REVD_CONF_POSTGRES_DSN or REVD_CONF_CRL_BASE_URL. env: NULL-terminated
 * "NAME=VALUE" strings. Returns 0, or -1 with the variable's name and what is wrong.
 */
int config_apply_env(struct config *c, char *const *env, char *err, size_t errlen);

/* Where an issuer's status comes from (CONFIG_STORE_*): as set, else its index file if
 * it names one, else PostgreSQL when [postgres] dsn is set. */
int config_issuer_store(const struct config *c, const struct config_issuer *is);

/* Cross-checks after everything is set: issuers complete, limits coherent. */
int config_validate(const struct config *c, char *err, size_t errlen);

/* "30s", "250ms", "8h", "7d", "3600" (seconds). Returns false on anything else. */
bool config_parse_duration_ms(const char *s, uint64_t *ms);
/* "16384", "16k", "1m", "1g". */
bool config_parse_size(const char *s, uint64_t *bytes);

#endif
