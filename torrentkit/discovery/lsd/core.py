"""Local Service Discovery (BEP 14), sans-IO: announce datagrams out, peers in.

An announce is an HTTP-like datagram sent to a multicast group on port 6771::

    BT-SEARCH * HTTP/1.1\\r\\n
    Host: 239.192.152.143:6771\\r\\n
    Port: <our listen port>\\r\\n
    Infohash: <40 hex digits>\\r\\n
    cookie: <ours>\\r\\n
    \\r\\n
    \\r\\n

(``Host`` names the group it is sent to: ``239.192.152.143:6771`` or
``[ff15::efc0:988f]:6771``.) A receiver takes the sender's IP from the datagram's source
address and the port from ``Port``; ``cookie`` lets a client ignore its own announces, which
multicast loopback hands back to it.

:class:`LsdCore` keeps the schedule and filters what arrives (no sockets, no clock: ``now``
is an argument):

- a torrent is announced when it is added, then at most once per
  :data:`ANNOUNCE_INTERVAL` (5 minutes, BEP 14); up to :data:`SINGLE_LIMIT` torrents due at
  once go out one per datagram (older clients read a single ``Infohash``), more are batched
  into datagrams of at most :data:`MAX_DATAGRAM` bytes (the BEP's 1,400);
- the engine never adds a private torrent (BEP 27; the api gives networks public torrents
  only), and a torrent added with ``announce=False`` (a magnet whose metadata, and so its
  privacy, is still unknown) is only listened for;
- a received datagram is dropped unless it is at most :data:`MAX_DATAGRAM_IN` bytes, starts
  with ``BT-SEARCH * HTTP/1.1``, has a port 1..65535, and its cookie is not ours; at most
  :data:`MAX_HASHES_IN` ``Infohash`` headers are read, and only hashes of our torrents are
  reported; the same peer for the same torrent is reported at most once per
  :data:`REPORT_AGAIN` seconds (a chatty LAN cannot flood the engine), with at most
  :data:`MAX_REMEMBERED` such memories.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from torrentkit.ids import PeerAddr

Family = Literal["v4", "v6"]

LSD_PORT = 6771
GROUP_V4 = "239.192.152.143"
GROUP_V6 = "ff15::efc0:988f"
#: The Host header for each group.
HOSTS: dict[Family, str] = {"v4": f"{GROUP_V4}:{LSD_PORT}", "v6": f"[{GROUP_V6}]:{LSD_PORT}"}

ANNOUNCE_INTERVAL = 300.0
#: The IPv4 TTL and IPv6 hop limit of our announces: 1, so they never cross a router. BEP 14
#: fixes none; the groups' scopes (239.192/14 organisation-local, ff15:: site-local) only bound
#: how far a multicast router may carry them. libtorrent sends with 32, Transmission and aria2
#: with 1. One hop keeps ``--lsd`` to what the user opted into, the hosts on their own link, and
#: loses nothing in practice: libtorrent drops announces whose source is outside its listen
#: address's subnet, so on another subnet it would ignore a routed announce anyway
#: (docs/interop.md).
MULTICAST_HOPS = 1
SINGLE_LIMIT = 5
MAX_DATAGRAM = 1400
MAX_DATAGRAM_IN = 1500
MAX_HASHES_IN = 32
MAX_HEADER_LINES = 64
REPORT_AGAIN = 60.0
MAX_REMEMBERED = 4096

_REQUEST_LINE = b"BT-SEARCH * HTTP/1.1"
_HEX = frozenset(b"0123456789abcdefABCDEF")


def encode_announce(host: str, port: int, info_hashes: Sequence[bytes], cookie: str) -> bytes:
    """The announce datagram for ``info_hashes`` (20 bytes each) to the group ``host``."""
    lines = [_REQUEST_LINE, f"Host: {host}".encode(), f"Port: {port}".encode()]
    lines += [b"Infohash: " + h.hex().encode() for h in info_hashes]
    if cookie:
        lines.append(f"cookie: {cookie}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n\r\n"


@dataclass(frozen=True, slots=True)
class Announce:
    """A parsed announce: the sender's port, the info-hashes it named, its cookie."""

    port: int
    info_hashes: tuple[bytes, ...]
    cookie: str | None


