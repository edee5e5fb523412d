""".torrent and magnet parsing and creation (sans-IO: bytes and values in, values out).

Rules kept here:

- The info-hash is SHA-1 over the info dictionary's bytes exactly as they stand in the file
  (never re-encoded), so a torrent with unsorted keys hashes as libtorrent hashes it.
- Every problem raises :class:`MetainfoError` whose message starts with the field's name.
- File paths are made safe here, once, so storage never sees an unsafe one. Components that
  could climb out of the download folder are *rejected* (``..``, ``.``, empty components,
  absolute paths, drive letters such as ``C:``, NUL, ``/`` or ``\\`` inside a component).
  Trailing dots and spaces are *stripped* from a component (they are invalid on Windows
  and invisible in listings). Two files whose paths differ only in letter case are kept
  apart by *renaming* the later one ``stem.1.ext`` (as libtorrent does), so they never
  overwrite each other on a case-insensitive file system. Exact duplicates, and a path
  that is both a file and a folder, are rejected.
- Pad files (BEP 47 ``attr`` containing ``p``) take part in the piece mapping but are never
  written to disk, so a bad pad path is not an error: as in libtorrent, components that are
  empty, ``.`` or ``..`` become ``_``, separators become ``_`` and control characters go.
- Hybrid v1+v2 torrents (BEP 52) load their v1 view; v2-only torrents are refused as not
  supported yet.
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torrentkit import bencoding
from torrentkit.errors import BencodeError, MetainfoError, UnsupportedError
from torrentkit.ids import InfoHash, PeerAddr

MAX_PIECE_LENGTH = 512 * 1024 * 1024
MAX_PIECES = 2**21
MAX_TOTAL_LENGTH = 2**63 - 1
#: A magnet's ``ws=`` web seeds kept at most (later ones are ignored).
MAX_MAGNET_WEB_SEEDS = 16
BLOCK_SIZE = 16 * 1024

_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True, slots=True, kw_only=True)
class FileEntry:
    """One file of a torrent, placed in the concatenated payload.

    ``path`` is relative to the download folder: ``(name,)`` for a single-file torrent,
    ``(name, dir, ..., file)`` for a multi-file one.
    """

    path: tuple[str, ...]
    length: int
    offset: int
    pad: bool = False
    attr: str = ""

    @property
    def path_str(self) -> str:
        return "/".join(self.path)


@dataclass(frozen=True, slots=True, kw_only=True)
class Info:
    """The v1 view of a torrent's info dictionary."""

    name: str
    piece_length: int
    piece_hashes: bytes
    files: tuple[FileEntry, ...]
    multi_file: bool
    private: bool
    raw: bytes = field(repr=False)
    info_hash: InfoHash
    info_hash_v2: bytes | None = None

    @property
    def total_length(self) -> int:
        last = self.files[-1]
        return last.offset + last.length

    @property
    def num_pieces(self) -> int:
        return len(self.piece_hashes) // 20

    def piece_size(self, index: int) -> int:
        """Length of piece ``index`` (the last one may be short)."""
        if not 0 <= index < self.num_pieces:
            raise IndexError(index)
        if index == self.num_pieces - 1:
            return self.total_length - index * self.piece_length
        return self.piece_length

    def piece_hash(self, index: int) -> bytes:
        if not 0 <= index < self.num_pieces:
            raise IndexError(index)
        return self.piece_hashes[20 * index : 20 * index + 20]


@dataclass(frozen=True, slots=True, kw_only=True)
class Metainfo:
    """A parsed .torrent file."""

    info: Info
    trackers: tuple[tuple[str, ...], ...] = ()
    url_list: tuple[str, ...] = ()
    comment: str | None = None
    created_by: str | None = None
    creation_date: int | None = None

    @property
    def info_hash(self) -> InfoHash:
        return self.info.info_hash

    @property
    def name(self) -> str:
        return self.info.name


# --------------------------------------------------------------------------- parsing


