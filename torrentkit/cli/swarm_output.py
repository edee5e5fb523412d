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
from torrentkit.events import (
    Event,
    MetadataReceived,
    PeerBanned,
    PeerDisconnected,
    TorrentCompleted,
)
from torrentkit.text import format_duration, format_rate


def line(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


class RunView:
    """One run's torrents, its output mode, and what the events told (bans, completion
    times) for the summary. ``on_event`` is the session subscriber."""

    def __init__(self, *, json: bool, seed_after: bool = False) -> None:
        self.json = json
        self.seed_after = seed_after  # the run goes on seeding once complete
        self.handles: list[TorrentHandle] = []
        self.banned: dict[str, set[str]] = {}
        self.completed: dict[str, float] = {}
        #: per torrent, the peers that left: their summary rows, by address
        self.departed: dict[str, dict[str, dict[str, Any]]] = {}
        self.start = trio.current_time()

    def on_event(self, event: Event) -> None:
        if isinstance(event, PeerBanned):
            self.banned.setdefault(event.info_hash, set()).add(event.peer)
        elif isinstance(event, TorrentCompleted):
            self.completed[event.info_hash] = event.seconds
        elif isinstance(event, PeerDisconnected):
            self.departed.setdefault(event.info_hash, {})[event.peer] = _peer_row(
                event.peer, event.client, event.downloaded, event.uploaded, event.unchoked_seconds
            )
        if self.json:
            emit_json(event.to_json())
        elif isinstance(event, MetadataReceived):
            line(f"{safe_text(event.name)}: metadata received ({event.size} bytes)")
        elif isinstance(event, TorrentCompleted):
            self._say_complete(event)

    def elapsed(self) -> float:
        return round(trio.current_time() - self.start, 3)

    def _say_complete(self, event: TorrentCompleted) -> None:
        """The line that says a download is done, where it is, and whether seeding starts."""
        for handle in self.handles:
            if handle.info_hash.hex() == event.info_hash:
                path = safe_text(str(handle.save_path / handle.name))
                took = format_duration(event.seconds)
                line(f"{safe_text(handle.name)}: complete in {took}: saved to {path}")
                if self.seed_after:
                    line(f"{safe_text(handle.name)}: seeding")

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
                    "peers": self._peers(s.info_hash, snap),
                }
            )
        return {"event": "summary", "t": round(now - self.start, 3), "torrents": torrents}

    def _peers(self, info_hash: str, snap: TorrentSnapshot | None) -> list[dict[str, Any]]:
        """Every peer of the run: the connected ones now, then those that left."""
        rows = {
            p.addr: _peer_row(p.addr, p.client, p.downloaded, p.uploaded, p.unchoked_seconds)
            for p in (snap.peers if snap is not None else ())
        }
        for addr, row in self.departed.get(info_hash, {}).items():
            rows.setdefault(addr, row)
        return list(rows.values())


def _peer_row(
    addr: str, client: str, downloaded: int, uploaded: int, unchoked: float
) -> dict[str, Any]:
    return {
        "peer": addr,
        "client": client,
        "downloaded": downloaded,
        "uploaded": uploaded,
        "unchoked_seconds": round(unchoked, 1),
    }


def status_line(s: TorrentStatus) -> str:
    """``name: downloading 120/400 pieces (30.0%), 3 peers, down 1.2 MiB/s, up 300 KiB/s,
    ETA 1m05`` (binary units, as the limits are given)."""
    name = safe_text(s.name[:40])
    if s.state not in ("downloading", "seeding"):
        return f"{name}: {s.state}"
    peers = f"{s.num_peers} peer{'' if s.num_peers == 1 else 's'}"
    text = (
        f"{name}: {s.state} {s.pieces}/{s.num_pieces} pieces "
        f"({100.0 * s.pieces / s.num_pieces:.1f}%), {peers}, "
        f"down {format_rate(s.download_rate)}, up {format_rate(s.upload_rate)}"
    )
    if s.state == "downloading":
        text += f", ETA {format_duration(s.eta) if s.eta is not None else '?'}"
    return text


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
