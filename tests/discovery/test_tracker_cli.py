"""`torrentkit tracker` as a real process: first line, signals, whitelist reload, bad flags."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.interop.peers import run_tracker, wait_until
from torrentkit import bencoding
from torrentkit.discovery.tracker import protocol
from torrentkit.discovery.tracker.protocol import AnnounceRequest
from torrentkit.ids import InfoHash

IH = InfoHash(b"\x01" * 20)
IH2 = InfoHash(b"\x02" * 20)
CLI = [sys.executable, "-m", "torrentkit.cli.main", "tracker"]


def announce(url: str, info_hash: bytes, port: int = 6881) -> dict[bytes, object]:
    req = AnnounceRequest(info_hash=InfoHash(info_hash), peer_id=b"-TK0001-000000000001", port=port)
    with urllib.request.urlopen(protocol.announce_url(url, req), timeout=5) as resp:
        reply: dict[bytes, object] = bencoding.decode(resp.read())
        return reply


def raw_request(port: int, line: bytes) -> bytes:
    """Send one raw request line; return the status line of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(line + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = data.split(b"\r\n", 1)[0]
    assert status.endswith(b" 400 Bad Request"), data
    return status


def test_first_line_names_the_real_port_and_sigterm_exits_0() -> None:
    with run_tracker("--interval", "120") as tracker:
        m = re.fullmatch(
            r"listening on 127\.0\.0\.1:(\d+) announce http://127\.0\.0\.1:(\d+)/announce"
            r" udp://127\.0\.0\.1:(\d+)/announce\n",
            tracker.first_line,
        )
        assert m is not None and m.group(1) == m.group(2) == m.group(3) and int(m.group(1)) > 0
        reply = announce(tracker.announce_url, IH)
        assert isinstance(reply[b"interval"], int) and 120 <= reply[b"interval"] <= 132
        assert reply[b"min interval"] == 60
        # Not even HTTP (raw bytes in the URL): a 400, and nothing on stderr.
        assert raw_request(tracker.port, b"GET /announce?info_hash=\xff\x1b[2J HTTP/1.1")
        assert b"failure reason" not in announce(tracker.announce_url, IH, port=6882)
        tracker.proc.send_signal(signal.SIGTERM)
        assert tracker.proc.wait(10) == 0
        assert tracker.proc.stderr is not None
        assert tracker.proc.stderr.read() == b""


def test_ctrl_c_exits_130() -> None:
    with run_tracker() as tracker:
        announce(tracker.announce_url, IH)
        tracker.proc.send_signal(signal.SIGINT)
        assert tracker.proc.wait(10) == 130
        assert tracker.proc.stderr is not None
        assert b"Traceback" not in tracker.proc.stderr.read()


def test_whitelist_is_reloaded_on_sighup(tmp_path: Path) -> None:
    wl = tmp_path / "whitelist.txt"
    wl.write_text(f"# allowed\n{IH.hex()}\n")
    with run_tracker("--whitelist", str(wl)) as tracker:
        assert b"failure reason" not in announce(tracker.announce_url, IH)
        refused = announce(tracker.announce_url, IH2)
        assert refused == {b"failure reason": b"info_hash is not registered with this tracker"}

        wl.write_text(f"{IH2.hex()}\n")
        tracker.proc.send_signal(signal.SIGHUP)
        wait_until(
            lambda: b"failure reason" not in announce(tracker.announce_url, IH2),
            10,
            "the reloaded whitelist",
        )
        assert b"failure reason" in announce(tracker.announce_url, IH)

        # A broken file on reload keeps the old list (and says why).
        wl.write_text("not a hash\n")
        tracker.proc.send_signal(signal.SIGHUP)
        q = urllib.parse.quote_from_bytes(IH2)
        url = f"http://127.0.0.1:{tracker.port}/scrape?info_hash={q}"
        with urllib.request.urlopen(url, timeout=5) as resp:
            assert IH2 in protocol.parse_scrape_response(resp.read())
        assert b"failure reason" not in announce(tracker.announce_url, IH2, port=7000)
        tracker.proc.send_signal(signal.SIGTERM)
        assert tracker.proc.wait(10) == 0
        assert tracker.proc.stderr is not None
        err = tracker.proc.stderr.read().decode()
    assert "whitelist reloaded: 1 info-hashes" in err
    assert "whitelist not reloaded, keeping the old one" in err
    assert "line 1: expected 40 hex digits" in err


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "70000"], "--port: must be 0-65535, got 70000"),
        (["--port", "x"], "invalid int value"),
        (["--interval", "0"], "--interval: must be 1-604800 seconds, got 0"),
        (["--whitelist", "/nonexistent/wl.txt"], "--whitelist: /nonexistent/wl.txt: No such file"),
    ],
)
def test_bad_flags_exit_2_with_one_line(args: list[str], message: str) -> None:
    done = _run("--bind", "127.0.0.1", *args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert message in done.stderr
    assert done.stderr.count("\n") == 1


def test_bad_whitelist_file_names_the_line(tmp_path: Path) -> None:
    wl = tmp_path / "wl.txt"
    wl.write_text(f"{IH.hex()}\n<script>\n")
    done = _run("--bind", "127.0.0.1", "--port", "0", "--whitelist", str(wl))
    assert done.returncode == 2
    assert "line 2: expected 40 hex digits" in done.stderr
    assert done.stderr.count("\n") == 1


def test_port_in_use_exits_2() -> None:
    """A port already in use is bad input, as for download/seed (docs/cli.md)."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = _run("--bind", "127.0.0.1", "--port", str(port))
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert done.stderr.count("\n") == 1
