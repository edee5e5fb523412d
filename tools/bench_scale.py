"""Thousands of seeding torrents in one session: start-up with resume data, memory, CPU at rest.

A tool, not a test (issue 15, item 4). For each count given (default 1,000 and 5,000):

  1. generates that many tiny single-file payloads (--size, default 16 KiB, one piece each)
     and their .torrent files in a temporary folder (or below --dir), then runs one session
     over them through the public API (torrentkit.open_session, Settings(listen=
     "127.0.0.1:0", state_dir=...), no trackers: DHT does not exist yet) that checks every
     file in full and leaves, saving the resume data of each (the untimed "first start");
  2. starts a fresh process (this script as ``_child``) that opens a new session and adds
     every torrent again (32 adds in flight at once, each reading its .torrent file): the
     time from opening the session until all are seeding is the start with resume data;
     then its RSS (VmRSS from /proc/self/status, VmHWM the peak) and its CPU seconds (user +
     sys of the whole process, resource.getrusage) over --rest seconds with no peer at all;
  3. this process then opens --peers-each (2) idle peers to each of --peer-torrents (200)
     of those torrents: raw sockets that complete a BitTorrent handshake, send an empty
     bitfield, read the session's handshake and bitfield, and say nothing more; the child
     measures its CPU over --rest seconds again, and its RSS.

Targets (issue 15): CPU at rest <= 1% of a core at 5,000 torrents, RSS <= 300 MB at 5,000,
start with resume data <= 10 s. CPU is printed in CPU-seconds as well as percent of one core
over the window, since other work on the machine can slow the start but not add to those
seconds. Everything stays on 127.0.0.1. Only the child this script started is stopped (by
its PID); the temporary folder is removed afterwards unless --keep.

    .venv/bin/python tools/bench_scale.py [--torrents 1000 5000] [--rest 30] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_loopback import open_idle_peer  # a sibling tool, not a package

LOOPBACK = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent

#: issue 15's targets, at 5,000 torrents
TARGET_CPU_PERCENT = 1.0
TARGET_RSS_MB = 300.0
TARGET_START_S = 10.0
#: adds in flight at once in the measured start
ADD_AT_ONCE = 32


# --------------------------------------------------------------------------- measuring


def cpu_seconds() -> float:
    """User + system CPU seconds of this process, all threads."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def proc_status() -> dict[str, int]:
    """VmRSS and VmHWM of this process in bytes (/proc/self/status)."""
    out: dict[str, int] = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0]) * 1024
    return out


# --------------------------------------------------------------------------- payloads


def generate(base: Path, count: int, size: int) -> list[Path]:
    """``count`` files of ``size`` random bytes in base/data and their .torrent files (16 KiB
    pieces) in base/torrents; returns the .torrent paths."""
    from torrentkit.maketorrent import make_torrent

    data = base / "data"
    meta = base / "torrents"
    data.mkdir(parents=True)
    meta.mkdir()
    rng = random.Random(count)
    piece = 16 * 1024
    out = []
    for i in range(count):
        path = data / f"t{i:05d}.bin"
        path.write_bytes(rng.randbytes(size))
        torrent = meta / f"t{i:05d}.torrent"
        torrent.write_bytes(make_torrent(path, piece_length=piece))
        out.append(torrent)
    return out


def first_start(base: Path, torrents: list[Path]) -> float:
    """Check everything in full once and leave (resume data saved); seconds taken."""
    import trio

    import torrentkit

    async def go() -> float:
        t = time.perf_counter()
        settings = torrentkit.Settings(
            listen=f"{LOOPBACK}:0", state_dir=base / "state", trackers=False, dht=None
        )
        async with torrentkit.open_session(settings) as session:
            handles = [await session.add(p, base / "data") for p in torrents]
            for h in handles:
                await h.wait_complete()
        return time.perf_counter() - t

    return trio.run(go)


# --------------------------------------------------------------------------- the child


async def add_all(session: Any, torrents: list[Path], save: Path) -> list[Any]:
    """Add every torrent, ADD_AT_ONCE at a time (each add reads its .torrent file in a
    worker thread; one after the other, that latency would be most of the start)."""
    import trio

    handles: list[Any] = [None] * len(torrents)
    limit = trio.Semaphore(ADD_AT_ONCE)

    async def one(i: int) -> None:
        async with limit:
            handles[i] = await session.add(torrents[i], save)

    async with trio.open_nursery() as nursery:
        for i in range(len(torrents)):
            nursery.start_soon(one, i)
    return handles


