"""The demo's summary arithmetic: the rank correlation and the closing line (issue 14)."""

from __future__ import annotations

from typing import Any

import pytest

from torrentkit.cli.demo import peer_specs
from torrentkit.cli.demo_common import spearman, verdict


def test_spearman() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [9, 7, 5, 1]) == pytest.approx(-1.0)
    # ties take the average rank: ranks (1.5, 1.5, 3, 4) against (4, 3, 2, 1)
    assert spearman([0, 0, 5, 9], [40, 30, 20, 10]) == pytest.approx(-0.9486833)
    assert spearman([1, 1, 1], [3, 2, 1]) is None  # a constant series
    assert spearman([1], [2]) is None


def summary(names: list[str], rho: float | None, last: float | None = 9.0) -> dict[str, Any]:
    rows = [{"name": n, "seconds": float(i + 1)} for i, n in enumerate(names)]
    rows[-1]["seconds"] = last
    return {"spearman": rho, "leechers": rows}


def test_verdict_states_the_correlation_and_the_free_riders_place() -> None:
    line = verdict(summary(["leecher 2", "leecher 1", "free rider"], -0.87))
    assert line == "upload limit vs time, Spearman -0.87; the free rider finished 3rd of 3 (last)"
    rows = [f"leecher {i}" for i in range(1, 20)] + ["free rider"]
    assert len(verdict(summary(rows, -0.876))) <= 80
    line = verdict(summary(["leecher 2", "free rider", "leecher 1"], -0.5))
    assert "the free rider finished 2nd of 3" in line and "(last)" not in line
    line = verdict(summary(["leecher 1", "free rider"], None, last=None))
    assert "n/a" in line and "the free rider did not finish" in line


def test_peer_specs_name_the_leechers_from_the_slowest_up() -> None:
    specs = peer_specs(12, 1, 1536 * 1024)
    assert [name for name, _ in specs] == [f"leecher {i}" for i in range(1, 12)] + ["free rider"]
    limits = [limit for _, limit in specs]
    assert limits[-1] == 0 and limits[:-1] == sorted(limits[:-1])
    assert limits[0] == 192 * 1024 and limits[-2] == 768 * 1024  # 1/8 to 1/2 of the seeder
