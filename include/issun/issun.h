/*
 * libissun: the C client library of the issun relay (protocol issun/1 over
 * QUIC v1 + TLS 1.3).
 *
 * Shape of the API
 * ----------------
 * - Opaque handles (issun_client, issun_bus), created with *_new and released
 *   with *_free.  Settings and callbacks are copied at creation, strings are
 *   copied, and data handed to a callback is borrowed for that call only.
 * - Every function that can fail returns 0 or a negative ISSUN_ERR_* value
 *   (issun_strerror() names it); issun_client_last_error() gives a readable
 *   sentence for the last failure on that handle.  Nothing aborts.
 * - Poll driven, no hidden threads: issun_client_poll() does all socket I/O
 *   and timers.  Engines with their own loop wait on issun_client_fd() for
 *   readability for at most issun_client_timeout_ms(), then call
 *   issun_client_poll(c, 0).
 *
 * Threading
 * ---------
 * A handle is not thread-safe: use each issun_client (and the issun_bus
 * attached to it) from one thread at a time.  Different handles share
 * nothing and may be used from different threads concurrently.  The library
 * has no global mutable state and starts no threads.
 *
 * Callbacks
 * ---------
 * Callbacks run only inside issun_client_poll(), issun_client_run_for(),
 * issun_client_connect(), issun_client_room_wait(), issun_client_flush(),
 * issun_client_close() and issun_bus_poll_network(), on the calling thread.
 * Inside a callback it is allowed to send events, make room requests, read
 * getters, publish on the bus, and call issun_client_close() (it takes
 * effect when the callback returns).  It is forbidden (they return
 * ISSUN_ERR_IN_CALLBACK) to call issun_client_poll, issun_client_run_for,
 * issun_client_connect, issun_client_connect_async, issun_client_room_wait,
 * issun_client_flush and issun_bus_poll_network.  issun_client_free() inside
 * a callback is deferred: the handle is released when the outermost call
 * returns, and must not be used after that.
 */
#ifndef ISSUN_ISSUN_H
#define ISSUN_ISSUN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define ISSUN_API __attribute__((visibility("default")))
#else
#define ISSUN_API
#endif

#define ISSUN_VERSION_MAJOR 0
#define ISSUN_VERSION_MINOR 1
#define ISSUN_VERSION_PATCH 0
#define ISSUN_VERSION_STRING "0.1.0"

/* Limits of the wire protocol (protocol.md sections 4 and 6). */
#define ISSUN_MAX_NAME_LEN 64       /* display name, bytes */
#define ISSUN_MAX_TYPE_NAME_LEN 256 /* event type name, bytes (1..256) */

/* ---- errors ---------------------------------------------------------- */

/* Library error codes: 0 is success, every failure is negative.  The codes
 * from ISSUN_ERR_PROTOCOL to ISSUN_ERR_TOO_MANY_ROOMS mirror the wire codes
 * of protocol.md section 10 (see issun_error_from_wire()). */
