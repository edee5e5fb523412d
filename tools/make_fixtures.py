#!/usr/bin/env python3
"""Regenerate ``fixtures/``: real torrents made by real tools, their payloads, hostile torrents.

Run from anywhere with the project's venv: ``.venv/bin/python tools/make_fixtures.py``. It
needs libtorrent's Python bindings, ``mktorrent`` and ``transmission-create`` (all installed by
``scripts/setup --test``) and rewrites everything under ``fixtures/`` except ``README.md``.

What is reproducible: names, payloads (seeded from each file's path), piece lengths, trackers,
and so every info-hash. Creation dates are pinned: libtorrent gets ``set_creation_date``,
mktorrent ``-d`` (no date), and Transmission's date (outside the info dict, so the info-hash
is untouched) is overwritten with the same fixed value. "created by" strings name the tool
versions, so a different libtorrent / mktorrent / Transmission version may change those bytes.
transmission-create 3.00 lists a folder's files in directory-read order (not sorted), so on
another file system its multi-file torrent may list them in another order, with another
info-hash; the committed files and manifest stay consistent with each other either way.

Layout (libtorrent's save-path convention): payloads live in ``fixtures/data``; a single-file
torrent NAME is ``fixtures/data/NAME``, a multi-file one the folder ``fixtures/data/NAME/``, so
``torrentkit verify fixtures/T.torrent fixtures/data`` works for every good fixture.

``fixtures/manifest.json`` lists the good torrents with what libtorrent (the reference) reads
from them: info-hashes, file list, piece length, trackers. ``fixtures/hostile/manifest.json``
says for each hostile torrent what torrentkit must do with it: reject it with an error whose
field is named, or accept it with the sanitised file list given.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libtorrent as lt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from torrentkit import bencoding  # noqa: E402

FIXTURES = ROOT / "fixtures"
DATA = FIXTURES / "data"
HOSTILE = FIXTURES / "hostile"
FIXED_DATE = 1_700_000_000  # 2023-11-14T22:13:20Z
TRACKER = "http://127.0.0.1:6969/announce"
KIB = 1024


# --------------------------------------------------------------------------- payloads


def payload(rel: str, size: int) -> bytes:
    """Deterministic pseudo-random bytes for the file at ``rel`` (seeded by its path)."""
    return random.Random(f"torrentkit fixture {rel}").randbytes(size)


@dataclass(frozen=True, slots=True, kw_only=True)
class Good:
    """One good fixture: its payload and how to make its torrent."""

    torrent: str
    tool: str
    kind: str
    name: str
    piece_length: int
    size: int | None = None  # single-file
    files: tuple[tuple[str, int], ...] = ()  # multi-file: ("dir/file", size), sorted
    private: bool = False
    trackers: tuple[tuple[str, ...], ...] = ((TRACKER,),)
    url_list: tuple[str, ...] = ()
    comment: str | None = None
    lt_flags: int = 0
    note: str = ""
    post: Callable[[bytes], bytes] | None = field(default=None, compare=False)

    def write_payload(self) -> None:
        if self.size is not None:
            (DATA / self.name).write_bytes(payload(self.name, self.size))
            return
        for rel, size in self.files:
            path = DATA / self.name / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(payload(f"{self.name}/{rel}", size))


# --------------------------------------------------------------------------- makers


def run(cmd: list[str], cwd: Path | None = None) -> None:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({r.returncode}): {r.stderr.strip() or r.stdout}")


def make_libtorrent(g: Good) -> bytes:
    if g.size is not None:
        entries = [lt.create_file_entry(g.name, g.size)]
    else:
        entries = [lt.create_file_entry(f"{g.name}/{rel}", size) for rel, size in g.files]
    ct = lt.create_torrent(entries, g.piece_length, g.lt_flags)
    for tier, urls in enumerate(g.trackers):
        for url in urls:
            ct.add_tracker(url, tier)
    for url in g.url_list:
        ct.add_url_seed(url)
    if g.comment:
        ct.set_comment(g.comment)
    ct.set_priv(g.private)
    ct.set_creation_date(FIXED_DATE)
    lt.set_piece_hashes(ct, str(DATA))
    return bytes(lt.bencode(ct.generate()))


def make_mktorrent(g: Good) -> bytes:
    exponent = g.piece_length.bit_length() - 1
    assert 1 << exponent == g.piece_length
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "out.torrent")
        cmd = ["mktorrent", "-d", "-t", "1", "-l", str(exponent), "-o", str(out)]
        for tier in g.trackers:
            cmd += ["-a", ",".join(tier)]
        for url in g.url_list:
            cmd += ["-w", url]
        if g.comment:
            cmd += ["-c", g.comment]
        if g.private:
            cmd.append("-p")
        run([*cmd, g.name], cwd=DATA)
        return out.read_bytes()


def make_transmission(g: Good) -> bytes:
    for tier in g.trackers:
        assert len(tier) == 1, "transmission-create puts every tracker in its own tier"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "out.torrent")
        cmd = ["transmission-create", "-o", str(out), "-s", str(g.piece_length // KIB)]
        for (url,) in g.trackers:
            cmd += ["-t", url]
        if g.comment:
            cmd += ["-c", g.comment]
        if g.private:
            cmd.append("-p")
        run([*cmd, g.name], cwd=DATA)
        data = out.read_bytes()
    # Pin the creation date (outside the info dict; the info-hash does not change).
    return re.sub(rb"13:creation datei\d+e", b"13:creation datei%de" % FIXED_DATE, data, count=1)


MAKERS: dict[str, Callable[[Good], bytes]] = {
    "libtorrent": make_libtorrent,
    "mktorrent": make_mktorrent,
    "transmission-create": make_transmission,
}


def unsort_info_keys(data: bytes) -> bytes:
    """Rewrite the info dict with its keys in reverse order, values byte for byte the same.

    Bencode requires sorted keys, but such torrents exist; their info-hash is SHA-1 over the
    bytes as they stand, which differs from the hash of the re-sorted dict.
    """
    _, spans = bencoding.decode_with_spans(data)
    start, end = spans[b"info"]
    raw = data[start:end]
    _, inner = bencoding.decode_with_spans(raw)
    entries = [
        bencoding.encode(key) + raw[vs:ve] for key, (vs, ve) in sorted(inner.items(), reverse=True)
    ]
    edited = b"d" + b"".join(entries) + b"e"
    assert edited != raw and len(edited) == len(raw)
    return data[:start] + edited + data[end:]


# --------------------------------------------------------------------------- the good set

NESTED = (
    ("a/b/c/deep.bin", 70_000),
    ("données/été/ß.txt", 30_000),
    ("readme.txt", 1_234),
    ("日本語/テスト.bin", 50_000),
)

GOOD: tuple[Good, ...] = (
    Good(torrent="single_libtorrent.torrent", tool="libtorrent", kind="single",
         name="alpha.bin", size=200_000, piece_length=16 * KIB,
         lt_flags=lt.create_torrent.v1_only),
    Good(torrent="single_mktorrent.torrent", tool="mktorrent", kind="single",
         name="bravo.dat", size=150_000, piece_length=32 * KIB),
    Good(torrent="single_transmission.torrent", tool="transmission-create", kind="single",
         name="charlie.txt", size=100_000, piece_length=16 * KIB),
    Good(torrent="multi_mktorrent.torrent", tool="mktorrent", kind="multi",
         name="delta", files=NESTED, piece_length=32 * KIB),
    Good(torrent="multi_transmission.torrent", tool="transmission-create", kind="multi",
         name="echo", piece_length=32 * KIB,
         files=(("données/été/ß.txt", 40_000), ("notes.txt", 3_000),
                ("中文/子目录/文件.dat", 90_000))),
    Good(torrent="multi_libtorrent.torrent", tool="libtorrent", kind="multi",
         name="foxtrot", piece_length=16 * KIB, lt_flags=lt.create_torrent.v1_only,
         files=(("données/été/ß.txt", 25_000), ("empty.txt", 0),
                ("z/last.bin", 60_000), ("한국어/파일.bin", 45_000)),
         note="holds a zero-length file"),
    Good(torrent="hybrid_libtorrent.torrent", tool="libtorrent", kind="hybrid",
         name="golf", piece_length=16 * KIB,
         files=(("a.bin", 40_000), ("sub/deeper/c.bin", 70_000), ("sub/é.txt", 5_000)),
         note="v1+v2 (BEP 52); the v1 file list has pad files"),
    Good(torrent="hybrid_single_libtorrent.torrent", tool="libtorrent", kind="hybrid",
         name="hotel.bin", size=90_000, piece_length=16 * KIB),
    Good(torrent="pad_libtorrent.torrent", tool="libtorrent", kind="pad",
         name="india", piece_length=16 * KIB,
         lt_flags=lt.create_torrent.v1_only | lt.create_torrent.canonical_files,
         files=(("first.bin", 20_000), ("second/ünï.bin", 33_333), ("third.bin", 16_384),
                ("zz.txt", 777)),
         note="v1 with BEP 47 pad files (attr 'p') aligning every file to a piece"),
    Good(torrent="private_mktorrent.torrent", tool="mktorrent", kind="private",
         name="juliet", piece_length=32 * KIB, private=True,
         files=(("one.bin", 50_000), ("two/two.bin", 30_000))),
    Good(torrent="private_transmission.torrent", tool="transmission-create", kind="private",
         name="kilo.bin", size=60_000, piece_length=16 * KIB, private=True),
    Good(torrent="tiers_mktorrent.torrent", tool="mktorrent", kind="tiers",
         name="lima", piece_length=32 * KIB,
         files=(("x.bin", 60_000), ("y/z.bin", 20_000)),
         trackers=(("http://127.0.0.1:6969/announce", "http://127.0.0.2:6969/announce"),
                   ("udp://127.0.0.1:6970/announce",)),
         url_list=("http://127.0.0.1:8080/seed/", "http://127.0.0.2:8080/seed/"),
         comment="tiers, web seeds and a comment"),
    Good(torrent="tiers_libtorrent.torrent", tool="libtorrent", kind="tiers",
         name="mike.bin", size=50_000, piece_length=16 * KIB, lt_flags=lt.create_torrent.v1_only,
         trackers=(("http://127.0.0.1:6969/announce",),
                   ("http://127.0.0.2:6969/announce", "udp://127.0.0.2:6970/announce")),
         url_list=("http://127.0.0.1:8080/mike.bin",), comment="commentaire: été"),
    Good(torrent="unsorted_keys.torrent", tool="mktorrent", kind="unsorted",
         name="november.bin", size=40_000, piece_length=32 * KIB, post=unsort_info_keys,
         note="info dict keys hand-reordered (not sorted); the hash is over the raw bytes"),
)  # fmt: skip


# --------------------------------------------------------------------------- libtorrent's view


def libtorrent_view(data: bytes) -> dict[str, Any]:
    """What libtorrent reads from a torrent: the reference the tests compare against."""
    atp = lt.load_torrent_buffer(data)
    ti = atp.ti
    assert ti is not None
    hashes = ti.info_hashes()
    fs = ti.layout()
    layout = [
        {
            "path": fs.file_path(i),
            "length": fs.file_size(i),
            "offset": fs.file_offset(i),
            "pad": bool(fs.file_flags(i) & lt.file_storage.flag_pad_file),
        }
        for i in range(fs.num_files())
    ]
    tiers: list[list[str]] = []
    for url, tier in zip(atp.trackers, atp.tracker_tiers, strict=False):
        while len(tiers) <= tier:
            tiers.append([])
        tiers[tier].append(url)
    return {
        "name": ti.name(),
        "info_hash": str(hashes.v1),
        "info_hash_v2": str(hashes.v2) if hashes.has_v2() else None,
        "piece_length": ti.piece_length(),
        "num_pieces": ti.num_pieces(),
        "total_size": ti.total_size(),
        "private": bool(ti.priv()),
        "trackers": [t for t in tiers if t],
        "url_list": list(atp.url_seeds),
        "comment": atp.comment or None,
        "files": [f["path"] for f in layout],
        "layout": layout,
    }


def make_good() -> list[dict[str, Any]]:
    entries = []
    names = [g.name for g in GOOD]
    assert len(set(names)) == len(names), "every fixture needs its own name"
    for g in GOOD:
        g.write_payload()
    for g in GOOD:
        data = MAKERS[g.tool](g)
        tool = g.tool
        if g.post is not None:
            before = hashlib.sha1(_info_bytes(data)).hexdigest()
            data = g.post(data)
            after = hashlib.sha1(_info_bytes(data)).hexdigest()
            assert before != after
            tool += "+hand-edit"
        (FIXTURES / g.torrent).write_bytes(data)
        view = libtorrent_view(data)
        assert view["info_hash"] == hashlib.sha1(_info_bytes(data)).hexdigest()
        assert view["name"] == g.name
        pads = [f for f in view["layout"] if f["pad"]]
        if g.kind == "pad":
            assert pads, "libtorrent made no pad files"
            assert b"4:attr1:p" in data
        entry = {"torrent": g.torrent, "tool": tool, "kind": g.kind, **view}
        if g.note:
            entry["note"] = g.note
        entries.append(entry)
    return entries


def _info_bytes(data: bytes) -> bytes:
    _, spans = bencoding.decode_with_spans(data)
    start, end = spans[b"info"]
    return data[start:end]


# --------------------------------------------------------------------------- hostile torrents

PL = 16 * KIB


def _info(
    name: Any = "hostile",
    *,
    files: list[Any] | None = None,
    length: Any = None,
    piece_length: Any = PL,
    pieces: bytes | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An info dict, consistent except where a case makes it deliberately wrong."""
    info: dict[str, Any] = {"piece length": piece_length}
    if name is not None:
        info["name"] = name
    if files is not None:
        info["files"] = files
    if length is not None:
        info["length"] = length
    if pieces is None:
        total = length if isinstance(length, int) else 0
        for f in files or ():
            if isinstance(f, dict) and isinstance(f.get("length"), int):
                total += f["length"]
        count = 1
        if isinstance(piece_length, int) and piece_length > 0:
            count = max(1, min(-(-total // piece_length), 64))
        pieces = b"\x00" * 20 * count
    info["pieces"] = pieces
    info.update(extra or {})
    return info


def _f(*path: Any, length: Any = 1000, **extra: Any) -> dict[str, Any]:
    return {"length": length, "path": list(path), **extra}


def _torrent(info: Any) -> bytes:
    return bencoding.encode({"announce": TRACKER, "info": info})


def _past_int64(data: bytes) -> bytes:
    """Turn the one 2^63 - 1 in ``data`` into 2^63 (which our encoder refuses to write)."""
    old, new = b"i%de" % (2**63 - 1), b"i%de" % 2**63
    assert data.count(old) == 1
    return data.replace(old, new)


@dataclass(frozen=True, slots=True, kw_only=True)
class Hostile:
    torrent: str
    case: str
    data: bytes
    # "reject": MetainfoError (or the named subclass) whose field is `field`;
    # "sanitise": parses, with exactly these files ("/"-joined, as torrentkit lists them).
    expect: str
    field: str | None = None
    error: str = "MetainfoError"
    message_contains: str | None = None
    files: tuple[str, ...] = ()


def _reject(torrent: str, case: str, data: bytes, field: str, **kw: Any) -> Hostile:
    return Hostile(torrent=torrent, case=case, data=data, expect="reject", field=field, **kw)


def _sanitise(torrent: str, case: str, data: bytes, files: tuple[str, ...]) -> Hostile:
    return Hostile(torrent=torrent, case=case, data=data, expect="sanitise", files=files)


def _path_case(torrent: str, case: str, *path: Any) -> Hostile:
    return _reject(torrent, case, _torrent(_info(files=[_f(*path)])), "info.files[0].path")


def _v2_only() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "v2only.bin").write_bytes(payload("hostile/v2only.bin", 40_000))
        ct = lt.create_torrent(
            [lt.create_file_entry("v2only.bin", 40_000)], PL, lt.create_torrent.v2_only
        )
        ct.add_tracker(TRACKER, 0)
        ct.set_creation_date(FIXED_DATE)
        lt.set_piece_hashes(ct, tmp)
        return bytes(lt.bencode(ct.generate()))


def hostile_cases() -> list[Hostile]:
    good = (FIXTURES / "single_mktorrent.torrent").read_bytes()
    big = 2**63 - 1  # written as 2^63 by _past_int64
    cases = [
        # ---- paths that climb out of the download folder or are otherwise unsafe
        _path_case("path_dotdot.torrent", "path component '..'", ".."),
        _path_case("path_dotdot_x.torrent", "path '../x'", "..", "x"),
        _path_case("path_a_dotdot_dotdot_x.torrent", "path 'a/../../x'", "a", "..", "..", "x"),
        _path_case("path_slashes_in_component.torrent", "one component 'a/../../x'", "a/../../x"),
        _path_case("path_absolute_component.torrent", "one component '/etc/x'", "/etc/x"),
        _path_case("path_absolute_list.torrent", "path ['', 'etc', 'x'] (leading /)",
                   "", "etc", "x"),
        _path_case("path_drive_backslash.torrent", "component 'C:\\x'", "C:\\x"),
        _path_case("path_drive.torrent", "component 'C:' then 'x'", "C:", "x"),
        _path_case("path_backslash_dotdot.torrent", "component 'a\\..\\x'", "a\\..\\x"),
        _path_case("path_empty_component.torrent", "path ['a', '', 'x']", "a", "", "x"),
        _path_case("path_dot.torrent", "path component '.'", "."),
        _path_case("path_only_dots.torrent", "component '...' (nothing left once trailing dots"
                   " are stripped)", "..."),
        _path_case("path_nul.torrent", "NUL byte in a component", b"a\x00b"),
        _path_case("path_control.torrent", "terminal escape in a component", "a\x1b[31mred"),
        _reject("path_empty_list.torrent", "path is an empty list",
                _torrent(_info(files=[{"length": 1000, "path": []}])), "info.files[0].path"),
        _reject("path_utf8_traversal.torrent", "safe 'path' but 'path.utf-8' is ['..', 'x']",
                _torrent(_info(files=[_f("ok", **{"path.utf-8": ["..", "x"]})])),
                "info.files[0].path"),
        _sanitise("path_trailing_dots_spaces.torrent", "trailing dots and spaces are stripped",
                  _torrent(_info(files=[_f("dir. ", "file.txt.."), _f("b ")])),
                  ("hostile/dir/file.txt", "hostile/b")),
        _reject("path_duplicate.torrent", "the same path twice",
                _torrent(_info(files=[_f("a.txt"), _f("a.txt")])), "info.files[1].path"),
        _reject("path_duplicate_after_strip.torrent", "'a.txt' and 'a.txt.' (same once stripped)",
                _torrent(_info(files=[_f("a.txt"), _f("a.txt.")])), "info.files[1].path"),
        _sanitise("path_case_collision.torrent", "'Readme.txt' and 'README.txt': the later one"
                  " is renamed", _torrent(_info(files=[_f("Readme.txt"), _f("README.txt")])),
                  ("hostile/Readme.txt", "hostile/README.1.txt")),
        _reject("path_file_and_folder.torrent", "'a' is a file and a folder",
                _torrent(_info(files=[_f("a"), _f("a", "b")])), "info.files[1].path"),
        _sanitise("pad_traversal.torrent", "a pad file (attr 'p') with path '../../etc': pads"
                  " are never written; its unsafe components become '_' as in libtorrent",
                  _torrent(_info(files=[_f("a", length=PL - 100),
                                        _f("..", "..", "etc", length=100, attr="p"),
                                        _f("b", length=500)])),
                  ("hostile/a", "hostile/_/_/etc", "hostile/b")),
        # ---- unsafe names
        _reject("name_dotdot.torrent", "single-file name '..'",
                _torrent(_info("..", length=1000)), "info.name"),
        _reject("name_traversal.torrent", "single-file name '../x'",
                _torrent(_info("../x", length=1000)), "info.name"),
        _reject("name_absolute.torrent", "name '/etc/passwd'",
                _torrent(_info("/etc/passwd", length=1000)), "info.name"),
        _reject("name_empty.torrent", "empty name", _torrent(_info("", length=1000)),
                "info.name"),
        _reject("name_missing.torrent", "no name", _torrent(_info(None, length=1000)),
                "info.name"),
        _reject("name_utf8_traversal.torrent", "safe 'name' but 'name.utf-8' is '../evil'",
                _torrent(_info("ok", length=1000, extra={"name.utf-8": "../evil"})), "info.name"),
        _sanitise("name_trailing.torrent", "name 'movie.mkv. ' loses its trailing dot and space",
                  _torrent(_info("movie.mkv. ", length=1000)), ("movie.mkv",)),
        _sanitise("name_bad_utf8.torrent", "name not valid UTF-8: bad bytes become U+FFFD",
                  _torrent(_info(b"caf\xe9.txt", length=1000)), ("caf\ufffd.txt",)),
        # ---- numbers
        _reject("piece_length_zero.torrent", "piece length 0",
                _torrent(_info(length=1000, piece_length=0)), "info.piece length"),
        _reject("piece_length_negative.torrent", "piece length -16384",
                _torrent(_info(length=1000, piece_length=-PL)), "info.piece length"),
        _reject("piece_length_huge.torrent", "piece length 2^40",
                _torrent(_info(length=1000, piece_length=2**40)), "info.piece length"),
        _reject("piece_length_string.torrent", "piece length is a string",
                _torrent(_info(length=1000, piece_length=b"16384", pieces=b"\0" * 20)),
                "info.piece length"),
        _reject("pieces_not_multiple_of_20.torrent", "pieces is 30 bytes",
                _torrent(_info(length=1000, pieces=b"\0" * 30)), "info.pieces"),
        _reject("pieces_too_few.torrent", "1 hash for 3 pieces",
                _torrent(_info(length=3 * PL, pieces=b"\0" * 20)), "info.pieces"),
        _reject("pieces_too_many.torrent", "3 hashes for 1 piece",
                _torrent(_info(length=1000, pieces=b"\0" * 60)), "info.pieces"),
        _reject("pieces_missing.torrent", "no pieces",
                _torrent({"name": "hostile", "piece length": PL, "length": 1000}), "info.pieces"),
        _reject("pieces_over_limit.torrent", "2^40 bytes in 16 KiB pieces: 2^26 pieces",
                _torrent(_info(length=2**40, pieces=b"\0" * 20)), "info.pieces"),
        _reject("length_negative.torrent", "single-file length -1",
                _torrent(_info(length=-1)), "info.length"),
        _reject("file_length_negative.torrent", "second file's length -5",
                _torrent(_info(files=[_f("a"), _f("b", length=-5)])), "info.files[1].length"),
        _reject("length_2pow63.torrent", "single-file length 2^63 (past signed 64-bit)",
                _past_int64(_torrent(_info(length=big, pieces=b"\0" * 20))), "torrent",
                message_contains="info.length"),
        _reject("file_length_2pow63.torrent", "second file's length 2^63",
                _past_int64(_torrent(_info(files=[_f("a"), _f("b", length=big)],
                                           pieces=b"\0" * 20))),
                "torrent", message_contains="info.files[1].length"),
        _reject("total_overflow.torrent", "two files of 2^62 bytes: total past 2^63 - 1",
                _torrent(_info(files=[_f("a", length=2**62), _f("b", length=2**62)],
                               pieces=b"\0" * 20)), "info.files[1].length"),
        _reject("length_string.torrent", "length is a string",
                _torrent(_info(length=b"1000", pieces=b"\0" * 20)), "info.length"),
        _reject("total_zero.torrent", "no data at all (length 0)",
                _torrent(_info(length=0)), "info"),
        # ---- structure
        _reject("length_and_files.torrent", "both 'length' and 'files'",
                _torrent(_info(length=1000, files=[_f("a")])), "info"),
        _reject("files_empty.torrent", "files is an empty list",
                _torrent(_info(files=[])), "info.files"),
        _reject("files_entry_not_dict.torrent", "a files entry that is a string",
                _torrent(_info(files=["a"])), "info.files[0]"),
        _reject("info_missing.torrent", "no info dict",
                bencoding.encode({"announce": TRACKER}), "info"),
        _reject("info_not_dict.torrent", "info is a list",
                bencoding.encode({"announce": TRACKER, "info": [1, 2]}), "info"),
        _reject("top_level_list.torrent", "top level is a list",
                bencoding.encode([TRACKER]), "torrent"),
        _reject("meta_version_3.torrent", "meta version 3 without v1 pieces",
                _torrent({"name": "hostile", "piece length": PL, "meta version": 3}),
                "info.meta version"),
        _reject("v2_only.torrent", "a v2-only torrent made by libtorrent (not supported yet)",
                _v2_only(), "info.meta version", error="UnsupportedError"),
        # ---- not bencode / resource exhaustion
        _reject("not_bencoded.torrent", "plain text", b"this is not a torrent file\n",
                "torrent"),
        _reject("empty.torrent", "zero bytes", b"", "torrent"),
        _reject("truncated.torrent", "a real torrent cut in half", good[: len(good) // 2],
                "torrent"),
        _reject("trailing_garbage.torrent", "a real torrent with bytes after its end",
                good + b"garbage", "torrent"),
        _reject("deep_lists.torrent", "'l' x 100000", b"l" * 100_000, "torrent"),
        _reject("deep_dicts.torrent", "'d1:a' x 100000", b"d1:a" * 100_000, "torrent"),
        _reject("deep_inside_info.torrent", "1000 nested lists inside the info dict",
                b"d4:infod4:name1:x5:extra" + b"l" * 1000 + b"e" * 1000 + b"ee", "torrent"),
        _reject("duplicate_key.torrent", "the info dict has 'length' twice",
                b"d4:infod6:lengthi5e6:lengthi6e4:name1:x12:piece lengthi16384e6:pieces20:"
                + b"\0" * 20 + b"ee", "torrent"),
        _reject("noncanonical_int.torrent", "piece length written 'i016384e'",
                b"d4:infod6:lengthi5e4:name1:x12:piece lengthi016384e6:pieces20:"
                + b"\0" * 20 + b"ee", "torrent"),
        _reject("huge_int.torrent", "a 10,000-digit integer",
                b"d8:announcei" + b"9" * 10_000 + b"e4:infod6:lengthi5e4:name1:x12:piece length"
                b"i16384e6:pieces20:" + b"\0" * 20 + b"ee", "torrent"),
    ]  # fmt: skip
    names = [c.torrent for c in cases]
    assert len(set(names)) == len(names)
    return cases


def make_hostile() -> list[dict[str, Any]]:
    HOSTILE.mkdir()
    out = []
    for c in hostile_cases():
        (HOSTILE / c.torrent).write_bytes(c.data)
        entry: dict[str, Any] = {"torrent": c.torrent, "case": c.case, "expect": c.expect}
        if c.expect == "reject":
            entry["error"] = c.error
            entry["field"] = c.field
            if c.message_contains:
                entry["message_contains"] = c.message_contains
        else:
            entry["files"] = list(c.files)
        out.append(entry)
    return out


# --------------------------------------------------------------------------- main


def clean() -> None:
    FIXTURES.mkdir(exist_ok=True)
    for child in FIXTURES.iterdir():
        if child.name == "README.md":
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    DATA.mkdir()


def dump(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main() -> int:
    for tool in ("mktorrent", "transmission-create"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed; run scripts/setup --test")
    clean()
    good = make_good()
    dump(FIXTURES / "manifest.json", good)
    hostile = make_hostile()
    dump(HOSTILE / "manifest.json", hostile)
    size = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    print(f"{len(good)} good torrents, {len(hostile)} hostile, {size / 2**20:.2f} MiB in fixtures/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
