"""One seeder and N leechers, all torrentkit, then all libtorrent: how long the swarm takes.

A tool, not a test (issue 15, item 5). Everything binds 127.0.0.1 with DHT, LSD, UPnP,
NAT-PMP, uTP and PEX off (docs/interop.md). By default the tool re-executes itself inside a
private network namespace (``unshare -n`` as root, ``unshare -r -n`` otherwise, then ``ip
link set lo up``), so the swarm cannot reach any real interface; if no namespace can be made
it says so in one line and exits 2, unless ``--no-netns`` runs it on the host's loopback.

Each round runs two swarms, one per client, alternating which goes first. A swarm is:

  - our tracker, ``python -m torrentkit.cli.main tracker --bind 127.0.0.1 --port 0`` (its
    first line gives the announce URL), fresh for each swarm; the torrent (one file,
    default 128 MiB of random bytes, 1 MiB pieces) is rewritten with that URL as its only
    announce, so every peer announces there and the leechers find each other through it;
  - one seeder, started and checked before the clock starts: ours is ``torrentkit seed
    X.torrent DIR --bind 127.0.0.1 --json`` (ready at its ``checked`` event); libtorrent's is
    this script run again as ``_lt_peer seed`` (one session in its own process, a full check
    of the data, then it seeds until its stdin closes);
  - N leechers (default 8), started together, each a process: ours ``torrentkit download
    X.torrent -o DIR --bind 127.0.0.1 --peer SEEDER --json --no-ui``, libtorrent's this
    script as ``_lt_peer leech`` (``connect_peer`` to the seeder, the tracker for the rest).
    Each leaves once its copy is complete, as a plain download does.

Both libtorrent roles use bench_loopback's session settings: loopback only, DHT, LSD, UPnP,
NAT-PMP, uTP and the default plugins (so PEX) off, ``allow_multiple_connections_per_ip``,
encryption off; ours runs with ``--encryption disable`` and ``--no-dht`` to match (the
default ``prefer`` would make every connection among our peers an MSE handshake, and each
first dial to libtorrent's seeder a refused one).

Figures, from the moment the first leecher is started: when each leecher reported its copy
complete (our ``completed`` JSON event; libtorrent's ``torrent_finished_alert``, relayed as
the same event), so the swarm's first, median and last ("all done") completion, and when the
last one had exited. CPU: user + sys of every peer process and all its threads from
``os.wait4`` - the leechers in full (start-up included), the seeder from the moment it was
ready (its start-up check, read from /proc/PID/stat, is left out: it is the same work for
both and not part of the swarm). The tracker's CPU is printed apart. Every copy is checked
(size and SHA-1) and deleted; the page cache is synced before each swarm. At the end: the
median of each figure over the rounds, and the ratio of the median all-done times,
torrentkit / libtorrent (target <= 1.5). Each leecher's peak RSS and minor page faults are
reported too (in --json per leecher).

``--settle S`` waits S seconds before each swarm. On a VM whose balloon hands free memory
back to the host (this project's), a page freed seconds ago costs ~0.2 s per GiB to touch
again and one that has stayed free costs ~2.7 s (tools/vm_first_touch.py): each swarm writes
1 GiB of copies, so without the wait the swarm that runs sooner after the last clean-up, or
finishes sooner, gets warmer memory and far less kernel time. With ``--settle 8`` every
swarm starts on settled memory, and the kernel times of the two clients become comparable.

Each client runs with its defaults for the page cache: ours releases the pieces it wrote
(``--page-cache drop``), libtorrent leaves them to the OS (``enable_os_cache``). ``--page-cache
keep`` runs ours as libtorrent; ``--lt-write-through`` runs libtorrent with
``disk_io_write_mode = write_through`` (which, measured here, did not lower its kernel time).

Children run with their bytecode cached in the temporary folder, filled by one untimed
``--help`` run first (as in bench_loopback). Only processes this script started are
stopped, by their PID; temporary folders are removed on the way out, also after an error.

    .venv/bin/python tools/bench_swarm.py [--size 128M] [--leechers 8] [--runs 3] [--settle 8]
        [--page-cache keep] [--lt-write-through] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_loopback import (  # a sibling tool, not a package
    WARM_UP_CODE,
    check_copy,
    child_env,
    file_sha1,
    generate,
    lt_add,
    lt_session,
    workspace,
)

LOOPBACK = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
CLIENTS = ("torrentkit", "libtorrent")
NETNS_ENV = "BENCH_SWARM_NETNS"  # set once this process runs inside its own namespace
PAYLOAD = "bench.bin"
LT_WRITE_THROUGH_ENV = "BENCH_SWARM_LT_WRITE_THROUGH"


# --------------------------------------------------------------------------- libtorrent peer


def lt_peer_main(argv: list[str]) -> int:
    """``_lt_peer seed TORRENT DIR`` or ``_lt_peer leech TORRENT DIR SEEDER_PORT TIMEOUT``.

    JSON lines on stdout like our CLI's: ``listening`` (port), then ``checked`` (a seeder,
    once its data is verified) or ``completed`` (a leecher, at its torrent_finished_alert)
    and ``summary`` (its ``uploaded`` payload bytes).
    A seeder seeds until its stdin closes; a leecher exits once complete (1 on failure)."""
    import libtorrent as lt

    role, torrent, save = argv[0], Path(argv[1]), Path(argv[2])

    def emit(event: str, **fields: Any) -> None:
        print(json.dumps({"event": event, **fields}), flush=True)

    ses = lt_session()
    mask = lt.alert.category_t.status_notification | lt.alert.category_t.error_notification
    ses.apply_settings({"alert_mask": int(mask)})
    if os.environ.get(LT_WRITE_THROUGH_ENV) == "1":  # --lt-write-through
        ses.apply_settings({"disk_io_write_mode": int(lt.io_buffer_mode_t.write_through)})
    try:
        handle = lt_add(ses, torrent, save)
        deadline = time.monotonic() + 30
        while not (ses.is_listening() and ses.listen_port() > 0):
            if time.monotonic() > deadline:
                raise RuntimeError("libtorrent: no listen socket")
            time.sleep(0.01)
        emit("listening", host=LOOPBACK, port=ses.listen_port())
        if role == "seed":
            wait_finished(lt, ses, handle, 600)
            emit("checked")
            sys.stdin.buffer.read()  # until the bench closes our stdin (or exits)
        else:
            handle.connect_peer((LOOPBACK, int(argv[3])))
            wait_finished(lt, ses, handle, float(argv[4]))
            emit("completed")
            emit("summary", uploaded=handle.status().total_payload_upload)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        ses.pause()
        del ses  # waits for the session (and its disk threads) to shut down
    return 0


def wait_finished(lt: Any, ses: Any, handle: Any, timeout: float) -> None:
    """Block on libtorrent's alerts (no polling loop eating CPU) until the torrent has every
    piece verified."""
    deadline = time.monotonic() + timeout
    while True:
        if handle.status().is_seeding:
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"libtorrent: not complete after {timeout:g} s")
        if ses.wait_for_alert(int(min(left, 1.0) * 1000)) is None:
            continue
        for alert in ses.pop_alerts():
            if isinstance(alert, lt.torrent_finished_alert):
                return
            if isinstance(alert, lt.torrent_error_alert):
                raise RuntimeError(f"libtorrent: {alert.message()}")


# --------------------------------------------------------------------------- processes


@dataclass(eq=False)
class Child:
    """A process this script started, its stdout read (and logged) by a thread that also
    reaps it with ``os.wait4``. ``stop`` signals it only while it has not been reaped, so a
    signal never reaches a PID the kernel has given to someone else."""

    name: str
    proc: subprocess.Popen[bytes]
    started: float
    log: Path
    port: int | None = None
    announce: str | None = None  # the tracker's announce URL
    done: float | None = None  # perf_counter at its completed event
    exited: float | None = None
    code: int | None = None
    cpu: float | None = None  # user + sys of the whole process, from wait4
    sys_cpu: float | None = None  # of cpu, in the kernel
    max_rss: int | None = None  # peak resident set, KiB (ru_maxrss)
    minor_faults: int | None = None  # pages first touched (ru_minflt)
    uploaded: int = 0  # payload bytes, from its summary event
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=30))
    listening: threading.Event = field(default_factory=threading.Event)
    ready: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    thread: threading.Thread | None = None

    def watch(self) -> None:
        self.thread = threading.Thread(target=self._read, daemon=True, name=self.name)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with open(self.log, "wb") as out:
            for raw in self.proc.stdout:
                out.write(b"%.3f " % (time.perf_counter() - self.started) + raw)
                self.lines.append(raw.decode(errors="replace").rstrip())
                self._event(raw)
        # Wait for the exit without reaping, then reap under the lock ``stop`` takes.
        os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOWAIT)
        with self.lock:
            self.exited = time.perf_counter()
            _, status, usage = os.wait4(self.proc.pid, 0)
            self.code = self.proc.returncode = os.waitstatus_to_exitcode(status)
            self.cpu = usage.ru_utime + usage.ru_stime
            self.sys_cpu = usage.ru_stime
            self.max_rss = usage.ru_maxrss
            self.minor_faults = usage.ru_minflt
        self.listening.set()
        self.ready.set()

    def _event(self, raw: bytes) -> None:
        if raw.startswith(b"listening on "):  # the tracker: "listening on H:P announce URL"
            self.announce = raw.decode().split()[-1]
            self.listening.set()
            self.ready.set()
            return
        try:
            event = json.loads(raw)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        kind = event.get("event")
        if kind == "listening":
            self.port = int(event["port"])
            self.listening.set()
        elif kind == "checked" and self.port is not None:
            self.ready.set()
        elif kind == "completed" and self.done is None:
            self.done = time.perf_counter()
        elif kind == "summary":  # ours: per torrent; libtorrent's (_lt_peer): one figure
            torrents = event.get("torrents") or [event]
            self.uploaded = sum(int(t.get("uploaded") or 0) for t in torrents)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        with self.lock:
            if self.code is None:
                with suppress(ProcessLookupError):
                    os.kill(self.proc.pid, sig)

    def close_stdin(self) -> None:
        if self.proc.stdin is not None:
            with suppress(OSError):
                self.proc.stdin.close()

    def join(self, timeout: float) -> bool:
        assert self.thread is not None
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def tail(self) -> str:
        return "\n".join(self.lines)

    def cpu_so_far(self) -> float:
        """User + sys of the running process (all its threads) from /proc/PID/stat."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Children:
    """Every process of this run; ``stop_all`` ends the ones still running, by PID."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.all: list[Child] = []

    def start(self, name: str, args: list[str], *, stdin: bool = False) -> Child:
        proc = subprocess.Popen(
            args,
            env=self.env,
            cwd=REPO,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        child = Child(name, proc, time.perf_counter(), self.logs / f"{name}.log")
        self.all.append(child)
        child.watch()
        return child

    def stop(self, child: Child, grace: float = 10.0) -> None:
        """SIGTERM (or, with a stdin pipe, EOF), then SIGKILL after ``grace``; reaped."""
        if child.proc.stdin is not None:
            child.close_stdin()
        else:
            child.stop(signal.SIGTERM)
        if not child.join(grace):
            child.stop(signal.SIGKILL)
            child.join(10)

    def stop_all(self) -> None:
        for child in self.all:
            if child.code is None:
                child.close_stdin()
                child.stop(signal.SIGTERM)
        for child in self.all:
            if not child.join(5):
                child.stop(signal.SIGKILL)
                child.join(5)


def wait_event(child: Child, event: threading.Event, what: str, timeout: float) -> None:
    if not event.wait(timeout):
        raise RuntimeError(f"{child.name}: not {what} after {timeout:g} s:\n{child.tail()}")
    if child.code is not None:
        raise RuntimeError(f"{child.name} exited {child.code} before {what}:\n{child.tail()}")


# --------------------------------------------------------------------------- one swarm


@dataclass(frozen=True, slots=True, kw_only=True)
class Swarm:
    client: str
    round: int
    leechers: int
    all_done: float  # seconds from the start of the first leecher
    first_done: float
    median_done: float
    all_exited: float
    cpu_seconds: float  # leechers + seeder (after its start-up check)
    leechers_cpu: float
    leechers_sys: float  # of leechers_cpu, in the kernel
    seeder_cpu: float
    seeder_startup_cpu: float
    tracker_cpu: float
    #: what the leechers uploaded (to each other) over what they downloaded: > 0 shows
    #: that they found each other through the tracker
    leecher_upload_share: float
    done: list[float]
    #: each leecher's (user, sys) CPU-seconds, in start order
    leecher_cpus: list[tuple[float, float]]
    #: each leecher's peak resident set in MiB, in start order: on a VM every page first
    #: touched can cost far more kernel time than its use (see the README)
    leecher_rss_mib: list[float]
    #: each leecher's minor page faults (pages it touched first), in start order
    leecher_minor_faults: list[int]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "torrentkit.cli.main", *args]


def lt_peer(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "_lt_peer", *args]


def with_announce(torrent: bytes, url: str) -> bytes:
    """The same torrent (same info-hash) with ``url`` as its only tracker."""
    from torrentkit import bencoding

    meta = bencoding.decode(torrent)
    meta.pop(b"announce-list", None)
    meta[b"announce"] = url.encode()
    return bencoding.encode(meta)


def run_swarm(
    client: str,
    round_no: int,
    args: argparse.Namespace,
    work: Path,
    base_torrent: bytes,
    seed_dir: Path,
    digest: str,
) -> Swarm:
    n: int = args.leechers
    size: int = args.size_bytes
    swarm_dir = work / f"{client}-{round_no}"
    logs = swarm_dir / "logs"
    logs.mkdir(parents=True)
    env = child_env(work)
    if args.lt_write_through:
        env[LT_WRITE_THROUGH_ENV] = "1"
    children = Children(env, logs)
    try:
        os.sync()  # start without the last swarm's dirty pages being written back
        if args.settle:
            # Let the memory the last swarm freed go cold, so no swarm starts on warmer
            # memory than another (--settle, and the README on this VM's first-touch cost).
            time.sleep(args.settle)
        tracker = children.start("tracker", cli("tracker", "--bind", LOOPBACK, "--port", "0"))
        wait_event(tracker, tracker.listening, "listening", 30)
        assert tracker.announce is not None
        torrent = swarm_dir / "bench.torrent"
        torrent.write_bytes(with_announce(base_torrent, tracker.announce))

        if client == "torrentkit":
            seeder = children.start(
                "seeder",
                cli(
                    "seed",
                    str(torrent),
                    str(seed_dir),
                    "--bind",
                    LOOPBACK,
                    "--no-dht",
                    "--encryption",
                    "disable",
                    "--json",
                    "--no-ui",
                    "--state-dir",
                    str(swarm_dir / "state-seeder"),
                ),
            )
        else:
            seeder = children.start(
                "seeder", lt_peer("seed", str(torrent), str(seed_dir)), stdin=True
            )
        wait_event(seeder, seeder.ready, "ready", 600)
        seeder_startup = seeder.cpu_so_far()
        assert seeder.port is not None

        dests = [swarm_dir / f"leecher-{i}" for i in range(n)]
        for d in dests:
            d.mkdir()
        t0 = time.perf_counter()
        leechers: list[Child] = []
        for i, dest in enumerate(dests):
            if client == "torrentkit":
                cmd = cli(
                    "download",
                    str(torrent),
                    "-o",
                    str(dest),
                    "--bind",
                    LOOPBACK,
                    "--peer",
                    f"{LOOPBACK}:{seeder.port}",
                    "--no-dht",
                    "--encryption",
                    "disable",
                    "--page-cache",
                    args.page_cache,
                    "--json",
                    "--no-ui",
                    "--timeout",
                    str(args.timeout),
                    "--state-dir",
                    str(swarm_dir / f"state-{i}"),
                )
            else:
                cmd = lt_peer("leech", str(torrent), str(dest), str(seeder.port), str(args.timeout))
            if (
                args.profile
                and i == args.profile_leecher
                and round_no > 0
                and client == "torrentkit"
            ):
                out = Path(args.profile) / f"{client}-{round_no}-leecher-{i}.prof"
                cmd = [cmd[0], str(Path(__file__).with_name("cpu_profile.py")), str(out), *cmd[1:]]
            leechers.append(children.start(f"leecher-{i}", cmd))

        deadline = t0 + args.timeout + 30
        for leecher in leechers:
            if not leecher.join(max(0.0, deadline - time.perf_counter())):
                raise RuntimeError(f"{client}: {leecher.name} still running after the timeout")
        all_exited = time.perf_counter() - t0
        for leecher in leechers:
            if leecher.code != 0 or leecher.done is None:
                raise RuntimeError(
                    f"{client} {leecher.name} exited {leecher.code} "
                    f"({'complete' if leecher.done else 'incomplete'}):\n{leecher.tail()}"
                )
        children.stop(seeder)
        children.stop(tracker)
        if seeder.cpu is None or tracker.cpu is None:
            raise RuntimeError(f"{client}: the seeder or the tracker did not stop")
    finally:
        children.stop_all()

    for dest in dests:
        check_copy(dest / PAYLOAD, size, digest)
    if not args.keep:
        shutil.rmtree(swarm_dir, ignore_errors=True)

    done = sorted(leecher.done - t0 for leecher in leechers if leecher.done is not None)
    leechers_cpu = sum(leecher.cpu or 0.0 for leecher in leechers)
    leechers_sys = sum(leecher.sys_cpu or 0.0 for leecher in leechers)
    seeder_cpu = seeder.cpu - seeder_startup
    return Swarm(
        client=client,
        round=round_no,
        leechers=n,
        all_done=round(done[-1], 3),
        first_done=round(done[0], 3),
        median_done=round(statistics.median(done), 3),
        all_exited=round(all_exited, 3),
        cpu_seconds=round(leechers_cpu + seeder_cpu, 2),
        leechers_cpu=round(leechers_cpu, 2),
        leechers_sys=round(leechers_sys, 2),
        seeder_cpu=round(seeder_cpu, 2),
        seeder_startup_cpu=round(seeder_startup, 2),
        tracker_cpu=round(tracker.cpu, 2),
        leecher_upload_share=round(sum(x.uploaded for x in leechers) / (n * size), 3),
        done=[round(d, 3) for d in done],
        leecher_cpus=[
            (round((x.cpu or 0.0) - (x.sys_cpu or 0.0), 3), round(x.sys_cpu or 0.0, 3))
            for x in leechers
        ],
        leecher_rss_mib=[round((x.max_rss or 0) / 1024, 1) for x in leechers],
        leecher_minor_faults=[x.minor_faults or 0 for x in leechers],
    )


# --------------------------------------------------------------------------- network namespace


def enter_netns(argv: list[str]) -> NoReturn:
    """Re-execute this script inside a new network namespace (does not return), or exit 2
    with one line when no namespace can be made."""
    script = [sys.executable, str(Path(__file__).resolve()), *argv]
    env = dict(os.environ, **{NETNS_ENV: "1"})
    flags = ["-n"] if os.geteuid() == 0 else ["-r", "-n"]
    try:
        probe = subprocess.run(
            ["unshare", *flags, "true"], capture_output=True, text=True, check=False
        )
        why = (probe.stderr.strip().splitlines() or ["unshare failed"])[-1]
        ok = probe.returncode == 0
    except OSError as exc:  # no unshare at all
        why, ok = str(exc), False
    if not ok:
        print(
            f"bench_swarm: cannot make a private network namespace ({why}); "
            "run as root or pass --no-netns to use the host's loopback",
            file=sys.stderr,
        )
        sys.exit(2)
    os.execvpe("unshare", ["unshare", *flags, "--", *script], env)


def loopback_up() -> str:
    """Inside the namespace: bring ``lo`` up; what the network looks like."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    links = sorted(name for _, name in socket.if_nameindex())  # this namespace's links
    if links != ["lo"]:
        raise RuntimeError(f"the namespace has interfaces besides lo: {links}")
    return "private network namespace (lo only)"


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> argparse.Namespace:
    from torrentkit.cli.common import UsageError, parse_size

    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--size", default="128M", help="payload size (default 128M)")
    p.add_argument("--piece-size", default="1M", help="piece length (default 1M)")
    p.add_argument("--leechers", type=int, default=8, help="leechers per swarm (default 8)")
    p.add_argument("--runs", type=int, default=3, help="rounds, each both swarms (default 3)")
    p.add_argument("--timeout", type=float, default=300, help="per swarm, seconds")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument(
        "--profile",
        metavar="DIR",
        help="run each swarm's first leecher (ours) under cProfile with its main thread's CPU "
        "time as the clock (tools/cpu_profile.py), its stats saved in DIR",
    )
    p.add_argument(
        "--profile-leecher", type=int, default=0, metavar="N", help="which leecher (default 0)"
    )
    p.add_argument(
        "--only", choices=CLIENTS, help="run this client's swarms only (no ratio): for profiling"
    )
    p.add_argument(
        "--no-netns", action="store_true", help="run on the host's loopback, no namespace"
    )
    p.add_argument("--dir", help="where to make the temporary folder")
    p.add_argument(
        "--settle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long before each swarm (after the last one's copies were deleted): on "
        "a VM that hands freed memory back to its host, pages freed moments ago are cheap to "
        "touch again and older ones cost ~10 us each, so without a wait the swarm that runs "
        "sooner after a clean-up, or finishes faster, gets warmer memory (default 0)",
    )
    p.add_argument(
        "--page-cache",
        choices=["drop", "keep"],
        default="drop",
        help="our leechers' --page-cache (default drop, their default): keep leaves the "
        "pages they write to the OS, as libtorrent's default does",
    )
    p.add_argument(
        "--lt-write-through",
        action="store_true",
        help="libtorrent's peers with disk_io_write_mode = write_through (default: its "
        "default, enable_os_cache)",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary folder and logs (each log line prefixed with the seconds "
        "since its process was started)",
    )
    args = p.parse_args(argv)
    try:
        args.size_bytes = parse_size(args.size, "--size")
        args.piece_bytes = parse_size(args.piece_size, "--piece-size")
    except UsageError as exc:
        p.error(str(exc))
    if args.piece_bytes < 16 * 1024 or args.piece_bytes & (args.piece_bytes - 1):
        p.error("--piece-size must be a power of two, at least 16K")
    if args.size_bytes < args.piece_bytes:
        p.error("--size must be at least one piece")
    if args.runs < 1 or args.leechers < 1:
        p.error("--runs and --leechers must be at least 1")
    if args.dir is not None and not Path(args.dir).is_dir():
        p.error(f"--dir {args.dir}: no such folder")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.no_netns:
        network = "host loopback (--no-netns)"
    elif os.environ.get(NETNS_ENV) != "1":
        enter_netns(argv)
    else:
        network = loopback_up()
    from torrentkit.maketorrent import make_torrent

    size: int = args.size_bytes

    def say(text: str) -> None:
        if not args.json:
            print(text, flush=True)

    result: dict[str, Any] = {
        "size": size,
        "piece_length": args.piece_bytes,
        "leechers": args.leechers,
        "network": network,
        "cpus": os.cpu_count(),
    }
    with workspace(args.dir, args.keep, prefix="bench-swarm-") as work:
        warm_up(work)
        seed_dir = work / "seed"
        seed_dir.mkdir()
        payload = seed_dir / PAYLOAD
        generate(payload, size)
        base_torrent = make_torrent(payload, piece_length=args.piece_bytes)
        digest = file_sha1(payload)
        say(
            f"payload: {size / 2**20:g} MiB in pieces of {args.piece_bytes // 1024} KiB; "
            f"1 seeder + {args.leechers} leechers per swarm; {network}"
        )
        # One small untimed swarm per client first: every module a seeder or a leecher
        # imports on the way (some only when first needed) is compiled into the bytecode
        # cache before the clock runs; otherwise the first measured swarm's leechers each
        # compile them, at once, on the same two cores.
        warm_seed = work / "warm-seed"
        warm_seed.mkdir()
        generate(warm_seed / PAYLOAD, 2 * args.piece_bytes)
        warm_torrent = make_torrent(warm_seed / PAYLOAD, piece_length=args.piece_bytes)
        warm_args = argparse.Namespace(
            **{**vars(args), "leechers": 2, "size_bytes": 2 * args.piece_bytes}
        )
        for client in (args.only,) if args.only else CLIENTS:
            run_swarm(
                client, 0, warm_args, work, warm_torrent, warm_seed, file_sha1(warm_seed / PAYLOAD)
            )
        swarms: list[Swarm] = []
        for k in range(1, args.runs + 1):
            order: tuple[str, ...] = CLIENTS if k % 2 else CLIENTS[::-1]
            if args.only:
                order = (args.only,)
            for client in order:
                s = run_swarm(client, k, args, work, base_torrent, seed_dir, digest)
                swarms.append(s)
                say(
                    f"run {k} {client:<10}: all done {s.all_done:6.2f} s, first "
                    f"{s.first_done:6.2f} s, median {s.median_done:6.2f} s, all exited "
                    f"{s.all_exited:6.2f} s; cpu {s.cpu_seconds:6.2f} s (leechers "
                    f"{s.leechers_cpu:.2f}, kernel {s.leechers_sys:.2f}, + seeder "
                    f"{s.seeder_cpu:.2f}); "
                    f"{s.leecher_upload_share:.0%} of the copies came from other leechers; "
                    f"leecher peak RSS {statistics.median(s.leecher_rss_mib):.0f} MiB median, "
                    f"{statistics.median(s.leecher_minor_faults) / 1000:.0f}k page faults"
                )
        if args.only:
            result["swarms"] = [asdict(s) for s in swarms]
        else:
            result.update(summarize(swarms, say))
    if args.json:
        print(json.dumps(result))
    return 0


def warm_up(work: Path) -> None:
    """Import every module once (untimed), filling the bytecode cache."""
    subprocess.run(
        [sys.executable, "-c", WARM_UP_CODE],
        env=child_env(work),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        timeout=120,
        check=True,
    )


def summarize(swarms: list[Swarm], say: Callable[[str], None]) -> dict[str, Any]:
    out: dict[str, Any] = {"swarms": [asdict(s) for s in swarms]}
    med: dict[str, dict[str, float]] = {}
    for client in CLIENTS:
        mine = [s for s in swarms if s.client == client]
        med[client] = {
            key: round(statistics.median(getattr(s, key) for s in mine), 3)
            for key in ("all_done", "first_done", "median_done", "all_exited", "cpu_seconds")
        }
        m = med[client]
        say(
            f"median {client:<10}: all done {m['all_done']:6.2f} s, first "
            f"{m['first_done']:6.2f} s, median {m['median_done']:6.2f} s; cpu "
            f"{m['cpu_seconds']:6.2f} s"
        )
    ratio = med["torrentkit"]["all_done"] / med["libtorrent"]["all_done"]
    cpu_ratio = med["torrentkit"]["cpu_seconds"] / med["libtorrent"]["cpu_seconds"]
    by_round = {(s.client, s.round): s.all_done for s in swarms}
    rounds = sorted({s.round for s in swarms})
    per_round = [by_round["torrentkit", k] / by_round["libtorrent", k] for k in rounds]
    out.update(
        medians=med,
        ratio=round(ratio, 3),
        round_ratios=[round(r, 3) for r in per_round],
        cpu_ratio=round(cpu_ratio, 3),
    )
    say(
        f"all-done time torrentkit / libtorrent: {ratio:.2f} (target <= 1.5; per round "
        f"{', '.join(f'{r:.2f}' for r in per_round)}); cpu {cpu_ratio:.2f}"
    )
    return out


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def entry(argv: list[str]) -> int:
    if argv[:1] == ["_lt_peer"]:
        return lt_peer_main(argv[1:])
    signal.signal(signal.SIGTERM, _interrupt)  # stop our children and clean up, as Ctrl-C
    try:
        return main(argv)
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"bench_swarm: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(entry(sys.argv[1:]))
