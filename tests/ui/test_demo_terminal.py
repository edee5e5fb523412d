"""`torrentkit demo` in a real terminal (tmux) and the --json event stream (issue 5)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import require_binary
from tests.interop.peers import make_payload, read_line, stop_process
from torrentkit.maketorrent import make_torrent

TK = f"{sys.executable} -m torrentkit.cli.main"
#: a peer row: the peer as the demo names it (seeder, leecher N, free rider), then its flags
ROW = re.compile(r"^(seeder|leecher \d+|free rider)\s+([DdK.][Uu?.][O.][S.][I.])\s")


@pytest.mark.slow
def test_demo_dashboard_in_tmux_shows_changing_choke_flags(tmp_path: Path) -> None:
    tmux = require_binary("tmux")
    sock = f"torrentkit-test-{os.getpid()}"  # our own tmux server, ended below
    base = [tmux, "-L", sock, "-f", "/dev/null"]
    done = tmp_path / "exit-code"
    cmd = (
        # COLUMNS/LINES from pytest's terminal would override the pane's size for rich
        f"cd {tmp_path} && env -u COLUMNS -u LINES {TK} demo --leechers 6 --size 6M "
        "--timeout 120; "
        f"echo $? > {done}; sleep 60"
    )
    subprocess.run([*base, "new-session", "-d", "-s", "demo", "-x", "100", "-y", "32", cmd],
                   check=True, timeout=10)  # fmt: skip
    seen: dict[str, set[str]] = {}
    screens = []
    try:
        deadline = time.monotonic() + 150
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(1.0)
            screen = subprocess.run([*base, "capture-pane", "-p", "-t", "demo"],
                                    capture_output=True, text=True, timeout=10).stdout  # fmt: skip
            screens.append(screen)
            for line in screen.splitlines():
                m = ROW.match(line)
                if m:
                    seen.setdefault(m.group(1), set()).add(m.group(2))
        assert done.exists(), "the demo did not finish\n" + (screens[-1] if screens else "")
        assert done.read_text().strip() == "0"
    finally:
        subprocess.run([*base, "kill-server"], timeout=10, check=False)
    header = [s for s in screens if "leecher" in s and "address" in s and "flags" in s]
    assert len(header) >= 3, screens[-1] if screens else "no screen captured"
    assert any(len(flags) > 1 for flags in seen.values()), seen  # choke state changed
    assert any("U" in f[1] for flags in seen.values() for f in flags)  # someone unchoked
    assert any(f[0] in "Dd" for flags in seen.values() for f in flags)
    assert {"seeder", "free rider"} <= set(seen), seen  # named as the demo knows them
    # the whole height: the legend sits on the terminal's last row (the event log grows)
    full = [s for s in screens if "leecher" in s and "flags" in s]
    assert full and all(s.splitlines()[-1].startswith("D") for s in full), full[-1:]


@pytest.mark.parametrize("discovery", ["tracker", "chord"])
def test_demo_json_summary(tmp_path: Path, discovery: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "torrentkit.cli.main", "demo", "--leechers", "3", "--size", "2M",
         "--json", "--timeout", "60", "--discovery", discovery],
        capture_output=True, text=True, timeout=90, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    (line,) = r.stdout.splitlines()
    summary = json.loads(line)
    assert summary["event"] == "summary" and summary["finished"] is True
    assert summary["discovery"] == discovery
    rows = summary["leechers"]
    assert sorted(row["name"] for row in rows) == ["free rider", "leecher 1", "leecher 2"]
    for row in rows:  # exactly these fields (issue 14)
        assert set(row) == {"name", "upload_limit", "seconds", "complete", "verified",
                            "unchoked_share"}  # fmt: skip
        assert row["verified"] and row["complete"] and row["seconds"] > 0
        assert 0 <= row["unchoked_share"] <= 1
    assert [row["seconds"] for row in rows] == sorted(row["seconds"] for row in rows)
    limits = {row["name"]: row["upload_limit"] for row in rows}
    assert limits["free rider"] == 0 and 0 < limits["leecher 1"] < limits["leecher 2"]
    assert summary["spearman"] is None or -1 <= summary["spearman"] <= 1


@pytest.mark.slow
def test_seed_json_stream_has_choke_and_optimistic_events(tmp_path: Path) -> None:
    data = make_payload(tmp_path / "seed" / "data.bin", 4 * 1024 * 1024)
    torrent = tmp_path / "data.torrent"
    torrent.write_bytes(make_torrent(data, piece_length=16 * 1024))
    seeder = subprocess.Popen(
        [sys.executable, "-m", "torrentkit.cli.main", "seed", str(torrent), str(data.parent),
         "--bind", "127.0.0.1", "--no-tracker", "--no-dht", "--json", "--up-limit", "1M",
         "--state-dir", str(tmp_path / "s0")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    leechers = []
    lines: list[bytes] = []  # read as they come: a full pipe would stall the seeder
    try:
        first = json.loads(read_line(seeder, 15))
        assert first["event"] == "listening"
        reader = threading.Thread(target=lambda: lines.extend(seeder.stdout), daemon=True)  # type: ignore[arg-type]
        reader.start()
        addr = f"127.0.0.1:{first['port']}"
        for i in range(6):  # more than the 4 seed slots: someone waits for the optimistic one
            out = tmp_path / f"out{i}"
            out.mkdir()
            leechers.append(subprocess.Popen(
                [sys.executable, "-m", "torrentkit.cli.main", "download", str(torrent),
                 "-o", str(out), "--bind", "127.0.0.1", "--peer", addr, "--no-tracker", "--no-dht",
                 "--state-dir", str(tmp_path / f"s{i + 1}"), "--timeout", "120",
                 "--seed-time", "12"],  # stay: the seed still chokes and rotates its slots
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))  # fmt: skip
        for proc in leechers:
            assert proc.wait(150) == 0
    finally:
        for proc in leechers:
            stop_process(proc)
        stop_process(seeder)
    reader.join(timeout=30)
    events = [json.loads(line) for line in b"".join(lines).decode().splitlines()]
    kinds = {e["event"] for e in events}
    assert {"peer_connected", "unchoke", "choke", "optimistic", "summary"} <= kinds, kinds
    reasons = {e["reason"] for e in events if e["event"] in ("choke", "unchoke")}
    assert "seed" in reasons and reasons <= {"seed", "optimistic"}, reasons
    # Leechers that complete part from the seed (whichever side sees it first closes).
    gone = {e["reason"] for e in events if e["event"] == "peer_disconnected"}
    assert gone and gone <= {"both have what they want", "closed by peer"}, gone
    assert all("t" in e for e in events)
    summary = events[-1]
    assert summary["event"] == "summary"
    assert summary["torrents"][0]["uploaded"] >= 4 * 1024 * 1024
