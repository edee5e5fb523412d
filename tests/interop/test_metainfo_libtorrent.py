"""libtorrent (2.1.1, the reference) and torrentkit read torrents the same way.

Torrents torrentkit makes load in libtorrent with the same info-hash, files, piece length,
private flag and trackers, and libtorrent's recheck of the payload finds every piece good;
every fixture's info-hash, computed by libtorrent now, equals ours.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libtorrent as lt
import pytest

from tests.interop.peers import libtorrent_session
from torrentkit.maketorrent import make_torrent
from torrentkit.metainfo import Metainfo, parse_torrent

pytestmark = pytest.mark.interop

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
GOOD: list[dict[str, Any]] = json.loads((FIXTURES / "manifest.json").read_text("utf-8"))


@dataclass(frozen=True, slots=True, kw_only=True)
class LtView:
    """What libtorrent reads from a torrent's bytes."""

    info_hash: str
    info_hash_v2: str | None
    name: str
    files: list[tuple[str, int, bool]]  # path, length, pad
    piece_length: int
    piece_hashes: bytes
    private: bool
    trackers: list[list[str]]
    url_list: list[str]
    comment: str
    created_by: str
    creation_date: int


def lt_view(data: bytes) -> LtView:
    atp = lt.load_torrent_buffer(data)
    ti = atp.ti
    assert ti is not None
    fs = ti.layout()
    tiers: list[list[str]] = []
    for url, tier in zip(atp.trackers, atp.tracker_tiers, strict=True):
        while len(tiers) <= tier:
            tiers.append([])
        tiers[tier].append(url)
    hashes = ti.info_hashes()
    return LtView(
        info_hash=str(hashes.v1),
        info_hash_v2=str(hashes.v2) if hashes.has_v2() else None,
        name=ti.name(),
        files=[
            (fs.file_path(i), fs.file_size(i), bool(fs.file_flags(i) & fs.flag_pad_file))
            for i in range(fs.num_files())
        ],
        piece_length=ti.piece_length(),
        piece_hashes=b"".join(bytes(ti.hash_for_piece(i)) for i in range(ti.num_pieces())),
        private=bool(ti.priv()),
        trackers=[t for t in tiers if t],
        url_list=list(atp.url_seeds),
        comment=atp.comment,
        created_by=atp.created_by,
        creation_date=atp.creation_date,
    )


def our_view(meta: Metainfo) -> LtView:
    info = meta.info
    return LtView(
        info_hash=info.info_hash.hex(),
        info_hash_v2=info.info_hash_v2.hex() if info.info_hash_v2 else None,
        name=info.name,
        files=[(f.path_str, f.length, f.pad) for f in info.files],
        piece_length=info.piece_length,
        piece_hashes=info.piece_hashes,
        private=info.private,
        trackers=[list(t) for t in meta.trackers],
        url_list=list(meta.url_list),
        comment=meta.comment or "",
        created_by=meta.created_by or "",
        creation_date=meta.creation_date or 0,
    )


# ----------------------------------------------------------------------------- our torrents


def write(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(str(path.name)).randbytes(size))