def child(base: Path, count: int, rest: float, peer_torrents: int) -> None:
    """The measured session. Talks JSON lines: stdout to the parent, stdin for "go"."""
    import trio

    import torrentkit

    def say(**fields: Any) -> None:
        print(json.dumps(fields), flush=True)

    async def window() -> dict[str, float]:
        c0, t0 = cpu_seconds(), time.perf_counter()
        await trio.sleep(rest)
        cpu, wall = cpu_seconds() - c0, time.perf_counter() - t0
        return {"cpu_s": cpu, "wall_s": wall, "cpu_percent": 100 * cpu / wall}

    async def go() -> None:
        torrents = sorted((base / "torrents").glob("*.torrent"))[:count]
        c0, t0 = cpu_seconds(), time.perf_counter()
        settings = torrentkit.Settings(
            listen=f"{LOOPBACK}:0", state_dir=base / "state", trackers=False, dht=None
        )
        async with torrentkit.open_session(settings) as session:
            handles = await add_all(session, torrents, base / "data")
            for h in handles:
                await h.wait_complete()
            start_s, start_cpu = time.perf_counter() - t0, cpu_seconds() - c0
            checked = sum(h.status().pieces for h in handles)
            say(
                phase="started",
                start_s=start_s,
                start_cpu_s=start_cpu,
                pieces=checked,
                port=session.address.port,
                hashes=[bytes(h.info_hash).hex() for h in handles[:peer_torrents]],
                **proc_status(),
            )
            await trio.sleep(2.0)  # let the start settle (threads, GC)
            say(phase="rest", **(await window()), **proc_status())
            line = await trio.to_thread.run_sync(sys.stdin.readline)
            if line.strip() != "go":
                return
            await trio.sleep(2.0)
            links = sum(h.status().num_peers for h in handles)
            measured = await window()
            say(phase="peers", links=links, **measured, **proc_status())
            await trio.to_thread.run_sync(sys.stdin.readline)  # "stop"

    trio.run(go)


# --------------------------------------------------------------------------- idle peers


# --------------------------------------------------------------------------- one count


