"""The mainline DHT's flags on ``download`` and ``seed`` (docs/cli.md): on by default, as in
libtorrent and aria2, for public torrents only (BEP 27).

- ``--no-dht``: no DHT node at all.
- ``--dht-bootstrap HOST:PORT`` (repeatable): bootstrap through these instead of the default
  routers (router.bittorrent.com and the others: host names, looked up when the node starts).
  Tests and the demo always pass it pointing at 127.0.0.1, or ``--no-dht``.
- ``--dht-port N``: the node's UDP port when it must differ from the listen port's number.
"""

from __future__ import annotations

import argparse

from torrentkit.cli.common import UsageError
from torrentkit.settings import DhtSettings, SettingsError


def add_dht_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-dht", action="store_true", help="no mainline DHT node")
    p.add_argument(
        "--dht-bootstrap",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="DHT: bootstrap through this node (repeatable; replaces the default routers)",
    )
    p.add_argument(
        "--dht-port", type=int, metavar="N", help="DHT: UDP port (default: the listen port's)"
    )


def dht_settings(args: argparse.Namespace) -> DhtSettings | None:
    """The DHT settings the flags ask for; None with ``--no-dht`` or on a command without
    the flags."""
    if not hasattr(args, "no_dht"):
        return None
    if args.no_dht:
        if args.dht_bootstrap or args.dht_port is not None:
            raise UsageError("--no-dht goes with neither --dht-bootstrap nor --dht-port")
        return None
    try:
        if args.dht_bootstrap:
            return DhtSettings(bootstrap=args.dht_bootstrap, port=args.dht_port)
        return DhtSettings(port=args.dht_port)
    except SettingsError as exc:
        message = (
            str(exc).replace("dht bootstrap", "--dht-bootstrap").replace("dht port", "--dht-port")
        )
        raise UsageError(message) from None
