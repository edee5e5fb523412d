"""tools/incentives.py on a small swarm (issue 14 item 2): every strategy runs on the real
engine under the virtual clock, and the mechanisms the tool measures are the ones named.

- Every copy is verified (the tool raises otherwise) and, while the seed stays, every
  leecher completes, the free riders too: they never upload a byte, yet leechers send them
  data (optimistic unchokes: what lets a newcomer start).
- The large-view free rider is connected to more peers than the plain one (the exploit).
- The strategic uploader, giving each peer just enough to stay unchoked (per-peer caps),
  uploads less than an honest peer in its place and still completes.
- The seed leaves in the ``seed_leaves`` runs; the JSON has every strategy and key.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "incentives.py"
KIB = 1024


def load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("incentives_tool", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    return load_tool()


def test_every_strategy_on_a_small_swarm(tool: ModuleType) -> None:
    cfg = dataclasses.replace(
        tool.QUICK,
        size=1024 * KIB,
        classes=((4 * KIB, 3), (12 * KIB, 3), (32 * KIB, 3)),
        numwant=2,  # a partial view: the large-view rider knows more peers
    )
    rows = tool.measure(cfg, tool.STRATEGIES, [7])
    by = {r.strategy: r for r in rows}
    assert set(by) == set(tool.STRATEGIES)
    for row in json.loads(json.dumps([dataclasses.asdict(r) for r in rows])):
        assert {"strategy", "cheater_s", "cheater_vs_same_slot", "honest_loss"} <= row.keys()
        assert len(row["by_class"]) == 3

    for name in ("honest", "free_rider", "large_view", "strategic"):
        row = by[name]
        assert row.unfinished == 0, name
        assert row.cheater_down == cfg.size, name
        assert row.seed_left_s is None
    assert by["honest"].cheater_vs_same_slot == 1.0
    assert by["honest"].honest_loss == 0.0

    for name in ("free_rider", "large_view"):
        rider = by[name]
        assert rider.cheater_up == 0, name  # never unchoked anyone
        assert rider.cheater_s is not None and rider.cheater_first_piece_s is not None
        # Part of what it got came from leechers, although it gave them nothing. (The share
        # from the seed varies with trio's random task order: 0.80-0.88 in 16 runs of this
        # swarm, and 0.94 once in CI, so the claim is asserted as it is stated: not all.)
        assert rider.cheater_from_seed is not None and rider.cheater_from_seed < 1.0, name
    assert by["honest"].cheater_up > 0
    assert by["large_view"].cheater_peers > by["free_rider"].cheater_peers

    # It gives each peer just enough to stay unchoked: less in all than an honest peer in
    # its place (same uplink, same swarm), and still completes.
    tyrant = by["strategic"]
    assert 0 < tyrant.cheater_up < 0.8 * by["honest"].cheater_up
    assert tyrant.cheater_max_unchoked >= 1

    for name in ("seed_leaves", "free_rider_seed_leaves"):
        assert by[name].seed_left_s is not None, name


def test_the_table_and_the_verdicts_name_every_claim(tool: ModuleType) -> None:
    cfg = tool.QUICK
    cls = tool.ClassRow(up_rate=4 * KIB, seconds=100.0, uploaded=1.0, downloaded=2.0)
    base = tool.Row(
        strategy="honest", cheater="honest", runs=1, cheater_s=100.0, cheater_vs_same_slot=1.0,
        cheater_vs_class=1.0, cheater_first_piece_s=2.0, cheater_from_seed=0.2,
        cheater_up=5.0, cheater_down=10.0, cheater_peers=8.0, cheater_max_unchoked=5,
        honest_s=100.0, honest_loss=0.0, unfinished=0, seed_left_s=None, by_class=[cls] * 3,
    )  # fmt: skip
    rows = [
        base,
        dataclasses.replace(base, strategy="free_rider", cheater="free_rider", cheater_s=150.0,
                            cheater_vs_same_slot=1.5, cheater_up=0.0),
        dataclasses.replace(base, strategy="strategic", cheater="strategic",
                            cheater_vs_same_slot=0.9, honest_loss=0.01),
    ]  # fmt: skip
    text = tool.table(rows, cfg)
    assert "1.50x" in text and "free_rider" in text
    lines = tool.verdicts(rows, cfg)
    assert any(line.startswith("tit-for-tat avoids freeloaders") and "1.50x" in line
               for line in lines)  # fmt: skip
    assert any(line.startswith("optimistic unchoke lets newcomers start") for line in lines)
    assert any(line.startswith("Pareto efficient") and "0.90x" in line for line in lines)
