"""Gnutella / KaZaA overlay messages, sans-IO: encode and parse.

Overlay links are ordinary peer wire connections. Both sides handshake (BEP 3) with one fixed
info-hash, :data:`OVERLAY_INFO_HASH` = SHA-1 of the published constant
``b"torrentkit gnutella overlay v1"`` (so a BitTorrent listener can tell overlay links from
torrents it serves), offer the BEP 10 extension :data:`EXTENSION_NAME` in their extended
handshake, and then exchange the messages below, one per BEP 10 extension message. Each
payload is one bencoded dictionary, at most :data:`MAX_MESSAGE` (4 kB) long; ``y`` names the
message and unknown keys are ignored (room to grow):

==========  =====================================================================================
``hello``   first message on a link, each way: ``role`` (``peer`` = Gnutella node, ``sn`` =
            KaZaA supernode, ``leaf`` = KaZaA ordinary node), ``port`` (overlay listen port,
            0 = not listening).
``ping``    ``id`` (16 bytes), ``ttl``, ``hops``: flooded; every Gnutella node and supernode
            answers with a pong.
``pong``    ``id`` (the ping's), ``ttl``, ``hops``, ``ip`` + ``port`` (an overlay node to connect
            to), ``sn`` (1: a supernode), ``n`` (files shared): routed back along the ping's
            path.
``query``   ``id``, ``ttl``, ``hops``, ``q`` (keywords, UTF-8, at most 256 bytes): flooded.
``hit``     ``id`` (the query's), ``ttl``, ``hops``, ``ip`` + ``port`` (the holder's BitTorrent
            listen address), ``r`` (a list of ``{n: name, l: size, h: 20-byte info-hash}``):
            routed back along the query's path.
``share``   ``reset`` (1: replaces everything sent before), ``ip`` + ``port`` (holder address),
            ``r`` (as in ``hit``): a KaZaA leaf uploads its file list to a supernode, in as many
            messages as 4 kB needs.
==========  =====================================================================================

Addresses: ``ip`` is an IP literal as text, or empty, meaning "the address this message came
from": the first overlay hop fills it in from the connection (so a node need not know its own
public address, as with Gnutella's pong and BEP 10's ``yourip``). Only IP literals are accepted,
never host names, so a forged pong cannot make anyone resolve a name.

``ttl`` and ``hops`` are 0..255 here; the overlay enforces ``1 <= ttl`` and
``ttl + hops <= 7`` on what it receives (overlay.py).
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from torrentkit import bencoding
from torrentkit.errors import BencodeError, LocalProtocolError, RemoteProtocolError
from torrentkit.ids import InfoHash

#: The published constant whose SHA-1 is the overlay's info-hash.
OVERLAY_CONSTANT: Final = b"torrentkit gnutella overlay v1"
#: The info-hash every overlay link handshakes with:
#: ``284012becbbe222b75a1f9a3b48096d9132461bd`` (tests check this value).
OVERLAY_INFO_HASH: Final = InfoHash(hashlib.sha1(OVERLAY_CONSTANT).digest())
#: The BEP 10 extension name the overlay messages travel under.
EXTENSION_NAME: Final = "tk_overlay"

#: docs/limits.md, Overlays: messages are at most 4 kB.
MAX_MESSAGE: Final = 4096
#: docs/limits.md, Overlays: ttl + hops <= 7 (Gnutella's customary maximum).
MAX_TTL: Final = 7
DEFAULT_TTL: Final = 7
ID_LENGTH: Final = 16
MAX_QUERY: Final = 256
MAX_NAME: Final = 1024
MAX_SIZE: Final = 2**63 - 1
#: Bencode limits for one overlay message: 4 kB, shallow, a bounded token count.
LIMITS: Final = bencoding.Limits(max_size=MAX_MESSAGE, max_depth=4, max_tokens=1200)


class Role(enum.Enum):
    """What a node is in the overlay; ``value`` is the wire spelling."""

    PEER = "peer"  # Gnutella: every node is equal
    SUPERNODE = "sn"  # KaZaA: indexes its leaves' files, floods among supernodes
    LEAF = "leaf"  # KaZaA: attaches to supernodes, uploads its file list


def _check_u8(name: str, value: int) -> None:
    if type(value) is not int or not 0 <= value <= 255:
        raise LocalProtocolError(f"{name} must be 0..255, got {value!r}")


def _check_port(value: int, *, allow_zero: bool) -> None:
    low = 0 if allow_zero else 1
    if type(value) is not int or not low <= value <= 0xFFFF:
        raise LocalProtocolError(f"port must be {low}..65535, got {value!r}")


def _check_host(host: str) -> None:
    if not isinstance(host, str):
        raise LocalProtocolError("host must be a str")
    if host:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise LocalProtocolError(f"host must be an IP literal or empty: {host!r}") from None


def _check_id(msg_id: bytes) -> None:
    if not isinstance(msg_id, bytes) or len(msg_id) != ID_LENGTH:
        raise LocalProtocolError(f"a message id is {ID_LENGTH} bytes")


@dataclass(frozen=True, slots=True, kw_only=True)
class FileEntry:
    """One shared file: name, size in bytes, info-hash (enough to fetch it like a magnet)."""

    name: str
    size: int
    info_hash: InfoHash

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise LocalProtocolError("a file name must be a non-empty str")
        try:
            encoded = self.name.encode("utf-8")
        except UnicodeEncodeError:
            raise LocalProtocolError(f"a file name must be valid Unicode: {self.name!r}") from None
        if len(encoded) > MAX_NAME:
            raise LocalProtocolError(f"a file name is at most {MAX_NAME} bytes")
        if type(self.size) is not int or not 0 <= self.size <= MAX_SIZE:
            raise LocalProtocolError(f"size must be 0..2**63-1, got {self.size!r}")
        if not isinstance(self.info_hash, InfoHash):
            object.__setattr__(self, "info_hash", InfoHash(self.info_hash))


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    role: Role
    port: int

    def __post_init__(self) -> None:
        if not isinstance(self.role, Role):
            raise LocalProtocolError("role must be a Role")
        _check_port(self.port, allow_zero=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    msg_id: bytes
    ttl: int
    hops: int

    def __post_init__(self) -> None:
        _check_id(self.msg_id)
        _check_u8("ttl", self.ttl)
        _check_u8("hops", self.hops)


@dataclass(frozen=True, slots=True, kw_only=True)
class Pong:
    msg_id: bytes
    ttl: int
    hops: int
    host: str  # "" = the address this pong came from
    port: int
    supernode: bool = False
    files: int = 0

    def __post_init__(self) -> None:
        _check_id(self.msg_id)
        _check_u8("ttl", self.ttl)
        _check_u8("hops", self.hops)
        _check_host(self.host)
        _check_port(self.port, allow_zero=False)
        if type(self.files) is not int or not 0 <= self.files <= MAX_SIZE:
            raise LocalProtocolError(f"files must be a count, got {self.files!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Query:
    msg_id: bytes
    ttl: int
    hops: int
    text: str

    def __post_init__(self) -> None:
        _check_id(self.msg_id)
        _check_u8("ttl", self.ttl)
        _check_u8("hops", self.hops)
        if not isinstance(self.text, str):
            raise LocalProtocolError("query text must be a str")
        try:
            encoded = self.text.encode("utf-8")
        except UnicodeEncodeError:
            raise LocalProtocolError("a query must be valid Unicode") from None
        if len(encoded) > MAX_QUERY:
            raise LocalProtocolError(f"a query is at most {MAX_QUERY} bytes")


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryHit:
    msg_id: bytes
    ttl: int
    hops: int
    host: str  # the holder's BitTorrent address; "" = the address this hit came from
    port: int
    files: tuple[FileEntry, ...]

    def __post_init__(self) -> None:
        _check_id(self.msg_id)
        _check_u8("ttl", self.ttl)
        _check_u8("hops", self.hops)
        _check_host(self.host)
        _check_port(self.port, allow_zero=False)
        _check_files(self.files)


@dataclass(frozen=True, slots=True, kw_only=True)
class Share:
    reset: bool
    host: str
    port: int
    files: tuple[FileEntry, ...]

    def __post_init__(self) -> None:
        _check_host(self.host)
        _check_port(self.port, allow_zero=False)
        if not isinstance(self.files, tuple) or not all(
            isinstance(f, FileEntry) for f in self.files
        ):
            raise LocalProtocolError("files must be a tuple of FileEntry")


def _check_files(files: tuple[FileEntry, ...]) -> None:
    if not isinstance(files, tuple) or not files:
        raise LocalProtocolError("a hit carries a non-empty tuple of files")
    if not all(isinstance(f, FileEntry) for f in files):
        raise LocalProtocolError("files must be FileEntry values")


Message = Hello | Ping | Pong | Query | QueryHit | Share
#: Routed and flooded messages (they carry an id, a ttl and hops).
Descriptor = Ping | Pong | Query | QueryHit

KIND: Final[dict[type, str]] = {
    Hello: "hello",
    Ping: "ping",
    Pong: "pong",
    Query: "query",
    QueryHit: "hit",
    Share: "share",
}


def kind(msg: Message) -> str:
    """The message's ``y`` (also the name counters use)."""
    return KIND[type(msg)]


