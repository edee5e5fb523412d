"""The flags ``share``, ``search``, ``get``, ``node`` and ``demo`` share for the keyword-search
designs, and their mapping to :class:`~torrentkit.settings.Settings`. Everything that runs
(joining an index or an overlay, overlay links on the session's port, publishing, searching
with backoff) is in the library: :mod:`torrentkit.discovery.networks` and
:mod:`torrentkit.discovery.gnutella.session_port`.

- **napster**: ``--bootstrap`` is the index's URL (exactly one).
- **gnutella** / **kazaa**: ``--bootstrap HOST:PORT`` (repeatable) names overlay nodes.
  Gnutella nodes are all ``peer``; in KaZaA mode ``--supernode`` (or ``--capacity`` at least
  :data:`SUPERNODE_CAPACITY`) makes a supernode, anything else is a leaf.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable, Sequence
from typing import Any, Final

from torrentkit.cli.common import UsageError, parse_size
from torrentkit.discovery.base import SearchHit
from torrentkit.discovery.gnutella import Role
from torrentkit.discovery.napster.client import parse_index_url
from torrentkit.ids import PeerAddr
from torrentkit.settings import NapsterSettings, OverlaySettings

#: Every ``--discovery`` value of docs/cli.md; each command says which it supports.
DISCOVERY_MODES: Final = ("tracker", "chord", "napster", "gnutella", "kazaa")
#: The keyword-search designs (search by name, then fetch by info-hash).
SEARCH_MODES: Final = ("napster", "gnutella", "kazaa")
OVERLAY_MODES: Final = ("gnutella", "kazaa")
#: A KaZaA node declaring at least this upload capacity (bytes/s) becomes a supernode.
SUPERNODE_CAPACITY: Final = 1024 * 1024
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^:\[\]]+):(\d+)$")


def add_discovery_arguments(
    p: argparse.ArgumentParser,
    *,
    modes: Sequence[str] = DISCOVERY_MODES,
    default: str | None,
    offered: Sequence[str] | None = None,
) -> None:
    """``--discovery`` takes any of ``modes``; the help offers only ``offered`` (the ones
    the command works with: the others are refused with a reason, :func:`require_mode`)."""
    shown = list(offered if offered is not None else modes)
    p.add_argument(
        "--discovery",
        choices=list(modes),
        default=default,
        required=default is None,
        metavar="{" + ",".join(shown) + "}",
        help=f"how to find peers: {', '.join(shown)}",
    )
    p.add_argument(
        "--bootstrap",
        action="append",
        default=[],
        metavar="ADDR",
        help="overlay node HOST:PORT (repeatable), or the index URL for napster",
    )


def add_role_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--supernode", action="store_true", help="kazaa: act as a supernode")
    p.add_argument(
        "--capacity",
        metavar="RATE",
        help=f"kazaa: upload capacity; {SUPERNODE_CAPACITY // 1024}K or more makes a supernode",
    )


def check_port(port: int) -> None:
    if not 0 <= port <= 65535:
        raise UsageError(f"--port: must be 0-65535, got {port}")


def require_mode(mode: str, allowed: Sequence[str], command: str) -> None:
    if mode not in allowed:
        raise UsageError(
            f"--discovery {mode}: {command} works with {', '.join(allowed)}"
            + (" (chord finds peers by info-hash, not files by name)" if mode == "chord" else "")
        )


def index_url(values: Sequence[str]) -> str:
    """The napster index URL: exactly one ``--bootstrap``."""
    if len(values) != 1:
        raise UsageError(
            "--bootstrap: napster needs exactly one index URL, e.g. http://127.0.0.1:8000/"
        )
    try:
        return parse_index_url(values[0])
    except ValueError as exc:
        raise UsageError(f"--bootstrap: {exc}") from None


def overlay_bootstrap(values: Sequence[str], *, required: bool = True) -> list[PeerAddr]:
    """Overlay neighbours: ``HOST:PORT`` each (IP literals or names)."""
    if required and not values:
        raise UsageError("--bootstrap: name at least one overlay node as HOST:PORT")
    out: list[PeerAddr] = []
    for text in values:
        if "://" in text or not _HOST_PORT.match(text):
            raise UsageError(f"--bootstrap: expected an overlay node as HOST:PORT, got {text!r}")
        try:
            out.append(PeerAddr.parse(text))
        except ValueError as exc:
            raise UsageError(f"--bootstrap: {exc}") from None
    return out


def overlay_role(mode: str, *, supernode: bool, capacity: str | None) -> Role:
    """Gnutella: always a peer. KaZaA: a supernode when asked or capable, else a leaf."""
    rate = parse_size(capacity, "--capacity") if capacity is not None else 0
    if mode == "gnutella":
        if supernode or capacity is not None:
            raise UsageError("--supernode and --capacity are for --discovery kazaa")
        return Role.PEER
    return Role.SUPERNODE if supernode or rate >= SUPERNODE_CAPACITY else Role.LEAF


def network_settings(args: argparse.Namespace, *, need_bootstrap: bool = False) -> dict[str, Any]:
    """``--discovery`` / ``--bootstrap`` (and ``--supernode`` / ``--capacity``) as the
    Settings fields ``napster=`` or ``overlay=``. An overlay node needs a ``--bootstrap``
    when it is a leaf or ``need_bootstrap`` (it searches)."""
    mode = args.discovery
    supernode, capacity = getattr(args, "supernode", False), getattr(args, "capacity", None)
    if mode == "napster":
        if supernode or capacity is not None:
            raise UsageError("--supernode and --capacity are for --discovery kazaa")
        return {"napster": NapsterSettings(url=index_url(args.bootstrap))}
    role = overlay_role(mode, supernode=supernode, capacity=capacity)
    boot = overlay_bootstrap(args.bootstrap, required=need_bootstrap or role is Role.LEAF)
    return {
        "overlay": OverlaySettings(
            kind=mode, bootstrap=tuple(boot), supernode=role is Role.SUPERNODE
        )
    }


def filter_hits(
    hits: Iterable[SearchHit],
    *,
    min_size: int | None = None,
    max_size: int | None = None,
    ext: str | None = None,
) -> list[SearchHit]:
    """The attribute filters an overlay cannot apply for us (an index applies them itself)."""
    out = []
    for hit in hits:
        if min_size is not None and hit.size < min_size:
            continue
        if max_size is not None and hit.size > max_size:
            continue
        if ext is not None:
            _, dot, suffix = hit.name.rpartition(".")
            if not dot or suffix.lower() != ext:
                continue
        out.append(hit)
    return out


def hit_object(hit: SearchHit) -> dict[str, object]:
    """A hit as ``search --json`` prints it (docs/cli.md)."""
    return {
        "name": hit.name,
        "size": hit.size,
        "info_hash": hit.info_hash.hex(),
        "peers": [str(p) for p in hit.peers],
    }