typedef enum issun_error {
  ISSUN_OK = 0,
  ISSUN_ERR_INVALID_ARG = -1,   /* NULL pointer, bad enum value, string too long... */
  ISSUN_ERR_NOMEM = -2,         /* allocation failed */
  ISSUN_ERR_STATE = -3,         /* call not allowed in the handle's current state */
  ISSUN_ERR_NOT_CONNECTED = -4, /* needs a live session (or a connect in progress) */
  ISSUN_ERR_QUEUE_FULL = -5,    /* send buffer or offline queue at its bound */
  ISSUN_ERR_TOO_LARGE = -6,     /* frame over max_frame_payload / datagram does not fit */
  ISSUN_ERR_NO_DATAGRAM = -7,   /* unreliable send but the server takes no DATAGRAMs */
  ISSUN_ERR_IN_CALLBACK = -8,   /* call forbidden inside a callback */
  ISSUN_ERR_RESOLVE = -9,       /* host name did not resolve */
  ISSUN_ERR_SOCKET = -10,       /* socket / network error (unreachable, ...) */
  ISSUN_ERR_REFUSED = -11,      /* connection refused (ICMP port unreachable) */
  ISSUN_ERR_TIMEOUT = -12,      /* connect / wait timed out, or the peer went silent */
  ISSUN_ERR_TLS = -13,          /* TLS handshake failed (ALPN, version, alert...) */
  ISSUN_ERR_CERT = -14,         /* certificate verification or pin check failed */
  ISSUN_ERR_QUIC = -15,         /* QUIC transport error */
  ISSUN_ERR_CLOSED = -16,       /* connection closed (by the app or the peer) */
  ISSUN_ERR_NOT_FOUND = -17,    /* unknown event type (bus) */
  ISSUN_ERR_EXISTS = -18,       /* event type already registered (bus) */
  /* Mirrors of wire codes (ERROR frames, CONNECTION_CLOSE, REPLY.status). */
  ISSUN_ERR_PROTOCOL = -32,            /* PROTOCOL_ERROR (either side) */
  ISSUN_ERR_FRAME_TOO_LARGE = -33,     /* FRAME_TOO_LARGE */
  ISSUN_ERR_UNAUTHORIZED = -34,        /* UNAUTHORIZED */
  ISSUN_ERR_SERVER_FULL = -35,         /* SERVER_FULL */
  ISSUN_ERR_RATE_LIMITED = -36,        /* RATE_LIMITED */
  ISSUN_ERR_SERVER_TIMEOUT = -37,      /* TIMEOUT sent by the server */
  ISSUN_ERR_DUPLICATE_NODE = -38,      /* DUPLICATE_NODE */
  ISSUN_ERR_SESSION_TAKEN_OVER = -39,  /* SESSION_TAKEN_OVER */
  ISSUN_ERR_SHUTTING_DOWN = -40,       /* SHUTTING_DOWN */
  ISSUN_ERR_UNSUPPORTED_VERSION = -41, /* UNSUPPORTED_VERSION */
  ISSUN_ERR_SLOW_CONSUMER = -42,       /* SLOW_CONSUMER */
  ISSUN_ERR_ROOMS_DISABLED = -48,      /* ROOMS_DISABLED */
  ISSUN_ERR_ROOM_NOT_FOUND = -49,      /* ROOM_NOT_FOUND */
  ISSUN_ERR_ROOM_FULL = -50,           /* ROOM_FULL */
  ISSUN_ERR_ALREADY_IN_ROOM = -51,     /* ALREADY_IN_ROOM */
  ISSUN_ERR_NOT_IN_ROOM = -52,         /* NOT_IN_ROOM */
  ISSUN_ERR_NOT_HOST = -53,            /* NOT_HOST */
  ISSUN_ERR_ROOM_NOT_WAITING = -54,    /* ROOM_NOT_WAITING */
  ISSUN_ERR_TOO_MANY_ROOMS = -55,      /* TOO_MANY_ROOMS */
  ISSUN_ERR_SERVER = -63               /* an unknown wire code from the server */
} issun_error;

/* Wire error codes (protocol.md section 10), as carried by ERROR.code,
 * REPLY.status and the QUIC application error code of CONNECTION_CLOSE. */
typedef enum issun_wire_code {
  ISSUN_WIRE_NO_ERROR = 0x00,
  ISSUN_WIRE_PROTOCOL_ERROR = 0x01,
  ISSUN_WIRE_FRAME_TOO_LARGE = 0x02,
  ISSUN_WIRE_UNAUTHORIZED = 0x03,
  ISSUN_WIRE_SERVER_FULL = 0x04,
  ISSUN_WIRE_RATE_LIMITED = 0x05,
  ISSUN_WIRE_TIMEOUT = 0x06,
  ISSUN_WIRE_DUPLICATE_NODE = 0x07,
  ISSUN_WIRE_SESSION_TAKEN_OVER = 0x08,
  ISSUN_WIRE_SHUTTING_DOWN = 0x09,
  ISSUN_WIRE_UNSUPPORTED_VERSION = 0x0A,
  ISSUN_WIRE_SLOW_CONSUMER = 0x0B,
  ISSUN_WIRE_ROOMS_DISABLED = 0x10,
  ISSUN_WIRE_ROOM_NOT_FOUND = 0x11,
  ISSUN_WIRE_ROOM_FULL = 0x12,
  ISSUN_WIRE_ALREADY_IN_ROOM = 0x13,
  ISSUN_WIRE_NOT_IN_ROOM = 0x14,
  ISSUN_WIRE_NOT_HOST = 0x15,
  ISSUN_WIRE_ROOM_NOT_WAITING = 0x16,
  ISSUN_WIRE_TOO_MANY_ROOMS = 0x17
} issun_wire_code;

/* A static English name for a library error ("invalid argument", ...);
 * never NULL, "unknown error" for a value that is not an issun_error. */
