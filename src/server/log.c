#include "server/log.h"

#include <stdarg.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG", "TRACE"};

static void json_str(FILE *f, const char *s, size_t n) {
  fputc('"', f);
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '"' || ch == '\\')
      fprintf(f, "\\%c", ch);
    else if (ch < 0x20)
      fprintf(f, "\\u%04x", ch);
    else
      fputc(ch, f);
  }
  fputc('"', f);
}

static int is_number(const char *s, size_t n) {
  if (n == 0 || n > 19) return 0;
  for (size_t i = 0; i < n; i++)
    if (s[i] < '0' || s[i] > '9') return 0;
  return !(n > 1 && s[0] == '0');
}

/* Renders `k=v k2="quoted value"` as JSON members (each preceded by ','). */
static void json_fields(FILE *f, const char *s) {
  for (;;) {
    while (*s == ' ') s++;
    const char *eq = strchr(s, '=');
    if (!*s || !eq) return;
    const char *key = s, *v = eq + 1, *vend;
    size_t klen = (size_t)(eq - key), vlen;
    int quoted = (*v == '"');
    if (quoted) {
      v++;
      vend = strchr(v, '"');
      if (!vend) vend = v + strlen(v);
      s = *vend ? vend + 1 : vend;
    } else {
      vend = strchr(v, ' ');
      if (!vend) vend = v + strlen(v);
      s = vend;
    }
    vlen = (size_t)(vend - v);
    fputc(',', f);
    json_str(f, key, klen);
    fputc(':', f);
    if (!quoted && is_number(v, vlen))
      fwrite(v, 1, vlen, f);
    else
      json_str(f, v, vlen);
  }
}

void log_write(const srv_log *lg, int level, const char *msg, const char *fields_fmt, ...) {
  char fields[1024];
  va_list ap;
  fields[0] = 0;
  if (fields_fmt) {
    va_start(ap, fields_fmt);
    vsnprintf(fields, sizeof fields, fields_fmt, ap);
    va_end(ap);
  }

  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  char ts[40];
  size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(ts + n, sizeof ts - n, ".%03ldZ", (long)(tv.tv_usec / 1000));

  FILE *f = lg->out ? lg->out : stderr;
  if (level < 0) level = 0;
  if (level > 4) level = 4;
  flockfile(f);
  if (lg->format == 1) {
    fprintf(f, "{\"time\":\"%s\",\"level\":\"%s\",\"message\":", ts, level_names[level]);
    json_str(f, msg, strlen(msg));
    json_fields(f, fields);
    fputs("}\n", f);
  } else if (fields[0]) {
    fprintf(f, "%s %-5s %s %s\n", ts, level_names[level], msg, fields);
  } else {
    fprintf(f, "%s %-5s %s\n", ts, level_names[level], msg);
  }
  fflush(f);
  funlockfile(f);
}
