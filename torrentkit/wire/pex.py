"""BEP 11 peer exchange (``ut_pex``): the message payload, both ways (pure, no state).

A PEX message is a bencoded dictionary sent as a BEP 10 extension message: ``added`` (compact
IPv4 addresses, 6 bytes each) with ``added.f`` (one flags byte per address), ``added6`` /
``added6.f`` for IPv6 (18 bytes each), and ``dropped`` / ``dropped6`` (addresses no longer
connected). Flags: :data:`PREFERS_ENCRYPTION`, :data:`SEED`, :data:`UTP`, :data:`HOLEPUNCH`,
:data:`REACHABLE` (we connected out to it). The rules for when to send and what to believe
are the engine's (engine/pex.py); docs/limits.md has the caps.

Parsing is lenient about entries and strict about the message: not bencode, not a dictionary
or over :data:`MAX_PEX_MESSAGE` bytes is a RemoteProtocolError (the peer is dropped, as
libtorrent does); an address list whose length is not a whole number of entries is ignored
as a whole (malformed), a flags string of the wrong length is ignored (flags read as 0),
and entries with port 0, or an unspecified, multicast or broadcast address are skipped.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from torrentkit import bencoding
from torrentkit.errors import RemoteProtocolError
from torrentkit.ids import PeerAddr
from torrentkit.wire.extensions import decode_dict

PREFERS_ENCRYPTION: Final = 0x01
SEED: Final = 0x02
UTP: Final = 0x04
HOLEPUNCH: Final = 0x08
REACHABLE: Final = 0x10

#: A larger PEX message drops the peer (libtorrent's limit).
MAX_PEX_MESSAGE: Final = 500 * 1024
#: At most this many added (and as many dropped) peers in one message we send (BEP 11).
MAX_ADDED_SENT: Final = 50


@dataclass(frozen=True, slots=True)
class PexPeer:
    addr: PeerAddr
    flags: int = 0


@dataclass(frozen=True, slots=True)
class PexMessage:
    added: tuple[PexPeer, ...] = ()
    dropped: tuple[PeerAddr, ...] = ()
    #: entries skipped as malformed or impossible (counted, not fatal)
    malformed: int = 0


def _pack(addr: PeerAddr) -> tuple[bool, bytes] | None:
    """(is IPv6, compact bytes) of an IP-literal address; None for a host name."""
    packed = _pack_host(addr.host)
    if packed is None:
        return None
    return packed[0], packed[1] + addr.port.to_bytes(2, "big")


@functools.lru_cache(maxsize=4096)
def _pack_host(host: str) -> tuple[bool, bytes] | None:
    """(is IPv6, packed address) of an IP literal, None for a host name; remembered: our
    messages name the same few dozen connected peers to every ut_pex peer each minute, and
    parsing the text into an ipaddress object was most of building one."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return ip.version == 6, ip.packed


def encode(added: Sequence[PexPeer], dropped: Sequence[PeerAddr]) -> bytes:
    """The payload of one PEX message (host names, which PEX cannot carry, are left out)."""
    a4, f4, a6, f6 = bytearray(), bytearray(), bytearray(), bytearray()
    d4: list[bytes] = []
    d6: list[bytes] = []
    for peer in added:
        packed = _pack(peer.addr)
        if packed is None:
            continue
        v6, data = packed
        (a6 if v6 else a4).extend(data)
        (f6 if v6 else f4).append(peer.flags & 0xFF)
    for addr in dropped:
        packed = _pack(addr)
        if packed is not None:
            (d6 if packed[0] else d4).append(packed[1])
    d: dict[bytes, Any] = {
        b"added": bytes(a4),
        b"added.f": bytes(f4),
        b"dropped": b"".join(d4),
    }
    if a6 or d6:
        d[b"added6"] = bytes(a6)
        d[b"added6.f"] = bytes(f6)
        d[b"dropped6"] = b"".join(d6)
    return bencoding.encode(d)


