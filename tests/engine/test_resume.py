"""Fast resume: the resume file codec, saving and loading it, and fast_check on real files.

Layout of the torrent most tests use (piece length 4 KiB, 28 pieces)::

    a.bin      40,000 bytes   pieces  0 .. 9
    empty.txt       0 bytes   (no piece)
    b.bin      50,000 bytes   pieces  9 .. 21
    sub/c.bin   1,000 bytes   pieces 21 .. 22
    d.bin      20,000 bytes   pieces 22 .. 27
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst

from tests.engine.helpers_storage import FileSpec, build, pattern, piece
from torrentkit import bencoding
from torrentkit.engine import resume as resume_mod
from torrentkit.engine import storage as storage_mod
from torrentkit.engine.resume import (
    FileStamp,
    Loaded,
    ResumeData,
    ResumeError,
    bitfield_from_have,
    capture,
    decode,
    encode,
    fast_check,
    have_from_bitfield,
    load,
    resume_path,
    save,
)
from torrentkit.engine.storage import FileStorage, MemoryStorage, PieceStorage
from torrentkit.errors import LocalProtocolError, RemoteProtocolError
from torrentkit.ids import InfoHash
from torrentkit.metainfo import Info

PLEN = 4096
FILES: list[FileSpec] = [
    ("a.bin", pattern(40_000, 1)),
    ("empty.txt", b""),
    ("b.bin", pattern(50_000, 2)),
    (("sub", "c.bin"), pattern(1_000, 3)),
    ("d.bin", pattern(20_000, 4)),
]
INFO, PAYLOAD = build(FILES, PLEN)
N = INFO.num_pieces
A, EMPTY, B, C, D = range(5)
OTHER_INFO, _ = build(FILES, PLEN, name="other")


def test_the_layout_is_as_described() -> None:
    assert N == 28
    from torrentkit.engine.layout import Layout

    layout = Layout.from_info(INFO)
    assert [list(layout.file_pieces(i)) for i in (A, B, C, D)] == [
        list(range(0, 10)), list(range(9, 22)), [21, 22], list(range(22, 28))
    ]  # fmt: skip


def sample(**changes: Any) -> ResumeData:
    fields: dict[str, Any] = {
        "info_hash": INFO.info_hash,
        "save_path": "/srv/dl",
        "pieces": bitfield_from_have([i % 3 == 0 for i in range(N)]),
        "files": (
            FileStamp(size=40_000, mtime_ns=1_700_000_000_123_456_789),
            FileStamp(size=0, mtime_ns=5),
            None,
            FileStamp(size=1_000, mtime_ns=-7),
            FileStamp(size=20_000, mtime_ns=0),
        ),
        "uploaded": 12_345,
        "downloaded": 67_890,
        "active_seconds": 3600.5,
        "seeding_seconds": 12.25,
        "file_priorities": (4, 0, 7, 1, 4),
    }
    fields.update(changes)
    return ResumeData(**fields)


def doc_of(data: ResumeData) -> dict[bytes, Any]:
    decoded = bencoding.decode(encode(data))
    assert isinstance(decoded, dict)
    return decoded


# --------------------------------------------------------------------------- the codec


def test_round_trip_exact_bytes() -> None:
    data = sample()
    raw = encode(data)
    assert decode(raw, INFO) == data
    doc = doc_of(data)
    assert doc[b"version"] == 1
    assert doc[b"info-hash"] == INFO.info_hash
    assert doc[b"files"][2] == [] and doc[b"files"][3] == [1_000, -7]
    assert doc[b"active-ms"] == 3_600_500 and doc[b"seeding-ms"] == 12_250
    assert doc[b"file-priorities"] == [4, 0, 7, 1, 4]
    # without priorities the key is absent and reads back as None
    bare = sample(file_priorities=None)
    assert b"file-priorities" not in doc_of(bare)
    assert decode(encode(bare), INFO).file_priorities is None


def test_bitfield_helpers_use_bep3_order() -> None:
    assert bitfield_from_have([True, False, False, False, False, False, False, False, True]) == (
        b"\x80\x80"
    )
    assert have_from_bitfield(b"\x40", 3) == [False, True, False]
    with pytest.raises(LocalProtocolError):
        have_from_bitfield(b"\x00\x00", 3)


def resume_strategy() -> hst.SearchStrategy[ResumeData]:
    int64 = hst.integers(min_value=-(2**63), max_value=2**63 - 1)
    count = hst.integers(min_value=0, max_value=2**63 - 1)
    stamp = hst.none() | hst.builds(
        FileStamp, size=count, mtime_ns=int64
    )  # fmt: skip
    ms = hst.integers(min_value=0, max_value=10**15).map(lambda v: v / 1000)
    return hst.builds(
        ResumeData,
        info_hash=hst.just(INFO.info_hash),
        save_path=hst.text(max_size=40),
        pieces=hst.lists(hst.booleans(), min_size=N, max_size=N).map(bitfield_from_have),
        files=hst.tuples(*[stamp] * len(INFO.files)),
        uploaded=count,
        downloaded=count,
        active_seconds=ms,
        seeding_seconds=ms,
        file_priorities=hst.none()
        | hst.tuples(*[hst.integers(min_value=0, max_value=7)] * len(INFO.files)),
        unsynced_boot=hst.just("boot-0123"),
        unsynced_files=hst.sets(hst.integers(min_value=0, max_value=len(INFO.files) - 1)).map(
            lambda chosen: tuple(sorted(chosen))
        ),
    ).map(lambda d: d if d.unsynced_files else dataclasses.replace(d, unsynced_boot=None))


@given(resume_strategy())
def test_any_resume_data_round_trips(data: ResumeData) -> None:
    raw = encode(data)
    back = decode(raw, INFO)
    # Seconds are kept to the millisecond: equal up to that, and encoding is idempotent.
    assert encode(back) == raw
    assert back.files == data.files and back.pieces == data.pieces
    assert (back.unsynced_boot, back.unsynced_files) == (data.unsynced_boot, data.unsynced_files)
    assert abs(back.active_seconds - data.active_seconds) < 1e-3


def decode_or_error(raw: bytes) -> None:
    """The fuzz invariant: any bytes give a ResumeData for INFO or a ResumeError."""
    try:
        got = decode(raw, INFO)
    except ResumeError:
        return
    assert isinstance(got, ResumeData) and got.info_hash == INFO.info_hash


@given(hst.binary(max_size=300))
def test_any_bytes_give_resume_data_or_resume_error(raw: bytes) -> None:
    decode_or_error(raw)


_values = hst.recursive(
    hst.integers(min_value=-(2**63), max_value=2**63 - 1) | hst.binary(max_size=24),
    lambda inner: (
        hst.lists(inner, max_size=4) | hst.dictionaries(hst.binary(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_KEYS = [b"version", b"info-hash", b"save-path", b"pieces", b"files", b"uploaded",
         b"downloaded", b"active-ms", b"seeding-ms", b"file-priorities"]  # fmt: skip


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    hst.dictionaries(hst.sampled_from(_KEYS), _values, max_size=10),
    hst.booleans(),
    hst.data(),
)
def test_any_bencoded_document_gives_resume_data_or_resume_error(
    replaced: dict[bytes, Any], start_valid: bool, data: hst.DataObject
) -> None:
    """Near-valid documents reach the field checks: start from a valid one (or nothing)
    and replace some fields by arbitrary bencode values."""
    doc: dict[bytes, Any] = doc_of(sample()) if start_valid else {}
    doc.update(replaced)
    decode_or_error(bencoding.encode(doc))
    # and the same bytes damaged: truncated, or one byte changed
    raw = bytearray(bencoding.encode(doc))
    cut = data.draw(hst.integers(min_value=0, max_value=len(raw)))
    decode_or_error(bytes(raw[:cut]))
    k = data.draw(hst.integers(min_value=0, max_value=len(raw) - 1))
    raw[k] = data.draw(hst.integers(min_value=0, max_value=255))
    decode_or_error(bytes(raw))


def encode_old_format() -> bytes:
    """What the CLI wrote before this module existed (no version, no file stamps)."""
    return bencoding.encode(
        {"info-hash": INFO.info_hash, "save-path": "/x", "pieces": b"\0" * 4, "uploaded": 0,
         "downloaded": 0}
    )  # fmt: skip


def _with(**fields: Any) -> bytes:
    doc = doc_of(sample())
    for key, value in fields.items():
        k = key.replace("_", "-").encode()
        if value is None:
            del doc[k]
        else:
            doc[k] = value
    return bencoding.encode(doc)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"", "not a resume file"),
        (b"d4:spami1ee", "version"),
        (b"le", "not a dictionary"),
        (encode(sample())[:-1], "not a resume file"),
        (encode(sample()) + b"x", "not a resume file"),
        # the first resume files (before fast resume) have no version and no file stamps
        (encode_old_format(), "version"),
        (_with(version=2), "version"),
        (_with(info_hash=OTHER_INFO.info_hash), "info-hash"),
        (_with(info_hash=b"short"), "info-hash"),
        (_with(info_hash=None), "info-hash: missing"),
        (_with(save_path=b"\xff\xfe"), "save-path"),
        (_with(save_path=5), "save-path"),
        (_with(pieces=b"\0" * 3), "pieces"),
        (_with(pieces=b"\0" * 5), "pieces"),
        (_with(pieces=b"\0\0\0\x01"), "spare bits"),  # 28 pieces: the last 4 bits are spare
        (_with(pieces=[1, 2]), "pieces"),
        (_with(files=[[1, 2]] * 4), "files: 4 stamps"),
        (_with(files=[[1, 2]] * 6), "files: 6 stamps"),
        (_with(files=[[1, 2], [], [-1, 2], [], []]), "files[2]"),
        (_with(files=[[1, 2], [], [1], [], []]), "files[2]"),
        (_with(files=[[1, 2], [], b"x", [], []]), "files[2]"),
        (_with(files=b"x"), "files"),
        (_with(uploaded=-1), "uploaded"),
        (_with(downloaded=b"5"), "downloaded"),
        (_with(active_ms=-5), "active-ms"),
        (_with(seeding_ms=[]), "seeding-ms"),
        (_with(file_priorities=[1, 2]), "file-priorities"),
        (_with(file_priorities=[1, 2, 8, 1, 1]), "file-priorities[2]"),
        (_with(file_priorities=[1, 2, -1, 1, 1]), "file-priorities[2]"),
        (_with(file_priorities=b"x"), "file-priorities"),
        (_with(unsynced_boot=b"b", unsynced_files=[5]), "unsynced-files"),
        (_with(unsynced_boot=b"b", unsynced_files=[2, 0]), "unsynced-files"),
        (_with(unsynced_boot=b"b", unsynced_files=[0, 0]), "unsynced-files"),
        (_with(unsynced_boot=b"b", unsynced_files=b"x"), "unsynced-files"),
        (_with(unsynced_boot=b"b", unsynced_files=[b"x"]), "unsynced-files"),
        (_with(unsynced_boot=b"b"), "unsynced-files: missing"),
        (_with(unsynced_boot=b"\xff", unsynced_files=[0]), "unsynced-boot"),
        (_with(unsynced_boot=b"x" * 65, unsynced_files=[0]), "unsynced-boot"),
        (_with(unsynced_boot=3, unsynced_files=[0]), "unsynced-boot"),
    ],
)
def test_bad_resume_data_is_refused_naming_the_field(raw: bytes, field: str) -> None:
    with pytest.raises(ResumeError, match=field.replace("[", r"\[")) as caught:
        decode(raw, INFO)
    assert isinstance(caught.value, RemoteProtocolError)


@pytest.mark.parametrize(
    "change",
    [
        {"info_hash": b"x" * 19},
        {"uploaded": -1},
        {"downloaded": True},
        {"active_seconds": float("nan")},
        {"seeding_seconds": -0.5},
        {"files": (FileStamp(size=-1, mtime_ns=0), None, None, None, None)},
        {"file_priorities": (1, 2)},
        {"file_priorities": (1, 2, 3, 4, 99)},
        {"unsynced_files": (0,)},  # without a boot id
        {"unsynced_boot": "b", "unsynced_files": (5,)},
        {"unsynced_boot": "b", "unsynced_files": (1, 0)},
        {"unsynced_boot": "x" * 65, "unsynced_files": (0,)},
    ],
)
def test_resume_data_validates_itself(change: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError):
        sample(**change)


# --------------------------------------------------------------------------- files


def test_save_and_load(tmp_path: Path) -> None:
    state = tmp_path / "state" / "deeper"  # created on demand
    assert load(state, INFO) == Loaded(data=None, problem=None)
    data = sample()
    path = save(state, data)
    assert path == resume_path(state, INFO.info_hash) == state / f"{INFO.info_hash.hex()}.resume"
    assert load(state, INFO) == Loaded(data=data)
    newer = sample(uploaded=99)
    save(state, newer)
    assert load(state, INFO).data == newer
    assert sorted(p.name for p in state.iterdir()) == [path.name]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"garbage", "not a resume file"),
        (b"", "not a resume file"),
        (encode(sample())[:50], "not a resume file"),
        (encode(sample(files=(None,) * 4, file_priorities=None)), "files: 4 stamps"),
    ],
)
def test_a_damaged_file_loads_as_none_with_the_reason(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    resume_path(tmp_path, INFO.info_hash).write_bytes(content)
    loaded = load(tmp_path, INFO)
    assert loaded.data is None
    assert loaded.problem is not None and problem in loaded.problem
    assert str(resume_path(tmp_path, INFO.info_hash)) in loaded.problem


def test_another_torrents_file_under_our_name_is_refused(tmp_path: Path) -> None:
    foreign = sample(info_hash=OTHER_INFO.info_hash)
    resume_path(tmp_path, INFO.info_hash).write_bytes(encode(foreign))
    loaded = load(tmp_path, INFO)
    assert loaded.data is None and loaded.problem is not None and "info-hash" in loaded.problem


def test_an_unreadable_or_huge_file_loads_as_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resume_path(tmp_path, INFO.info_hash).mkdir()  # a folder where the file should be
    loaded = load(tmp_path, INFO)
    assert loaded.data is None and loaded.problem
    resume_path(tmp_path, INFO.info_hash).rmdir()
    monkeypatch.setattr(resume_mod, "MAX_RESUME_BYTES", 10)
    save(tmp_path, sample())
    loaded = load(tmp_path, INFO)
    assert loaded.data is None and loaded.problem and "larger than" in loaded.problem


def test_save_is_atomic_when_the_fsync_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = sample()
    save(tmp_path, old)
    before = resume_path(tmp_path, INFO.info_hash).read_bytes()

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        save(tmp_path, sample(uploaded=1))
    assert resume_path(tmp_path, INFO.info_hash).read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [resume_path(tmp_path, INFO.info_hash).name]


def test_save_is_atomic_when_encoding_or_renaming_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save(tmp_path, sample())
    before = resume_path(tmp_path, INFO.info_hash).read_bytes()

    def broken(*args: object) -> Any:
        raise OSError(5, "Input/output error")

    with monkeypatch.context() as m:
        m.setattr(resume_mod, "encode", broken)
        with pytest.raises(OSError):
            save(tmp_path, sample(uploaded=1))
    with monkeypatch.context() as m:
        m.setattr(os, "replace", broken)
        with pytest.raises(OSError):
            save(tmp_path, sample(uploaded=1))
    assert resume_path(tmp_path, INFO.info_hash).read_bytes() == before
    assert len(list(tmp_path.iterdir())) == 1


# --------------------------------------------------------------------------- fast_check


class Spy:
    """Records the pieces a storage hashes (every recheck batch goes through
    ``_check_batch``), wrapped on the instance so threads see it too."""

    def __init__(self, st: PieceStorage) -> None:
        self.hashed: list[int] = []
        inner = st._check_batch

        def check(first: int, stop: int, buf: bytearray) -> list[bool]:
            self.hashed.extend(range(first, stop))
            return inner(first, stop, buf)

        st._check_batch = check  # type: ignore[method-assign]

    def take(self) -> list[int]:
        out, self.hashed = sorted(self.hashed), []
        return out


def path_of(st: FileStorage, file_index: int) -> Path:
    return st.root.joinpath(*st.info.files[file_index].path)


def rewrite(st: FileStorage, file_index: int, offset: int) -> None:
    """Flip one byte of a file and move its mtime on by a second (as any edit would)."""
    path = path_of(st, file_index)
    mtime = path.stat().st_mtime_ns
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0xFF]))
    os.utime(path, ns=(mtime + 10**9, mtime + 10**9))


@pytest.fixture
async def complete(tmp_path: Path) -> AsyncIterator[tuple[FileStorage, ResumeData]]:
    """A complete torrent on disk (3 workers, small batches so runs split) and its valid
    resume data, captured as the engine would."""
    root = tmp_path / "dl"
    root.mkdir()
    with trio.fail_after(10):
        st = FileStorage(INFO, root, workers=3)
        for i in range(N):
            assert await st.write_piece(i, piece(INFO, PAYLOAD, i))
        await st.allocate()  # the zero-length file too
        data = await capture(
            st,
            save_path=root,
            pieces=[True] * N,
            uploaded=10,
            downloaded=INFO.total_length,
            active_seconds=60.0,
            seeding_seconds=0.0,
        )
    yield st, data
    with trio.fail_after(10):
        await st.close()


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage_mod, "BATCH_BYTES", 3 * PLEN)


async def test_valid_resume_data_hashes_nothing(
    complete: tuple[FileStorage, ResumeData], tmp_path: Path
) -> None:
    st, data = complete
    spy = Spy(st)
    seen: list[tuple[int, bool]] = []
    with trio.fail_after(10):
        # through the file, as a restart would
        save(tmp_path / "state", data)
        loaded = load(tmp_path / "state", INFO)
        assert loaded.data == data
        result = await fast_check(
            st, INFO, loaded.data, progress=lambda i, ok: seen.append((i, ok))
        )
    assert result.have == [True] * N
    assert result.trusted == tuple(range(N))
    assert result.rechecked == () and result.changed_files == () and not result.full
    assert spy.take() == []
    assert sorted(seen) == [(i, True) for i in range(N)]


async def test_one_changed_file_rehashes_only_its_pieces(
    complete: tuple[FileStorage, ResumeData],
) -> None:
    st, data = complete
    rewrite(st, B, 20_000)  # payload offset 60,000: piece 14
    spy = Spy(st)
    seen: list[tuple[int, bool]] = []
    with trio.fail_after(10):
        result = await fast_check(st, INFO, data, progress=lambda i, ok: seen.append((i, ok)))
    b_pieces = list(range(9, 22))
    assert list(st.layout.file_pieces(B)) == b_pieces
    assert result.changed_files == (B,)
    assert result.rechecked == tuple(b_pieces)
    assert spy.take() == b_pieces
    assert result.trusted == tuple(p for p in range(N) if p not in b_pieces)
    assert [p for p in range(N) if not result.have[p]] == [14]
    assert sorted(seen) == [(p, p != 14) for p in range(N)]  # once per piece


async def test_a_truncated_file_has_its_pieces_rehashed(
    complete: tuple[FileStorage, ResumeData],
) -> None:
    st, data = complete
    os.truncate(path_of(st, D), 10_000)  # payload 91,000..101,000 stays: pieces 22..24
    spy = Spy(st)
    with trio.fail_after(10):
        result = await fast_check(st, INFO, data)
    assert result.changed_files == (D,)
    assert result.rechecked == tuple(range(22, 28)) and spy.take() == list(range(22, 28))
    # 22 starts in c.bin; 91,000 + 10,000 = 101,000 lies in piece 24
    assert [p for p in range(N) if not result.have[p]] == [24, 25, 26, 27]


async def test_a_missing_or_replaced_file_has_its_pieces_rehashed(
    complete: tuple[FileStorage, ResumeData],
) -> None:
    st, data = complete
    path_of(st, C).unlink()
    a = path_of(st, A)
    a.rename(a.with_name("a.real"))
    a.symlink_to("a.real")  # a symlink is never followed: the file counts as missing
    spy = Spy(st)
    with trio.fail_after(10):
        result = await fast_check(st, INFO, data)
    assert result.changed_files == (A, C)
    assert result.rechecked == (*range(0, 10), 21, 22)
    # Decided now, but only the pieces that also hold bytes of a file still on disk are
    # read: the others cannot be complete.
    assert spy.take() == [9, 21, 22]
    assert [p for p in range(N) if not result.have[p]] == [*range(0, 10), 21, 22]


async def test_bytes_changed_behind_a_restored_stamp_are_trusted(
    complete: tuple[FileStorage, ResumeData],
) -> None:
    """The documented limit (libtorrent and Transmission share it): fast resume trusts size
    and mtime. Someone who edits a file and puts its mtime back is not noticed."""
    st, data = complete
    path = path_of(st, B)
    before = path.stat().st_mtime_ns
    rewrite(st, B, 20_000)
    os.utime(path, ns=(before, before))
    with trio.fail_after(10):
        result = await fast_check(st, INFO, data)
    assert result.rechecked == () and all(result.have)


async def test_a_new_download_is_checked_without_reading(tmp_path: Path) -> None:
    """No resume data and none of the files on disk yet: every piece is decided (missing)
    without a single read, and progress still reports each one."""
    root = tmp_path / "new"
    root.mkdir()
    seen: list[tuple[int, bool]] = []
    async with FileStorage(INFO, root) as st:
        spy = Spy(st)
        with trio.fail_after(10):
            result = await fast_check(st, INFO, None, progress=lambda i, ok: seen.append((i, ok)))
    assert spy.take() == [] and result.full and not any(result.have)
    assert sorted(seen) == [(i, False) for i in range(N)]
    assert list(root.iterdir()) == []  # and nothing was created


async def test_no_resume_data_means_a_full_recheck(
    complete: tuple[FileStorage, ResumeData], tmp_path: Path
) -> None:
    st, _ = complete
    rewrite(st, A, 0)
    resume_path(tmp_path, INFO.info_hash).write_bytes(b"damaged")
    loaded = load(tmp_path, INFO)
    assert loaded.data is None and loaded.problem
    spy = Spy(st)
    with trio.fail_after(10):
        result = await fast_check(st, INFO, loaded.data)
    assert result.full and result.rechecked == tuple(range(N)) and result.trusted == ()
    assert spy.take() == list(range(N))
    assert [p for p in range(N) if not result.have[p]] == [0]


async def test_resume_data_of_another_torrent_is_a_callers_bug(
    complete: tuple[FileStorage, ResumeData],
) -> None:
    st, data = complete
    with trio.fail_after(10):
        with pytest.raises(LocalProtocolError):
            await fast_check(st, INFO, sample(info_hash=OTHER_INFO.info_hash))
        with pytest.raises(LocalProtocolError):
            await fast_check(st, OTHER_INFO, data)


async def test_unverified_pieces_in_unchanged_files_stay_missing_unhashed(
    complete: tuple[FileStorage, ResumeData],
) -> None:
    """The bytes of pieces 3 and 15 are correct on disk, but the resume data says they
    were not verified: with their files unchanged they stay missing, and nothing is hashed
    (a piece still being written would look exactly like this)."""
    st, data = complete
    partial = sample(
        files=data.files,
        pieces=bitfield_from_have([p not in (3, 15) for p in range(N)]),
        file_priorities=None,
    )
    spy = Spy(st)
    with trio.fail_after(10):
        result = await fast_check(st, INFO, partial)
    assert spy.take() == [] and result.rechecked == ()
    assert [p for p in range(N) if not result.have[p]] == [3, 15]
    # ...but once their file changes (the user copied a complete one in), they are hashed
    path = path_of(st, A)
    os.utime(path, ns=(1, 1))
    with trio.fail_after(10):
        result = await fast_check(st, INFO, partial)
    assert spy.take() == list(range(0, 10))
    assert [p for p in range(N) if not result.have[p]] == [15]


async def test_a_claimed_piece_whose_file_was_missing_when_saved_is_hashed() -> None:
    """Inconsistent resume data (claims piece 0 while a.bin was not on disk): checked,
    not trusted."""
    with trio.fail_after(10):
        st = MemoryStorage(INFO)
        data = sample(
            files=(None,) * 5, pieces=bitfield_from_have([p == 0 for p in range(N)])
        )  # fmt: skip
        spy = Spy(st)
        result = await fast_check(st, INFO, data)
    # Decided now (not trusted); nothing is read, as none of its files is in storage.
    assert spy.take() == [] and result.rechecked == (0,) and not any(result.have)


async def test_pad_files_never_count_as_changed(tmp_path: Path) -> None:
    info, payload = build(
        [("a", pattern(3_000, 1)), ("pad", PLEN - 3_000), ("b", pattern(9_000, 2))], PLEN
    )
    root = tmp_path / "dl"
    root.mkdir()
    with trio.fail_after(10):
        async with FileStorage(info, root) as st:
            for i in range(info.num_pieces):
                assert await st.write_piece(i, piece(info, payload, i))
            stamps = await st.file_stamps()
            assert stamps[1] is None and stamps[0] is not None and stamps[2] is not None
            data = await capture(st, save_path=root, pieces=[True] * info.num_pieces,
                                 uploaded=0, downloaded=0, active_seconds=0,
                                 seeding_seconds=0)  # fmt: skip
            spy = Spy(st)
            result = await fast_check(st, info, data)
            assert spy.take() == [] and all(result.have)
            rewrite(st, 2, 0)  # b: pieces 1..3; the pad only shares piece 0 with a
            result = await fast_check(st, info, data)
            assert spy.take() == [1, 2, 3] and result.have == [True, False, True, True]


async def test_capture_takes_the_bitfield_before_the_stamps(
    complete: tuple[FileStorage, ResumeData],
) -> None:
    """The safe side of the ordering: a piece written after the bitfield was taken (but
    before the stamps) is not claimed, so it stays missing on the next start; a piece
    written after capture changes its file, which is then rehashed."""
    st, _ = complete
    with trio.fail_after(10):
        fresh = FileStorage(INFO, st.root.parent / "dl2")
        fresh.root.mkdir()
        async with fresh:
            for p in range(10):  # a.bin complete
                assert await fresh.write_piece(p, piece(INFO, PAYLOAD, p))
            bits = bitfield_from_have([p < 10 for p in range(N)])  # what the picker said
            assert await fresh.write_piece(12, piece(INFO, PAYLOAD, 12))  # meanwhile
            data = await capture(fresh, save_path=fresh.root, pieces=bits, uploaded=0,
                                 downloaded=0, active_seconds=1.5, seeding_seconds=0.0)  # fmt: skip
            result = await fast_check(fresh, INFO, data)
            assert result.rechecked == () and result.have == [p < 10 for p in range(N)]
            # piece 9 spans a.bin and b.bin: only trusted while b.bin is unchanged
            os.utime(path_of(fresh, B), ns=(1, 1))
            result = await fast_check(fresh, INFO, data)
            assert result.rechecked == tuple(range(9, 22))
            assert [p for p in range(N) if result.have[p]] == [*range(10), 12]


async def test_capture_accepts_a_bitfield_and_checks_its_length(
    complete: tuple[FileStorage, ResumeData],
) -> None:
    st, data = complete
    with trio.fail_after(10):
        again = await capture(st, save_path=st.root, pieces=data.pieces, uploaded=10,
                              downloaded=INFO.total_length, active_seconds=60.0,
                              seeding_seconds=0.0, sync=False)  # fmt: skip
        assert again == data
        with pytest.raises(LocalProtocolError):
            await capture(st, save_path="x", pieces=b"\xff", uploaded=0, downloaded=0,
                          active_seconds=0, seeding_seconds=0)  # fmt: skip


# --------------------------------------------------------------------------- storage additions


async def test_file_stamps_on_disk(tmp_path: Path) -> None:
    root = tmp_path / "dl"
    with trio.fail_after(10):
        async with FileStorage(INFO, root) as st:
            assert await st.file_stamps() == [None] * 5  # no root yet
            root.mkdir()
            assert await st.write_piece(0, piece(INFO, PAYLOAD, 0))
            stamps = await st.file_stamps()
            st_a = path_of(st, A).stat()
            assert stamps == [FileStamp(size=40_000, mtime_ns=st_a.st_mtime_ns)] + [None] * 4
            os.mkfifo(path_of(st, EMPTY))  # not a regular file: as if missing
            outside = tmp_path / "outside"
            outside.write_bytes(b"x" * 50_000)
            path_of(st, B).symlink_to(outside)
            assert (await st.file_stamps())[1:3] == [None, None]


async def test_memory_storage_versions_act_as_mtimes() -> None:
    with trio.fail_after(10):
        st = MemoryStorage(INFO, PAYLOAD)
        first = await st.file_stamps()
        assert first[EMPTY] == FileStamp(size=0, mtime_ns=first[EMPTY].mtime_ns)  # type: ignore[union-attr]
        assert [s.size if s else None for s in first] == [40_000, 0, 50_000, 1_000, 20_000]
        data = ResumeData(info_hash=INFO.info_hash, save_path="", files=tuple(first),
                          pieces=bitfield_from_have([True] * N))  # fmt: skip
        spy = Spy(st)
        assert (await fast_check(st, INFO, data)).trusted == tuple(range(N))
        assert await st.write_piece(25, piece(INFO, PAYLOAD, 25))  # a write is a new version
        result = await fast_check(st, INFO, data)
        assert result.changed_files == (D,) and spy.take() == list(range(22, 28))
        st.files[A][0] ^= 1  # an edit behind the storage's back, announced with touch()
        st.touch(A)
        result = await fast_check(st, INFO, data)
        assert result.changed_files == (A, D) and result.have[0] is False
        # A new storage over the same bytes never reuses an old version
        other = MemoryStorage(INFO, PAYLOAD)
        assert all(
            x != y for x, y in zip(first, await other.file_stamps(), strict=True) if x
        )  # fmt: skip


Maker = Callable[[Info], PieceStorage]


@pytest.fixture(params=["file", "memory"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Maker:
    if request.param == "memory":
        return MemoryStorage
    root = tmp_path / "dl"
    root.mkdir()
    return lambda info: FileStorage(info, root, workers=3)


async def test_recheck_only_hashes_the_given_pieces(make: Maker) -> None:
    with trio.fail_after(10):
        async with make(INFO) as st:
            for i in range(N):
                assert await st.write_piece(i, piece(INFO, PAYLOAD, i))
            spy = Spy(st)
            seen: list[int] = []
            wanted = [27, 3, 4, 5, 6, 7, 8, 9, 10, 3, 0, 20]
            have = await st.recheck(lambda i, ok: seen.append(i), only=iter(wanted))
            assert have == [p in wanted for p in range(N)]
            assert spy.take() == sorted(seen) == sorted(set(wanted))
            assert await st.recheck(only=[]) == [False] * N and spy.take() == []
            assert await st.recheck() == [True] * N and spy.take() == list(range(N))
            for bad in ([N], [-1], [0, N + 5]):
                with pytest.raises(LocalProtocolError):
                    await st.recheck(only=bad)


async def test_sync_is_harmless_with_missing_files(make: Maker) -> None:
    with trio.fail_after(10):
        async with make(INFO) as st:
            await st.sync()
            assert await st.write_piece(0, piece(INFO, PAYLOAD, 0))
            await st.sync()


def test_info_hash_type_is_kept() -> None:
    data = decode(encode(sample()), INFO)
    assert isinstance(data.info_hash, InfoHash)


# --------------------------------------------------------------------------- saves without fsync


def test_boot_id_and_dirty_window() -> None:
    boot = resume_mod.boot_id()
    assert len(boot) == 36 and boot.count("-") == 4  # Linux: a UUID, the same all along
    assert resume_mod.boot_id() == boot
    assert resume_mod.dirty_window() >= 120.0


async def test_a_save_without_fsync_names_the_files_written_lately(make: Maker) -> None:
    with trio.fail_after(10):
        async with make(INFO) as st:
            assert await st.write_piece(0, piece(INFO, PAYLOAD, 0))  # a.bin
            assert await st.write_piece(N - 1, piece(INFO, PAYLOAD, N - 1))  # d.bin
            kwargs: dict[str, Any] = dict(
                save_path="/x", pieces=[i in (0, N - 1) for i in range(N)], uploaded=0,
                downloaded=0, active_seconds=0.0, seeding_seconds=0.0,
            )  # fmt: skip
            data = await capture(st, sync=False, boot="boot-1", **kwargs)
            assert (data.unsynced_boot, data.unsynced_files) == ("boot-1", (A, D))
            assert decode(encode(data), INFO) == data
            # A sync makes them durable: the next save names nothing.
            synced = await capture(st, boot="boot-1", **kwargs)
            assert (synced.unsynced_boot, synced.unsynced_files) == (None, ())
            assert (await capture(st, sync=False, boot="boot-1", **kwargs)).unsynced_files == ()
            assert b"unsynced" not in encode(synced)
            # Written longer ago than the kernel keeps pages dirty: not named either.
            assert await st.write_piece(1, piece(INFO, PAYLOAD, 1))
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(resume_mod, "dirty_window", lambda: 0.0)
                old = await capture(st, sync=False, boot="boot-1", **kwargs)
            assert old.unsynced_files == ()


async def test_after_a_reboot_the_files_saved_unsynced_are_hashed_again(tmp_path: Path) -> None:
    root = tmp_path / "dl"
    root.mkdir()
    with trio.fail_after(10):
        async with FileStorage(INFO, root) as st:
            for i in range(N):
                assert await st.write_piece(i, piece(INFO, PAYLOAD, i))
            await st.allocate()
            await st.sync()  # every file durable...
            assert await st.write_piece(0, piece(INFO, PAYLOAD, 0))  # ...but a.bin again
            data = await capture(st, save_path=root, pieces=[True] * N, uploaded=0,
                                 downloaded=0, active_seconds=0.0, seeding_seconds=0.0,
                                 sync=False, boot="boot-1")  # fmt: skip
            assert data.unsynced_files == (A,)
            a_pieces = tuple(st.layout.file_pieces(A))
            # Same boot: the page cache holds what was written; nothing is hashed.
            same = await fast_check(st, INFO, data, boot="boot-1")
            assert same.rechecked == () and all(same.have)
            # The machine booted since, and a power cut lost a.bin's last write: its bytes
            # are zeros under the same size and mtime. Its pieces are hashed and found bad;
            # the other files' pieces are still trusted.
            path = path_of(st, A)
            stat = path.stat()
            path.write_bytes(bytes(stat.st_size))
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            await st._forget_open_files()
            after = await fast_check(st, INFO, data, boot="boot-2")
            assert after.rechecked == a_pieces
            assert [p for p in range(N) if not after.have[p]] == list(a_pieces)
            # No boot id to compare with (another OS): the same caution.
            assert (await fast_check(st, INFO, data, boot="")).rechecked == a_pieces
            # Data saved with a sync is trusted after any reboot (as before).
            synced = dataclasses.replace(data, unsynced_boot=None, unsynced_files=())
            assert (await fast_check(st, INFO, synced, boot="boot-2")).rechecked == ()
