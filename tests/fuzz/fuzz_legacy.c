/*
 * libFuzzer target: one unidirectional stream of a legacy connection
 * (src/proto/legacy.h), fed the way the server feeds it.
 *
 * Input: byte 0 picks the stream kind (bit 0: 0 = handshake, 1 = event) and
 * whether the FIN comes with the last piece or alone (bit 1); byte 1 seeds
 * the split into pieces; the rest is the stream.  Each piece is judged with
 * the status function before it is kept, as the server does, so the buffer
 * never grows past what the status allows.  Checked:
 *   - the status is LG_MORE, 0 or a wire error code, and an error ends it;
 *   - the buffer never holds more than one frame (8 + the limit);
 *   - the verdict does not depend on the split: it equals the verdict on the
 *     whole stream at once;
 *   - a complete event stream decodes, or fails with PROTOCOL_ERROR only;
 *     when it decodes, encoding the event again gives the stream back.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "proto/legacy.h"

#define LIMIT 4096u /* a small max_frame_payload, so the limit is reachable */

static int is_code(int rv) {
  return rv == PR_E_PROTOCOL || rv == PR_E_UNSUPPORTED_VERSION || rv == PR_E_FRAME_TOO_LARGE;
}

static int judge(int event, const uint8_t *head, size_t have, int fin, size_t *total) {
  *total = 0;
  return event ? lg_event_status(head, have, fin, LIMIT, total) : lg_hello_status(have, fin);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  int event = data[0] & 1, fin_alone = (data[0] >> 1) & 1;
  uint32_t x = data[1] | 1u;
  const uint8_t *s = data + 2;
  size_t n = size - 2;

  size_t whole_total;
  int whole = judge(event, s, n, 1, &whole_total);
  FUZZ_CHECK(whole == 0 || is_code(whole));

  uint8_t *buf = malloc(n ? n : 1);
  if (!buf)
    return 0;
  size_t have = 0, total = 0;
  int rv = LG_MORE;
  while (have < n) {
    x = x * 1103515245u + 12345u;
    size_t piece = 1 + (x >> 16) % 97;
    if (piece > n - have)
      piece = n - have;
    int fin = !fin_alone && have + piece == n;
    uint8_t head[PR_HDR_LEN];
    size_t hn = have < PR_HDR_LEN ? have : PR_HDR_LEN;
    memcpy(head, buf, hn);
    size_t more = piece < PR_HDR_LEN - hn ? piece : PR_HDR_LEN - hn;
    memcpy(head + hn, s + have, more);
    rv = judge(event, head, have + piece, fin, &total);
    FUZZ_CHECK(rv == 0 || rv == LG_MORE || is_code(rv));
    if (rv != 0 && rv != LG_MORE)
      break;
    memcpy(buf + have, s + have, piece);
    have += piece;
    FUZZ_CHECK(have <= (event ? PR_HDR_LEN + (size_t)LIMIT : LG_HELLO_LEN));
    if (total)
      FUZZ_CHECK(have <= total && total <= PR_HDR_LEN + (size_t)LIMIT);
    if (rv == 0)
      FUZZ_CHECK(have == n);
  }
  if (rv == LG_MORE) {
    /* All bytes in without an error: now the FIN. */
    uint8_t head[PR_HDR_LEN] = {0};
    memcpy(head, buf, have < PR_HDR_LEN ? have : PR_HDR_LEN);
    rv = judge(event, head, have, 1, &total);
  }
  FUZZ_CHECK(rv == whole);

  if (rv == 0) {
    if (!event) {
      uint64_t id;
      int d = lg_hello_decode(buf, have, &id);
      FUZZ_CHECK(d == 0 || d == PR_E_PROTOCOL);
      if (d == 0) {
        uint8_t back[LG_HELLO_LEN];
        lg_hello_encode(back, id);
        FUZZ_CHECK(id != 0 && memcmp(back, buf, LG_HELLO_LEN) == 0);
      }
    } else {
      pr_event e;
      int d = lg_event_decode(buf, have, LIMIT, &e);
      FUZZ_CHECK(d == 0 || d == PR_E_PROTOCOL);
      if (d == 0) {
        fz_str(e.type_name, buf, have);
        FUZZ_CHECK(e.type_name.len >= 1 && e.type_name.len <= PR_MAX_TYPE_NAME_LEN);
        uint8_t *back = malloc(have);
        if (back) {
          FUZZ_CHECK(pr_enc_event(back, have, &e) == have);
          FUZZ_CHECK(memcmp(back, buf, have) == 0);
          free(back);
        }
      }
    }
  }
  free(buf);
  return 0;
}
