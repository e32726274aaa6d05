/*
 * Legacy wire codec (protocol.md section 9): what travels on the
 * unidirectional streams of a connection that negotiated no ALPN, the way
 * issun's Rust QuicClientBackend speaks.
 *
 *   handshake stream (the client's first unidirectional stream):
 *       NodeId as u64 little-endian (8 bytes), then FIN.  The server answers
 *       on its own first unidirectional stream with the same 8 bytes + FIN.
 *   event stream (every later unidirectional stream, both directions):
 *       exactly one EVENT frame (8-byte header + bincode RawNetworkEvent,
 *       the same payload as an issun/1 EVENT), then FIN.
 *
 * Like proto.h: no I/O, no allocation, total functions.  The status
 * functions judge a stream from what has arrived so far, so the caller can
 * refuse a bad stream as soon as the evidence is in and never buffers more
 * than one frame for it.
 */
#ifndef ISSUN_PROTO_LEGACY_H
#define ISSUN_PROTO_LEGACY_H

#include <stddef.h>
#include <stdint.h>

#include "proto/proto.h"

#define LG_HELLO_LEN 8u

/* Returned by the status functions while a stream is a valid prefix that is
 * not complete yet (more bytes or the FIN still to come).  Wire error codes
 * (PR_E_*) are 0..0x17, so this never collides with one. */
#define LG_MORE 0x100

/* The handshake stream after `have` bytes, `fin` when the FIN has arrived:
 * 0 when complete (exactly 8 bytes and FIN), LG_MORE, or PR_E_PROTOCOL
 * (more than 8 bytes, or FIN after fewer). */
int lg_hello_status(size_t have, int fin);

/* Decodes a complete handshake (len must be 8).  NodeId 0 is refused: it is
 * never a session's NodeId, and a legacy client has no way to learn one the
 * server would assign.  Returns 0 or PR_E_PROTOCOL. */
int lg_hello_decode(const uint8_t *p, size_t len, uint64_t *node_id);

/* Writes the 8-byte handshake (or its echo) for node_id. */
void lg_hello_encode(uint8_t out[LG_HELLO_LEN], uint64_t node_id);

/* An event stream after `have` bytes, of which `head` holds the first
 * min(have, 8) (the frame header, or as much of it as has arrived); `fin`
 * when the FIN has arrived.  Returns
 *   0        complete: one whole EVENT frame and FIN, *total = have;
 *   LG_MORE  a valid prefix; *total = 8 + payload length once the header is
 *            in (the caller never needs to hold more), else 0;
 *   PR_E_PROTOCOL        bad magic, a frame type other than EVENT, bytes
 *                        after the frame (a second frame), FIN too early;
 *   PR_E_UNSUPPORTED_VERSION, PR_E_FRAME_TOO_LARGE  from the header, as for
 *                        issun/1 (max_payload is the server's limit).
 * A bad magic, version or type byte is refused as soon as it arrives; the
 * verdict on a whole stream does not depend on how it was split. */
int lg_event_status(const uint8_t *head, size_t have, int fin, uint32_t max_payload, size_t *total);

/* Decodes a complete event stream: exactly one EVENT frame, nothing after
 * it, its payload a valid RawNetworkEvent (pr_event_decode's rules).
 * Returns 0 or a wire error code as lg_event_status. */
int lg_event_decode(const uint8_t *p, size_t len, uint32_t max_payload, pr_event *out);

#endif
