"""HTTP tracker wire format, both sides, sans-IO (BEP 3, BEP 7, BEP 23, BEP 48).

Server side: :func:`parse_announce_query` / :func:`parse_scrape_query` turn the *raw*
(still percent-encoded) query string into values, and :func:`encode_announce_response`,
:func:`encode_scrape_response`, :func:`encode_failure` turn replies into bencoded bodies.
Client side: :func:`build_announce_query`, :func:`announce_url`, :func:`scrape_url` build
requests and :func:`parse_announce_response` / :func:`parse_scrape_response` read replies.

Rules kept here:

- ``info_hash`` and ``peer_id`` are arbitrary bytes, percent-encoded. Each parameter is
  decoded on its own with :func:`urllib.parse.unquote_to_bytes` from the raw query; a
  literal ``+`` stays ``+`` (it is not form encoding). A framework's decoded query would
  turn those bytes into text and lose them.
- Anything from outside that breaks a rule raises :class:`TrackerRequestError` (a request)
  or :class:`TrackerResponseError` (a reply); a reply carrying ``failure reason`` raises
  :class:`TrackerFailure`. All are :class:`~torrentkit.errors.RemoteProtocolError`, and a
  request error's message is what the server sends back as its ``failure reason``.
- Limits (docs/limits.md): numwant defaults to 50 and is capped at 200 (a negative numwant
  means "the default", as some clients send -1); at most 64 info-hashes per scrape (more are
  ignored, as opentracker does); integers at most 19 digits; a query of at most 128 KiB (so
  a 1,000-hash scrape still gets a bencoded answer, for its first 64).
- Compact (BEP 23) is the default. IPv4 peers go in ``peers`` (6 bytes each), IPv6 peers in
  ``peers6`` (18 bytes each, BEP 7). A non-compact reply lists both families in ``peers``
  as dictionaries, without ``peer id`` when ``no_peer_id`` was asked.
"""

from __future__ import annotations

import enum
import ipaddress
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from torrentkit import bencoding
from torrentkit.errors import BencodeError, LocalProtocolError, RemoteProtocolError
from torrentkit.ids import InfoHash, PeerAddr

DEFAULT_NUMWANT = 50
MAX_NUMWANT = 200
MAX_SCRAPE_HASHES = 64
MAX_QUERY_LENGTH = 128 * 1024
MAX_RESPONSE_SIZE = 1024 * 1024
MAX_KEY_LENGTH = 64
_MAX_DIGITS = 19
INT63_MAX = 2**63 - 1

#: Bounds for a tracker's bencoded reply (a client reads at most this much).
RESPONSE_LIMITS = bencoding.Limits(max_size=MAX_RESPONSE_SIZE, max_depth=10, max_tokens=200_000)


class TrackerRequestError(RemoteProtocolError):
    """An announce or scrape request that breaks the protocol; the text is the failure reason."""


class TrackerResponseError(RemoteProtocolError):
    """A tracker reply that is not a valid announce or scrape response."""


class TrackerFailure(TrackerResponseError):
    """The tracker answered with a ``failure reason`` (its text is in :attr:`reason`)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"tracker failure: {reason}")


class AnnounceEvent(enum.Enum):
    """The ``event`` parameter. ``paused`` is BEP 21's partial seed; it counts as regular."""

    NONE = ""
    STARTED = "started"
    COMPLETED = "completed"
    STOPPED = "stopped"
    PAUSED = "paused"


_EVENTS = {e.value.encode(): e for e in AnnounceEvent}


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnounceRequest:
    """One announce, as a client sends it and as the server reads it.

    ``numwant`` None means "not given" (the tracker's default). ``ip`` is the optional
    ``ip`` parameter as the client wrote it; a tracker ignores it unless configured to trust it.
    """

    info_hash: InfoHash
    peer_id: bytes
    port: int
    uploaded: int = 0
    downloaded: int = 0
    left: int = 0
    event: AnnounceEvent = AnnounceEvent.NONE
    compact: bool = True
    no_peer_id: bool = False
    numwant: int | None = None
    ip: str | None = None
    key: bytes | None = None

    def __post_init__(self) -> None:
        if len(self.info_hash) != 20 or len(self.peer_id) != 20:
            raise LocalProtocolError("info_hash and peer_id must be 20 bytes each")
        if not 0 < self.port < 65536:
            raise LocalProtocolError(f"port must be 1-65535, got {self.port}")
        if not (
            0 <= self.uploaded <= INT63_MAX
            and 0 <= self.downloaded <= INT63_MAX
            and 0 <= self.left <= INT63_MAX
        ):
            raise LocalProtocolError("uploaded, downloaded and left must be 0..2^63-1")