ISSUN_API const char *issun_strerror(int err);

/* The protocol name of a wire code ("SERVER_FULL", ...); never NULL,
 * "UNKNOWN" for a code protocol.md does not define. */
ISSUN_API const char *issun_wire_code_name(unsigned code);

/* Maps a wire code to the library error: 0 for NO_ERROR, the matching
 * ISSUN_ERR_* mirror, or ISSUN_ERR_SERVER for an unknown code. */
ISSUN_API int issun_error_from_wire(unsigned code);

/* The library version, "0.1.0"; never NULL. */
ISSUN_API const char *issun_version(void);

/* ---- events ---------------------------------------------------------- */

/* Who receives an event (RawNetworkEvent.scope). */
typedef enum issun_scope {
  ISSUN_SCOPE_BROADCAST = 0, /* every other member of my room (or every roomless session) */
  ISSUN_SCOPE_TO_SERVER = 1, /* the server only (not relayed) */
  ISSUN_SCOPE_TARGETED = 2   /* one node, given as `target` */
} issun_scope;

/* How an event travels. */
typedef enum issun_delivery {
  ISSUN_RELIABLE = 0,  /* in order on the session stream */
  ISSUN_UNRELIABLE = 1 /* one QUIC DATAGRAM; may be lost; must fit one packet */
} issun_delivery;

/* Metadata of an event, received or published. */
typedef struct issun_event_meta {
  uint64_t sender;       /* NodeId of the origin (own id, or 0 for a detached bus) */
  uint64_t timestamp_ms; /* Unix time in ms at the origin */
  uint64_t sequence;     /* the origin's per-client counter */
  issun_scope scope;     /* scope it was sent with */
  uint64_t target;       /* the target NodeId when scope is ISSUN_SCOPE_TARGETED, else 0 */
  int reliable;          /* 1: came on the session stream, 0: came in a DATAGRAM */
  int local;             /* bus only: 1 when published on this bus, 0 when remote */
} issun_event_meta;

/* One event.  Everything is borrowed: valid during the callback that gets
 * it, or until the next issun_bus_dispatch() for a bus reader. */
typedef struct issun_event {
  const char *type_name; /* NUL-terminated */
  size_t type_name_len;
  const void *payload; /* never NULL (points at zero bytes when payload_len is 0) */
  size_t payload_len;
  issun_event_meta meta;
} issun_event;

/* ---- rooms ----------------------------------------------------------- */

typedef enum issun_room_state {
  ISSUN_ROOM_WAITING = 0,
  ISSUN_ROOM_IN_PROGRESS = 1,
  ISSUN_ROOM_FINISHED = 2
} issun_room_state;

typedef enum issun_room_op {
  ISSUN_ROOM_OP_CREATE = 1,
  ISSUN_ROOM_OP_JOIN = 2,
  ISSUN_ROOM_OP_LEAVE = 3,
  ISSUN_ROOM_OP_LIST = 4,
  ISSUN_ROOM_OP_START = 5
} issun_room_op;

/* A metadata pair (strings NUL-terminated). */
typedef struct issun_kv {
  const char *key;
  const char *value;
} issun_kv;

typedef struct issun_room_info {
  uint64_t room_id;
  const char *name;
  issun_room_state state;
  uint64_t host;
  uint32_t max_clients;
  const uint64_t *members;
  size_t member_count;
  const issun_kv *metadata;
  size_t metadata_count;
} issun_room_info;

/* The answer to one room request. */
typedef struct issun_room_reply {
  uint32_t request_id;
  issun_room_op op; /* the request it answers */
  uint16_t status;  /* wire code: 0 success, else ISSUN_WIRE_ROOM_* ... */
  int error;        /* issun_error_from_wire(status) */
  const issun_room_info *rooms;
  size_t room_count;
} issun_room_reply;

typedef enum issun_presence_change {
  ISSUN_PRESENCE_JOIN = 0,
  ISSUN_PRESENCE_LEAVE = 1,
  ISSUN_PRESENCE_HOST = 2
} issun_presence_change;

typedef struct issun_presence {
  uint64_t room_id;
  uint64_t node_id; /* who joined/left, or the new host */
  issun_presence_change change;
  uint64_t host; /* the room's host after the change */
} issun_presence;

/* ---- the client ------------------------------------------------------ */

typedef struct issun_client issun_client;

