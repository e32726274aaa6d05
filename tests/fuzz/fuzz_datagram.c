/*
 * libFuzzer target: the input is one received DATAGRAM.  It must be exactly
 * one EVENT frame; when pr_datagram_check and pr_event_decode accept it,
 * re-encoding the decoded event must give back the datagram byte for byte.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *payload = NULL;
  size_t plen = 0;
  int rv = pr_datagram_check(data, size, PR_DEFAULT_MAX_FRAME_PAYLOAD, &payload, &plen);
  if (rv != 0) {
    FUZZ_CHECK(rv == PR_E_PROTOCOL || rv == PR_E_UNSUPPORTED_VERSION || rv == PR_E_FRAME_TOO_LARGE);
    return 0;
  }
  FUZZ_CHECK(size >= PR_HDR_LEN && data[3] == PR_FT_EVENT);
  FUZZ_CHECK(payload == data + PR_HDR_LEN && plen == size - PR_HDR_LEN);

  if (fz_decode_walk(PR_FT_EVENT, payload, plen) != 0)
    return 0;

  pr_event e;
  FUZZ_CHECK(pr_event_decode(payload, plen, &e) == 0);
  uint8_t *out = malloc(size);
  if (out == NULL)
    return 0;
  FUZZ_CHECK(pr_enc_event(out, size, &e) == size);
  FUZZ_CHECK(memcmp(out, data, size) == 0);
  free(out);
  return 0;
}