class PeerInfo(Protocol):
    """A peer the tracker hands out. ``compact`` is its BEP 23 / BEP 7 form (6 or 18 bytes).

    A protocol, not a dataclass, so the swarm state can hand out its own records without
    copying them on every announce.
    """

    @property
    def peer_id(self) -> bytes: ...

    @property
    def ip(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def compact(self) -> bytes: ...


def compact_peer(ip: str, port: int) -> bytes:
    """``ip``/``port`` in compact form: 4+2 bytes for IPv4, 16+2 for IPv6 (network order)."""
    return ipaddress.ip_address(ip).packed + port.to_bytes(2, "big")


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnounceReply:
    """What the server answers to one announce (before encoding)."""

    interval: int
    min_interval: int
    complete: int
    incomplete: int
    peers: Sequence[PeerInfo]


@dataclass(frozen=True, slots=True, kw_only=True)
class ScrapeStats:
    """One torrent's scrape counts (BEP 48): seeders, completed downloads, leechers."""

    complete: int
    downloaded: int
    incomplete: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnounceResponse:
    """A tracker's announce reply as a client reads it."""

    interval: int
    min_interval: int | None
    complete: int | None
    incomplete: int | None
    peers: tuple[PeerAddr, ...]
    warning: str | None = None
    tracker_id: bytes | None = None


# ---------------------------------------------------------------------------------------------
# Server side: parse requests


def _unquote(value: str) -> bytes:
    """One percent-encoded parameter value as bytes (``+`` stays ``+``)."""
    if "%" not in value:
        return value.encode()
    if len(value) == 60 and value[::3] == _PCT20:
        # The usual info_hash / peer_id: all 20 bytes escaped. Same result, 5x faster.
        try:
            raw = bytes.fromhex(value.replace("%", ""))
        except ValueError:
            pass
        else:
            if len(raw) == 20:
                return raw
    return urllib.parse.unquote_to_bytes(value)


_PCT20 = "%" * 20
#: Parameters that must not repeat in an announce (which one would count?).
_SINGLE = frozenset({"info_hash", "peer_id", "port"})


def split_query(query: str) -> dict[str, list[str]]:
    """Raw query string -> parameter name -> its raw (still percent-encoded) values."""
    if len(query) > MAX_QUERY_LENGTH:
        raise TrackerRequestError(f"query longer than {MAX_QUERY_LENGTH} characters")
    params: dict[str, list[str]] = {}
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if "%" in name:
            name = _unquote(name).decode("utf-8", "replace")
        values = params.get(name)
        if values is None:
            params[name] = [value]
        else:
            values.append(value)
    return params


def _uint(name: str, value: str | None) -> int:
    if value is None:
        raise TrackerRequestError(f"missing {name}")
    if "%" in value:
        value = _unquote(value).decode("latin-1")
    if not (value.isascii() and value.isdigit()) or len(value) > _MAX_DIGITS:
        raise TrackerRequestError(f"{name} must be a non-negative integer")
    number = int(value)
    if number > INT63_MAX:
        raise TrackerRequestError(f"{name} is too large")
    return number


def _info_hash(raw: bytes) -> InfoHash:
    if len(raw) != 20:
        raise TrackerRequestError(f"info_hash must be 20 bytes, got {len(raw)}")
    return InfoHash(raw)


def _flag(value: str | None, default: bool) -> bool:
    if not value:
        return default
    return value != "0"


def parse_announce_query(query: str) -> AnnounceRequest:
    """The raw (percent-encoded) query string of ``/announce`` as an :class:`AnnounceRequest`.

    Raises :class:`TrackerRequestError` naming the first problem. (This is the tracker's
    hot path: one pass, and only the parameters it uses are decoded.)
    """
    if len(query) > MAX_QUERY_LENGTH:
        raise TrackerRequestError(f"query longer than {MAX_QUERY_LENGTH} characters")
    p: dict[str, str] = {}
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if "%" in name:
            name = _unquote(name).decode("utf-8", "replace")
        if name in p:
            if name in _SINGLE:
                raise TrackerRequestError(f"{name} given more than once")
            continue
        p[name] = value
    get = p.get
    raw_hash = get("info_hash")
    if raw_hash is None:
        raise TrackerRequestError("missing info_hash")
    info_hash = _info_hash(_unquote(raw_hash))
    raw_id = get("peer_id")
    if raw_id is None:
        raise TrackerRequestError("missing peer_id")
    peer_id = _unquote(raw_id)
    if len(peer_id) != 20:
        raise TrackerRequestError(f"peer_id must be 20 bytes, got {len(peer_id)}")
    port = _uint("port", get("port"))
    if not 0 < port < 65536:
        raise TrackerRequestError(f"port must be 1-65535, got {port}")
    uploaded = _uint("uploaded", get("uploaded"))
    downloaded = _uint("downloaded", get("downloaded"))
    left = _uint("left", get("left"))
    raw_event = get("event")
    event = AnnounceEvent.NONE
    if raw_event:
        found = _EVENTS.get(_unquote(raw_event))
        if found is None:
            raise TrackerRequestError("event must be started, completed, stopped or empty")
        event = found
    numwant: int | None = None
    raw_numwant = get("numwant")
    if raw_numwant:
        if raw_numwant.startswith("-"):
            _uint("numwant", raw_numwant[1:])  # negative: "the default"
        else:
            numwant = _uint("numwant", raw_numwant)
    raw_ip = get("ip")
    ip = _unquote(raw_ip).decode("latin-1") if raw_ip else None
    raw_key = get("key")
    key = None
    if raw_key is not None:
        key = _unquote(raw_key)
        if len(key) > MAX_KEY_LENGTH:
            raise TrackerRequestError(f"key longer than {MAX_KEY_LENGTH} bytes")
    return AnnounceRequest(
        info_hash=info_hash,
        peer_id=peer_id,
        port=port,
        uploaded=uploaded,
        downloaded=downloaded,
        left=left,
        event=event,
        compact=_flag(get("compact"), True),
        no_peer_id=_flag(get("no_peer_id"), False),
        numwant=numwant,
        ip=ip,
        key=key,
    )


def effective_numwant(numwant: int | None) -> int:
    """The number of peers to hand out: the default when not given, capped at the maximum."""
    if numwant is None:
        return DEFAULT_NUMWANT
    return min(numwant, MAX_NUMWANT)


def parse_scrape_query(query: str) -> list[InfoHash]:
    """The info-hashes of a ``/scrape`` query: at least one, duplicates dropped, at most 64."""
    p = split_query(query)
    raws = p.get("info_hash")
    if not raws:
        raise TrackerRequestError("scrape needs at least one info_hash (full scrape is off)")
    seen: dict[bytes, None] = {}
    for raw in raws:
        h = _info_hash(_unquote(raw))
        if h not in seen:
            seen[h] = None
            if len(seen) == MAX_SCRAPE_HASHES:
                break
    return [InfoHash(h) for h in seen]


# ---------------------------------------------------------------------------------------------
# Server side: encode replies


def encode_failure(reason: str) -> bytes:
    """A bencoded ``failure reason`` body."""
    return bencoding.encode({b"failure reason": reason.encode("utf-8", "replace")})


def encode_announce_response(
    reply: AnnounceReply, *, compact: bool = True, no_peer_id: bool = False
) -> bytes:
    """Bencode an announce reply: compact ``peers``/``peers6`` or a list of dictionaries."""
    peers = reply.peers
    if compact:
        # A store may hand its peers over with their addresses already packed (the Redis
        # store's PackedPeers): IPv4 and IPv6 compact addresses, each family concatenated.
        packed: tuple[bytes, bytes] | None = getattr(peers, "packed_compact", None)
        if packed is not None:
            if not packed[1]:
                return _compact_v4_reply(reply, packed[0])
            body = _reply_head(reply)
            body[b"peers"], body[b"peers6"] = packed
            return bencoding.encode(body)
        joined = b"".join([p.compact for p in peers])
        if len(joined) == 6 * len(peers):
            return _compact_v4_reply(reply, joined)
        v4 = b"".join([p.compact for p in peers if len(p.compact) == 6])
        v6 = b"".join([p.compact for p in peers if len(p.compact) == 18])
        body = _reply_head(reply)
        body[b"peers"] = v4
        body[b"peers6"] = v6
        return bencoding.encode(body)
    listed: list[dict[bytes, Any]] = []
    for p in peers:
        entry: dict[bytes, Any] = {b"ip": p.ip.encode(), b"port": p.port}
        if not no_peer_id:
            entry[b"peer id"] = p.peer_id
        listed.append(entry)
    body = _reply_head(reply)
    body[b"peers"] = listed
    return bencoding.encode(body)


def _reply_head(reply: AnnounceReply) -> dict[bytes, Any]:
    return {
        b"interval": reply.interval,
        b"min interval": reply.min_interval,
        b"complete": reply.complete,
        b"incomplete": reply.incomplete,
    }


def _compact_v4_reply(reply: AnnounceReply, peers: bytes) -> bytes:
    """The one reply every announce of an IPv4 swarm gets, from a fixed template.

    This is the tracker's hot path (as opentracker does, with sprintf): formatting five
    integers and one string into a template costs a tenth of a generic encoder's walk.
    Its keys are in sorted order and its integers non-negative, so the bytes equal
    ``bencoding.encode`` of the same dictionary (a test holds it to that).
    """
    return b"d8:completei%de10:incompletei%de8:intervali%de12:min intervali%de5:peers%d:%se" % (
        reply.complete,
        reply.incomplete,
        reply.interval,
        reply.min_interval,
        len(peers),
        peers,
    )


def encode_scrape_response(files: dict[InfoHash, ScrapeStats]) -> bytes:
    """Bencode a BEP 48 scrape reply."""
    return bencoding.encode(
        {
            b"files": {
                bytes(h): {
                    b"complete": s.complete,
                    b"downloaded": s.downloaded,
                    b"incomplete": s.incomplete,
                }
                for h, s in files.items()
            }
        }
    )


# ---------------------------------------------------------------------------------------------
# Client side: build requests


def _quote(value: bytes) -> str:
    return urllib.parse.quote_from_bytes(value, safe="")


def build_announce_query(req: AnnounceRequest) -> str:
    """The query string (without ``?``) of an announce, every byte parameter percent-encoded."""
    parts = [
        f"info_hash={_quote(req.info_hash)}",
        f"peer_id={_quote(req.peer_id)}",
        f"port={req.port}",
        f"uploaded={req.uploaded}",
        f"downloaded={req.downloaded}",
        f"left={req.left}",
        f"compact={int(req.compact)}",
    ]
    if req.no_peer_id:
        parts.append("no_peer_id=1")
    if req.event is not AnnounceEvent.NONE:
        parts.append(f"event={req.event.value}")
    if req.numwant is not None:
        parts.append(f"numwant={req.numwant}")
    if req.ip is not None:
        parts.append(f"ip={urllib.parse.quote(req.ip, safe='')}")
    if req.key is not None:
        parts.append(f"key={_quote(req.key)}")
    return "&".join(parts)


def _join_query(base: str, query: str) -> str:
    return f"{base}{'&' if '?' in base else '?'}{query}"


def announce_url(base: str, req: AnnounceRequest) -> str:
    """The full announce URL for ``req`` (keeping any query the tracker URL already has)."""
    return _join_query(base, build_announce_query(req))


def scrape_url(announce: str, info_hashes: Iterable[bytes]) -> str | None:
    """The BEP 48 scrape URL for an announce URL, or None when it has no scrape convention.

    The rule: the last path component must start with ``announce``; it becomes ``scrape``.
    """
    head, sep, query = announce.partition("?")
    slash = head.rfind("/")
    last = head[slash + 1 :]
    if slash < 0 or not last.startswith("announce"):
        return None
    url = head[: slash + 1] + "scrape" + last[len("announce") :]
    if sep:
        url += "?" + query
    hashes = "&".join(f"info_hash={_quote(h)}" for h in info_hashes)
    return _join_query(url, hashes) if hashes else url


# ---------------------------------------------------------------------------------------------
# Client side: parse replies


def _decode_dict(body: bytes) -> dict[bytes, Any]:
    try:
        value = bencoding.decode(body, RESPONSE_LIMITS)
    except BencodeError as exc:
        raise TrackerResponseError(f"reply is not bencoded: {exc}") from None
    if not isinstance(value, dict):
        raise TrackerResponseError("reply is not a bencoded dictionary")
    failure = value.get(b"failure reason")
    if failure is not None:
        if isinstance(failure, bytes):
            raise TrackerFailure(failure.decode("utf-8", "replace"))
        raise TrackerResponseError("failure reason is not a string")
    return value


def _opt_int(d: dict[bytes, Any], key: bytes, *, required: bool = False) -> int | None:
    value = d.get(key)
    if value is None:
        if required:
            raise TrackerResponseError(f"reply has no {key.decode()}")
        return None
    if not isinstance(value, int) or value < 0:
        raise TrackerResponseError(f"{key.decode()} is not a non-negative integer")
    return value


def _compact_peers(data: bytes, size: int, key: str) -> list[PeerAddr]:
    if len(data) % size:
        raise TrackerResponseError(f"{key} length {len(data)} is not a multiple of {size}")
    out = []
    for i in range(0, len(data), size):
        ip = ipaddress.ip_address(data[i : i + size - 2])
        port = int.from_bytes(data[i + size - 2 : i + size], "big")
        if port:
            out.append(PeerAddr(str(ip), port))
    return out


def _dict_peers(items: list[Any]) -> list[PeerAddr]:
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise TrackerResponseError("peers list entry is not a dictionary")
        ip, port = item.get(b"ip"), item.get(b"port")
        if not isinstance(ip, bytes) or not isinstance(port, int) or not 0 < port < 65536:
            raise TrackerResponseError("peers list entry lacks a valid ip and port")
        try:
            host = str(ipaddress.ip_address(ip.decode("ascii")))
        except (UnicodeDecodeError, ValueError):
            raise TrackerResponseError("peers list entry has an ip that is no address") from None
        out.append(PeerAddr(host, port))
    return out


def parse_announce_response(body: bytes) -> AnnounceResponse:
    """Read a tracker's announce reply; raise :class:`TrackerFailure` for a failure reason."""
    d = _decode_dict(body)
    interval = _opt_int(d, b"interval", required=True)
    assert interval is not None
    peers: list[PeerAddr] = []
    raw = d.get(b"peers", b"")
    if isinstance(raw, bytes):
        peers += _compact_peers(raw, 6, "peers")
    elif isinstance(raw, list):
        peers += _dict_peers(raw)
    else:
        raise TrackerResponseError("peers is neither a string nor a list")
    raw6 = d.get(b"peers6", b"")
    if not isinstance(raw6, bytes):
        raise TrackerResponseError("peers6 is not a string")
    peers += _compact_peers(raw6, 18, "peers6")
    warning = d.get(b"warning message")
    tracker_id = d.get(b"tracker id")
    return AnnounceResponse(
        interval=interval,
        min_interval=_opt_int(d, b"min interval"),
        complete=_opt_int(d, b"complete"),
        incomplete=_opt_int(d, b"incomplete"),
        peers=tuple(peers),
        warning=warning.decode("utf-8", "replace") if isinstance(warning, bytes) else None,
        tracker_id=tracker_id if isinstance(tracker_id, bytes) else None,
    )


def parse_scrape_response(body: bytes) -> dict[InfoHash, ScrapeStats]:
    """Read a BEP 48 scrape reply: info-hash -> counts (missing counts read as 0)."""
    d = _decode_dict(body)
    files = d.get(b"files")
    if not isinstance(files, dict):
        raise TrackerResponseError("scrape reply has no files dictionary")
    out: dict[InfoHash, ScrapeStats] = {}
    for key, value in files.items():
        if len(key) != 20 or not isinstance(value, dict):
            raise TrackerResponseError("scrape reply has a malformed files entry")
        out[InfoHash(key)] = ScrapeStats(
            complete=_opt_int(value, b"complete") or 0,
            downloaded=_opt_int(value, b"downloaded") or 0,
            incomplete=_opt_int(value, b"incomplete") or 0,
        )
    return out


def key_from_int(key: int) -> bytes:
    """A UDP (BEP 15) key as the swarm state keeps keys: 8 hex digits, as an HTTP client
    of ours sends them, so the two protocols name one client alike."""
    return b"%08x" % key
