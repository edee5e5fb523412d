"""Chord as a discovery network: the ring is the tracker (trackerless swarms).

One :class:`~torrentkit.discovery.chord.driver.ChordDriver` per process (the node is a member
of the ring, as mainline DHT clients are), and one :class:`ChordRing` on top of it: the ring
as a :class:`~torrentkit.discovery.base.Discovery` (docs/design.md's join / publish /
search).

- join: create the ring, or join it through the first bootstrap node that answers;
- publish: store our BitTorrent port under the info-hash at the key's owner (and its
  replicas);
- search: ask the ring for the peers stored under the info-hash;
- withdraw: nothing to send -- the ring has no delete; our value expires with its TTL
  (30 minutes by default) once we stop re-announcing it.

A torrent's presence on the ring (:meth:`ChordRing.torrent_source`) is the one
:class:`~torrentkit.discovery.base.SearchLoop`: searches at 1, 2, 4, 8 s then every 30 s,
re-announces every ``announce_interval`` (:data:`ANNOUNCE_INTERVAL` by default; well inside
the TTL), and our own address is never fed to the engine. Private torrents (BEP 27) are
never announced to the ring: :meth:`ChordRing.torrent_source` refuses to make a presence for
one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import trio

from torrentkit.discovery.base import Listing, NetworkError, PeerSink, SearchLoop
from torrentkit.discovery.chord.driver import ChordDriver, ChordJoinError
from torrentkit.errors import LocalProtocolError
from torrentkit.ids import InfoHash, PeerAddr

log = logging.getLogger(__name__)

#: Re-announce this often (the ring keeps a value 30 minutes by default).
ANNOUNCE_INTERVAL = 600.0


class ChordRing:
    """The session's membership of a Chord ring (a :class:`~..base.Discovery` and a
    :class:`~..base.DiscoveryNetwork`).

    ``bootstrap``: the ring nodes :meth:`join` tries, in order; none: :meth:`join` starts a
    new ring with this node alone on it.
    """

    name = "chord"

    def __init__(
        self,
        driver: ChordDriver,
        *,
        bootstrap: Sequence[PeerAddr] = (),
        announce_interval: float = ANNOUNCE_INTERVAL,
    ) -> None:
        self.driver = driver
        self.bootstrap = tuple(bootstrap)
        self.announce_interval = announce_interval
        self.announces = 0
        self.searches = 0

    # -- Discovery ----------------------------------------------------------------------------

    async def join(self) -> None:
        """Join through the first bootstrap node that answers (NetworkError when none does),
        or create a new ring when there is none."""
        if not self.bootstrap:
            self.driver.create()
            await trio.lowlevel.checkpoint()
            return
        for addr in self.bootstrap:
            try:
                await self.driver.join(addr)
                return
            except ChordJoinError as exc:
                log.info("chord: %s", exc)
        raise NetworkError(
            "cannot join the Chord ring through " + ", ".join(str(a) for a in self.bootstrap)
        )

    async def publish(self, listing: Listing, port: int) -> None:
        """Announce (our IP, ``port``) under the info-hash (NetworkError when the key's owner
        could not be reached; the caller retries)."""
        done = await self.driver.announce(bytes(listing.info_hash), port)
        self.announces += 1
        if not done.ok:
            raise NetworkError(f"chord announce of {listing.info_hash.hex()} failed")

    def withdraw(self, info_hash: InfoHash) -> None:
        """Nothing to send: the ring has no delete; the value expires with its TTL."""

    async def search(self, listing: Listing) -> Sequence[PeerAddr]:
        """The peers the ring stores under the info-hash (NetworkError when the lookup failed
        and found nobody)."""
        done = await self.driver.get_peers(bytes(listing.info_hash))
        self.searches += 1
        if not done.ok and not done.peers:
            raise NetworkError(f"chord get_peers of {listing.info_hash.hex()} failed")
        return done.peers

    # -- DiscoveryNetwork ---------------------------------------------------------------------

    def torrent_source(
        self,
        info_hash: InfoHash,
        *,
        port: int,
        sink: PeerSink,
        publish: bool,
        private: bool = False,
    ) -> SearchLoop:
        """One torrent's presence on the ring: announced when ``publish`` (a magnet still
        fetching its metadata only searches), searched for until cancelled; our own address
        (``port`` on the address the ring knows us by) is never fed to ``sink``."""
        if private:
            raise LocalProtocolError("private torrents are never announced to a DHT (BEP 27)")
        ours = PeerAddr(self.driver.address.host, port)
        return SearchLoop(
            self,
            Listing(info_hash=InfoHash(bytes(info_hash))),
            port=port,
            sink=sink,
            publish=publish,
            exclude=[ours],
            republish=self.announce_interval,
        )