# --------------------------------------------------------------------------- encoding


def _entry(f: FileEntry) -> dict[str, Any]:
    return {"n": f.name, "l": f.size, "h": bytes(f.info_hash)}


def _fields(msg: Message) -> dict[str, Any]:
    d: dict[str, Any] = {"y": kind(msg)}
    if isinstance(msg, Hello):
        d.update(role=msg.role.value, port=msg.port)
        return d
    if isinstance(msg, Share):
        d.update(reset=int(msg.reset), ip=msg.host, port=msg.port, r=[_entry(f) for f in msg.files])
        return d
    d.update(id=msg.msg_id, ttl=msg.ttl, hops=msg.hops)
    if isinstance(msg, Pong):
        d.update(ip=msg.host, port=msg.port, sn=int(msg.supernode), n=msg.files)
    elif isinstance(msg, Query):
        d["q"] = msg.text
    elif isinstance(msg, QueryHit):
        d.update(ip=msg.host, port=msg.port, r=[_entry(f) for f in msg.files])
    return d


def encode(msg: Message) -> bytes:
    """The extension message payload for ``msg``; LocalProtocolError if over 4 kB."""
    data = bencoding.encode(_fields(msg))
    if len(data) > MAX_MESSAGE:
        raise LocalProtocolError(f"{kind(msg)} message of {len(data)} bytes exceeds {MAX_MESSAGE}")
    return data


