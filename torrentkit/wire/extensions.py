"""BEP 10 extension protocol: the reserved bit, the extended handshake, extension id maps.

Extension ids are local to each side: in its extended handshake each peer says, in ``m``,
which id *it* wants to receive each extension under. So a connection keeps two maps --
ours (incoming message id -> name) and the peer's (name -> id to send with) -- in an
:class:`ExtensionIds`. ``m`` is additive: a later handshake adds or changes names, and an id
of 0 switches one off.

Adding an extension (BEP 9 ``ut_metadata`` next) takes: a name constant here, an entry in the
``m`` we send (see :func:`assign_ids`), and a handler in the engine for
``Extended`` events whose ``conn.extension_name(ev.ext_id)`` is that name. Its payload parsing
belongs in its own module next to this one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from torrentkit import bencoding
from torrentkit.errors import BencodeError, RemoteProtocolError
from torrentkit.wire.events import EXTENSION_BYTE, EXTENSION_MASK, ExtendedHandshake

#: Extension message id 0 is the extended handshake itself.
HANDSHAKE_ID: Final = 0

UT_METADATA: Final = "ut_metadata"  # BEP 9
UT_PEX: Final = "ut_pex"  # BEP 11

#: Longest client name (``v``) we keep; the rest is cut off.
MAX_CLIENT_NAME: Final = 256


#: reserved[7] & 0x01 (BEP 5): the sender runs a mainline DHT node and may send PORT.
DHT_BYTE: Final = 7
DHT_MASK: Final = 0x01


def supports_dht(reserved: bytes) -> bool:
    """Whether handshake reserved bytes advertise a DHT node (reserved[7] & 0x01)."""
    return len(reserved) == 8 and bool(reserved[DHT_BYTE] & DHT_MASK)


def with_dht_bit(reserved: bytes) -> bytes:
    """``reserved`` with the DHT bit set."""
    out = bytearray(reserved)
    out[DHT_BYTE] |= DHT_MASK
    return bytes(out)


def supports_extension_protocol(reserved: bytes) -> bool:
    """Whether handshake reserved bytes advertise BEP 10 (reserved[5] & 0x10)."""
    return len(reserved) == 8 and bool(reserved[EXTENSION_BYTE] & EXTENSION_MASK)


def assign_ids(names: Iterable[str]) -> dict[str, int]:
    """Our ``m``: stable ids 1, 2, ... for the extensions we implement, in the order given."""
    return {name: i for i, name in enumerate(names, start=1)}


class ExtensionIds:
    """Both directions' extension id maps for one connection."""

    __slots__ = ("_our_names", "_their_ids")

    def __init__(self) -> None:
        self._our_names: dict[int, str] = {}
        self._their_ids: dict[str, int] = {}

    def update_ours(self, m: Mapping[str, int]) -> None:
        """Record the ``m`` we sent (additive, 0 disables)."""
        for name, ext_id in m.items():
            for old_id, old_name in list(self._our_names.items()):
                if old_name == name:
                    del self._our_names[old_id]
            if ext_id:
                self._our_names[ext_id] = name

    def update_theirs(self, m: Mapping[str, int]) -> None:
        """Record the ``m`` the peer sent (additive, 0 disables)."""
        for name, ext_id in m.items():
            if ext_id:
                self._their_ids[name] = ext_id
            else:
                self._their_ids.pop(name, None)

    def our_name(self, ext_id: int) -> str | None:
        """The extension a received message id stands for (None: not one we offered)."""
        return self._our_names.get(ext_id)

    def their_id(self, name: str) -> int | None:
        """The id to send extension ``name`` with (None: the peer does not support it)."""
        return self._their_ids.get(name)

    def their_ids(self) -> frozenset[int]:
        return frozenset(self._their_ids.values())


def encode_extended_handshake(event: ExtendedHandshake) -> bytes:
    """The bencoded dictionary (without the message header or the id byte)."""
    d: dict[bytes, Any] = {k: v for k, v in event.raw.items() if isinstance(k, bytes)}
    d[b"m"] = {name.encode(): ext_id for name, ext_id in event.m.items()}
    if event.v is not None:
        d[b"v"] = event.v.encode()
    if event.reqq is not None:
        d[b"reqq"] = event.reqq
    if event.yourip is not None:
        d[b"yourip"] = event.yourip
    if event.p is not None:
        d[b"p"] = event.p
    if event.metadata_size is not None:
        d[b"metadata_size"] = event.metadata_size
    return bencoding.encode(d)


def decode_dict(payload: bytes, what: str) -> dict[bytes, Any]:
    """An extension message's bencoded dictionary; RemoteProtocolError if it is not one."""
    try:
        d = bencoding.decode(payload, bencoding.MESSAGE_LIMITS)
    except BencodeError as exc:
        raise RemoteProtocolError(f"{what} is not valid bencode: {exc}") from None
    if not isinstance(d, dict):
        raise RemoteProtocolError(f"{what} is not a dictionary")
    return d


def parse_extended_handshake(payload: bytes) -> ExtendedHandshake:
    """Parse an extended handshake dictionary; RemoteProtocolError for anything malformed.

    Unknown keys are ignored (kept in ``raw``), and so are ``m`` entries whose name is not
    UTF-8 (no extension we could implement has such a name). Known keys with the wrong type
    or an impossible value are errors. ``v`` is decoded leniently (invalid UTF-8 replaced)
    and cut to :data:`MAX_CLIENT_NAME` characters; ``p`` = 0 reads as "not given".
    """
    d = decode_dict(payload, "extended handshake")

    m: dict[str, int] = {}
    raw_m = d.get(b"m", {})
    if not isinstance(raw_m, dict):
        raise RemoteProtocolError("extended handshake: 'm' is not a dictionary")
    for raw_name, ext_id in raw_m.items():
        if type(ext_id) is not int or not 0 <= ext_id <= 255:
            raise RemoteProtocolError(f"extended handshake: bad id {ext_id!r} in 'm'")
        try:
            name = raw_name.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if name:
            m[name] = ext_id

    v = d.get(b"v")
    if v is not None:
        if not isinstance(v, bytes):
            raise RemoteProtocolError("extended handshake: 'v' is not a string")
        v = v.decode("utf-8", "replace")[:MAX_CLIENT_NAME]

    reqq = d.get(b"reqq")
    if reqq is not None and (type(reqq) is not int or reqq < 1):
        raise RemoteProtocolError(f"extended handshake: bad 'reqq' {reqq!r}")

    yourip = d.get(b"yourip")
    if yourip is not None and (not isinstance(yourip, bytes) or len(yourip) not in (4, 16)):
        raise RemoteProtocolError("extended handshake: 'yourip' is not 4 or 16 bytes")

    p = d.get(b"p")
    if p is not None:
        if type(p) is not int or not 0 <= p <= 0xFFFF:
            raise RemoteProtocolError(f"extended handshake: bad port 'p' {p!r}")
        p = p or None

    metadata_size = d.get(b"metadata_size")
    if metadata_size is not None and (type(metadata_size) is not int or metadata_size < 0):
        raise RemoteProtocolError(f"extended handshake: bad 'metadata_size' {metadata_size!r}")

    return ExtendedHandshake(
        m=m, v=v, reqq=reqq, yourip=yourip, p=p, metadata_size=metadata_size, raw=d
    )
