"""``page_cache="drop"``: a download's written pieces leave the OS page cache (issue 15).

Residency is read with ``mincore(2)`` on a fresh read-only mapping of the file (for a file
mapping it reports the page cache, whether or not this mapping touched the page). A page is
released only when clean, so each test makes the pieces it checks clean with ``fsync``
before the storage's second advice reaches them.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import sys
from collections import deque
from pathlib import Path

import pytest
import trio

import torrentkit
from tests.engine.helpers_storage import build, build_single, pattern
from torrentkit.cli.main import build_parser
from torrentkit.cli.swarm_flags import settings_from_args
from torrentkit.engine import storage as storage_mod
from torrentkit.engine.assembly import piece_buffer
from torrentkit.engine.storage import DROP_LAG, FileStorage
from torrentkit.errors import LocalProtocolError

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="mincore and fadvise: Linux")

PLEN = 64 * 1024
PIECES = 16


def resident(path: Path) -> list[bool]:
    """For each page of ``path``: is it in the page cache?"""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long
    ]  # fmt: skip
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size = path.stat().st_size
    pages = -(-size // mmap.PAGESIZE)
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        try:
            vec = (ctypes.c_ubyte * pages)()
            assert libc.mincore(addr, size, vec) == 0, os.strerror(ctypes.get_errno())
            return [bool(b & 1) for b in vec]
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)


def pieces_resident(path: Path, first: int, last: int) -> int:
    """How many pages of pieces ``first..last`` are cached."""
    per_piece = PLEN // mmap.PAGESIZE
    return sum(resident(path)[first * per_piece : (last + 1) * per_piece])


def on_tmpfs(path: Path) -> bool:
    """tmpfs keeps file pages in memory whatever the advice (there is no disk behind)."""
    best, kind = "", ""
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        mount = fields[1]
        if str(path).startswith(mount.rstrip("/") + "/") and len(mount) > len(best):
            best, kind = mount, fields[2]
    return kind in ("tmpfs", "ramfs")


async def write_pieces(storage: FileStorage, payload: bytes, indices: range) -> None:
    for i in indices:
        assert await storage.write_piece(i, payload[i * PLEN : (i + 1) * PLEN]) is True


@pytest.mark.parametrize("mode", ["drop", "keep"])
async def test_written_pieces_leave_the_page_cache_only_when_dropping(
    tmp_path: Path, mode: str
) -> None:
    if on_tmpfs(tmp_path):
        pytest.skip("tmpfs has no page cache to leave")
    payload = pattern(PLEN * PIECES, 7)
    info = build_single(payload, PLEN)
    root = tmp_path / mode
    root.mkdir()
    path = root / info.name
    with trio.fail_after(20):
        async with FileStorage(info, root, page_cache=mode) as st:  # type: ignore[arg-type]
            await write_pieces(st, payload, range(DROP_LAG))
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)  # the first pieces are clean now
            finally:
                os.close(fd)
            assert pieces_resident(path, 0, DROP_LAG - 1) == DROP_LAG * PLEN // mmap.PAGESIZE
            # The next pieces' writes carry the second advice to the first ones.
            await write_pieces(st, payload, range(DROP_LAG, PIECES))
            cached = pieces_resident(path, 0, DROP_LAG - 1)
            if mode == "drop":
                assert cached == 0
            else:
                assert cached == DROP_LAG * PLEN // mmap.PAGESIZE
            for i in range(PIECES):  # nothing is lost: every byte reads back
                assert await st.read_piece(i) == payload[i * PLEN : (i + 1) * PLEN]
    assert path.read_bytes() == payload


async def test_a_refused_advice_turns_dropping_off_and_writes_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def refuse(fd: int, offset: int, length: int, advice: int) -> None:
        calls.append(advice)
        raise OSError(errno.EINVAL, "no advice here")

    monkeypatch.setattr(storage_mod, "_FADVISE", refuse)
    payload = pattern(PLEN * PIECES, 8)
    info = build_single(payload, PLEN)
    with trio.fail_after(20):
        async with FileStorage(info, tmp_path, page_cache="drop") as st:
            await write_pieces(st, payload, range(PIECES))
            assert st._drop_queue is None
    assert len(calls) == 1  # asked once, then never again
    assert (tmp_path / info.name).read_bytes() == payload


def aligned_piece(payload: bytes, i: int) -> memoryview:
    """Piece ``i`` in a page-aligned buffer, as the engine's assemblies hold it."""
    buf = piece_buffer(PLEN)
    buf[:] = payload[i * PLEN : (i + 1) * PLEN]
    return buf


def takes_o_direct(folder: Path) -> bool:
    """Whether the file system under ``folder`` opens files with O_DIRECT at all."""
    probe = folder / ".o_direct_probe"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | getattr(os, "O_DIRECT", 0), 0o600))
    except OSError:
        return False
    finally:
        probe.unlink(missing_ok=True)
    return hasattr(os, "O_DIRECT")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("mode", ["drop", "keep"])
