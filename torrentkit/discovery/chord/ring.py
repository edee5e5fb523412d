"""Identifier-ring arithmetic for Chord (Stoica et al., SIGCOMM 2001).

Ids live on a ring of ``2**m`` points. A node's id is derived from its address
(:func:`sha1_node_id`: SHA-1 of ``"HOST:PORT"`` modulo ``2**m``), and a key's position is its
20 bytes read as a big-endian integer modulo ``2**m`` (for ``m = 160``, the info-hash itself).
Ids are never sent on the wire: every receiver computes them from addresses, so a node cannot
claim an id that does not match its address.

Intervals follow the paper: ``(a, b)`` and ``(a, b]`` clockwise from ``a``; when ``a == b``,
``(a, a]`` is the whole ring (a node alone owns everything) and ``(a, a)`` is all but ``a``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from torrentkit.ids import PeerAddr


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeRef:
    """A node on the ring: its id and the UDP address the id was computed from."""

    id: int
    addr: PeerAddr


def sha1_node_id(addr: PeerAddr, m: int) -> int:
    """The production node id: SHA-1 over ``HOST:PORT`` (ASCII), reduced to ``m`` bits."""
    digest = hashlib.sha1(f"{addr.host}:{addr.port}".encode()).digest()
    return int.from_bytes(digest, "big") % (1 << m)


def key_position(key: bytes, m: int) -> int:
    """Where a 20-byte key (an info-hash) sits on the ring."""
    return int.from_bytes(key, "big") % (1 << m)


def position_key(position: int) -> bytes:
    """The 20-byte key whose position is ``position`` (for lookups of ring ids)."""
    return position.to_bytes(20, "big")


def distance(a: int, b: int, size: int) -> int:
    """Clockwise distance from ``a`` to ``b``."""
    return (b - a) % size


def in_open(x: int, a: int, b: int, size: int) -> bool:
    """``x`` in ``(a, b)`` clockwise."""
    if a == b:
        return x != a
    return 0 < (x - a) % size < (b - a) % size


def in_half_open(x: int, a: int, b: int, size: int) -> bool:
    """``x`` in ``(a, b]`` clockwise."""
    if a == b:
        return True
    return 0 < (x - a) % size <= (b - a) % size
