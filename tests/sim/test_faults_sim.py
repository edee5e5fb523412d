"""Misbehaving peers in a simulated swarm (docs/limits.md items 6, 7): the liar is banned,
the vanished peer's requests go elsewhere, and every copy still ends correct."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from torrentkit.engine.storage import MemoryStorage
from torrentkit.events import HashFailed, PeerBanned, PeerDisconnected, Snubbed
from torrentkit.testing.network import SimNetwork
from torrentkit.testing.swarm import SimTracker, make_torrent, payload_of, setup_swarm

KIB = 1024


class LyingStorage(MemoryStorage):
    """Claims every piece, and serves blocks with one byte flipped (a corrupting peer)."""

    async def recheck(self, progress: object = None, *, only: object = None) -> list[bool]:
        return [True] * self.info.num_pieces

    async def read_block(self, index: int, begin: int, length: int) -> bytes:
        data = bytearray(await super().read_block(index, begin, length))
        data[len(data) // 2] ^= 0x5A
        return bytes(data)


async def test_a_lying_peer_is_banned_and_the_file_ends_correct(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rng = random.Random(11)
    info, payload = make_torrent(rng, 1024 * KIB, 32 * KIB)
    net = SimNetwork(rng, latency=0.01)
    tracker = SimTracker(rng)
    with trio.fail_after(3600):
        async with trio.open_nursery() as nursery:
            # The liar and an honest seed, both fast; then three leechers.
            liar = (
                await setup_swarm(
                    nursery,
                    net,
                    info,
                    payload,
                    seed_rates=[64 * KIB],
                    leecher_rates=[],
                    rng=rng,
                    tracker=tracker,
                )
            )[0]
            liar.storage.__class__ = LyingStorage  # from now on it serves corrupt blocks
            honest = await setup_swarm(
                nursery,
                net,
                info,
                payload,
                seed_rates=[64 * KIB],
                leecher_rates=[],
                rng=rng,
                tracker=tracker,
            )
            await trio.sleep(1)
            leechers = await setup_swarm(
                nursery,
                net,
                info,
                b"",
                seed_rates=[],
                leecher_rates=[16 * KIB] * 3,
                rng=rng,
                tracker=tracker,
            )
            for node in leechers:
                await node.torrent.complete.wait()
            nursery.cancel_scope.cancel()
    assert honest
    liar_addr = liar.session.address
    for node in leechers:
        assert payload_of(node.storage, info) == payload, node.name
        failed = [e for e in node.events if isinstance(e, HashFailed)]
        banned = [e for e in node.events if isinstance(e, PeerBanned)]
        assert failed, f"{node.name} never received a corrupt piece"
        assert liar_addr in node.torrent.banned_addrs, node.name
        assert [e.peer for e in banned] == [str(liar_addr)]
        # Only the liar: the honest seed shared failed pieces with it and was not banned.
        assert len(node.torrent.banned_addrs) == 1


@pytest.mark.parametrize("how", ["silent", "gone"])
async def test_a_peer_that_vanishes_mid_piece(
    autojump_clock: trio.testing.MockClock, how: str
) -> None:
    rng = random.Random(5)
    # Large enough that the remaining seed needs longer than the 60 s snub timeout.
    info, payload = make_torrent(rng, 4096 * KIB, 64 * KIB)
    net = SimNetwork(rng, latency=0.01)
    tracker = SimTracker(rng)
    with trio.fail_after(3600):
        async with trio.open_nursery() as nursery:
            seeds = await setup_swarm(
                nursery,
                net,
                info,
                payload,
                seed_rates=[32 * KIB, 32 * KIB],
                leecher_rates=[],
                rng=rng,
                tracker=tracker,
                start_gap=0,
            )
            (leecher,) = await setup_swarm(
                nursery,
                net,
                info,
                b"",
                seed_rates=[],
                leecher_rates=[8 * KIB],
                rng=rng,
                tracker=tracker,
            )
            vanishing = seeds[0]
            # Wait until the leecher is mid-way, with blocks in flight from the seed.
            while leecher.torrent.picker.num_have < info.num_pieces // 3:
                await trio.sleep(0.5)
            in_flight = [
                link
                for link in leecher.torrent.links
                if link.addr == vanishing.session.address and link.conn.outstanding_requests
            ]
            assert in_flight, "the seed that vanishes had no requests outstanding"
            if how == "silent":
                # Still connected but sends nothing more: a black hole (snub, then re-issue).
                net.set_upload_rate(vanishing.host, 0.001)
            else:
                vanishing.torrent.storage_failed("pulled the plug")  # closes its links
            vanished_at = trio.current_time()
            await leecher.torrent.complete.wait()
            took = trio.current_time() - vanished_at
            nursery.cancel_scope.cancel()
    assert payload_of(leecher.storage, info) == payload
    kinds = {e.kind for e in leecher.events}
    if how == "silent":
        assert Snubbed.kind in kinds
    else:
        assert PeerDisconnected.kind in kinds
    # The other seed alone needs about 4 MiB * 2/3 / 32 KiB/s = 85 s; the snub timeout
    # (60 s) is the worst extra wait.
    assert took < 85 + 60 + 10, took