/* Connection state, reported by the state callback. */
typedef enum issun_state {
  ISSUN_STATE_IDLE = 0,         /* never connected, or closed by issun_client_close() */
  ISSUN_STATE_CONNECTING = 1,   /* first connect: resolve, QUIC/TLS handshake, HELLO */
  ISSUN_STATE_CONNECTED = 2,    /* ACK received: the session is live */
  ISSUN_STATE_RECONNECTING = 3, /* the session dropped; backing off or re-handshaking */
  ISSUN_STATE_FAILED = 4        /* a connect failed or a fatal error ended the session */
} issun_state;

typedef struct issun_client_settings {
  const char *name;  /* display name sent in HELLO, <= 64 bytes; NULL = "" */
  uint64_t node_id;  /* NodeId asked for in the first HELLO; 0 = assigned */
  const char *token; /* JWT for servers with authentication; NULL = none */
  /* Certificate verification (on by default, against the system CA store). */
  const char *ca_file;             /* PEM CA bundle instead of the system store; NULL = system */
  const char *pin_sha256;          /* SHA-256 of the server's leaf cert, hex (colons optional) */
  int insecure;                    /* 1: no verification at all (development only) */
  const char *server_name;         /* name to verify and send as SNI; NULL = the host given */
  uint32_t connect_timeout_ms;     /* per attempt: handshake, HELLO, ACK; default 10000 */
  uint32_t idle_timeout_ms;        /* QUIC max_idle_timeout; default 30000 */
  uint32_t heartbeat_ms;           /* used until ACK gives the server's; default 5000 */
  int enable_datagrams;            /* 1 (default): advertise DATAGRAM support */
  size_t send_buffer_bytes;        /* bound on queued session-stream bytes; default 4 MiB */
  size_t max_datagram_queue;       /* DATAGRAMs waiting for the next write; default 256 */
  size_t offline_queue_events;     /* reliable events kept while disconnected; default 1024 */
  size_t offline_queue_bytes;      /* ... and their total bytes; default 1 MiB */
  int reconnect;                   /* 1 (default): reconnect and resume after a drop */
  uint32_t reconnect_min_ms;       /* first backoff delay; default 200 */
  uint32_t reconnect_max_ms;       /* backoff cap; default 10000 */
  uint32_t reconnect_max_attempts; /* 0 (default): unlimited */
  /* How long a bare QUIC ACK may wait for a packet of ours to ride on, in
   * ms: 0 = default (10), at most 20, -1 = send ACKs as soon as the QUIC
   * stack would (every packet or two on a fast link).  After 10 packets
   * received, or when a loss is being recovered, the ACK goes at once.
   * Fewer ACK packets means less upstream traffic and less work for the
   * relay; the price is that the relay notices a lost packet of its own up
   * to this much later. */
  int32_t ack_delay_ms;
} issun_client_settings;

/* Callbacks; any may be NULL.  All arguments are borrowed for the call. */
typedef struct issun_client_callbacks {
  /* State changes.  `err` is 0, or why the session dropped / the connect
   * failed (issun_client_last_error() has the sentence). */
  void (*on_state)(issun_client *c, issun_state state, int err, void *user_data);
  /* An event relayed by the server. */
  void (*on_event)(issun_client *c, const issun_event *ev, void *user_data);
  /* The REPLY to a room request. */
  void (*on_room_reply)(issun_client *c, const issun_room_reply *r, void *user_data);
  /* A PRESENCE change in the current room. */
  void (*on_presence)(issun_client *c, const issun_presence *p, void *user_data);
  /* An ERROR frame from the server (fatal ones are followed by a close;
   * RATE_LIMITED is not fatal).  `message` is NUL-terminated. */
  void (*on_server_error)(issun_client *c, uint16_t code, const char *message, void *user_data);
  /* Authentication (docs/security.md): when set, called before every
   * connection attempt (the first connect and each reconnect) for the token
   * to send in HELLO, so an expired one can be replaced.  Return a
   * NUL-terminated token (the library copies it before using it; it need
   * only stay valid until the callback returns), or NULL when no token can
   * be had: the attempt then fails with ISSUN_ERR_UNAUTHORIZED and the
   * client gives up (state FAILED).  With this callback set, a reconnect
   * refused with UNAUTHORIZED is retried (with backoff, within
   * reconnect_max_attempts) instead of being final.  The token must be valid
   * UTF-8, else the attempt fails as for NULL.  Runs on the calling thread
   * like any callback; a blocking fetch blocks the poll. */
  const char *(*get_token)(issun_client *c, void *user_data);
} issun_client_callbacks;

