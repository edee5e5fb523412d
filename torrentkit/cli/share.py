"""``torrentkit share DIR --discovery napster|gnutella|kazaa --bootstrap ADDR``: publish a
folder's files and seed them.

Every regular file below DIR (symlinks and empty files skipped) becomes its own public
single-file torrent, made in memory at start (nothing is written into DIR; resume state goes
to the state folder as for ``seed``). One session seeds them all and publishes them
(:mod:`torrentkit.discovery.networks`):

- ``napster``: joined to the index at ``--bootstrap URL`` and kept published (heartbeats; a
  restarted index gets everything again); ``leave`` on the way out.
- ``gnutella`` / ``kazaa``: an overlay node on the session's own listen port answers queries
  for the files with the session's address (``--supernode`` / ``--capacity``: a KaZaA
  supernode; otherwise a KaZaA sharer is a leaf that uploads its list to its supernodes).

The first stdout line is ``listening on HOST:PORT`` (the BitTorrent port, which overlay links
share); then one line per file on stderr (``info-hash  size  name``), and a line when the
index or the overlay has our files. SIGTERM stops with exit 0, Ctrl-C with 130.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import trio

from torrentkit.api import Session
from torrentkit.cli.common import UsageError, parse_size
from torrentkit.cli.p2p import (
    SEARCH_MODES,
    add_discovery_arguments,
    add_role_arguments,
    check_port,
    network_settings,
    require_mode,
)
from torrentkit.cli.swarm import AddSpec, RunPlan, run_plan
from torrentkit.cli.swarm_flags import (
    add_encryption_argument,
    add_lsd_argument,
    add_max_peers,
    settings_from_args,
    want_ui,
)
from torrentkit.discovery.gnutella.session_port import flood_links
from torrentkit.discovery.networks import NapsterNetwork, OverlayNetwork
from torrentkit.errors import MetainfoError, StorageError
from torrentkit.maketorrent import collect_files, make_torrent
from torrentkit.metainfo import Metainfo, parse_torrent

KIB = 1024
#: Most files one share serves (one torrent each, all in one session).
MAX_FILES = 1000


def register(sub: Any) -> None:
    p = sub.add_parser("share", help="make torrents of a folder's files, seed and publish them")
    p.add_argument("dir", metavar="DIR", help="the folder whose files to share")
    add_discovery_arguments(p, default=None, offered=SEARCH_MODES)
    add_role_arguments(p)
    p.add_argument("--bind", default="0.0.0.0", metavar="HOST", help="listen address")
    p.add_argument("--port", type=int, default=0, metavar="N", help="listen port (0 = any)")
    p.add_argument("--piece-size", metavar="SIZE", help="piece size (default: per file size)")
    p.add_argument("--up-limit", default="0", metavar="RATE", help="upload limit, e.g. 500K")
    add_max_peers(p)
    add_lsd_argument(p)
    add_encryption_argument(p)
    p.add_argument("--json", action="store_true", help="JSON events on stdout")
    p.add_argument("--no-ui", action="store_true", help="plain status lines even on a TTY")
    p.add_argument("--state-dir", metavar="DIR", help="resume state folder")
    p.set_defaults(func=run, no_tracker=True)


def run(args: argparse.Namespace) -> int:
    require_mode(args.discovery, SEARCH_MODES, "share")
    root = Path(args.dir)
    if not root.exists():
        raise UsageError(f"{root}: no such folder")
    if not root.is_dir():
        raise UsageError(f"{root}: not a folder")
    check_port(args.port)
    if not 0 < args.max_peers <= 1000:
        raise UsageError("--max-peers: must be 1-1000")
    parse_size(args.up_limit, "--up-limit")
    piece = parse_size(args.piece_size, "--piece-size") if args.piece_size else None
    if piece is not None and (piece < 16 * KIB or piece & (piece - 1)):
        raise UsageError("--piece-size: must be a power of two, at least 16K")
    settings = settings_from_args(args, **network_settings(args))
    metas = make_torrents(root, piece)
    plan = RunPlan(
        settings=settings,
        adds=[AddSpec(source=meta, save_path=path.parent) for path, meta in metas.items()],
        json=args.json,
        ui=want_ui(args),
        seed_after=True,
        require_complete=True,
    )

    async def extra(session: Session) -> None:
        await _report_published(session, len(metas))

    return run_plan(plan, extra=extra)


def make_torrents(root: Path, piece_length: int | None) -> dict[Path, Metainfo]:
    """A public single-file torrent per regular, non-empty file below ``root`` (one per
    info-hash); files whose names a torrent cannot carry are skipped with a warning."""
    files = [f for f in collect_files(root) if f.length > 0]
    if not files:
        raise UsageError(f"{root}: no files to share (empty files and symlinks are skipped)")
    if len(files) > MAX_FILES:
        raise UsageError(f"{root}: {len(files)} files; share at most {MAX_FILES} at a time")
    total = sum(f.length for f in files)
    _note(f"hashing {len(files)} file{'s' if len(files) != 1 else ''} ({total / 2**20:.1f} MiB)")
    out: dict[Path, Metainfo] = {}
    seen: set[bytes] = set()
    for f in files:
        path = root.joinpath(*f.path)
        try:
            meta = parse_torrent(make_torrent(path, piece_length=piece_length, private=False))
        except (MetainfoError, StorageError) as exc:
            _note(f"warning: skipping {'/'.join(f.path)!r}: {exc}")
            continue
        except OSError as exc:
            _note(f"warning: skipping {'/'.join(f.path)!r}: {exc.strerror or exc}")
            continue
        if meta.info_hash in seen:
            continue  # the same name and bytes twice: one torrent serves both
        seen.add(meta.info_hash)
        out[path] = meta
        _note(f"{meta.info_hash.hex()}  {meta.info.total_length:>12}  {meta.name}")
    if not out:
        raise UsageError(f"{root}: none of its files can be shared")
    return out


async def _report_published(session: Session, count: int) -> None:
    """A line once the index or the overlay has our files (the session publishes them)."""
    # The index or overlay (with --lsd, LSD is a network of the session too).
    net = next(n for n in session.networks if isinstance(n, NapsterNetwork | OverlayNetwork))
    if isinstance(net, NapsterNetwork):
        warned = False
        while True:
            status = net.publisher.status
            if status.joined and status.published >= count:
                _note(f"published {_files(status.published)} on the napster index {net.url} "
                      f"as {status.peer}")  # fmt: skip
                return
            if status.last_error is not None and not warned:
                warned = True
                _note(f"warning: napster index {net.url}: {status.last_error} (retrying)")
            await trio.sleep(0.1)
    assert isinstance(net, OverlayNetwork)
    what = f"{net.name} {net.node.role.name.lower()}"
    if not net.bootstrap:
        _note(f"{what}: waiting for other nodes to join; sharing {_files(count)}")
    while not flood_links(net.node):
        await trio.sleep(0.1)
    _note(f"{what}: joined the overlay ({flood_links(net.node)} neighbours); "
          f"sharing {_files(count)}")  # fmt: skip


def _files(n: int) -> str:
    return f"{n} file{'s' if n != 1 else ''}"


def _note(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
