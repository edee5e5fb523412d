"""tools/incentives.py at a small size: every strategy runs to the end on the real engine
and the table's numbers come out of the runs (issue 14 item 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[2] / "tools" / "incentives.py"


def test_every_strategy_runs_and_is_summarised() -> None:
    r = subprocess.run(
        [sys.executable, str(TOOL), "--seeds", "3", "--leechers", "14", "--size", "0.5",
         "--json"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    runs = {run["strategy"]: run for run in out["runs"]}
    assert set(runs) == {
        "honest", "free rider", "large-view free rider", "strategic", "seed leaves"
    }  # fmt: skip
    for run in runs.values():
        assert run["incomplete"] == 0, run  # 512 KiB: everyone completes, even without the seed
        assert run["honest_all"] > 0
    assert runs["seed leaves"]["subject_seconds"] is None
    assert runs["seed leaves"]["seed_uploaded_copies"] >= 1.0  # it left after a full copy
    # the large-view free rider is handed every leecher: it connects to more than the 10
    # an honest leecher keeps
    assert runs["large-view free rider"]["subject_peers"] > runs["free rider"]["subject_peers"]
    rows = {row["strategy"]: row for row in out["rows"]}
    assert rows["honest"]["honest_loss"] == 0.0
    honest = runs["honest"]
    ratio = honest["subject_seconds"] / honest["honest_same_capacity"]
    assert rows["honest"]["subject_vs_honest"] == round(ratio, 2)
