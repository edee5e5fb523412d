"""``torrentkit napster-index``: run the central Napster-style index until stopped.

    torrentkit napster-index [--bind HOST] [--port 8000] [--ttl S] [--rate-limit N]

The first stdout line, flushed at once, is ``listening on HOST:PORT url http://HOST:PORT/``
with the real port (``--port 0`` picks a free one); the URL is what peers pass as
``--bootstrap``. Peers join, publish and search over the HTTP/JSON API of
:mod:`torrentkit.discovery.napster.protocol`. ``--ttl`` (default 120 s): a peer's files vanish
that long after its last publish or heartbeat. ``--rate-limit`` (default 20): requests per
second per IP address, in bursts of up to 5x that; 0 turns it off (benchmarks). SIGTERM stops
cleanly with exit 0, Ctrl-C with 130. Nothing is logged per request.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
from typing import Any

from torrentkit.cli.common import EXIT_INTERRUPTED, EXIT_OK, UsageError
from torrentkit.discovery.napster.index import IndexConfig, NapsterIndex, RateLimiter
from torrentkit.discovery.napster.server import (
    DEFAULT_RATE,
    host_port,
    open_listen_socket,
    serve,
    url_of,
)

MAX_TTL = 7 * 24 * 3600
MAX_RATE = 1_000_000


def register(sub: Any) -> None:
    p = sub.add_parser("napster-index", help="run a central Napster-style file index")
    p.add_argument("--bind", default="0.0.0.0", metavar="HOST", help="default 0.0.0.0")
    p.add_argument("--port", type=int, default=8000, metavar="N", help="default 8000; 0 = any")
    p.add_argument(
        "--ttl",
        type=float,
        default=120.0,
        metavar="S",
        help="a peer's files vanish S seconds after its last refresh (default 120)",
    )
    p.add_argument(
        "--rate-limit",
        type=float,
        default=DEFAULT_RATE,
        metavar="N",
        help=f"requests/s per IP address, bursts of 5x (default {DEFAULT_RATE:g}; 0 = off)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port: must be 0-65535, got {args.port}")
    if not 1 <= args.ttl <= MAX_TTL:
        raise UsageError(f"--ttl: must be 1-{MAX_TTL} seconds, got {args.ttl:g}")
    if not 0 <= args.rate_limit <= MAX_RATE:
        raise UsageError(f"--rate-limit: must be 0-{MAX_RATE}, got {args.rate_limit:g}")
    index = NapsterIndex(IndexConfig(ttl=args.ttl))
    limiter = RateLimiter(args.rate_limit, max(1.0, 5 * args.rate_limit))
    try:
        sock = open_listen_socket(args.bind, args.port)
    except socket.gaierror as exc:
        raise UsageError(f"--bind: cannot use {args.bind!r}: {exc.strerror}") from None
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.bind}:{args.port}: {exc.strerror}") from None
    with sock:
        interrupted = asyncio.run(_main(index, limiter, sock))
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


async def _main(index: NapsterIndex, limiter: RateLimiter, sock: socket.socket) -> bool:
    """Serve until SIGTERM or SIGINT; return True when it was SIGINT (Ctrl-C)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    interrupted = False

    def on_int() -> None:
        nonlocal interrupted
        interrupted = True
        stop.set()

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, on_int)
    # The socket already listens; say so only now that the signals are ours.
    sys.stdout.write(f"listening on {host_port(sock)} url {url_of(sock)}\n")
    sys.stdout.flush()
    try:
        await serve(index, sock, stop, limiter=limiter)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return interrupted
