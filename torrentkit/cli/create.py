"""``torrentkit create PATH -o FILE``: make a .torrent from a file or folder."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

from torrentkit.cli.common import EXIT_OK, UsageError, byte_progress, parse_size
from torrentkit.errors import StorageError
from torrentkit.maketorrent import make_torrent
from torrentkit.metainfo import BLOCK_SIZE, MAX_PIECE_LENGTH, parse_torrent


def register(sub: Any) -> None:
    p = sub.add_parser("create", help="make a .torrent from a file or folder")
    p.add_argument("path", metavar="PATH", help="file or folder to share")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the .torrent to write")
    p.add_argument(
        "-t",
        "--tracker",
        action="append",
        default=[],
        metavar="URL[,URL]",
        help="announce URL; each -t is a tier, comma-separated URLs share one tier",
    )
    p.add_argument("--piece-size", metavar="SIZE", help="e.g. 256K, 1M (default: automatic)")
    p.add_argument("--private", action="store_true", help="set the private flag (BEP 27)")
    p.add_argument("--comment", metavar="TEXT")
    p.add_argument("--web-seed", action="append", default=[], metavar="URL", help="url-list")
    p.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    p.set_defaults(func=run)


def _piece_size(text: str | None) -> int | None:
    if text is None:
        return None
    size = parse_size(text, "--piece-size")
    if size < BLOCK_SIZE or size > MAX_PIECE_LENGTH or size & (size - 1):
        raise UsageError(f"--piece-size: must be a power of two from 16K to 512M, got {text!r}")
    return size


def run(args: argparse.Namespace) -> int:
    src = Path(args.path)
    if not src.exists():
        raise UsageError(f"{src}: no such file or folder")
    out = Path(args.output)
    if out.is_dir():
        raise UsageError(f"{out}: is a folder; -o names the .torrent file to write")
    if out.exists() and not args.force:
        raise UsageError(f"{out}: already exists (use --force to overwrite)")
    if not out.parent.is_dir():
        raise UsageError(f"{out.parent}: no such folder")
    tiers = [[u.strip() for u in t.split(",") if u.strip()] for t in args.tracker]
    for tier in tiers:
        for url in tier:
            if not url.startswith(("http://", "https://", "udp://")):
                raise UsageError(f"-t: not an http(s) or udp tracker URL: {url!r}")
    piece_length = _piece_size(args.piece_size)

    # The output's folder must take a file before the hashing starts (docs/cli.md: a file
    # that cannot be written where the command starts is exit 2).
    try:
        fd, tmp = tempfile.mkstemp(prefix=".torrentkit-", dir=out.parent)
    except OSError as exc:
        raise UsageError(f"{out}: cannot write here: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            data = _hash(src, tiers, piece_length, args)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    meta = parse_torrent(data)
    sys.stdout.write(meta.info_hash.hex() + "\n")
    return EXIT_OK


def _hash(
    src: Path, tiers: list[list[str]], piece_length: int | None, args: argparse.Namespace
) -> bytes:
    """The .torrent's bytes, with a progress bar on a terminal."""
    err = Console(stderr=True)
    total = _total_size(src)
    if err.is_terminal:
        with byte_progress(err) as progress:
            task = progress.add_task("hashing", total=total)
            return _make(src, tiers, piece_length, args, lambda n: progress.advance(task, n))
    return _make(src, tiers, piece_length, args, None)


def _total_size(src: Path) -> int:
    if src.is_file():
        return src.stat().st_size
    return sum(p.stat().st_size for p in src.rglob("*") if p.is_file() and not p.is_symlink())


def _make(
    src: Path, tiers: list[list[str]], piece_length: int | None, args: argparse.Namespace, cb: Any
) -> bytes:
    try:
        return make_torrent(
            src,
            trackers=tiers,
            piece_length=piece_length,
            private=args.private,
            comment=args.comment,
            url_list=args.web_seed,
            progress=cb,
        )
    except StorageError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"{src}: {exc.strerror or exc}") from None
