"""``torrentkit tracker``: run the tracker, HTTP (BEP 3 / 23 / 7 / 48) and UDP (BEP 15),
until stopped.

The first stdout line, flushed at once, is ``listening on HOST:PORT announce URL [UDP-URL]``
with the real port (``--port 0`` picks a free one); the UDP announce URL is there unless
``--no-udp``. UDP listens on ``--udp-port`` (default: the HTTP port's number). SIGHUP
reloads ``--whitelist`` (a bad file keeps the old list and says why on stderr). SIGTERM
stops cleanly with exit 0, Ctrl-C with 130.

``--store redis://HOST:PORT/DB`` keeps the swarms in Redis; then ``--workers N`` runs N
processes on the one port (SO_REUSEPORT; the kernel spreads connections over them). The
parent only supervises: it forwards SIGTERM / SIGINT / SIGHUP to the workers by PID and
starts a new worker in place of one that died (its listening socket stays open meanwhile,
so connections wait in the backlog instead of being refused). See docs/tracker.md. Each
worker has a UDP socket on the one UDP port too, and all derive their connection-id secrets
from one master secret made before the fork, so an id from one worker is good at another.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from torrentkit.cli.common import EXIT_INTERRUPTED, EXIT_OK, JobFailed, UsageError, safe_text
from torrentkit.discovery.tracker.server import (
    announce_url,
    host_port,
    open_listen_socket,
    open_udp_socket,
    serve,
    udp_url,
)
from torrentkit.discovery.tracker.state import TrackerConfig, parse_whitelist
from torrentkit.discovery.tracker.store import SwarmStore, open_store
from torrentkit.ids import InfoHash

MAX_WHITELIST_FILE = 64 * 1024 * 1024
MAX_INTERVAL = 7 * 24 * 3600
MAX_WORKERS = 64
#: With ``--port 0`` and UDP on the same number: free TCP ports tried for a free UDP twin.
PORT_PAIR_ATTEMPTS = 20
#: A worker that dies this soon after its start, this many times in a row, ends the tracker.
QUICK_DEATH = 2.0
QUICK_DEATHS = 3


def register(sub: Any) -> None:
    p = sub.add_parser("tracker", help="run a BitTorrent tracker (HTTP and UDP)")
    p.add_argument("--bind", default="0.0.0.0", metavar="HOST", help="default 0.0.0.0")
    p.add_argument("--port", type=int, default=6969, metavar="N", help="default 6969; 0 = any")
    p.add_argument(
        "--udp-port",
        type=int,
        metavar="N",
        help="UDP tracker port (BEP 15); default: the HTTP port's number; 0 = any",
    )
    p.add_argument("--no-udp", action="store_true", help="serve HTTP only")
    p.add_argument(
        "--interval", type=int, default=1800, metavar="SECONDS", help="announce interval"
    )
    p.add_argument(
        "--whitelist",
        metavar="FILE",
        help="serve only these info-hashes (40 hex digits a line); reloaded on SIGHUP",
    )
    p.add_argument(
        "--trust-ip-param",
        action="store_true",
        help="use the announce's ip= parameter instead of the connecting address",
    )
    p.add_argument(
        "--store",
        default="memory",
        metavar="URL",
        help="where swarms live: memory (default), redis://HOST:PORT/DB or unix:///PATH?db=N",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="N processes on the one port (SO_REUSEPORT); needs a Redis --store",
    )
    p.set_defaults(func=run)


def load_whitelist(path: str) -> frozenset[InfoHash]:
    """Read a whitelist file; any problem is a ValueError naming the file."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_WHITELIST_FILE:
            raise ValueError(f"{path}: larger than {MAX_WHITELIST_FILE} bytes")
        text = p.read_text(encoding="ascii", errors="replace")
    except IsADirectoryError:
        raise ValueError(f"{path}: is a folder, not a whitelist file") from None
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or exc}") from None
    try:
        return parse_whitelist(text)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port: must be 0-65535, got {args.port}")
    if args.udp_port is not None and not 0 <= args.udp_port <= 65535:
        raise UsageError(f"--udp-port: must be 0-65535, got {args.udp_port}")
    if args.udp_port is not None and args.no_udp:
        raise UsageError("--udp-port and --no-udp contradict each other")
    if not 1 <= args.interval <= MAX_INTERVAL:
        raise UsageError(f"--interval: must be 1-{MAX_INTERVAL} seconds, got {args.interval}")
    whitelist = None
    if args.whitelist is not None:
        try:
            whitelist = load_whitelist(args.whitelist)
        except ValueError as exc:
            raise UsageError(f"--whitelist: {exc}") from None
    memory = args.store == "memory"
    if not 1 <= args.workers <= MAX_WORKERS:
        raise UsageError(f"--workers: must be 1-{MAX_WORKERS}, got {args.workers}")
    if args.workers > 1 and memory:
        raise UsageError(
            "--workers needs --store redis://...: with the in-memory store each process "
            "would hold a different part of every swarm"
        )
    config = TrackerConfig(interval=args.interval, trust_ip_param=args.trust_ip_param)
    try:
        # Checks the URL now; connects lazily (in the process that serves).
        open_store(args.store, config)
    except ValueError as exc:
        raise UsageError(f"--store: {exc}") from None
    try:
        socks, udps = _open_sockets(args)
    except socket.gaierror as exc:
        raise UsageError(f"--bind: cannot use {args.bind!r}: {exc.strerror}") from None
    _say_store_problems()
    master = os.urandom(32)  # the UDP connection-id secret, one for every worker
    if args.workers == 1:
        udp = udps[0] if udps else None
        with socks[0], contextlib.ExitStack() as stack:
            if udp is not None:
                stack.enter_context(udp)
            store = open_store(args.store, config, whitelist=whitelist)
            interrupted = asyncio.run(_main(store, socks[0], udp, args.whitelist, master=master))
        return EXIT_INTERRUPTED if interrupted else EXIT_OK
    return run_workers(args, config, whitelist, socks, udps, master)


