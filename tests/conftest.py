"""Shared test helpers, and the guard that keeps every test on this machine."""

from __future__ import annotations

import ipaddress
import shutil
import sys
from typing import Any

import pytest


def require_binary(name: str) -> str:
    """Path of a real interop peer / tool. Fails (never skips) when it is missing: CI must
    install every reference peer, and a silent skip would hide that."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; run scripts/setup --test", pytrace=False)
    return path


# --------------------------------------------------------------------------- loopback only
# Every connection and datagram a test makes must stay on the machine (127.0.0.0/8, ::1, or
# the unspecified address, which the kernel routes locally). An audit hook sees each
# socket.connect / sendto / sendmsg and each name lookup in this process -- trio, httpx,
# aiohttp and the standard library alike -- and refuses anything else before it leaves;
# the autouse fixture then fails the test even if the code under test caught the error.

_violations: list[str] = []
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_local_host(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return True  # unix sockets and the like
    if host in _LOCAL_NAMES or host == "":
        return True
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False  # a host name that is not localhost
    return ip.is_loopback or ip.is_unspecified


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        address = args[1] if len(args) > 1 else None
        if isinstance(address, tuple) and address and not is_local_host(address[0]):
            _refuse(f"{event} to {address[0]}:{address[1] if len(address) > 1 else '?'}")
    elif event == "socket.getaddrinfo":
        host = args[0] if args else None
        if host is not None and not is_local_host(host):
            _refuse(f"name lookup of {host!r}")


def _refuse(what: str) -> None:
    _violations.append(what)
    raise PermissionError(f"tests stay on loopback: refused {what}")


sys.addaudithook(_audit)


@pytest.fixture(autouse=True)
def loopback_only() -> Any:
    """Fail any test that tried to reach beyond this machine."""
    _violations.clear()
    yield
    if _violations:
        seen = ", ".join(_violations[:3])
        _violations.clear()
        pytest.fail(f"a test tried to leave loopback: {seen}", pytrace=False)
