"""``torrentkit tracker``: run the HTTP tracker (BEP 3 / 23 / 7 / 48) until stopped.

The first stdout line, flushed at once, is ``listening on HOST:PORT announce URL`` with the
real port (``--port 0`` picks a free one). SIGHUP reloads ``--whitelist`` (a bad file keeps
the old list and says why on stderr). SIGTERM stops cleanly with exit 0, Ctrl-C with 130.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from torrentkit.cli.common import EXIT_INTERRUPTED, EXIT_OK, JobFailed, UsageError, safe_text
from torrentkit.discovery.tracker.server import announce_url, host_port, open_listen_socket, serve
from torrentkit.discovery.tracker.state import TrackerConfig, TrackerState, parse_whitelist
from torrentkit.ids import InfoHash

MAX_WHITELIST_FILE = 64 * 1024 * 1024
MAX_INTERVAL = 7 * 24 * 3600


def register(sub: Any) -> None:
    p = sub.add_parser("tracker", help="run an HTTP BitTorrent tracker")
    p.add_argument("--bind", default="0.0.0.0", metavar="HOST", help="default 0.0.0.0")
    p.add_argument("--port", type=int, default=6969, metavar="N", help="default 6969; 0 = any")
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
    if not 1 <= args.interval <= MAX_INTERVAL:
        raise UsageError(f"--interval: must be 1-{MAX_INTERVAL} seconds, got {args.interval}")
    whitelist = None
    if args.whitelist is not None:
        try:
            whitelist = load_whitelist(args.whitelist)
        except ValueError as exc:
            raise UsageError(f"--whitelist: {exc}") from None
    config = TrackerConfig(interval=args.interval, trust_ip_param=args.trust_ip_param)
    state = TrackerState(config, whitelist=whitelist)
    try:
        sock = open_listen_socket(args.bind, args.port)
    except socket.gaierror as exc:
        raise UsageError(f"--bind: cannot use {args.bind!r}: {exc.strerror}") from None
    except OSError as exc:
        raise JobFailed(f"cannot listen on {args.bind}:{args.port}: {exc.strerror}") from None
    with sock:
        interrupted = asyncio.run(_main(state, sock, args.whitelist))
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


async def _main(state: TrackerState, sock: socket.socket, whitelist: str | None) -> bool:
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
        state.set_whitelist(hashes)
        _note(f"whitelist reloaded: {len(hashes)} info-hashes")

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, on_int)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    # The socket already listens; say so only now that the signals are ours.
    sys.stdout.write(f"listening on {host_port(sock)} announce {announce_url(sock)}\n")
    sys.stdout.flush()
    try:
        await serve(state, sock, stop)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    return interrupted


def _note(message: str) -> None:
    sys.stderr.write(f"torrentkit tracker: {safe_text(message)}\n")
    sys.stderr.flush()
