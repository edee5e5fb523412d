"""Start-up cost of the commands that run many at a time (a swarm of ``download`` processes):
what they import. Every module is CPU at every start (rich alone ~0.1 s, more than the rest of
torrentkit together), so the heavy ones stay behind the commands that use them."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("command", ["download", "seed"])
def test_a_headless_command_does_not_import_the_ui(command: str) -> None:
    probe = (
        "import sys, torrentkit.cli.main as m\n"
        f"m.build_parser({command!r})\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out, "the probe printed no module list"
    heavy = [m for m in out if m == "rich" or m.startswith(("rich.", "torrentkit.ui"))]
    assert heavy == []
    # Nor what only some runs need: RC4 (the first encrypted connection imports it), the
    # tracker server's aiohttp, the Redis store, the DHT's signatures.
    later = ("cryptography", "aiohttp", "redis")
    assert [m for m in out if m.split(".")[0] in later] == []
