#!/usr/bin/env python3
"""The UDP (BEP 15) column of tools/bench_tracker.py: ours against opentracker, alternating.

    .venv/bin/python tools/bench_tracker.py --udp-only [--rounds 2] [--senders 2]
        [--sockets 4] [--udp-window 32] [--duration 10]

Both trackers run at once on 127.0.0.1: ours (the production server code, in-memory store,
``min interval`` off as in the HTTP column) and Debian's opentracker (its ``-P`` port), each
with the same whitelist of the 1,000 info-hashes. Each is warmed up (every (torrent, peer)
pair announced once, so every swarm is full), then the measured rounds alternate: ours,
opentracker, ours, opentracker, ...; each round prints announces/s, the tracker's CPU (all
its threads, as a share of one core), announces per CPU-second of the tracker, the load
generator's CPU and the machine's load average.

Load: ``--senders`` processes, each with ``--sockets`` UDP sockets, each socket keeping
``--udp-window`` announces in flight (the next one sent as each reply arrives; a window that
went silent for 0.2 s, its datagrams lost to a full buffer, is refilled). Each socket
connects once and reuses its connection id (a fresh one after 50 s, inside BEP 15's minute).
The announces are built before the round starts: the HTTP column's swarm mix (1,000
torrents x 50 peers, the same peer ids, ports and keys; a fifth of each swarm seeders;
numwant 50, so a full swarm answers 49-50 peers), in a random order, each process its own.
Every reply is checked (action 1, a sample of them for 49-50 peers); a round with bad replies
is not counted.

What limits each figure: the trackers and the generator share this machine's cores (2 here)
with whatever else runs. A tracker under ~90 % of a core (opentracker: of its threads) was
held back by the generator or by the machine, not by its own speed: its announces/s is a
floor. Announces per CPU-second of the tracker (the tracker's own cost, kernel time of its
sendto/recvfrom included) does not depend on who else got the cores, and is the fairer
comparison when either side was held back. The generator is Python: about 2-4 us of CPU
per announce it sends and reads.
"""

from __future__ import annotations

import json
import os
import random
import resource
import selectors
import socket
import statistics
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PROTOCOL_ID = 0x41727101980
_BODY = struct.Struct(">20s20sQQQIIIiH")
#: Announces built per socket (cycled); a round sends them in this random order.
_PACKETS = 20_000


def _connect(sock: socket.socket) -> bytes:
    """A connection id for ``sock`` (blocking, 0.2 s per try)."""
    sock.settimeout(0.2)
    for attempt in range(50):
        sock.send(struct.pack(">QII", PROTOCOL_ID, 0, attempt))
        try:
            while True:
                data = sock.recv(2048)
                if len(data) >= 16 and data[:8] == struct.pack(">II", 0, attempt):
                    return data[8:16]
        except TimeoutError:
            continue
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


