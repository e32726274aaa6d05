/*
 * libFuzzer target: the input is the byte stream a peer writes on its
 * session stream.  It is fed to a receiver the way QUIC hands it over, in
 * chunks of varying size, into a buffer bounded by one maximal frame; each
 * whole frame is split off with pr_frame_next and decoded by type.
 *
 * Checks: a bounded buffer always suffices (pr_frame_next never waits for
 * more than PR_HDR_LEN + max_payload bytes), what it returns is consistent,
 * and every decoded payload keeps its promises (see fuzz_common.h).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

/* Small enough that fuzzed lengths reach it, so FRAME_TOO_LARGE is explored. */
#define FZ_MAX_PAYLOAD 2048u

/* Sizes of the successive reads: small ones split headers and fields. */
static const size_t chunk_sizes[] = {1, 2, 3, 5, 8, 13, 64, 300, 4096, 7};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const size_t cap = PR_HDR_LEN + FZ_MAX_PAYLOAD;
  uint8_t *buf = malloc(cap);
  if (buf == NULL)
    return 0;
  size_t held = 0, in = 0, turn = 0;

  while (in < size) {
    /* one read: never more than the buffer has room for */
    size_t want = chunk_sizes[turn++ % (sizeof chunk_sizes / sizeof chunk_sizes[0])];
    size_t room = cap - held;
    size_t take = want < size - in ? want : size - in;
    if (take > room)
      take = room;
    FUZZ_CHECK(take > 0); /* else the receiver would be stuck with a full buffer */
    memcpy(buf + held, data + in, take);
    held += take;
    in += take;

    for (;;) {
      pr_hdr h;
      const uint8_t *payload;
      size_t used;
      int rv = pr_frame_next(buf, held, FZ_MAX_PAYLOAD, &h, &payload, &used);
      if (rv != 0) {
        FUZZ_CHECK(rv == PR_E_PROTOCOL || rv == PR_E_UNSUPPORTED_VERSION ||
                   rv == PR_E_FRAME_TOO_LARGE);
        FUZZ_CHECK(rv != PR_E_FRAME_TOO_LARGE || held >= PR_HDR_LEN);
        goto closed; /* the connection would be closed here */
      }
      if (used == 0) {
        /* an incomplete frame: the bounded buffer must have room left */
        FUZZ_CHECK(held < cap);
        break;
      }
      FUZZ_CHECK(used == PR_HDR_LEN + (size_t)h.len && used <= held);
      FUZZ_CHECK(payload == buf + PR_HDR_LEN && h.len <= FZ_MAX_PAYLOAD);

      /* decode from an exact-size copy so ASan catches any overread */
      uint8_t *copy = malloc(h.len ? h.len : 1);
      if (copy == NULL)
        goto closed;
      memcpy(copy, payload, h.len);
      fz_decode_walk(h.type, copy, h.len); /* unknown types are skipped */
      free(copy);

      memmove(buf, buf + used, held - used);
      held -= used;
    }
  }
closed:
  free(buf);
  return 0;
}
