"""UDP tracker protocol (BEP 15, with BEP 41's URL data), both sides, sans-IO.

No sockets and no clock here: datagrams and ``now`` go in, datagrams and results come out.
:mod:`.udp_client` (trio) and :mod:`.udp_server` (asyncio, next to the HTTP tracker) are
the thin drivers.

Packets (all integers big-endian; docs/design.md, "UDP trackers"):

- connect: ``protocol_id (8) action=0 (4) transaction_id (4)`` -> ``action=0, tid,
  connection_id (8)``.
- announce (98 bytes, then BEP 41 options): ``connection_id, action=1, tid, info_hash,
  peer_id, downloaded, left, uploaded, event (0 none, 1 completed, 2 started, 3 stopped),
  ip (4, 0 = the sender's), key (4), num_want (4, -1 = default), port (2)`` -> ``action=1,
  tid, interval, leechers, seeders`` and peers: 6 bytes each when the request came over
  IPv4, 18 bytes each when over IPv6 (BEP 15's IPv6 rule: the address family of the packet
  decides; the action stays 1).
- scrape: ``connection_id, action=2, tid, info_hash x N`` (N <= 74) -> ``action=2, tid``
  and ``seeders, completed, leechers`` per hash, in order.
- error: ``action=3, tid, message`` (text, no terminator).

BEP 41 options follow the announce: type ``0`` ends the list, ``1`` is a one-byte no-op,
every other type is followed by a length byte and that many bytes; type ``2`` carries a
piece of the announce URL's path and query (several pieces are joined). Unknown types are
skipped by their length.

Client rules (:class:`UdpExchange`): a fresh random transaction id per request; a reply
whose transaction id or action does not match is ignored (it may be a late answer to an
earlier request); a connection id is reused for 60 s after it arrived (:class:`ConnectionIds`);
the retransmit timeout is ``15 * 2^n`` s with ``n`` counting every timeout of the exchange
(connect and request together; a request that timed out is retransmitted after a fresh
connect, since a tracker drops requests whose connection id it no longer accepts), but ``n``
stops at ``max_retransmits``: with the default 1
an exchange sends at 0 and 15 s and gives up at 45 s, reporting a timeout. The tracker's
failure backoff (``15 s * 2^(failures-1)``, capped at 30 min, in the tier schedule) then
continues BEP 15's growth between attempts, while the round moves on to the next URL of
the tier: a dead tracker holds its tier for at most 45 s, never the BEP's hours.

Server rules (:class:`UdpTrackerCore`): connection ids are ``2 bytes of issue time + 6 bytes
of HMAC-SHA256(secret, time | sender's IP)``, valid 120 s (the IP, not the port: a client may
send each request from a new socket, and spoofing is about the IP), under a secret that
rotates every 10 minutes (derived from one master secret, which ``--workers`` processes
share); nothing is stored per client before an
announce. Packets shorter than 16 bytes, connects without the protocol id, and anything
carrying a wrong connection id are dropped unanswered; every error reply is at most as long
as the request (no amplification). A scrape answers at most 74 hashes.
"""

from __future__ import annotations

import enum
import hmac
import ipaddress
import os
import random
import socket
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol

from torrentkit.discovery.tracker.protocol import (
    AnnounceEvent,
    AnnounceReply,
    AnnounceRequest,
    AnnounceResponse,
    ScrapeStats,
    TrackerFailure,
    TrackerRequestError,
    TrackerResponseError,
    _compact_peers,
    key_from_int,
)
from torrentkit.errors import LocalProtocolError
from torrentkit.ids import InfoHash

if TYPE_CHECKING:  # the server's counters: imported by the server core, not by clients
    from torrentkit.discovery.tracker.stats import ServedCounts

PROTOCOL_ID = 0x41727101980
ACTION_CONNECT = 0
ACTION_ANNOUNCE = 1
ACTION_SCRAPE = 2
ACTION_ERROR = 3

