"""The rough edges a new user hit trying every command (issue 14 item 3), each run as a user
would: the real ``torrentkit`` command in a subprocess."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest


def tk(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "torrentkit.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line(r: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """``r`` exited ``code`` with one line on stderr (no traceback) holding every needle."""
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("torrentkit: error: "), r.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    path = tmp_path / "file.bin"
    path.write_bytes(bytes(range(256)) * 400)
    return path


@pytest.mark.parametrize(
    ("output", "needle"),
    [
        ("/proc/x.torrent", "cannot write here"),  # no such folder for a new file
        ("/sys/x.torrent", "cannot write here"),  # a folder nobody may write, root neither
        ("FOLDER", "is a folder"),
    ],
)
def test_create_output_that_cannot_be_written_is_one_line_exit_2(
    payload: Path, tmp_path: Path, output: str, needle: str
) -> None:
    if output == "FOLDER":
        (tmp_path / "folder").mkdir()
        output = str(tmp_path / "folder")
    r = tk("create", str(payload), "-o", output, "--force")
    one_line(r, 2, output, needle)
    assert not list(tmp_path.glob(".torrentkit-*"))  # no temporary file left behind


@pytest.fixture
def torrent(payload: Path, tmp_path: Path) -> Path:
    out = tmp_path / "file.torrent"
    assert tk("create", str(payload), "-o", str(out)).returncode == 0
    return out


@pytest.mark.parametrize("command", ["download", "seed", "tracker", "napster-index"])
def test_a_port_in_use_is_exit_2_for_every_command(
    command: str, torrent: Path, payload: Path
) -> None:
    """One rule (docs/cli.md): a port already in use is bad input, exit 2."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        where = ["--bind", "127.0.0.1", "--port", str(port)]
        args = {
            "download": [str(torrent), "-o", str(payload.parent / "dl"), "--no-ui", *where],
            "seed": [str(torrent), str(payload.parent), "--no-ui", "--no-tracker", *where],
            "tracker": where,
            "napster-index": where,
        }[command]
        r = tk(command, *args)
    one_line(r, 2, f"127.0.0.1:{port}")


def test_chord_node_on_every_interface_names_the_advertise_flag() -> None:
    r = tk("node", "--discovery", "chord", "--port", "0")
    one_line(r, 2, "--advertise HOST")
    assert "advertise=" not in r.stderr