def _open_sockets(args: argparse.Namespace) -> tuple[list[socket.socket], list[socket.socket]]:
    """One HTTP listener per worker, and one UDP socket per worker (none with ``--no-udp``).
    UDP takes the HTTP port's number unless ``--udp-port`` says otherwise; with ``--port 0``
    a number free for both protocols is looked for."""
    reuse = args.workers > 1
    attempts = PORT_PAIR_ATTEMPTS if args.port == 0 and args.udp_port is None else 1
    for attempt in range(attempts):
        socks: list[socket.socket] = []
        udps: list[socket.socket] = []
        what = f"{args.bind}:{args.port}"
        try:
            for _ in range(args.workers):
                port = args.port if not socks else socks[0].getsockname()[1]
                what = f"{args.bind}:{port}"
                socks.append(open_listen_socket(args.bind, port, reuse_port=reuse))
                if args.no_udp:
                    continue
                tcp_port = socks[0].getsockname()[1]
                udp_port = args.udp_port if args.udp_port is not None else tcp_port
                if udps:
                    udp_port = udps[0].getsockname()[1]
                what = f"UDP {args.bind}:{udp_port}"
                udps.append(open_udp_socket(args.bind, udp_port, reuse_port=reuse))
            return socks, udps
        except OSError as exc:
            for sock in socks + udps:
                sock.close()
            if isinstance(exc, socket.gaierror):
                raise
            if attempt + 1 == attempts or not what.startswith("UDP"):
                hint = " (--udp-port N or --no-udp)" if what.startswith("UDP") else ""
                # A port in use is the user's to change: exit 2 (docs/cli.md).
                raise UsageError(f"cannot listen on {what}: {exc.strerror}{hint}") from None
    raise AssertionError("unreachable")


