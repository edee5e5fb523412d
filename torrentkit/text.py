"""Text from the network made safe to show: the one escaping rule every face uses.

Torrent names, client names, ``v`` strings and error reasons arrive from strangers. Before a
face prints one, :func:`safe_text` escapes what could fool a terminal: control characters
(an ESC byte could recolour or move the cursor), zero-width characters, bidirectional marks
(``\\u202e`` reverses what follows) and line or paragraph separators. Everything else is
left alone, so ``été 日本`` still shows as typed.
"""

from __future__ import annotations

import re

__all__ = ["safe_text"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def safe_text(text: str) -> str:
    """Network-supplied text made harmless for a terminal: control characters, zero-width
    and bidirectional marks and line/paragraph separators escaped (``\\x1b``, ``\\u202e``)."""
    return _CONTROL.sub(_escape, text)


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