def parse_torrent(data: bytes) -> Metainfo:
    """Parse a .torrent file's bytes. Raises :class:`MetainfoError` naming the bad field."""
    try:
        top, spans = bencoding.decode_with_spans(data, bencoding.TORRENT_LIMITS)
    except BencodeError as exc:
        raise MetainfoError("torrent", f"not valid bencode ({exc})") from None
    if not isinstance(top, dict):
        raise MetainfoError("torrent", "top level is not a dictionary")
    if b"info" not in top:
        raise MetainfoError("info", "missing")
    start, end = spans[b"info"]
    info = parse_info(data[start:end], _decoded=top[b"info"])
    return Metainfo(
        info=info,
        trackers=_parse_trackers(top),
        url_list=_parse_url_list(top.get(b"url-list")),
        comment=_opt_text(top, b"comment.utf-8") or _opt_text(top, b"comment"),
        created_by=_opt_text(top, b"created by"),
        creation_date=_opt_int(top, b"creation date"),
    )


def parse_info(raw: bytes, *, _decoded: Any = None) -> Info:
    """Parse a bencoded info dictionary (from a .torrent file or from ut_metadata)."""
    if _decoded is None:
        try:
            _decoded = bencoding.decode(raw, bencoding.TORRENT_LIMITS)
        except BencodeError as exc:
            raise MetainfoError("info", f"not valid bencode ({exc})") from None
    d = _decoded
    if not isinstance(d, dict):
        raise MetainfoError("info", "not a dictionary")

    meta_version = d.get(b"meta version")
    has_v1 = b"pieces" in d
    if meta_version is not None and meta_version != 1 and not has_v1:
        if meta_version == 2:
            raise UnsupportedError("info.meta version", "v2-only torrents are not supported yet")
        raise MetainfoError("info.meta version", f"unknown version {meta_version!r}")
    info_hash_v2 = hashlib.sha256(raw).digest() if meta_version == 2 else None

    name = _name(d)
    piece_length = d.get(b"piece length")
    if not isinstance(piece_length, int):
        raise MetainfoError("info.piece length", "missing or not an integer")
    if piece_length <= 0:
        raise MetainfoError("info.piece length", f"must be positive, got {piece_length}")
    if piece_length > MAX_PIECE_LENGTH:
        raise MetainfoError(
            "info.piece length", f"{piece_length} exceeds the {MAX_PIECE_LENGTH} byte limit"
        )
    pieces = d.get(b"pieces")
    if not isinstance(pieces, bytes):
        raise MetainfoError("info.pieces", "missing or not a byte string")
    if len(pieces) % 20:
        raise MetainfoError("info.pieces", f"length {len(pieces)} is not a multiple of 20")

    if (b"length" in d) == (b"files" in d):
        raise MetainfoError("info", "needs exactly one of 'length' and 'files'")
    if b"length" in d:
        length = _length(d.get(b"length"), "info.length")
        files: tuple[FileEntry, ...] = (
            FileEntry(path=(name,), length=length, offset=0, attr=_attr(d, "info")),
        )
        multi = False
    else:
        files = _parse_files(name, d[b"files"])
        multi = True

    total = files[-1].offset + files[-1].length
    if total == 0:
        raise MetainfoError("info", "the torrent holds no data (total length 0)")
    expected = -(-total // piece_length)
    if expected > MAX_PIECES:
        raise MetainfoError("info.pieces", f"{expected} pieces exceed the {MAX_PIECES} limit")
    if len(pieces) // 20 != expected:
        raise MetainfoError(
            "info.pieces",
            f"has {len(pieces) // 20} hashes but {total} bytes in {piece_length}-byte pieces "
            f"need {expected}",
        )
    private = d.get(b"private")
    return Info(
        name=name,
        piece_length=piece_length,
        piece_hashes=pieces,
        files=files,
        multi_file=multi,
        private=private == 1,
        raw=raw,
        info_hash=InfoHash(hashlib.sha1(raw).digest()),
        info_hash_v2=info_hash_v2,
    )


def _name(d: dict[bytes, Any]) -> str:
    for key in (b"name.utf-8", b"name"):
        value = d.get(key)
        if isinstance(value, bytes):
            return _component(value, "info.name")
    raise MetainfoError("info.name", "missing or not a string")


def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


def _component(raw: bytes, where: str) -> str:
    """Make one path component safe, or raise. See the module docstring for the rules."""
    text = _text(raw)
    if "\x00" in text:
        raise MetainfoError(where, "contains a NUL byte")
    if "/" in text or "\\" in text:
        raise MetainfoError(where, f"path separator inside a component: {text!r}")
    if _DRIVE.match(text):
        raise MetainfoError(where, f"drive-letter path: {text!r}")
    if text in (".", ".."):
        raise MetainfoError(where, f"{text!r} would leave the download folder")
    text = text.rstrip(". ")
    if not text:
        raise MetainfoError(where, "empty path component")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise MetainfoError(where, f"control character in {text!r}")
    return text


def _pad_component(raw: bytes) -> str:
    """A pad file's path component, made harmless the way libtorrent lists it."""
    text = "".join(ch for ch in _text(raw) if ch >= " " and ch != "\x7f")
    text = text.replace("/", "_").replace("\\", "_")
    return "_" if text in ("", ".", "..") else text


def _length(value: Any, where: str) -> int:
    if not isinstance(value, int):
        raise MetainfoError(where, "missing or not an integer")
    if value < 0:
        raise MetainfoError(where, f"negative size {value}")
    if value > MAX_TOTAL_LENGTH:
        raise MetainfoError(where, f"size {value} is too large")
    return value


def _attr(d: dict[bytes, Any], where: str) -> str:
    attr = d.get(b"attr", b"")
    if not isinstance(attr, bytes):
        raise MetainfoError(f"{where}.attr", "not a string")
    return attr.decode("ascii", errors="replace")


def _parse_files(name: str, files: Any) -> tuple[FileEntry, ...]:
    if not isinstance(files, list) or not files:
        raise MetainfoError("info.files", "must be a non-empty list")
    out: list[FileEntry] = []
    offset = 0
    seen: dict[str, str] = {}  # casefolded path -> exact path, real files only
    dirs: set[str] = set()
    for i, f in enumerate(files):
        where = f"info.files[{i}]"
        if not isinstance(f, dict):
            raise MetainfoError(where, "not a dictionary")
        length = _length(f.get(b"length"), f"{where}.length")
        attr = _attr(f, where)
        pad = "p" in attr
        raw_path = f.get(b"path.utf-8", f.get(b"path"))
        if not isinstance(raw_path, list) or not raw_path:
            raise MetainfoError(f"{where}.path", "missing or empty list")
        if not all(isinstance(c, bytes) for c in raw_path):
            raise MetainfoError(f"{where}.path", "components must be strings")
        if pad:
            # Never written, so never rejected; still no unsafe component ever leaves here.
            path = (name, *(_pad_component(c) for c in raw_path))
        else:
            path = (name, *(_component(c, f"{where}.path") for c in raw_path))
            path = _unique(path, seen, dirs, f"{where}.path")
        offset_next = offset + length
        if offset_next > MAX_TOTAL_LENGTH:
            raise MetainfoError(f"{where}.length", "total size overflows")
        out.append(FileEntry(path=path, length=length, offset=offset, pad=pad, attr=attr))
        offset = offset_next
    return tuple(out)


def _unique(
    path: tuple[str, ...], seen: dict[str, str], dirs: set[str], where: str
) -> tuple[str, ...]:
    joined = "/".join(path)
    folded = joined.casefold()
    if seen.get(folded) == joined:
        raise MetainfoError(where, f"duplicate file {joined!r}")
    if folded in dirs:
        raise MetainfoError(where, f"{joined!r} is both a file and a folder")
    if folded in seen:
        stem, dot, ext = path[-1].rpartition(".")
        if not dot or not stem:
            stem, ext, dot = path[-1], "", ""
        n = 1
        while True:
            candidate = (*path[:-1], f"{stem}.{n}{dot}{ext}")
            if "/".join(candidate).casefold() not in seen:
                path = candidate
                joined = "/".join(path)
                folded = joined.casefold()
                break
            n += 1
    for k in range(1, len(path)):
        parent = "/".join(path[:k]).casefold()
        if parent in seen:
            raise MetainfoError(where, f"{'/'.join(path[:k])!r} is both a file and a folder")
        dirs.add(parent)
    seen[folded] = joined
    return path


def _parse_trackers(top: dict[bytes, Any]) -> tuple[tuple[str, ...], ...]:
    tiers: list[tuple[str, ...]] = []
    announce_list = top.get(b"announce-list")
    if isinstance(announce_list, list):
        for tier in announce_list:
            if isinstance(tier, list):
                urls = tuple(_text(u) for u in tier if isinstance(u, bytes) and u)
                if urls:
                    tiers.append(urls)
    if not tiers:
        announce = top.get(b"announce")
        if isinstance(announce, bytes) and announce:
            tiers.append((_text(announce),))
    return tuple(tiers)


def _parse_url_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, bytes):
        return (_text(value),) if value else ()
    if isinstance(value, list):
        return tuple(_text(u) for u in value if isinstance(u, bytes) and u)
    return ()


