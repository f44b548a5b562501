/* Keyed hashing for tables whose keys come from the network (serials). */
#ifndef REVD_CORE_HASH_H
#define REVD_CORE_HASH_H

#include <stddef.h>
#include <stdint.h>

/* SipHash-1-3 with a 128-bit key: cheap enough for every lookup, and a client that
 * does not know the key cannot aim many serials at one bucket. */
uint64_t hash_siphash13(const uint8_t key[16], const void *data, size_t len);

/* A process-wide random key, drawn once from the OS. */
const uint8_t *hash_process_key(void);

#endif
