"""An overlay node living on a BitTorrent session's listen port (docs/design.md: overlay links
share the BitTorrent port).

The session's listener reads every incoming peer handshake; the ones with
:data:`~torrentkit.discovery.gnutella.OVERLAY_INFO_HASH` are handed to the overlay node
(:meth:`torrentkit.engine.session.Session.add_handler`), and the node announces the session's
port in its hello and pongs. Its own listener is a parked one that never accepts.
:func:`open_overlay` without a session runs a bare node on its own port (``torrentkit node``,
the search command, a demo's core nodes).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final, Protocol

import trio

from torrentkit.discovery.base import NetworkError
from torrentkit.discovery.gnutella.driver import OverlayDriver
from torrentkit.discovery.gnutella.messages import OVERLAY_INFO_HASH, Role
from torrentkit.ids import PeerAddr
from torrentkit.net import DatagramEndpoint, Listener, Network
from torrentkit.wire.connection import PeerConnection

#: How long a new overlay node may take to link to a first neighbour.
JOIN_TIMEOUT: Final = 15.0

#: Serves one handed-over connection (its handshake already read).
ConnectionHandler = Callable[[trio.abc.Stream, PeerConnection, PeerAddr], Awaitable[None]]


class PortOwner(Protocol):
    """What an overlay node needs from the session whose port it shares (the engine's
    :class:`~torrentkit.engine.session.Session` is one)."""

    network: Network
    peer_id: bytes

    @property
    def address(self) -> PeerAddr: ...

    def add_handler(self, info_hash: bytes, handler: ConnectionHandler) -> None: ...


class OverlayListenError(NetworkError):
    """A bare overlay node could not listen (port taken, address not ours)."""


class _ParkedListener:
    """A listener that never accepts: the session's listener takes the overlay's
    connections and hands them over."""

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
    """A :class:`Network` for an overlay node on a session's listen port: it dials through
    the session's network and "listens" at the session's address."""

    session: PortOwner

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
    session: PortOwner | None = None,
    holder: PeerAddr | None = None,
) -> AsyncIterator[OverlayDriver]:
    """A running overlay node (stopped on exit). With ``session`` it shares the session's
    listen port and, unless ``holder`` says otherwise, gives out the session's address as
    where our files are. Raises OverlayListenError when a bare node cannot listen."""
    peer_id = None
    if session is not None:
        # The session answers the handshake of links it hands over with its own peer id.
        network, peer_id = SessionPortNetwork(session), session.peer_id
        if holder is None:
            holder = session.address
    node = OverlayDriver(
        network, role=role, bind=bind, port=port, holder=holder, bootstrap=bootstrap,
        peer_id=peer_id,
    )  # fmt: skip
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

    failed: OSError | None = None
    async with trio.open_nursery() as nursery:
        try:
            await nursery.start(node.run)
        except OSError as exc:
            failed = exc  # raised below, outside the nursery (not in an exception group)
        else:
            if session is not None:
                session.add_handler(OVERLAY_INFO_HASH, hand_over)
            try:
                yield node
            finally:
                running = False
                nursery.cancel_scope.cancel()
    if failed is not None:
        raise OverlayListenError(f"cannot listen on {bind}:{port}: {failed.strerror or failed}")


def flood_links(node: OverlayDriver) -> int:
    """Neighbours that carry our queries (hello exchanged, role compatible)."""
    want = Role.PEER if node.role is Role.PEER else Role.SUPERNODE
    return sum(1 for nb in node.neighbours() if nb.role is want)


async def wait_for_neighbours(node: OverlayDriver, timeout: float = JOIN_TIMEOUT) -> None:
    """Until the node has a neighbour to send queries to; NetworkError after ``timeout``."""
    with trio.move_on_after(timeout):
        while not flood_links(node):
            await trio.sleep(0.05)
        return
    raise NetworkError(f"could not join the overlay: no neighbour answered within {timeout:g} s")
