""".torrent parsing against real torrents (libtorrent's reading is the reference), hostile
torrents, and creation.

The fixtures and both manifests come from tools/make_fixtures.py: the good torrents were made
by libtorrent, mktorrent and transmission-create, and manifest.json records what libtorrent
reads from each. Fuzz invariant: any bytes give a Metainfo or raise MetainfoError.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torrentkit import bencoding
from torrentkit.errors import MetainfoError, UnsupportedError
from torrentkit.metainfo import (
    Info,
    Metainfo,
    NewFile,
    build_info,
    build_torrent,
    parse_info,
    parse_torrent,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
GOOD: list[dict[str, Any]] = json.loads((FIXTURES / "manifest.json").read_text("utf-8"))
HOSTILE: list[dict[str, Any]] = json.loads(
    (FIXTURES / "hostile" / "manifest.json").read_text("utf-8")
)
ERRORS: dict[str, type[MetainfoError]] = {
    "MetainfoError": MetainfoError,
    "UnsupportedError": UnsupportedError,
}


def load(name: str) -> Metainfo:
    return parse_torrent((FIXTURES / name).read_bytes())


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [e for e in GOOD if e["kind"] == kind]


# ----------------------------------------------------------------------------- the fixtures


def test_fixture_set_is_complete() -> None:
    kinds = {e["kind"] for e in GOOD}
    assert {"single", "multi", "hybrid", "pad", "private", "tiers", "unsorted"} <= kinds
    assert {e["tool"] for e in GOOD} >= {"libtorrent", "mktorrent", "transmission-create"}
    names = [e["name"] for e in GOOD]
    assert len(set(names)) == len(names)
    size = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    assert size < 4 * 2**20


@pytest.mark.parametrize("entry", GOOD, ids=lambda e: e["torrent"])
def test_good_fixture_reads_as_libtorrent_reads_it(entry: dict[str, Any]) -> None:
    meta = load(entry["torrent"])
    info = meta.info
    assert meta.info_hash.hex() == entry["info_hash"]
    assert (info.info_hash_v2.hex() if info.info_hash_v2 else None) == entry["info_hash_v2"]
    assert meta.name == entry["name"]
    assert info.piece_length == entry["piece_length"]
    assert info.num_pieces == entry["num_pieces"]
    assert info.total_length == entry["total_size"]
    assert info.private is entry["private"]
    assert [list(tier) for tier in meta.trackers] == entry["trackers"]
    assert list(meta.url_list) == entry["url_list"]
    assert meta.comment == entry["comment"]
    assert [f.path_str for f in info.files] == entry["files"]
    assert [
        {"path": f.path_str, "length": f.length, "offset": f.offset, "pad": f.pad}
        for f in info.files
    ] == entry["layout"]


def piece_hashes_of_payload(info: Info, root: Path) -> bytes:
    """Hash fixtures/data the way a client would: files concatenated, pad files as zeros."""
    buf = bytearray()
    for f in info.files:
        buf += bytes(f.length) if f.pad else (root / Path(*f.path)).read_bytes()
    assert len(buf) == info.total_length
    step = info.piece_length
    return b"".join(hashlib.sha1(buf[i : i + step]).digest() for i in range(0, len(buf), step))


@pytest.mark.parametrize("entry", GOOD, ids=lambda e: e["torrent"])
def test_payload_matches_every_piece_hash(entry: dict[str, Any]) -> None:
    # Proves the file/offset/pad mapping and that fixtures/data is the save path.
    info = load(entry["torrent"]).info
    assert piece_hashes_of_payload(info, FIXTURES / "data") == info.piece_hashes
    for f in info.files:
        on_disk = FIXTURES / "data" / Path(*f.path)
        assert on_disk.exists() is not f.pad  # pad files are never on disk


@pytest.mark.parametrize("entry", by_kind("pad") + by_kind("hybrid"), ids=lambda e: e["torrent"])
def test_pad_files_are_flagged_and_align_files_to_pieces(entry: dict[str, Any]) -> None:
    info = load(entry["torrent"]).info
    pads = [f for f in info.files if f.pad]
    if info.multi_file:
        assert pads, "libtorrent pads every file of a multi-file hybrid / canonical torrent"
    for f in pads:
        assert "p" in f.attr
        assert f.path[1] == ".pad" and f.path[2] == str(f.length)
    for f in info.files:
        if not f.pad:
            assert f.offset % info.piece_length == 0


def test_hybrid_loads_its_v1_view_with_the_v2_hash() -> None:
    (entry,) = [e for e in by_kind("hybrid") if e["name"] == "golf"]
    data = (FIXTURES / entry["torrent"]).read_bytes()
    meta = parse_torrent(data)
    _, spans = bencoding.decode_with_spans(data)
    start, end = spans[b"info"]
    assert meta.info.info_hash_v2 == hashlib.sha256(data[start:end]).digest()
    assert meta.info.info_hash_v2.hex() == entry["info_hash_v2"]
    assert meta.info_hash == hashlib.sha1(data[start:end]).digest()


def test_unsorted_info_dict_is_hashed_as_it_stands() -> None:
    (entry,) = by_kind("unsorted")
    data = (FIXTURES / entry["torrent"]).read_bytes()
    meta = parse_torrent(data)
    resorted = bencoding.encode(bencoding.decode(meta.info.raw))
    assert resorted != meta.info.raw  # the keys really are out of order
    assert meta.info_hash.hex() == entry["info_hash"]  # libtorrent's hash
    assert hashlib.sha1(resorted).hexdigest() != entry["info_hash"]


@pytest.mark.parametrize("entry", GOOD, ids=lambda e: e["torrent"])
def test_info_dict_alone_parses_to_the_same_info(entry: dict[str, Any]) -> None:
    # The ut_metadata path (BEP 9): a peer sends just the info dict's bytes.
    info = load(entry["torrent"]).info
    assert parse_info(info.raw) == info


def test_v2_only_is_unsupported() -> None:
    data = (FIXTURES / "hostile" / "v2_only.torrent").read_bytes()
    assert b"12:meta versioni2e" in data and b"6:pieces" not in data
    with pytest.raises(UnsupportedError, match=r"^info\.meta version: v2-only"):
        parse_torrent(data)


# ----------------------------------------------------------------------------- hostile


@pytest.mark.parametrize("entry", HOSTILE, ids=lambda e: e["torrent"])
def test_hostile_torrent(entry: dict[str, Any]) -> None:
    data = (FIXTURES / "hostile" / entry["torrent"]).read_bytes()
    if entry["expect"] == "reject":
        with pytest.raises(MetainfoError) as caught:
            parse_torrent(data)
        exc = caught.value
        assert type(exc) is ERRORS[entry["error"]]
        assert exc.field == entry["field"]
        assert str(exc).startswith(entry["field"] + ": ")
        assert "\n" not in str(exc)
        if "message_contains" in entry:
            assert entry["message_contains"] in str(exc)
    else:
        assert entry["expect"] == "sanitise"
        meta = parse_torrent(data)
        assert [f.path_str for f in meta.info.files] == entry["files"]


@pytest.mark.parametrize("entry", [e for e in HOSTILE if e["expect"] == "sanitise"],
                         ids=lambda e: e["torrent"])  # fmt: skip
def test_sanitised_paths_stay_inside_the_folder(entry: dict[str, Any]) -> None:
    meta = parse_torrent((FIXTURES / "hostile" / entry["torrent"]).read_bytes())
    for f in meta.info.files:
        for part in f.path:
            assert part not in ("", ".", "..")
            assert "/" not in part and "\\" not in part and "\x00" not in part
            assert not part.endswith((".", " "))


def test_hostile_manifest_covers_hardening_items() -> None:
    cases = " ".join(e["case"] for e in HOSTILE)
    for needle in ("'..'", "'../x'", "'a/../../x'", "'/etc/x'", "'C:\\x'", "'a\\..\\x'",
                   "['a', '', 'x']", "NUL", "trailing dot", "same path twice", "'README.txt'",
                   "piece length 0", "piece length -", "piece length 2^40", "pieces is 30",
                   "length -1", "2^63", "plain text", "'l' x 100000", "v2-only"):  # fmt: skip
        assert needle in cases, needle


# ----------------------------------------------------------------------------- creating


def test_build_torrent_exact_bytes() -> None:
    raw = build_info(
        name="a.txt", files=None, length=5, piece_length=16384, piece_hashes=b"\x01" * 20
    )
    head = b"d6:lengthi5e4:name5:a.txt12:piece lengthi16384e6:pieces20:"
    assert raw == head + b"\x01" * 20 + b"e"
    data = build_torrent(
        raw,
        trackers=[["http://a/ann", "http://b/ann"], ["udp://c:1/ann"]],
        url_list=["http://ws/"],
        comment="hi",
        created_by="tk",
        creation_date=7,
    )
    assert data == (
        b"d8:announce12:http://a/ann13:announce-listll12:http://a/ann12:http://b/annel"
        b"13:udp://c:1/annee7:comment2:hi10:created by2:tk13:creation datei7e4:info" + raw
        + b"8:url-listl10:http://ws/ee"
    )  # fmt: skip


@pytest.mark.parametrize(
    ("name", "files", "field"),
    [
        ("..", [NewFile(path=("a",), length=1)], "info.name"),
        ("ok", [NewFile(path=("..", "x"), length=1)], "info.files[0].path"),
        # Names the parser would change: a seeder would look for a file that is not there.
        ("dir. ", [NewFile(path=("a",), length=1)], "info.name"),
        ("ok", [NewFile(path=("a.txt",), length=1), NewFile(path=("A.txt",), length=1)],
         "info.files[1].path"),
        ("ok", [NewFile(path=("x", "b "), length=1)], "info.files[0].path"),
    ],
)  # fmt: skip
def test_build_info_refuses_what_would_not_read_back(
    name: str, files: list[NewFile], field: str
) -> None:
    with pytest.raises(MetainfoError) as caught:
        build_info(name=name, files=files, piece_length=16384, piece_hashes=b"\0" * 20)
    assert caught.value.field == field


# ----------------------------------------------------------------------------- properties


def _safe(text: str) -> bool:
    return text not in (".", "..") and not text.endswith((".", " "))


component = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\:", max_codepoint=0x2FFFF
    ),
    min_size=1,
    max_size=12,
).filter(_safe)
urls = st.builds(
    lambda host, port, path: f"http://{host}:{port}/{path}",
    st.from_regex(r"[a-z][a-z0-9.-]{0,15}", fullmatch=True),
    st.integers(1, 65535),
    st.from_regex(r"[a-zA-Z0-9/_.-]{0,20}", fullmatch=True),
)


def _no_clash(paths: list[tuple[str, ...]]) -> bool:
    """No two paths equal ignoring case, and no file is also a folder (the parser's rules)."""
    folded = {"/".join(p).casefold() for p in paths}
    if len(folded) != len(paths):
        return False
    return not any("/".join(p[:k]).casefold() in folded for p in paths for k in range(1, len(p)))


layouts = st.lists(
    st.tuples(st.lists(component, min_size=1, max_size=3).map(tuple), st.integers(0, 70_000)),
    min_size=1,
    max_size=8,
).filter(lambda fs: _no_clash([p for p, _ in fs]) and sum(n for _, n in fs) > 0)


@st.composite
def torrents(draw: st.DrawFn) -> dict[str, Any]:
    multi = draw(st.booleans())
    files = draw(layouts) if multi else None
    length = None if multi else draw(st.integers(1, 300_000))
    total = sum(n for _, n in files) if files else length
    assert total is not None
    piece_length = 2 ** draw(st.integers(14, 22))
    return {
        "name": draw(component),
        "files": files,
        "length": length,
        "piece_length": piece_length,
        "piece_hashes": draw(st.binary(min_size=20, max_size=20)) * -(-total // piece_length),
        "private": draw(st.booleans()),
        "trackers": draw(st.lists(st.lists(urls, min_size=1, max_size=3), max_size=3)),
        "url_list": draw(st.lists(urls, max_size=2)),
        "comment": draw(st.none() | st.text(min_size=1, max_size=30)),
        "created_by": draw(st.none() | st.text(min_size=1, max_size=20)),
        "creation_date": draw(st.none() | st.integers(0, 2**40)),
    }


@settings(suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(torrents())
def test_parse_of_build_round_trips(t: dict[str, Any]) -> None:
    files = None if t["files"] is None else [NewFile(path=p, length=n) for p, n in t["files"]]
    raw = build_info(
        name=t["name"],
        files=files,
        length=t["length"],
        piece_length=t["piece_length"],
        piece_hashes=t["piece_hashes"],
        private=t["private"],
    )
    meta = parse_torrent(
        build_torrent(
            raw,
            trackers=t["trackers"],
            url_list=t["url_list"],
            comment=t["comment"],
            created_by=t["created_by"],
            creation_date=t["creation_date"],
        )
    )
    info = meta.info
    assert info.raw == raw and info.info_hash == hashlib.sha1(raw).digest()
    assert meta.name == t["name"]
    assert info.multi_file is (files is not None)
    if files is None:
        assert [(f.path, f.length) for f in info.files] == [((t["name"],), t["length"])]
    else:
        assert [(f.path, f.length) for f in info.files] == [
            ((t["name"], *p), n) for p, n in t["files"]
        ]
    offsets = [f.offset for f in info.files]
    assert offsets == [sum(f.length for f in info.files[:i]) for i in range(len(info.files))]
    assert info.piece_length == t["piece_length"]
    assert info.piece_hashes == t["piece_hashes"]
    assert info.private is t["private"]
    assert [list(tier) for tier in meta.trackers] == t["trackers"]
    assert list(meta.url_list) == t["url_list"]
    assert meta.comment == t["comment"]
    assert meta.created_by == t["created_by"]
    assert meta.creation_date == t["creation_date"]


def _parse_or_error(data: bytes) -> None:
    try:
        meta = parse_torrent(data)
    except MetainfoError as exc:
        assert str(exc).startswith(exc.field + ": ") if exc.field else str(exc)
        return
    assert isinstance(meta, Metainfo)
    assert meta.info.total_length > 0


@given(st.binary(max_size=400))
def test_arbitrary_bytes_give_metainfo_or_metainfo_error(data: bytes) -> None:
    _parse_or_error(data)


SEED = (FIXTURES / "pad_libtorrent.torrent").read_bytes()


@given(
    st.lists(
        st.tuples(st.integers(0, len(SEED) - 1), st.integers(0, 2), st.binary(max_size=4)),
        min_size=1,
        max_size=4,
    )
)
def test_mutated_real_torrent_gives_metainfo_or_metainfo_error(
    edits: list[tuple[int, int, bytes]],
) -> None:
    # Random bytes rarely get past bencode; edits of a real torrent reach the field checks.
    data = bytearray(SEED)
    for pos, drop, insert in edits:
        data[pos : pos + drop] = insert
    _parse_or_error(bytes(data))


scalars = (
    st.integers(-(2**63), 2**63 - 1)
    | st.binary(max_size=8)
    | st.sampled_from([b"..", b"", b"a", b"p", 0, 1, 2, 16384, -1])
)
anything = st.recursive(
    scalars,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.binary(max_size=4), c, max_size=3),
    max_leaves=8,
)
file_dicts = st.dictionaries(
    st.sampled_from([b"length", b"path", b"path.utf-8", b"attr"]),
    anything | st.lists(st.sampled_from([b"a", b"..", b"", b"B", b"b."]), max_size=3),
)
info_dicts = st.dictionaries(
    st.sampled_from(
        [b"name", b"name.utf-8", b"piece length", b"pieces", b"length", b"files", b"private",
         b"meta version", b"attr"]
    ),
    anything | st.lists(file_dicts, max_size=4),
)  # fmt: skip


@given(info_dicts)
def test_arbitrary_info_dicts_give_info_or_metainfo_error(info: dict[bytes, Any]) -> None:
    _parse_or_error(bencoding.encode({b"info": info}))