def _say_store_problems() -> None:
    """The Redis store's "down" / "back" lines go to stderr, one line each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("torrentkit tracker: %(message)s"))
    store_log = logging.getLogger("torrentkit.discovery.tracker.redis_store")
    store_log.addHandler(handler)
    store_log.setLevel(logging.WARNING)
    store_log.propagate = False


def run_workers(
    args: argparse.Namespace,
    config: TrackerConfig,
    whitelist: frozenset[InfoHash] | None,
    socks: list[socket.socket],
    udps: list[socket.socket],
    master: bytes,
) -> int:
    """Run one worker process per socket until SIGTERM / SIGINT; replace workers that die.

    ``args.store`` is the store's URL (each worker opens its own connection), and
    ``args.whitelist`` the whitelist file each worker re-reads on SIGHUP (or None). Prints
    the ``listening on`` line once every worker is forked. tools/bench_tracker.py uses it too.
    """
    workers: dict[int, int] = {}  # pid -> index of its socket
    started: dict[int, float] = {}  # index -> start time
    quick: dict[int, int] = {}  # index -> quick deaths in a row
    stopping: list[int] = []  # the signal that stops us, once received

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    signal.signal(sig, signal.SIG_DFL)
                for i, other in enumerate(socks):
                    if i != index:
                        other.close()
                for i, other in enumerate(udps):
                    if i != index:
                        other.close()
                store = open_store(args.store, config, whitelist=whitelist)
                interrupted = asyncio.run(
                    _main(
                        store,
                        socks[index],
                        udps[index] if udps else None,
                        args.whitelist,
                        master=master,
                        first_line=False,
                    )
                )
                code = EXIT_INTERRUPTED if interrupted else EXIT_OK
            except BaseException as exc:  # one line, never a traceback
                _note(f"worker {os.getpid()} failed: {type(exc).__name__}: {exc}")
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        workers[pid] = index
        started[index] = time.monotonic()

    def forward(sig: int, _frame: object) -> None:
        if sig != signal.SIGHUP and not stopping:
            stopping.append(sig)
        for pid in list(workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    for index in range(len(socks)):
        spawn(index)
    _first_line(socks[0], udps[0] if udps else None)
    failed = False
    while workers:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if pid not in workers:
            continue
        index = workers.pop(pid)
        if stopping:
            continue
        why = f"exit code {os.waitstatus_to_exitcode(status)}"
        if os.WIFSIGNALED(status):
            why = f"signal {signal.Signals(os.WTERMSIG(status)).name}"
        died_young = time.monotonic() - started[index] < QUICK_DEATH
        quick[index] = quick.get(index, 0) + 1 if died_young else 0
        if quick[index] >= QUICK_DEATHS:
            _note(f"worker {pid} ended ({why}) {QUICK_DEATHS} times in a row at start; stopping")
            failed = True
            forward(signal.SIGTERM, None)
            continue
        _note(f"worker {pid} ended ({why}); starting a new one")
        spawn(index)
    for sock in socks + udps:
        sock.close()
    if failed:
        raise JobFailed("the tracker's workers keep failing")
    return EXIT_INTERRUPTED if stopping and stopping[0] == signal.SIGINT else EXIT_OK


def _first_line(sock: socket.socket, udp: socket.socket | None) -> None:
    udp_text = f" {udp_url(udp)}" if udp is not None else ""
    sys.stdout.write(f"listening on {host_port(sock)} announce {announce_url(sock)}{udp_text}\n")
    sys.stdout.flush()


async def _main(
    store: SwarmStore,
    sock: socket.socket,
    udp: socket.socket | None,
    whitelist: str | None,
    *,
    master: bytes,
    first_line: bool = True,
) -> bool:
    """Serve until SIGTERM or SIGINT; return True when it was SIGINT (Ctrl-C)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    interrupted = False

    def on_int() -> None:
        nonlocal interrupted
        interrupted = True
        stop.set()

    def on_hup() -> None:
        if whitelist is None:
            _note("SIGHUP: no --whitelist to reload")
            return
        try:
            hashes = load_whitelist(whitelist)
        except ValueError as exc:
            _note(f"whitelist not reloaded, keeping the old one: {exc}")
            return
        store.set_whitelist(hashes)
        _note(f"whitelist reloaded: {len(hashes)} info-hashes")

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, on_int)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    # The socket already listens; say so only now that the signals are ours.
    if first_line:
        _first_line(sock, udp)
    try:
        await serve(store, sock, stop, udp_sock=udp, udp_master=master)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await store.aclose()
    return interrupted


def _note(message: str) -> None:
    sys.stderr.write(f"torrentkit tracker: {safe_text(message)}\n")
    sys.stderr.flush()
