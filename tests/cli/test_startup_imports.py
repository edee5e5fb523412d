"""Start-up cost of the commands that run many at a time (a swarm of ``download`` processes):
what they import. Every module is CPU at every start (rich alone ~0.1 s, more than the rest of
torrentkit together), so the heavy ones stay behind the commands that use them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.interop.peers import make_payload, read_line
from torrentkit.maketorrent import make_torrent

TK = [sys.executable, "-m", "torrentkit.cli.main"]

#: What a plain .torrent download (no magnet, no url-list, encryption disabled) never runs,
#: imported where it is first needed: the magnet metadata phase (ut_metadata, fetching and
#: serving), web seeds, the encryption handshake (MSE).
NOT_FOR_A_PLAIN_DOWNLOAD = (
    "torrentkit.engine.metadata_fetch",
    "torrentkit.wire.metadata",
    "torrentkit.engine.webseed",
    "torrentkit.engine.webseed_link",
    "torrentkit.wire.mse",
)


@pytest.mark.parametrize("command", ["download", "seed"])
def test_a_headless_command_does_not_import_the_ui(command: str) -> None:
    probe = (
        "import sys, torrentkit.cli.main as m\n"
        f"m.build_parser({command!r})\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out, "the probe printed no module list"
    heavy = [m for m in out if m == "rich" or m.startswith(("rich.", "torrentkit.ui"))]
    assert heavy == []
    # Nor what only some runs need: RC4 (the first encrypted connection imports it), the
    # tracker server's aiohttp, the Redis store, the DHT's signatures.
    later = ("cryptography", "aiohttp", "redis")
    assert [m for m in out if m.split(".")[0] in later] == []
    # Nor the engine's parts for magnets, web seeds and encryption.
    assert "torrentkit.engine.torrent" in out  # the probe did import the engine
    assert [m for m in out if m in NOT_FOR_A_PLAIN_DOWNLOAD] == []


def test_a_plain_download_never_imports_what_it_does_not_use(tmp_path: Path) -> None:
    """A real download of a small .torrent from a seeder, encryption disabled: complete,
    and the modules above were not needed on the way either."""
    data = make_payload(tmp_path / "seed" / "data.bin", 64 * 1024)
    torrent = tmp_path / "data.torrent"
    torrent.write_bytes(make_torrent(data, piece_length=16 * 1024))
    seeder = subprocess.Popen(
        [*TK, "seed", str(torrent), str(data.parent), "--bind", "127.0.0.1", "--port", "0",
         "--no-dht", "--no-tracker", "--no-ui", "--json", "--state-dir", str(tmp_path / "s1")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        listening = json.loads(read_line(seeder, 30))
        assert listening["event"] == "listening", listening
        args = [
            "download", str(torrent), "-o", str(tmp_path / "out"), "--bind", "127.0.0.1",
            "--peer", f"127.0.0.1:{listening['port']}", "--no-dht", "--no-tracker",
            "--encryption", "disable", "--json", "--no-ui", "--timeout", "30",
            "--state-dir", str(tmp_path / "s2"),
        ]  # fmt: skip
        probe = (
            "import sys, torrentkit.cli.main as m\n"
            f"code = m.main({args!r})\n"
            "sys.stderr.write(' '.join(sorted(sys.modules)))\n"
            "sys.exit(code)\n"
        )
        r = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60
        )
    finally:
        seeder.terminate()
        seeder.communicate(timeout=30)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "out" / "data.bin").read_bytes() == data.read_bytes()
    modules = r.stderr.split()
    assert "torrentkit.engine.torrent" in modules
    assert [m for m in modules if m in NOT_FOR_A_PLAIN_DOWNLOAD] == []
