/*
 * Writes the seed corpus for the fuzz targets, built with our encoders:
 *
 *   gen_corpus OUTDIR      (OUTDIR is tests/fuzz/corpus in the source tree)
 *
 * OUTDIR/fuzz_stream/    whole frames, and a client and a server session
 * OUTDIR/fuzz_datagram/  one EVENT frame per file
 * OUTDIR/fuzz_payloads/  frame type byte + payload (the target's format)
 *
 * The output is deterministic, so regenerating it changes no committed file
 * unless the samples below change.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "proto/proto.h"

typedef struct frame {
  const char *name;
  uint8_t buf[1024];
  size_t len;
} frame;

#define MAX_FRAMES 32
static frame frames[MAX_FRAMES];
static size_t nframes;

static frame *add(const char *name) {
  if (nframes == MAX_FRAMES) {
    fprintf(stderr, "gen_corpus: too many samples\n");
    exit(1);
  }
  frame *f = &frames[nframes++];
  f->name = name;
  return f;
}

static void check(const frame *f) {
  if (f->len == 0) {
    fprintf(stderr, "gen_corpus: %s did not encode\n", f->name);
    exit(1);
  }
}

static pr_bytes bs(const char *s) {
  pr_bytes b = {(const uint8_t *)s, strlen(s)};
  return b;
}

static size_t kv_list(uint8_t *mem, size_t cap, const char *const *kv, size_t pairs) {
  pr_buf b;
  pr_buf_init(&b, mem, cap);
  pr_put_u64(&b, pairs);
  for (size_t i = 0; i < 2 * pairs; i++)
    pr_put_str(&b, kv[i], strlen(kv[i]));
  return b.err ? 0 : b.len;
}

static void build(void) {
  static const uint8_t body[] = {0x10, 0x00, 0xff, 0x7f, 0x00, 0x01};
  static const char *const kv[] = {"map", "dust", "mode", "ctf", "région", "ouest"};
  uint8_t meta[256];
  pr_bytes m = {meta, kv_list(meta, sizeof meta, kv, 3)};
  frame *f;

  const char *ev_names[] = {"event_broadcast", "event_to_server", "event_targeted"};
  for (uint32_t scope = 0; scope <= 2; scope++) {
    pr_event e = {.sender = 7,
                  .timestamp = 1700000000000ull,
                  .sequence = scope + 1,
                  .scope = scope,
                  .target = scope == 2 ? 42 : 0};
    e.type_name = bs("pong::PaddleMove");
    e.payload.ptr = body;
    e.payload.len = sizeof body;
    f = add(ev_names[scope]);
    f->len = pr_enc_event(f->buf, sizeof f->buf, &e);
  }
  pr_event e0 = {.scope = PR_SCOPE_BROADCAST, .type_name = bs("x")};
  f = add("event_empty_payload");
  f->len = pr_enc_event(f->buf, sizeof f->buf, &e0);

  pr_hello h = {.node_id = 0, .name = bs("ann")};
  f = add("hello_plain");
  f->len = pr_enc_hello(f->buf, sizeof f->buf, &h);
  h.node_id = 1234;
  h.has_resume = 1;
  for (int i = 0; i < 16; i++)
    h.resume[i] = (uint8_t)(i * 17);
  h.has_token = 1;
  h.token = bs("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl");
  h.name = bs("Zoë");
  f = add("hello_resume_token");
  f->len = pr_enc_hello(f->buf, sizeof f->buf, &h);

  pr_ack a = {.node_id = 1234,
              .heartbeat_ms = 5000,
              .max_frame_payload = 65536,
              .max_events_per_sec = 100,
              .server_time_ms = 1700000000123ull};
  memset(a.resume, 0xa5, sizeof a.resume);
  f = add("ack");
  f->len = pr_enc_ack(f->buf, sizeof f->buf, &a);

  f = add("heartbeat");
  f->len = pr_enc_heartbeat(f->buf, sizeof f->buf, 1700000000456ull);
  f = add("error_rate_limited");
  f->len = pr_enc_error(f->buf, sizeof f->buf, PR_E_RATE_LIMITED, "events dropped");

  pr_room_create c = {.request_id = 1, .name = bs("lobby"), .max_clients = 4};
  c.metadata.count = 3;
  c.metadata.raw = m;
  f = add("room_create");
  f->len = pr_enc_room_create(f->buf, sizeof f->buf, &c);
  pr_room_join j = {.request_id = 2, .room_id = 0x0102030405060708ull};
  f = add("room_join");
  f->len = pr_enc_room_join(f->buf, sizeof f->buf, &j);
  f = add("room_leave");
  f->len = pr_enc_room_simple(f->buf, sizeof f->buf, PR_FT_ROOM_LEAVE, 3);
  f = add("room_list");
  f->len = pr_enc_room_simple(f->buf, sizeof f->buf, PR_FT_ROOM_LIST, 4);
  f = add("room_start");
  f->len = pr_enc_room_simple(f->buf, sizeof f->buf, PR_FT_ROOM_START, 5);

  const uint64_t members[] = {1234, 99, 7};
  pr_buf b;
  pr_reply_state st;
  f = add("reply_rooms");
  pr_buf_init(&b, f->buf, sizeof f->buf);
  pr_reply_begin(&b, &st, 4, PR_E_NO_ERROR);
  pr_reply_add_room(&b, &st, 0x0102030405060708ull, (const uint8_t *)"lobby", 5, PR_ROOM_WAITING,
                    1234, 4, members, 3, &m);
  pr_reply_add_room(&b, &st, 77, (const uint8_t *)"", 0, PR_ROOM_IN_PROGRESS, 99, 2, members + 1, 1,
                    NULL);
  pr_reply_finish(&b, &st);
  f->len = b.err ? 0 : b.len;
  f = add("reply_refused");
  pr_buf_init(&b, f->buf, sizeof f->buf);
  pr_reply_begin(&b, &st, 5, PR_E_NOT_HOST);
  pr_reply_finish(&b, &st);
  f->len = b.err ? 0 : b.len;

  pr_presence pp = {.room_id = 77, .node_id = 99, .change = PR_PRESENCE_LEAVE, .host = 7};
  f = add("presence");
  f->len = pr_enc_presence(f->buf, sizeof f->buf, &pp);

  for (size_t i = 0; i < nframes; i++)
    check(&frames[i]);
}

static const frame *find(const char *name) {
  for (size_t i = 0; i < nframes; i++)
    if (strcmp(frames[i].name, name) == 0)
      return &frames[i];
  fprintf(stderr, "gen_corpus: no sample %s\n", name);
  exit(1);
}

static void mkdir_p(const char *path) {
  if (mkdir(path, 0755) != 0 && errno != EEXIST) {
    perror(path);
    exit(1);
  }
}

static void write_file(const char *dir, const char *target, const char *name, const uint8_t *pre,
                       size_t prelen, const uint8_t *p, size_t n) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s/%s", dir, target, name);
  FILE *fp = fopen(path, "wb");
  if (fp == NULL || fwrite(pre, 1, prelen, fp) != prelen || fwrite(p, 1, n, fp) != n ||
      fclose(fp) != 0) {
    perror(path);
    exit(1);
  }
}

/* Concatenates the named frames into one stream file. */
static void write_session(const char *dir, const char *file, const char *const *names,
                          size_t count) {
  static uint8_t s[16384];
  size_t n = 0;
  for (size_t i = 0; i < count; i++) {
    const frame *f = find(names[i]);
    memcpy(s + n, f->buf, f->len);
    n += f->len;
  }
  write_file(dir, "fuzz_stream", file, NULL, 0, s, n);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
    return 2;
  }
  const char *dir = argv[1];
  build();
  char path[4096];
  const char *targets[] = {"fuzz_stream", "fuzz_datagram", "fuzz_payloads"};
  mkdir_p(dir);
  for (size_t i = 0; i < 3; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, targets[i]);
    mkdir_p(path);
  }

  for (size_t i = 0; i < nframes; i++) {
    const frame *f = &frames[i];
    char name[128];
    snprintf(name, sizeof name, "%s.bin", f->name);
    write_file(dir, "fuzz_stream", name, NULL, 0, f->buf, f->len);
    /* payloads: the type byte from the header, then the payload */
    write_file(dir, "fuzz_payloads", name, f->buf + 3, 1, f->buf + PR_HDR_LEN, f->len - PR_HDR_LEN);
    if (f->buf[3] == PR_FT_EVENT)
      write_file(dir, "fuzz_datagram", name, NULL, 0, f->buf, f->len);
  }

  /* an unknown frame type, which a session stream skips */
  uint8_t unknown[PR_HDR_LEN + 3] = {0};
  pr_hdr_encode(unknown, 0x7f, 3);
  static const char *const client[] = {
      "hello_resume_token", "heartbeat", "room_create", "event_broadcast", "event_targeted",
      "room_list",          "room_join", "room_start",  "event_to_server", "room_leave",
  };
  static const char *const server[] = {
      "ack",           "reply_rooms", "presence", "event_broadcast", "error_rate_limited",
      "reply_refused", "heartbeat",
  };
  write_session(dir, "session_client.bin", client, sizeof client / sizeof client[0]);
  write_session(dir, "session_server.bin", server, sizeof server / sizeof server[0]);
  const frame *hb = find("heartbeat");
  write_file(dir, "fuzz_stream", "unknown_type.bin", unknown, sizeof unknown, hb->buf, hb->len);
  return 0;
}
