"""FileStorage and MemoryStorage: the same behaviour tests run on both; disk safety on files.

"Read-only folder" technique: the tests run as root in CI, where chmod does not stop a
write. So an unwritable place is made with a regular FILE standing where the torrent's
folder must be (ENOTDIR for root too), and a full disk with RLIMIT_FSIZE (EFBIG: the
kernel enforces it for root as well; Python ignores SIGXFSZ, so the write just fails).
"""

from __future__ import annotations

import hashlib
import os
import resource
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as hst

from tests.engine.helpers_storage import build, build_single, pattern, piece
from torrentkit.engine import storage as storage_mod
from torrentkit.engine.storage import FileStorage, MemoryStorage, PieceStorage, safe_join
from torrentkit.errors import LocalProtocolError, StorageError
from torrentkit.metainfo import Info

PLEN = 16 * 1024

# a: 40,000 | empty | b: 50,000 | c (sub/c.bin): 1,000 | d: 20,000  -> 111,000 bytes, 7 pieces
FILES = [
    ("a.bin", pattern(40_000, 1)),
    ("empty.txt", b""),
    ("b.bin", pattern(50_000, 2)),
    (("sub", "c.bin"), pattern(1_000, 3)),
    ("d.bin", pattern(20_000, 4)),
]


@pytest.fixture
def torrent() -> tuple[Info, bytes]:
    return build(FILES, PLEN)


Maker = Callable[[Info], PieceStorage]


@pytest.fixture(params=["file", "memory", "file-small-chunks", "file-drop"])
def make(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Maker:
    """A storage factory. ``file-small-chunks`` shrinks the read buffer and batch sizes so
    pieces are hashed incrementally across several reads and many batches run on 3 workers;
    ``file-drop`` releases written pieces from the page cache (``page_cache="drop"``)."""
    if request.param == "memory":
        return MemoryStorage
    root = tmp_path / "dl"
    root.mkdir()
    if request.param == "file-small-chunks":
        monkeypatch.setattr(storage_mod, "READ_CHUNK", 3000)
        monkeypatch.setattr(storage_mod, "BATCH_BYTES", 2 * PLEN)
        return lambda info: FileStorage(info, root, workers=3, max_open_files=2)
    if request.param == "file-drop":
        return lambda info: FileStorage(info, root, page_cache="drop", max_open_files=2)
    return lambda info: FileStorage(info, root)


async def write_all(st: PieceStorage, info: Info, payload: bytes) -> None:
    for i in range(info.num_pieces):
        assert await st.write_piece(i, piece(info, payload, i)) is True


def corrupt(st: PieceStorage, file_index: int, offset: int) -> None:
    """Flip one byte of a stored file, behind the storage's back."""
    if isinstance(st, MemoryStorage):
        st.files[file_index][offset] ^= 0xFF
        return
    assert isinstance(st, FileStorage)
    path = st.root.joinpath(*st.info.files[file_index].path)
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0xFF]))


def remove(st: PieceStorage, file_index: int) -> None:
    if isinstance(st, MemoryStorage):
        del st.files[file_index]
    else:
        assert isinstance(st, FileStorage)
        st.root.joinpath(*st.info.files[file_index].path).unlink()


def truncate(st: PieceStorage, file_index: int, size: int) -> None:
    if isinstance(st, MemoryStorage):
        del st.files[file_index][size:]
    else:
        assert isinstance(st, FileStorage)
        os.truncate(st.root.joinpath(*st.info.files[file_index].path), size)


# --------------------------------------------------------------------------- both backends


async def test_round_trip(make: Maker, torrent: tuple[Info, bytes]) -> None:
    info, payload = torrent
    assert info.num_pieces == 7
    with trio.fail_after(10):
        async with make(info) as st:
            assert await st.recheck() == [False] * 7
            await write_all(st, info, payload)
            seen: list[tuple[int, bool]] = []
            assert await st.recheck(lambda i, ok: seen.append((i, ok))) == [True] * 7
            assert sorted(seen) == [(i, True) for i in range(7)]
            for i in range(7):
                assert await st.read_piece(i) == piece(info, payload, i)
            # blocks inside one file, across files (b|c|d), and the short tail of the last piece
            blocks = [(0, 0, 16384), (2, 100, 5000), (5, 16000, 384), (5, 8000, 8384),
                      (6, 0, 12_696), (6, 12_500, 196)]  # fmt: skip
            for index, begin, length in blocks:
                start = index * PLEN + begin
                assert await st.read_block(index, begin, length) == payload[start : start + length]
            assert await st.file_problems() == [None, "missing", None, None, None]


