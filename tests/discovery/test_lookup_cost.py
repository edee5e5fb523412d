"""tools/lookup_cost.py at small N: the shape of the lecture's claims, measured on the
production node code (issue 7, item 5).

- Napster: a search is one request and one reply, whatever N; all gone with the index.
- Gnutella: a search costs more with more nodes and with a larger TTL; a low TTL finds the
  hay (popular items) but misses needles (rare ones).
- KaZaA floods supernodes only, Chord routes: both far cheaper than flooding everyone.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "lookup_cost.py"
KEYS = {
    "scheme",
    "nodes",
    "ttl",
    "messages_per_search",
    "hops",
    "state_per_node",
    "success_popular",
    "success_rare",
    "success_after_failure",
}


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(TOOL), *args, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def rows_of(proc: subprocess.Popen[str]) -> tuple[list[dict[str, Any]], str]:
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    rows: list[dict[str, Any]] = json.loads(out)
    assert rows and all(row.keys() >= KEYS for row in rows)
    return rows, err


@pytest.mark.slow
def test_lookup_cost_shape(tmp_path: Path) -> None:
    png = tmp_path / "cost.png"
    # Two runs side by side (two cores): the flooding one is the long one.
    flood = start("--nodes", "64", "256", "--schemes", "napster", "gnutella", "--searches", "8")
    other = start("--nodes", "64", "--schemes", "kazaa", "chord", "kademlia", "--searches", "6",
                  "--plot", str(png))  # fmt: skip
    try:
        rows, _ = rows_of(flood)
        more, err = rows_of(other)
    finally:
        for proc in (flood, other):
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def row(scheme: str, n: int, ttl: int | None = None) -> dict[str, Any]:
        (found,) = [
            r
            for r in rows + more
            if r["scheme"] == scheme and r["nodes"] == n and (ttl is None or r["ttl"] == ttl)
        ]
        return found

    # Napster: constant ~2 messages per search (ask, answer); one hop; nothing after the
    # index dies; the index holds state for everyone (sessions + entries > N).
    for n in (64, 256):
        napster = row("napster", n)
        assert napster["messages_per_search"] == pytest.approx(2.0, abs=0.01)
        assert napster["hops"] == 1
        assert napster["success_popular"] == napster["success_rare"] == 1.0
        assert napster["success_after_failure"] == 0
        assert napster["state_per_node"] > n
    # Gnutella: grows with N and with the TTL.
    assert (
        row("gnutella", 256, 7)["messages_per_search"]
        > 2 * row("gnutella", 64, 7)["messages_per_search"]
    )
    m = [row("gnutella", 256, ttl)["messages_per_search"] for ttl in (3, 5, 7)]
    assert m[0] < m[1] <= m[2], m
    # ... and a low TTL finds hay, not needles.
    low = row("gnutella", 256, 3)
    assert low["success_rare"] < low["success_popular"], low
    assert row("gnutella", 256, 7)["success_rare"] >= 0.75
    assert row("gnutella", 64, 7)["state_per_node"] <= 8  # neighbours, bounded
    # KaZaA and Chord: cheaper than flooding; Chord finds rare items as well as popular.
    assert row("kazaa", 64)["messages_per_search"] < row("gnutella", 64, 7)["messages_per_search"]
    chord = row("chord", 64)
    assert chord["messages_per_search"] < row("gnutella", 64, 3)["messages_per_search"]
    assert chord["success_rare"] == chord["success_popular"] == 1.0
    assert chord["hops"] >= 1
    # Kademlia (the mainline DHT node) likewise, and after 20% of the nodes fail.
    kad = row("kademlia", 64)
    assert kad["messages_per_search"] < row("gnutella", 64, 3)["messages_per_search"]
    assert kad["success_rare"] == kad["success_popular"] == kad["success_after_failure"] == 1.0
    assert 1 <= kad["hops"] <= chord["hops"] + 1
    if importlib.util.find_spec("matplotlib") is not None:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert "--plot needs matplotlib" in err