/* What the server told us in ACK, plus transport facts. */
typedef struct issun_session_info {
  uint64_t node_id;
  uint32_t heartbeat_ms;
  uint32_t max_frame_payload;
  uint32_t max_events_per_sec;
  uint64_t server_time_ms;
  int datagrams;               /* 1 when the server accepts DATAGRAMs */
  size_t max_datagram_payload; /* largest EVENT frame (header included) one DATAGRAM holds now */
  int resumed;                 /* 1 when this session came from a reconnect with resume */
} issun_session_info;

/* Why the last connection ended (or failed). */
typedef struct issun_close_info {
  int error;                  /* the issun_error that ended it, 0 if none */
  char reason[256];           /* its sentence (what issun_client_last_error() said then) */
  int has_server_error;       /* a fatal (or NO_ERROR) ERROR frame arrived */
  uint16_t server_error_code; /* its code */
  char server_error_message[256];
  int has_close;    /* a CONNECTION_CLOSE arrived from the server */
  int close_is_app; /* 1: application error code (wire code), 0: transport */
  uint64_t close_code;
  char close_reason[256];
} issun_close_info;

typedef struct issun_client_stats {
  uint64_t events_sent; /* events accepted by issun_client_send (sent or queued) */
  uint64_t events_received;
  uint64_t datagrams_sent;
  uint64_t datagrams_received;
  uint64_t bytes_queued;    /* session-stream bytes not yet acknowledged */
  uint64_t offline_queued;  /* events waiting for a reconnect */
  uint64_t offline_dropped; /* events refused because the offline queue was full */
  uint64_t send_refused;    /* sends refused (queue full, too large, no datagram) */
  uint64_t reconnects;      /* successful reconnects */
  uint64_t reconnect_attempts;
  uint64_t server_errors; /* ERROR frames received */
  uint64_t packets_sent;     /* UDP datagrams sent (every connection attempt) */
  uint64_t packets_received; /* UDP datagrams received */
} issun_client_stats;

/* Fills *s with the defaults above.  Returns 0 or ISSUN_ERR_INVALID_ARG. */
ISSUN_API int issun_client_settings_default(issun_client_settings *s);

/* Creates a client.  `settings` (NULL = defaults) and `callbacks` (NULL =
 * none) are copied, strings included; user_data is passed to every
 * callback.  Validates the settings (name length, pin format, CA file
 * readable...).  No network I/O happens here.  Returns 0 and *out, or
 * ISSUN_ERR_INVALID_ARG / ISSUN_ERR_NOMEM / ISSUN_ERR_CERT with *out = NULL
 * (use issun_client_new_ex() to get the reason as text). */
ISSUN_API int issun_client_new(issun_client **out, const issun_client_settings *settings,
                               const issun_client_callbacks *callbacks, void *user_data);

/* Like issun_client_new, with the reason of a failure written to err
 * (NUL-terminated, at most errlen bytes). */
ISSUN_API int issun_client_new_ex(issun_client **out, const issun_client_settings *settings,
                                  const issun_client_callbacks *callbacks, void *user_data,
                                  char *err, size_t errlen);

/* Replaces the token sent in HELLO (settings.token) from the next
 * connection attempt on; NULL removes it.  The string is copied.  A
 * get_token callback, when set, still has the last word before each
 * attempt.  Returns 0, ISSUN_ERR_INVALID_ARG (NULL client, token not
 * UTF-8) or ISSUN_ERR_NOMEM. */
ISSUN_API int issun_client_set_token(issun_client *c, const char *token);

/* Closes the connection without waiting (CONNECTION_CLOSE with NO_ERROR)
 * and frees everything.  NULL is ignored.  Inside a callback the release is
 * deferred until the outermost poll returns. */
ISSUN_API void issun_client_free(issun_client *c);

/* Connects to host:port and blocks until the session is live (ACK) or the
 * connect fails or settings.connect_timeout_ms passes.  `host` is a name or
 * an IPv4/IPv6 literal (getaddrinfo; every address is tried in turn).
 * Allowed in state IDLE or FAILED.  Returns 0, or ISSUN_ERR_RESOLVE,
 * _SOCKET, _REFUSED, _TIMEOUT, _TLS, _CERT, _QUIC, _SERVER_FULL,
 * _UNAUTHORIZED, _DUPLICATE_NODE, ... with the reason in
 * issun_client_last_error(); ISSUN_ERR_STATE when already connecting or
 * connected; ISSUN_ERR_IN_CALLBACK inside a callback. */