def entry_size(f: FileEntry) -> int:
    """How many bytes ``f`` adds to a ``hit`` or ``share`` message."""
    return len(bencoding.encode(_entry(f)))


def pack(
    make: Callable[[tuple[FileEntry, ...], bool], QueryHit | Share],
    files: Iterable[FileEntry],
) -> list[QueryHit | Share]:
    """Split ``files`` over as few messages as 4 kB allows.

    ``make(chunk, first)`` builds one message (``first``: the first chunk, e.g. the one that
    carries ``reset``). The list encoding is ``l<entries>e``, so each message's size is the
    size of its frame plus the sum of its entries' sizes: exact, without re-encoding.
    """
    out: list[QueryHit | Share] = []
    chunk: list[FileEntry] = []
    base = 0
    used = 0
    for f in files:
        if not chunk:
            base = len(encode(make((f,), not out))) - entry_size(f)
            used = base
        size = entry_size(f)
        if chunk and used + size > MAX_MESSAGE:
            out.append(make(tuple(chunk), not out))
            chunk = []
            base = len(encode(make((f,), not out))) - size
            used = base
        chunk.append(f)
        used += size
    if chunk:
        out.append(make(tuple(chunk), not out))
    return out


# --------------------------------------------------------------------------- parsing


def parse(payload: bytes) -> Message:
    """Parse one overlay message; RemoteProtocolError for anything malformed or oversized."""
    if len(payload) > MAX_MESSAGE:
        raise RemoteProtocolError(f"overlay message of {len(payload)} bytes exceeds {MAX_MESSAGE}")
    try:
        d = bencoding.decode(payload, LIMITS)
    except BencodeError as exc:
        raise RemoteProtocolError(f"overlay message is not valid bencode: {exc}") from None
    if not isinstance(d, dict):
        raise RemoteProtocolError("overlay message is not a dictionary")
    y = d.get(b"y")
    try:
        if y == b"hello":
            role = _text(d, b"role", 8)
            try:
                return Hello(role=Role(role), port=_int(d, b"port", 0, 0xFFFF))
            except ValueError:
                raise RemoteProtocolError(f"hello: unknown role {role!r}") from None
        if y == b"share":
            return Share(
                reset=bool(_int(d, b"reset", 0, 1)),
                host=_host(d),
                port=_int(d, b"port", 1, 0xFFFF),
                files=_files(d, allow_empty=True),
            )
        if not isinstance(y, bytes):
            raise RemoteProtocolError("overlay message without a type 'y'")
        msg_id = d.get(b"id")
        if not isinstance(msg_id, bytes) or len(msg_id) != ID_LENGTH:
            raise RemoteProtocolError(f"overlay {y!r}: 'id' is not {ID_LENGTH} bytes")
        ttl = _int(d, b"ttl", 0, 255)
        hops = _int(d, b"hops", 0, 255)
        if y == b"ping":
            return Ping(msg_id=msg_id, ttl=ttl, hops=hops)
        if y == b"pong":
            return Pong(
                msg_id=msg_id,
                ttl=ttl,
                hops=hops,
                host=_host(d),
                port=_int(d, b"port", 1, 0xFFFF),
                supernode=bool(_int(d, b"sn", 0, 1)),
                files=_int(d, b"n", 0, MAX_SIZE),
            )
        if y == b"query":
            return Query(msg_id=msg_id, ttl=ttl, hops=hops, text=_text(d, b"q", MAX_QUERY))
        if y == b"hit":
            return QueryHit(
                msg_id=msg_id,
                ttl=ttl,
                hops=hops,
                host=_host(d),
                port=_int(d, b"port", 1, 0xFFFF),
                files=_files(d, allow_empty=False),
            )
    except LocalProtocolError as exc:  # pragma: no cover - every field is checked above
        raise RemoteProtocolError(f"overlay message: {exc}") from None
    raise RemoteProtocolError(f"unknown overlay message type {y!r}")


