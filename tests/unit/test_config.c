/*
 * config: defaults, every variable, flags over the environment (both
 * "--flag value" and "--flag=value"), every class of bad value reported
 * under the variable's or flag's name, RUST_LOG forms, bind address forms,
 * --help and --version.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "server/config.h"

static const char *const all_vars[] = {
    "ISSUN_BIND_ADDR",
    "ISSUN_CERT_PATH",
    "ISSUN_KEY_PATH",
    "ISSUN_MAX_CLIENTS",
    "ISSUN_HEARTBEAT_INTERVAL",
    "ISSUN_HELLO_TIMEOUT",
    "ISSUN_ENABLE_ROOMS",
    "ISSUN_MAX_ROOMS",
    "ISSUN_DEFAULT_ROOM_SIZE",
    "ISSUN_MAX_ROOM_SIZE",
    "ISSUN_MAX_EVENTS_PER_SEC",
    "ISSUN_MAX_FRAME_PAYLOAD",
    "ISSUN_SLOW_CONSUMER_BYTES",
    "ISSUN_FLUSH_US",
    "ISSUN_FLUSH_MODE",
    "ISSUN_FLUSH_MAX_US",
    "ISSUN_FLUSH_BUSY_PCT",
    "ISSUN_CC",
    "ISSUN_METRICS_PORT",
    "ISSUN_METRICS_ADDR",
    "ISSUN_LOG",
    "ISSUN_LOG_FORMAT",
    "RUST_LOG",
    "ISSUN_AUTH_SECRET",
    "ISSUN_AUTH_SECRET_FILE",
    "ISSUN_AUTH_LEEWAY",
    "ISSUN_MAX_CONNS_PER_IP",
    "ISSUN_MAX_HANDSHAKES_PER_IP",
    "ISSUN_RETRY",
    "ISSUN_RETRY_THRESHOLD",
    "ISSUN_HANDSHAKE_TIMEOUT",
    "ISSUN_MAX_ROOM_NAME",
    "ISSUN_MAX_ROOM_METADATA",
    "ISSUN_NATS_URL",
    "ISSUN_NATS_CREDS",
    "ISSUN_NATS_CA",
    "ISSUN_QLOG_DIR",
    "ISSUN_NATS_REPLICAS",
    "ISSUN_CLUSTER_EXPIRY",
    "ISSUN_ALLOW_LEGACY",
};

#define NVARS (sizeof(all_vars) / sizeof(all_vars[0]))

static int clear_env(void **state) {
  (void)state;
  for (size_t i = 0; i < NVARS; i++)
    unsetenv(all_vars[i]);
  return 0;
}

/* Runs cfg_load over defaults with argv = {"issun-server", args..., NULL}. */
static int load_args(srv_config *c, char *err, size_t errlen, const char *const *args) {
  char *argv[64];
  int argc = 0;
  argv[argc++] = "issun-server";
  for (; args && *args; args++) {
    assert_true(argc < (int)(sizeof argv / sizeof argv[0]) - 1);
    argv[argc++] = (char *)*args;
  }
  argv[argc] = NULL;
  cfg_defaults(c);
  err[0] = '\0';
  return cfg_load(c, argc, argv, err, errlen, stdout);
}

static int load_env(srv_config *c, char *err, size_t errlen) {
  return load_args(c, err, errlen, NULL);
}

static void assert_err_mentions(const char *err, const char *name, const char *value) {
  if (!strstr(err, name) || (value && !strstr(err, value))) {
    print_error("error '%s' should mention '%s' and '%s'\n", err, name, value ? value : "");
    fail();
  }
}

