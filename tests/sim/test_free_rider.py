"""A session with no upload slots (``upload_slots=0, optimistic_slots=0``: the demo's free
rider) downloads but never uploads a byte, and its peers still complete."""

from __future__ import annotations

import random

import trio
import trio.testing

from torrentkit.engine.torrent import TorrentOptions
from torrentkit.testing.network import SimNetwork
from torrentkit.testing.swarm import make_torrent, payload_of, setup_swarm

KIB = 1024


async def test_a_free_rider_downloads_and_never_uploads(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rng = random.Random(14)
    info, payload = make_torrent(rng, 512 * KIB, 32 * KIB)
    net = SimNetwork(rng, latency=0.01)
    rider = TorrentOptions(upload_slots=0, optimistic_slots=0, rechoke_interval=2.0)
    honest = TorrentOptions(rechoke_interval=2.0)
    with trio.fail_after(3600):
        async with trio.open_nursery() as nursery:
            nodes = await setup_swarm(
                nursery, net, info, payload,
                seed_rates=[64 * KIB], leecher_rates=[32 * KIB] * 4, rng=rng,
                options=honest, leecher_options=[honest, honest, honest, rider],
            )  # fmt: skip
            leechers = [n for n in nodes if not n.seed]
            for node in leechers:
                await node.torrent.complete.wait()
            nursery.cancel_scope.cancel()
    *others, free_rider = leechers
    assert free_rider.torrent.choker.slots == free_rider.torrent.choker.optimistic_slots == 0
    assert free_rider.torrent.uploaded == 0
    assert all(n.torrent.uploaded > 0 for n in others)
    for node in leechers:
        assert payload_of(node.storage, info) == payload, node.name


def test_settings_take_no_upload_slots_and_check_the_optimistic_ones() -> None:
    from torrentkit.settings import Settings, SettingsError

    s = Settings(upload_slots=0, optimistic_slots=0)
    assert (s.upload_slots, s.optimistic_slots) == (0, 0)
    for bad in (-1, 101):
        try:
            Settings(optimistic_slots=bad)
        except SettingsError as exc:
            assert "optimistic_slots" in str(exc)
        else:
            raise AssertionError(f"optimistic_slots={bad} accepted")
