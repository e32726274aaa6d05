/*
 * Server configuration: defaults, environment variables (ISSUN_*), command
 * line flags (flags win over the environment), --help.  Every bad value is
 * reported with the name of the variable or flag that carried it.
 */
#ifndef ISSUN_SERVER_CONFIG_H
#define ISSUN_SERVER_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define CFG_PATH_MAX 1024
#define CFG_SECRET_MAX 1024 /* = AUTH_MAX_SECRET */
#define CFG_SECRET_MIN 32   /* = AUTH_MIN_SECRET (RFC 7518 3.2) */

enum cfg_log_level { LOG_LVL_ERROR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG, LOG_LVL_TRACE };
enum cfg_log_format { LOG_FMT_TEXT = 0, LOG_FMT_JSON };

typedef struct srv_config {
  char bind_addr[128];            /* ISSUN_BIND_ADDR / --bind, "0.0.0.0:5000", "[::]:5000" */
  struct sockaddr_storage bind;   /* parsed form of bind_addr */
  socklen_t bind_len;
  char cert_path[CFG_PATH_MAX];   /* ISSUN_CERT_PATH / --cert, "certs/cert.pem" */
  char key_path[CFG_PATH_MAX];    /* ISSUN_KEY_PATH / --key, "certs/key.pem" */
  int cert_path_set;              /* 1 when given explicitly (env or flag): a missing file is then an error */
  uint32_t max_clients;           /* ISSUN_MAX_CLIENTS / --max-clients, 1000 */
  uint32_t heartbeat_ms;          /* ISSUN_HEARTBEAT_INTERVAL / --heartbeat, 5 s; "5", "5s", "250ms" */
  uint32_t hello_timeout_ms;      /* ISSUN_HELLO_TIMEOUT / --hello-timeout, 10 s; same syntax */
  int enable_rooms;               /* ISSUN_ENABLE_ROOMS / --enable-rooms, true; true/false/1/0/yes/no/on/off */
  uint32_t max_rooms;             /* ISSUN_MAX_ROOMS / --max-rooms, 1000 */
  uint32_t default_room_size;     /* ISSUN_DEFAULT_ROOM_SIZE / --default-room-size, 8 */
  uint32_t max_room_size;         /* ISSUN_MAX_ROOM_SIZE / --max-room-size, 1000 (requests above are clamped) */
  uint32_t max_events_per_sec;    /* ISSUN_MAX_EVENTS_PER_SEC / --max-events-per-sec, 100 */
  uint32_t max_frame_payload;     /* ISSUN_MAX_FRAME_PAYLOAD / --max-frame-payload, 65536 (>= 1024, <= 16 MiB) */
  uint64_t slow_consumer_bytes;   /* ISSUN_SLOW_CONSUMER_BYTES / --slow-consumer-bytes, 1048576 */
  uint32_t flush_us;              /* ISSUN_FLUSH_US / --flush-us, 1000 (0: write at the end of every loop turn) */
  int flush_mode;                 /* ISSUN_FLUSH_MODE / --flush-mode, auto|always */
  uint32_t flush_max_us;          /* ISSUN_FLUSH_MAX_US / --flush-max-us, 8000 (<= flush_us: never widened) */
  uint32_t flush_busy_pct;        /* ISSUN_FLUSH_BUSY_PCT / --flush-busy-pct, 80 (1..99) */
  int cc_algo;                    /* ISSUN_CC / --cc, enum cfg_cc */
  uint16_t metrics_port;          /* ISSUN_METRICS_PORT / --metrics-port, 9090, 0 disables */
  char metrics_addr[64];          /* ISSUN_METRICS_ADDR / --metrics-addr, IP literal; "" = the bind host */
  int log_level;                  /* ISSUN_LOG (or RUST_LOG) / --log, info; error|warn|info|debug|trace, or "issun_server=debug,..." */
  int log_format;                 /* ISSUN_LOG_FORMAT / --log-format, text|json */
  int allow_legacy;               /* ISSUN_ALLOW_LEGACY / --allow-legacy, true: serve no-ALPN clients
                                   * (issun's Rust QuicClientBackend); always off with auth */

  /* Security (docs/security.md). */
  int auth_enabled;               /* 1 when a secret is configured: HELLO needs a valid token and
                                   * legacy (no-ALPN) connections are refused */
  uint8_t auth_secret[CFG_SECRET_MAX]; /* ISSUN_AUTH_SECRET / --auth-secret, or the content of */
  size_t auth_secret_len;         /* ISSUN_AUTH_SECRET_FILE / --auth-secret-file; >= 32 bytes */
  char auth_secret_file[CFG_PATH_MAX];
  uint32_t auth_leeway_s;         /* ISSUN_AUTH_LEEWAY / --auth-leeway, 30 (seconds past exp) */
  uint32_t max_conns_per_ip;      /* ISSUN_MAX_CONNS_PER_IP / --max-conns-per-ip, 256, 0 = off */
  uint32_t max_handshakes_per_ip; /* ISSUN_MAX_HANDSHAKES_PER_IP / --max-handshakes-per-ip, 100/s, 0 = off */
  int retry_mode;                 /* ISSUN_RETRY / --retry, auto|always|never */
  uint32_t retry_threshold;       /* ISSUN_RETRY_THRESHOLD / --retry-threshold, 500 new handshakes/s */
  uint32_t handshake_timeout_ms;  /* ISSUN_HANDSHAKE_TIMEOUT / --handshake-timeout, 10 s (QUIC+TLS) */
  uint32_t max_room_name;         /* ISSUN_MAX_ROOM_NAME / --max-room-name, 128 bytes */
  uint32_t max_room_metadata;     /* ISSUN_MAX_ROOM_METADATA / --max-room-metadata, 4096 bytes */

  /* Clustering over NATS (docs/clustering.md): off while nats_url is empty. */
  char nats_url[CFG_PATH_MAX];    /* ISSUN_NATS_URL / --nats-url, "nats://h1:4222,nats://h2:4222" */
  char nats_creds[CFG_PATH_MAX];  /* ISSUN_NATS_CREDS / --nats-creds, a NATS .creds file */
  char nats_ca[CFG_PATH_MAX];     /* ISSUN_NATS_CA / --nats-ca, CA bundle: TLS to NATS */
  char qlog_dir[CFG_PATH_MAX];    /* ISSUN_QLOG_DIR / --qlog-dir, "": no qlog */
  uint32_t nats_replicas;         /* ISSUN_NATS_REPLICAS / --nats-replicas, 1 (1 to 5) */
  uint32_t cluster_expiry_ms;     /* ISSUN_CLUSTER_EXPIRY / --cluster-expiry, 5 s */
} srv_config;

