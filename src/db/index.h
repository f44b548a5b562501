/*
 * The OpenSSL CA database (index.txt, as written by `openssl ca` and easy-rsa) as a
 * status store: parsed into memory, swapped whole when the file changes.
 */
#ifndef REVD_DB_INDEX_H
#define REVD_DB_INDEX_H

#include <uv.h>

#include "db/store.h"

struct index_snapshot;

/*
 * Parses index.txt text. Returns NULL with "line N: what is wrong" in err on any
 * line revd cannot read with certainty: a status store that guesses is worse than
 * one that refuses. Lines must be tab-separated with six fields; blank lines and
 * lines starting with '#' are skipped.
 */
struct index_snapshot *index_parse(const char *text, size_t len, char *err, size_t errlen);
void index_snapshot_free(struct index_snapshot *s);
size_t index_snapshot_count(const struct index_snapshot *s);
/* The i-th distinct entry (0 <= i < count), in file order. */
void index_snapshot_entry(const struct index_snapshot *s, size_t i, struct store_serial *serial,
                          struct store_record *rec);
bool index_snapshot_find(const struct index_snapshot *s, const uint8_t *serial, size_t len,
                         struct store_record *rec);

/* Serials whose record differs between two snapshots (added, removed or changed).
 * Returns a malloc'd array (caller frees) and its length in *n; NULL on allocation failure. */
struct store_serial *index_snapshot_diff(const struct index_snapshot *a,
                                         const struct index_snapshot *b, size_t *n);

/* Converts an index.txt serial (hex, optionally '-') to INTEGER contents. */
bool index_serial_from_hex(const char *hex, size_t len, struct store_serial *out);

/* Parses index.txt's YYMMDDHHMMSSZ or YYYYMMDDHHMMSSZ. */
bool index_parse_time(const char *s, size_t len, int64_t *t);

/* Opens path as a store. NULL with a message in err if it cannot be read or parsed. */
struct store *store_index_open(const char *path, size_t max_bytes, char *err, size_t errlen);

/*
 * Watches the file from loop (stat every interval_ms; a rename over it counts) and
 * reloads it off the loop. After each successful reload, on_change runs on loop with
 * the serials that changed. A file that fails to parse is logged and the previous
 * contents kept.
 */
int store_index_watch(struct store *s, uv_loop_t *loop, unsigned interval_ms,
                      store_change_cb on_change, void *arg);

/* Stops watching; the store stays usable. Safe to call on a store not being watched. */
void store_index_unwatch(struct store *s);

/* Reloads now, synchronously (tests, and `revd status`). Returns 0 or -1 with err. */
int store_index_reload(struct store *s, char *err, size_t errlen);

#endif
