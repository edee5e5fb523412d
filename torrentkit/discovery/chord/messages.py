"""The Chord wire format: bencoded KRPC-style datagrams (one message per UDP datagram).

Every datagram is a dictionary with a transaction id ``t`` (1-20 bytes, chosen by the asker and
echoed in the answer) and a type ``y``: ``q`` query, ``r`` reply, ``e`` error::

    query   {"t": tid, "y": "q", "q": METHOD, "a": {...}}
    reply   {"t": tid, "y": "r", "r": {...}}
    error   {"t": tid, "y": "e", "e": [CODE, "message"]}

Addresses travel in compact form (IPv4: 4 + 2 bytes, IPv6: 16 + 2 bytes, port big-endian);
keys are 20 bytes. Node ids never travel: the receiver computes them from addresses.

Methods and their fields (``a`` of the query -> ``r`` of the reply):

- ``ping`` {} -> {``p``: predecessor?}
- ``find`` {``k``: key} -> either {``s``: [owner, its successors...]} when the key lies between
  the answerer and its successor, or {``n``: [closer nodes...]}, closest to the key first,
  plus ``s``: the answerer's successors at or past the key when its successor list reaches
  that far (the owners to fall back on if the closer nodes are dead).
- ``stab`` {``f``: 1?} (stabilize, and notify: "I may be your predecessor") ->
  {``p``: predecessor?, ``s``: [successors...], ``f``: [routing nodes...] if asked}
- ``get`` {``k``} -> {``v``: [peers...], ``tk``: token}
- ``put`` {``k``, ``port``, ``tk``} -> {}   (the peer's IP is the datagram's source IP)
- ``rep`` {``i``: [[key, [[peer, ttl seconds], ...]], ...]} -> {}   (replicas, hand-over)
- ``leave`` {``p``: predecessor?, ``s``: [successors...]} -> {}

Parsing takes bytes from anyone: anything that is not exactly this shape (within
``DATAGRAM_LIMITS``) raises :class:`RemoteProtocolError`, and the node drops it.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from torrentkit.bencoding import DATAGRAM_LIMITS, decode, encode
from torrentkit.errors import LocalProtocolError, RemoteProtocolError
from torrentkit.ids import PeerAddr

PING = b"ping"
FIND = b"find"
STAB = b"stab"
GET = b"get"
PUT = b"put"
REP = b"rep"
LEAVE = b"leave"
METHODS = frozenset({PING, FIND, STAB, GET, PUT, REP, LEAVE})

MAX_TID = 20
MAX_TOKEN = 20
KEY_LEN = 20

# KRPC error codes (BEP 5's numbering).
GENERIC_ERROR = 201
PROTOCOL_ERROR = 203
METHOD_UNKNOWN = 204


@dataclass(frozen=True, slots=True, kw_only=True)
class Item:
    """One key and its peers, each with the seconds it has left to live."""

    key: bytes
    peers: tuple[tuple[PeerAddr, int], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Query:
    """A request. Fields a method does not use keep their defaults."""

    tid: bytes
    method: bytes
    key: bytes = b""
    port: int = 0
    token: bytes = b""
    want_fingers: bool = False
    predecessor: PeerAddr | None = None
    successors: tuple[PeerAddr, ...] = ()
    items: tuple[Item, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """An answer; which fields are set depends on the query it answers."""

    tid: bytes
    predecessor: PeerAddr | None = None
    #: ``find``: the key's successor first, then its successors; ``stab``: successor list.
    successors: tuple[PeerAddr, ...] | None = None
    closer: tuple[PeerAddr, ...] = ()
    fingers: tuple[PeerAddr, ...] = ()
    peers: tuple[PeerAddr, ...] = ()
    token: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorReply:
    tid: bytes
    code: int
    message: str


Message = Query | Reply | ErrorReply


# --------------------------------------------------------------------------- addresses


def compact(addr: PeerAddr) -> bytes:
    """``addr`` as 6 (IPv4) or 18 (IPv6) bytes; the host must be an IP literal."""
    port = addr.port.to_bytes(2, "big")
    try:
        return socket.inet_pton(socket.AF_INET, addr.host) + port
    except OSError:
        pass
    try:
        return socket.inet_pton(socket.AF_INET6, addr.host) + port
    except OSError:
        raise LocalProtocolError(f"not an IP address: {addr.host!r}") from None


def uncompact(data: bytes) -> PeerAddr:
    if len(data) == 6:
        host = socket.inet_ntop(socket.AF_INET, data[:4])
    elif len(data) == 18:
        host = socket.inet_ntop(socket.AF_INET6, data[:16])
    else:
        raise RemoteProtocolError(f"compact address of {len(data)} bytes")
    port = int.from_bytes(data[-2:], "big")
    if port == 0:
        raise RemoteProtocolError("address with port 0")
    return PeerAddr(host, port)


def _addr_list(value: Any, what: str) -> tuple[PeerAddr, ...]:
    if not isinstance(value, list):
        raise RemoteProtocolError(f"{what} is not a list")
    out = []
    for entry in value:
        if not isinstance(entry, bytes):
            raise RemoteProtocolError(f"{what} entry is not a string")
        out.append(uncompact(entry))
    return tuple(out)


# --------------------------------------------------------------------------- encoding


def encode_query(q: Query, tid: bytes | None = None) -> bytes:
    """Bencode ``q``; ``tid`` (when given) replaces ``q.tid``."""
    a: dict[bytes, Any] = {}
    if q.key:
        a[b"k"] = q.key
    if q.port:
        a[b"port"] = q.port
    if q.token:
        a[b"tk"] = q.token
    if q.want_fingers:
        a[b"f"] = 1
    if q.predecessor is not None:
        a[b"p"] = compact(q.predecessor)
    if q.successors:
        a[b"s"] = [compact(s) for s in q.successors]
    if q.items:
        a[b"i"] = [[item.key, [[compact(p), ttl] for p, ttl in item.peers]] for item in q.items]
    return encode({b"t": q.tid if tid is None else tid, b"y": b"q", b"q": q.method, b"a": a})


def encode_reply(r: Reply) -> bytes:
    body: dict[bytes, Any] = {}
    if r.predecessor is not None:
        body[b"p"] = compact(r.predecessor)
    if r.successors is not None:
        body[b"s"] = [compact(s) for s in r.successors]
    if r.closer:
        body[b"n"] = [compact(s) for s in r.closer]
    if r.fingers:
        body[b"f"] = [compact(s) for s in r.fingers]
    if r.peers:
        body[b"v"] = [compact(s) for s in r.peers]
    if r.token:
        body[b"tk"] = r.token
    return encode({b"t": r.tid, b"y": b"r", b"r": body})


def encode_error(e: ErrorReply) -> bytes:
    return encode({b"t": e.tid, b"y": b"e", b"e": [e.code, e.message]})


# --------------------------------------------------------------------------- parsing


def parse(data: bytes) -> Message:
    """One datagram -> a message; RemoteProtocolError for anything else."""
    msg = decode(data, DATAGRAM_LIMITS)
    if not isinstance(msg, dict):
        raise RemoteProtocolError("datagram is not a dictionary")
    tid = msg.get(b"t")
    if not isinstance(tid, bytes) or not 0 < len(tid) <= MAX_TID:
        raise RemoteProtocolError("transaction id missing or over 20 bytes")
    kind = msg.get(b"y")
    if kind == b"q":
        return _parse_query(tid, msg)
    if kind == b"r":
        return _parse_reply(tid, msg)
    if kind == b"e":
        err = msg.get(b"e")
        if (
            not isinstance(err, list)
            or len(err) != 2
            or not isinstance(err[0], int)
            or not isinstance(err[1], bytes)
        ):
            raise RemoteProtocolError("malformed error")
        return ErrorReply(tid=tid, code=err[0], message=err[1].decode("utf-8", "replace")[:200])
    raise RemoteProtocolError("unknown message type")


def _parse_query(tid: bytes, msg: dict[bytes, Any]) -> Query:
    method = msg.get(b"q")
    a = msg.get(b"a")
    if not isinstance(method, bytes) or not isinstance(a, dict):
        raise RemoteProtocolError("query without method or arguments")
    if method not in METHODS:
        # Returned as a query with an unknown method: the node answers "method unknown".
        return Query(tid=tid, method=method[:32])
    key = a.get(b"k", b"")
    if not isinstance(key, bytes) or (key and len(key) != KEY_LEN):
        raise RemoteProtocolError("key is not 20 bytes")
    if method in (FIND, GET, PUT) and not key:
        raise RemoteProtocolError("key missing")
    port = a.get(b"port", 0)
    if not isinstance(port, int) or not 0 <= port < 65536 or (method == PUT and port == 0):
        raise RemoteProtocolError("bad port")
    token = a.get(b"tk", b"")
    if not isinstance(token, bytes) or len(token) > MAX_TOKEN:
        raise RemoteProtocolError("token missing or over 20 bytes")
    pred_raw = a.get(b"p")
    predecessor = None
    if pred_raw is not None:
        if not isinstance(pred_raw, bytes):
            raise RemoteProtocolError("predecessor is not a string")
        predecessor = uncompact(pred_raw)
    successors = _addr_list(a[b"s"], "successors") if b"s" in a else ()
    items: tuple[Item, ...] = ()
    if b"i" in a:
        items = _parse_items(a[b"i"])
    return Query(
        tid=tid,
        method=method,
        key=key,
        port=port,
        token=token,
        want_fingers=a.get(b"f") == 1,
        predecessor=predecessor,
        successors=successors,
        items=items,
    )


def _parse_items(value: Any) -> tuple[Item, ...]:
    if not isinstance(value, list):
        raise RemoteProtocolError("items is not a list")
    items = []
    for entry in value:
        if not isinstance(entry, list) or len(entry) != 2:
            raise RemoteProtocolError("malformed item")
        key, peers = entry
        if not isinstance(key, bytes) or len(key) != KEY_LEN or not isinstance(peers, list):
            raise RemoteProtocolError("malformed item")
        parsed = []
        for p in peers:
            if (
                not isinstance(p, list)
                or len(p) != 2
                or not isinstance(p[0], bytes)
                or not isinstance(p[1], int)
                or p[1] < 0
            ):
                raise RemoteProtocolError("malformed item peer")
            parsed.append((uncompact(p[0]), p[1]))
        items.append(Item(key=key, peers=tuple(parsed)))
    return tuple(items)


def _parse_reply(tid: bytes, msg: dict[bytes, Any]) -> Reply:
    body = msg.get(b"r")
    if not isinstance(body, dict):
        raise RemoteProtocolError("reply without body")
    pred_raw = body.get(b"p")
    predecessor = None
    if pred_raw is not None:
        if not isinstance(pred_raw, bytes):
            raise RemoteProtocolError("predecessor is not a string")
        predecessor = uncompact(pred_raw)
    token = body.get(b"tk", b"")
    if not isinstance(token, bytes) or len(token) > MAX_TOKEN:
        raise RemoteProtocolError("token over 20 bytes")
    return Reply(
        tid=tid,
        predecessor=predecessor,
        successors=_addr_list(body[b"s"], "successors") if b"s" in body else None,
        closer=_addr_list(body[b"n"], "closer nodes") if b"n" in body else (),
        fingers=_addr_list(body[b"f"], "fingers") if b"f" in body else (),
        peers=_addr_list(body[b"v"], "peers") if b"v" in body else (),
        token=token,
    )
