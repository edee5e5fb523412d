"""Fast resume through the public API: totals across restarts, only changed files
rehashed, and a download killed with SIGKILL that resumes counting only verified pieces."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trio

import torrentkit
from tests.api.helpers import KIB, MIB, payload, same_files, settings, torrent_of
from torrentkit import events
from torrentkit.engine import resume as resume_data
from torrentkit.engine.storage import FileStorage
from torrentkit.metainfo import parse_torrent


async def first_checked(
    session: torrentkit.Session, raw: bytes, where: Path
) -> tuple[torrentkit.TorrentHandle, events.TorrentChecked]:
    async with session.events() as stream:
        handle = await session.add(raw, where)
        async for event in stream:
            if isinstance(event, events.TorrentChecked):
                return handle, event
    raise AssertionError("no checked event")  # pragma: no cover


async def test_totals_survive_a_restart_and_nothing_is_rehashed(tmp_path: Path) -> None:
    src = payload(tmp_path / "seed", {"data.bin": 1 * MIB})
    raw = torrent_of(src / "data.bin")
    state = tmp_path / "seeder-state"
    with trio.fail_after(30):
        async with (
            torrentkit.open_session(settings(state)) as seeder,
            torrentkit.open_session(settings(tmp_path / "s2")) as leecher,
        ):
            seed = await seeder.add(raw, src)
            await seed.wait_complete()
            handle = await leecher.add(raw, tmp_path / "dl", peers=[str(seeder.address)])
            await handle.wait_complete()
            while seed.status().uploaded < 1 * MIB:
                await trio.sleep(0.05)
            seeded = seed.status()
        async with torrentkit.open_session(settings(state)) as again:
            handle, checked = await first_checked(again, raw, src)
            assert (checked.trusted, checked.rechecked) == (16, 0)
            status = handle.status()
            assert status.all_time_upload == seeded.all_time_upload >= 1 * MIB
            assert status.uploaded == 0  # this session's
            assert status.active_seconds >= seeded.active_seconds


async def test_only_the_changed_files_pieces_are_rechecked(tmp_path: Path) -> None:
    files = {"a.bin": 256 * KIB, "b.bin": 256 * KIB, "c.bin": 256 * KIB}
    src = payload(tmp_path / "seed" / "set", files)
    raw = torrent_of(src)  # 12 pieces of 64 KiB, 4 per file
    meta = parse_torrent(raw)
    state = tmp_path / "state"
    async with torrentkit.open_session(settings(state)) as session:
        _, checked = await first_checked(session, raw, src.parent)
        assert checked.rechecked == 12  # no resume data yet: everything hashed
    b = src / "b.bin"
    with b.open("r+b") as fh:
        fh.seek(100 * KIB)
        fh.write(b"changed!")
    st = b.stat()
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    async with torrentkit.open_session(settings(state)) as session:
        handle, checked = await first_checked(session, raw, src.parent)
        assert (checked.rechecked, checked.trusted) == (4, 8)
        assert checked.pieces == 11 and handle.status().state == "downloading"
    assert meta.info.num_pieces == 12


async def test_a_stop_after_a_download_does_not_fsync_the_payload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The files are not fsynced at the stop (the kernel writes them back); the resume file
    names the files just written and this boot, so the next start on the same boot trusts
    them and one after a reboot would hash them again (tests/engine/test_resume.py)."""
    synced: list[str] = []
    real = FileStorage._sync_sync

    def counting(self: FileStorage) -> None:
        synced.append(str(self.root))
        real(self)

    monkeypatch.setattr(FileStorage, "_sync_sync", counting)
    src = payload(tmp_path / "seed", {"data.bin": 1 * MIB})
    raw = torrent_of(src / "data.bin")
    meta = parse_torrent(raw)
    state = tmp_path / "leecher-state"
    with trio.fail_after(30):
        async with (
            torrentkit.open_session(settings(tmp_path / "s1")) as seeder,
            torrentkit.open_session(settings(state)) as leecher,
        ):
            seed = await seeder.add(raw, src)
            await seed.wait_complete()
            handle = await leecher.add(raw, tmp_path / "dl", peers=[str(seeder.address)])
            await handle.wait_complete()
        assert synced == []
        saved = resume_data.load(state, meta.info).data
        assert saved is not None and saved.unsynced_files == (0,)
        assert saved.unsynced_boot == resume_data.boot_id() != ""
        async with torrentkit.open_session(settings(state)) as again:
            _, checked = await first_checked(again, raw, tmp_path / "dl")
            assert (checked.trusted, checked.rechecked) == (16, 0)


CHILD = textwrap.dedent(
    """
    import sys, trio, torrentkit
    raw = open(sys.argv[1], "rb").read()
    async def main():
        settings = torrentkit.Settings(
            listen="127.0.0.1:0", state_dir=sys.argv[3], resume_interval=0.2, dht=None)
        async with torrentkit.open_session(settings) as session:
            handle = await session.add(raw, sys.argv[2], peers=[sys.argv[4]])
            while True:
                print(handle.status().pieces, flush=True)
                await trio.sleep(0.1)
    trio.run(main)
    """
)


async def test_a_download_killed_with_sigkill_resumes_with_only_verified_pieces(
    tmp_path: Path,
) -> None:
    src = payload(tmp_path / "seed", {"data.bin": 2 * MIB})
    raw = torrent_of(src / "data.bin", piece_length=32 * KIB)  # 64 pieces
    torrent_file = tmp_path / "t.torrent"
    torrent_file.write_bytes(raw)
    state, dl = tmp_path / "state", tmp_path / "dl"
    resume_file = state / f"{parse_torrent(raw).info_hash.hex()}.resume"
    with trio.fail_after(60):
        async with torrentkit.open_session(settings(tmp_path / "s1", up_limit=256 * KIB)) as seeder:
            seed = await seeder.add(raw, src)
            await seed.wait_complete()
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    CHILD,
                    str(torrent_file),
                    str(dl),
                    str(state),
                    str(seeder.address),
                ],
                stdout=subprocess.PIPE,
            )
            try:
                # Let it save resume data at least once with some pieces, then kill it
                # mid-download (no clean stop: no final save, writes possibly in flight).
                while not (resume_file.exists() and seed.status().uploaded > 600 * KIB):
                    await trio.sleep(0.05)
                proc.send_signal(signal.SIGKILL)
            finally:
                proc.wait(10)
            async with torrentkit.open_session(settings(state)) as again:
                handle, checked = await first_checked(again, raw, dl)
                assert 0 < checked.pieces < 64
                # Every piece counted is really there: compare with the payload.
                data = (dl / "data.bin").read_bytes()
                want = (src / "data.bin").read_bytes()
                piece = 32 * KIB
                claimed = [i for i, ok in enumerate(handle._job.have or []) if ok]
                assert len(claimed) == checked.pieces
                assert all(_ok(data, want, i, piece) for i in claimed)
                handle.add_peers([str(seeder.address)])
                await handle.wait_complete()
    assert same_files(src, dl)


def _ok(data: bytes, want: bytes, i: int, piece: int) -> bool:
    a = data[i * piece : (i + 1) * piece]
    return hashlib.sha1(a).digest() == hashlib.sha1(want[i * piece : (i + 1) * piece]).digest()
