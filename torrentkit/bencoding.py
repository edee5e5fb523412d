"""Strict, bounded bencode: the one module that calls bencode.py.

bencode.py decodes values but is lenient (``int()`` accepts ``+5``, ``1_0`` and spaces) and
knows no limits or byte spans. So every input first goes through :func:`scan`, a small
validating tokenizer that enforces the canonical grammar and the limits in HARDENING.md
(depth, token count, integer size) without building values, and records where each value of
the top-level dictionary starts and ends. Only bytes that passed the scan reach bencode.py.
The spans let metainfo hash the info dictionary exactly as it stands in the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import bencodepy

from torrentkit.errors import BencodeError

# Integers: canonical form only (no leading zeros, no -0) and within signed 64 bits' digit count.
_INT = re.compile(rb"i(0|-?[1-9][0-9]{0,18})e")
# String length prefix: canonical, at most 10 digits (a torrent file is capped well below that).
_STR_LEN = re.compile(rb"(0|[1-9][0-9]{0,9}):")

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Bounds for one decode. Defaults suit .torrent files (libtorrent's figures)."""

    max_size: int = 64 * 1024 * 1024
    max_depth: int = 100
    max_tokens: int = 2_000_000


TORRENT_LIMITS = Limits()
#: DHT / overlay datagrams (HARDENING.md).
DATAGRAM_LIMITS = Limits(max_size=1500, max_depth=10, max_tokens=500)
#: Peer wire extension messages (BEP 10 handshake, ut_metadata headers).
MESSAGE_LIMITS = Limits(max_size=1024 * 1024, max_depth=10, max_tokens=10_000)


@dataclass(slots=True)
class Scan:
    """What :func:`scan` learnt: where the value ends and the top-level dict's value spans."""

    end: int
    spans: dict[bytes, tuple[int, int]] = field(default_factory=dict)


def scan(data: bytes, limits: Limits = TORRENT_LIMITS, *, start: int = 0) -> Scan:
    """Validate one bencoded value starting at ``start``; return where it ends.

    Raises :class:`BencodeError` for anything that is not canonical bencode within ``limits``.
    Dictionary keys must be byte strings and unique; they need not be sorted (real torrents
    exist with unsorted keys, and their info-hash is over the bytes as they stand).
    """
    n = len(data)
    if n - start > limits.max_size:
        raise BencodeError(f"input of {n - start} bytes exceeds the {limits.max_size} byte limit")
    if start >= n:
        raise BencodeError("empty input")
    result = Scan(end=start)
    # Each frame: [kind, keys-seen set or None, expecting_key, current key]
    stack: list[list[Any]] = []
    tokens = 0
    pos = start
    top_value_start = -1
    while True:
        tokens += 1
        if tokens > limits.max_tokens:
            raise BencodeError(f"more than {limits.max_tokens} tokens")
        if pos >= n:
            raise BencodeError("truncated input")
        frame = stack[-1] if stack else None
        c = data[pos]
        if c == 0x65:  # 'e' closes a container
            if frame is None:
                raise BencodeError(f"unexpected 'e' at offset {pos}")
            if frame[0] == "d" and not frame[2]:
                raise BencodeError(f"dictionary key without a value at offset {pos}")
            stack.pop()
            pos += 1
            if not stack:
                result.end = pos
                return result
            _after_value(stack, result, top_value_start, pos)
            continue
        if frame is not None and frame[0] == "d" and frame[2]:
            # A key is expected: it must be a byte string.
            m = _STR_LEN.match(data, pos)
            if m is None:
                raise BencodeError(f"dictionary key is not a string at offset {pos}")
            length = int(m.group(1))
            key_start = m.end()
            if key_start + length > n:
                raise BencodeError("truncated string")
            key = data[key_start : key_start + length]
            if key in frame[1]:
                raise BencodeError(f"duplicate dictionary key {key!r}")
            frame[1].add(key)
            frame[2] = False
            frame[3] = key
            pos = key_start + length
            if len(stack) == 1:
                top_value_start = pos
            continue
        if c == 0x69:  # 'i'
            m = _INT.match(data, pos)
            if m is None:
                raise BencodeError(f"malformed integer at offset {pos}")
            value = int(m.group(1))
            if not INT64_MIN <= value <= INT64_MAX:
                raise BencodeError(f"integer out of range at offset {pos}")
            pos = m.end()
        elif 0x30 <= c <= 0x39:
            m = _STR_LEN.match(data, pos)
            if m is None:
                raise BencodeError(f"malformed string length at offset {pos}")
            length = int(m.group(1))
            if m.end() + length > n:
                raise BencodeError("truncated string")
            pos = m.end() + length
        elif c == 0x6C or c == 0x64:  # 'l' or 'd'
            if len(stack) >= limits.max_depth:
                raise BencodeError(f"nesting deeper than {limits.max_depth}")
            if c == 0x64:
                stack.append(["d", set(), True, b""])
            else:
                stack.append(["l", None, False, b""])
            pos += 1
            continue
        else:
            raise BencodeError(f"unexpected byte {bytes([c])!r} at offset {pos}")
        # A scalar value ended at pos.
        if not stack:
            result.end = pos
            return result
        _after_value(stack, result, top_value_start, pos)


def _after_value(stack: list[list[Any]], result: Scan, value_start: int, end: int) -> None:
    frame = stack[-1]
    if frame[0] == "d":
        if len(stack) == 1:
            result.spans[frame[3]] = (value_start, end)
        frame[2] = True


def decode(data: bytes, limits: Limits = TORRENT_LIMITS) -> Any:
    """Decode exactly one value spanning all of ``data``."""
    end = scan(data, limits).end
    if end != len(data):
        raise BencodeError(f"{len(data) - end} bytes of trailing data")
    return _decode_checked(data)


def decode_prefix(data: bytes, limits: Limits = TORRENT_LIMITS) -> tuple[Any, int]:
    """Decode the value at the start of ``data``; return it and where it ended.

    For messages that carry raw bytes after a bencoded header (BEP 9 ``ut_metadata``).
    """
    end = scan(data, limits).end
    return _decode_checked(data[:end]), end


def decode_with_spans(
    data: bytes, limits: Limits = TORRENT_LIMITS
) -> tuple[Any, dict[bytes, tuple[int, int]]]:
    """Decode ``data`` and return the top-level dictionary's raw value spans too."""
    result = scan(data, limits)
    if result.end != len(data):
        raise BencodeError(f"{len(data) - result.end} bytes of trailing data")
    return _decode_checked(data), result.spans


def _decode_checked(data: bytes) -> Any:
    try:
        return bencodepy.decode(data)
    except bencodepy.BencodeDecodeError as exc:  # pragma: no cover - scan() guards this
        raise BencodeError(str(exc)) from None


class Raw:
    """Bytes that are already bencoded, embedded as they are by :func:`encode`."""

    __slots__ = ("cached",)

    def __init__(self, bencoded: bytes) -> None:
        self.cached = bencodepy.Bencached(bencoded)


def encode(value: Any) -> bytes:
    """Bencode ``value`` (dict keys sorted, str as UTF-8, :class:`Raw` embedded verbatim)."""
    return bytes(bencodepy.encode(_prepare(value)))


def _prepare(value: Any) -> Any:
    if isinstance(value, Raw):
        return value.cached
    if isinstance(value, dict):
        return {k: _prepare(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_prepare(v) for v in value]
    if isinstance(value, bool):
        raise TypeError("bool is not a bencode type")
    return value
