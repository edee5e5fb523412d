"""The suite's own guard: nothing a test runs may reach beyond this machine."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.conftest import _subprocess_violations, _violations, is_local_host


def test_a_datagram_to_another_host_is_refused_before_it_leaves() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, pytest.raises(PermissionError):
        s.sendto(b"x", ("192.0.2.1", 6881))  # TEST-NET-1: never routed anyway
    assert _violations  # the fixture would fail the test: clear it, this one was on purpose
    _violations.clear()


def test_a_connection_to_another_host_is_refused() -> None:
    with socket.socket() as s, pytest.raises(PermissionError):
        s.connect(("198.51.100.7", 80))
    _violations.clear()


def test_name_lookups_beyond_localhost_are_refused() -> None:
    with pytest.raises(PermissionError):
        socket.getaddrinfo("router.bittorrent.com", 6881)
    _violations.clear()


def test_loopback_is_allowed() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.sendto(b"x", s.getsockname())
        assert s.recv(1) == b"x"
    assert is_local_host("127.0.0.5") and is_local_host("::1") and is_local_host("localhost")
    assert not is_local_host("10.0.0.1") and not is_local_host("example.org")


def test_python_subprocesses_are_guarded_too() -> None:
    # The CLI under test runs in subprocesses: a lookup of a public router there is refused
    # and reported to this process (the fixture would fail the test).
    code = "import socket; socket.getaddrinfo('router.bittorrent.com', 6881)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "PermissionError" in r.stderr
    seen = _subprocess_violations()
    assert len(seen) == 1 and "router.bittorrent.com" in seen[0]
    ok = "import socket; socket.getaddrinfo('localhost', 1)"
    assert subprocess.run([sys.executable, "-c", ok], timeout=60).returncode == 0
    assert _subprocess_violations() == []
