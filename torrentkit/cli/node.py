"""``torrentkit node --discovery gnutella|kazaa [--bootstrap HOST:PORT]... [--supernode]``: a
bare overlay node (it shares nothing itself; it links, forwards queries and routes hits).

- ``gnutella``: a peer; it floods queries it receives to its other neighbours (TTL, duplicate
  suppression) and routes hits back.
- ``kazaa``: ``--supernode`` (or ``--capacity RATE`` of at least 1M) makes a supernode that
  indexes its leaves' file lists and floods queries among supernodes; otherwise a leaf.

The first stdout line is ``listening on HOST:PORT`` (the overlay port, to give others as
``--bootstrap``); a status line on stderr every ``--status-every`` seconds (0: never).
SIGTERM stops with exit 0, Ctrl-C with 130.

Each ``--discovery`` value maps to a runner in :data:`RUNNERS` (the place for a ``chord``
ring node).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from typing import Any

import trio

from torrentkit.cli.chord_cli import add_chord_arguments, run_chord_node
from torrentkit.cli.common import EXIT_INTERRUPTED, EXIT_OK, UsageError
from torrentkit.cli.p2p import add_role_arguments, check_port, overlay_bootstrap, overlay_role
from torrentkit.discovery.gnutella import OverlayDriver, Role
from torrentkit.discovery.gnutella.session_port import OverlayListenError, open_overlay
from torrentkit.ids import PeerAddr
from torrentkit.net import TrioNetwork

STATUS_EVERY = 30.0


def run_overlay_node(args: argparse.Namespace) -> int:
    """A Gnutella peer or a KaZaA supernode / leaf until SIGTERM or Ctrl-C."""
    role = overlay_role(args.discovery, supernode=args.supernode, capacity=args.capacity)
    bootstrap = overlay_bootstrap(args.bootstrap, required=role is Role.LEAF)
    check_port(args.port)
    if not args.status_every >= 0:
        raise UsageError("--status-every: must be 0 or more seconds")
    try:
        return trio.run(_serve_overlay, role, bootstrap, args.bind, args.port, args.status_every)
    except OverlayListenError as exc:
        raise UsageError(str(exc)) from None


#: ``--discovery`` value -> the function that runs that kind of node.
RUNNERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "chord": run_chord_node,
    "gnutella": run_overlay_node,
    "kazaa": run_overlay_node,
}


def register(sub: Any) -> None:
    p = sub.add_parser("node", help="run a bare ring or overlay node (chord, gnutella, kazaa)")
    p.add_argument(
        "--discovery", choices=list(RUNNERS), required=True, help="which overlay to join"
    )
    p.add_argument(
        "--bootstrap",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="a node to join through (repeatable)",
    )
    add_role_arguments(p)
    add_chord_arguments(p)
    p.add_argument("--bind", default="0.0.0.0", metavar="HOST", help="listen address")
    p.add_argument("--port", type=int, default=0, metavar="N", help="listen port (0 = any)")
    p.add_argument(
        "--status-every", type=float, default=STATUS_EVERY, metavar="S", help="0 = no status"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return RUNNERS[args.discovery](args)


async def _serve_overlay(
    role: Role, bootstrap: list[PeerAddr], bind: str, port: int, status_every: float
) -> int:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_overlay(
            TrioNetwork(), role=role, bootstrap=bootstrap, bind=bind, port=port
        ) as node:
            sys.stdout.write(f"listening on {node.address}\n")
            sys.stdout.flush()
            async with trio.open_nursery() as nursery:
                if status_every > 0:
                    nursery.start_soon(_status, node, status_every)
                async for signum in signals:
                    nursery.cancel_scope.cancel()
                    return EXIT_INTERRUPTED if signum == signal.SIGINT else EXIT_OK
    return EXIT_OK


async def _status(node: OverlayDriver, every: float) -> None:
    while True:
        await trio.sleep(every)
        roles: dict[str, int] = {}
        for nb in node.neighbours():
            name = nb.role.name.lower() if nb.role is not None else "pending"
            roles[name] = roles.get(name, 0) + 1
        total = sum(roles.values())
        kinds = ", ".join(f"{n} {r}" for r, n in sorted(roles.items()))
        c = node.counters
        line = (
            f"{node.role.name.lower()}: {total} neighbour{'s' if total != 1 else ''}"
            + (f" ({kinds})" if kinds else "")
            + f"; {c.received['query']} queries in, {c.sent['hit']} hits out"
        )
        if node.role is Role.SUPERNODE:
            line += f"; {node.core.index_size()} files indexed"
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
