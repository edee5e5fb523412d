"""Joining the discovery networks a :class:`~torrentkit.settings.Settings` enables, once per
session (the public API calls :func:`open_networks`; no face does this itself).

- Chord: the session joins the ring as a member on its listen port's number over UDP (the
  socket is bound together with the TCP listener, see :func:`torrentkit.net.listen_tcp_and_udp`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio

from torrentkit.discovery.base import DiscoveryNetwork, PeerSink, TorrentDiscovery
from torrentkit.discovery.chord.discovery import ChordDiscovery
from torrentkit.discovery.chord.driver import ChordDriver, ChordJoinError, open_chord_node
from torrentkit.discovery.chord.node import ChordConfig
from torrentkit.ids import InfoHash, PeerAddr
from torrentkit.net import DatagramEndpoint, Network
from torrentkit.settings import ChordSettings


class NetworkError(Exception):
    """A discovery network could not be joined; the message says which and why."""


class ChordNetwork:
    """The session's Chord ring membership."""

    name = "chord"

    def __init__(self, driver: ChordDriver) -> None:
        self.driver = driver

    def torrent_source(
        self, info_hash: InfoHash, *, port: int, sink: PeerSink, publish: bool
    ) -> TorrentDiscovery:
        return ChordDiscovery(
            self.driver, info_hash=info_hash, port=port, sink=sink, announce=publish
        )


@asynccontextmanager
async def open_chord(
    network: Network,
    host: str,
    port: int,
    settings: ChordSettings,
    *,
    endpoint: DatagramEndpoint | None = None,
) -> AsyncIterator[ChordNetwork]:
    """A ring member on UDP ``host:port`` (or ``endpoint``): joined through the first
    bootstrap node that answers, or the first node of a new ring when none is given."""
    config = ChordConfig(stabilize_interval=settings.stabilize_interval)
    ctx = open_chord_node(
        network, host, port, config=config, advertise=settings.advertise, endpoint=endpoint
    )
    async with ctx as chord:
        await _join(chord, settings.bootstrap)
        yield ChordNetwork(chord)


async def _join(chord: ChordDriver, bootstrap: Sequence[PeerAddr]) -> None:
    if not bootstrap:
        chord.create()
        return
    for i, addr in enumerate(bootstrap):
        try:
            await chord.join(addr)
            return
        except ChordJoinError as exc:
            if i == len(bootstrap) - 1:
                raise NetworkError(f"cannot join the Chord ring: {exc}") from None
    await trio.lowlevel.checkpoint()


__all__ = ["ChordNetwork", "DiscoveryNetwork", "NetworkError", "open_chord"]
