/*
 * The pre-signer: a background thread that keeps a signed answer in the shared tier
 * for every unexpired certificate of every issuer, before anyone asks, and re-signs
 * each when it comes due. Instances divide the work through a cursor per issuer in
 * Redis: each claims the next batch of serials with a compare-and-set, so no batch is
 * signed twice. A round over an issuer starts at most once per [presign] interval.
 *
 * Operators steer every instance at once through Redis (`revd presign`): PREFIX
 * presign:paused pauses, PREFIX presign:rate caps signatures per second per instance;
 * each instance publishes its figures in the hash PREFIX presign:stats:INSTANCE.
 */
#ifndef REVD_HTTP_PRESIGN_H
#define REVD_HTTP_PRESIGN_H

#include <stdbool.h>
#include <stdint.h>

struct responder;
struct presigner;

struct presign_stats {
	uint64_t rounds;        /* issuer rounds completed */
	uint64_t checked;       /* answers looked at */
	uint64_t signed_total;  /* answers signed */
	double signed_per_sec;  /* over the last few seconds */
	uint64_t queue_depth;   /* answers found due and not yet signed */
	int64_t oldest_age;     /* seconds: the oldest answer seen in the last full round */
	uint64_t sampled, disagreements; /* answers compared with the store, and found wrong */
	uint64_t errors;
	bool paused;
};

/* Starts the thread. NULL on failure (logged). */
struct presigner *presigner_start(struct responder *r);
/* Stops and joins it. NULL is fine. */
void presigner_stop(struct presigner *p);
void presigner_get_stats(struct presigner *p, struct presign_stats *out);

#endif
