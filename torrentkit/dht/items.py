"""BEP 44: arbitrary data in the DHT (immutable and mutable items). Pure: no sockets, no clock.

Immutable items are stored under the SHA-1 of their bencoded value; mutable items under the
SHA-1 of the ed25519 public key followed by the salt, and carry a sequence number and a
signature over ``[4:salt<len>:<salt>]3:seqi<seq>e1:v<bencoded value>`` (the salt part only
when the salt is not empty). Values are always handled as their *bencoded bytes, verbatim as
they stood in the message*: decoding and re-encoding is not an identity (a dictionary with
unsorted keys), and both the target and the signature are over those exact bytes.
:func:`raw_value` cuts them out of a datagram.

Limits (docs/limits.md, item 14): ``v`` at most 1,000 bytes bencoded (:data:`MAX_VALUE_SIZE`),
salt at most 64 bytes (:data:`MAX_SALT_SIZE`), ``seq`` within 0..2**63-1. Items live 2 hours
unless put again (:data:`ITEM_LIFETIME`); publishers re-put hourly.

API (what the node wires into its ``get`` / ``put`` handlers and lookups):

- :func:`immutable_target`, :func:`mutable_target`, :func:`signature_buffer`.
- :class:`Item` (frozen): ``value`` (bencoded bytes), and for a mutable item ``public_key``,
  ``salt``, ``seq``, ``sig``; ``target``, ``mutable``, ``decoded()``.
- :func:`make_immutable` and :func:`sign_mutable` (ed25519 from a 32-byte seed, via
  ``cryptography``) build items we publish; :func:`public_key_for` gives a seed's public key.
- :func:`parse_put` validates the arguments of an incoming ``put`` (``a`` dict of the query
  plus the raw ``v``) and returns ``(item, cas)``; :func:`parse_get_response` checks what a
  ``get`` reply carried against the target we asked for (a reply that fails is ignored, the
  BEP's "SHOULD be considered invalid").
- :func:`put_arguments` / :func:`get_response_fields`: the ``a`` of an outgoing ``put`` and
  the item fields of a ``get`` reply (``id``, ``token``, ``nodes`` are the node's).
- :class:`ItemStore`: items by target with expiry, a total cap and a per-source cap;
  ``put(item, now, source=, cas=)`` applies the sequence-number and CAS rules.
- :class:`ItemError` carries the KRPC error code for the reply: 203 (malformed), 205 (``v``
  too big), 206 (bad signature), 207 (salt too big), 301 (CAS mismatch), 302 (sequence
  number not newer than the stored one).

The order of checks follows libtorrent: sizes first, then the signature, then the stored
item's CAS and sequence number. Token checks belong to the node (before :meth:`ItemStore.put`).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from torrentkit import bencoding
from torrentkit.errors import BencodeError, RemoteProtocolError

MAX_VALUE_SIZE = 1000
MAX_SALT_SIZE = 64
MAX_SEQ = 2**63 - 1
#: Seconds an item lives without being put again (the BEP: "MAY expire in 2 hours").
ITEM_LIFETIME = 2 * 3600.0
#: libtorrent's ``max_dht_items``.
MAX_ITEMS = 700
#: Items one source address may hold at once (one address cannot fill the store).
MAX_ITEMS_PER_SOURCE = 50

PROTOCOL_ERROR = 203
MESSAGE_TOO_BIG = 205
INVALID_SIGNATURE = 206
SALT_TOO_BIG = 207
CAS_MISMATCH = 301
SEQ_TOO_OLD = 302


class ItemError(RemoteProtocolError):
    """A ``put`` (or a stored item) that breaks BEP 44; ``code`` is the KRPC error code."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code} {message}")


def immutable_target(value: bytes) -> bytes:
    """The target of an immutable item: SHA-1 of its bencoded value."""
    return hashlib.sha1(value).digest()


def mutable_target(public_key: bytes, salt: bytes = b"") -> bytes:
    """The target of a mutable item: SHA-1 of the public key followed by the salt."""
    return hashlib.sha1(public_key + salt).digest()


