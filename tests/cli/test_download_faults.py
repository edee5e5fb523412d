"""Faults around a real download, with real processes on loopback (docs/limits.md items 8, 9):
SIGKILL mid-download then resume, and a disk that fills up."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from torrentkit.maketorrent import make_torrent

TK = [sys.executable, "-m", "torrentkit.cli.main"]


def start(args: list[str], **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*TK, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,  # type: ignore[call-overload]
    )


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def swarm(tmp_path: Path) -> Iterator[tuple[Path, Path, str]]:
    """A 6 MiB single-file torrent and our seeder serving it at 1 MiB/s.
    Yields (torrent, payload, seeder address)."""
    data = tmp_path / "seed"
    data.mkdir()
    payload = data / "payload.bin"
    payload.write_bytes(random.Random(8).randbytes(6 * 1024 * 1024))
    torrent = tmp_path / "payload.torrent"
    torrent.write_bytes(make_torrent(payload, piece_length=64 * 1024))
    seeder = start(
        ["seed", str(torrent), str(data), "--bind", "127.0.0.1", "--no-tracker", "--no-dht",
         "--up-limit", "1M", "--state-dir", str(tmp_path / "seed-state")]
    )  # fmt: skip
    try:
        assert seeder.stdout is not None
        line = seeder.stdout.readline()
        assert line.startswith("listening on 127.0.0.1:"), line + seeder.stderr.read()  # type: ignore[union-attr]
        yield torrent, payload, line.split()[-1]
    finally:
        stop(seeder)


@pytest.mark.slow
def test_sigkill_mid_download_then_resume(swarm: tuple[Path, Path, str], tmp_path: Path) -> None:
    torrent, payload, seeder = swarm
    out = tmp_path / "out"
    out.mkdir()
    state = tmp_path / "state"
    args = ["download", str(torrent), "-o", str(out), "--bind", "127.0.0.1", "--peer", seeder,
            "--no-tracker", "--no-dht", "--json", "--state-dir", str(state),
            "--timeout", "120"]  # fmt: skip
    leecher = start(args)
    pieces = 0
    try:
        assert leecher.stdout is not None
        for line in leecher.stdout:
            if json.loads(line)["event"] == "piece":
                pieces += 1
                if pieces == 20:
                    break
        os.kill(leecher.pid, signal.SIGKILL)
        leecher.wait(10)
    finally:
        if leecher.poll() is None:
            leecher.kill()
    assert leecher.returncode == -signal.SIGKILL

    # What is on disk: some verified pieces, never reported as complete.
    verify = subprocess.run([*TK, "verify", str(torrent), str(out), "--json"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert verify.returncode == 1
    summary = json.loads(verify.stdout.splitlines()[-1])
    assert summary["event"] == "summary" and not summary["complete"]
    on_disk = summary["pieces_ok"]
    assert 20 <= on_disk < 96

    # Restart: the recheck counts only verified pieces, and the download finishes.
    again = subprocess.run([*TK, *args], capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stderr
    events = [json.loads(line) for line in again.stdout.splitlines()]
    checked = next(e for e in events if e["event"] == "checked")
    assert checked["pieces"] == on_disk
    assert sum(e["event"] == "piece" for e in events) == 96 - on_disk
    assert (out / "payload.bin").read_bytes() == payload.read_bytes()


@pytest.mark.slow
def test_disk_full_exits_1_and_keeps_what_was_written(
    swarm: tuple[Path, Path, str], tmp_path: Path
) -> None:
    """The download folder is a 2 MiB tmpfs, mounted in a private user and mount namespace
    (so the test needs no privileges and leaves the host's mounts alone)."""
    unshare = shutil.which("unshare")
    assert unshare is not None, "unshare (util-linux) is needed for this test"
    torrent, _payload, seeder = swarm
    out = tmp_path / "small-disk"
    out.mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()
    tk = " ".join(TK)
    script = f"""
        set -u
        mount -t tmpfs -o size=2m tmpfs {out} || exit 99
        {tk} download {torrent} -o {out} --bind 127.0.0.1 --peer {seeder} --no-tracker \\
            --no-dht --json --state-dir {tmp_path}/state --timeout 60 \\
            > {logs}/dl.json 2> {logs}/dl.err
        echo $? > {logs}/dl.rc
        {tk} verify {torrent} {out} --json > {logs}/verify.json 2> {logs}/verify.err
        echo $? > {logs}/verify.rc
    """
    r = subprocess.run([unshare, "--user", "--map-root-user", "--mount", "sh", "-c", script],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, f"namespace setup failed: {r.returncode} {r.stderr}"
    assert (logs / "dl.rc").read_text().strip() == "1"
    err = (logs / "dl.err").read_text().strip().splitlines()
    assert len(err) == 1 and "no space" in err[0].lower(), err
    assert "Traceback" not in (logs / "dl.err").read_text()
    written = sum(
        json.loads(line)["event"] == "piece" for line in (logs / "dl.json").read_text().splitlines()
    )
    assert written > 0
    # Every piece reported written is intact on the full disk; nothing else counts.
    assert (logs / "verify.rc").read_text().strip() == "1"
    summary = json.loads((logs / "verify.json").read_text().splitlines()[-1])
    assert summary["pieces_ok"] == written
