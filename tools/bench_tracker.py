#!/usr/bin/env python3
"""Announces per second: torrentkit's tracker (memory, Redis) against opentracker, one run.

    .venv/bin/python tools/bench_tracker.py [--duration 10] [--connections 50]
        [--store all|memory|redis] [--workers N] [--no-udp | --udp-only] [--rounds 2]

Configurations, in this order: our tracker with the in-memory store (one process); with the
Redis store (a redis-server this tool starts on a unix socket, no persistence) and 1 worker,
then 2 workers (``--workers N`` instead: N only); opentracker. ``--store memory`` / ``redis``
runs only those (opentracker always runs: it is the reference). The Redis workers run the
production supervisor (``torrentkit.cli.tracker.run_workers``: SO_REUSEPORT, one forked
process per socket); the 2-worker run reuses the swarms the 1-worker run left in Redis (a
restart keeps every swarm), after the check announce shows them full.

Load: wrk (Debian package) with tools/bench_tracker.lua: 1,000 torrents x 50 peers,
compact announces, numwant 50, over HTTP keep-alive connections, as real clients send them.
Both trackers run on 127.0.0.1 with the same whitelist of the 1,000 info-hashes (Debian's
opentracker serves only whitelisted torrents). Each is warmed up first (so every swarm is
full and every announce returns 49-50 peers), checked with one real announce, then measured.

Our tracker runs the production server code (``torrentkit.discovery.tracker.server.serve``)
in a child process, with one difference from ``torrentkit tracker``'s defaults: the
``min interval`` rule is off. In this load each peer re-announces every few seconds, and with
the rule on those announces would be answered without peers, which is cheaper and would flatter
our figure; opentracker answers every announce in full, so ours does too.

Keep-alive: ours keeps connections open, as clients expect. opentracker closes each
connection after its reply (HTTP/1.1 without keep-alive), so wrk reconnects for every
announce there; the tool reports those closes, and the figure is what opentracker delivers.

What limits ours: one Python process on one core (the tool prints the tracker's CPU use; it
sits at ~100 % of a core). Per announce roughly half the time is aiohttp's HTTP handling
and the send() syscall, the rest our parse + swarm update + encode. More processes with the
in-memory store would not be honest: SO_REUSEPORT workers would each hold a private part of
every swarm. With Redis they share one swarm view; on this 2-core machine Redis, the workers
and wrk then share two cores, so the Redis figures are a floor, not the scaling (the CPU
columns say where the time went; docs/tracker.md: what a bigger machine changes).

Prints both figures, the CPU each side used, and the ratio. A tool, not a test: nothing is
asserted.

UDP (BEP 15) column, after the HTTP ones: the same swarms as datagrams against our
in-memory tracker and opentracker (its ``-P`` port), both running at once, measured in
alternating rounds (``--rounds`` each) by several load generator processes
(tools/bench_tracker_udp.py says how it loads and what limits each figure). ``--no-udp``
skips it, ``--udp-only`` runs only it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bench_tracker_udp  # a sibling tool, not a package: the UDP column

ROOT = Path(__file__).resolve().parent.parent
LUA = Path(__file__).resolve().with_name("bench_tracker.lua")


def _serve(args: argparse.Namespace) -> None:
    """Child process: our tracker with the benchmark's config; first line = the port."""
    sys.path.insert(0, str(ROOT))
    from torrentkit.cli.tracker import load_whitelist, run_workers
    from torrentkit.discovery.tracker.server import open_listen_socket, open_udp_socket, serve
    from torrentkit.discovery.tracker.state import TrackerConfig, TrackerState

    config = TrackerConfig(interval=1800, min_interval=0)
    if args.store_url:
        socks = [open_listen_socket("127.0.0.1", 0, reuse_port=True)]
        port = socks[0].getsockname()[1]
        socks += [
            open_listen_socket("127.0.0.1", port, reuse_port=True) for _ in range(args.workers - 1)
        ]
        print(port, flush=True)
        worker_args = argparse.Namespace(store=args.store_url, whitelist=None)
        with contextlib.redirect_stdout(open(os.devnull, "w")):  # the "listening on" line
            run_workers(
                worker_args, config, load_whitelist(args.whitelist), socks, [], os.urandom(32)
            )
        return
    state = TrackerState(config, whitelist=load_whitelist(args.whitelist))
    sock = open_listen_socket("127.0.0.1", 0)
    udp = open_udp_socket("127.0.0.1", 0)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        print(sock.getsockname()[1], udp.getsockname()[1], flush=True)  # HTTP, UDP
        await serve(state, sock, stop, udp_sock=udp)

    asyncio.run(main())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"bench: the tracker exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"bench: nothing listens on port {port} after {timeout} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tracker_pids(pid: int) -> list[int]:
    """The tracker process, or its workers when it supervises some (Linux /proc)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children] or [pid]


@dataclass
class Result:
    rate: float  # announces/s
    total: int  # announces
    cpu: float  # the tracker's CPU (all its workers), fraction of one core
    p99: str  # wrk's 99th percentile latency
    redis_cpu: float | None = None  # redis-server's CPU, fraction of one core


def _wrk(
    port: int,
    hashfile: Path,
    args: argparse.Namespace,
    seconds: int,
    *,
    pid: int,
    warmup_from: int | None = None,
    redis_pid: int | None = None,
) -> Result:
    """One wrk run: announces/s, announces, the tracker's and Redis's CPU, p99 latency.

    ``warmup_from``: walk every (torrent, peer) pair in order from that pair on, instead of
    random announces.
    """
    warmup = warmup_from is not None
    cmd = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(LUA),
        f"http://127.0.0.1:{port}",
        "--",
        str(hashfile),
        str(args.peers),
        *(["seq", str(warmup_from)] if warmup else []),
    ]
    pids = _tracker_pids(pid)
    cpu0, t0 = sum(_cpu_seconds(p) for p in pids), time.monotonic()
    redis0 = _cpu_seconds(redis_pid) if redis_pid else 0.0
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, capture_output=True, text=True)
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    elapsed = time.monotonic() - t0
    cpu = (sum(_cpu_seconds(p) for p in pids) - cpu0) / elapsed
    redis_cpu = (_cpu_seconds(redis_pid) - redis0) / elapsed if redis_pid else None
    wrk_cpu = (kids1.ru_utime + kids1.ru_stime - kids0.ru_utime - kids0.ru_stime) / elapsed
    if done.returncode != 0:
        sys.exit(f"bench: wrk failed: {done.stderr.strip() or done.stdout.strip()}")
    out = done.stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if m is None or total is None:
        sys.exit(f"bench: cannot read wrk's output:\n{out}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        sys.exit(f"bench: {bad.group(1)} replies were not HTTP 200; figures would mislead")
    notes = []
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if errors:
        connect, read, write, timeout = (int(g) for g in errors.groups())
        if read:
            notes.append(f"{read:,} connections closed by the server after a reply")
        if connect or write or timeout:
            notes.append(f"socket errors: connect {connect}, write {write}, timeout {timeout}")
    latency = re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE)
    what = "warm-up " if warmup else "measured"
    p99 = latency.group(1) if latency else "?"
    rate = float(m.group(1))
    redis_note = f", redis {redis_cpu:.0%}" if redis_cpu is not None else ""
    print(
        f"  {what}: {rate:>7,.0f} announces/s, p99 latency {p99}, "
        f"CPU: tracker {cpu:.0%}{redis_note}, wrk {wrk_cpu:.0%} of one core"
    )
    for note in notes:
        print(f"            ({note})")
    return Result(rate, int(total.group(1)), cpu, p99, redis_cpu)


def _warm_up(port: int, hashfile: Path, args: argparse.Namespace, pid: int) -> None:
    """Walk every (torrent, peer) pair once, so that every swarm is full."""
    need = args.torrents * args.peers
    done = 0
    for _ in range(10):
        n = _wrk(port, hashfile, args, args.warmup, pid=pid, warmup_from=done).total
        done += n // args.threads  # each wrk thread walks the same sequence
        if done >= need:
            return
    sys.exit(f"bench: warm-up made only {done:,} of {need:,} announces; machine too busy?")


def _check(port: int, info_hash_hex: str, peers: int) -> None:
    """One real announce: the swarm is full and the reply carries compact peers."""
    ih = "".join(f"%{b:02x}" for b in bytes.fromhex(info_hash_hex))
    url = (
        f"http://127.0.0.1:{port}/announce?info_hash={ih}&peer_id=-CHECK0-000000000000"
        f"&port=9999&uploaded=0&downloaded=0&left=1&compact=1&numwant=50"
    )
    body = urllib.request.urlopen(url, timeout=5).read()
    m = re.search(rb"5:peers(\d+):", body)
    got = int(m.group(1)) // 6 if m else 0
    print(f"  check: reply of {len(body)} bytes with {got} peers (swarm of {peers})")
    if got < min(peers, 50) - 1:
        sys.exit("bench: the tracker did not return a full peer list; figures would mislead")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--duration", type=int, default=10, help="seconds measured per tracker")
    ap.add_argument(
        "--warmup", type=int, default=5, help="seconds per warm-up round (until swarms are full)"
    )
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1, help="wrk threads")
    ap.add_argument("--torrents", type=int, default=1000)
    ap.add_argument("--peers", type=int, default=50)
    ap.add_argument(
        "--store", choices=("all", "memory", "redis"), default="all", help="stores measured"
    )
    ap.add_argument(
        "--workers", type=int, help="Redis runs with this many workers only (default: 1, then 2)"
    )
    ap.add_argument("--no-udp", action="store_true", help="skip the UDP (BEP 15) column")
    ap.add_argument("--udp-only", action="store_true", help="only the UDP (BEP 15) column")
    ap.add_argument("--rounds", type=int, default=2, help="UDP rounds per tracker, alternating")
    ap.add_argument("--senders", type=int, default=2, help="UDP load generator processes")
    ap.add_argument("--sockets", type=int, default=4, help="UDP sockets per generator")
    ap.add_argument("--udp-window", type=int, default=32, help="UDP announces in flight per socket")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--whitelist", help=argparse.SUPPRESS)
    ap.add_argument("--store-url", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        _serve(args)
        return
    for tool in ("wrk", "opentracker", "redis-server"):
        if shutil.which(tool) is None:
            sys.exit(
                f"bench: {tool} is not installed (apt-get install -y wrk opentracker redis-server)"
            )
    if args.workers is not None and not 1 <= args.workers <= 64:
        sys.exit("bench: --workers must be 1-64")

    rng = random.Random(20240601)
    hashes = [rng.randbytes(20).hex() for _ in range(args.torrents)]
    results: dict[str, Result] = {}

    with tempfile.TemporaryDirectory(prefix="bench-tracker-") as tmp:
        work = Path(tmp)
        hashfile = work / "hashes.txt"
        hashfile.write_text("\n".join(hashes) + "\n")
        otdir = work / "opentracker"
        otdir.mkdir()
        (otdir / "whitelist.txt").write_text("\n".join(hashes) + "\n")

        print(
            f"load: {args.torrents} torrents x {args.peers} peers, compact, keep-alive, "
            f"wrk -t{args.threads} -c{args.connections}, {args.duration} s each, "
            f"{os.cpu_count()} CPUs"
        )

        def ours(
            label: str,
            *,
            store_url: str = "",
            workers: int = 1,
            warm: bool = True,
            redis_pid: int | None = None,
        ) -> None:
            print(f"torrentkit tracker, {label}:")
            cmd = [sys.executable, __file__, "--serve", "--whitelist", str(hashfile)]
            if store_url:
                cmd += ["--store-url", store_url, "--workers", str(workers)]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
            try:
                assert proc.stdout is not None
                port = int(proc.stdout.readline().split()[0])  # HTTP (then UDP)
                _wait_port(port, proc)
                if warm:
                    _warm_up(port, hashfile, args, proc.pid)
                _check(port, hashes[0], args.peers)
                results[label] = _wrk(
                    port, hashfile, args, args.duration, pid=proc.pid, redis_pid=redis_pid
                )
            finally:
                _stop(proc)

        if args.udp_only:
            _udp_column(args, hashfile, otdir)
            return
        if args.store in ("all", "memory"):
            ours("memory (one process)")
        if args.store in ("all", "redis"):
            with _redis_server(work) as (url, redis_pid):
                counts = [args.workers] if args.workers else [1, 2]
                for i, n in enumerate(counts):
                    label = f"redis, {n} worker{'s' if n > 1 else ''}"
                    # Later runs find the swarms the first one filled: a restart keeps them.
                    ours(label, store_url=url, workers=n, warm=i == 0, redis_pid=redis_pid)

        print("opentracker:")
        port, ot = _opentracker(otdir)
        try:
            _warm_up(port, hashfile, args, ot.pid)
            _check(port, hashes[0], args.peers)
            results["opentracker"] = _wrk(port, hashfile, args, args.duration, pid=ot.pid)
        finally:
            _stop(ot)
        if not args.no_udp:
            _udp_column(args, hashfile, otdir)

    ot_rate = results["opentracker"].rate
    memory = results.get("memory (one process)")
    print()
    print(
        f"{'':<22} {'announces/s':>11} {'p99':>9} {'CPU tracker':>11} {'CPU redis':>9} "
        f"{'per CPU-s':>9} {'/ memory':>8} {'/ opentracker':>13}"
    )
    for label, r in results.items():
        used = r.cpu + (r.redis_cpu or 0.0)
        redis_cpu = f"{r.redis_cpu:.0%}" if r.redis_cpu is not None else "-"
        vs_memory = f"{r.rate / memory.rate:.2f}" if memory else "-"
        print(
            f"{label:<22} {r.rate:>11,.0f} {r.p99:>9} {r.cpu:>11.0%} {redis_cpu:>9} "
            f"{r.rate / max(used, 1e-9):>9,.0f} {vs_memory:>8} {r.rate / ot_rate:>13.2f}"
        )
    print(
        "(per CPU-s: announces per CPU-second of the tracker's processes plus redis-server: "
        "what the cores they used would give; it matters when other work on the machine "
        "keeps them from full cores. Redis, its workers and wrk share this machine's "
        f"{os.cpu_count()} CPUs, so the Redis rows are a floor, not the scaling.)"
    )


def _opentracker(otdir: Path) -> tuple[int, subprocess.Popen[bytes]]:
    """opentracker on 127.0.0.1 (HTTP and UDP on one port number), serving the whitelist
    in ``otdir``, once it has read it (it does so in a thread after it listens)."""
    port = _free_port()
    cmd = ["opentracker", "-i", "127.0.0.1", "-p", str(port), "-P", str(port)]
    cmd += ["-d", str(otdir), "-w", "whitelist.txt"]
    ot = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_port(port, ot)
    first = (otdir / "whitelist.txt").read_text().split()[0]
    ih = "".join(f"%{b:02x}" for b in bytes.fromhex(first))
    url = (
        f"http://127.0.0.1:{port}/announce?info_hash={ih}&peer_id=-CHECK0-000000000000"
        "&port=9999&uploaded=0&downloaded=0&left=1&compact=1&numwant=0"
    )
    deadline = time.monotonic() + 10
    while b"not authorized" in urllib.request.urlopen(url, timeout=5).read():
        if time.monotonic() > deadline:
            sys.exit("bench: opentracker did not read its whitelist")
        time.sleep(0.05)
    return port, ot


def _udp_column(args: argparse.Namespace, hashfile: Path, otdir: Path) -> None:
    """Ours (in-memory) and opentracker at once; warm both, then alternate rounds."""
    print(
        f"UDP (BEP 15): {args.senders} generator processes x {args.sockets} sockets x "
        f"{args.udp_window} in flight, {args.duration} s a round, {args.rounds} rounds each"
    )
    cmd = [sys.executable, __file__, "--serve", "--whitelist", str(hashfile)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    ot: subprocess.Popen[bytes] | None = None
    try:
        assert proc.stdout is not None
        http_port, udp_port = (int(p) for p in proc.stdout.readline().split())
        _wait_port(http_port, proc)
        ot_port, ot = _opentracker(otdir)
        servers = {"ours": (udp_port, proc.pid), "opentracker": (ot_port, ot.pid)}
        for port, pid in servers.values():
            bench_tracker_udp.warm_up(
                port, hashfile, torrents=args.torrents, peers=args.peers, pid=pid
            )
        rounds: dict[str, list[bench_tracker_udp.Round]] = {name: [] for name in servers}
        for n in range(args.rounds):
            print(f" round {n + 1}:")
            for name, (port, pid) in servers.items():
                r = bench_tracker_udp.measure(
                    port,
                    hashfile,
                    peers=args.peers,
                    seconds=args.duration,
                    pid=pid,
                    senders=args.senders,
                    sockets=args.sockets,
                    window=args.udp_window,
                )
                bench_tracker_udp.report(name, r)
                rounds[name].append(r)
        bench_tracker_udp.summary(rounds)
    finally:
        _stop(proc)
        if ot is not None:
            _stop(ot)


@contextlib.contextmanager
def _redis_server(work: Path) -> Iterator[tuple[str, int]]:
    """A redis-server on a unix socket in ``work``, no persistence; (store URL, its pid)."""
    sock = work / "redis.sock"
    proc = subprocess.Popen(
        [
            "redis-server",
            "--save",
            "",
            "--appendonly",
            "no",
            "--port",
            "0",
            "--dir",
            str(work),
            "--unixsocket",
            str(sock),
            "--unixsocketperm",
            "700",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit("bench: redis-server did not start")
            time.sleep(0.05)
        yield f"unix://{sock}?db=0", proc.pid
    finally:
        _stop(proc)


if __name__ == "__main__":
    main()
