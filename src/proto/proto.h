/*
 * issun/1 wire codec: frames and payloads (protocol.md sections 2, 3, 4, 5,
 * 6, 7, 10).  No I/O, no allocation: decoders fill structs whose byte fields
 * are borrowed views into the caller's input, encoders write into a
 * caller-provided buffer.  Shared by the server, libissun and the tools.
 *
 * Every decoder is total: for any input it returns 0 and a fully validated
 * value, or a wire error code (PR_E_*), never reads outside [buf, buf+len).
 */
#ifndef ISSUN_PROTO_H
#define ISSUN_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define PR_MAGIC0 0x49u /* 'I' */
#define PR_MAGIC1 0x53u /* 'S' */
#define PR_VERSION 0x01u
#define PR_HDR_LEN 8u

#define PR_DEFAULT_MAX_FRAME_PAYLOAD 65536u
#define PR_MAX_NAME_LEN 64u       /* HELLO.name */
#define PR_MAX_TYPE_NAME_LEN 256u /* RawNetworkEvent.type_name */
#define PR_RESUME_LEN 16u

/* Frame types (protocol section 3). */
enum pr_frame_type {
  PR_FT_EVENT = 0x01,
  PR_FT_HEARTBEAT = 0x02,
  PR_FT_ACK = 0x03,
  PR_FT_HELLO = 0x04,
  PR_FT_ERROR = 0x05,
  PR_FT_ROOM_CREATE = 0x10,
  PR_FT_ROOM_JOIN = 0x11,
  PR_FT_ROOM_LEAVE = 0x12,
  PR_FT_ROOM_LIST = 0x13,
  PR_FT_ROOM_START = 0x14,
  PR_FT_REPLY = 0x20,
  PR_FT_PRESENCE = 0x21,
};

/* Wire error codes (protocol section 10): ERROR.code, REPLY.status and the
 * QUIC application error code.  Decoders return these (0 = success). */
enum pr_code {
  PR_E_NO_ERROR = 0x00,
  PR_E_PROTOCOL = 0x01,
  PR_E_FRAME_TOO_LARGE = 0x02,
  PR_E_UNAUTHORIZED = 0x03,
  PR_E_SERVER_FULL = 0x04,
  PR_E_RATE_LIMITED = 0x05,
  PR_E_TIMEOUT = 0x06,
  PR_E_DUPLICATE_NODE = 0x07,
  PR_E_SESSION_TAKEN_OVER = 0x08,
  PR_E_SHUTTING_DOWN = 0x09,
  PR_E_UNSUPPORTED_VERSION = 0x0A,
  PR_E_SLOW_CONSUMER = 0x0B,
  PR_E_ROOMS_DISABLED = 0x10,
  PR_E_ROOM_NOT_FOUND = 0x11,
  PR_E_ROOM_FULL = 0x12,
  PR_E_ALREADY_IN_ROOM = 0x13,
  PR_E_NOT_IN_ROOM = 0x14,
  PR_E_NOT_HOST = 0x15,
  PR_E_ROOM_NOT_WAITING = 0x16,
  PR_E_TOO_MANY_ROOMS = 0x17,
};

/* "PROTOCOL_ERROR", "ROOM_FULL", ...; "UNKNOWN" for any other value. */
const char *pr_code_name(unsigned code);
/* 1 when the code is fatal per section 10 (connection closes), else 0. */
int pr_code_is_fatal(unsigned code);

enum pr_scope { PR_SCOPE_BROADCAST = 0, PR_SCOPE_TO_SERVER = 1, PR_SCOPE_TARGETED = 2 };
enum pr_room_state { PR_ROOM_WAITING = 0, PR_ROOM_IN_PROGRESS = 1, PR_ROOM_FINISHED = 2 };
enum pr_presence_change { PR_PRESENCE_JOIN = 0, PR_PRESENCE_LEAVE = 1, PR_PRESENCE_HOST = 2 };

/* A borrowed byte range inside the decoded input. */
typedef struct pr_bytes {
  const uint8_t *ptr;
  size_t len;
} pr_bytes;

/* ---- frame header --------------------------------------------------- */

typedef struct pr_hdr {
  uint8_t type;
  uint32_t len; /* payload length */
} pr_hdr;

/* Decodes the 8-byte header at buf (len >= PR_HDR_LEN required, else
 * PR_E_PROTOCOL).  Returns PR_E_PROTOCOL for a wrong magic,
 * PR_E_UNSUPPORTED_VERSION for a good magic with another version,
 * PR_E_FRAME_TOO_LARGE when len > max_payload, else 0. */