static uint16_t port_of(const struct sockaddr_storage *ss) {
  if (ss->ss_family == AF_INET)
    return ntohs(((const struct sockaddr_in *)ss)->sin_port);
  return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

/* ---- defaults ----------------------------------------------------------- */

static void check_defaults(const srv_config *c) {
  assert_string_equal(c->bind_addr, "0.0.0.0:5000");
  assert_int_equal(c->bind.ss_family, AF_INET);
  assert_int_equal(c->bind_len, sizeof(struct sockaddr_in));
  assert_int_equal(((const struct sockaddr_in *)&c->bind)->sin_addr.s_addr, htonl(INADDR_ANY));
  assert_int_equal(port_of(&c->bind), 5000);
  assert_string_equal(c->cert_path, "certs/cert.pem");
  assert_string_equal(c->key_path, "certs/key.pem");
  assert_int_equal(c->cert_path_set, 0);
  assert_int_equal(c->max_clients, 1000);
  assert_int_equal(c->heartbeat_ms, 5000);
  assert_int_equal(c->hello_timeout_ms, 10000);
  assert_int_equal(c->enable_rooms, 1);
  assert_int_equal(c->max_rooms, 1000);
  assert_int_equal(c->default_room_size, 8);
  assert_int_equal(c->max_room_size, 1000);
  assert_int_equal(c->max_events_per_sec, 100);
  assert_int_equal(c->max_frame_payload, 65536);
  assert_int_equal(c->slow_consumer_bytes, 1048576);
  assert_int_equal(c->flush_us, 1000);
  assert_int_equal(c->flush_mode, CFG_FLUSH_AUTO);
  assert_int_equal(c->flush_max_us, 8000);
  assert_int_equal(c->flush_busy_pct, 80);
  assert_int_equal(c->cc_algo, CFG_CC_CUBIC);
  assert_int_equal(c->metrics_port, 9090);
  assert_string_equal(c->metrics_addr, "");
  assert_int_equal(c->log_level, LOG_LVL_INFO);
  assert_int_equal(c->log_format, LOG_FMT_TEXT);
}

static void test_defaults(void **state) {
  srv_config c;
  char err[256];
  cfg_defaults(&c);
  check_defaults(&c);
  assert_int_equal(load_env(&c, err, sizeof(err)), 0);
  assert_string_equal(err, "");
  check_defaults(&c);
}

/* ---- every variable ------------------------------------------------------ */

static void test_each_variable(void **state) {
  srv_config c;
  char err[256];
  setenv("ISSUN_BIND_ADDR", "127.0.0.1:6001", 1);
  setenv("ISSUN_CERT_PATH", "/tmp/c.pem", 1);
  setenv("ISSUN_KEY_PATH", "/tmp/k.pem", 1);
  setenv("ISSUN_MAX_CLIENTS", "42", 1);
  setenv("ISSUN_HEARTBEAT_INTERVAL", "250ms", 1);
  setenv("ISSUN_HELLO_TIMEOUT", "1.5s", 1);
  setenv("ISSUN_ENABLE_ROOMS", "off", 1);
  setenv("ISSUN_MAX_ROOMS", "7", 1);
  setenv("ISSUN_DEFAULT_ROOM_SIZE", "3", 1);
  setenv("ISSUN_MAX_ROOM_SIZE", "4", 1);
  setenv("ISSUN_MAX_EVENTS_PER_SEC", "9", 1);
  setenv("ISSUN_MAX_FRAME_PAYLOAD", "2048", 1);
  setenv("ISSUN_SLOW_CONSUMER_BYTES", "5000000000", 1);
  setenv("ISSUN_FLUSH_US", "250", 1);
  setenv("ISSUN_FLUSH_MODE", "Always", 1);
  setenv("ISSUN_FLUSH_MAX_US", "0", 1);
  setenv("ISSUN_FLUSH_BUSY_PCT", "99", 1);
  setenv("ISSUN_CC", "BBR", 1);
  setenv("ISSUN_METRICS_PORT", "0", 1);
  setenv("ISSUN_METRICS_ADDR", "127.0.0.1", 1);
  setenv("ISSUN_LOG", "debug", 1);
  setenv("ISSUN_LOG_FORMAT", "JSON", 1);
  assert_int_equal(load_env(&c, err, sizeof(err)), 0);
  assert_string_equal(c.bind_addr, "127.0.0.1:6001");
  assert_int_equal(c.bind.ss_family, AF_INET);
  assert_int_equal(((struct sockaddr_in *)&c.bind)->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
  assert_int_equal(port_of(&c.bind), 6001);
  assert_string_equal(c.cert_path, "/tmp/c.pem");
  assert_string_equal(c.key_path, "/tmp/k.pem");
  assert_int_equal(c.cert_path_set, 1);
  assert_int_equal(c.max_clients, 42);
  assert_int_equal(c.heartbeat_ms, 250);
  assert_int_equal(c.hello_timeout_ms, 1500);
  assert_int_equal(c.enable_rooms, 0);
  assert_int_equal(c.max_rooms, 7);
  assert_int_equal(c.default_room_size, 3);
  assert_int_equal(c.max_room_size, 4);
  assert_int_equal(c.max_events_per_sec, 9);
  assert_int_equal(c.max_frame_payload, 2048);
  assert_true(c.slow_consumer_bytes == UINT64_C(5000000000));
  assert_int_equal(c.flush_us, 250);
  assert_int_equal(c.flush_mode, CFG_FLUSH_ALWAYS);
  assert_int_equal(c.flush_max_us, 0);
  assert_int_equal(c.flush_busy_pct, 99);
  assert_int_equal(c.cc_algo, CFG_CC_BBR);
  assert_int_equal(c.metrics_port, 0);
  assert_string_equal(c.metrics_addr, "127.0.0.1");
  assert_int_equal(c.log_level, LOG_LVL_DEBUG);
  assert_int_equal(c.log_format, LOG_FMT_JSON);
}

static void test_key_alone_does_not_set_cert(void **state) {
  srv_config c;
  char err[256];
  setenv("ISSUN_KEY_PATH", "/tmp/k.pem", 1);
  assert_int_equal(load_env(&c, err, sizeof(err)), 0);
  assert_int_equal(c.cert_path_set, 0);
  assert_string_equal(c.key_path, "/tmp/k.pem");
}

static void test_empty_variable_is_unset(void **state) {
  srv_config c;
  char err[256];
  setenv("ISSUN_CERT_PATH", "", 1);
  setenv("ISSUN_MAX_CLIENTS", "", 1);
  assert_int_equal(load_env(&c, err, sizeof(err)), 0);
  assert_int_equal(c.cert_path_set, 0);
  assert_int_equal(c.max_clients, 1000);
}

/* ---- flags ------------------------------------------------------------- */

static void test_every_flag(void **state) {
  srv_config c;
  char err[256];
  const char *args[] = {"--bind",
                        "[::1]:6002",
                        "--cert=/x/c.pem",
                        "--key",
                        "/x/k.pem",
                        "--max-clients=11",
                        "--heartbeat",
                        "2",
                        "--hello-timeout=3s",
                        "--enable-rooms",
                        "no",
                        "--max-rooms",
                        "12",
                        "--default-room-size",
                        "13",
                        "--max-room-size=14",
                        "--max-events-per-sec",
                        "15",
                        "--max-frame-payload",
                        "16777216",
                        "--slow-consumer-bytes=17",
                        "--flush-us",
                        "1000000",
                        "--flush-mode=always",
                        "--flush-max-us=1000000",
                        "--flush-busy-pct",
                        "1",
                        "--cc",
                        "bbr2",
                        "--metrics-port=65535",
                        "--metrics-addr",
                        "[::1]",
                        "--log",
                        "warn,issun_server=trace",
                        "--log-format",
                        "text",
                        NULL};
  assert_int_equal(load_args(&c, err, sizeof(err), args), 0);
  assert_string_equal(c.bind_addr, "[::1]:6002");
  assert_int_equal(c.bind.ss_family, AF_INET6);
  assert_int_equal(c.bind_len, sizeof(struct sockaddr_in6));
  assert_true(IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&c.bind)->sin6_addr));
  assert_int_equal(port_of(&c.bind), 6002);
  assert_string_equal(c.cert_path, "/x/c.pem");
  assert_int_equal(c.cert_path_set, 1);
  assert_string_equal(c.key_path, "/x/k.pem");
  assert_int_equal(c.max_clients, 11);
  assert_int_equal(c.heartbeat_ms, 2000);
  assert_int_equal(c.hello_timeout_ms, 3000);
  assert_int_equal(c.enable_rooms, 0);
  assert_int_equal(c.max_rooms, 12);
  assert_int_equal(c.default_room_size, 13);
  assert_int_equal(c.max_room_size, 14);
  assert_int_equal(c.max_events_per_sec, 15);
  assert_int_equal(c.max_frame_payload, 16777216);
  assert_int_equal(c.slow_consumer_bytes, 17);
  assert_int_equal(c.flush_us, 1000000);
  assert_int_equal(c.flush_mode, CFG_FLUSH_ALWAYS);
  assert_int_equal(c.flush_max_us, 1000000);
  assert_int_equal(c.flush_busy_pct, 1);
  assert_int_equal(c.cc_algo, CFG_CC_BBR2);
  assert_int_equal(c.metrics_port, 65535);
  assert_string_equal(c.metrics_addr, "::1");
  assert_int_equal(c.log_level, LOG_LVL_TRACE);
  assert_int_equal(c.log_format, LOG_FMT_TEXT);
}

