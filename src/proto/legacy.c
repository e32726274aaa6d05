/*
 * Legacy wire codec (see legacy.h and protocol.md section 9).
 *
 * The event payload is the same bincode RawNetworkEvent as an issun/1
 * EVENT, so decoding it is pr_event_decode's job; this file only adds the
 * legacy framing rules: 8-byte handshakes, and one frame per stream.
 */
#include "proto/legacy.h"

int lg_hello_status(size_t have, int fin) {
  if (have > LG_HELLO_LEN)
    return PR_E_PROTOCOL;
  if (!fin)
    return LG_MORE;
  return have == LG_HELLO_LEN ? 0 : PR_E_PROTOCOL;
}

int lg_hello_decode(const uint8_t *p, size_t len, uint64_t *node_id) {
  if (len != LG_HELLO_LEN)
    return PR_E_PROTOCOL;
  uint64_t id = pr_rd64(p);
  if (id == 0)
    return PR_E_PROTOCOL;
  *node_id = id;
  return 0;
}

void lg_hello_encode(uint8_t out[LG_HELLO_LEN], uint64_t node_id) {
  pr_le64(out, node_id);
}

int lg_event_status(const uint8_t *head, size_t have, int fin, uint32_t max_payload,
                    size_t *total) {
  *total = 0;
  /* Header bytes in the order they arrive, so that the verdict on a stream
   * does not depend on how its bytes were split into packets. */
  if (have >= 1 && head[0] != PR_MAGIC0)
    return PR_E_PROTOCOL;
  if (have >= 2 && head[1] != PR_MAGIC1)
    return PR_E_PROTOCOL;
  if (have >= 3 && head[2] != PR_VERSION)
    return PR_E_UNSUPPORTED_VERSION;
  if (have >= 4 && head[3] != PR_FT_EVENT)
    return PR_E_PROTOCOL; /* one EVENT per legacy stream, nothing else */
  if (have < PR_HDR_LEN)
    return fin ? PR_E_PROTOCOL : LG_MORE;
  pr_hdr h;
  int rv = pr_hdr_decode(head, PR_HDR_LEN, max_payload, &h);
  if (rv != 0)
    return rv;                              /* FRAME_TOO_LARGE: the rest was checked above */
  size_t want = PR_HDR_LEN + (size_t)h.len; /* h.len <= max_payload: no overflow */
  *total = want;
  if (have > want)
    return PR_E_PROTOCOL; /* a second frame, or trailing bytes: one frame per stream */
  if (have < want)
    return fin ? PR_E_PROTOCOL : LG_MORE;
  return fin ? 0 : LG_MORE;
}

int lg_event_decode(const uint8_t *p, size_t len, uint32_t max_payload, pr_event *out) {
  size_t total;
  int rv = lg_event_status(p, len, 1, max_payload, &total);
  if (rv != 0)
    return rv == LG_MORE ? PR_E_PROTOCOL : rv;
  return pr_event_decode(p + PR_HDR_LEN, len - PR_HDR_LEN, out);
}
