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
from pathlib import Path

import pytest
import trio

import torrentkit
from tests.engine.helpers_storage import build_single, pattern
from torrentkit.cli.main import build_parser
from torrentkit.cli.swarm_flags import settings_from_args
from torrentkit.engine import storage as storage_mod
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