static void test_flags_win_over_env(void **state) {
  srv_config c;
  char err[256];
  setenv("ISSUN_MAX_CLIENTS", "5", 1);
  setenv("ISSUN_HEARTBEAT_INTERVAL", "9s", 1);
  setenv("ISSUN_LOG", "error", 1);
  setenv("ISSUN_BIND_ADDR", "127.0.0.1:1", 1);
  const char *args[] = {"--max-clients", "7", "--log=trace", "--bind=:2", NULL};
  assert_int_equal(load_args(&c, err, sizeof(err), args), 0);
  assert_int_equal(c.max_clients, 7);
  assert_int_equal(c.heartbeat_ms, 9000); /* no flag: the variable stays */
  assert_int_equal(c.log_level, LOG_LVL_TRACE);
  assert_int_equal(port_of(&c.bind), 2);
  assert_string_equal(c.bind_addr, ":2");
}

static void test_bad_env_even_when_flag_given(void **state) {
  /* the environment is read first; a bad variable is reported, not hidden */
  srv_config c;
  char err[256];
  setenv("ISSUN_MAX_CLIENTS", "lots", 1);
  const char *args[] = {"--max-clients", "7", NULL};
  assert_int_equal(load_args(&c, err, sizeof(err), args), -1);
  assert_err_mentions(err, "ISSUN_MAX_CLIENTS", "'lots'");
}

static void test_bare_bool_flag(void **state) {
  srv_config c;
  char err[256];
  setenv("ISSUN_ENABLE_ROOMS", "false", 1);
  const char *a1[] = {"--enable-rooms", NULL};
  assert_int_equal(load_args(&c, err, sizeof(err), a1), 0);
  assert_int_equal(c.enable_rooms, 1);
  const char *a2[] = {"--enable-rooms", "--max-rooms", "3", NULL};
  assert_int_equal(load_args(&c, err, sizeof(err), a2), 0);
  assert_int_equal(c.enable_rooms, 1);
  assert_int_equal(c.max_rooms, 3);
  const char *a3[] = {"--enable-rooms=OFF", NULL};
  assert_int_equal(load_args(&c, err, sizeof(err), a3), 0);
  assert_int_equal(c.enable_rooms, 0);
}

static void test_flag_errors(void **state) {
  srv_config c;
  char err[256];
  const char *unknown[] = {"--max-client", "5", NULL};
  assert_int_equal(load_args(&c, err, sizeof(err), unknown), -1);
  assert_err_mentions(err, "'--max-client'", NULL);

  const char *unknown_eq[] = {"--frobnicate=1", NULL};
  assert_int_equal(load_args(&c, err, sizeof(err), unknown_eq), -1);
  assert_err_mentions(err, "'--frobnicate'", NULL);

  const char *single[] = {"-x", NULL};
  assert_int_equal(load_args(&c, err, sizeof(err), single), -1);
  assert_err_mentions(err, "'-x'", NULL);

  const char *positional[] = {"stray", NULL};
  assert_int_equal(load_args(&c, err, sizeof(err), positional), -1);
  assert_err_mentions(err, "'stray'", NULL);

  const char *missing[] = {"--bind", NULL};
  assert_int_equal(load_args(&c, err, sizeof(err), missing), -1);
  assert_err_mentions(err, "--bind", "missing value");

  const char *missing2[] = {"--cert", "--key", "k.pem", NULL};
  assert_int_equal(load_args(&c, err, sizeof(err), missing2), -1);
  assert_err_mentions(err, "--cert", "missing value");

  const char *bad[] = {"--max-frame-payload=1023", NULL};
  assert_int_equal(load_args(&c, err, sizeof(err), bad), -1);
  assert_err_mentions(err, "--max-frame-payload", "'1023'");

  const char *empty_path[] = {"--cert=", NULL};
  assert_int_equal(load_args(&c, err, sizeof(err), empty_path), -1);
  assert_err_mentions(err, "--cert", "empty");
}

/* ---- bad values, by class, under both names ------------------------------ */

struct bad {
  const char *var, *flag, *value;
};

static const struct bad bad_values[] = {
    /* not a number, signs, spaces, overflow, range */
    {"ISSUN_MAX_CLIENTS", "--max-clients", "abc"},
    {"ISSUN_MAX_CLIENTS", "--max-clients", "-1"},
    {"ISSUN_MAX_CLIENTS", "--max-clients", "+5"},
    {"ISSUN_MAX_CLIENTS", "--max-clients", " 5"},
    {"ISSUN_MAX_CLIENTS", "--max-clients", "5x"},
    {"ISSUN_MAX_CLIENTS", "--max-clients", "0"},
    {"ISSUN_MAX_CLIENTS", "--max-clients", "1000001"},
    {"ISSUN_MAX_CLIENTS", "--max-clients", "99999999999999999999999"},
    {"ISSUN_MAX_ROOMS", "--max-rooms", "0"},
    {"ISSUN_DEFAULT_ROOM_SIZE", "--default-room-size", "0"},
    {"ISSUN_MAX_ROOM_SIZE", "--max-room-size", "0"},
    {"ISSUN_MAX_EVENTS_PER_SEC", "--max-events-per-sec", "0"},
    {"ISSUN_MAX_EVENTS_PER_SEC", "--max-events-per-sec", "4294967296"},
    {"ISSUN_MAX_FRAME_PAYLOAD", "--max-frame-payload", "1023"},
    {"ISSUN_MAX_FRAME_PAYLOAD", "--max-frame-payload", "16777217"},
    {"ISSUN_SLOW_CONSUMER_BYTES", "--slow-consumer-bytes", "0"},
    {"ISSUN_SLOW_CONSUMER_BYTES", "--slow-consumer-bytes", "1MB"},
    {"ISSUN_FLUSH_US", "--flush-us", "1000001"},
    {"ISSUN_FLUSH_MODE", "--flush-mode", "never"},
    {"ISSUN_FLUSH_MAX_US", "--flush-max-us", "1000001"},
    {"ISSUN_FLUSH_BUSY_PCT", "--flush-busy-pct", "0"},
    {"ISSUN_FLUSH_BUSY_PCT", "--flush-busy-pct", "100"},
    {"ISSUN_CC", "--cc", "vegas"},
    {"ISSUN_METRICS_PORT", "--metrics-port", "65536"},
    {"ISSUN_METRICS_PORT", "--metrics-port", "http"},
    {"ISSUN_METRICS_ADDR", "--metrics-addr", "localhost"},
    {"ISSUN_METRICS_ADDR", "--metrics-addr", "127.0.0.1:9090"},
    {"ISSUN_METRICS_ADDR", "--metrics-addr", "1.2.3.4.5"},
    {"ISSUN_METRICS_ADDR", "--metrics-addr", "[::1"},
    {"ISSUN_METRICS_ADDR", "--metrics-addr", "[0.0.0.0]x"},
    /* durations */
    {"ISSUN_HEARTBEAT_INTERVAL", "--heartbeat", "0"},
    {"ISSUN_HEARTBEAT_INTERVAL", "--heartbeat", "0ms"},
    {"ISSUN_HEARTBEAT_INTERVAL", "--heartbeat", "0.0001s"},
    {"ISSUN_HEARTBEAT_INTERVAL", "--heartbeat", "1.5ms"},
    {"ISSUN_HEARTBEAT_INTERVAL", "--heartbeat", "5m"},
    {"ISSUN_HEARTBEAT_INTERVAL", "--heartbeat", "5 s"},
    {"ISSUN_HEARTBEAT_INTERVAL", "--heartbeat", "-5"},
    {"ISSUN_HEARTBEAT_INTERVAL", "--heartbeat", "5."},
    {"ISSUN_HEARTBEAT_INTERVAL", "--heartbeat", "s"},
    {"ISSUN_HEARTBEAT_INTERVAL", "--heartbeat", "86401"},
    {"ISSUN_HEARTBEAT_INTERVAL", "--heartbeat", "99999999999999999999s"},
    {"ISSUN_HELLO_TIMEOUT", "--hello-timeout", "soon"},
    /* booleans */
    {"ISSUN_ENABLE_ROOMS", "--enable-rooms", "maybe"},
    {"ISSUN_ENABLE_ROOMS", "--enable-rooms", "2"},
    /* addresses */
    {"ISSUN_BIND_ADDR", "--bind", "127.0.0.1"},
    {"ISSUN_BIND_ADDR", "--bind", "127.0.0.1:"},
    {"ISSUN_BIND_ADDR", "--bind", "127.0.0.1:65536"},
    {"ISSUN_BIND_ADDR", "--bind", "127.0.0.1:-1"},
    {"ISSUN_BIND_ADDR", "--bind", "::1:5000"},
    {"ISSUN_BIND_ADDR", "--bind", "[::1]5000"},
    {"ISSUN_BIND_ADDR", "--bind", "[::1:5000"},
    {"ISSUN_BIND_ADDR", "--bind", "[127.0.0.1]:5000"},
    {"ISSUN_BIND_ADDR", "--bind", "[]:5000"},
    {"ISSUN_BIND_ADDR", "--bind", "nonexistent.invalid:5000"},
    /* logging */
    {"ISSUN_LOG", "--log", "verbose"},
    {"ISSUN_LOG", "--log", "issun_server=loud"},
    {"ISSUN_LOG", "--log", "=debug"},
    {"ISSUN_LOG_FORMAT", "--log-format", "xml"},
};

