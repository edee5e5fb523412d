"""BEP 6 allowed-fast sets: the pieces a peer may fetch from us while we choke it.

The set is canonical (the BEP's algorithm, so every client offers a peer the same pieces):
the peer's IPv4 address masked to its /24, followed by the info-hash, is hashed with SHA-1
again and again; each 20-byte digest gives five big-endian 32-bit numbers, each taken modulo
the piece count, and new indices are kept in order until there are ``k``. The BEP has no
rule for IPv6; we mask an IPv6 address to its /48 (the same "one network, one set" idea) and
hash its 16 bytes. With ``k`` at least the piece count the set is every piece (the loop would
otherwise never end), as libtorrent does. See docs/design.md (fast extension).
"""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Final

#: How many allowed-fast pieces we offer a peer (the BEP's and libtorrent's k).
ALLOWED_FAST_K: Final = 10


def allowed_fast_set(
    ip: str, info_hash: bytes, num_pieces: int, k: int = ALLOWED_FAST_K
) -> list[int]:
    """The first ``k`` pieces of ``ip``'s allowed-fast set for a torrent, in the BEP's order."""
    if num_pieces <= 0 or k <= 0:
        return []
    if k >= num_pieces:
        return list(range(num_pieces))
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    packed = addr.packed
    prefix = packed[:3] + b"\x00" if len(packed) == 4 else packed[:6] + bytes(10)
    x = prefix + info_hash
    out: list[int] = []
    seen: set[int] = set()
    while len(out) < k:
        x = hashlib.sha1(x).digest()
        for j in range(0, 20, 4):
            if len(out) >= k:
                break
            index = int.from_bytes(x[j : j + 4], "big") % num_pieces
            if index not in seen:
                seen.add(index)
                out.append(index)
    return out
