"""The README's Python examples, run as written (each in an empty folder)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import torrentkit
from tests.api.helpers import seeder_in_thread

README = Path(__file__).resolve().parents[2] / "README.md"


def examples() -> list[str]:
    text = README.read_text()
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def run(code: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_the_readme_has_three_examples() -> None:
    assert len(examples()) == 3


def test_seeder_and_leecher_example(tmp_path: Path) -> None:
    out = run(examples()[0], tmp_path)
    assert "connected to 127.0.0.1:" in out
    assert "seeding 1.0 1300000" in out


def test_control_example(tmp_path: Path) -> None:
    out = run(examples()[1], tmp_path).split("\n")
    assert out[0] == "paused"
    assert "8 of 8" in out and "trusted 8 rehashed 0" in out


@pytest.mark.slow
def test_blocking_download_example(tmp_path: Path) -> None:
    src = tmp_path / "seed"
    src.mkdir()
    (src / "file.bin").write_bytes(os.urandom(300_000))
    raw = torrentkit.make_torrent(src / "file.bin")
    (tmp_path / "file.torrent").write_bytes(raw)
    with seeder_in_thread(raw, src, tmp_path / "s") as peer:
        out = run(examples()[2], tmp_path, {"TORRENTKIT_EXAMPLE_PEER": peer})
    assert out.strip() == "seeding 300000"
    assert (tmp_path / "downloads" / "file.bin").read_bytes() == (src / "file.bin").read_bytes()