static void test_bad_values_env(void **state) {
  for (size_t i = 0; i < sizeof(bad_values) / sizeof(bad_values[0]); i++) {
    const struct bad *b = &bad_values[i];
    srv_config c;
    char err[512], quoted[128];
    clear_env(NULL);
    setenv(b->var, b->value, 1);
    if (load_env(&c, err, sizeof(err)) != -1) {
      print_error("%s='%s' was accepted\n", b->var, b->value);
      fail();
    }
    snprintf(quoted, sizeof(quoted), "'%s'", b->value);
    assert_err_mentions(err, b->var, quoted);
  }
}

static void test_bad_values_flags(void **state) {
  for (size_t i = 0; i < sizeof(bad_values) / sizeof(bad_values[0]); i++) {
    const struct bad *b = &bad_values[i];
    srv_config c;
    char err[512], quoted[128], arg[128];
    snprintf(arg, sizeof(arg), "%s=%s", b->flag, b->value);
    const char *args[] = {arg, NULL};
    if (load_args(&c, err, sizeof(err), args) != -1) {
      print_error("%s was accepted\n", arg);
      fail();
    }
    snprintf(quoted, sizeof(quoted), "'%s'", b->value);
    assert_err_mentions(err, b->flag, quoted);
  }
}

static void test_error_text_is_readable(void **state) {
  srv_config c;
  char err[512];
  setenv("ISSUN_MAX_CLIENTS", "abc", 1);
  assert_int_equal(load_env(&c, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "ISSUN_MAX_CLIENTS: 'abc' is not a whole number"));
  clear_env(NULL);
  setenv("ISSUN_MAX_CLIENTS", "0", 1);
  assert_int_equal(load_env(&c, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "out of range"));
  assert_non_null(strstr(err, "1 to 1000000"));
  clear_env(NULL);
  setenv("ISSUN_HEARTBEAT_INTERVAL", "0", 1);
  assert_int_equal(load_env(&c, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "greater than zero"));
}

static void test_room_size_cross_check(void **state) {
  srv_config c;
  char err[512];
  setenv("ISSUN_DEFAULT_ROOM_SIZE", "20", 1);
  setenv("ISSUN_MAX_ROOM_SIZE", "10", 1);
  assert_int_equal(load_env(&c, err, sizeof(err)), -1);
  assert_err_mentions(err, "ISSUN_DEFAULT_ROOM_SIZE", "ISSUN_MAX_ROOM_SIZE");

  clear_env(NULL);
  const char *args[] = {"--max-room-size", "4", NULL};
  assert_int_equal(load_args(&c, err, sizeof(err), args), -1);
  assert_err_mentions(err, "ISSUN_DEFAULT_ROOM_SIZE", "--max-room-size");

  const char *ok[] = {"--max-room-size", "8", NULL};
  assert_int_equal(load_args(&c, err, sizeof(err), ok), 0);
  assert_int_equal(c.max_room_size, 8);

  const char *both[] = {"--max-room-size", "100", "--default-room-size=100", NULL};
  assert_int_equal(load_args(&c, err, sizeof(err), both), 0);
}

/* ---- durations, booleans -------------------------------------------------- */

static void test_durations(void **state) {
  static const struct {
    const char *in;
    uint32_t ms;
  } ok[] = {{"5", 5000},       {"5s", 5000},     {"250ms", 250}, {"1.5s", 1500},
            {"1.5", 1500},     {"0.25s", 250},   {".5s", 500},   {"0.001s", 1},
            {"1ms", 1},        {"2.000s", 2000}, {"05", 5000},   {"86400", 86400000},
            {"1.2500s", 1250}, {"3.0ms", 3}};
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    srv_config c;
    char err[256];
    setenv("ISSUN_HELLO_TIMEOUT", ok[i].in, 1);
    if (load_env(&c, err, sizeof(err)) != 0) {
      print_error("'%s': %s\n", ok[i].in, err);
      fail();
    }
    assert_int_equal(c.hello_timeout_ms, ok[i].ms);
  }
}

static void test_booleans(void **state) {
  static const char *const yes[] = {"true", "TRUE", "True", "1", "yes", "YES", "on", "On"};
  static const char *const no[] = {"false", "FALSE", "0", "no", "No", "off", "OFF"};
  srv_config c;
  char err[256];
  for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
    setenv("ISSUN_ENABLE_ROOMS", yes[i], 1);
    assert_int_equal(load_env(&c, err, sizeof(err)), 0);
    assert_int_equal(c.enable_rooms, 1);
  }
  for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
    setenv("ISSUN_ENABLE_ROOMS", no[i], 1);
    assert_int_equal(load_env(&c, err, sizeof(err)), 0);
    assert_int_equal(c.enable_rooms, 0);
  }
}