ANNOUNCE_SIZE = 98
#: BEP 15: "up to about 74 torrents can be scraped at once".
MAX_SCRAPE_HASHES = 74
#: A client may use a connection id this long after it arrived (BEP 15).
CLIENT_CONNECTION_TTL = 60.0
#: The tracker accepts a connection id this long after it sent it (BEP 15).
SERVER_CONNECTION_TTL = 120
#: The server's secret is replaced this often (seconds); an id names its epoch's secret.
SECRET_ROTATION = 600
#: Connection ids remembered as verified, at most (the cache is emptied when full).
VERIFIED_CACHE = 65_536
#: Longest error text we send or show.
MAX_ERROR_TEXT = 200
#: The largest datagram a client reads (a UDP payload cannot be longer).
MAX_DATAGRAM = 65536

#: The failure an announce reply without counts stands for (see parse_announce_reply).
BARE_REPLY = "announce refused without a reason (an 8-byte reply: torrent not served here?)"

_EVENT_CODES = {
    AnnounceEvent.NONE: 0,
    AnnounceEvent.COMPLETED: 1,
    AnnounceEvent.STARTED: 2,
    AnnounceEvent.STOPPED: 3,
    AnnounceEvent.PAUSED: 0,
}
_CODE_EVENTS = {1: AnnounceEvent.COMPLETED, 2: AnnounceEvent.STARTED, 3: AnnounceEvent.STOPPED}

_CONNECT = struct.Struct(">QII")
_HEADER = struct.Struct(">II")
_ANNOUNCE = struct.Struct(">QII20s20sQQQIIIiH")
_ANNOUNCE_REPLY = struct.Struct(">IIIII")
_INT63 = 2**63 - 1
_SCRAPE_ENTRY = struct.Struct(">III")
#: An announce as the fast path reads it: connection and transaction ids and the port as
#: bytes (a dict key, a reply field, the compact address's tail), the info-hash and peer id
#: as one (a dict key), no downloaded/uploaded.
_FAST_ANNOUNCE = struct.Struct(">8sI4s40s8xQ8xIIIi2s")
_FAST_REPLY = struct.Struct(">I4sIII")
_FAST_EVENTS = (AnnounceEvent.NONE, AnnounceEvent.COMPLETED, AnnounceEvent.STARTED)


# ---------------------------------------------------------------------------------------------
# Values shared by both sides


def key_to_int(key: bytes | None) -> int:
    """Our HTTP ``key`` (8 hex digits) as BEP 15's 32-bit key; other keys are hashed."""
    if key is None:
        return 0
    try:
        if len(key) == 8:
            return int(key, 16)
    except ValueError:
        pass
    return int.from_bytes(hmac.digest(b"key", key, "sha256")[:4], "big")


def url_data_options(path_and_query: str) -> bytes:
    """BEP 41 options carrying ``path_and_query`` (``/announce?x=y``) in 255-byte pieces."""
    raw = path_and_query.encode("utf-8", "surrogateescape")
    out = bytearray()
    for i in range(0, len(raw), 255):
        piece = raw[i : i + 255]
        out += bytes((2, len(piece))) + piece
    return bytes(out)