async def test_aligned_pieces_are_written_around_the_page_cache(tmp_path: Path, mode: str) -> None:
    """With ``drop``, a piece whose offset, length and buffer are page-aligned goes to the
    disk with O_DIRECT: none of its pages is cached even before any fsync or later advice,
    and nothing waits in the drop queue. ``keep`` writes through the cache as ever."""
    if on_tmpfs(tmp_path) or not takes_o_direct(tmp_path):
        pytest.skip("tmpfs has no page cache to leave; or this file system has no O_DIRECT")
    payload = pattern(PLEN * PIECES, 9)
    info = build_single(payload, PLEN)
    path = tmp_path / info.name
    fds = open_fds()
    with trio.fail_after(20):
        async with FileStorage(info, tmp_path, page_cache=mode) as st:  # type: ignore[arg-type]
            for i in range(PIECES):
                assert await st.write_piece(i, aligned_piece(payload, i)) is True
            cached = pieces_resident(path, 0, PIECES - 1)
            if mode == "drop":
                assert cached == 0 and st._direct and st._drop_queue == deque()
            else:
                assert cached == PIECES * PLEN // mmap.PAGESIZE
            for i in range(PIECES):
                assert await st.read_piece(i) == payload[i * PLEN : (i + 1) * PLEN]
    assert path.read_bytes() == payload
    assert open_fds() == fds  # the O_DIRECT descriptors were closed with the files


async def test_unaligned_spans_go_through_the_cache_and_evicted_files_close(
    tmp_path: Path,
) -> None:
    """Spans of a multi-file torrent that start or end off a page boundary are written the
    usual way (and dropped by advice); the aligned ones go around the cache. With one open
    file at a time, every eviction closes the O_DIRECT descriptor too."""
    if on_tmpfs(tmp_path) or not takes_o_direct(tmp_path):
        pytest.skip("tmpfs has no page cache to leave; or this file system has no O_DIRECT")
    files = [("a.bin", pattern(2 * PLEN, 1)), ("b.bin", pattern(PLEN + 1000, 2))]
    files += [("c.bin", pattern(3 * PLEN - 1000, 3))]
    info, payload = build(files, PLEN)
    fds = open_fds()
    with trio.fail_after(20):
        async with FileStorage(info, tmp_path, page_cache="drop", max_open_files=1) as st:
            for i in range(info.num_pieces):
                size = info.piece_size(i)
                buf = piece_buffer(PLEN)[:size]
                buf[:] = payload[i * PLEN : i * PLEN + size]
                assert await st.write_piece(i, buf) is True
            assert st._direct  # misaligned spans are no refusal
            written_around = [pieces_resident(tmp_path / info.name / "a.bin", 0, 1)]
            assert written_around == [0]  # a.bin: two aligned pieces, never cached
            assert st._drop_queue  # b.bin's and c.bin's misaligned spans went through it
            assert await st.recheck() == [True] * info.num_pieces
    assert open_fds() == fds
    for name, content in files:
        assert (tmp_path / info.name / name).read_bytes() == content


@pytest.mark.parametrize("where", ["open", "write"])
async def test_a_refused_o_direct_turns_it_off_and_writes_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A file system that will not open a file with O_DIRECT, or refuses the alignment of
    a write (EINVAL): the storage stops trying, and every piece is written the usual way,
    with the advice."""
    calls: list[int] = []

    def refuse(*args: object) -> int:
        calls.append(1)
        raise OSError(errno.EINVAL, "no O_DIRECT here")

    monkeypatch.setattr(storage_mod, "_open_direct" if where == "open" else "_write_direct", refuse)
    payload = pattern(PLEN * PIECES, 10)
    info = build_single(payload, PLEN)
    fds = open_fds()
    with trio.fail_after(20):
        async with FileStorage(info, tmp_path, page_cache="drop") as st:
            for i in range(PIECES):
                assert await st.write_piece(i, aligned_piece(payload, i)) is True
            assert not st._direct and st._drop_queue is not None
    assert len(calls) == 1  # tried once
    assert open_fds() == fds
    assert (tmp_path / info.name).read_bytes() == payload


def test_page_cache_is_drop_or_keep(tmp_path: Path) -> None:
    info = build_single(b"x" * PLEN, PLEN)
    with pytest.raises(LocalProtocolError, match="page_cache"):
        FileStorage(info, tmp_path, page_cache="sometimes")  # type: ignore[arg-type]
    assert torrentkit.Settings().page_cache == "drop"
    with pytest.raises(torrentkit.SettingsError, match="page_cache"):
        torrentkit.Settings(page_cache="sometimes")  # type: ignore[arg-type]


@pytest.mark.parametrize(("flags", "expected"), [([], "drop"), (["--page-cache", "keep"], "keep")])
def test_the_download_flag_sets_the_policy(flags: list[str], expected: str) -> None:
    args = build_parser("download").parse_args(
        ["download", "x.torrent", "-o", "out", "--no-dht", *flags]
    )
    assert settings_from_args(args).page_cache == expected


def test_a_bad_flag_value_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser("download").parse_args(["download", "x.torrent", "--page-cache", "never"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--page-cache" in err and len(err.strip().splitlines()) == 1
