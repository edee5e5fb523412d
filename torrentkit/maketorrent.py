"""Make a torrent from files on disk (blocking; call it from a thread in async code)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from torrentkit import __version__
from torrentkit.errors import StorageError
from torrentkit.metainfo import NewFile, auto_piece_length, build_info, build_torrent

CREATED_BY = f"torrentkit {__version__}"


def collect_files(root: Path) -> list[NewFile]:
    """Regular files below ``root`` in sorted path order; symlinks and specials skipped."""
    out: list[NewFile] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        rel = Path(dirpath).relative_to(root).parts
        for fn in sorted(filenames):
            full = Path(dirpath, fn)
            if full.is_symlink() or not full.is_file():
                continue
            out.append(NewFile(path=(*rel, fn), length=full.stat().st_size))
    out.sort(key=lambda f: f.path)
    return out


def hash_pieces(
    paths: Sequence[Path],
    piece_length: int,
    progress: Callable[[int], None] | None = None,
) -> bytes:
    """SHA-1 of each piece of the files' concatenation, joined."""
    hashes = bytearray()
    buf = bytearray()
    chunk = max(piece_length, 1 << 20)
    for path in paths:
        with open(path, "rb") as fh:
            while True:
                data = fh.read(chunk)
                if not data:
                    break
                buf += data
                while len(buf) >= piece_length:
                    hashes += hashlib.sha1(memoryview(buf)[:piece_length]).digest()
                    del buf[:piece_length]
                    if progress is not None:
                        progress(piece_length)
    if buf:
        hashes += hashlib.sha1(buf).digest()
        if progress is not None:
            progress(len(buf))
    return bytes(hashes)


def make_torrent(
    path: Path,
    *,
    trackers: Sequence[Sequence[str]] = (),
    piece_length: int | None = None,
    private: bool = False,
    comment: str | None = None,
    url_list: Sequence[str] = (),
    created_by: str | None = CREATED_BY,
    creation_date: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> bytes:
    """The bytes of a .torrent for the file or folder at ``path``."""
    path = Path(path)
    if not path.exists():
        raise StorageError(f"{path}: no such file or folder")
    name = path.resolve().name
    if path.is_dir():
        files = collect_files(path)
        total = sum(f.length for f in files)
        sources = [path.joinpath(*f.path) for f in files]
    elif path.is_file():
        files = None
        total = path.stat().st_size
        sources = [path]
    else:
        raise StorageError(f"{path}: not a regular file or folder")
    if total == 0:
        raise StorageError(f"{path}: nothing to share (no data)")
    plen = piece_length or auto_piece_length(total)
    pieces = hash_pieces(sources, plen, progress)
    info = build_info(
        name=name,
        files=files,
        length=None if files is not None else total,
        piece_length=plen,
        piece_hashes=pieces,
        private=private,
    )
    return build_torrent(
        info,
        trackers=trackers,
        url_list=url_list,
        comment=comment,
        created_by=created_by,
        creation_date=int(time.time()) if creation_date is None else creation_date,
    )
