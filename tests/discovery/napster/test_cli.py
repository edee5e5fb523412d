"""`torrentkit napster-index` as a real process: first line, signals, bad flags."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.interop.peers import read_line, stop_process

CLI = [sys.executable, "-m", "torrentkit.cli.main", "napster-index"]


@contextmanager
def run_index(*args: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    proc = subprocess.Popen(
        [*CLI, "--bind", "127.0.0.1", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        yield proc, read_line(proc, 20)
    finally:
        stop_process(proc)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_first_line_names_the_real_port_and_sigterm_exits_0() -> None:
    with run_index("--ttl", "30") as (proc, line):
        m = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+) url http://127\.0\.0\.1:(\d+)/\n", line)
        assert m is not None and m.group(1) == m.group(2) and int(m.group(1)) > 0
        url = line.split()[4]
        with httpx.Client(base_url=url, timeout=10, trust_env=False) as http:
            joined = http.post("join", json={"port": 6881}).json()
            assert joined["ttl"] == 30 and joined["peer"] == "127.0.0.1:6881"
            assert (
                http.post(
                    "join", content=b"[[[", headers={"content-type": "application/json"}
                ).status_code
                == 400
            )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert proc.stderr is not None
        assert proc.stderr.read() == b""


def test_ctrl_c_exits_130() -> None:
    with run_index() as (proc, _):
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 130
        assert proc.stderr is not None
        assert b"Traceback" not in proc.stderr.read()


def test_rate_limit_flag() -> None:
    with (
        run_index("--rate-limit", "1") as (_, line),
        httpx.Client(base_url=line.split()[4], timeout=10, trust_env=False) as http,
    ):
        codes = [http.get("stats").status_code for _ in range(8)]
    assert codes[:5] == [200] * 5 and 429 in codes[5:]  # bursts of 5x the rate


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "70000"], "--port: must be 0-65535, got 70000"),
        (["--port", "x"], "invalid int value"),
        (["--ttl", "0"], "--ttl: must be 1-604800 seconds, got 0"),
        (["--ttl", "nan"], "--ttl: must be 1-604800 seconds"),
        (["--rate-limit", "-1"], "--rate-limit: must be 0-1000000"),
        (["--bind", "no such host.invalid"], "--bind: cannot use"),
    ],
)
def test_bad_flags_exit_2_with_one_line(args: list[str], message: str) -> None:
    done = subprocess.run(
        [*CLI, "--bind", "127.0.0.1", *args], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert message in done.stderr
    assert done.stderr.count("\n") == 1


def test_port_in_use_exits_2() -> None:
    """A port already in use is bad input, as for download/seed (docs/cli.md)."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [*CLI, "--bind", "127.0.0.1", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert done.stderr.count("\n") == 1
