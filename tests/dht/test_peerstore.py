"""The peer store's caps and expiry (docs/limits.md item 14), and BEP 51 samples."""

from __future__ import annotations

import random

from torrentkit.dht.peerstore import PeerStore
from torrentkit.ids import PeerAddr


def ih(i: int) -> bytes:
    return i.to_bytes(20, "big")


def test_caps_in_total_per_hash_and_per_ip() -> None:
    store = PeerStore(max_hashes=10, max_peers=5, max_per_ip=2, max_hashes_per_ip=3)
    # Per announcing IP: at most 3 info-hashes created, at most 2 ports under one.
    for i in range(10):
        store.add(ih(i), PeerAddr("1.0.0.1", 1000 + i), 0.0)
    assert len(store) == 3
    for port in range(10):
        store.add(ih(0), PeerAddr("1.0.0.1", 2000 + port), 0.0)
    assert len(store.peers(ih(0), 1.0, 100, random.Random(0))) == 2
    # Per info-hash: at most 5 peers, whoever they are.
    for i in range(20):
        store.add(ih(1), PeerAddr(f"2.0.0.{i}", 1), 0.0)
    assert len(store.peers(ih(1), 1.0, 100, random.Random(0))) == 5
    # In total: at most 10 info-hashes.
    for i in range(100, 200):
        store.add(ih(i), PeerAddr(f"3.0.{i}.1", 1), 0.0)
    assert len(store) == 10
    assert store.refused > 0
    # A peer already stored is refreshed, never refused.
    assert store.add(ih(1), PeerAddr("2.0.0.0", 1), 5.0)


def test_expiry_frees_the_caps() -> None:
    store = PeerStore(ttl=100.0, max_hashes=2, max_hashes_per_ip=1)
    assert store.add(ih(1), PeerAddr("1.0.0.1", 1), 0.0)
    assert not store.add(ih(2), PeerAddr("1.0.0.1", 1), 0.0)  # per-IP cap
    assert store.add(ih(1), PeerAddr("1.0.0.2", 1), 60.0)
    assert store.expire(101.0) == 0  # the second peer keeps it alive
    assert store.peers(ih(1), 101.0, 10, random.Random(0)) == [PeerAddr("1.0.0.2", 1)]
    assert store.expire(161.0) == 1 and len(store) == 0
    assert store.add(ih(2), PeerAddr("1.0.0.1", 1), 161.0)  # its quota came back


def test_noseed_and_samples() -> None:
    store = PeerStore()
    store.add(ih(1), PeerAddr("1.0.0.1", 1), 0.0, seed=True)
    store.add(ih(1), PeerAddr("1.0.0.2", 1), 0.0)
    rng = random.Random(1)
    assert store.peers(ih(1), 1.0, 10, rng, noseed=True) == [PeerAddr("1.0.0.2", 1)]
    for i in range(2, 60):
        store.add(ih(i), PeerAddr(f"1.0.{i}.1", 1), 0.0)
    sample = store.sample(20, rng)
    assert len(sample) == 20 == len(set(sample)) and set(sample) <= set(store)