def _opt_text(d: dict[bytes, Any], key: bytes) -> str | None:
    value = d.get(key)
    return _text(value) if isinstance(value, bytes) else None


def _opt_int(d: dict[bytes, Any], key: bytes) -> int | None:
    value = d.get(key)
    return value if isinstance(value, int) else None


# --------------------------------------------------------------------------- creating


def auto_piece_length(total_length: int) -> int:
    """A power of two from 16 KiB to 16 MiB giving about 1,000-2,000 pieces."""
    length = BLOCK_SIZE
    while length < 16 * 1024 * 1024 and total_length / length > 1500:
        length *= 2
    return length


@dataclass(frozen=True, slots=True, kw_only=True)
class NewFile:
    """A file to put in a new torrent: path relative to the torrent's root, and length."""

    path: tuple[str, ...]
    length: int


def build_info(
    *,
    name: str,
    files: Sequence[NewFile] | None,
    length: int | None = None,
    piece_length: int,
    piece_hashes: bytes,
    private: bool = False,
) -> bytes:
    """The bencoded info dictionary of a new torrent (single-file when ``files`` is None)."""
    info: dict[str, Any] = {"name": name, "piece length": piece_length, "pieces": piece_hashes}
    if files is None:
        if length is None:
            raise ValueError("a single-file torrent needs its length")
        info["length"] = length
    else:
        info["files"] = [{"length": f.length, "path": list(f.path)} for f in files]
    if private:
        info["private"] = 1
    raw = bencoding.encode(info)
    # What we make must be what we accept, and read back as the same files: a name the
    # parser would rename (trailing dot or space, a case collision) would point a seeder
    # at a file that is not there.
    parsed = parse_info(raw)
    if parsed.name != name:
        raise MetainfoError("info.name", f"{name!r} would be read back as {parsed.name!r}")
    wanted = [(name,)] if files is None else [(name, *f.path) for f in files]
    for i, (want, got) in enumerate(zip(wanted, (f.path for f in parsed.files), strict=True)):
        if want != got:
            raise MetainfoError(
                f"info.files[{i}].path",
                f"{'/'.join(want)!r} would be read back as {'/'.join(got)!r}",
            )
    return raw


