/*
 * Logging: one line per thing an operator cares about.  The level is checked
 * before any formatting, so a disabled level costs one compare.
 *
 *   LOG_INFO(lg, "client connected", "node_id=%llu addr=%s", ...);
 *
 * The message is a fixed phrase; the fields are key=value pairs, rendered as
 * "message key=value ..." in text mode and as JSON members in JSON mode.
 */
#ifndef ISSUN_SERVER_LOG_H
#define ISSUN_SERVER_LOG_H

#include <stdio.h>

typedef struct srv_log {
  int level;  /* enum cfg_log_level */
  int format; /* enum cfg_log_format */
  FILE *out;
} srv_log;

void log_write(const srv_log *lg, int level, const char *msg, const char *fields_fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Escapes a string a peer chose (a display name) for a quoted field value:
 * '"' and '\\' get a backslash, control bytes become \\xNN, so it can neither
 * end the value early nor start a new log line.  Returns out (truncated to
 * outlen - 1 bytes, never mid-escape). */
const char *log_escape(char *out, size_t outlen, const char *s);

#define LOG_AT(lg, lvl, msg, ...)                                                                  \
  do {                                                                                             \
    if ((lg)->level >= (lvl)) log_write((lg), (lvl), (msg), __VA_ARGS__);                          \
  } while (0)
#define LOG_ERROR(lg, msg, ...) LOG_AT(lg, 0, msg, __VA_ARGS__)
#define LOG_WARN(lg, msg, ...) LOG_AT(lg, 1, msg, __VA_ARGS__)
#define LOG_INFO(lg, msg, ...) LOG_AT(lg, 2, msg, __VA_ARGS__)
#define LOG_DEBUG(lg, msg, ...) LOG_AT(lg, 3, msg, __VA_ARGS__)
#define LOG_TRACE(lg, msg, ...) LOG_AT(lg, 4, msg, __VA_ARGS__)

#endif