int pr_hdr_decode(const uint8_t *buf, size_t len, uint32_t max_payload, pr_hdr *out);

/* Writes a header into buf[0..8). */
void pr_hdr_encode(uint8_t *buf, uint8_t type, uint32_t payload_len);

/* Splits the next whole frame off a byte stream.  Returns 0 and sets
 * *consumed = 0 when buf holds less than a whole frame (but a valid header
 * prefix so far); returns 0 with *consumed = PR_HDR_LEN + hdr.len and
 * *payload pointing into buf when a whole frame is there; returns a wire
 * error code when the header is bad (see pr_hdr_decode).  Never asks for more
 * than PR_HDR_LEN + max_payload bytes of buffering. */
int pr_frame_next(const uint8_t *buf, size_t len, uint32_t max_payload, pr_hdr *hdr,
                  const uint8_t **payload, size_t *consumed);

/* Validates one DATAGRAM: exactly one EVENT frame, header included, with a
 * length that matches and nothing after it.  On success *payload and *plen give
 * the EVENT payload (still to be decoded with pr_event_decode). */
int pr_datagram_check(const uint8_t *buf, size_t len, uint32_t max_payload,
                      const uint8_t **payload, size_t *plen);

/* ---- payloads -------------------------------------------------------- */

typedef struct pr_hello {
  uint64_t node_id;
  int has_resume;
  uint8_t resume[PR_RESUME_LEN];
  int has_token;
  pr_bytes token; /* UTF-8 checked */
  pr_bytes name;  /* UTF-8 checked, <= PR_MAX_NAME_LEN */
} pr_hello;

typedef struct pr_ack {
  uint64_t node_id;
  uint8_t resume[PR_RESUME_LEN];
  uint32_t heartbeat_ms;
  uint32_t max_frame_payload;
  uint32_t max_events_per_sec;
  uint64_t server_time_ms;
} pr_ack;

typedef struct pr_event {
  uint64_t sender;
  uint64_t timestamp;
  uint64_t sequence;
  uint32_t scope;     /* enum pr_scope; any other value is PR_E_PROTOCOL */
  uint64_t target;    /* only meaningful when scope == PR_SCOPE_TARGETED */
  pr_bytes type_name; /* UTF-8, 1..=PR_MAX_TYPE_NAME_LEN bytes */
  pr_bytes payload;
} pr_event;

typedef struct pr_error {
  uint16_t code;
  pr_bytes message; /* UTF-8 checked */
} pr_error;

/* list<(str, str)> kept in its encoded form: `raw` is the whole encoded
 * list (u64 count + items), already validated, and can be copied and
 * re-emitted byte for byte.  Walk it with pr_kv_next. */
typedef struct pr_kvlist {
  uint64_t count;
  pr_bytes raw;
} pr_kvlist;

/* list<u64>, encoded form, validated: `raw` is count + items. */
typedef struct pr_u64list {
  uint64_t count;
  pr_bytes raw;
} pr_u64list;

typedef struct pr_room_create {
  uint32_t request_id;
  pr_bytes name; /* UTF-8 checked */
  uint32_t max_clients;
  pr_kvlist metadata;
} pr_room_create;

typedef struct pr_room_join {
  uint32_t request_id;
  uint64_t room_id;
} pr_room_join;

/* ROOM_LEAVE, ROOM_LIST, ROOM_START carry only a request id. */
typedef struct pr_room_simple {
  uint32_t request_id;
} pr_room_simple;

typedef struct pr_room_info {
  uint64_t room_id;
  pr_bytes name;
  uint8_t state;
  uint64_t host;
  uint32_t max_clients;
  pr_u64list members;
  pr_kvlist metadata;
} pr_room_info;

/* list<RoomInfo> in encoded form; walk with pr_room_next. */
typedef struct pr_reply {
  uint32_t request_id;
  uint16_t status;
  uint64_t room_count;
  pr_bytes rooms_raw; /* the encoded items after the u64 count */
} pr_reply;

typedef struct pr_presence {
  uint64_t room_id;
  uint64_t node_id;
  uint8_t change;
  uint64_t host;
} pr_presence;

typedef struct pr_heartbeat {
  uint64_t time_ms;
} pr_heartbeat;

/* Each decoder: payload must decode exactly (no missing or trailing bytes,
 * str fields valid UTF-8, lengths within the payload, field limits above).
 * Returns 0 or PR_E_PROTOCOL. */
