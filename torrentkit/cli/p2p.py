"""What ``share``, ``search``, ``get``, ``node`` and ``demo`` share for the keyword-search
designs (issue 7): the ``--discovery`` / ``--bootstrap`` flags, joining an index or an overlay,
and turning what they answer into peers for the one fetch engine.

- **napster**: ``--bootstrap`` is the index's URL (exactly one). Sharing is a
  :class:`~torrentkit.discovery.napster.client.NapsterPublisher`; searching is one request.
- **gnutella** / **kazaa**: ``--bootstrap HOST:PORT`` (repeatable) names overlay nodes. A node
  that also runs a BitTorrent session (``share``, ``get``, the demo's peers) shares the
  session's listen port: the session hands connections that handshake with
  :data:`~torrentkit.discovery.gnutella.OVERLAY_INFO_HASH` to the overlay node
  (:meth:`Session.add_handler`), and the node announces that port in its hello and pongs.
  Gnutella nodes are all ``peer``; in KaZaA mode ``--supernode`` (or ``--capacity`` at least
  :data:`SUPERNODE_CAPACITY`) makes a supernode, anything else is a leaf.

Private torrents (BEP 27) are never published: :func:`public_files` drops them before an
index or an overlay hears of them (and :class:`NapsterClient` filters them once more).
"""

from __future__ import annotations

import argparse
import contextlib
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

import trio

from torrentkit.cli.common import JobFailed, UsageError, parse_size
from torrentkit.discovery.base import SearchHit
from torrentkit.discovery.gnutella import OVERLAY_INFO_HASH, FileEntry, OverlayDriver, Role
from torrentkit.discovery.napster.client import parse_index_url
from torrentkit.discovery.napster.index import SharedFile
from torrentkit.engine.session import Session
from torrentkit.ids import PeerAddr
from torrentkit.metainfo import Metainfo
from torrentkit.net import DatagramEndpoint, Listener, Network
from torrentkit.wire.connection import PeerConnection

#: Every ``--discovery`` value of CLI.md; each command says which it supports.
DISCOVERY_MODES: Final = ("tracker", "chord", "napster", "gnutella", "kazaa")
#: The keyword-search designs (search by name, then fetch by info-hash).
SEARCH_MODES: Final = ("napster", "gnutella", "kazaa")
OVERLAY_MODES: Final = ("gnutella", "kazaa")
#: A KaZaA node declaring at least this upload capacity (bytes/s) becomes a supernode.
SUPERNODE_CAPACITY: Final = 1024 * 1024
#: How long a new overlay node may take to link to a first neighbour.
JOIN_TIMEOUT: Final = 15.0
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^:\[\]]+):(\d+)$")


