"""safe_text (one escaping rule for every face), and the rule that only faces import cli/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import torrentkit
from torrentkit.text import safe_text

PACKAGE = Path(torrentkit.__file__).parent


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("evil\x1b[31mred", "evil\\x1b[31mred"),
        ("a\u202eb\u200bc\u2028d\ufeff", "a\\u202eb\\u200bc\\u2028d\\ufeff"),
        ("tab\tnl\ndel\x7fc1\x9b", "tab\\x09nl\\x0adel\\x7fc1\\x9b"),
        ("été 日本 ok [bold]x[/]", "été 日本 ok [bold]x[/]"),
    ],
)
def test_what_could_fool_a_terminal_is_escaped(raw: str, shown: str) -> None:
    assert safe_text(raw) == shown


@given(st.text())
def test_escaping_leaves_nothing_to_escape(raw: str) -> None:
    # Invariant: the escapes are plain printable ASCII, so a second pass finds nothing.
    once = safe_text(raw)
    assert safe_text(once) == once


def test_the_cli_re_exports_the_same_function() -> None:
    from torrentkit.cli.common import safe_text as from_cli

    assert from_cli is safe_text


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("layer", ["ui", "engine", "discovery", "testing", "wire"])
def test_no_inner_layer_or_ui_imports_the_cli(layer: str) -> None:
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in sorted((PACKAGE / layer).rglob("*.py"))
        if any(n == "torrentkit.cli" or n.startswith("torrentkit.cli.") for n in _imports(path))
    ]
    assert offenders == []