def parse_options(data: bytes) -> bytes:
    """The URL data of BEP 41 options (unknown types skipped; a cut-off option ends them)."""
    url = bytearray()
    i, n = 0, len(data)
    while i < n:
        kind = data[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= n:
            break
        length = data[i + 1]
        body = data[i + 2 : i + 2 + length]
        if len(body) < length:
            break
        if kind == 2:
            url += body
        i += 2 + length
    return bytes(url)


# ---------------------------------------------------------------------------------------------
# Client side


class UdpTimeout(Exception):
    """The tracker did not answer within the exchange's retransmissions."""


class Kind(enum.Enum):
    ANNOUNCE = ACTION_ANNOUNCE
    SCRAPE = ACTION_SCRAPE


def encode_connect(transaction_id: int) -> bytes:
    return _CONNECT.pack(PROTOCOL_ID, ACTION_CONNECT, transaction_id)


def encode_announce(
    connection_id: int, transaction_id: int, req: AnnounceRequest, *, url_data: bytes = b""
) -> bytes:
    """An announce request (``req.ip`` is not sent: BEP 15's IP field stays 0)."""
    numwant = -1 if req.numwant is None else min(req.numwant, 2**31 - 1)
    return (
        _ANNOUNCE.pack(
            connection_id,
            ACTION_ANNOUNCE,
            transaction_id,
            bytes(req.info_hash),
            req.peer_id,
            req.downloaded,
            req.left,
            req.uploaded,
            _EVENT_CODES[req.event],
            0,
            key_to_int(req.key),
            numwant,
            req.port,
        )
        + url_data
    )


def encode_scrape(connection_id: int, transaction_id: int, hashes: Sequence[bytes]) -> bytes:
    if not 0 < len(hashes) <= MAX_SCRAPE_HASHES:
        raise LocalProtocolError(f"a UDP scrape takes 1-{MAX_SCRAPE_HASHES} info-hashes")
    return _CONNECT.pack(connection_id, ACTION_SCRAPE, transaction_id) + b"".join(
        bytes(InfoHash(h)) for h in hashes
    )


def error_text(data: bytes) -> str:
    """An error packet's message as one printable line."""
    text = data[8 : 8 + MAX_ERROR_TEXT].decode("utf-8", "replace")
    return "".join(c if c.isprintable() else "?" for c in text).strip() or "(no message)"


def parse_announce_reply(data: bytes, *, ipv6: bool) -> AnnounceResponse:
    """An announce reply (header checked by the caller); peers 18 bytes each over IPv6.

    A bare header (8 bytes: no interval, no counts) is a refusal without a reason:
    opentracker answers so for a torrent it does not serve (not on its whitelist, or before
    it has read the list). It is a tracker failure, as an error packet would be.
    """
    if len(data) == 8:
        raise TrackerFailure(BARE_REPLY)
    if len(data) < 20:
        raise TrackerResponseError(f"announce reply of {len(data)} bytes, need at least 20")
    _, _, interval, leechers, seeders = _ANNOUNCE_REPLY.unpack_from(data)
    stride = 18 if ipv6 else 6
    body = data[20:]
    body = body[: len(body) - len(body) % stride]
    return AnnounceResponse(
        interval=interval,
        min_interval=None,
        complete=seeders,
        incomplete=leechers,
        peers=tuple(_compact_peers(body, stride, "peers")),
    )


def parse_scrape_reply(data: bytes, hashes: Sequence[bytes]) -> dict[InfoHash, ScrapeStats]:
    """A scrape reply: one entry per hash asked, in order."""
    need = 8 + 12 * len(hashes)
    if len(data) < need:
        raise TrackerResponseError(f"scrape reply of {len(data)} bytes, need {need}")
    out = {}
    for i, h in enumerate(hashes):
        seeders, completed, leechers = _SCRAPE_ENTRY.unpack_from(data, 8 + 12 * i)
        out[InfoHash(bytes(h))] = ScrapeStats(
            complete=seeders, downloaded=completed, incomplete=leechers
        )
    return out


class ConnectionIds:
    """Connection ids a client holds, per tracker address, each usable for 60 s."""

    def __init__(self, ttl: float = CLIENT_CONNECTION_TTL) -> None:
        self.ttl = ttl
        self._ids: dict[object, tuple[int, float]] = {}

    def get(self, address: object, now: float) -> int | None:
        entry = self._ids.get(address)
        if entry is None:
            return None
        if now - entry[1] >= self.ttl:
            del self._ids[address]
            return None
        return entry[0]

    def put(self, address: object, connection_id: int, now: float) -> None:
        self._ids[address] = (connection_id, now)

    def forget(self, address: object) -> None:
        self._ids.pop(address, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """BEP 15's retransmit timeouts ``base * 2^n``, with ``n`` stopping at
    ``max_retransmits`` (the exchange then fails; see the module docstring)."""

    base: float = 15.0
    max_retransmits: int = 1

    def __post_init__(self) -> None:
        if self.base <= 0 or not 0 <= self.max_retransmits <= 8:
            raise LocalProtocolError("need base > 0 and 0 <= max_retransmits <= 8")

    def timeout(self, n: int) -> float:
        return self.base * 2.0**n

    @property
    def longest(self) -> float:
        """The longest one exchange can take."""
        return sum(self.timeout(n) for n in range(self.max_retransmits + 1))


class UdpExchange:
    """One announce or scrape with one tracker address: connect if needed, then the request.

    Driver loop: send :meth:`datagram` when it is not None; wait for a datagram until
    :attr:`deadline`; feed it to :meth:`receive` or call :meth:`timed_out`; stop when
    :attr:`done` and read :meth:`result` (which raises :class:`UdpTimeout`,
    :class:`~.protocol.TrackerFailure` or :class:`~.protocol.TrackerResponseError`).
    """

    def __init__(
        self,
        *,
        address: object,
        ids: ConnectionIds,
        now: float,
        rng: random.Random,
        ipv6: bool,
        announce: AnnounceRequest | None = None,
        url_data: bytes = b"",
        scrape: Sequence[bytes] = (),
        policy: RetryPolicy | None = None,
    ) -> None:
        if (announce is None) == (not scrape):
            raise LocalProtocolError("an exchange is one announce or one scrape")
        self._address = address
        self._ids = ids
        self._rng = rng
        self._ipv6 = ipv6
        self._announce = announce
        self._url_data = url_data
        self._scrape = [bytes(InfoHash(h)) for h in scrape]
        if self._scrape:
            encode_scrape(0, 0, self._scrape)  # checks the count now, not mid-exchange
        self.policy = policy if policy is not None else RetryPolicy()
        self._n = 0
        self._tid = 0
        self._connection_id: int | None = ids.get(address, now)
        self._connecting = False
        self._outgoing: bytes | None = None
        self._result: AnnounceResponse | dict[InfoHash, ScrapeStats] | Exception | None = None
        self.deadline = now
        self._prepare(now)

    @property
    def done(self) -> bool:
        return self._result is not None

    def _prepare(self, now: float) -> None:
        """Build the next datagram (a fresh transaction id) and arm the timeout."""
        self._tid = self._rng.getrandbits(32)
        cid = self._connection_id
        if cid is None:
            self._connecting = True
            self._outgoing = encode_connect(self._tid)
        else:
            self._connecting = False
            if self._announce is not None:
                self._outgoing = encode_announce(
                    cid, self._tid, self._announce, url_data=self._url_data
                )
            else:
                self._outgoing = encode_scrape(cid, self._tid, self._scrape)
        self.deadline = now + self.policy.timeout(self._n)

    def datagram(self) -> bytes | None:
        """The datagram to send now, once (None: nothing to send)."""
        out, self._outgoing = self._outgoing, None
        return out

    def timed_out(self, now: float) -> None:
        """:attr:`deadline` passed without a reply: retransmit, or give up."""
        if self.done:
            return
        if self._n >= self.policy.max_retransmits:
            self._result = UdpTimeout(
                f"no reply after {self._n + 1} tries ({self.policy.longest:.0f} s)"
            )
            return
        self._n += 1
        if not self._connecting:
            # The tracker may have dropped the request for its connection id (restarted,
            # or the id expired on its clock): the retransmission connects afresh.
            self._ids.forget(self._address)
            self._connection_id = None
        self._prepare(now)

    def receive(self, data: bytes, now: float) -> None:
        """A datagram from the tracker's address. One that is not the answer to the request
        in flight (short, other transaction id, other action) is ignored."""
        if self.done or len(data) < 8:
            return
        action, tid = _HEADER.unpack_from(data)
        if tid != self._tid:
            return
        if action == ACTION_ERROR:
            self._ids.forget(self._address)
            self._result = TrackerFailure(error_text(data))
            return
        if self._connecting:
            if action != ACTION_CONNECT or len(data) < 16:
                return
            self._connection_id = int.from_bytes(data[8:16], "big")
            self._ids.put(self._address, self._connection_id, now)
            self._prepare(now)
            return
        try:
            if self._announce is not None:
                if action != ACTION_ANNOUNCE:
                    return
                self._result = parse_announce_reply(data, ipv6=self._ipv6)
            else:
                if action != ACTION_SCRAPE:
                    return
                self._result = parse_scrape_reply(data, self._scrape)
        except TrackerResponseError as exc:
            self._result = exc

    def result(self) -> AnnounceResponse | dict[InfoHash, ScrapeStats]:
        r = self._result
        if r is None:
            raise LocalProtocolError("the exchange is not done")
        if isinstance(r, Exception):
            raise r
        return r


# ---------------------------------------------------------------------------------------------
# Server side


class ConnectionSecret:
    """Issues and verifies connection ids: no state per client, a secret that rotates.

    The secret of each 10-minute epoch is ``HMAC(master, epoch)``: processes that share the
    master (``--workers``) issue and accept each other's ids without talking, and the id's
    issue time (its first 2 bytes) names the one secret that verifies it.
    """

    def __init__(self, master: bytes | None = None) -> None:
        self._master = master if master is not None else os.urandom(32)
        self._keys: dict[int, bytes] = {}
        #: Connection ids that verified, and the address each belongs to.
        self._verified: dict[bytes, bytes] = {}

    def _key(self, epoch: int) -> bytes:
        key = self._keys.get(epoch)
        if key is None:
            if len(self._keys) > 4:
                self._keys.clear()
            key = self._keys[epoch] = hmac.digest(self._master, b"%d" % epoch, "sha256")
        return key

    @staticmethod
    def _mac(key: bytes, stamp: int, address: bytes) -> bytes:
        return hmac.digest(key, stamp.to_bytes(2, "big") + address, "sha256")[:6]

    def issue(self, address: bytes, now: float) -> bytes:
        second = int(now)
        stamp = second & 0xFFFF
        key = self._key(second // SECRET_ROTATION)
        return stamp.to_bytes(2, "big") + self._mac(key, stamp, address)

    def verify(self, connection_id: bytes, address: bytes, now: float) -> bool:
        stamp = int.from_bytes(connection_id[:2], "big")
        age = (int(now) - stamp) & 0xFFFF
        if age > SERVER_CONNECTION_TTL:
            return False
        if self._verified.get(connection_id) == address:
            return True  # checked before, and still young enough (above)
        key = self._key((int(now) - age) // SECRET_ROTATION)
        if not hmac.compare_digest(connection_id[2:8], self._mac(key, stamp, address)):
            return False
        # Remember ids that passed (only those: a forger adds nothing), so a client's next
        # requests skip the HMAC; bounded, and every entry expires with its id's stamp.
        if len(self._verified) >= VERIFIED_CACHE:
            self._verified.clear()
        self._verified[connection_id] = address
        return True

    @staticmethod
    def lifetime(connection_id: bytes, now: float) -> tuple[int, int]:
        """(issued, expires): a connection id that :meth:`verify` accepted at ``now`` is
        accepted at every ``t`` with ``issued <= t < expires`` (whole seconds)."""
        second = int(now)
        issued = second - ((second - int.from_bytes(connection_id[:2], "big")) & 0xFFFF)
        return issued, issued + SERVER_CONNECTION_TTL + 1


def packed_address(ip: str) -> bytes:
    """What a connection id is bound to: the sender's IP, packed (ValueError if not an IP)."""
    try:
        return socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)
    except OSError:
        raise ValueError(f"not an IP address: {ip!r}") from None


class Swarms(Protocol):
    """Swarms the core answers from at once, as it reads a datagram: a store whose calls
    never wait (the in-memory :class:`~.state.TrackerState`)."""

    def announce_compact(
        self,
        info_hash: bytes,
        peer_id: bytes,
        port: int,
        left: int,
        event: AnnounceEvent,
        key: bytes | None,
        numwant: int | None,
        ip: str,
        now: float,
    ) -> tuple[int, int, int, bytes]: ...

    def reannounce_compact(
        self,
        info_hash_peer_id: bytes,
        compact: bytes,
        left: int,
        event: AnnounceEvent,
        key: int,
        numwant: int,
        now: float,
    ) -> tuple[int, int, int, bytes] | None: ...

    def scrape(self, info_hashes: Iterable[InfoHash]) -> dict[InfoHash, ScrapeStats]: ...


class UdpPending(NamedTuple):
    """A verified announce or scrape the swarm store must answer; :class:`UdpTrackerCore`
    turns the store's answer (or refusal) into the reply datagram. (A named tuple: one is
    made per announce, and a frozen dataclass costs several times as much to build.)"""

    tid: int
    #: The sender's IP (IPv4-mapped IPv6 as IPv4): the announce's ``remote_ip``.
    ip: str
    #: The request's length: an error reply is never longer.
    size: int
    announce: AnnounceRequest | None = None
    scrape: tuple[InfoHash, ...] = ()


def _error_reply(tid: int, message: str, limit: int) -> bytes:
    """An error packet no longer than ``limit`` bytes (the request's length)."""
    text = message[:MAX_ERROR_TEXT].encode("utf-8", "replace")
    return (_HEADER.pack(ACTION_ERROR, tid) + text)[: max(limit, 8)]


class UdpTrackerCore:
    """The tracker's UDP side, pure: one datagram and its sender in, and out either a reply
    (connect, errors), None (dropped), or a :class:`UdpPending` for the swarm store, whose
    answer :meth:`announce_reply` / :meth:`scrape_reply` / :meth:`error_reply` encode.

    The driver hands pending requests to the same store ``announce`` and ``scrape`` the
    HTTP side calls, so both protocols serve one swarm state. With ``swarms`` (a store
    whose calls never wait: memory) the core answers announces and scrapes itself, as it
    reads them: no request object, no pending step (the in-memory tracker's speed).
    """

    def __init__(
        self,
        *,
        trust_ip_param: bool = False,
        master: bytes | None = None,
        swarms: Swarms | None = None,
    ) -> None:
        self._secret = ConnectionSecret(master)
        self.trust_ip_param = trust_ip_param
        self.swarms = swarms
        from torrentkit.discovery.tracker.stats import ServedCounts

        #: What the UDP side served (``/stats`` shows it beside HTTP's).
        self.counters: ServedCounts = ServedCounts()
        #: Sender IP as received -> (its text with IPv4-mapped as IPv4, packed).
        self._addresses: dict[str, tuple[str, bytes]] = {}
        self._reannounce = swarms.reannounce_compact if swarms is not None else None
        #: The fast path's verified connection ids: id -> (sender IP as received, packed,
        #: and :meth:`ConnectionSecret.lifetime`). Filled as ids verify; bounded.
        self._fast_ids: dict[bytes, tuple[str, bytes, int, int]] = {}

    def _address(self, ip: str) -> tuple[str, bytes] | None:
        known = self._addresses.get(ip)
        if known is None:
            text = ip[7:] if ip.startswith("::ffff:") and "." in ip else ip
            try:
                known = (text, packed_address(text))
            except ValueError:
                return None
            if len(self._addresses) >= VERIFIED_CACHE:
                self._addresses.clear()
            self._addresses[ip] = known
        return known

    def handle(self, data: bytes, ip: str, now: float) -> bytes | UdpPending | None:
        """What to do with ``data`` from ``ip`` (any port: the connection id binds the IP).

        Most announces take the fast path: a plain 98-byte announce (no options, no ``ip``
        field, event none/started/completed) under a connection id this core verified
        before for this sender, of a peer the swarms know at this address, read with one
        unpack and answered by :meth:`~.state.TrackerState.reannounce_compact` (the same
        answer and swarm changes as the general path, tests/discovery/
        test_udp_tracker_fast.py). Everything else, and every case that declines, takes the
        general path (:meth:`_handle`).
        """
        if len(data) == ANNOUNCE_SIZE:
            reannounce = self._reannounce
            if reannounce is not None:
                (cid, action, tid, info_hash_peer_id, left, event, ip_field, key, numwant,
                 port) = _FAST_ANNOUNCE.unpack(data)  # fmt: skip
                known = self._fast_ids.get(cid)
                if known is not None and action == ACTION_ANNOUNCE and event < 3 and not ip_field:
                    sender, packed, issued, expires = known
                    if sender == ip and issued <= now < expires:
                        answer = reannounce(
                            info_hash_peer_id, packed + port, left, _FAST_EVENTS[event], key,
                            numwant, now,
                        )  # fmt: skip
                        if answer is not None:
                            interval, seeders, leechers, peers = answer
                            self.counters.announces += 1
                            if interval > 0xFFFFFFFF:
                                interval = 0xFFFFFFFF
                            return (
                                _FAST_REPLY.pack(ACTION_ANNOUNCE, tid, interval, leechers, seeders)
                                + peers
                            )
        return self._handle(data, ip, now)

    def _handle(self, data: bytes, ip: str, now: float) -> bytes | UdpPending | None:
        """:meth:`handle`'s general path: every kind of datagram, every rule."""
        counters = self.counters
        if len(data) < 16:
            counters.dropped += 1
            return None
        cid, action, tid = _CONNECT.unpack_from(data)
        known = self._addresses.get(ip) or self._address(ip)
        if known is None:
            counters.dropped += 1
            return None
        known_ip = ip
        ip, address = known
        if action == ACTION_CONNECT:
            if cid != PROTOCOL_ID:
                counters.dropped += 1
                return None
            counters.connects += 1
            return _HEADER.pack(ACTION_CONNECT, tid) + self._secret.issue(address, now)
        cid_bytes = data[:8]
        if not self._secret.verify(cid_bytes, address, now):
            counters.dropped += 1
            return None
        if self._reannounce is not None:
            fast_ids = self._fast_ids
            if len(fast_ids) >= VERIFIED_CACHE:
                fast_ids.clear()
            fast_ids[cid_bytes] = (known_ip, address, *self._secret.lifetime(cid_bytes, now))
        # From here the sender's address is verified: it received our connection id.
        swarms = self.swarms
        try:
            if action == ACTION_ANNOUNCE:
                if swarms is not None:
                    if len(data) == ANNOUNCE_SIZE:
                        (_, _, _, info_hash, peer_id, _, left, _, event, ip_field, key, numwant,
                         port) = _ANNOUNCE.unpack_from(data)  # fmt: skip
                        if port and event <= 3 and left <= _INT63 and not ip_field:
                            # The usual announce (no options, nothing to refuse, clamp or
                            # translate): one unpack, straight to the swarm.
                            return self._answer_now(
                                swarms, tid, info_hash, peer_id, port, left, event, key,
                                numwant, ip, now,
                            )  # fmt: skip
                    return self._announce_now(swarms, data, tid, ip, now)
                return self._announce(data, tid, ip)
            if action == ACTION_SCRAPE:
                pending = self._scrape(data, tid, ip)
                if swarms is not None:
                    return self.scrape_reply(pending, swarms.scrape(pending.scrape))
                return pending
            raise TrackerRequestError(f"unknown action {action}")
        except TrackerRequestError as exc:
            counters.errors += 1
            return _error_reply(tid, str(exc), len(data))

    def _announce_now(self, swarms: Swarms, data: bytes, tid: int, ip: str, now: float) -> bytes:
        """An announce answered from ``swarms`` there and then: the reply datagram."""
        info_hash, peer_id, _, left, event, given_ip, key, numwant, port = self._fields(data)
        ip = ip if given_ip is None else given_ip
        return self._answer_now(
            swarms, tid, info_hash, peer_id, port, left, event, key, numwant, ip, now
        )

    def _answer_now(
        self,
        swarms: Swarms,
        tid: int,
        info_hash: bytes,
        peer_id: bytes,
        port: int,
        left: int,
        event: int,
        key: int,
        numwant: int,
        ip: str,
        now: float,
    ) -> bytes:
        """A checked announce's reply datagram, from ``swarms``."""
        interval, seeders, leechers, peers = swarms.announce_compact(
            info_hash,
            peer_id,
            port,
            left,
            _CODE_EVENTS.get(event, AnnounceEvent.NONE),
            key_from_int(key),
            None if numwant < 0 else numwant,
            ip,
            now,
        )
        self.counters.announces += 1
        return (
            _ANNOUNCE_REPLY.pack(ACTION_ANNOUNCE, tid, min(interval, 0xFFFFFFFF), leechers, seeders)
            + peers
        )

    def _fields(
        self, data: bytes
    ) -> tuple[bytes, bytes, tuple[int, int], int, int, str | None, int, int, int]:
        """An announce's checked fields: info-hash, peer id, (downloaded, uploaded), left,
        event code, the trusted ``ip`` field (None), key, numwant, port."""
        if len(data) < ANNOUNCE_SIZE:
            raise TrackerRequestError(f"announce of {len(data)} bytes, need {ANNOUNCE_SIZE}")
        (_, _, _, info_hash, peer_id, downloaded, left, uploaded, event, ip_field, key, numwant,
         port) = _ANNOUNCE.unpack_from(data)  # fmt: skip
        if len(data) > ANNOUNCE_SIZE:
            parse_options(data[ANNOUNCE_SIZE:])  # BEP 41: read (unknown ones skipped), unused
        if event > 3:
            raise TrackerRequestError(f"unknown event {event}")
        if port == 0:
            raise TrackerRequestError("port must be 1-65535")
        given_ip = None
        if ip_field and self.trust_ip_param:
            given_ip = str(ipaddress.IPv4Address(ip_field))
        limit = _INT63
        return (
            info_hash,
            peer_id,
            (min(downloaded, limit), min(uploaded, limit)),
            min(left, limit),
            event,
            given_ip,
            key,
            numwant,
            port,
        )

    def _announce(self, data: bytes, tid: int, ip: str) -> UdpPending:
        info_hash, peer_id, (downloaded, uploaded), left, event, given_ip, key, numwant, port = (
            self._fields(data)
        )
        req = AnnounceRequest(
            info_hash=InfoHash(info_hash),
            peer_id=peer_id,
            port=port,
            downloaded=downloaded,
            left=left,
            uploaded=uploaded,
            event=_CODE_EVENTS.get(event, AnnounceEvent.NONE),
            numwant=None if numwant < 0 else numwant,
            ip=given_ip,
            key=key_from_int(key),
        )
        return UdpPending(tid, ip, len(data), announce=req)

    def _scrape(self, data: bytes, tid: int, ip: str) -> UdpPending:
        count = min((len(data) - 16) // 20, MAX_SCRAPE_HASHES)
        if count == 0:
            raise TrackerRequestError("scrape needs at least one info_hash")
        hashes = tuple(InfoHash(data[16 + 20 * i : 36 + 20 * i]) for i in range(count))
        return UdpPending(tid, ip, len(data), scrape=hashes)

    def announce_reply(self, pending: UdpPending, reply: AnnounceReply) -> bytes:
        """The store's announce reply as a datagram: peers of the sender's address family."""
        self.counters.announces += 1
        stride = 18 if ":" in pending.ip else 6
        listed = reply.peers
        peers = b"".join([p.compact for p in listed])
        if len(peers) != stride * len(listed):  # a swarm of both families: this one's only
            peers = b"".join([p.compact for p in listed if len(p.compact) == stride])
        header = _ANNOUNCE_REPLY.pack(
            ACTION_ANNOUNCE,
            pending.tid,
            min(reply.interval, 2**32 - 1),
            reply.incomplete,
            reply.complete,
        )
        return header + peers

    def scrape_reply(self, pending: UdpPending, stats: dict[InfoHash, ScrapeStats]) -> bytes:
        """Counts in the order asked; zeros for a hash the store did not answer."""
        self.counters.scrapes += 1
        out = bytearray(_HEADER.pack(ACTION_SCRAPE, pending.tid))
        for h in pending.scrape:
            s = stats.get(h)
            if s is None:
                out += bytes(12)
            else:
                out += _SCRAPE_ENTRY.pack(s.complete, s.downloaded, s.incomplete)
        return bytes(out)

    def error_reply(self, pending: UdpPending, message: str) -> bytes:
        """The store refused (a failure reason): an error packet."""
        self.counters.errors += 1
        return _error_reply(pending.tid, message, pending.size)

    def answer(
        self,
        pending: UdpPending,
        announce: Callable[[AnnounceRequest, str], AnnounceReply],
        scrape: Callable[[tuple[InfoHash, ...]], dict[InfoHash, ScrapeStats]],
    ) -> bytes:
        """Answer ``pending`` with synchronous swarm functions (tests, simulations)."""
        try:
            if pending.announce is not None:
                return self.announce_reply(pending, announce(pending.announce, pending.ip))
            return self.scrape_reply(pending, scrape(pending.scrape))
        except TrackerRequestError as exc:
            return self.error_reply(pending, str(exc))
