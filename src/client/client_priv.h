/*
 * libissun private definitions: the client handle and the helpers shared by
 * client.c (API, session, rooms, reconnect), conn.c (QUIC and UDP I/O) and
 * util.c.  Nothing here is exported from libissun.so.
 */
#ifndef ISSUN_CLIENT_PRIV_H
#define ISSUN_CLIENT_PRIV_H

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "client/client_internal.h"
#include "issun/issun.h"
#include "proto/proto.h"
#include "quic/tls.h"

#define IC_MAX_ADDRS 8
#define IC_TX_BATCH 16
#define IC_PKT_CAP 1500
#define IC_RX_BATCH 16
/* ACK hold: at most this many packets read before an ACK goes (ic_conn_write). */
#define IC_ACK_EVERY 10
#define IC_RX_PKT_CAP 2048
#define IC_CHUNK 65536
#define IC_CHUNK_FREE_KEEP 4
#define IC_MAX_EXTRA_STREAMS 8
#define IC_MAX_PENDING_REQ 256
#define IC_DGRAM_MAX 1500
#define IC_ERR_LEN 512

/* ---- small containers --------------------------------------------------- */

/* A growable byte buffer (realloc'ed: never hand its pointer to ngtcp2). */
typedef struct ic_bytes {
  uint8_t *p;
  size_t len;
  size_t cap;
} ic_bytes;

int ic_bytes_reserve(ic_bytes *b, size_t extra);
void ic_bytes_free(ic_bytes *b);

/* Session-stream send buffer: a list of chunks that never move while
 * ngtcp2 may still reference them (until acknowledged).  Each chunk starts
 * at a frame boundary and holds whole frames (raw test bytes aside). */
typedef struct ic_chunk {
  struct ic_chunk *next;
  uint64_t off; /* stream offset of data[0] */
  size_t len;
  size_t cap;
  uint8_t data[];
} ic_chunk;

typedef struct ic_sendbuf {
  ic_chunk *head;
  ic_chunk *tail;
  ic_chunk *free_list; /* recycled IC_CHUNK chunks */
  size_t nfree;
  uint64_t acked; /* acknowledged up to this stream offset */
  uint64_t sent;  /* handed to ngtcp2 up to this offset */
  uint64_t end;   /* offset after the last queued byte */
} ic_sendbuf;

/* One extra stream opened by the issun__open_stream test hook. */
typedef struct ic_extra_stream {
  int64_t id;
  uint8_t *data;
  size_t len;
  size_t sent;
  int fin;
  int done;
} ic_extra_stream;

typedef struct ic_pending_req {
  uint32_t id;
  uint8_t op; /* issun_room_op */
} ic_pending_req;

/* ---- the client handle ---------------------------------------------------- */

struct issun_client {
  issun_client_settings s; /* string members point at the owned copies below */
  char *name;
  char *token;
  int token_none; /* the get_token callback gave no token: do not retry */
  char *ca_file;
  char *pin;
  char *server_name;
  issun_client_callbacks cb;
  void *ud;
  iq_tls_client *tls;

  issun_state state;
  int had_session; /* an ACK was ever received on this handle */
  char *host;
  uint16_t port;
  char err[IC_ERR_LEN];
  issun_close_info close;

  /* connection attempt */
  struct sockaddr_storage addrs[IC_MAX_ADDRS];
  socklen_t addrlens[IC_MAX_ADDRS];
  int naddrs;
  int addr_idx;
  uint64_t attempt_deadline; /* monotonic ms: the whole attempt (up to ACK) */
  uint64_t addr_deadline;    /* monotonic ms: the handshake on this address */
  int attempt_handshaken;    /* the running attempt completed its handshake */
  int dirty;                 /* frames queued since the last write pass */

  /* QUIC connection */
  int fd;
  struct sockaddr_storage local;
  socklen_t local_len;
  struct sockaddr_storage remote;
  socklen_t remote_len;
  ngtcp2_conn *conn;
  /* ACK hold (settings.ack_delay_ms, see ic_conn_write): a write pass with
   * nothing of ours to send waits until ack_hold_until, so that a bare ACK
   * rides on our next packet instead of going alone. */
  uint64_t ack_hold_ns;      /* 0: off */
  int ack_hold;              /* a write is being held */
  uint64_t ack_hold_until;   /* ns */
  uint64_t seen_recovery_ts; /* congestion_recovery_start_ts at the last write */
  int write_now;             /* a loss timer fired: write at once */
  unsigned rx_since_write;   /* packets read since the last write */
  gnutls_session_t tls_sess;
  ngtcp2_crypto_conn_ref conn_ref;
  int handshake_done;
  int64_t sid; /* session stream id, -1 before it is opened */
  int hello_sent;
  int in_ngtcp2;         /* inside a call into ngtcp2 that may run our callbacks */
  int pending_err;       /* set by an ngtcp2 callback: handled when ngtcp2 returns */
  int pending_close_app; /* 1: close with the wire code below */
  uint16_t pending_close_code;

  ic_sendbuf sb;
  int fin_requested;
  int fin_sent;
  ic_bytes dgq; /* queued DATAGRAMs: [u16 len][bytes]... */
  size_t dgq_head;
  size_t dgq_count;
  ic_bytes offline; /* whole EVENT frames waiting for a session */
  size_t offline_count;
  ic_bytes rx; /* partial session-stream frame */
  uint64_t credit_pending;
  ic_extra_stream extra[IC_MAX_EXTRA_STREAMS];
  int nextra;