def signature_buffer(seq: int, value: bytes, salt: bytes = b"") -> bytes:
    """The bytes a mutable item's signature covers (the BEP's "Signature Verification")."""
    head = b"4:salt%d:%s" % (len(salt), salt) if salt else b""
    return head + b"3:seqi%de1:v" % seq + value


@dataclass(frozen=True, slots=True, kw_only=True)
class Item:
    """One BEP 44 item. ``value`` is the bencoded value, verbatim."""

    value: bytes
    public_key: bytes | None = None
    salt: bytes = b""
    seq: int = 0
    sig: bytes | None = None

    @property
    def mutable(self) -> bool:
        return self.public_key is not None

    @property
    def target(self) -> bytes:
        if self.public_key is None:
            return immutable_target(self.value)
        return mutable_target(self.public_key, self.salt)

    def decoded(self) -> Any:
        """The value as Python data (bytes, int, list, dict)."""
        return bencoding.decode(self.value, bencoding.DATAGRAM_LIMITS)

    def signature_valid(self) -> bool:
        """For a mutable item: whether ``sig`` is the key's signature of seq, value, salt."""
        if self.public_key is None or self.sig is None:
            return False
        return _verify(self.public_key, self.sig, signature_buffer(self.seq, self.value, self.salt))


def _verify(public_key: bytes, sig: bytes, message: bytes) -> bool:
    if len(public_key) != 32 or len(sig) != 64:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(sig, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _check_value(value: bytes) -> None:
    if len(value) > MAX_VALUE_SIZE:
        raise ItemError(MESSAGE_TOO_BIG, f"message (v field) too big: {len(value)} bytes")
    try:
        bencoding.scan(value, bencoding.DATAGRAM_LIMITS)
    except BencodeError as exc:
        raise ItemError(PROTOCOL_ERROR, f"v is not bencoded: {exc}") from None


def _check_mutable_fields(public_key: bytes, salt: bytes, seq: int, sig: bytes) -> None:
    if len(salt) > MAX_SALT_SIZE:
        raise ItemError(SALT_TOO_BIG, f"salt (salt field) too big: {len(salt)} bytes")
    if len(public_key) != 32:
        raise ItemError(PROTOCOL_ERROR, "k must be a 32-byte ed25519 public key")
    if len(sig) != 64:
        raise ItemError(PROTOCOL_ERROR, "sig must be a 64-byte ed25519 signature")
    if not 0 <= seq <= MAX_SEQ:
        raise ItemError(PROTOCOL_ERROR, "seq must be within 0..2**63-1")


# ----------------------------------------------------------------------------- our own items


def make_immutable(value: Any) -> Item:
    """An immutable item holding ``value`` (Python data; bencoded here). ValueError if too big."""
    return Item(value=_encode_value(value))


def _encode_value(value: Any) -> bytes:
    raw = bencoding.encode(value)
    if len(raw) > MAX_VALUE_SIZE:
        raise ValueError(
            f"a DHT item holds at most {MAX_VALUE_SIZE} bencoded bytes, not {len(raw)}"
        )
    return raw


def _private_key(seed: bytes) -> Ed25519PrivateKey:
    if len(seed) != 32:
        raise ValueError(f"an ed25519 seed is 32 bytes, got {len(seed)}")
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_for(seed: bytes) -> bytes:
    """The 32-byte ed25519 public key of a 32-byte private seed."""
    return _private_key(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def sign_mutable(seed: bytes, value: Any, seq: int, salt: bytes = b"") -> Item:
    """A mutable item: ``value`` (Python data) signed with the ed25519 key of ``seed``.

    ValueError when the value, salt or seq break the BEP's limits.
    """
    raw = _encode_value(value)
    if len(salt) > MAX_SALT_SIZE:
        raise ValueError(f"a salt is at most {MAX_SALT_SIZE} bytes, got {len(salt)}")
    if not 0 <= seq <= MAX_SEQ:
        raise ValueError("seq must be within 0..2**63-1")
    key = _private_key(seed)
    sig = key.sign(signature_buffer(seq, raw, salt))
    return Item(value=raw, public_key=public_key_for(seed), salt=salt, seq=seq, sig=sig)


# ------------------------------------------------------------------------------- the wire side


def raw_value(datagram: bytes, container: bytes) -> bytes | None:
    """The verbatim bencoded ``v`` inside the top-level dict ``container`` of a KRPC message.

    ``container`` is ``b"a"`` for a ``put`` query, ``b"r"`` for a ``get`` reply. None when the
    message has no such field; :class:`~torrentkit.errors.BencodeError` when it is malformed.
    """
    outer = bencoding.scan(datagram, bencoding.DATAGRAM_LIMITS)
    span = outer.spans.get(container)
    if span is None or datagram[span[0] : span[0] + 1] != b"d":
        return None
    inner = bencoding.scan(datagram, bencoding.DATAGRAM_LIMITS, start=span[0])
    v = inner.spans.get(b"v")
    return None if v is None else datagram[v[0] : v[1]]


def _bytes_arg(args: dict[bytes, Any], key: bytes) -> bytes | None:
    value = args.get(key)
    if value is None:
        return None
    if not isinstance(value, bytes):
        raise ItemError(PROTOCOL_ERROR, f"{key.decode()} must be a string")
    return value


def _int_arg(args: dict[bytes, Any], key: bytes) -> int | None:
    value = args.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ItemError(PROTOCOL_ERROR, f"{key.decode()} must be an integer")
    return value


def parse_put(args: dict[bytes, Any], value: bytes | None) -> tuple[Item, int | None]:
    """Validate an incoming ``put``: ``args`` is the query's ``a`` dict, ``value`` the raw ``v``.

    Returns the item and the ``cas`` (None when absent, and always None for immutable items).
    Raises :class:`ItemError` with the code to send back. Does not check the token.
    """
    if value is None:
        raise ItemError(PROTOCOL_ERROR, "put without v")
    _check_value(value)
    k = _bytes_arg(args, b"k")
    sig = _bytes_arg(args, b"sig")
    if k is None and sig is None:
        return Item(value=value), None
    salt = _bytes_arg(args, b"salt") or b""
    seq = _int_arg(args, b"seq")
    cas = _int_arg(args, b"cas")
    if k is None or sig is None or seq is None:
        raise ItemError(PROTOCOL_ERROR, "a mutable put needs k, seq and sig")
    _check_mutable_fields(k, salt, seq, sig)
    item = Item(value=value, public_key=k, salt=salt, seq=seq, sig=sig)
    if not item.signature_valid():
        raise ItemError(INVALID_SIGNATURE, "invalid signature")
    return item, cas


def parse_get_response(
    target: bytes, reply: dict[bytes, Any], value: bytes | None, salt: bytes = b""
) -> Item | None:
    """The item a ``get`` reply carries, if it is valid for ``target``; else None.

    ``reply`` is the ``r`` dict, ``value`` the raw ``v`` (:func:`raw_value`), ``salt`` the one
    the asker used to compute a mutable target (replies never carry it). An immutable value
    must hash to the target; a mutable one must carry a key that hashes (with the salt) to the
    target and a valid signature.
    """
    if value is None or len(value) > MAX_VALUE_SIZE:
        return None
    k = reply.get(b"k")
    if k is None:
        return Item(value=value) if immutable_target(value) == target else None
    sig = reply.get(b"sig")
    seq = reply.get(b"seq")
    if not (isinstance(k, bytes) and isinstance(sig, bytes) and isinstance(seq, int)):
        return None
    if isinstance(seq, bool) or not 0 <= seq <= MAX_SEQ or len(salt) > MAX_SALT_SIZE:
        return None
    item = Item(value=value, public_key=k, salt=salt, seq=seq, sig=sig)
    if mutable_target(k, salt) != target or not item.signature_valid():
        return None
    return item


def put_arguments(item: Item, token: bytes, cas: int | None = None) -> dict[bytes, Any]:
    """The ``a`` dict of a ``put`` query for ``item``, less ``id``. ``v`` goes in verbatim."""
    args: dict[bytes, Any] = {b"token": token, b"v": bencoding.Raw(item.value)}
    if item.public_key is not None:
        assert item.sig is not None
        args[b"k"] = item.public_key
        args[b"seq"] = item.seq
        args[b"sig"] = item.sig
        if item.salt:
            args[b"salt"] = item.salt
        if cas is not None:
            args[b"cas"] = cas
    return args


def get_response_fields(item: Item, seq: int | None = None) -> dict[bytes, Any]:
    """The item's fields of a ``get`` reply, less ``id``, ``token`` and ``nodes``.

    ``seq`` is the asker's optional ``seq``: when our item is not newer, only ``seq`` is sent
    (the BEP: ``k``, ``v`` and ``sig`` omitted). The salt is never sent back.
    """
    if item.public_key is None:
        return {b"v": bencoding.Raw(item.value)}
    assert item.sig is not None
    if seq is not None and item.seq <= seq:
        return {b"seq": item.seq}
    return {
        b"k": item.public_key,
        b"seq": item.seq,
        b"sig": item.sig,
        b"v": bencoding.Raw(item.value),
    }


# --------------------------------------------------------------------------------- the store


@dataclass(slots=True)
class _Entry:
    item: Item
    source: str
    expires: float


class ItemStore:
    """Items we hold for others, by target, each expiring ``lifetime`` seconds after its last put.

    At most ``max_items`` in all (when full, the entry that would expire soonest makes room)
    and ``max_per_source`` from one source address (further new items from it are refused
    with 203, ``put`` of items it already holds still refreshes them).
    """

    def __init__(
        self,
        *,
        max_items: int = MAX_ITEMS,
        max_per_source: int = MAX_ITEMS_PER_SOURCE,
        lifetime: float = ITEM_LIFETIME,
    ) -> None:
        self.max_items = max_items
        self.max_per_source = max_per_source
        self.lifetime = lifetime
        # Ordered by last put: the first entry is the one that expires soonest.
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._per_source: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, target: bytes, now: float) -> Item | None:
        entry = self._entries.get(target)
        if entry is None:
            return None
        if entry.expires <= now:
            self._remove(target)
            return None
        return entry.item

    def put(self, item: Item, now: float, *, source: str = "", cas: int | None = None) -> None:
        """Store ``item`` (already validated by :func:`parse_put`) from ``source`` (an IP).

        Raises :class:`ItemError` 301 when ``cas`` is given and differs from the stored
        item's seq, 302 when the stored item's seq is higher (or equal with another value),
        203 when the source already holds its quota of items.
        """
        target = item.target
        self.expire(now)
        entry = self._entries.get(target)
        if entry is not None:
            old = entry.item
            if item.mutable and old.mutable:
                if cas is not None and cas != old.seq:
                    raise ItemError(CAS_MISMATCH, "the CAS mismatched, re-read value and try again")
                if item.seq < old.seq or (item.seq == old.seq and item.value != old.value):
                    raise ItemError(SEQ_TOO_OLD, "sequence number less than current")
            # The same immutable value, or a newer mutable one: replace and refresh.
            entry.item = item
            entry.expires = now + self.lifetime
            self._entries.move_to_end(target)
            return
        if self._per_source.get(source, 0) >= self.max_per_source:
            raise ItemError(PROTOCOL_ERROR, "too many items from this address")
        while len(self._entries) >= self.max_items:
            self._remove(next(iter(self._entries)))
        self._entries[target] = _Entry(item=item, source=source, expires=now + self.lifetime)
        self._per_source[source] = self._per_source.get(source, 0) + 1

    def expire(self, now: float) -> None:
        """Drop every item whose lifetime has ended."""
        while self._entries:
            target, entry = next(iter(self._entries.items()))
            if entry.expires > now:
                break
            self._remove(target)

    def targets(self) -> list[bytes]:
        return list(self._entries)

    def _remove(self, target: bytes) -> None:
        entry = self._entries.pop(target)
        left = self._per_source[entry.source] - 1
        if left:
            self._per_source[entry.source] = left
        else:
            del self._per_source[entry.source]
