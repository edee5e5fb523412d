#!/usr/bin/env python3
"""The UDP (BEP 15) column of tools/bench_tracker.py: a load generator and its measurement.

The load is the HTTP column's: the same torrents x peers (the same peers), announces of one
peer each (numwant 50, so a full swarm answers 49-50 peers), here as BEP 15 datagrams from one
generator process (a child, on its own core): it connects once (and again every 50 s),
then keeps ``--window`` announces in flight on one socket, sending the next as each reply
arrives; a reply lost to a full buffer is replaced after 0.2 s of silence. First a warm-up
walks every (torrent, peer) pair once, so every swarm is full; then random pairs for the
measured seconds.

The generator is Python: about 100-150k datagrams/s at best on this machine. That is far
above what our tracker serves, but may be below opentracker's ceiling, so the tool prints
each tracker's CPU use next to its rate: an opentracker well below 100 % of a core was held
back by the generator, and its per-CPU-second figure is the fairer comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

PROTOCOL_ID = 0x41727101980
_BODY = struct.Struct(">20s20sQQQIIIiH")


def _connect(sock: socket.socket) -> bytes:
    for _ in range(50):
        sock.send(struct.pack(">QII", PROTOCOL_ID, 0, 7))
        try:
            data = sock.recv(64)
        except TimeoutError:
            continue
        if len(data) >= 16 and data[:8] == struct.pack(">II", 0, 7):
            return data[8:16]
    sys.exit("bench: the tracker does not answer UDP connects")


def _bodies(hashes: list[bytes], peers: int) -> list[bytes]:
    """The fixed part of every (torrent, peer) announce: all but connection and transaction
    ids. The very peers of tools/bench_tracker.lua (peer id ``-BK0001-TTTTTTPPPPPP``, port
    10000 + p, key t * 100 + p, the first fifth seeders), so the swarms the HTTP column filled
    stay 50 peers large instead of doubling."""
    out = []
    for t, h in enumerate(hashes, 1):
        for p in range(1, peers + 1):
            peer_id = b"-BK0001-%06d%06d" % (t, p)
            left = 0 if p <= peers / 5 else 1_000_000
            out.append(_BODY.pack(h, peer_id, 0, left, 0, 0, 0, t * 100 + p, 50, 10000 + p))
    return out


def load(args: argparse.Namespace) -> None:
    """Child process: announce for ``args.seconds``; print one JSON line of counts."""
    hashes = [bytes.fromhex(line) for line in Path(args.hashes).read_text().split()]
    bodies = _bodies(hashes, args.peers)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.connect(("127.0.0.1", args.port))
    sock.settimeout(0.2)
    cid = _connect(sock)
    renewed = time.monotonic()
    header = cid + b"\0\0\0\1"
    rng = random.Random(1)
    n = len(bodies)
    seq = args.mode == "seq"
    nxt = args.start
    sent = replies = bad = 0
    sizes: list[int] = []
    start = time.monotonic()
    end = start + args.seconds

    def send() -> None:
        nonlocal sent, nxt
        if seq:
            k = nxt % n
            nxt += 1
        else:
            k = rng.randrange(n)
        sock.send(header + (sent & 0xFFFFFFFF).to_bytes(4, "big") + bodies[k])
        sent += 1

    for _ in range(args.window):
        send()
    while True:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            now = time.monotonic()
            if now >= end:
                break
            for _ in range(args.window):  # replies lost (full buffers): refill the window
                send()
            continue
        replies += 1
        if data[:4] != b"\0\0\0\1" or len(data) < 20:
            bad += 1
        elif replies % 997 == 0:
            sizes.append((len(data) - 20) // 6)
        if replies & 1023 == 0:
            now = time.monotonic()
            if now >= end:
                break
            if now - renewed > 50:
                header = _connect(sock) + b"\0\0\0\1"
                renewed = now
        if seq and nxt - args.start >= args.count:
            if replies >= args.count:
                break
            continue
        send()
    elapsed = time.monotonic() - start
    out = {"replies": replies, "seconds": elapsed, "bad": bad, "sent": sent, "sizes": sizes}
    print(json.dumps(out), flush=True)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run_load(
    port: int, hashfile: Path, peers: int, seconds: float, window: int, **kw: object
) -> dict[str, object]:
    cmd = [sys.executable, __file__, "--load", "--port", str(port), "--hashes", str(hashfile)]
    cmd += ["--peers", str(peers), "--seconds", str(seconds), "--window", str(window)]
    for key, value in kw.items():
        cmd += [f"--{key}", str(value)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    if done.returncode != 0:
        sys.exit(f"bench: the UDP load generator failed: {done.stderr.strip()[-500:]}")
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(
    port: int, hashfile: Path, *, torrents: int, peers: int, seconds: float, pid: int, window: int
) -> tuple[float, float]:
    """Warm up, then measure UDP announces/s against the tracker at ``port`` (process
    ``pid``). Prints a line like the HTTP column's; returns (announces/s, tracker CPU as a
    fraction of one core)."""
    need = torrents * peers
    warm = _run_load(port, hashfile, peers, 120, window, mode="seq", count=need, start=0)
    if int(str(warm["replies"])) < need:
        sys.exit(f"bench: UDP warm-up got {warm['replies']} of {need} replies")
    cpu0 = _cpu_seconds(pid)
    got = _run_load(port, hashfile, peers, seconds, window, mode="random")
    used = _cpu_seconds(pid) - cpu0  # the tracker idles while the generator starts and ends
    replies, elapsed = int(str(got["replies"])), float(str(got["seconds"]))
    cpu = used / elapsed  # so: announces per CPU-second = replies / used
    sizes = got["sizes"]
    assert isinstance(sizes, list)
    if got["bad"] or not sizes or min(sizes) < min(peers, 50) - 1:
        sys.exit(f"bench: UDP replies were not full announce replies: {got}")
    rate = replies / elapsed
    print(
        f"  UDP     : {rate:>7,.0f} announces/s, {min(sizes)}-{max(sizes)} peers a reply, "
        f"CPU: tracker {cpu:.0%} of one core (window {window})"
    )
    return rate, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--load", action="store_true")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--hashes", required=True)
    ap.add_argument("--peers", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--mode", choices=["seq", "random"], default="random")
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--start", type=int, default=0)
    load(ap.parse_args())


if __name__ == "__main__":
    main()