def add_discovery_arguments(
    p: argparse.ArgumentParser, *, modes: Sequence[str] = DISCOVERY_MODES, default: str | None
) -> None:
    p.add_argument(
        "--discovery",
        choices=list(modes),
        default=default,
        required=default is None,
        help=f"how to find peers: {', '.join(modes)}",
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


# --------------------------------------------------------------------------- what to publish


def public_files(metas: Iterable[Metainfo]) -> list[Metainfo]:
    """The torrents that may be published: never a private one (BEP 27)."""
    return [m for m in metas if not m.info.private]


def shared_files(metas: Iterable[Metainfo]) -> list[SharedFile]:
    """Napster entries for ``metas`` (private ones are dropped here already)."""
    return [
        SharedFile(name=m.name, size=m.info.total_length, info_hash=m.info_hash, private=False)
        for m in public_files(metas)
    ]


def overlay_files(metas: Iterable[Metainfo]) -> list[FileEntry]:
    """Overlay entries for ``metas`` (private ones dropped)."""
    return [
        FileEntry(name=m.name, size=m.info.total_length, info_hash=m.info_hash)
        for m in public_files(metas)
    ]


# --------------------------------------------------------------------------- overlay nodes


class _ParkedListener:
    """A listener that never accepts: the session's listener takes the overlay's
    connections and hands them over (:meth:`Session.add_handler`)."""

    def __init__(self, address: PeerAddr) -> None:
        self._address = address

    @property
    def address(self) -> PeerAddr:
        return self._address

    async def accept(self) -> tuple[trio.abc.Stream, PeerAddr]:
        await trio.sleep_forever()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


@dataclass(frozen=True, slots=True)
class SessionPortNetwork:
    """A :class:`Network` for an overlay node living on a session's listen port: it dials
    through the session's network and "listens" at the session's address."""

    session: Session

    async def connect_tcp(self, addr: PeerAddr) -> trio.abc.Stream:
        return await self.session.network.connect_tcp(addr)

    async def listen_tcp(self, host: str, port: int) -> Listener:
        await trio.lowlevel.checkpoint()
        return _ParkedListener(self.session.address)

    async def bind_udp(self, host: str, port: int) -> DatagramEndpoint:
        return await self.session.network.bind_udp(host, port)


@asynccontextmanager
async def open_overlay(
    network: Network,
    *,
    role: Role,
    bootstrap: Sequence[PeerAddr],
    bind: str = "0.0.0.0",
    port: int = 0,
    session: Session | None = None,
    holder: PeerAddr | None = None,
) -> AsyncIterator[OverlayDriver]:
    """A running overlay node (stopped on exit). With ``session`` it shares the session's
    listen port and, unless ``holder`` says otherwise, gives out the session's address as
    where our files are."""
    peer_id = None
    if session is not None:
        # The session answers the handshake of links it hands over with its own peer id.
        network, peer_id = SessionPortNetwork(session), session.peer_id
        if holder is None:
            holder = session.address
    node = OverlayDriver(
        network,
        role=role,
        bind=bind,
        port=port,
        holder=holder,
        bootstrap=bootstrap,
        peer_id=peer_id,
    )
    running = True

    async def hand_over(stream: trio.abc.Stream, conn: PeerConnection, remote: PeerAddr) -> None:
        if running:
            await node.accept(stream, conn, remote)
        else:  # the node has stopped; the session cannot unregister a handler
            with (
                trio.CancelScope(shield=True),
                trio.move_on_after(1),
                contextlib.suppress(OSError, trio.BrokenResourceError, trio.ClosedResourceError),
            ):
                await stream.aclose()

    async with trio.open_nursery() as nursery:
        try:
            await nursery.start(node.run)
        except OSError as exc:
            raise UsageError(f"cannot listen on {bind}:{port}: {exc.strerror or exc}") from None
        if session is not None:
            session.add_handler(OVERLAY_INFO_HASH, hand_over)
        try:
            yield node
        finally:
            running = False
            nursery.cancel_scope.cancel()


def flood_links(node: OverlayDriver) -> int:
    """Neighbours that carry our queries (hello exchanged, role compatible)."""
    want = Role.PEER if node.role is Role.PEER else Role.SUPERNODE
    return sum(1 for nb in node.neighbours() if nb.role is want)


async def wait_for_neighbours(node: OverlayDriver, timeout: float = JOIN_TIMEOUT) -> None:
    """Until the node has a neighbour to send queries to; JobFailed after ``timeout``."""
    with trio.move_on_after(timeout):
        while not flood_links(node):
            await trio.sleep(0.05)
        return
    raise JobFailed(f"could not join the overlay: no neighbour answered within {timeout:g} s")


# --------------------------------------------------------------------------- hits


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
    """A hit as ``search --json`` prints it (CLI.md)."""
    return {
        "name": hit.name,
        "size": hit.size,
        "info_hash": hit.info_hash.hex(),
        "peers": [str(p) for p in hit.peers],
    }


def unwrap(exc: BaseException) -> BaseException:
    """The one error inside (nested) exception groups, as trio nurseries raise them."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
