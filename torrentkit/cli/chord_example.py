"""``torrentkit chord-example [--json]``: the lecture's Chord example, run by the real node code.

Identifier space 0..7 (m = 3, r = 1); nodes join in the order 1, 2, then 0 and 6; items 7 and
1 are announced; then every node's finger table, where each item is stored, and the path of
``query(7)`` issued at node 1. It runs on the in-memory network under a virtual clock: the
minute of simulated stabilization takes a fraction of a second, the same every run.
"""

from __future__ import annotations

import argparse
from typing import Any

from torrentkit.cli.common import EXIT_OK, emit_json
from torrentkit.discovery.chord.example import ExampleResult, lecture_example

_JSON_HELP = (
    "machine output: one JSON object per line: per node "
    '{"event":"node","node":N,"table":[{"i","start","successor"}...],"items":[...]}, '
    'per item {"event":"item","item":ID,"node":N}, then '
    '{"event":"query","key":7,"from":1,"path":[1,6,0]}; "t" is virtual seconds'
)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "chord-example",
        help="run the lecture's Chord example (m=3: nodes 1, 2, 0, 6) and print the tables",
        description=(__doc__ or "").replace("``", ""),  # plain text, not RST markup
    )
    p.add_argument("--json", action="store_true", help=_JSON_HELP)
    p.set_defaults(func=run)


def render_text(result: ExampleResult) -> str:
    lines: list[str] = []
    for table in result.tables:
        lines.append(f"node {table.node}")
        lines.append("i  start  successor")
        for i, start, succ in table.rows:
            lines.append(f"{i:<2} {start:<6} {succ}")
        lines.append("")
    for item, node in result.items:
        lines.append(f"item {item} stored at node {node}")
    path = " -> ".join(str(n) for n in result.path)
    lines.append(f"query({result.query_key}) from node {result.query_from}: {path}")
    return "\n".join(lines) + "\n"


def json_objects(result: ExampleResult) -> list[dict[str, Any]]:
    t = round(result.seconds, 3)
    out: list[dict[str, Any]] = []
    for table in result.tables:
        out.append(
            {
                "event": "node",
                "t": t,
                "node": table.node,
                "table": [{"i": i, "start": s, "successor": n} for i, s, n in table.rows],
                "items": list(table.items),
            }
        )
    for item, node in result.items:
        out.append({"event": "item", "t": t, "item": item, "node": node})
    out.append(
        {
            "event": "query",
            "t": t,
            "key": result.query_key,
            "from": result.query_from,
            "path": list(result.path),
        }
    )
    return out


def run(args: argparse.Namespace) -> int:
    result = lecture_example()
    if args.json:
        for obj in json_objects(result):
            emit_json(obj)
    else:
        print(render_text(result), end="", flush=True)
    return EXIT_OK