def build_torrent(
    info_raw: bytes,
    *,
    trackers: Sequence[Sequence[str]] = (),
    url_list: Sequence[str] = (),
    comment: str | None = None,
    created_by: str | None = None,
    creation_date: int | None = None,
) -> bytes:
    """A complete .torrent file around an already encoded info dictionary."""
    top: dict[str, Any] = {"info": bencoding.Raw(info_raw)}
    tiers = [list(t) for t in trackers if t]
    if tiers:
        top["announce"] = tiers[0][0]
        if len(tiers) > 1 or len(tiers[0]) > 1:
            top["announce-list"] = tiers
    if url_list:
        top["url-list"] = list(url_list)
    if comment:
        top["comment"] = comment
    if created_by:
        top["created by"] = created_by
    if creation_date is not None:
        top["creation date"] = creation_date
    return bencoding.encode(top)


# --------------------------------------------------------------------------- magnets


@dataclass(frozen=True, slots=True, kw_only=True)
class Magnet:
    """A BEP 9 magnet link."""

    info_hash: InfoHash
    name: str | None = None
    trackers: tuple[str, ...] = ()
    peers: tuple[PeerAddr, ...] = ()
    info_hash_v2: bytes | None = None
    #: ``ws=`` web seeds (BEP 19 URLs; libtorrent's magnet extension): http/https only,
    #: used as the torrent's ``url-list`` once the metadata is in.
    web_seeds: tuple[str, ...] = ()

    def format(self) -> str:
        parts = [f"xt=urn:btih:{self.info_hash.hex()}"]
        if self.info_hash_v2 is not None:
            parts.append(f"xt=urn:btmh:1220{self.info_hash_v2.hex()}")
        if self.name:
            parts.append("dn=" + urllib.parse.quote(self.name, safe=""))
        parts.extend("tr=" + urllib.parse.quote(t, safe="") for t in self.trackers)
        parts.extend("x.pe=" + urllib.parse.quote(str(p), safe="[]:") for p in self.peers)
        parts.extend("ws=" + urllib.parse.quote(u, safe="") for u in self.web_seeds)
        return "magnet:?" + "&".join(parts)