ISSUN_API int issun_client_connect(issun_client *c, const char *host, uint16_t port);

/* Starts connecting and returns at once (after name resolution, which may
 * block on DNS).  Progress happens in issun_client_poll(); the state
 * callback reports ISSUN_STATE_CONNECTED or ISSUN_STATE_FAILED.  Same
 * errors as issun_client_connect for what can fail before any packet. */
ISSUN_API int issun_client_connect_async(issun_client *c, const char *host, uint16_t port);

/* Ends the session: queued data is flushed as far as flow control allows in
 * one write, then CONNECTION_CLOSE (NO_ERROR) is sent; the state becomes
 * IDLE and no reconnect happens.  The handle can connect again.  Returns 0,
 * or ISSUN_ERR_INVALID_ARG. */
ISSUN_API int issun_client_close(issun_client *c);

/* Does all pending work: reads datagrams, runs QUIC timers, heartbeats,
 * liveness and reconnect timers, writes queued data, and calls callbacks.
 * Waits for socket input at most timeout_ms (0: do not wait, -1: wait for
 * the next timer).  Never blocks longer than asked.  Returns 0 (also when
 * the connection dropped: see the state callback), ISSUN_ERR_INVALID_ARG,
 * ISSUN_ERR_IN_CALLBACK, or ISSUN_ERR_STATE when the client is IDLE/FAILED
 * and timeout_ms was -1 (nothing would ever wake it). */
ISSUN_API int issun_client_poll(issun_client *c, int timeout_ms);

/* The convenience loop for simple programs: keeps polling (I/O, timers,
 * callbacks) until duration_ms have passed, whatever arrives meanwhile.
 * Returns 0, ISSUN_ERR_INVALID_ARG (NULL, negative duration),
 * ISSUN_ERR_IN_CALLBACK, or ISSUN_ERR_CLOSED when the handle was freed from
 * a callback. */
ISSUN_API int issun_client_run_for(issun_client *c, int duration_ms);

/* The UDP socket to watch for readability, or -1 when there is none (idle,
 * or between reconnect attempts).  It can change after a reconnect: ask
 * again every loop turn. */
ISSUN_API int issun_client_fd(const issun_client *c);

/* Milliseconds until issun_client_poll() must run again for timers (0 when
 * overdue), or -1 when there is no timer (idle). */
ISSUN_API int issun_client_timeout_ms(const issun_client *c);

/* Polls until every queued reliable byte has been acknowledged by the server
 * or timeout_ms passes.  Returns 0, ISSUN_ERR_TIMEOUT, ISSUN_ERR_NOT_CONNECTED,
 * ISSUN_ERR_IN_CALLBACK or ISSUN_ERR_INVALID_ARG. */
ISSUN_API int issun_client_flush(issun_client *c, int timeout_ms);

ISSUN_API issun_state issun_client_state(const issun_client *c);

/* Our NodeId, or 0 before the first ACK.  Kept across reconnects. */
ISSUN_API uint64_t issun_client_node_id(const issun_client *c);

/* The room we are in (0: none) and its host (0: none), tracked from replies
 * and PRESENCE. */
ISSUN_API uint64_t issun_client_room_id(const issun_client *c);
ISSUN_API uint64_t issun_client_room_host(const issun_client *c);

/* The last error sentence of this handle ("" when none); valid until the
 * next call on the handle.  NULL c gives "invalid argument". */
ISSUN_API const char *issun_client_last_error(const issun_client *c);

/* Copies the session facts (zeroed when no ACK yet).  Returns 0 or
 * ISSUN_ERR_INVALID_ARG. */
ISSUN_API int issun_client_session_info(const issun_client *c, issun_session_info *out);

/* Copies why the last connection ended or failed.  Returns 0 or
 * ISSUN_ERR_INVALID_ARG. */
ISSUN_API int issun_client_close_info(const issun_client *c, issun_close_info *out);

/* Copies the counters.  Returns 0 or ISSUN_ERR_INVALID_ARG. */
ISSUN_API int issun_client_stats_get(const issun_client *c, issun_client_stats *out);

