"""torrentkit: a BitTorrent-compatible peer-to-peer client, tracker and P2P discovery lab.

The public API, for trio programs::

    import torrentkit

    async with torrentkit.open_session(torrentkit.Settings(listen="127.0.0.1:0")) as session:
        handle = await session.add("file.torrent", save_path="downloads")
        await handle.wait_complete()
        print(handle.status().progress)

and, for scripts, the blocking ``torrentkit.download(source, save_path)``. Names are loaded
on first use, so ``import torrentkit`` stays cheap for the command line.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from torrentkit import events
    from torrentkit.api import (
        DuplicateTorrent,
        EventStream,
        Session,
        SessionError,
        TorrentFailed,
        TorrentHandle,
        TorrentStatus,
        download,
        open_session,
    )
    from torrentkit.errors import MetainfoError
    from torrentkit.maketorrent import make_torrent
    from torrentkit.metainfo import Magnet, Metainfo
    from torrentkit.settings import (
        ChordSettings,
        DhtSettings,
        NapsterSettings,
        OverlaySettings,
        Settings,
        SettingsError,
    )

_LAZY = {
    "DuplicateTorrent": "torrentkit.api",
    "EventStream": "torrentkit.api",
    "Session": "torrentkit.api",
    "SessionError": "torrentkit.api",
    "TorrentFailed": "torrentkit.api",
    "TorrentHandle": "torrentkit.api",
    "TorrentStatus": "torrentkit.api",
    "download": "torrentkit.api",
    "open_session": "torrentkit.api",
    "MetainfoError": "torrentkit.errors",
    "make_torrent": "torrentkit.maketorrent",
    "Magnet": "torrentkit.metainfo",
    "Metainfo": "torrentkit.metainfo",
    "ChordSettings": "torrentkit.settings",
    "DhtSettings": "torrentkit.settings",
    "NapsterSettings": "torrentkit.settings",
    "OverlaySettings": "torrentkit.settings",
    "Settings": "torrentkit.settings",
    "SettingsError": "torrentkit.settings",
}


def __getattr__(name: str) -> Any:
    if name == "events":
        return importlib.import_module("torrentkit.events")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'torrentkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY, "events"])


__all__ = [
    "ChordSettings",
    "DhtSettings",
    "DuplicateTorrent",
    "EventStream",
    "Magnet",
    "Metainfo",
    "MetainfoError",
    "NapsterSettings",
    "OverlaySettings",
    "Session",
    "SessionError",
    "Settings",
    "SettingsError",
    "TorrentFailed",
    "TorrentHandle",
    "TorrentStatus",
    "__version__",
    "download",
    "events",
    "make_torrent",
    "open_session",
]