def _int(d: dict[bytes, Any], key: bytes, low: int, high: int) -> int:
    value = d.get(key)
    if type(value) is not int or not low <= value <= high:
        raise RemoteProtocolError(f"overlay message: {key.decode()!r} is not in {low}..{high}")
    return value


def _text(d: dict[bytes, Any], key: bytes, limit: int) -> str:
    value = d.get(key)
    if not isinstance(value, bytes) or len(value) > limit:
        raise RemoteProtocolError(f"overlay message: {key.decode()!r} is not a short string")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError(f"overlay message: {key.decode()!r} is not UTF-8") from None


def _host(d: dict[bytes, Any]) -> str:
    host = _text(d, b"ip", 64)
    if host:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise RemoteProtocolError(
                f"overlay message: 'ip' is not an IP literal: {host!r}"
            ) from None
    return host


def _files(d: dict[bytes, Any], *, allow_empty: bool) -> tuple[FileEntry, ...]:
    raw = d.get(b"r")
    if not isinstance(raw, list) or (not raw and not allow_empty):
        raise RemoteProtocolError("overlay message: 'r' is not a list of files")
    out: list[FileEntry] = []
    for item in raw:
        if not isinstance(item, dict):
            raise RemoteProtocolError("overlay message: a file entry is not a dictionary")
        name = _text(item, b"n", MAX_NAME)
        if not name:
            raise RemoteProtocolError("overlay message: a file entry has an empty name")
        info_hash = item.get(b"h")
        if not isinstance(info_hash, bytes) or len(info_hash) != 20:
            raise RemoteProtocolError("overlay message: a file entry's 'h' is not 20 bytes")
        out.append(
            FileEntry(name=name, size=_int(item, b"l", 0, MAX_SIZE), info_hash=InfoHash(info_hash))
        )
    return tuple(out)
