"""Small swarms for API tests: payloads, torrents, sessions on 127.0.0.1."""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import trio

import torrentkit
from torrentkit.maketorrent import make_torrent
from torrentkit.settings import Settings

KIB = 1024
MIB = 1024 * KIB


def payload(root: Path, files: dict[str, int], *, seed: int = 1) -> Path:
    """Write ``files`` (relative path -> size) under ``root``; return ``root``."""
    rng = random.Random(seed)
    for rel, size in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))
    return root


def torrent_of(path: Path, *, piece_length: int = 64 * KIB) -> bytes:
    return make_torrent(path, piece_length=piece_length)


def settings(state: Path, **kw: object) -> Settings:
    """A session on 127.0.0.1; no DHT unless ``dht=`` is given (tests stay on loopback)."""
    kw.setdefault("dht", None)
    return Settings(listen="127.0.0.1:0", state_dir=state, **kw)  # type: ignore[arg-type]


def same_files(a: Path, b: Path) -> bool:
    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    fb = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return fa == fb and all((a / f).read_bytes() == (b / f).read_bytes() for f in fa)


@contextlib.contextmanager
def seeder_in_thread(raw: bytes, data: Path, state: Path) -> Iterator[str]:
    """A seeding session in a thread of its own (for code that blocks this one, such as
    ``torrentkit.download``); yields its ``HOST:PORT``, stops it on exit."""
    ready, stop = threading.Event(), threading.Event()
    box: dict[str, str] = {}

    async def seed() -> None:
        async with torrentkit.open_session(settings(state)) as s:
            await (await s.add(raw, data)).wait_complete()
            box["peer"] = str(s.address)
            ready.set()
            while not stop.is_set():
                await trio.sleep(0.05)

    thread = threading.Thread(target=trio.run, args=(seed,))
    thread.start()
    try:
        assert ready.wait(30), "the seeder did not start"
        yield box["peer"]
    finally:
        stop.set()
        thread.join(30)
