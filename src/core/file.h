/* Whole files: read with a ceiling, replaced atomically. */
#ifndef REVD_CORE_FILE_H
#define REVD_CORE_FILE_H

#include <stddef.h>
#include <stdint.h>

/*
 * Reads a regular file of at most max bytes into *data (malloc'd; the caller frees it)
 * and *len. Returns 0, 1 when the file does not exist (nothing allocated), or -1 with
 * the reason (naming path) in err.
 */
int file_read(const char *path, size_t max, uint8_t **data, size_t *len, char *err,
              size_t errlen);

/*
 * Replaces path with data: written to PATH.tmp, synced, renamed over path, and the
 * directory synced, so a reader or a crash sees the old file or the new one, never a
 * piece. Returns 0, or -1 with the reason in err (PATH.tmp removed).
 */
int file_write_atomic(const char *path, const void *data, size_t len, char *err,
                      size_t errlen);

#endif
