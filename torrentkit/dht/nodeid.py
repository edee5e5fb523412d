"""Node ids: XOR distance, and the BEP 42 rule that ties an id to the node's external IP.

BEP 42: with ``r`` in 0..7, ``crc = crc32c((ip & 0x030f3fff) | (r << 29))`` over the masked
IPv4 address as 4 big-endian bytes (IPv6: the high 8 bytes, mask ``0x0103070f1f3f7fff``,
``r << 61``). A valid id's first 21 bits equal the crc's first 21 bits and its last byte's
low 3 bits are ``r`` (the other bits of the last byte are random). Addresses in private and
loopback ranges (10/8, 172.16/12, 192.168/16, 169.254/16, 127/8) are exempt: any id is
accepted from them, since their "external" IP says nothing.
"""

from __future__ import annotations

import functools
import ipaddress
import random
from typing import Final

ID_BITS: Final = 160

_V4_MASK: Final = bytes([0x03, 0x0F, 0x3F, 0xFF])
_V6_MASK: Final = bytes([0x01, 0x03, 0x07, 0x0F, 0x1F, 0x3F, 0x7F, 0xFF])

_EXEMPT: Final = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "127.0.0.0/8")
)


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE: Final = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as BEP 42 uses it (no library in our dependencies has it)."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def distance(a: bytes, b: bytes) -> int:
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")


@functools.lru_cache(maxsize=65536)
def is_exempt(host: str) -> bool:
    """Private and loopback addresses, whose ids BEP 42 does not check."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return True
    if ip.version == 6:
        return ip.is_loopback or ip.is_private or ip.is_link_local
    return any(ip in net for net in _EXEMPT)


@functools.lru_cache(maxsize=65536)
def _prefix(host: str, r: int) -> int:
    """The 32-bit crc whose top 21 bits a node id at ``host`` must share."""
    packed = bytearray(ipaddress.ip_address(host).packed)
    if len(packed) == 16:
        packed = packed[:8]
        mask = _V6_MASK
    else:
        mask = _V4_MASK
    for i, m in enumerate(mask):
        packed[i] &= m
    packed[0] |= (r & 7) << 5
    return crc32c(bytes(packed))


def id_for_ip(host: str, rng: random.Random, *, rand: int | None = None) -> bytes:
    """A random node id that satisfies BEP 42 for ``host``; ``rand`` is the last byte."""
    last = rng.randrange(256) if rand is None else rand
    crc = _prefix(host, last & 7)
    out = bytearray(rng.randbytes(20))
    out[0] = (crc >> 24) & 0xFF
    out[1] = (crc >> 16) & 0xFF
    out[2] = ((crc >> 8) & 0xF8) | (out[2] & 0x07)
    out[19] = last
    return bytes(out)


def id_matches_ip(node_id: bytes, host: str) -> bool:
    """Whether ``node_id`` satisfies BEP 42 for ``host`` (True for exempt addresses)."""
    if is_exempt(host):
        return True
    crc = _prefix(host, node_id[19] & 7)
    want = crc >> 11  # top 21 bits
    have = int.from_bytes(node_id[:3], "big") >> 3
    return want == have
