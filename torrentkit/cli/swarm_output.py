"""What a ``download`` / ``seed`` run shows (:mod:`torrentkit.cli.swarm` runs it): the JSON
event stream, plain status lines, the closing ``summary`` event and the dashboard's view of
the running torrents. It reads handles, statuses, snapshots and events, nothing else."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, overload

import trio

from torrentkit.api import TorrentHandle, TorrentStatus
from torrentkit.cli.common import emit_json, safe_text
from torrentkit.engine.snapshot import TorrentSnapshot
from torrentkit.events import Event, MetadataReceived, PeerBanned, TorrentCompleted


def line(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


class RunView:
    """One run's torrents, its output mode, and what the events told (bans, completion
    times) for the summary. ``on_event`` is the session subscriber."""

    def __init__(self, *, json: bool) -> None:
        self.json = json
        self.handles: list[TorrentHandle] = []
        self.banned: dict[str, set[str]] = {}
        self.completed: dict[str, float] = {}
        self.start = trio.current_time()

    def on_event(self, event: Event) -> None:
        if isinstance(event, PeerBanned):
            self.banned.setdefault(event.info_hash, set()).add(event.peer)
        elif isinstance(event, TorrentCompleted):
            self.completed[event.info_hash] = event.seconds
        if self.json:
            emit_json(event.to_json())
        elif isinstance(event, MetadataReceived):
            line(f"{safe_text(event.name)}: metadata received ({event.size} bytes)")

    def summary(self) -> dict[str, Any]:
        """The closing ``summary`` event: per torrent, its totals and what each peer did."""
        now = trio.current_time()
        torrents = []
        for handle in self.handles:
            meta = handle.metainfo
            if meta is None:  # a magnet whose metadata never came
                continue
            s, snap = handle.status(), handle.snapshot()
            seconds = snap.t if snap is not None else now - self.start
            torrents.append(
                {
                    "name": s.name,
                    "info_hash": s.info_hash,
                    "complete": s.is_seeding,
                    "pieces": s.pieces,
                    "num_pieces": s.num_pieces,
                    "downloaded": s.downloaded,
                    "uploaded": s.uploaded,
                    "redundant": s.redundant,
                    "ratio": round(s.uploaded / meta.info.total_length, 3),
                    "seconds": round(self.completed.get(s.info_hash, seconds), 3),
                    "banned": sorted(self.banned.get(s.info_hash, ())),
                    "peers": [
                        {
                            "peer": p.addr,
                            "client": p.client,
                            "downloaded": p.downloaded,
                            "uploaded": p.uploaded,
                            "unchoked_seconds": round(p.unchoked_seconds, 1),
                        }
                        for p in (snap.peers if snap is not None else ())
                    ],
                }
            )
        return {"event": "summary", "t": round(now - self.start, 3), "torrents": torrents}


def status_line(s: TorrentStatus) -> str:
    name = safe_text(s.name[:40])
    if s.state not in ("downloading", "seeding"):
        return f"{name}: {s.state}"
    return (
        f"{name}: {s.pieces}/{s.num_pieces} pieces ({100.0 * s.pieces / s.num_pieces:.1f}%), "
        f"{s.num_peers} peers, down {s.download_rate / 1e6:.1f} MB/s, "
        f"up {s.upload_rate / 1e6:.1f} MB/s"
    )


class HandleSnapshots(Sequence[TorrentSnapshot]):
    """The dashboard's view: the running torrents; a snapshot is built only for the one shown
    (the dashboard reads ``len()`` and the selected item each frame)."""

    def __init__(self, handles: Sequence[TorrentHandle]) -> None:
        self._handles = [h for h in handles if h.status().state in ("downloading", "seeding")]

    def __len__(self) -> int:
        return len(self._handles)

    @overload
    def __getitem__(self, index: int) -> TorrentSnapshot: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[TorrentSnapshot]: ...
    def __getitem__(self, index: int | slice) -> TorrentSnapshot | Sequence[TorrentSnapshot]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        snap = self._handles[index].snapshot()
        assert snap is not None  # running torrents have one
        return snap
