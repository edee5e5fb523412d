"""The public API on loopback: add, events, pause/resume, remove, recheck, priorities,
limits, all between two real sessions with real sockets and files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

import torrentkit
from tests.api.helpers import (
    KIB,
    MIB,
    payload,
    same_files,
    seeder_in_thread,
    settings,
    torrent_of,
)
from torrentkit import events
from torrentkit.metainfo import parse_torrent


async def test_download_between_two_sessions_with_typed_events(tmp_path: Path) -> None:
    src = payload(tmp_path / "seed", {"data.bin": 2 * MIB + 77})
    raw = torrent_of(src / "data.bin")
    with trio.fail_after(30):
        async with (
            torrentkit.open_session(settings(tmp_path / "s1")) as seeder,
            torrentkit.open_session(settings(tmp_path / "s2")) as leecher,
        ):
            seed = await seeder.add(raw, src)
            await seed.wait_complete()
            assert seed.status().state == "seeding"
            seen: list[torrentkit.events.Event] = []
            async with leecher.events() as stream:
                handle = await leecher.add(raw, tmp_path / "dl", peers=[str(seeder.address)])
                assert handle.status().state in ("checking", "downloading")
                await handle.wait_complete()
                async for event in stream:
                    seen.append(event)
                    if isinstance(event, events.TorrentCompleted):
                        break
            status = handle.status()
            assert status.state == "seeding" and status.progress == 1.0
            assert status.downloaded == 2 * MIB + 77
            kinds = {type(e) for e in seen}
            assert {events.TorrentAdded, events.TorrentChecked, events.PeerConnected,
                    events.PieceVerified, events.TorrentCompleted} <= kinds  # fmt: skip
            assert all(e.info_hash == handle.info_hash.hex() for e in seen)
            assert all(isinstance(e.to_json()["event"], str) for e in seen)
    assert (tmp_path / "dl" / "data.bin").read_bytes() == (src / "data.bin").read_bytes()


async def test_pause_stops_the_transfer_and_resume_finishes_it(tmp_path: Path) -> None:
    src = payload(tmp_path / "seed", {"data.bin": 1 * MIB})
    raw = torrent_of(src / "data.bin", piece_length=16 * KIB)
    with trio.fail_after(40):
        async with (
            torrentkit.open_session(settings(tmp_path / "s1", up_limit=128 * KIB)) as seeder,
            torrentkit.open_session(settings(tmp_path / "s2")) as leecher,
        ):
            await (await seeder.add(raw, src)).wait_complete()
            handle = await leecher.add(raw, tmp_path / "dl", peers=[str(seeder.address)])
            while handle.status().pieces < 4:
                await trio.sleep(0.05)
            handle.pause()
            paused = handle.status()
            assert paused.state == "paused" and paused.paused and paused.num_peers == 0
            await trio.sleep(1.0)
            assert handle.status().pieces == paused.pieces  # nothing moves while paused
            handle.resume()
            await handle.wait_complete()
            assert handle.status().state == "seeding"
    assert same_files(src, tmp_path / "dl")


async def test_remove_with_data_deletes_only_the_torrents_files(tmp_path: Path) -> None:
    src = payload(tmp_path / "seed" / "album", {"a.bin": 100 * KIB, "sub/b.bin": 50 * KIB})
    raw = torrent_of(src)
    keep = tmp_path / "seed" / "unrelated.txt"
    keep.write_text("mine")
    async with torrentkit.open_session(settings(tmp_path / "st")) as session:
        handle = await session.add(raw, tmp_path / "seed")
        await handle.wait_complete()
        resume_file = tmp_path / "st" / f"{handle.info_hash.hex()}.resume"
        handle.pause()  # a pause saves the resume data
        with trio.fail_after(10):
            while not resume_file.exists():
                await trio.sleep(0.02)
        await handle.remove(delete_data=True)
        assert session.torrents() == []
        assert not resume_file.exists()
    assert not (tmp_path / "seed" / "album").exists()
    assert keep.read_text() == "mine"


async def test_force_recheck_finds_a_corrupted_piece(tmp_path: Path) -> None:
    src = payload(tmp_path / "seed", {"data.bin": 512 * KIB})
    raw = torrent_of(src / "data.bin")  # 8 pieces of 64 KiB
    async with torrentkit.open_session(settings(tmp_path / "st")) as session:
        handle = await session.add(raw, src)
        await handle.wait_complete()
        with (src / "data.bin").open("r+b") as fh:
            fh.seek(3 * 64 * KIB + 5)
            fh.write(b"\x00\xff\x00")
        await handle.force_recheck()
        status = handle.status()
        assert status.pieces == 7 and status.state == "downloading"


async def test_file_priorities_skip_a_file_then_take_it(tmp_path: Path) -> None:
    src = payload(tmp_path / "seed" / "pack", {"one.bin": 300 * KIB, "two.bin": 300 * KIB})
    raw = torrent_of(src, piece_length=16 * KIB)
    meta = parse_torrent(raw)
    names = [f.path[-1] for f in meta.info.files]
    skip_two = [0 if n == "two.bin" else 4 for n in names]
    with trio.fail_after(30):
        async with (
            torrentkit.open_session(settings(tmp_path / "s1")) as seeder,
            torrentkit.open_session(settings(tmp_path / "s2")) as leecher,
        ):
            await (await seeder.add(raw, src.parent)).wait_complete()
            dl = tmp_path / "dl"
            handle = await leecher.add(raw, dl, files=skip_two, peers=[str(seeder.address)])
            await handle.wait_complete()
            assert (dl / "pack" / "one.bin").read_bytes() == (src / "one.bin").read_bytes()
            assert handle.status().total_wanted == 300 * KIB
            assert not (dl / "pack" / "two.bin").exists() or (
                (dl / "pack" / "two.bin").read_bytes() != (src / "two.bin").read_bytes()
            )
            handle.set_file_priorities([4] * len(names))
            assert handle.status().state == "downloading"
            await handle.wait_complete()
    assert same_files(src, tmp_path / "dl" / "pack")


async def test_limits_take_effect_at_once(tmp_path: Path) -> None:
    src = payload(tmp_path / "seed", {"data.bin": 3 * MIB})
    raw = torrent_of(src / "data.bin", piece_length=32 * KIB)
    with trio.fail_after(40):
        async with (
            torrentkit.open_session(settings(tmp_path / "s1")) as seeder,
            torrentkit.open_session(settings(tmp_path / "s2")) as leecher,
        ):
            await (await seeder.add(raw, src)).wait_complete()
            handle = await leecher.add(raw, tmp_path / "dl", peers=[str(seeder.address)])
            handle.set_limits(down=64 * KIB)
            await trio.sleep(2.0)
            # 64 KiB/s for 2 s, plus a burst and the pieces in flight: far below 3 MiB.
            assert handle.status().downloaded < 1 * MIB
            handle.set_limits(down=0)
            await handle.wait_complete()
    assert same_files(src, tmp_path / "dl")


async def test_bad_input_raises_clear_errors(tmp_path: Path) -> None:
    async with torrentkit.open_session(settings(tmp_path / "st")) as session:
        with pytest.raises(torrentkit.MetainfoError):
            await session.add(b"not a torrent", tmp_path)
        with pytest.raises(ValueError, match=r"(?i)no such file"):
            await session.add(tmp_path / "missing.torrent", tmp_path)
        src = payload(tmp_path / "x", {"f.bin": 20 * KIB})
        raw = torrent_of(src / "f.bin")
        await session.add(raw, src)
        with pytest.raises(torrentkit.DuplicateTorrent):
            await session.add(raw, src)
        with pytest.raises(ValueError, match="priorities"):
            await session.add(torrent_of(src), src, files=[1, 2, 3])
    with pytest.raises(torrentkit.SettingsError, match="listen"):
        torrentkit.Settings(listen="nowhere")
    with pytest.raises(torrentkit.SettingsError, match="max_peers"):
        torrentkit.Settings(max_peers=0)


async def test_a_port_in_use_is_a_session_error(tmp_path: Path) -> None:
    async with torrentkit.open_session(settings(tmp_path / "a")) as first:
        taken = f"127.0.0.1:{first.address.port}"
        with pytest.raises(torrentkit.SessionError, match="cannot listen"):
            async with torrentkit.open_session(
                torrentkit.Settings(listen=taken, state_dir=tmp_path / "b", dht=None)
            ):
                pass  # pragma: no cover


def test_blocking_download_runs_its_own_trio(tmp_path: Path) -> None:
    src = payload(tmp_path / "seed", {"data.bin": 256 * KIB})
    raw = torrent_of(src / "data.bin")
    with seeder_in_thread(raw, src, tmp_path / "s1") as peer:  # download() blocks this one
        status = torrentkit.download(
            raw, tmp_path / "dl", peers=[peer], timeout=30, settings=settings(tmp_path / "s2")
        )
        assert status.state == "seeding"
    assert os.path.getsize(tmp_path / "dl" / "data.bin") == 256 * KIB