/* Sends one event.  type_name: 1..256 bytes, NUL-terminated.  target: the
 * NodeId for ISSUN_SCOPE_TARGETED (non-zero), ignored otherwise.  The
 * payload is copied.  *sequence_out (may be NULL) gets the event's sequence.
 *
 * Reliable: queued on the session stream and written on the next poll (many
 * events share a packet).  While CONNECTING/RECONNECTING the event waits in
 * the offline queue (bounded by offline_queue_events/_bytes) and is sent
 * after the ACK.  Unreliable: needs a live session; one DATAGRAM, written on
 * the next poll.
 *
 * Returns 0, or ISSUN_ERR_INVALID_ARG (NULL, bad scope/delivery, type name
 * empty or too long, target 0), ISSUN_ERR_NOT_CONNECTED (IDLE/FAILED, or an
 * unreliable send without a live session), ISSUN_ERR_TOO_LARGE (over the
 * server's max_frame_payload, or a DATAGRAM that does not fit),
 * ISSUN_ERR_NO_DATAGRAM, ISSUN_ERR_QUEUE_FULL (send buffer or offline queue
 * at its bound; counted), ISSUN_ERR_NOMEM. */
ISSUN_API int issun_client_send(issun_client *c, const char *type_name, issun_scope scope,
                                uint64_t target, issun_delivery delivery, const void *payload,
                                size_t payload_len, uint64_t *sequence_out);

/* Room requests.  Each needs a live session (else ISSUN_ERR_NOT_CONNECTED;
 * room requests are never queued offline), queues one frame, and gives its
 * request id in *request_id (may be NULL).  The REPLY comes through
 * on_room_reply, or wait for it with issun_client_room_wait().  Errors:
 * ISSUN_ERR_INVALID_ARG, ISSUN_ERR_NOT_CONNECTED, ISSUN_ERR_TOO_LARGE,
 * ISSUN_ERR_QUEUE_FULL, ISSUN_ERR_NOMEM. */

/* ROOM_CREATE: name (NUL-terminated), max_clients (0 = server default) and
 * metadata pairs (may be NULL when count is 0). */
ISSUN_API int issun_client_room_create(issun_client *c, const char *name, uint32_t max_clients,
                                       const issun_kv *metadata, size_t metadata_count,
                                       uint32_t *request_id);
/* ROOM_JOIN of room_id. */
ISSUN_API int issun_client_room_join(issun_client *c, uint64_t room_id, uint32_t *request_id);
/* ROOM_LEAVE of the current room. */
ISSUN_API int issun_client_room_leave(issun_client *c, uint32_t *request_id);
/* ROOM_LIST: the rooms waiting for players. */
ISSUN_API int issun_client_room_list(issun_client *c, uint32_t *request_id);
/* ROOM_START of the current room (host only). */
ISSUN_API int issun_client_room_start(issun_client *c, uint32_t *request_id);

/* Polls until the REPLY for request_id arrives (on_room_reply is still
 * called) or timeout_ms passes (-1: no limit).  Returns 0 when the reply
 * arrived, whatever its status: the outcome is (*reply)->status (wire code,
 * 0 = success) and (*reply)->error (its ISSUN_ERR_* mirror).  *reply (may be
 * NULL) points at the reply, valid until the next poll, wait or free on this
 * handle.  A reply that arrived during an earlier poll is still found if no
 * later reply came since (wait for one request before making the next, or
 * use the callback).  Errors: ISSUN_ERR_TIMEOUT, ISSUN_ERR_CLOSED (the
 * connection dropped before the reply), ISSUN_ERR_NOT_CONNECTED,
 * ISSUN_ERR_STATE (no such request pending), ISSUN_ERR_IN_CALLBACK,
 * ISSUN_ERR_INVALID_ARG. */
ISSUN_API int issun_client_room_wait(issun_client *c, uint32_t request_id, int timeout_ms,
                                     const issun_room_reply **reply);

/* ---- the event bus --------------------------------------------------- */

/* The seed's EventBus: typed events, published locally and (for networked
 * types, with a client attached) sent; remote events are brought in by
 * issun_bus_poll_network(); issun_bus_dispatch() ends the frame.  Events
 * published or received during frame N are readable after the dispatch that
 * ends frame N, until the next dispatch drops them.  Payloads are copied into
 * arenas that are reused frame after frame. */
typedef struct issun_bus issun_bus;

/* An event type id from issun_bus_register(). */
typedef uint32_t issun_event_type;

/* Iterator over this frame's events of one type (fields private). */
typedef struct issun_bus_reader {
  const issun_bus *bus;
  uint32_t type;
  uint32_t next;
  uint64_t generation;
} issun_bus_reader;

