"""The Chord ring on the command line: its flags, their mapping to
:class:`~torrentkit.settings.ChordSettings` (``download`` / ``seed`` with ``--discovery chord``:
the session joins the ring as a member on its listen port's number over UDP, as mainline DHT
clients do), and ``node --discovery chord``, a bare ring node on ``--port``.

``--bootstrap`` names ring nodes to join through (tried in order); none means "start a new
ring". The node's ring id is SHA-1 of the address it is reached at, so a node bound to a
wildcard address needs ``--advertise HOST``.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import trio

from torrentkit.cli.common import EXIT_INTERRUPTED, EXIT_OK, UsageError
from torrentkit.errors import LocalProtocolError
from torrentkit.ids import PeerAddr
from torrentkit.net import TrioNetwork
from torrentkit.settings import ChordSettings

# The ring's modules are imported where a ring is used: ``download`` and ``seed`` import
# this module for their flags, and most runs never join a ring.
if TYPE_CHECKING:
    from torrentkit.discovery.chord.node import ChordConfig

DEFAULT_STABILIZE = 5.0


def add_chord_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--stabilize-interval",
        type=float,
        default=DEFAULT_STABILIZE,
        metavar="S",
        help="Chord: seconds between stabilize / fix_fingers rounds (default 5)",
    )
    p.add_argument("--advertise", metavar="HOST", help="Chord: the address other nodes reach us at")


def chord_config(interval: float) -> ChordConfig:
    from torrentkit.discovery.chord.node import ChordConfig

    if not 0.05 <= interval <= 600:
        raise UsageError("--stabilize-interval: must be 0.05-600 seconds")
    return ChordConfig(stabilize_interval=interval)


def chord_settings(args: argparse.Namespace) -> ChordSettings | None:
    """``--discovery chord --bootstrap ... --stabilize-interval ... --advertise ...`` as the
    session's ring settings (None for ``--discovery tracker``)."""
    if args.discovery != "chord":
        if args.bootstrap:
            raise UsageError("--bootstrap goes with --discovery chord")
        return None
    _need_advertise(getattr(args, "bind", None), args.advertise)
    return ChordSettings(
        bootstrap=tuple(parse_bootstrap(args.bootstrap)),
        stabilize_interval=chord_config(args.stabilize_interval).stabilize_interval,
        advertise=args.advertise,
    )


def _need_advertise(bind: str | None, advertise: str | None) -> None:
    """A ring node's id is its address, so one listening on every interface must be told
    the address the others reach it at (docs/cli.md)."""
    if advertise is None and bind in ("0.0.0.0", "::", ""):
        raise UsageError(
            f"--discovery chord listening on {bind or '*'}: pass --advertise HOST, the "
            "address other ring nodes reach this one at (or --bind that address)"
        )


def parse_bootstrap(values: Sequence[str]) -> list[PeerAddr]:
    out = []
    for text in values:
        try:
            out.append(PeerAddr.parse(text))
        except ValueError as exc:
            raise UsageError(f"--bootstrap: {exc}") from None
    return out


def run_chord_node(args: argparse.Namespace) -> int:
    """``torrentkit node --discovery chord``: a bare ring node until SIGTERM or Ctrl-C (a
    graceful leave that hands its keys over either way)."""
    _need_advertise(args.bind, args.advertise)
    settings = ChordSettings(
        bootstrap=tuple(parse_bootstrap(args.bootstrap)),
        stabilize_interval=chord_config(args.stabilize_interval).stabilize_interval,
        advertise=args.advertise,
    )
    if not 0 <= args.port < 65536:
        raise UsageError("--port: must be 0-65535")
    return trio.run(_serve_node, args.bind, args.port, settings)


async def _serve_node(host: str, port: int, settings: ChordSettings) -> int:
    """The same ring membership a session joins (discovery/networks.open_chord); a ring
    that cannot be joined is a NetworkError: one line, exit 1."""
    from torrentkit.discovery.networks import open_chord

    try:
        endpoint = await TrioNetwork().bind_udp(host, port)
    except OSError as exc:
        raise UsageError(
            f"cannot bind UDP {host}:{port} for the Chord ring: {exc.strerror or exc}"
        ) from None
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        try:
            async with open_chord(TrioNetwork(), host, port, settings, endpoint=endpoint) as ring:
                chord = ring.driver
                sys.stdout.write(f"listening on {chord.address}\n")
                sys.stdout.flush()
                async for signum in signals:
                    with trio.move_on_after(5):
                        await chord.leave()
                    return EXIT_INTERRUPTED if signum == signal.SIGINT else EXIT_OK
        except LocalProtocolError as exc:
            raise UsageError(str(exc)) from None
        finally:
            endpoint.close()
    return EXIT_OK
