"""The lecture's worked example (m = 3, r = 1; joins 1, 2, then 0 and 6), run by the production
node code on the in-memory network: every table, the items and the query path as on the
slides."""

from __future__ import annotations

import json

import pytest
import trio
import trio.testing

from torrentkit.cli.main import main
from torrentkit.discovery.chord.example import run_example

# (i, id + 2**i, successor), from the slides.
ALONE = {1: ((0, 2, 1), (1, 3, 1), (2, 5, 1))}
AFTER_2 = {
    1: ((0, 2, 2), (1, 3, 1), (2, 5, 1)),
    2: ((0, 3, 1), (1, 4, 1), (2, 6, 1)),
}
FINAL = {
    0: ((0, 1, 1), (1, 2, 2), (2, 4, 6)),
    1: ((0, 2, 2), (1, 3, 6), (2, 5, 6)),
    2: ((0, 3, 6), (1, 4, 6), (2, 6, 6)),
    6: ((0, 7, 0), (1, 0, 0), (2, 2, 2)),
}


async def test_lecture_tables_items_and_query_path(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(600):
        result = await run_example()
    stages = dict(result.stages)
    assert {t.node: t.rows for t in stages["1 joins"]} == ALONE
    assert {t.node: t.rows for t in stages["2 joins"]} == AFTER_2
    assert {t.node: t.rows for t in stages["0 and 6 join"]} == FINAL
    # Both items sat on node 1 before 0 and 6 joined; item 7 moved to node 0.
    assert result.items == ((1, 1), (7, 0))
    assert {t.node: t.items for t in result.tables} == {0: (7,), 1: (1,), 2: (), 6: ()}
    assert result.path == (1, 6, 0)


@pytest.mark.parametrize("seed", [2, 3, 4])
async def test_the_example_does_not_depend_on_the_seed(
    autojump_clock: trio.testing.MockClock, seed: int
) -> None:
    with trio.fail_after(600):
        result = await run_example(seed=seed)
    assert {t.node: t.rows for t in result.tables} == FINAL
    assert result.path == (1, 6, 0)


def test_command_prints_tables_items_and_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chord-example"]) == 0
    out = capsys.readouterr().out
    blocks = out.split("\n\n")
    assert blocks[0].splitlines() == [
        "node 0",
        "i  start  successor",
        "0  1      1",
        "1  2      2",
        "2  4      6",
    ]
    assert blocks[3].splitlines()[0] == "node 6"
    assert "item 7 stored at node 0" in out and "item 1 stored at node 1" in out
    assert out.rstrip().endswith("1 -> 6 -> 0")


def test_command_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chord-example", "--json"]) == 0
    objs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    nodes = {o["node"]: o for o in objs if o["event"] == "node"}
    assert [(r["i"], r["start"], r["successor"]) for r in nodes[6]["table"]] == list(FINAL[6])
    assert {(o["item"], o["node"]) for o in objs if o["event"] == "item"} == {(7, 0), (1, 1)}
    assert objs[-1]["event"] == "query" and objs[-1]["path"] == [1, 6, 0]