@pytest.fixture
def src(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    write(root / "solo.bin", 100_003)
    album = root / "Album été"
    write(album / "données" / "été" / "ß.txt", 30_000)
    write(album / "日本語" / "テスト.bin", 70_001)
    write(album / "cover.jpg", 12_345)
    write(album / "a" / "b" / "c" / "deep.bin", 40_000)
    write(album / "empty.txt", 0)
    return root


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    target: str
    piece_length: int | None = None
    private: bool = False
    trackers: list[list[str]] = field(default_factory=list)
    comment: str | None = None
    url_list: list[str] = field(default_factory=list)

    def make(self, src: Path, creation_date: int | None = None) -> bytes:
        return make_torrent(
            src / self.target,
            piece_length=self.piece_length,
            private=self.private,
            trackers=self.trackers,
            comment=self.comment,
            url_list=self.url_list,
            creation_date=creation_date,
        )


CASES = {
    "single": Case(target="solo.bin", piece_length=16384),
    "multi-nested-non-ascii": Case(target="Album été", piece_length=32768),
    "private": Case(target="Album été", private=True),
    "tiers-comment-webseeds": Case(
        target="solo.bin",
        trackers=[["http://127.0.0.1:6969/announce", "http://127.0.0.2:6969/announce"],
                  ["udp://127.0.0.1:6970/announce"]],
        comment="commentaire: été ✓",
        url_list=["http://127.0.0.1:8080/solo.bin"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_libtorrent_reads_our_torrents_as_we_do(src: Path, case: str) -> None:
    c = CASES[case]
    target = src / c.target
    data = c.make(src, creation_date=1_700_000_000)
    meta = parse_torrent(data)
    theirs = lt_view(data)
    assert theirs == our_view(meta)
    # ... and the view is what we asked for, not just something both sides agree on.
    assert theirs.private is c.private
    assert theirs.trackers == c.trackers
    assert theirs.url_list == c.url_list
    assert theirs.comment == (c.comment or "")
    assert theirs.creation_date == 1_700_000_000
    if c.piece_length is not None:
        assert theirs.piece_length == c.piece_length
    if target.is_dir():
        on_disk = sorted(
            (f"{target.name}/{p.relative_to(target).as_posix()}", p.stat().st_size)
            for p in target.rglob("*")
            if p.is_file()
        )
        assert sorted((path, size) for path, size, _ in theirs.files) == on_disk
    else:
        assert theirs.files == [(target.name, target.stat().st_size, False)]


# ----------------------------------------------------------------------------- fixtures


@pytest.mark.parametrize("entry", GOOD, ids=lambda e: e["torrent"])
def test_libtorrent_hashes_every_fixture_as_we_do(entry: dict[str, Any]) -> None:
    data = (FIXTURES / entry["torrent"]).read_bytes()
    theirs, ours = lt_view(data), our_view(parse_torrent(data))
    assert theirs == ours
    assert theirs.info_hash == entry["info_hash"]  # and the manifest is still current


# ----------------------------------------------------------------------------- recheck


@pytest.fixture
def session() -> Iterator[Any]:
    with libtorrent_session() as ses:
        yield ses


def recheck(ses: Any, torrents: list[tuple[bytes, Path]], timeout: float = 60.0) -> list[str]:
    """Let libtorrent check each payload; return the names of those it did not find complete."""
    handles = []
    for data, save_path in torrents:
        atp = lt.load_torrent_buffer(data)
        atp.trackers = []  # no announces, not even to 127.0.0.1
        atp.url_seeds = []
        atp.save_path = str(save_path)
        atp.flags = (
            lt.torrent_flags.disable_dht
            | lt.torrent_flags.disable_lsd
            | lt.torrent_flags.disable_pex
        )
        handles.append(ses.add_torrent(atp))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = [h.status() for h in handles]
        checking = (lt.torrent_status.checking_files, lt.torrent_status.checking_resume_data)
        if all(s.state not in checking and s.has_metadata for s in statuses):
            return [s.name for s in statuses if not s.is_seeding]
        time.sleep(0.05)
    pytest.fail("libtorrent did not finish checking in time")


def test_libtorrent_finds_every_piece_of_our_torrents_and_fixtures_good(
    session: Any, src: Path, tmp_path: Path
) -> None:
    # Payloads are copied: libtorrent may create files (e.g. empty ones) in its save path.
    data_copy = tmp_path / "data"
    shutil.copytree(FIXTURES / "data", data_copy)
    torrents = [((FIXTURES / e["torrent"]).read_bytes(), data_copy) for e in GOOD]
    torrents += [(c.make(src), src) for c in CASES.values()]
    # A control that must fail: one flipped byte in the copy of one fixture's payload.
    (control,) = [e for e in GOOD if e["torrent"] == "single_mktorrent.torrent"]
    payload = bytearray((data_copy / control["name"]).read_bytes())
    payload[len(payload) // 2] ^= 0x01
    (data_copy / control["name"]).write_bytes(payload)
    assert recheck(session, torrents) == [control["name"]]
