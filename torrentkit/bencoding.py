"""Strict, bounded bencode: the one module that calls bencode.py.

bencode.py decodes values but is lenient (``int()`` accepts ``+5``, ``1_0`` and spaces) and
knows no limits or byte spans. So every input first goes through :func:`scan`, a small
validating tokenizer that enforces the canonical grammar and the limits in docs/limits.md
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
#: DHT / overlay datagrams (docs/limits.md, Bencode).
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
    # Each frame: [kind, keys-seen set or None, expecting_key, current key, list index]
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
                raise _error(f"dictionary key is not a string at offset {pos}", stack)
            length = int(m.group(1))
            key_start = m.end()
            if key_start + length > n:
                raise _error("truncated string", stack)
            key = data[key_start : key_start + length]
            if key in frame[1]:
                raise _error(f"duplicate dictionary key {key!r}", stack)
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
                raise _error(f"malformed integer at offset {pos}", stack)
            value = int(m.group(1))
            if not INT64_MIN <= value <= INT64_MAX:
                raise _error(f"integer out of range at offset {pos}", stack)
            pos = m.end()
        elif 0x30 <= c <= 0x39:
            m = _STR_LEN.match(data, pos)
            if m is None:
                raise _error(f"malformed string length at offset {pos}", stack)
            length = int(m.group(1))
            if m.end() + length > n:
                raise _error("truncated string", stack)
            pos = m.end() + length
        elif c == 0x6C or c == 0x64:  # 'l' or 'd'
            if len(stack) >= limits.max_depth:
                raise BencodeError(f"nesting deeper than {limits.max_depth}")
            if c == 0x64:
                stack.append(["d", set(), True, b"", 0])
            else:
                stack.append(["l", None, False, b"", 0])
            pos += 1
            continue
        else:
            raise _error(f"unexpected byte {bytes([c])!r} at offset {pos}", stack)
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
    else:
        frame[4] += 1


def _error(problem: str, stack: list[list[Any]]) -> BencodeError:
    """A BencodeError that also says where the bad value sits (``info.files[1].length``)."""
    parts: list[str] = []
    for frame in stack:
        if frame[0] == "l":
            parts.append(f"[{frame[4]}]")
            continue
        if frame[2]:  # between entries: the problem is in this dictionary, not in a value
            break
        key = frame[3].decode("utf-8", "backslashreplace")
        if not key.isprintable() or len(key) > 40:
            key = repr(frame[3][:40])
        parts.append(f".{key}" if parts else key)
    where = "".join(parts)
    return BencodeError(f"{problem} in {where}" if where else problem)


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
    """Bencode ``value`` (dict keys sorted, str as UTF-8, :class:`Raw` embedded verbatim).

    Subclasses of int, bytes and str (``InfoHash``, ``IntEnum``) encode as their base type.
    Raises TypeError for anything else (bool, float, None) and ValueError for what
    :func:`decode` would refuse: integers outside signed 64 bits, a key given twice (as
    ``"k"`` and ``b"k"``).
    """
    return bytes(bencodepy.encode(_prepare(value)))


def _prepare(value: Any) -> Any:
    # bencode.py looks encoders up by exact type, so subclasses are turned into their base.
    if isinstance(value, Raw):
        return value.cached
    if isinstance(value, bool):
        raise TypeError("bool is not a bencode type")
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(f"integer {value} is outside signed 64 bits")
        return int(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict):
        out: dict[bytes, Any] = {}
        for k, v in value.items():
            if isinstance(k, str):
                key = k.encode("utf-8")
            elif isinstance(k, bytes | bytearray | memoryview):
                key = bytes(k)
            else:
                raise TypeError(f"dictionary key {k!r} is not a string")
            if key in out:
                raise ValueError(f"dictionary key {key!r} given twice")
            out[key] = _prepare(v)
        return out
    if isinstance(value, list | tuple):
        return [_prepare(v) for v in value]
    raise TypeError(f"{type(value).__name__} is not a bencode type")