def _usable(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> bool:
    if port == 0 or ip.is_unspecified or ip.is_multicast:
        return False
    return not (ip.version == 4 and ip == _BROADCAST)


_BROADCAST: Final = ipaddress.IPv4Address("255.255.255.255")
_V4_ENTRY: Final = struct.Struct(">4sH")


def _usable_v4(packed: bytes, port: int) -> bool:
    """:func:`_usable` for a packed IPv4 address, without building an address object (PEX
    messages carry up to 50 of them, several a minute from every peer): not port 0, not
    0.0.0.0, not multicast (224.0.0.0/4), not the broadcast address."""
    first = packed[0]
    return (
        port != 0
        and packed != b"\0\0\0\0"
        and not 224 <= first <= 239
        and packed != b"\xff\xff\xff\xff"
    )


def _addresses(
    d: dict[bytes, Any], key: bytes, size: int
) -> tuple[list[tuple[PeerAddr, int]], int]:
    """The entries under ``key`` as (address, index in the list); and how many were bad."""
    raw = d.get(key)
    if raw is None:
        return [], 0
    if not isinstance(raw, bytes) or len(raw) % size:
        return [], 1  # malformed as a whole
    out: list[tuple[PeerAddr, int]] = []
    bad = 0
    if size == 6:  # IPv4: the common case, read without ipaddress objects
        for n, (packed, port) in enumerate(_V4_ENTRY.iter_unpack(raw)):
            if _usable_v4(packed, port):
                out.append((PeerAddr(socket.inet_ntoa(packed), port), n))
            else:
                bad += 1
        return out, bad
    for n, i in enumerate(range(0, len(raw), size)):
        ip = ipaddress.ip_address(raw[i : i + size - 2])
        port = int.from_bytes(raw[i + size - 2 : i + size], "big")
        if _usable(ip, port):
            out.append((PeerAddr(str(ip), port), n))
        else:
            bad += 1
    return out, bad


def parse(payload: bytes) -> PexMessage:
    """A received PEX payload; RemoteProtocolError only for a message that is not one."""
    if len(payload) > MAX_PEX_MESSAGE:
        raise RemoteProtocolError(f"PEX message of {len(payload)} bytes (limit {MAX_PEX_MESSAGE})")
    d = decode_dict(payload, "PEX message")
    added: list[PexPeer] = []
    dropped: list[PeerAddr] = []
    malformed = 0
    for key, fkey, size in ((b"added", b"added.f", 6), (b"added6", b"added6.f", 18)):
        entries, bad = _addresses(d, key, size)
        malformed += bad
        raw = d.get(key)
        total = len(raw) // size if isinstance(raw, bytes) and not len(raw) % size else 0
        flags = d.get(fkey)
        if not isinstance(flags, bytes) or len(flags) != total:
            if flags is not None and total:
                malformed += 1
            flags = b""
        for addr, n in entries:
            added.append(PexPeer(addr, flags[n] if flags else 0))
    for key, size in ((b"dropped", 6), (b"dropped6", 18)):
        entries, bad = _addresses(d, key, size)
        malformed += bad
        dropped.extend(addr for addr, _ in entries)
    return PexMessage(added=tuple(added), dropped=tuple(dropped), malformed=malformed)


def is_local(host: str) -> bool:
    """A private, loopback, link-local or carrier-grade-NAT address (libtorrent's
    ``is_local``): PEX entries in these ranges are believed only from a peer that is itself
    at such an address (a peer on the internet cannot know our LAN)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_local(str(ip.ipv4_mapped))
        first = ip.packed[0]
        return (
            ip.is_loopback
            or ip.is_link_local
            or ip.is_site_local
            or (first & 0xFE) == 0xFC  # fc00::/7, unique local
            or (first == 0xFF and ip.packed[1] & 0x0F in (2, 5))  # link/site-local multicast
        )
    return any(ip in net for net in _LOCAL_V4)


_LOCAL_V4: Final = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "127.0.0.0/8",
        "100.64.0.0/10",
    )
)
