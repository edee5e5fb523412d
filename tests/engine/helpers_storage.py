"""Build small torrents (with pad and zero-length files) and their payloads for tests."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from torrentkit import bencoding
from torrentkit.metainfo import Info, parse_info

# A file spec: (path below the torrent's name, content). A pad file is ("pad", n).
FileSpec = tuple[str | tuple[str, ...], bytes | int]


def build(
    files: Sequence[FileSpec], piece_length: int, name: str = "album", *, pad_fill: int = 0
) -> tuple[Info, bytes]:
    """A multi-file torrent over ``files`` and its payload. Pad files (``("pad", n)``) hold
    ``pad_fill`` bytes in the hashed payload (BEP 47 says zeros; other values make a broken
    torrent on purpose)."""
    entries: list[dict[str, Any]] = []
    payload = bytearray()
    for k, (path, content) in enumerate(files):
        if path == "pad":
            assert isinstance(content, int)
            entries.append({"attr": "p", "length": content, "path": [".pad", str(k)]})
            payload += bytes([pad_fill]) * content
        else:
            assert isinstance(content, bytes)
            comps = [path] if isinstance(path, str) else list(path)
            entries.append({"length": len(content), "path": comps})
            payload += content
    info = {
        "files": entries,
        "name": name,
        "piece length": piece_length,
        "pieces": piece_hashes(bytes(payload), piece_length),
    }
    return parse_info(bencoding.encode(info)), bytes(payload)


def build_single(content: bytes, piece_length: int, name: str = "movie.bin") -> Info:
    info = {
        "length": len(content),
        "name": name,
        "piece length": piece_length,
        "pieces": piece_hashes(content, piece_length),
    }
    return parse_info(bencoding.encode(info))


def piece_hashes(payload: bytes, piece_length: int) -> bytes:
    return b"".join(
        hashlib.sha1(payload[i : i + piece_length]).digest()
        for i in range(0, len(payload), piece_length)
    )


def pattern(n: int, seed: int) -> bytes:
    """``n`` deterministic, non-repeating-looking bytes."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(b"%d:%d" % (seed, counter)).digest()
        counter += 1
    return bytes(out[:n])


def piece(info: Info, payload: bytes, index: int) -> bytes:
    start = index * info.piece_length
    return payload[start : start + info.piece_size(index)]