static void test_range_edges(void **state) {
  static const struct {
    const char *var, *value;
  } ok[] = {
      {"ISSUN_MAX_CLIENTS", "1"},          {"ISSUN_MAX_CLIENTS", "1000000"},
      {"ISSUN_MAX_FRAME_PAYLOAD", "1024"}, {"ISSUN_MAX_FRAME_PAYLOAD", "16777216"},
      {"ISSUN_METRICS_PORT", "0"},         {"ISSUN_METRICS_PORT", "65535"},
      {"ISSUN_MAX_EVENTS_PER_SEC", "1"},   {"ISSUN_MAX_EVENTS_PER_SEC", "4294967295"},
      {"ISSUN_DEFAULT_ROOM_SIZE", "1"},    {"ISSUN_FLUSH_US", "0"},
  };
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    srv_config c;
    char err[256];
    clear_env(NULL);
    setenv(ok[i].var, ok[i].value, 1);
    if (load_env(&c, err, sizeof(err)) != 0) {
      print_error("%s='%s': %s\n", ok[i].var, ok[i].value, err);
      fail();
    }
  }
}

/* ---- logging -------------------------------------------------------------- */

static void test_log_filters(void **state) {
  static const struct {
    const char *in;
    int lvl;
  } cases[] = {
      {"error", LOG_LVL_ERROR},
      {"warn", LOG_LVL_WARN},
      {"WARN", LOG_LVL_WARN},
      {"warning", LOG_LVL_WARN},
      {"info", LOG_LVL_INFO},
      {"debug", LOG_LVL_DEBUG},
      {"trace", LOG_LVL_TRACE},
      {"issun_server=info", LOG_LVL_INFO},
      {"issun_server=debug", LOG_LVL_DEBUG},
      {"warn,issun_server=debug", LOG_LVL_DEBUG},
      {"issun_server=debug,warn", LOG_LVL_DEBUG},
      {"issun=trace", LOG_LVL_TRACE},
      {"issun=trace,issun_server=error", LOG_LVL_ERROR},
      {"issun_server=error,issun=trace", LOG_LVL_ERROR},
      {"warn,hyper=debug", LOG_LVL_WARN},
      {"hyper=debug", LOG_LVL_INFO},
      {"hyper=off,tokio=trace", LOG_LVL_INFO},
      {"issun_server::relay=trace", LOG_LVL_INFO},
      {" warn , issun_server=trace ", LOG_LVL_TRACE},
      {"debug,", LOG_LVL_DEBUG},
      {"issun_server", LOG_LVL_TRACE},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    int got = cfg_parse_log_level(cases[i].in);
    if (got != cases[i].lvl) {
      print_error("'%s': got %d, want %d\n", cases[i].in, got, cases[i].lvl);
      fail();
    }
  }
  static const char *const bad[] = {"", ",", "verbose", "issun_server=loud", "=info", "off", "5"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    if (cfg_parse_log_level(bad[i]) != -1) {
      print_error("'%s' accepted\n", bad[i]);
      fail();
    }
  }
  assert_int_equal(cfg_parse_log_level(NULL), -1);
}

static void test_rust_log_fallback(void **state) {
  srv_config c;
  char err[256];
  setenv("RUST_LOG", "warn,issun_server=debug", 1);
  assert_int_equal(load_env(&c, err, sizeof(err)), 0);
  assert_int_equal(c.log_level, LOG_LVL_DEBUG);

  setenv("ISSUN_LOG", "error", 1); /* ISSUN_LOG wins over RUST_LOG */
  assert_int_equal(load_env(&c, err, sizeof(err)), 0);
  assert_int_equal(c.log_level, LOG_LVL_ERROR);

  setenv("ISSUN_LOG", "", 1); /* empty: unset, so RUST_LOG again */
  assert_int_equal(load_env(&c, err, sizeof(err)), 0);
  assert_int_equal(c.log_level, LOG_LVL_DEBUG);

  unsetenv("ISSUN_LOG");
  setenv("RUST_LOG", "issun_server=shout", 1);
  assert_int_equal(load_env(&c, err, sizeof(err)), -1);
  assert_err_mentions(err, "RUST_LOG", "'issun_server=shout'");

  const char *args[] = {"--log", "info", NULL}; /* bad RUST_LOG is still read first */
  assert_int_equal(load_args(&c, err, sizeof(err), args), -1);

  setenv("RUST_LOG", "trace", 1);
  const char *args2[] = {"--log=warn", NULL};
  assert_int_equal(load_args(&c, err, sizeof(err), args2), 0);
  assert_int_equal(c.log_level, LOG_LVL_WARN);
}

/* ---- bind addresses ------------------------------------------------------- */

static void test_bind_forms(void **state) {
  struct sockaddr_storage ss;
  socklen_t len = 0;
  struct in_addr a4;
  struct in6_addr a6;

  assert_int_equal(cfg_parse_addr("10.1.2.3:4433", &ss, &len), 0);
  assert_int_equal(ss.ss_family, AF_INET);
  assert_int_equal(len, sizeof(struct sockaddr_in));
  inet_pton(AF_INET, "10.1.2.3", &a4);
  assert_int_equal(((struct sockaddr_in *)&ss)->sin_addr.s_addr, a4.s_addr);
  assert_int_equal(port_of(&ss), 4433);

  assert_int_equal(cfg_parse_addr("[2001:db8::7]:5001", &ss, &len), 0);
  assert_int_equal(ss.ss_family, AF_INET6);
  assert_int_equal(len, sizeof(struct sockaddr_in6));
  inet_pton(AF_INET6, "2001:db8::7", &a6);
  assert_memory_equal(&((struct sockaddr_in6 *)&ss)->sin6_addr, &a6, sizeof(a6));
  assert_int_equal(port_of(&ss), 5001);

  assert_int_equal(cfg_parse_addr("[::]:5000", &ss, &len), 0);
  assert_int_equal(ss.ss_family, AF_INET6);
  assert_true(IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&ss)->sin6_addr));

  const char *any[] = {"*:5003", ":5003", "0.0.0.0:5003"};
  for (size_t i = 0; i < 3; i++) {
    memset(&ss, 0xab, sizeof(ss));
    assert_int_equal(cfg_parse_addr(any[i], &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(len, sizeof(struct sockaddr_in));
    assert_int_equal(((struct sockaddr_in *)&ss)->sin_addr.s_addr, htonl(INADDR_ANY));
    assert_int_equal(port_of(&ss), 5003);
  }

  assert_int_equal(cfg_parse_addr("localhost:5004", &ss, &len), 0);
  assert_int_equal(port_of(&ss), 5004);
  if (ss.ss_family == AF_INET)
    assert_int_equal(((struct sockaddr_in *)&ss)->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
  else
    assert_true(IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&ss)->sin6_addr));

  assert_int_equal(cfg_parse_addr("127.0.0.1:0", &ss, &len), 0);
  assert_int_equal(port_of(&ss), 0);

  static const char *const bad[] = {
      NULL,    "",       "5000",        "1.2.3.4",        "1.2.3.4:",
      ":",     "*:",     "1.2.3.4:x",   "1.2.3.4:655350", "::1:5000",
      "[::1]", "[::1]:", "[::1]:5000x", "[nothost]:5000", "1.2.3.4:+80"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    if (cfg_parse_addr(bad[i], &ss, &len) != -1) {
      print_error("'%s' accepted\n", bad[i] ? bad[i] : "(null)");
      fail();
    }
  }
}

