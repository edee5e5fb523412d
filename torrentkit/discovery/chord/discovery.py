"""Chord as a torrent's discovery source: the ring is the tracker (trackerless swarms).

One :class:`~torrentkit.discovery.chord.driver.ChordDriver` per process (the node is a member
of the ring, as mainline DHT clients are); one :class:`ChordDiscovery` per torrent on top of
it. It announces our BitTorrent port under the info-hash at the key's owner (and its
replicas) and asks the ring for the other peers stored there, feeding them to the engine.
Announces repeat well inside the stored values' TTL. Private torrents (BEP 27) are never
announced to the ring: :class:`ChordDiscovery` refuses to be made for one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import trio

from torrentkit.discovery.base import PeerSink
from torrentkit.discovery.chord.driver import ChordDriver
from torrentkit.errors import LocalProtocolError
from torrentkit.ids import PeerAddr

log = logging.getLogger(__name__)

#: Ask the ring for peers this often at first, then every ``SEARCH_INTERVAL``.
FIRST_SEARCHES = (1.0, 2.0, 4.0, 8.0)
SEARCH_INTERVAL = 30.0
#: Re-announce this often (the ring keeps a value 30 minutes by default).
ANNOUNCE_INTERVAL = 600.0


class ChordDiscovery:
    """One torrent's presence on the Chord ring (a TorrentDiscovery)."""

    name = "chord"

    def __init__(
        self,
        chord: ChordDriver,
        *,
        info_hash: bytes,
        port: int,
        sink: PeerSink,
        private: bool = False,
        search_interval: float = SEARCH_INTERVAL,
        announce: bool = True,
    ) -> None:
        if private:
            raise LocalProtocolError("private torrents are never announced to a DHT (BEP 27)")
        self.chord = chord
        self.info_hash = bytes(info_hash)
        self.port = port
        self._sink = sink
        self._search_interval = search_interval
        self._announce = announce
        self._wake = trio.Event()
        self.announces = 0
        self.searches = 0
        self.peers_found = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with trio.open_nursery() as nursery:
            if self._announce:  # a magnet still fetching its metadata only searches
                nursery.start_soon(self._announce_loop)
            await self._search_loop()

    def completed(self) -> None:
        self._wake.set()  # nothing to tell the ring; look for peers to serve at once

    async def _announce_loop(self) -> None:
        while True:
            done = await self.chord.announce(self.info_hash, self.port)
            self.announces += 1
            if not done.ok:
                log.info("chord announce of %s failed; retrying soon", self.info_hash.hex())
                await trio.sleep(FIRST_SEARCHES[1])
                continue
            await trio.sleep(ANNOUNCE_INTERVAL)

    async def _search_loop(self) -> None:
        delays: Sequence[float] = FIRST_SEARCHES
        i = 0
        while True:
            done = await self.chord.get_peers(self.info_hash)
            self.searches += 1
            ours = self.chord.address
            peers = [p for p in done.peers if p != PeerAddr(ours.host, self.port)]
            if peers:
                self.peers_found += len(peers)
                self._sink(peers, self.name)
            delay = delays[i] if i < len(delays) else self._search_interval
            i += 1
            with trio.move_on_after(delay):
                await self._wake.wait()
            self._wake = trio.Event()


async def find_peers(chord: ChordDriver, info_hash: bytes, sink: PeerSink) -> None:
    """For a magnet: keep asking the ring for the info-hash's peers until cancelled."""
    delays = (*FIRST_SEARCHES, SEARCH_INTERVAL)
    i = 0
    while True:
        done = await chord.get_peers(info_hash)
        if done.peers:
            sink(list(done.peers), "chord")
        await trio.sleep(delays[min(i, len(delays) - 1)])
        i += 1