async def test_a_wrong_piece_is_refused_and_nothing_written(
    make: Maker, torrent: tuple[Info, bytes]
) -> None:
    info, payload = torrent
    bad = bytearray(piece(info, payload, 2))
    bad[1234] ^= 1
    with trio.fail_after(10):
        async with make(info) as st:
            assert await st.write_piece(2, bad) is False
            assert await st.file_problems() == ["missing"] * 5
            if isinstance(st, FileStorage):
                assert list(st.root.iterdir()) == []
            assert await st.recheck() == [False] * 7
            with pytest.raises(LocalProtocolError, match="piece 2 is 16384 bytes, got 16383"):
                await st.write_piece(2, bad[:-1])


async def test_a_piece_hashed_in_part_as_it_arrived_is_finished_here(
    make: Maker, torrent: tuple[Info, bytes]
) -> None:
    """``prefix``: the engine hashed the piece's first bytes as they arrived; the storage
    hashes only the rest, and still refuses a piece whose bytes do not match the hash."""
    info, payload = torrent
    data = piece(info, payload, 2)
    with trio.fail_after(10):
        async with make(info) as st:
            for n in (0, 5000, len(data)):
                assert await st.write_piece(2, data, (hashlib.sha1(data[:n]), n)) is True
            other = piece(info, payload, 3)
            stale = hashlib.sha1(b"x" + other[1:5000])  # not the bytes in the buffer
            assert await st.write_piece(3, other, (stale, 5000)) is False
            assert await st.recheck() == [False, False, True, False, False, False, False]
            for n in (-1, len(data) + 1):
                with pytest.raises(LocalProtocolError, match="hash prefix"):
                    await st.write_piece(2, data, (hashlib.sha1(), n))