/* ---- --help, --version ----------------------------------------------------- */

static char *capture(const char *const *args, int *rv) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  char *argv[8];
  int argc = 0;
  srv_config c;
  char err[256];
  assert_non_null(f);
  argv[argc++] = "issun-server";
  for (; *args; args++)
    argv[argc++] = (char *)*args;
  argv[argc] = NULL;
  cfg_defaults(&c);
  *rv = cfg_load(&c, argc, argv, err, sizeof(err), f);
  fclose(f);
  return buf;
}

static void test_help(void **state) {
  static const char *const expect[] = {
      "--bind",
      "ISSUN_BIND_ADDR",
      "0.0.0.0:5000",
      "--cert",
      "ISSUN_CERT_PATH",
      "certs/cert.pem",
      "--key",
      "ISSUN_KEY_PATH",
      "certs/key.pem",
      "--max-clients",
      "ISSUN_MAX_CLIENTS",
      "--heartbeat",
      "ISSUN_HEARTBEAT_INTERVAL",
      "--hello-timeout",
      "ISSUN_HELLO_TIMEOUT",
      "--enable-rooms",
      "ISSUN_ENABLE_ROOMS",
      "--max-rooms",
      "ISSUN_MAX_ROOMS",
      "--default-room-size",
      "ISSUN_DEFAULT_ROOM_SIZE",
      "--max-room-size",
      "ISSUN_MAX_ROOM_SIZE",
      "--max-events-per-sec",
      "ISSUN_MAX_EVENTS_PER_SEC",
      "--max-frame-payload",
      "ISSUN_MAX_FRAME_PAYLOAD",
      "--slow-consumer-bytes",
      "ISSUN_SLOW_CONSUMER_BYTES",
      "--flush-us",
      "ISSUN_FLUSH_US",
      "--flush-mode",
      "ISSUN_FLUSH_MODE",
      "--flush-max-us",
      "ISSUN_FLUSH_MAX_US",
      "--flush-busy-pct",
      "ISSUN_FLUSH_BUSY_PCT",
      "--cc",
      "ISSUN_CC",
      "--metrics-port",
      "ISSUN_METRICS_PORT",
      "--metrics-addr",
      "ISSUN_METRICS_ADDR",
      "--log ",
      "ISSUN_LOG ",
      "RUST_LOG",
      "--log-format",
      "ISSUN_LOG_FORMAT",
      "--help",
      "--version",
      "(default: 1000)",
      "(default: 5s)",
      "(default: 9090)",
      "(default: text)",
      "(default: 65536)",
  };
  int rv = 0;
  const char *h[] = {"--help", NULL};
  char *out = capture(h, &rv);
  assert_int_equal(rv, 1);
  for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
    if (!strstr(out, expect[i])) {
      print_error("--help lacks '%s'\n", expect[i]);
      fail();
    }
  }
  /* no line over 100 columns */
  for (const char *p = out; *p;) {
    const char *nl = strchr(p, '\n');
    size_t n = nl ? (size_t)(nl - p) : strlen(p);
    assert_true(n <= 100);
    p += n + (nl ? 1 : 0);
  }
  free(out);

  /* -h too, and it wins over bad values elsewhere */
  setenv("ISSUN_MAX_CLIENTS", "bad", 1);
  const char *h2[] = {"--max-rooms", "0", "-h", NULL};
  out = capture(h2, &rv);
  assert_int_equal(rv, 1);
  assert_non_null(strstr(out, "Usage: issun-server"));
  free(out);
}

static void test_version(void **state) {
  int rv = 0;
  const char *v[] = {"--version", NULL};
  char *out = capture(v, &rv);
  assert_int_equal(rv, 1);
  assert_string_equal(out, "issun-server 0.1.0\n");
  free(out);
}

/* ---- security settings (docs/security.md) ------------------------------ */

#define SECRET32 "0123456789abcdef0123456789abcdef"

static void test_security_defaults(void **state) {
  srv_config c;
  char err[256];
  assert_int_equal(load_env(&c, err, sizeof(err)), 0);
  assert_int_equal(c.auth_enabled, 0);
  assert_int_equal(c.auth_secret_len, 0);
  assert_int_equal(c.auth_leeway_s, 30);
  assert_int_equal(c.max_conns_per_ip, 256);
  assert_int_equal(c.max_handshakes_per_ip, 100);
  assert_int_equal(c.retry_mode, CFG_RETRY_AUTO);
  assert_int_equal(c.retry_threshold, 500);
  assert_int_equal(c.handshake_timeout_ms, 10000);
  assert_int_equal(c.max_room_name, 128);
  assert_int_equal(c.max_room_metadata, 4096);
}