def run_count(
    count: int, size: int, rest: float, peer_torrents: int, peers_each: int, args: Any
) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix=f"bench-scale-{count}-", dir=args.dir))
    proc: subprocess.Popen[str] | None = None
    socks: list[socket.socket] = []
    try:
        t = time.perf_counter()
        torrents = generate(base, count, size)
        made = time.perf_counter() - t
        first = first_start(base, torrents)
        cmd = [sys.executable, __file__, "_child", str(base), str(count), str(rest),
               str(peer_torrents)]  # fmt: skip
        proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO
        )
        assert proc.stdin is not None and proc.stdout is not None

        def expect(phase: str) -> dict[str, Any]:
            assert proc is not None and proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                raise SystemExit(f"the child ended before {phase!r} (exit {proc.wait()})")
            got = json.loads(line)
            if got["phase"] != phase:
                raise SystemExit(f"expected {phase!r} from the child, got {got}")
            return dict(got)

        started = expect("started")
        rest_fig = expect("rest")
        hashes = [bytes.fromhex(h) for h in started.pop("hashes")]
        for h in hashes:
            for _ in range(peers_each):
                socks.append(
                    open_idle_peer((LOOPBACK, started["port"]), h, -(-size // (16 * 1024)))
                )
        proc.stdin.write("go\n")
        proc.stdin.flush()
        peers_fig = expect("peers")
        proc.stdin.write("stop\n")
        proc.stdin.flush()
        for s in socks:
            s.close()
        socks = []
        proc.stdin.close()
        proc.wait(timeout=600)
        return {
            "torrents": count,
            "payload_bytes": size,
            "generated_s": round(made, 2),
            "first_start_full_check_s": round(first, 2),
            "start_with_resume_s": round(started["start_s"], 3),
            "start_cpu_s": round(started["start_cpu_s"], 3),
            "pieces_seeding": started["pieces"],
            "rss_started_mb": round(started["VmRSS"] / 1e6, 1),
            "rest": _window(rest_fig),
            "idle_peers": peers_each * len(hashes),
            "links_seen": peers_fig["links"],
            "with_peers": _window(peers_fig),
        }
    finally:
        for s in socks:
            s.close()
        if proc is not None and proc.poll() is None:
            proc.kill()  # our own child, by its PID
            proc.wait()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"kept: {base}")


def _window(fig: dict[str, Any]) -> dict[str, Any]:
    return {
        "seconds": round(fig["wall_s"], 2),
        "cpu_s": round(fig["cpu_s"], 4),
        "cpu_percent": round(fig["cpu_percent"], 3),
        "rss_mb": round(fig["VmRSS"] / 1e6, 1),
        "peak_rss_mb": round(fig["VmHWM"] / 1e6, 1),
    }


def report(r: dict[str, Any]) -> None:
    n = r["torrents"]
    rest, peers = r["rest"], r["with_peers"]
    print(f"--- {n} seeding torrents of {r['payload_bytes'] // 1024} KiB, one session")
    print(f"  payloads + .torrents made in {r['generated_s']} s; first start (full check, "
          f"resume saved) {r['first_start_full_check_s']} s")  # fmt: skip
    print(f"  start with resume data: {r['start_with_resume_s']:.2f} s until all "
          f"{r['pieces_seeding']} seeding ({r['start_cpu_s']:.2f} CPU-s), "
          f"RSS {r['rss_started_mb']} MB")  # fmt: skip
    print(f"  at rest, no peers:   {rest['cpu_s']:.3f} CPU-s over {rest['seconds']} s = "
          f"{rest['cpu_percent']:.2f}% of a core; RSS {rest['rss_mb']} MB "
          f"(peak {rest['peak_rss_mb']} MB)")  # fmt: skip
    print(f"  {r['idle_peers']} idle peers ({r['links_seen']} links seen): "
          f"{peers['cpu_s']:.3f} CPU-s over {peers['seconds']} s = "
          f"{peers['cpu_percent']:.2f}% of a core; RSS {peers['rss_mb']} MB "
          f"(peak {peers['peak_rss_mb']} MB)")  # fmt: skip


def verdict(results: list[dict[str, Any]]) -> None:
    top = max(results, key=lambda r: r["torrents"])
    n = top["torrents"]
    note = "" if n >= 5000 else f" (measured at {n}, the targets are for 5,000)"
    checks = [
        (f"CPU at rest <= {TARGET_CPU_PERCENT:g}% of a core",
         top["rest"]["cpu_percent"] <= TARGET_CPU_PERCENT, f"{top['rest']['cpu_percent']:.2f}%"),
        (f"RSS <= {TARGET_RSS_MB:g} MB", top["rest"]["peak_rss_mb"] <= TARGET_RSS_MB,
         f"peak {top['rest']['peak_rss_mb']} MB"),
        (f"start with resume data <= {TARGET_START_S:g} s",
         top["start_with_resume_s"] <= TARGET_START_S, f"{top['start_with_resume_s']:.2f} s"),
    ]  # fmt: skip
    print(f"targets at {n} torrents{note}:")
    for what, ok, figure in checks:
        print(f"  {what}: {'yes' if ok else 'NO'} ({figure})")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        _, _, base, count, rest, peer_torrents = sys.argv
        child(Path(base), int(count), float(rest), int(peer_torrents))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--torrents", type=int, nargs="+", default=[1000, 5000],
                    help="torrent counts, each in a fresh session (1000 5000)")  # fmt: skip
    ap.add_argument("--size", type=int, default=16 * 1024, help="bytes per payload (16384)")
    ap.add_argument("--rest", type=float, default=30.0, help="seconds per CPU window (30)")
    ap.add_argument("--peer-torrents", type=int, default=200,
                    help="torrents that get idle peers (200)")  # fmt: skip
    ap.add_argument("--peers-each", type=int, default=2, help="idle peers per torrent (2)")
    ap.add_argument("--dir", type=Path, help="where to make the payloads (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the payload folders afterwards")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = ap.parse_args()
    if any(n < 1 for n in args.torrents) or args.size < 1 or args.rest <= 0:
        ap.error("--torrents, --size and --rest must be positive")
    results = []
    for n in args.torrents:
        r = run_count(n, args.size, args.rest, min(args.peer_torrents, n), args.peers_each, args)
        report(r)
        results.append(r)
    verdict(results)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; CPU-s are user + sys of "
          f"the session's process, all its threads")  # fmt: skip
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