enum cfg_retry { CFG_RETRY_AUTO = 0, CFG_RETRY_ALWAYS, CFG_RETRY_NEVER };
enum cfg_flush { CFG_FLUSH_AUTO = 0, CFG_FLUSH_ALWAYS };
enum cfg_cc { CFG_CC_CUBIC = 0, CFG_CC_RENO, CFG_CC_BBR, CFG_CC_BBR2 };

/* The ISSUN_CC word for an enum cfg_cc value. */
const char *cfg_cc_name(int cc);

/* Fills *c with the defaults above. */
void cfg_defaults(srv_config *c);

/* Applies the environment (getenv) then argv (argv[0] skipped).  Returns 0
 * on success; 1 when --help/-h or --version was given (usage or version
 * already printed to `out`); -1 on a bad value, with a message naming the
 * variable or flag in err (e.g. "ISSUN_MAX_CLIENTS: 'abc' is not a whole
 * number"). */
int cfg_load(srv_config *c, int argc, char **argv, char *err, size_t errlen, void *out /* FILE* */);

/* Parses one log filter value ("debug", "issun_server=info",
 * "warn,issun_server=trace").  Returns the level or -1. */
int cfg_parse_log_level(const char *s);

/* Parses "host:port" / "[v6]:port" into a sockaddr.  Returns 0 or -1. */
int cfg_parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len);

/* Writes the --help text. */
void cfg_usage(void *out /* FILE* */);

#endif
