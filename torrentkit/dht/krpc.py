"""KRPC, the mainline DHT's message format (BEP 5): bencoded dictionaries in UDP datagrams.

Every message has ``t`` (transaction id, echoed by the reply) and ``y`` (``q`` query, ``r``
response, ``e`` error). A query names its method in ``q`` and carries its arguments in ``a``;
a response carries its values in ``r``; an error carries ``e = [code, message]``. Other
BEPs add top-level keys: ``ip`` (BEP 42: the asker's address as we see it, in replies),
``ro`` (BEP 43: the sender is read-only) and ``v`` (client version, informational).

This module turns bytes into :class:`Query` / :class:`Response` / :class:`Error` and back,
and parses the argument dictionaries of the methods the node answers. Parsing raises only
:class:`KrpcError` (a :class:`RemoteProtocolError`): its ``tid`` is set when the message was a
query whose transaction id we could read, which is the only case that deserves an error
reply (code 203); a malformed response or error is dropped without a word, so bad input can
never start a storm of error messages (docs/limits.md item 14).

Compact encodings: a node is 26 bytes (20-byte id, 4-byte IPv4, 2-byte port, big endian); a
peer is 6 bytes (IPv4, port). IPv6 (``nodes6``, 18-byte peers) is parsed where it appears but
only IPv4 is produced.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass
from typing import Any, Final

from torrentkit import bencoding
from torrentkit.errors import BencodeError, RemoteProtocolError
from torrentkit.ids import PeerAddr

#: Error codes (BEP 5).
GENERIC_ERROR: Final = 201
SERVER_ERROR: Final = 202
PROTOCOL_ERROR: Final = 203
METHOD_UNKNOWN: Final = 204

#: Longest transaction id or token we accept (docs/limits.md item 12).
MAX_TID: Final = 20
MAX_TOKEN: Final = 20
ID_LEN: Final = 20
NODE_LEN: Final = 26
PEER_LEN: Final = 6


class KrpcError(RemoteProtocolError):
    """A datagram that is not valid KRPC. ``tid`` is set when an error reply is due."""

    def __init__(self, message: str, *, tid: bytes | None = None, code: int = PROTOCOL_ERROR):
        super().__init__(message)
        self.tid = tid
        self.code = code


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeInfo:
    """A node as KRPC names it: 20-byte id and address."""

    id: bytes
    addr: PeerAddr


@dataclass(frozen=True, slots=True, kw_only=True)
class Query:
    tid: bytes
    method: bytes
    args: dict[bytes, Any]
    read_only: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    tid: bytes
    values: dict[bytes, Any]
    #: BEP 42: our address as the responder saw it.
    ip: PeerAddr | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Error:
    tid: bytes
    code: int
    message: str


Message = Query | Response | Error


# --------------------------------------------------------------------------- compact forms


def pack_addr(addr: PeerAddr) -> bytes:
    """6 bytes for an IPv4 address (18 for IPv6)."""
    try:
        packed = socket.inet_aton(addr.host) if ":" not in addr.host else b""
    except OSError:
        packed = b""
    if len(packed) != 4:
        packed = ipaddress.ip_address(addr.host).packed
    return packed + struct.pack(">H", addr.port)


def unpack_addr(data: bytes) -> PeerAddr:
    if len(data) not in (6, 18):
        raise KrpcError(f"compact address of {len(data)} bytes")
    host = socket.inet_ntoa(data[:4]) if len(data) == 6 else str(ipaddress.ip_address(data[:-2]))
    return PeerAddr(host, int.from_bytes(data[-2:], "big"))


def pack_nodes(nodes: list[NodeInfo]) -> bytes:
    return b"".join(n.id + pack_addr(n.addr) for n in nodes if ":" not in n.addr.host)


def unpack_nodes(data: bytes, *, v6: bool = False) -> list[NodeInfo]:
    """Compact node infos; entries with port 0 are skipped (nobody listens there)."""
    size = ID_LEN + (18 if v6 else 6)
    if len(data) % size:
        raise KrpcError(f"'nodes' of {len(data)} bytes is not a multiple of {size}")
    out = []
    for i in range(0, len(data), size):
        addr = unpack_addr(data[i + ID_LEN : i + size])
        if addr.port:
            out.append(NodeInfo(id=data[i : i + ID_LEN], addr=addr))
    return out


def unpack_peers(values: Any) -> list[PeerAddr]:
    """A ``values`` list of compact peers; malformed entries are skipped one by one."""
    if not isinstance(values, list):
        raise KrpcError("'values' is not a list")
    out = []
    for v in values:
        if isinstance(v, bytes) and len(v) in (6, 18):
            addr = unpack_addr(v)
            if addr.port:
                out.append(addr)
    return out


# --------------------------------------------------------------------------- encoding


def encode_query(
    tid: bytes, method: bytes, args: dict[bytes, Any], *, read_only: bool = False
) -> bytes:
    msg: dict[bytes, Any] = {b"t": tid, b"y": b"q", b"q": method, b"a": args}
    if read_only:
        msg[b"ro"] = 1
    return bencoding.encode(msg)


def encode_response(tid: bytes, values: dict[bytes, Any], *, ip: PeerAddr | None = None) -> bytes:
    msg: dict[bytes, Any] = {b"t": tid, b"y": b"r", b"r": values}
    if ip is not None:
        msg[b"ip"] = pack_addr(ip)
    return bencoding.encode(msg)


def encode_error(tid: bytes, code: int, message: str) -> bytes:
    return bencoding.encode({b"t": tid, b"y": b"e", b"e": [code, message.encode()]})


# --------------------------------------------------------------------------- decoding


def decode(data: bytes) -> Message:
    """Parse one datagram (docs/limits.md: DATAGRAM_LIMITS); raise :class:`KrpcError`."""
    try:
        msg = bencoding.decode(data, bencoding.DATAGRAM_LIMITS)
    except BencodeError as exc:
        raise KrpcError(f"not bencode: {exc}") from None
    if not isinstance(msg, dict):
        raise KrpcError("not a dictionary")
    tid = msg.get(b"t")
    if not isinstance(tid, bytes) or not 0 < len(tid) <= MAX_TID:
        raise KrpcError("missing or bad transaction id")
    kind = msg.get(b"y")
    if kind == b"q":
        method = msg.get(b"q")
        args = msg.get(b"a")
        if not isinstance(method, bytes) or not isinstance(args, dict):
            raise KrpcError("query without 'q' or 'a'", tid=tid)
        return Query(tid=tid, method=method, args=args, read_only=msg.get(b"ro") == 1)
    if kind == b"r":
        values = msg.get(b"r")
        if not isinstance(values, dict):
            raise KrpcError("response without 'r'")
        ip = msg.get(b"ip")
        seen: PeerAddr | None = None
        if isinstance(ip, bytes) and len(ip) in (6, 18):
            seen = unpack_addr(ip)
        return Response(tid=tid, values=values, ip=seen)
    if kind == b"e":
        err = msg.get(b"e")
        if (
            not isinstance(err, list)
            or len(err) < 2
            or not isinstance(err[0], int)
            or not isinstance(err[1], bytes)
        ):
            raise KrpcError("error without [code, message]")
        return Error(tid=tid, code=err[0], message=err[1].decode("utf-8", "replace")[:200])
    raise KrpcError("'y' is not q, r or e")


# --------------------------------------------------------------------------- arguments


def get_id(d: dict[bytes, Any], key: bytes = b"id", *, tid: bytes | None = None) -> bytes:
    """A 20-byte id under ``key``."""
    value = d.get(key)
    if not isinstance(value, bytes) or len(value) != ID_LEN:
        raise KrpcError(f"'{key.decode()}' is not 20 bytes", tid=tid)
    return value


def get_token(d: dict[bytes, Any], *, tid: bytes | None = None) -> bytes:
    value = d.get(b"token")
    if not isinstance(value, bytes) or not 0 < len(value) <= MAX_TOKEN:
        raise KrpcError("missing or bad 'token'", tid=tid)
    return value


def get_int(
    d: dict[bytes, Any], key: bytes, *, tid: bytes | None = None, default: int | None = None
) -> int:
    value = d.get(key, default)
    if not isinstance(value, int):
        raise KrpcError(f"'{key.decode()}' is not an integer", tid=tid)
    return value


def nodes_of(values: dict[bytes, Any]) -> list[NodeInfo]:
    """The ``nodes`` (and ``nodes6``) of a response; [] if absent."""
    out: list[NodeInfo] = []
    for key, v6 in ((b"nodes", False), (b"nodes6", True)):
        raw = values.get(key)
        if raw is None:
            continue
        if not isinstance(raw, bytes):
            raise KrpcError(f"'{key.decode()}' is not a string")
        out.extend(unpack_nodes(raw, v6=v6))
    return out