class _Sender:
    """One socket: its connection id, its pre-built announces, its window."""

    def __init__(self, port: int, bodies: list[bytes], order: list[int]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.connect(("127.0.0.1", port))
        self.bodies, self.order = bodies, order
        self.next = 0
        self.renew()

    def renew(self) -> None:
        """A fresh connection id and the announces rebuilt with it."""
        self.sock.setblocking(True)
        header = _connect(self.sock) + b"\0\0\0\1"
        self.packets = [
            header + i.to_bytes(4, "big") + self.bodies[k] for i, k in enumerate(self.order)
        ]
        self.renewed = time.monotonic()
        self.sock.setblocking(False)

    def send(self, n: int) -> int:
        """Send up to ``n`` announces; how many the kernel took."""
        packets, send = self.packets, self.sock.send
        for i in range(n):
            try:
                send(packets[self.next])
            except BlockingIOError:
                return i
            self.next = (self.next + 1) % len(packets)
        return n


def load(args: list[str]) -> None:
    """Child process: build the announces, print ``ready``, wait for a line on stdin, then
    announce for the given seconds and print one JSON line of counts.

    ``args``: port, hash file, peers, seconds, sockets, window, seed, mode (``random`` or
    ``seq:START:COUNT``: every pair in order from START, COUNT of them, one socket)."""
    port, hashfile, peers, seconds, sockets, window, seed = (
        int(args[0]), args[1], int(args[2]), float(args[3]), int(args[4]), int(args[5]),
        int(args[6]),
    )  # fmt: skip
    mode = args[7]
    hashes = [bytes.fromhex(line) for line in Path(hashfile).read_text().split()]
    bodies = _bodies(hashes, peers)
    rng = random.Random(seed)
    count = 0
    if mode.startswith("seq:"):
        _, start, count_text = mode.split(":")
        count = int(count_text)
        orders = [[(int(start) + i) % len(bodies) for i in range(count)]]
    else:
        orders = [[rng.randrange(len(bodies)) for _ in range(_PACKETS)] for _ in range(sockets)]
    senders = [_Sender(port, bodies, order) for order in orders]
    sel = selectors.DefaultSelector()
    for s in senders:
        sel.register(s.sock, selectors.EVENT_READ, s)
    print("ready", flush=True)
    sys.stdin.readline()
    replies = bad = sent = 0
    sizes: list[int] = []
    start_t = time.monotonic()
    end = start_t + seconds
    for s in senders:
        sent += s.send(min(window, count) if count else window)
    while True:
        events = sel.select(0.2)
        now = time.monotonic()
        if now >= end or (count and replies >= count):
            break
        if not events:  # replies lost to full buffers: refill every window
            for s in senders:
                if not count or sent < count:
                    sent += s.send(window)
            continue
        for key, _ in events:
            s = key.data
            recv = s.sock.recv
            got = 0
            while True:
                try:
                    data = recv(2048)
                except BlockingIOError:
                    break
                got += 1
                if data[:4] != b"\0\0\0\1" or len(data) < 20:
                    bad += 1
                elif (replies + got) % 997 == 0:
                    sizes.append((len(data) - 20) // 6)
            replies += got
            if count:
                got = min(got, count - sent)
            sent += s.send(got)
            if now - s.renewed > 50:
                s.renew()
    elapsed = time.monotonic() - start_t
    out = {"replies": replies, "seconds": elapsed, "bad": bad, "sent": sent, "sizes": sizes}
    print(json.dumps(out), flush=True)


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


@dataclass
class Round:
    rate: float  # announces/s
    cpu: float  # the tracker's CPU, fraction of one core
    sys_cpu: float  # the part of it spent in the kernel
    generator_cpu: float  # the load generator's CPU, fraction of one core
    load: float  # the machine's 1-minute load average at the end

    @property
    def per_cpu(self) -> float:
        """Announces per CPU-second of the tracker."""
        return self.rate / max(self.cpu, 1e-9)


def _generate(
    port: int, hashfile: Path, *, peers: int, seconds: float, pid: int, modes: list[str],
    sockets: int, window: int,
) -> tuple[Round, list[dict[str, object]]]:  # fmt: skip
    """Run one generator process per entry of ``modes`` at once against the tracker at
    ``port`` (process ``pid``): the round's figures and each process's counts."""
    procs = []
    for seed, mode in enumerate(modes, 1):
        cmd = [sys.executable, __file__, "--load", str(port), str(hashfile), str(peers)]
        cmd += [str(seconds), str(sockets), str(window), str(seed), mode]
        procs.append(
            subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        )
    for p in procs:
        assert p.stdout is not None
        if p.stdout.readline().strip() != "ready":
            sys.exit("bench: a UDP load generator failed to start")
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    (user0, sys0), t0 = _cpu_seconds(pid), time.monotonic()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=seconds + 120)
        if p.returncode != 0:
            sys.exit("bench: the UDP load generator failed")
        results.append(json.loads(out.strip().splitlines()[-1]))
    elapsed = time.monotonic() - t0
    user1, sys1 = _cpu_seconds(pid)
    cpu, sys_cpu = (user1 + sys1 - user0 - sys0) / elapsed, (sys1 - sys0) / elapsed
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    gen = (kids1.ru_utime + kids1.ru_stime - kids0.ru_utime - kids0.ru_stime) / elapsed
    replies = sum(int(r["replies"]) for r in results)
    return Round(replies / elapsed, cpu, sys_cpu, gen, os.getloadavg()[0]), results


def warm_up(port: int, hashfile: Path, *, torrents: int, peers: int, pid: int) -> None:
    """Announce every (torrent, peer) pair once, in order: every swarm full."""
    need = torrents * peers
    _, results = _generate(
        port, hashfile, peers=peers, seconds=120, pid=pid, modes=[f"seq:0:{need}"],
        sockets=1, window=64,
    )  # fmt: skip
    got = int(str(results[0]["replies"]))
    if got < need:
        sys.exit(f"bench: UDP warm-up got {got} of {need} replies")


def measure(
    port: int, hashfile: Path, *, peers: int, seconds: float, pid: int, senders: int,
    sockets: int, window: int,
) -> Round:  # fmt: skip
    """One measured round of random announces against the tracker at ``port``."""
    r, results = _generate(
        port, hashfile, peers=peers, seconds=seconds, pid=pid, modes=["random"] * senders,
        sockets=sockets, window=window,
    )  # fmt: skip
    sizes = [int(n) for res in results for n in res["sizes"]]  # type: ignore[attr-defined]
    if any(res["bad"] for res in results) or not sizes or min(sizes) < min(peers, 50) - 1:
        sys.exit(f"bench: UDP replies were not full announce replies: {results}")
    return r


def report(label: str, r: Round) -> None:
    print(
        f"  {label:<12} {r.rate:>9,.0f} announces/s, CPU: tracker {r.cpu:>4.0%} "
        f"(kernel {r.sys_cpu:.0%}), "
        f"generator {r.generator_cpu:>4.0%} of one core; {r.per_cpu:>9,.0f} per CPU-s of "
        f"the tracker; load average {r.load:.1f}"
    )


def summary(rounds: dict[str, list[Round]]) -> None:
    """The table: medians over the rounds, and the ratios."""
    ours, ot = rounds["ours"], rounds["opentracker"]
    print()
    print(
        f"{'UDP (BEP 15), medians':<24} {'announces/s':>11} {'CPU tracker':>11} "
        f"{'per CPU-s':>10} {'rounds':>6}"
    )
    for label, rs in rounds.items():
        print(
            f"{label:<24} {statistics.median(r.rate for r in rs):>11,.0f} "
            f"{statistics.median(r.cpu for r in rs):>11.0%} "
            f"{statistics.median(r.per_cpu for r in rs):>10,.0f} {len(rs):>6}"
        )
    by_rate = [o.rate / t.rate for o, t in zip(ours, ot, strict=True)]
    per_cpu = [o.per_cpu / t.per_cpu for o, t in zip(ours, ot, strict=True)]
    loads = [r.load for r in ours + ot]
    print(
        f"ratio ours / opentracker, per pair of rounds: by rate "
        f"{', '.join(f'{x:.2f}' for x in by_rate)} (median {statistics.median(by_rate):.2f}); "
        f"per CPU-second {', '.join(f'{x:.2f}' for x in per_cpu)} "
        f"(median {statistics.median(per_cpu):.2f}). Target: >= 0.5 by rate. "
        f"Load average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} CPUs."
    )
    print(
        "(A tracker under ~90 % of a core was held back by the generator or the machine: "
        "its rate is a floor; per CPU-second is its own cost. opentracker's UDP threads may "
        "use more than one core.)"
    )


if __name__ == "__main__":
    if sys.argv[1:2] != ["--load"]:
        sys.exit("bench_tracker_udp.py is run by tools/bench_tracker.py (--udp-only)")
    load(sys.argv[2:])
