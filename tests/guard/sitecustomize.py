"""The loopback guard for the suite's subprocesses (the ``torrentkit`` CLI under test).

tests/conftest.py puts this folder first on the PYTHONPATH of every process a test starts
and names a file in ``TORRENTKIT_LOOPBACK_GUARD``; Python imports this module at start-up.
Unless the process runs in a network namespace other than the suite's (one a test made for
itself), it installs the same audit hook as the test process: a connection, datagram or name lookup
beyond this machine is refused (PermissionError) and written to that file, whose lines the
autouse fixture turns into a failed test -- even when the code under test swallowed the
error (a DHT node that cannot resolve its routers simply carries on).
"""

from __future__ import annotations

import ipaddress
import os
import sys
from typing import Any

_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
#: RFC 6761's reserved name that never resolves (a test of a bad host name uses it).
_NEVER_RESOLVES = ".invalid"


def is_local_host(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return True  # unix sockets and the like
    if host in _LOCAL_NAMES or host == "" or host.rstrip(".").endswith(_NEVER_RESOLVES):
        return True
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False  # a host name that is not localhost
    return ip.is_loopback or ip.is_unspecified


def refused(event: str, args: tuple[Any, ...]) -> str | None:
    """What an audit event would send beyond this machine, or None."""
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        address = args[1] if len(args) > 1 else None
        if isinstance(address, tuple) and address and not is_local_host(address[0]):
            return f"{event} to {address[0]}:{address[1] if len(address) > 1 else '?'}"
    elif event == "socket.getaddrinfo":
        host = args[0] if args else None
        if host is not None and not is_local_host(host):
            return f"name lookup of {host!r}"
    return None


def _install(log_path: str) -> None:
    def audit(event: str, args: tuple[Any, ...]) -> None:
        what = refused(event, args)
        if what is not None:
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(f"pid {os.getpid()}: {what}\n")
            raise PermissionError(f"tests stay on loopback: refused {what}")

    sys.addaudithook(audit)


def network_namespace() -> str | None:
    """This process's network namespace (``net:[4026531840]``), None where unknown."""
    try:
        return os.readlink("/proc/self/ns/net")
    except OSError:
        return None


# A process a test started inside a network namespace of its own (``ip netns``, ``unshare
# -n``: LSD's multicast tests) talks only to that namespace: nothing there leaves the machine.
if os.environ.get("TORRENTKIT_LOOPBACK_GUARD") and network_namespace() == os.environ.get(
    "TORRENTKIT_LOOPBACK_GUARD_NETNS", network_namespace()
):
    _install(os.environ["TORRENTKIT_LOOPBACK_GUARD"])
