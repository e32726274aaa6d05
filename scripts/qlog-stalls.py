#!/usr/bin/env python3
"""Where a connection's stream stood still, from the relay's qlog traces.

    scripts/qlog-stalls.py [--after MS] DIR [TOP]

DIR holds the files ISSUN_QLOG_DIR wrote (one JSON-SEQ file per connection;
`QLOG=1 make bench-lossy` keeps them for a stalled run). For each connection
this prints, worst first (TOP lines, default 10):

  - send gap: the longest time between two packets the relay sent that
    carried stream data, how many ACK-only packets it sent in between, and
    the congestion window and bytes in flight when the gap began. A long
    gap with ACK-only packets and little in flight, while there were events
    for the player, means the relay held the stream itself (window or
    pacer). Gaps that begin before --after MS (say, a benchmark's warm-up,
    when nobody publishes yet) are not counted;
  - ack wait: the longest time from the first sending of a stream frame to
    the acknowledgment of a packet carrying it (retransmissions included);
  - hole: the longest time the relay waited for a gap in the stream it
    receives to be filled (the player's retransmission);
  - lost: packets the relay declared lost.

Connections are sorted by their ack wait, the surest sign of a stall.

Times are milliseconds from the start of each connection (qlog's relative
time). See docs/operations.md, "Tracing connections with qlog".
"""
import json
import os
import sys


def records(path):
    with open(path, "rb") as f:
        for chunk in f.read().split(b"\x1e"):
            chunk = chunk.strip()
            if not chunk:
                continue
            try:
                yield json.loads(chunk)
            except ValueError:
                continue  # a record cut short at the end of a trace


def analyse(path, after):
    last_stream_tx = None  # time of the last packet sent with stream data
    gap_cc = {}  # cc when that packet was sent
    acks_since = 0
    cc = {}  # the latest congestion_window / bytes_in_flight
    gap = (0, 0, 0, {})  # (length, start, ack-only packets, cc at start)
    first_sent = {}  # (stream, offset) -> first time sent
    in_packet = {}  # packet number -> [(stream, offset)]
    acked = {}  # (stream, offset) -> time of the first ack covering it
    have = {}  # stream -> contiguous bytes received
    pending = {}  # stream -> [(offset, end)] received beyond a hole
    hole_since = {}
    hole = (0, 0)
    lost = 0
    for r in records(path):
        name, t, d = r.get("name"), r.get("time", 0), r.get("data", {})
        if name == "recovery:metrics_updated":
            cc.update({k: d[k] for k in ("congestion_window", "bytes_in_flight") if k in d})
        elif name == "recovery:packet_lost":
            lost += 1
        elif name == "transport:packet_sent":
            frames = d.get("frames", [])
            streams = [f for f in frames if f.get("frame_type") == "stream"]
            if not streams:
                acks_since += 1
                continue
            if last_stream_tx is not None and last_stream_tx >= after and t - last_stream_tx > gap[0]:
                gap = (t - last_stream_tx, last_stream_tx, acks_since, dict(gap_cc))
            last_stream_tx, acks_since, gap_cc = t, 0, dict(cc)
            pn = d.get("header", {}).get("packet_number")
            for f in streams:
                key = (f.get("stream_id"), f.get("offset", 0))
                first_sent.setdefault(key, t)
                in_packet.setdefault(pn, []).append(key)
        elif name == "transport:packet_received":
            for f in d.get("frames", []):
                kind = f.get("frame_type")
                if kind == "ack":
                    for rng in f.get("acked_ranges", []):
                        for pn in range(rng[0], rng[-1] + 1):
                            for key in in_packet.pop(pn, ()):
                                acked.setdefault(key, t)
                elif kind == "stream":
                    sid, off = f.get("stream_id"), f.get("offset", 0)
                    end = off + f.get("length", 0)
                    c, p = have.get(sid, 0), pending.setdefault(sid, [])
                    if end <= c:
                        continue
                    if off > c:
                        p.append((off, end))
                        hole_since.setdefault(sid, t)
                        continue
                    c = end
                    p.sort()
                    while p and p[0][0] <= c:
                        c = max(c, p.pop(0)[1])
                    have[sid] = c
                    if not p and sid in hole_since:
                        waited = t - hole_since.pop(sid)
                        if waited > hole[0]:
                            hole = (waited, t - waited)
    wait = (0, 0)
    for key, t0 in first_sent.items():
        ta = acked.get(key)
        if ta is not None and ta - t0 > wait[0]:
            wait = (ta - t0, t0)
    return gap, wait, hole, lost


def main():
    args = sys.argv[1:]
    after = 0
    if len(args) >= 2 and args[0] == "--after":
        after, args = float(args[1]), args[2:]
    if not args:
        sys.exit(__doc__)
    top = int(args[1]) if len(args) > 1 else 10
    rows = []
    for name in sorted(os.listdir(args[0])):
        if name.endswith(".sqlog"):
            rows.append((name, *analyse(os.path.join(args[0], name), after)))
    rows.sort(key=lambda r: (-r[2][0], -r[1][0]))
    for name, gap, wait, hole, lost in rows[:top]:
        print("%s  send gap %d ms at %d (%d ACK-only, window %s, in flight %s)  "
              "ack wait %d ms at %d  hole %d ms at %d  lost %d" % (
                  name.split("-")[0][:12], gap[0], gap[1], gap[2],
                  gap[3].get("congestion_window", "?"), gap[3].get("bytes_in_flight", "?"),
                  wait[0], wait[1], hole[0], hole[1], lost))


if __name__ == "__main__":
    main()
