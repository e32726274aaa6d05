/*
 * Per-source-address admission limits, sans I/O: how many connections one
 * address holds, and how many new handshakes it may start per second.
 *
 * The key is the IPv4 address, or the /64 prefix of an IPv6 address (one
 * host usually owns a whole /64, so a per-/128 limit would mean nothing);
 * IPv4-mapped IPv6 addresses count as their IPv4 address.  Handshakes use a
 * token bucket: `hs_per_sec` tokens per second, the same capacity, full for
 * an address not seen before.  0 for either limit turns it off.
 *
 * The table is bounded (max_entries).  An entry lives while its address
 * holds a connection or its bucket is not yet full again; idle entries are
 * swept when the table fills.  When it is full of live entries, new
 * addresses are refused (IPL_TABLE_FULL) rather than the table growing.
 */
#ifndef ISSUN_SERVER_IPLIMIT_H
#define ISSUN_SERVER_IPLIMIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum iplimit_result {
  IPL_OK = 0,
  IPL_CONNS,      /* the address holds max_conns connections already */
  IPL_RATE,       /* the address used up its handshakes for now */
  IPL_TABLE_FULL, /* no room to track one more address */
};

typedef struct iplimit iplimit;

/* NULL on allocation failure. */
iplimit *iplimit_new(uint32_t max_conns, uint32_t hs_per_sec, uint32_t max_entries, uint64_t seed);
void iplimit_free(iplimit *t);

/* Would a new connection from sa be admitted at now_ns?  Changes nothing
 * visible (it may refill the address's bucket).  Returns an IPL_* value. */
int iplimit_check(iplimit *t, const struct sockaddr *sa, uint64_t now_ns);

/* Admits a new connection from sa: takes one handshake token and counts
 * the connection.  Returns IPL_OK (then call iplimit_release when the
 * connection ends) or the reason it was refused (nothing counted). */
int iplimit_admit(iplimit *t, const struct sockaddr *sa, uint64_t now_ns);

/* A connection admitted from sa has ended. */
void iplimit_release(iplimit *t, const struct sockaddr *sa, uint64_t now_ns);

/* Connections counted for sa (0 when unknown); entries in the table. */
uint32_t iplimit_conns(const iplimit *t, const struct sockaddr *sa);
size_t iplimit_entries(const iplimit *t);

#endif
