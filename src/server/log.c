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

/* A quoted field value: backslash escapes (log_escape's) are undone here
 * and json_str escapes again for JSON. */
static void json_str_unescape(FILE *f, const char *s, size_t n) {
  char tmp[1024];
  size_t k = 0;
  for (size_t i = 0; i < n && k < sizeof tmp; i++) {
    unsigned hi, lo;
    if (s[i] == '\\' && i + 3 < n && s[i + 1] == 'x' && sscanf(s + i + 2, "%1x%1x", &hi, &lo) == 2) {
      tmp[k++] = (char)(hi << 4 | lo); /* \xNN: a control byte, \u00NN in JSON */
      i += 3;
      continue;
    }
    if (s[i] == '\\' && i + 1 < n && (s[i + 1] == '"' || s[i + 1] == '\\')) i++;
    tmp[k++] = s[i];
  }
  json_str(f, tmp, k);
}

const char *log_escape(char *out, size_t outlen, const char *s) {
  size_t k = 0;
  if (outlen == 0) return out;
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    char esc[5];
    size_t n;
    if (ch == '"' || ch == '\\') {
      esc[0] = '\\', esc[1] = (char)ch, n = 2;
    } else if (ch < 0x20 || ch == 0x7f) {
      snprintf(esc, sizeof esc, "\\x%02x", ch);
      n = 4;
    } else {
      esc[0] = (char)ch, n = 1;
    }
    if (k + n >= outlen) break;
    memcpy(out + k, esc, n);
    k += n;
  }
  out[k] = 0;
  return out;
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
      vend = v;
      while (*vend && *vend != '"') vend += (*vend == '\\' && vend[1]) ? 2 : 1;
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
    /* Identifiers (node_id, room_id, ...) are u64s: always strings, so a log
     * store sees one type and no JSON parser rounds them. */
    int is_id = klen >= 3 && memcmp(key + klen - 3, "_id", 3) == 0;
    if (!quoted && !is_id && is_number(v, vlen))
      fwrite(v, 1, vlen, f);
    else if (quoted)
      json_str_unescape(f, v, vlen);
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