def is_magnet(text: str) -> bool:
    return text.startswith("magnet:")


def is_web_seed_url(url: str) -> bool:
    """An ``http`` or ``https`` URL with a host: the web seeds we use (BEP 19 lets a client
    ignore other schemes)."""
    try:
        parts = urllib.parse.urlsplit(url)
        return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:  # a bad port or IPv6 literal
        return False


def parse_magnet(uri: str) -> Magnet:
    """Parse ``magnet:?xt=urn:btih:...``. Raises :class:`MetainfoError` naming the field.
    ``ws=`` web seeds other than http(s) URLs, and those past :data:`MAX_MAGNET_WEB_SEEDS`,
    are ignored."""
    if not uri.startswith("magnet:?"):
        raise MetainfoError("magnet", "does not start with 'magnet:?'")
    if len(uri) > 64 * 1024:
        raise MetainfoError("magnet", "longer than 64 KiB")
    params = urllib.parse.parse_qsl(uri[len("magnet:?") :], keep_blank_values=True)
    info_hash: InfoHash | None = None
    info_hash_v2: bytes | None = None
    name: str | None = None
    trackers: list[str] = []
    peers: list[PeerAddr] = []
    web_seeds: dict[str, None] = {}
    for key, value in params:
        if key == "xt" or (key.startswith("xt.") and key[3:].isdigit()):
            if value.lower().startswith("urn:btih:"):
                try:
                    ih = InfoHash.from_text(value[len("urn:btih:") :])
                except ValueError as exc:
                    raise MetainfoError("magnet.xt", str(exc)) from None
                if info_hash is not None and ih != info_hash:
                    raise MetainfoError("magnet.xt", "two different btih info-hashes")
                info_hash = ih
            elif value.lower().startswith("urn:btmh:"):
                multihash = value[len("urn:btmh:") :]
                if not re.fullmatch(r"1220[0-9a-fA-F]{64}", multihash):
                    raise MetainfoError("magnet.xt", "btmh must be a SHA-256 multihash (1220...)")
                info_hash_v2 = bytes.fromhex(multihash[4:])
        elif key == "dn":
            name = value
        elif key == "tr" or (key.startswith("tr.") and key[3:].isdigit()):
            if value:
                trackers.append(value)
        elif key == "x.pe":
            try:
                peers.append(PeerAddr.parse(value))
            except ValueError as exc:
                raise MetainfoError("magnet.x.pe", str(exc)) from None
        elif key == "ws" and len(web_seeds) < MAX_MAGNET_WEB_SEEDS and is_web_seed_url(value):
            web_seeds[value] = None
    if info_hash is None:
        if info_hash_v2 is not None:
            raise UnsupportedError("magnet.xt", "v2-only magnet links are not supported yet")
        raise MetainfoError("magnet.xt", "no urn:btih info-hash")
    return Magnet(
        info_hash=info_hash,
        name=name,
        trackers=tuple(dict.fromkeys(trackers)),
        peers=tuple(dict.fromkeys(peers)),
        info_hash_v2=info_hash_v2,
        web_seeds=tuple(web_seeds),
    )


def magnet_for(meta: Metainfo, peers: Iterable[PeerAddr] = ()) -> Magnet:
    """The magnet link of a torrent (all its trackers, optional peers)."""
    return Magnet(
        info_hash=meta.info_hash,
        name=meta.name,
        trackers=tuple(dict.fromkeys(u for tier in meta.trackers for u in tier)),
        peers=tuple(peers),
        info_hash_v2=meta.info.info_hash_v2,
        web_seeds=tuple(u for u in meta.url_list if is_web_seed_url(u))[:MAX_MAGNET_WEB_SEEDS],
    )
