"""Shared test helpers, and the guard that keeps every test on this machine."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from tests.guard.sitecustomize import is_local_host, network_namespace, refused

# Hypothesis fails an example that runs longer than its deadline (200 ms by default): on a
# shared two-core machine a preempted example crosses it now and then, and the test fails
# for timing, not for what it checks. The examples keep their counts; only the clock goes.
settings.register_profile("torrentkit", deadline=None)
settings.load_profile("torrentkit")

__all__ = ["is_local_host", "require_binary"]


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


def _audit(event: str, args: tuple[Any, ...]) -> None:
    what = refused(event, args)
    if what is not None:
        _refuse(what)


def _refuse(what: str) -> None:
    _violations.append(what)
    raise PermissionError(f"tests stay on loopback: refused {what}")


sys.addaudithook(_audit)

# Python subprocesses a test starts (the CLI under test) load tests/guard/sitecustomize.py,
# which refuses the same things and writes them to this file.
_GUARD_DIR = Path(__file__).parent / "guard"
_fd, _SUBPROCESS_LOG = tempfile.mkstemp(prefix="torrentkit-loopback-guard-")
os.close(_fd)
atexit.register(lambda: os.path.exists(_SUBPROCESS_LOG) and os.unlink(_SUBPROCESS_LOG))
os.environ["TORRENTKIT_LOOPBACK_GUARD"] = _SUBPROCESS_LOG
os.environ["TORRENTKIT_LOOPBACK_GUARD_NETNS"] = network_namespace() or ""
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(_GUARD_DIR), os.environ.get("PYTHONPATH", "")) if p
)


def _subprocess_violations() -> list[str]:
    with open(_SUBPROCESS_LOG, "r+", encoding="utf-8") as log:
        lines = log.read().splitlines()
        log.truncate(0)
    return lines


@pytest.fixture(autouse=True)
def loopback_only() -> Any:
    """Fail any test that (or any Python process it started) tried to leave this machine."""
    _violations.clear()
    _subprocess_violations()
    yield
    seen = _violations[:3] + _subprocess_violations()[:3]
    _violations.clear()
    if seen:
        pytest.fail(f"a test tried to leave loopback: {', '.join(seen)}", pytrace=False)