int pr_hello_decode(const uint8_t *p, size_t n, pr_hello *out);
int pr_ack_decode(const uint8_t *p, size_t n, pr_ack *out);
int pr_event_decode(const uint8_t *p, size_t n, pr_event *out);
int pr_error_decode(const uint8_t *p, size_t n, pr_error *out);
int pr_heartbeat_decode(const uint8_t *p, size_t n, pr_heartbeat *out);
int pr_room_create_decode(const uint8_t *p, size_t n, pr_room_create *out);
int pr_room_join_decode(const uint8_t *p, size_t n, pr_room_join *out);
int pr_room_simple_decode(const uint8_t *p, size_t n, pr_room_simple *out);
int pr_reply_decode(const uint8_t *p, size_t n, pr_reply *out);
int pr_presence_decode(const uint8_t *p, size_t n, pr_presence *out);

/* Iterators over validated encoded lists.  `*off` starts at 0; each call
 * returns 1 and the next item, or 0 at the end (or on malformed input, which
 * a validated list never is). */
int pr_kv_next(const pr_kvlist *l, size_t *off, pr_bytes *key, pr_bytes *val);
int pr_u64_next(const pr_u64list *l, size_t *off, uint64_t *v);
int pr_room_next(const pr_reply *r, size_t *off, pr_room_info *out);

/* ---- encoders -------------------------------------------------------- */

/* An output buffer.  Writes past `cap` set `err` and are discarded, so a
 * sequence of puts needs one check at the end. */
typedef struct pr_buf {
  uint8_t *p;
  size_t len;
  size_t cap;
  int err;
} pr_buf;

void pr_buf_init(pr_buf *b, uint8_t *mem, size_t cap);
void pr_put_u8(pr_buf *b, uint8_t v);
void pr_put_u16(pr_buf *b, uint16_t v);
void pr_put_u32(pr_buf *b, uint32_t v);
void pr_put_u64(pr_buf *b, uint64_t v);
void pr_put_raw(pr_buf *b, const void *p, size_t n);
void pr_put_str(pr_buf *b, const void *p, size_t n); /* u64 length + bytes */

/* Frame framing: begin writes a header with a zero length and returns its
 * offset; end patches the length to what was written since. */
size_t pr_frame_begin(pr_buf *b, uint8_t type);
void pr_frame_end(pr_buf *b, size_t start);

/* Whole-frame encoders (header included).  Return the frame length, or 0
 * when it does not fit in cap. */
size_t pr_enc_hello(uint8_t *buf, size_t cap, const pr_hello *h);
size_t pr_enc_ack(uint8_t *buf, size_t cap, const pr_ack *a);
size_t pr_enc_event(uint8_t *buf, size_t cap, const pr_event *e);
size_t pr_enc_error(uint8_t *buf, size_t cap, uint16_t code, const char *msg);
size_t pr_enc_heartbeat(uint8_t *buf, size_t cap, uint64_t time_ms);
size_t pr_enc_room_create(uint8_t *buf, size_t cap, const pr_room_create *c);
size_t pr_enc_room_join(uint8_t *buf, size_t cap, const pr_room_join *j);
/* type is PR_FT_ROOM_LEAVE, PR_FT_ROOM_LIST or PR_FT_ROOM_START */
size_t pr_enc_room_simple(uint8_t *buf, size_t cap, uint8_t type, uint32_t request_id);
size_t pr_enc_presence(uint8_t *buf, size_t cap, const pr_presence *p);

/* REPLY is built incrementally since its room list can be long:
 *   pr_reply_begin(&b, request_id, status) ... pr_reply_add_room(...) ...
 *   pr_reply_finish(&b, &st).
 * add_room returns 0 when the room fit, or -1 and rolls back when it would
 * not fit in b->cap (b stays valid; that room is simply not included). */
typedef struct pr_reply_state {
  size_t frame_start;
  size_t count_off;
  uint64_t count;
} pr_reply_state;
void pr_reply_begin(pr_buf *b, pr_reply_state *st, uint32_t request_id, uint16_t status);
int pr_reply_add_room(pr_buf *b, pr_reply_state *st, uint64_t room_id, const uint8_t *name,
                      size_t name_len, uint8_t state, uint64_t host, uint32_t max_clients,
                      const uint64_t *members, size_t member_count, const pr_bytes *metadata_raw);
void pr_reply_finish(pr_buf *b, pr_reply_state *st);

/* Byte offset of RawNetworkEvent.sender inside a whole EVENT frame: the
 * relay overwrites these 8 bytes and forwards the rest untouched. */
#define PR_EVENT_SENDER_OFF PR_HDR_LEN

/* Little-endian helpers. */
static inline void pr_le64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint64_t pr_rd64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

/* 1 when [p, p+n) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
int pr_utf8_valid(const uint8_t *p, size_t n);

#endif