def parse_announce(data: bytes) -> Announce | None:
    """An announce datagram, or None for anything else (never raises)."""
    if len(data) > MAX_DATAGRAM_IN:
        return None
    head = data.split(b"\r\n\r\n", 1)[0]
    lines = head.split(b"\r\n")
    if lines[0].strip().upper() != _REQUEST_LINE.upper() or len(lines) > MAX_HEADER_LINES:
        return None
    port: int | None = None
    cookie: str | None = None
    hashes: list[bytes] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        key = name.strip().lower()
        value = value.strip()
        if key == b"port":
            if not (value.isdigit() and len(value) <= 5 and 0 < int(value) < 65536):
                return None
            port = int(value)
        elif key == b"infohash":
            if len(hashes) < MAX_HASHES_IN and len(value) == 40 and _HEX.issuperset(value):
                hashes.append(bytes.fromhex(value.decode("ascii")))
        elif key == b"cookie":
            cookie = value.decode("ascii", "replace")
    if port is None or not hashes:
        return None
    return Announce(port, tuple(dict.fromkeys(hashes)), cookie)


class LsdCore:
    """One session's LSD state: its torrents, their schedule, and what it has reported."""

    def __init__(self, *, port: int, cookie: str, families: Iterable[Family]) -> None:
        self.port = port
        self.cookie = cookie
        self.families: tuple[Family, ...] = tuple(families)
        self._due: dict[bytes, float] = {}  # announced torrents: when next
        self._listen: dict[bytes, int] = {}  # every torrent we take peers for: how many adds
        self._reported: dict[tuple[bytes, PeerAddr], float] = {}

    # ------------------------------------------------------------------ torrents

    def add(self, info_hash: bytes, now: float, *, announce: bool = True) -> None:
        """A torrent starts (announced at once when ``announce``)."""
        self._listen[info_hash] = self._listen.get(info_hash, 0) + 1
        if announce and info_hash not in self._due:  # a second add keeps the schedule
            self._due[info_hash] = now

    def remove(self, info_hash: bytes) -> None:
        """A torrent added with :meth:`add` stops."""
        left = self._listen.get(info_hash, 0) - 1
        if left > 0:
            self._listen[info_hash] = left
        else:
            self._listen.pop(info_hash, None)
            self._due.pop(info_hash, None)

    # ------------------------------------------------------------------ sending

    def next_due(self) -> float | None:
        """When the next announce is due (None: nothing to announce)."""
        return min(self._due.values(), default=None)

    def packets(self, now: float) -> list[tuple[Family, bytes]]:
        """The datagrams due at ``now``, for each family; their torrents' next announce is
        :data:`ANNOUNCE_INTERVAL` later."""
        due = sorted(h for h, t in self._due.items() if t <= now)
        if not due:
            return []
        for h in due:
            self._due[h] = now + ANNOUNCE_INTERVAL
        groups = [[h] for h in due] if len(due) <= SINGLE_LIMIT else self._batches(due)
        return [
            (family, encode_announce(HOSTS[family], self.port, group, self.cookie))
            for group in groups
            for family in self.families
        ]

    def _batches(self, hashes: list[bytes]) -> list[list[bytes]]:
        empty = max(len(encode_announce(HOSTS[f], self.port, [], self.cookie)) for f in HOSTS)
        per = len(b"Infohash: ") + 40 + 2
        room = max(1, (MAX_DATAGRAM - empty) // per)
        return [hashes[i : i + room] for i in range(0, len(hashes), room)]

    # ------------------------------------------------------------------ receiving

    def receive(self, data: bytes, source_ip: str, now: float) -> list[tuple[bytes, PeerAddr]]:
        """A datagram from ``source_ip``: the (info-hash, peer) pairs to report."""
        msg = parse_announce(data)
        if msg is None or (msg.cookie is not None and msg.cookie == self.cookie):
            return []
        addr = PeerAddr(source_ip, msg.port)
        out: list[tuple[bytes, PeerAddr]] = []
        reported = self._reported
        for h in msg.info_hashes:
            if h not in self._listen:
                continue
            key = (h, addr)
            last = reported.get(key)
            if last is not None and now - last < REPORT_AGAIN:
                continue
            if len(reported) >= MAX_REMEMBERED:
                self._forget(now)
            reported[key] = now
            out.append(key)
        return out

    def _forget(self, now: float) -> None:
        """Drop the memories older than :data:`REPORT_AGAIN`; all of them if none is."""
        old = [k for k, t in self._reported.items() if now - t >= REPORT_AGAIN]
        for k in old:
            del self._reported[k]
        if len(self._reported) >= MAX_REMEMBERED:
            self._reported.clear()