static void test_security_env_and_flags(void **state) {
  srv_config c;
  char err[256];
  setenv("ISSUN_AUTH_SECRET", SECRET32 "!", 1);
  setenv("ISSUN_AUTH_LEEWAY", "0", 1);
  setenv("ISSUN_MAX_CONNS_PER_IP", "0", 1);
  setenv("ISSUN_MAX_HANDSHAKES_PER_IP", "7", 1);
  setenv("ISSUN_RETRY", "Always", 1);
  setenv("ISSUN_RETRY_THRESHOLD", "9", 1);
  setenv("ISSUN_HANDSHAKE_TIMEOUT", "750ms", 1);
  setenv("ISSUN_MAX_ROOM_NAME", "16", 1);
  setenv("ISSUN_MAX_ROOM_METADATA", "100", 1);
  assert_int_equal(load_env(&c, err, sizeof(err)), 0);
  assert_int_equal(c.auth_enabled, 1);
  assert_int_equal(c.auth_secret_len, 33);
  assert_memory_equal(c.auth_secret, SECRET32 "!", 33);
  assert_int_equal(c.auth_leeway_s, 0);
  assert_int_equal(c.max_conns_per_ip, 0);
  assert_int_equal(c.max_handshakes_per_ip, 7);
  assert_int_equal(c.retry_mode, CFG_RETRY_ALWAYS);
  assert_int_equal(c.retry_threshold, 9);
  assert_int_equal(c.handshake_timeout_ms, 750);
  assert_int_equal(c.max_room_name, 16);
  assert_int_equal(c.max_room_metadata, 100);

  clear_env(NULL);
  const char *args[] = {"--auth-secret",        SECRET32,  "--auth-leeway=5",
                        "--max-conns-per-ip",   "3",       "--max-handshakes-per-ip=0",
                        "--retry",              "never",   "--retry-threshold=1000000",
                        "--handshake-timeout",  "2s",      "--max-room-name=65536",
                        "--max-room-metadata",  "8",       NULL};
  assert_int_equal(load_args(&c, err, sizeof(err), args), 0);
  assert_int_equal(c.auth_enabled, 1);
  assert_int_equal(c.auth_secret_len, 32);
  assert_int_equal(c.auth_leeway_s, 5);
  assert_int_equal(c.max_conns_per_ip, 3);
  assert_int_equal(c.max_handshakes_per_ip, 0);
  assert_int_equal(c.retry_mode, CFG_RETRY_NEVER);
  assert_int_equal(c.retry_threshold, 1000000);
  assert_int_equal(c.handshake_timeout_ms, 2000);
  assert_int_equal(c.max_room_name, 65536);
  assert_int_equal(c.max_room_metadata, 8);
}

static void write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, n, f), n);
  fclose(f);
}

static void test_security_secret_file(void **state) {
  srv_config c;
  char err[256];
  char path[] = "/tmp/issun-secret-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  /* one trailing newline (LF or CRLF) is not part of the secret */
  write_file(path, SECRET32 "\r\n", 34);
  setenv("ISSUN_AUTH_SECRET_FILE", path, 1);
  assert_int_equal(load_env(&c, err, sizeof(err)), 0);
  assert_int_equal(c.auth_enabled, 1);
  assert_int_equal(c.auth_secret_len, 32);
  assert_memory_equal(c.auth_secret, SECRET32, 32);
  assert_string_equal(c.auth_secret_file, path);
  /* binary secrets work */
  uint8_t bin[40];
  for (int i = 0; i < 40; i++) bin[i] = (uint8_t)(i * 7);
  write_file(path, bin, sizeof bin);
  assert_int_equal(load_env(&c, err, sizeof(err)), 0);
  assert_int_equal(c.auth_secret_len, 40);
  assert_memory_equal(c.auth_secret, bin, 40);
  /* too short, even with the newline */
  write_file(path, "short\n", 6);
  assert_int_equal(load_env(&c, err, sizeof(err)), -1);
  assert_err_mentions(err, "ISSUN_AUTH_SECRET_FILE", path);
  /* too long */
  char big[1100];
  memset(big, 'x', sizeof big);
  write_file(path, big, sizeof big);
  assert_int_equal(load_env(&c, err, sizeof(err)), -1);
  assert_err_mentions(err, "ISSUN_AUTH_SECRET_FILE", "1024");
  unlink(path);
  /* missing file, named with its path and the reason */
  assert_int_equal(load_env(&c, err, sizeof(err)), -1);
  assert_err_mentions(err, "ISSUN_AUTH_SECRET_FILE", "No such file");
  /* the flag form */
  unsetenv("ISSUN_AUTH_SECRET_FILE");
  const char *args[] = {"--auth-secret-file", "/nonexistent/issun-secret", NULL};
  assert_int_equal(load_args(&c, err, sizeof(err), args), -1);
  assert_err_mentions(err, "--auth-secret-file", "/nonexistent/issun-secret");
}

static void test_security_bad_values(void **state) {
  srv_config c;
  char err[256];
  static const struct {
    const char *var, *val;
  } bad[] = {
      {"ISSUN_AUTH_SECRET", "too-short-secret"},
      {"ISSUN_AUTH_LEEWAY", "3601"},
      {"ISSUN_AUTH_LEEWAY", "-1"},
      {"ISSUN_MAX_CONNS_PER_IP", "many"},
      {"ISSUN_MAX_HANDSHAKES_PER_IP", "1000001"},
      {"ISSUN_RETRY", "sometimes"},
      {"ISSUN_RETRY_THRESHOLD", "0"},
      {"ISSUN_HANDSHAKE_TIMEOUT", "0"},
      {"ISSUN_HANDSHAKE_TIMEOUT", "10x"},
      {"ISSUN_MAX_ROOM_NAME", "0"},
      {"ISSUN_MAX_ROOM_METADATA", "7"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    clear_env(NULL);
    setenv(bad[i].var, bad[i].val, 1);
    assert_int_equal(load_env(&c, err, sizeof(err)), -1);
    assert_err_mentions(err, bad[i].var, NULL);
  }
  /* the secret is never echoed back in an error */
  clear_env(NULL);
  setenv("ISSUN_AUTH_SECRET", "hunter2-is-short", 1);
  assert_int_equal(load_env(&c, err, sizeof(err)), -1);
  assert_null(strstr(err, "hunter2"));
  /* both a secret and a secret file: refused, naming both */
  clear_env(NULL);
  setenv("ISSUN_AUTH_SECRET", SECRET32, 1);
  write_file("/tmp/issun-secret-both", SECRET32, 32);
  const char *args2[] = {"--auth-secret-file", "/tmp/issun-secret-both", NULL};
  assert_int_equal(load_args(&c, err, sizeof(err), args2), -1);
  assert_err_mentions(err, "ISSUN_AUTH_SECRET", "--auth-secret-file");
  unlink("/tmp/issun-secret-both");
}

static void test_security_help(void **state) {
  static const char *const expect[] = {
      "--auth-secret ",        "ISSUN_AUTH_SECRET ",      "--auth-secret-file", "ISSUN_AUTH_SECRET_FILE",
      "--auth-leeway",         "ISSUN_AUTH_LEEWAY",       "--max-conns-per-ip", "ISSUN_MAX_CONNS_PER_IP",
      "--max-handshakes-per-ip", "ISSUN_MAX_HANDSHAKES_PER_IP", "--retry ",      "ISSUN_RETRY ",
      "--retry-threshold",     "ISSUN_RETRY_THRESHOLD",   "--handshake-timeout", "ISSUN_HANDSHAKE_TIMEOUT",
      "--max-room-name",       "ISSUN_MAX_ROOM_NAME",     "--max-room-metadata", "ISSUN_MAX_ROOM_METADATA",
      "(default: auto)",       "(default: 256)",
  };
  int rv = 0;
  const char *h[] = {"--help", NULL};
  char *out = capture(h, &rv);
  assert_int_equal(rv, 1);
  for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
    if (!strstr(out, expect[i])) {
      print_error("--help lacks '%s'\n", expect[i]);
      fail();
    }
  }
  free(out);
}