  /* timers (monotonic ms) */
  uint64_t last_tx_ms;
  uint64_t last_rx_ms;
  uint64_t next_attempt_ms; /* RECONNECTING without a connection: next try */
  uint32_t attempt_no;

  /* session */
  uint64_t node_id;
  uint8_t resume[PR_RESUME_LEN];
  int has_resume;
  issun_session_info info;
  uint32_t max_frame_payload; /* server's limit for what we send and receive */
  uint32_t hb_ms;             /* heartbeat interval in force */
  int acked;                  /* this connection got its ACK */
  uint64_t seq;
  uint64_t room_id;
  uint64_t room_host;
  uint32_t next_req;
  ic_pending_req pend[IC_MAX_PENDING_REQ];
  size_t pend_head;
  size_t pend_count;

  /* decoded REPLYs: two slots, so the one a room_wait hands out (held)
   * survives later replies until the next poll/wait */
  ic_bytes rarena[2];
  issun_room_reply rep[2];
  int last; /* slot of the most recent reply, -1: none */
  int held; /* slot handed out by room_wait, -1: none */
  uint32_t wait_id;
  int wait_active;
  int wait_done;
  int wait_lost;

  char type_name[PR_MAX_TYPE_NAME_LEN + 1];
  issun_client_stats st;
  int cb_depth;
  int free_pending;
  int close_pending;

  /* test hooks */
  int skip_hello;
  int stop_reading;
  int stop_hb;
  issun__raw_frame_cb raw_cb;
  void *raw_ud;

  struct issun_bus *bus;

  uint8_t *txbuf; /* IC_TX_BATCH packets of IC_PKT_CAP */
  size_t txlen[IC_TX_BATCH];
  int ntx;
  uint8_t *rxbuf; /* IC_RX_BATCH packets of IC_RX_PKT_CAP */
};

/* ---- util.c ------------------------------------------------------------- */

uint64_t ic_now_ms(void); /* monotonic */
uint64_t ic_now_ns(void); /* monotonic, for ngtcp2 */
void ic_seterr(issun_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int ic_fail(issun_client *c, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* 1 when the error ends a session for good (no reconnect). */
int ic_err_is_fatal(int err);

/* ---- conn.c: QUIC + UDP -------------------------------------------------- */

/* Opens a socket to addrs[addr_idx] and starts the QUIC handshake.
 * Returns 0 or an ISSUN_ERR_* with the reason set. */
int ic_conn_open(issun_client *c);
/* Releases the QUIC connection, TLS session and socket (no packet sent). */
void ic_conn_teardown(issun_client *c);
/* Sends CONNECTION_CLOSE (application error code when app is 1), then
 * tears down. */
void ic_conn_close(issun_client *c, int app, uint64_t code, const char *reason);
/* Reads every waiting datagram into ngtcp2.  Returns 0 or an ISSUN_ERR_*
 * meaning the connection is over (reason set). */
int ic_conn_read(issun_client *c);
/* Runs ngtcp2's timer when due.  Same return convention. */
int ic_conn_timer(issun_client *c, uint64_t now_ns);
/* Writes everything that flow and congestion control allow. */
int ic_conn_write(issun_client *c);
/* ngtcp2's next expiry in monotonic ms, or UINT64_MAX. */
uint64_t ic_conn_expiry_ms(issun_client *c);
/* Largest EVENT frame one DATAGRAM can carry now; 0 when none
 * (no connection or the server takes no DATAGRAMs). */
size_t ic_conn_max_dgram(issun_client *c);
/* Rebinds to a new UDP port (test hook). */
int ic_conn_rebind(issun_client *c);

/* send buffer */
uint8_t *ic_sb_reserve(issun_client *c, size_t n); /* NULL: out of memory */
void ic_sb_commit(issun_client *c, size_t n);
size_t ic_sb_queued(const issun_client *c); /* unacknowledged bytes */
void ic_sb_clear(issun_client *c);
void ic_sb_free(issun_client *c);
/* Moves the whole unsent EVENT frames into the offline queue (on a drop). */
void ic_sb_salvage(issun_client *c);

/* ---- client.c: called by conn.c ------------------------------------------ */

/* The handshake completed (pin checked): open the session stream, HELLO. */
int ic_on_handshake(issun_client *c);
/* Bytes arrived on the session stream. */
int ic_on_stream_data(issun_client *c, const uint8_t *data, size_t len);
/* A DATAGRAM arrived. */
int ic_on_datagram(issun_client *c, const uint8_t *data, size_t len);
/* Opens the session stream when stream credit allows (after handshake). */
int ic_open_session_stream(issun_client *c);

/* Runs a user callback with the depth counter held. */
#define IC_CALLBACK(c, fn, ...)                                                                    \
  do {                                                                                             \
    if ((c)->cb.fn) {                                                                              \
      (c)->cb_depth++;                                                                             \
      (c)->cb.fn((c), __VA_ARGS__, (c)->ud);                                                       \
      (c)->cb_depth--;                                                                             \
    }                                                                                              \
  } while (0)

/* ---- bus.c --------------------------------------------------------------- */

void issun_bus__client_gone(struct issun_bus *b);

#endif
