"""Text from the network made safe to show: the one escaping rule every face uses.

Torrent names, client names, ``v`` strings and error reasons arrive from strangers. Before a
face prints one, :func:`safe_text` escapes what could fool a terminal: control characters
(an ESC byte could recolour or move the cursor), zero-width characters, bidirectional marks
(``\\u202e`` reverses what follows) and line or paragraph separators. Everything else is
left alone, so ``été 日本`` still shows as typed.
"""

from __future__ import annotations

import re

__all__ = ["format_duration", "format_rate", "format_size", "safe_text"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def safe_text(text: str) -> str:
    """Network-supplied text made harmless for a terminal: control characters, zero-width
    and bidirectional marks and line/paragraph separators escaped (``\\x1b``, ``\\u202e``)."""
    return _CONTROL.sub(_escape, text)


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


# Human units, binary as the limits are given (docs/cli.md); no rich, so headless commands
# can use them without importing the UI.


def format_size(n: float) -> str:
    """``0 B``, ``512 B``, ``12.3 KiB``, ``1.2 MiB``, ..."""
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 999.95 or unit == "TiB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


def format_rate(bps: float) -> str:
    return f"{format_size(bps)}/s"


def format_duration(seconds: float) -> str:
    """At most 5 cells: ``0s``, ``59s``, ``12m05``, ``3h07``, ``12d``, ``∞``."""
    if not seconds < 10_000 * 86400:  # also NaN and inf
        return "∞"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}"
    h = s // 3600
    return f"{h}h{s % 3600 // 60:02d}" if h < 100 else f"{h // 24}d"