async def test_recheck_flags_exactly_the_corrupted_piece(
    make: Maker, torrent: tuple[Info, bytes]
) -> None:
    info, payload = torrent
    with trio.fail_after(10):
        async with make(info) as st:
            await write_all(st, info, payload)
            corrupt(st, 2, 30_000)  # b.bin byte 30,000 = payload 70,000 -> piece 4
            expected = [True] * 7
            expected[70_000 // PLEN] = False
            assert await st.recheck() == expected
            assert await st.file_problems() == [None, "missing", None, None, None]


async def test_missing_and_short_files_mean_incomplete_pieces(
    make: Maker, torrent: tuple[Info, bytes]
) -> None:
    info, payload = torrent
    with trio.fail_after(10):
        async with make(info) as st:
            await write_all(st, info, payload)
            # (FileStorage has these files open from the writes: a recheck must still see
            # what is on disk now, not the deleted file through a cached descriptor.)
            remove(st, 3)  # sub/c.bin: payload [90,000, 91,000) -> piece 5 only
            truncate(st, 0, 20_000)  # a.bin cut short: pieces 1 and 2 lose bytes
            assert await st.recheck() == [True, False, False, True, True, False, True]
            assert (await st.file_problems())[3] == "missing"
            with pytest.raises(StorageError, match=r"c\.bin: missing"):
                await st.read_block(5, 0, PLEN)
            with pytest.raises(StorageError, match=r"a\.bin: shorter than expected"):
                await st.read_block(1, 4_000, 100)  # a.bin [20,384, 20,484)
            # Writing the pieces again repairs the copy.
            for i in (1, 2, 5):
                assert await st.write_piece(i, piece(info, payload, i))
            assert await st.recheck() == [True] * 7


async def test_out_of_range_reads_are_our_bug(make: Maker, torrent: tuple[Info, bytes]) -> None:
    info, payload = torrent
    with trio.fail_after(10):
        async with make(info) as st:
            await write_all(st, info, payload)
            for index, begin, length in [(7, 0, 1), (6, 0, 12_697), (0, -1, 10), (0, 16380, 8)]:
                with pytest.raises(LocalProtocolError):
                    await st.read_block(index, begin, length)


async def test_pad_files_are_zeros_and_never_created(make: Maker) -> None:
    info, payload = build(
        [("a", pattern(10_000, 5)), ("pad", PLEN - 10_000), ("b", pattern(20_000, 6))], PLEN
    )
    with trio.fail_after(10):
        async with make(info) as st:
            await write_all(st, info, payload)
            assert await st.recheck() == [True, True, True]
            assert await st.read_block(0, 9_000, 2_000) == payload[9_000:11_000]
            assert await st.read_block(0, 10_000, 6_384) == bytes(6_384)
            assert await st.file_problems() == [None, None, None]
            if isinstance(st, FileStorage):
                assert sorted(p.name for p in (st.root / "album").iterdir()) == ["a", "b"]
            else:
                assert sorted(st.files) == [0, 2]


async def test_a_piece_whose_pad_bytes_are_not_zero_is_refused(make: Maker) -> None:
    # A broken torrent: its hashes cover pad bytes of 0x55. We could never give such a
    # piece back as it hashed (pads read as zeros), so it is refused like a hash failure.
    info, payload = build([("a", b"a" * 100), ("pad", 50), ("b", b"b" * 100)], 256, pad_fill=0x55)
    with trio.fail_after(10):
        async with make(info) as st:
            assert await st.write_piece(0, payload) is False
            assert await st.file_problems() == ["missing", None, "missing"]


async def test_allocate_creates_everything_but_pads(make: Maker) -> None:
    info, _ = build([("a", b"a" * 100), ("pad", 28), (("sub", "zero"), b""), ("b", b"b" * 50)], 64)
    with trio.fail_after(10):
        async with make(info) as st:
            await st.allocate()
            assert await st.file_problems() == [None, None, None, None]
            assert await st.read_block(0, 0, 64) == bytes(64)  # sparse: zeros until written
            assert await st.recheck() == [False, False, False]
            if isinstance(st, FileStorage):
                folder = st.root / "album"
                assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == [
                    "a", "b", "sub", "sub/zero"
                ]  # fmt: skip
                assert (folder / "a").stat().st_size == 100
                assert (folder / "sub" / "zero").stat().st_size == 0


async def test_single_file_torrent(make: Maker) -> None:
    data = pattern(3 * PLEN + 5, 7)
    info = build_single(data, PLEN)
    with trio.fail_after(10):
        async with make(info) as st:
            await write_all(st, info, data)
            assert await st.recheck() == [True] * 4
            if isinstance(st, FileStorage):
                assert (st.root / "movie.bin").read_bytes() == data


async def test_memory_storage_can_start_complete(torrent: tuple[Info, bytes]) -> None:
    info, payload = torrent
    st = MemoryStorage(info, payload)
    with trio.fail_after(10):
        assert await st.recheck() == [True] * 7
        assert await st.read_piece(6) == piece(info, payload, 6)
    with pytest.raises(LocalProtocolError):
        MemoryStorage(info, payload[:-1])


# --------------------------------------------------------------------------- files: safety


@pytest.fixture
def dl(tmp_path: Path) -> Path:
    root = tmp_path / "dl"
    root.mkdir()
    return root


def tree(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


async def test_symlinked_torrent_folder_is_refused(
    dl: Path, tmp_path: Path, torrent: tuple[Info, bytes]
) -> None:
    info, payload = torrent
    outside = tmp_path / "outside"
    outside.mkdir()
    (dl / "album").symlink_to(outside)
    with trio.fail_after(10):
        async with FileStorage(info, dl) as st:
            with pytest.raises(StorageError, match=r"album: is a symbolic link"):
                await st.write_piece(0, piece(info, payload, 0))
            with pytest.raises(StorageError, match=r"album: is a symbolic link"):
                await st.allocate()
            assert list(outside.iterdir()) == []
            # Even the right data behind the link is not read.
            (outside / "a.bin").write_bytes(FILES[0][1])
            assert await st.recheck() == [False] * 7
            problems = await st.file_problems()
            assert problems[0] is not None and "symbolic link" in problems[0]
    assert tree(outside) == {"a.bin": FILES[0][1]}


async def test_symlinked_file_and_subfolder_are_refused(
    dl: Path, tmp_path: Path, torrent: tuple[Info, bytes]
) -> None:
    info, payload = torrent
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.bin").write_bytes(FILES[0][1])  # right content: still never read
    (outside / "victim").write_bytes(b"precious")
    (dl / "album").mkdir()
    (dl / "album" / "a.bin").symlink_to(outside / "a.bin")
    (dl / "album" / "b.bin").symlink_to(outside / "victim")
    (dl / "album" / "sub").symlink_to(outside)
    with trio.fail_after(10):
        async with FileStorage(info, dl) as st:
            for index in (0, 3, 5):  # a.bin; b.bin; b.bin + sub/c.bin + d.bin
                with pytest.raises(StorageError, match="is a symbolic link"):
                    await st.write_piece(index, piece(info, payload, index))
            assert (await st.recheck())[:2] == [False, False]
    assert tree(outside) == {"a.bin": FILES[0][1], "victim": b"precious"}


def test_safe_join(dl: Path, tmp_path: Path) -> None:
    assert safe_join(dl, ("album", "x", "y.bin")) == dl / "album" / "x" / "y.bin"
    (dl / "album").mkdir()
    (dl / "album" / "f").write_bytes(b"")
    assert safe_join(dl, ("album", "f")) == dl / "album" / "f"
    (dl / "album" / "link").symlink_to(tmp_path)
    (dl / "album" / "dangling").symlink_to(tmp_path / "nowhere")
    for comps, message in [
        (("album", "link", "x"), "is a symbolic link"),
        (("album", "link"), "is a symbolic link"),
        (("album", "dangling"), "is a symbolic link"),
        (("album", "f", "x"), "is not a folder"),
        (("album",), "is a folder"),
        (("album", "..", "..", "x"), "unsafe path component '..'"),
        (("/etc", "passwd"), "unsafe path component"),
        (("album", ""), "unsafe path component"),
        ((), "empty file path"),
    ]:
        with pytest.raises(StorageError, match=message):
            safe_join(dl, comps)


async def test_a_file_where_the_folder_must_be(dl: Path, torrent: tuple[Info, bytes]) -> None:
    """Our unwritable-folder case that also holds for root: ENOTDIR, data left intact."""
    info, payload = torrent
    (dl / "album").write_bytes(b"someone else's file")
    with trio.fail_after(10):
        async with FileStorage(info, dl) as st:
            with pytest.raises(StorageError, match=r"dl/album: is not a folder$"):
                await st.write_piece(0, piece(info, payload, 0))
            assert await st.recheck() == [False] * 7
    assert (dl / "album").read_bytes() == b"someone else's file"


async def test_disk_full_is_a_storage_error_and_keeps_written_pieces(
    dl: Path, torrent: tuple[Info, bytes]
) -> None:
    info, payload = torrent
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    with trio.fail_after(10):
        async with FileStorage(info, dl) as st:
            # a.bin [0, 40,000) and b.bin [40,000, 90,000) in the payload; both files are
            # created at full length by these first writes (pieces 0 and 2).
            assert await st.write_piece(0, piece(info, payload, 0))
            assert await st.write_piece(2, piece(info, payload, 2))
            resource.setrlimit(resource.RLIMIT_FSIZE, (30_000, hard))
            try:
                # piece 1 = a.bin [16,384, 32,768): crosses the 30,000-byte limit
                with pytest.raises(StorageError, match=r"a.bin: file too large"):
                    await st.write_piece(1, piece(info, payload, 1))
                # piece 3 = b.bin [9,152, 25,536) fits; piece 4 = b.bin [25,536, 41,920) not
                assert await st.write_piece(3, piece(info, payload, 3))
                with pytest.raises(StorageError, match=r"b\.bin: file too large"):
                    await st.write_piece(4, piece(info, payload, 4))
            finally:
                resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            assert await st.recheck() == [True, False, True, True, False, False, False]


async def test_a_file_that_cannot_be_created_leaves_nothing_behind(
    dl: Path, torrent: tuple[Info, bytes]
) -> None:
    info, payload = torrent
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    with trio.fail_after(10):
        async with FileStorage(info, dl) as st:
            resource.setrlimit(resource.RLIMIT_FSIZE, (1_000, hard))
            try:
                with pytest.raises(StorageError, match=r"a\.bin: file too large"):
                    await st.write_piece(0, piece(info, payload, 0))
            finally:
                resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert list((dl / "album").iterdir()) == []


async def test_fifo_where_a_file_should_be_neither_hangs_nor_is_used(
    dl: Path, torrent: tuple[Info, bytes]
) -> None:
    info, payload = torrent
    (dl / "album").mkdir()
    os.mkfifo(dl / "album" / "a.bin")
    with trio.fail_after(10):
        async with FileStorage(info, dl) as st:
            assert (await st.recheck())[0] is False
            with pytest.raises(StorageError, match=r"a\.bin: is not a regular file"):
                await st.write_piece(0, piece(info, payload, 0))
            problems = await st.file_problems()
            assert problems[0] is not None and "not a regular file" in problems[0]


async def test_missing_root(tmp_path: Path, torrent: tuple[Info, bytes]) -> None:
    info, payload = torrent
    with trio.fail_after(10):
        async with FileStorage(info, tmp_path / "nope") as st:
            assert await st.recheck() == [False] * 7
            with pytest.raises(StorageError, match="nope: no such folder"):
                await st.write_piece(0, piece(info, payload, 0))
    assert not (tmp_path / "nope").exists()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_open_files_are_bounded_and_closed(dl: Path) -> None:
    files = [(f"f{i}", pattern(3_000, 10 + i)) for i in range(12)]
    info, payload = build(files, 1024)
    before = open_fds()
    with trio.fail_after(20):
        st = FileStorage(info, dl, max_open_files=2, workers=4)
        # Many concurrent writers over 12 files through a 2-entry cache.
        async with trio.open_nursery() as nursery:
            for i in range(info.num_pieces):
                nursery.start_soon(st.write_piece, i, piece(info, payload, i))
        assert open_fds() <= before + 3  # the root folder + at most 2 files
        assert await st.recheck() == [True] * info.num_pieces
        assert open_fds() <= before + 3
        await st.close()
    assert open_fds() == before
    assert tree(dl / "album") == {name: data for name, data in files}
    with pytest.raises(LocalProtocolError, match="after close"):
        await st.recheck()


# --------------------------------------------------------------------------- property


@settings(max_examples=40, deadline=None)
@given(
    data=hst.data(),
    lengths=hst.lists(hst.integers(0, 3000), min_size=1, max_size=6).filter(lambda ls: sum(ls) > 0),
    pads=hst.lists(hst.booleans(), min_size=6, max_size=6),
    piece_length=hst.sampled_from([512, 1000, 4096]),
    backend=hst.sampled_from(["file", "memory"]),
)
def test_recheck_sees_exactly_the_pieces_written(
    data: hst.DataObject, lengths: list[int], pads: list[bool], piece_length: int, backend: str
) -> None:
    """Invariant: whatever the layout (zero-length and pad files anywhere), after writing
    any subset of pieces, recheck reports exactly that subset (plus all-pad pieces), the
    written pieces read back as written, and a file exists exactly when a written piece
    touched its bytes."""
    specs: list[tuple[str | tuple[str, ...], bytes | int]] = []
    for i, n in enumerate(lengths):
        if pads[i] and n and i:  # a pad file, never the first
            specs.append(("pad", n))
        else:
            specs.append((f"f{i}", pattern(n, i)))
    info, payload = build(specs, piece_length)
    written = data.draw(hst.sets(hst.integers(0, info.num_pieces - 1)))

    async def check(sto: PieceStorage) -> None:
        async with sto:
            for i in sorted(written):
                assert await sto.write_piece(i, piece(info, payload, i))
            layout = sto.layout
            # A piece made only of pad bytes is complete from the start (it is all zeros).
            all_pad = {
                i for i in range(info.num_pieces) if all(s.pad for s in layout.piece_spans(i))
            }
            have = written | all_pad
            assert await sto.recheck() == [i in have for i in range(info.num_pieces)]
            for i in written:
                assert await sto.read_piece(i) == piece(info, payload, i)
            expected = [
                None if f.pad or set(layout.file_pieces(k)) & written else "missing"
                for k, f in enumerate(info.files)
            ]
            assert await sto.file_problems() == expected

    with tempfile.TemporaryDirectory() as tmp:
        storage = FileStorage(info, tmp) if backend == "file" else MemoryStorage(info)
        trio.run(check, storage)


async def test_reads_of_cached_data_need_no_thread(
    tmp_path: Path, torrent: tuple[Info, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Uploads of data in the page cache are read on the event loop (RWF_NOWAIT); a file
    not open yet, or a system without the flag, goes through a worker thread, same bytes."""
    info, payload = torrent
    root = tmp_path / "dl"
    root.mkdir()
    threads: list[object] = []
    with trio.fail_after(10):
        async with FileStorage(info, root) as st:
            await write_all(st, info, payload)
        async with FileStorage(info, root) as st:
            calls = st._call

            async def counted(fn: Callable[[], object]) -> object:
                threads.append(fn)
                return await calls(fn)

            monkeypatch.setattr(st, "_call", counted)
            # Nothing open yet: the first read of each file takes a thread.
            assert await st.read_piece(0) == piece(info, payload, 0)
            assert len(threads) == 1
            for i in range(7):
                assert await st.read_piece(i) == piece(info, payload, i)
            opened = len(threads)
            for index, begin, length in [(0, 0, 16384), (2, 100, 5000), (5, 8000, 8384)]:
                start = index * PLEN + begin
                assert await st.read_block(index, begin, length) == payload[start : start + length]
            if storage_mod._NOWAIT:
                assert len(threads) == opened  # every file is open and cached now
            monkeypatch.setattr(storage_mod, "_NOWAIT", False)
            assert await st.read_piece(3) == piece(info, payload, 3)
            assert len(threads) == opened + 1