/* Clustering settings (docs/clustering.md): off by default, env and flags,
 * bad values named. */
static void test_cluster_settings(void **state) {
  srv_config c;
  char err[256];
  assert_int_equal(load_env(&c, err, sizeof(err)), 0);
  assert_string_equal(c.nats_url, "");
  assert_string_equal(c.nats_creds, "");
  assert_string_equal(c.nats_ca, "");
  assert_string_equal(c.qlog_dir, "");
  assert_int_equal(c.nats_replicas, 1);
  assert_int_equal(c.cluster_expiry_ms, 5000);

  setenv("ISSUN_NATS_URL", "nats://127.0.0.1:4222,nats://127.0.0.1:4223", 1);
  setenv("ISSUN_NATS_CREDS", "/etc/issun/relay.creds", 1);
  setenv("ISSUN_NATS_CA", "/etc/issun/nats-ca.pem", 1);
  setenv("ISSUN_QLOG_DIR", "/var/tmp/qlog", 1);
  setenv("ISSUN_NATS_REPLICAS", "3", 1);
  setenv("ISSUN_CLUSTER_EXPIRY", "1500ms", 1);
  assert_int_equal(load_env(&c, err, sizeof(err)), 0);
  assert_string_equal(c.nats_url, "nats://127.0.0.1:4222,nats://127.0.0.1:4223");
  assert_string_equal(c.nats_creds, "/etc/issun/relay.creds");
  assert_string_equal(c.nats_ca, "/etc/issun/nats-ca.pem");
  assert_string_equal(c.qlog_dir, "/var/tmp/qlog");
  assert_int_equal(c.nats_replicas, 3);
  assert_int_equal(c.cluster_expiry_ms, 1500);

  clear_env(NULL);
  const char *args[] = {"--nats-url", "tls://u:p@nats.example:4222", "--nats-replicas=5",
                        "--cluster-expiry", "2s", NULL};
  assert_int_equal(load_args(&c, err, sizeof(err), args), 0);
  assert_string_equal(c.nats_url, "tls://u:p@nats.example:4222");
  assert_int_equal(c.nats_replicas, 5);
  assert_int_equal(c.cluster_expiry_ms, 2000);

  setenv("ISSUN_NATS_REPLICAS", "6", 1);
  assert_int_equal(load_env(&c, err, sizeof(err)), -1);
  assert_err_mentions(err, "ISSUN_NATS_REPLICAS", "'6'");
  clear_env(NULL);
  setenv("ISSUN_CLUSTER_EXPIRY", "soon", 1);
  assert_int_equal(load_env(&c, err, sizeof(err)), -1);
  assert_err_mentions(err, "ISSUN_CLUSTER_EXPIRY", "'soon'");
  clear_env(NULL);
  const char *bad[] = {"--nats-replicas", "0", NULL};
  assert_int_equal(load_args(&c, err, sizeof(err), bad), -1);
  assert_err_mentions(err, "--nats-replicas", "'0'");
}

/* Legacy (no-ALPN) clients: on by default, env and flag, bad values named,
 * in --help. */
static void test_allow_legacy(void **state) {
  srv_config c;
  char err[256];
  cfg_defaults(&c);
  assert_int_equal(c.allow_legacy, 1);
  setenv("ISSUN_ALLOW_LEGACY", "false", 1);
  assert_int_equal(load_env(&c, err, sizeof(err)), 0);
  assert_int_equal(c.allow_legacy, 0);
  const char *on[] = {"--allow-legacy", "yes", NULL};
  assert_int_equal(load_args(&c, err, sizeof(err), on), 0);
  assert_int_equal(c.allow_legacy, 1);
  unsetenv("ISSUN_ALLOW_LEGACY");
  const char *off[] = {"--allow-legacy=off", NULL};
  cfg_defaults(&c);
  assert_int_equal(load_args(&c, err, sizeof(err), off), 0);
  assert_int_equal(c.allow_legacy, 0);
  setenv("ISSUN_ALLOW_LEGACY", "sometimes", 1);
  cfg_defaults(&c);
  assert_int_equal(load_env(&c, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "ISSUN_ALLOW_LEGACY"));
  unsetenv("ISSUN_ALLOW_LEGACY");
  const char *bad[] = {"--allow-legacy=2", NULL};
  cfg_defaults(&c);
  assert_int_equal(load_args(&c, err, sizeof(err), bad), -1);
  assert_non_null(strstr(err, "--allow-legacy"));
  int rv = 0;
  const char *h[] = {"--help", NULL};
  char *out = capture(h, &rv);
  assert_int_equal(rv, 1);
  assert_non_null(strstr(out, "--allow-legacy"));
  assert_non_null(strstr(out, "ISSUN_ALLOW_LEGACY"));
  free(out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_cluster_settings, clear_env),
      cmocka_unit_test_setup(test_allow_legacy, clear_env),
      cmocka_unit_test_setup(test_security_defaults, clear_env),
      cmocka_unit_test_setup(test_security_env_and_flags, clear_env),
      cmocka_unit_test_setup(test_security_secret_file, clear_env),
      cmocka_unit_test_setup(test_security_bad_values, clear_env),
      cmocka_unit_test_setup(test_security_help, clear_env),
      cmocka_unit_test_setup(test_defaults, clear_env),
      cmocka_unit_test_setup(test_each_variable, clear_env),
      cmocka_unit_test_setup(test_key_alone_does_not_set_cert, clear_env),
      cmocka_unit_test_setup(test_empty_variable_is_unset, clear_env),
      cmocka_unit_test_setup(test_every_flag, clear_env),
      cmocka_unit_test_setup(test_flags_win_over_env, clear_env),
      cmocka_unit_test_setup(test_bad_env_even_when_flag_given, clear_env),
      cmocka_unit_test_setup(test_bare_bool_flag, clear_env),
      cmocka_unit_test_setup(test_flag_errors, clear_env),
      cmocka_unit_test_setup(test_bad_values_env, clear_env),
      cmocka_unit_test_setup(test_bad_values_flags, clear_env),
      cmocka_unit_test_setup(test_error_text_is_readable, clear_env),
      cmocka_unit_test_setup(test_room_size_cross_check, clear_env),
      cmocka_unit_test_setup(test_durations, clear_env),
      cmocka_unit_test_setup(test_booleans, clear_env),
      cmocka_unit_test_setup(test_range_edges, clear_env),
      cmocka_unit_test_setup(test_log_filters, clear_env),
      cmocka_unit_test_setup(test_rust_log_fallback, clear_env),
      cmocka_unit_test_setup(test_bind_forms, clear_env),
      cmocka_unit_test_setup(test_help, clear_env),
      cmocka_unit_test_setup(test_version, clear_env),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