typedef struct issun_bus_stats {
  uint64_t published;       /* local publishes */
  uint64_t received;        /* remote events taken in */
  uint64_t unknown_dropped; /* remote events of a type not registered as networked */
  uint64_t send_failed;     /* networked publishes the client refused */
  uint64_t dispatches;
} issun_bus_stats;

/* Creates a bus, attached to `client` when not NULL.  Returns 0,
 * ISSUN_ERR_INVALID_ARG, ISSUN_ERR_NOMEM, or ISSUN_ERR_STATE when the client
 * already has a bus. */
ISSUN_API int issun_bus_new(issun_bus **out, issun_client *client);

/* Detaches and frees the bus.  NULL is ignored.  Must be called before the
 * attached client is freed (or after; the client detaches itself). */
ISSUN_API void issun_bus_free(issun_bus *b);

/* Attaches the bus to a client (NULL detaches).  One bus per client.
 * Returns 0, ISSUN_ERR_INVALID_ARG, or ISSUN_ERR_STATE when that client
 * already has another bus. */
ISSUN_API int issun_bus_attach(issun_bus *b, issun_client *client);

/* Registers an event type.  type_name: 1..256 bytes, unique on the bus.
 * networked 1: published events are sent (with scope and delivery) when a
 * client is attached, and remote events of this name are taken in; 0: local
 * only.  *out gets its id.  Returns 0, ISSUN_ERR_INVALID_ARG, ISSUN_ERR_EXISTS,
 * ISSUN_ERR_NOMEM. */
ISSUN_API int issun_bus_register(issun_bus *b, const char *type_name, issun_scope scope,
                                 issun_delivery delivery, int networked, issun_event_type *out);

/* Finds a registered type by name.  Returns 0, ISSUN_ERR_INVALID_ARG or
 * ISSUN_ERR_NOT_FOUND. */
ISSUN_API int issun_bus_lookup(const issun_bus *b, const char *type_name, issun_event_type *out);

/* Publishes an event of a registered type (payload copied).  It becomes
 * readable after the next dispatch.  For a networked type with a client
 * attached it is also sent with the type's scope and delivery (`target` is
 * used for ISSUN_SCOPE_TARGETED types, ignored otherwise).  Returns 0;
 * ISSUN_ERR_INVALID_ARG / _NOT_FOUND / _NOMEM (nothing published); or an
 * issun_client_send() error: the event was published locally but not sent
 * (counted in send_failed). */
ISSUN_API int issun_bus_publish(issun_bus *b, issun_event_type type, const void *payload,
                                size_t len);
ISSUN_API int issun_bus_publish_to(issun_bus *b, issun_event_type type, uint64_t target,
                                   const void *payload, size_t len);

/* Polls the attached client (issun_client_poll(c, 0)), taking remote events
 * of networked types into the current frame.  Without a client it does
 * nothing and returns 0.  Returns 0 or an issun_client_poll() error. */
ISSUN_API int issun_bus_poll_network(issun_bus *b);

/* Ends the frame: the events published/received since the last dispatch
 * become readable, the previously readable ones are dropped (their memory is
 * reused).  Outstanding readers are invalidated.  Returns 0 or
 * ISSUN_ERR_INVALID_ARG. */
ISSUN_API int issun_bus_dispatch(issun_bus *b);

/* Starts a reader over this frame's readable events of `type`, local and
 * remote alike, in arrival order.  Returns 0, ISSUN_ERR_INVALID_ARG or
 * ISSUN_ERR_NOT_FOUND. */
ISSUN_API int issun_bus_reader_init(issun_bus_reader *r, const issun_bus *b, issun_event_type type);

/* Gives the next event (borrowed until the next dispatch).  Returns 1 and
 * *ev, 0 at the end, or ISSUN_ERR_INVALID_ARG / ISSUN_ERR_STATE (a dispatch
 * happened since the reader started). */
ISSUN_API int issun_bus_reader_next(issun_bus_reader *r, issun_event *ev);

/* Number of readable events of `type` this frame (0 for an unknown type). */
ISSUN_API size_t issun_bus_count(const issun_bus *b, issun_event_type type);

/* Copies the counters.  Returns 0 or ISSUN_ERR_INVALID_ARG. */
ISSUN_API int issun_bus_stats_get(const issun_bus *b, issun_bus_stats *out);

#ifdef __cplusplus
}
#endif

#endif
