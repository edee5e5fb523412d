"""Immutable snapshots of the engine's state, for faces (the live UI, status lines, --json).

Faces read snapshots; they never touch the engine. ``Torrent.snapshot(now)`` builds one in
a few milliseconds (the piece map is summarised to a fixed number of cells with C-speed
counting), so a UI can take four a second without slowing the transfer it shows.
"""

from __future__ import annotations

from dataclasses import dataclass

from torrentkit.events import Event


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerSnapshot:
    addr: str
    client: str
    outgoing: bool
    am_choking: bool
    am_interested: bool
    peer_choking: bool
    peer_interested: bool
    optimistic: bool
    snubbed: bool
    down_rate: float  # bytes/s from them (rolling 20 s)
    up_rate: float  # bytes/s to them
    downloaded: int
    uploaded: int
    progress: float  # 0..1: the share of pieces the peer has
    connected_for: float  # seconds
    unchoked_seconds: float  # how long we kept it unchoked, in total
    peer_id: bytes = b""  # from its handshake (b"" for a web seed)


@dataclass(frozen=True, slots=True, kw_only=True)
class TorrentSnapshot:
    t: float  # seconds since the torrent started
    name: str
    info_hash: str
    total_size: int
    piece_length: int
    num_pieces: int
    pieces_have: int
    wanted_left: int  # bytes of wanted pieces still missing
    complete: bool
    error: str | None
    down_rate: float
    up_rate: float
    downloaded: int  # verified payload bytes this session
    uploaded: int
    ratio: float  # uploaded / total size
    eta: float | None  # seconds, None when unknown or complete
    peers: tuple[PeerSnapshot, ...]
    known_peers: int
    banned: int
    piece_map: tuple[tuple[float, float, float], ...]  # (have, in progress, availability)
    events: tuple[Event, ...]  # recent engine events, oldest first

    @property
    def progress(self) -> float:
        return self.pieces_have / self.num_pieces if self.num_pieces else 1.0
