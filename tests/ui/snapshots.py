"""Hand-built snapshots for the dashboard tests: every field set explicitly, no engine."""

from __future__ import annotations

from typing import Any

from torrentkit.engine.snapshot import PeerSnapshot, TorrentSnapshot

KIB = 1024


def peer(addr: str, **fields: Any) -> PeerSnapshot:
    base: dict[str, Any] = {
        "addr": addr,
        "client": "libtorrent 2.1.1",
        "outgoing": True,
        "am_choking": True,
        "am_interested": False,
        "peer_choking": True,
        "peer_interested": False,
        "optimistic": False,
        "snubbed": False,
        "down_rate": 0.0,
        "up_rate": 0.0,
        "downloaded": 0,
        "uploaded": 0,
        "progress": 0.0,
        "connected_for": 30.0,
        "unchoked_seconds": 0.0,
    }
    base.update(fields)
    return PeerSnapshot(**base)


def torrent(peers: tuple[PeerSnapshot, ...] = (), **fields: Any) -> TorrentSnapshot:
    num = 400
    base: dict[str, Any] = {
        "t": 42.0,
        "name": "ubuntu.iso",
        "info_hash": "ab" * 20,
        "total_size": num * 64 * KIB,
        "piece_length": 64 * KIB,
        "num_pieces": num,
        "pieces_have": 180,
        "wanted_left": 220 * 64 * KIB,
        "complete": False,
        "error": None,
        "down_rate": sum(p.down_rate for p in peers),
        "up_rate": sum(p.up_rate for p in peers),
        "downloaded": 180 * 64 * KIB,
        "uploaded": 30 * 64 * KIB,
        "ratio": 30 / num,
        "eta": 65.0,
        "peers": peers,
        "known_peers": len(peers) + 3,
        "banned": 0,
        "piece_map": tuple(
            (1.0 if i < 100 else 0.0, 0.5 if 100 <= i < 110 else 0.0, float(i % 5))
            for i in range(256)
        ),
        "events": (),
    }
    base.update(fields)
    return TorrentSnapshot(**base)


def many_peers(n: int) -> tuple[PeerSnapshot, ...]:
    """``n`` peers with distinct down rates (peer k at 1000 * (n - k) B/s)."""
    return tuple(
        peer(
            f"127.0.0.1:{6000 + k}",
            down_rate=1000.0 * (n - k),
            am_interested=True,
            peer_choking=k % 3 == 0,
        )
        for k in range(n)
    )
