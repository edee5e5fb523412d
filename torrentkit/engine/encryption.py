"""Encrypted peer connections (MSE/PE): the trio side of :mod:`torrentkit.wire.mse`.

- :class:`RC4Stream` wraps a stream once RC4 was chosen: it encrypts what is sent and
  decrypts what is received, beneath the peer wire codec, which never knows (the codec and
  :class:`~torrentkit.engine.peer.PeerLink` run unchanged on top of it).
- :func:`accept_incoming` serves one listen port for both kinds: the first bytes tell them
  apart (19 + "BitTorrent protocol" is a plaintext handshake, anything else an encryption
  handshake) and an encrypted one names its torrent by HASH('req2', info-hash), looked up
  among those the session serves.
- :func:`dial_peer` dials with the torrent's :class:`PeerEncryption` policy:

  ``prefer`` (the default) dials with an encrypted handshake that offers RC4 and plaintext
  for what follows; when a peer refuses it (closes, resets, breaks the exchange or stalls)
  it is dialled again at once in plaintext, and remembered: next time it is dialled in
  plaintext first (and a refusal there flips it back), as libtorrent remembers per peer.
  As the dialled side it takes plaintext handshakes and encrypted ones, and after an
  encrypted handshake picks plaintext when the peer offers it, else RC4 -- libtorrent's
  default (``prefer_rc4`` off): the handshake hides what we talk about, the data path
  costs nothing more, and a peer that wants RC4 gets it.
  ``require`` offers and accepts RC4 only and never talks plaintext.
  ``disable`` only talks plaintext: it never encrypts and refuses encrypted handshakes.

Every bound (pads, search windows, the one time-out for the whole exchange) is in
docs/limits.md, "Encryption handshake"; a failed incoming handshake is closed without a word.

:mod:`torrentkit.wire.mse` is imported by the first encrypted handshake, sent or received: a
run with encryption disabled (or whose peers all talk plaintext to it) never loads it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final, Literal, get_args

import trio

from torrentkit.errors import HandshakeRefused, RemoteProtocolError
from torrentkit.ids import PeerAddr
from torrentkit.net import Network, close_quietly, read_handshake
from torrentkit.wire.codec import HANDSHAKE_PREFIX
from torrentkit.wire.connection import PeerConnection
from torrentkit.wire.events import Handshake

if TYPE_CHECKING:
    from torrentkit.wire.mse import RC4, Initiator, MSEResult, Responder

Encryption = Literal["prefer", "require", "disable"]
ENCRYPTION_POLICIES: Final[tuple[str, ...]] = get_args(Encryption)
#: What a connection ended up with (``peer_connected``'s ``encryption``): RC4 after an
#: encrypted handshake, plaintext after an encrypted handshake, or a plaintext handshake.
Kind = Literal["rc4", "handshake", "none"]
#: Remember at most this many peers that want plaintext first, per torrent.
PLAIN_PEERS_MAX: Final = 4096
#: A --peer-only download stops once every address refused our handshake this many times
#: in a row (docs/limits.md).
REFUSALS_TO_GIVE_UP: Final = 2
#: Bytes read at a time during the handshakes.
_READ: Final = 4096


class RC4Stream(trio.abc.Stream):
    """``inner`` with RC4 on both directions (a peer wire stream after MSE chose RC4)."""

    def __init__(self, inner: trio.abc.Stream, encrypt: RC4, decrypt: RC4) -> None:
        self.inner = inner
        self._encrypt = encrypt.crypt
        self._decrypt = decrypt.crypt

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(self._encrypt(data))

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        data = await self.inner.receive_some(max_bytes)
        return self._decrypt(data) if data else b""

    async def aclose(self) -> None:
        await self.inner.aclose()


def _wrap(stream: trio.abc.Stream, result: MSEResult) -> tuple[trio.abc.Stream, Kind]:
    if result.encrypt is None or result.decrypt is None:
        return stream, "handshake"  # plaintext after the handshake
    return RC4Stream(stream, result.encrypt, result.decrypt), "rc4"


async def _exchange(
    stream: trio.abc.Stream, side: Initiator | Responder, first: bytes = b""
) -> MSEResult:
    """Run one side of the encryption handshake over ``stream`` until it is done."""
    if first:
        side.receive_data(first)
    while True:
        out = side.data_to_send()
        if out:
            await stream.send_all(out)
        if side.result is not None:
            return side.result
        try:
            data = await stream.receive_some(_READ)
        except trio.BrokenResourceError:
            data = b""
        if not data:
            raise HandshakeRefused("the peer closed the connection during the encrypted handshake")
        side.receive_data(data)


def _select_rc4(provide: int) -> int:
    from torrentkit.wire.mse import CRYPTO_RC4

    return CRYPTO_RC4 if provide & CRYPTO_RC4 else 0


def _select_any(provide: int) -> int:
    from torrentkit.wire.mse import CRYPTO_PLAINTEXT, CRYPTO_RC4

    return CRYPTO_PLAINTEXT if provide & CRYPTO_PLAINTEXT else CRYPTO_RC4


async def _sniff(stream: trio.abc.Stream) -> bytes:
    """Read until the first bytes show whether this is a plaintext BitTorrent handshake
    (they are its 20-byte prefix) or not (they left it); return them."""
    head = b""
    while len(head) < len(HANDSHAKE_PREFIX) and HANDSHAKE_PREFIX.startswith(head):
        data = await stream.receive_some(_READ)
        if not data:
            raise HandshakeRefused("the peer closed the connection before its handshake")
        head += data
    return head


async def accept_incoming(
    stream: trio.abc.Stream,
    *,
    policy: Encryption,
    find_skey: Callable[[bytes], bytes | None],
    make_conn: Callable[[bytes | None], PeerConnection],
) -> tuple[trio.abc.Stream, PeerConnection, Handshake, Kind]:
    """Read an incoming connection's handshake, plaintext or encrypted. ``find_skey``: the
    info-hash served under a req2 hash, if any; ``make_conn(info_hash)``: the connection
    that reads the peer's BitTorrent handshake (None: any torrent we serve). Returns the
    stream to use from now on (wrapped when RC4 was chosen) and what was chosen. Raises
    RemoteProtocolError (MSEError, HandshakeRefused, ...) for anything else; bound it with a
    time-out."""
    head = await _sniff(stream)
    kind: Kind = "none"
    if head.startswith(HANDSHAKE_PREFIX):
        if policy == "require":
            raise RemoteProtocolError("a plaintext handshake, but encryption is required")
        conn = make_conn(None)
    else:
        if policy == "disable":
            raise RemoteProtocolError("an encrypted handshake, but encryption is disabled")
        from torrentkit.wire.mse import Responder

        select = _select_rc4 if policy == "require" else _select_any
        result = await _exchange(stream, Responder(find_skey, select), head)
        stream, kind = _wrap(stream, result)
        conn = make_conn(result.skey)
        head = result.payload
    conn.receive_data(head)
    return stream, conn, await read_handshake(stream, conn), kind


class ServedHashes:
    """HASH('req2', info-hash) of the torrents a session serves, each hashed once."""

    def __init__(self) -> None:
        self._req2: dict[bytes, bytes] = {}

    def find(self, req2: bytes, served: Iterable[bytes]) -> bytes | None:
        from torrentkit.wire.mse import req2_hash

        memo = self._req2
        if len(memo) > 4096:
            memo.clear()
        for info_hash in served:
            h = memo.get(info_hash)
            if h is None:
                h = memo[info_hash] = req2_hash(info_hash)
            if h == req2:
                return info_hash
        return None


class PeerEncryption:
    """A torrent's encryption policy for the peers it dials, and what it learnt per peer:
    who wants plaintext first (``prefer``) and who refused our handshakes."""

    def __init__(self, policy: Encryption = "prefer") -> None:
        if policy not in ENCRYPTION_POLICIES:
            raise ValueError(f"encryption: prefer, require or disable, got {policy!r}")
        self.policy: Encryption = policy
        self._plain_first: dict[PeerAddr, None] = {}
        self._refusals: dict[PeerAddr, tuple[int, str]] = {}

    @property
    def provide(self) -> int:
        """crypto_provide of our encrypted handshakes: RC4 only under ``require``, else RC4
        or plaintext."""
        from torrentkit.wire.mse import CRYPTO_PLAINTEXT, CRYPTO_RC4

        return CRYPTO_RC4 if self.policy == "require" else CRYPTO_RC4 | CRYPTO_PLAINTEXT

    def encrypt_first(self, addr: PeerAddr) -> bool:
        if self.policy == "prefer":
            return addr not in self._plain_first
        return self.policy == "require"

    def flip(self, addr: PeerAddr) -> None:
        """``prefer``: a refused attempt makes the other kind this peer's first try."""
        if addr in self._plain_first:
            del self._plain_first[addr]
            return
        self._plain_first[addr] = None
        if len(self._plain_first) > PLAIN_PEERS_MAX:
            del self._plain_first[next(iter(self._plain_first))]

    def refused(self, addr: PeerAddr, why: str) -> None:
        """Every attempt of one dial was refused (counted for :meth:`all_refused`)."""
        count = self._refusals.get(addr, (0, ""))[0] + 1
        self._refusals.pop(addr, None)
        self._refusals[addr] = (count, why)
        if len(self._refusals) > PLAIN_PEERS_MAX:
            del self._refusals[next(iter(self._refusals))]

    def connected(self, addr: PeerAddr) -> None:
        self._refusals.pop(addr, None)

    def all_refused(self, addrs: Iterable[PeerAddr]) -> str | None:
        """When every one of ``addrs`` (at least one) refused our handshake
        REFUSALS_TO_GIVE_UP times in a row: one line saying why; else None."""
        why = None
        for addr in addrs:
            count, why = self._refusals.get(addr, (0, ""))
            if count < REFUSALS_TO_GIVE_UP:
                return None
        if why is None:
            return None
        hint = {
            "require": "encryption is required and the peers may not accept it",
            "disable": "encryption is disabled and the peers may require it",
            "prefer": "they refused both encrypted and plaintext handshakes",
        }[self.policy]
        return f"every peer refused our handshake ({hint}); last: {why}"


#: What makes an attempt a refusal (see :func:`_attempt`); an encrypted one adds MSEError.
_REFUSALS: Final = (HandshakeRefused, trio.TooSlowError, trio.BrokenResourceError)


async def _attempt(
    network: Network,
    addr: PeerAddr,
    conn: PeerConnection,
    handshake: Handshake,
    *,
    encrypt: bool,
    encryption: PeerEncryption,
    connect_timeout: float,
    handshake_timeout: float,
) -> tuple[trio.abc.Stream, Handshake, Kind]:
    """One connection: connect (errors as they come), then both handshakes (a refusal --
    the peer closed, reset, stalled or broke the encryption exchange -- is HandshakeRefused
    naming the kind; anything else, e.g. HandshakeRejected, as it comes)."""
    refusals: tuple[type[BaseException], ...] = _REFUSALS
    with trio.fail_after(connect_timeout):
        stream = await network.connect_tcp(addr)
    try:
        with trio.fail_after(handshake_timeout):
            ours = conn.send(handshake)
            if encrypt:
                from torrentkit.wire.mse import Initiator, MSEError

                refusals = (*_REFUSALS, MSEError)  # only an encrypted handshake raises it
                # Our BitTorrent handshake rides in the encryption handshake (IA).
                initiator = Initiator(
                    handshake.info_hash, provide=encryption.provide, initial_payload=ours
                )
                result = await _exchange(stream, initiator)
                conn.receive_data(result.payload)
                stream, kind = _wrap(stream, result)
            else:
                await stream.send_all(ours)
                kind = "none"
            return stream, await read_handshake(stream, conn), kind
    except refusals as exc:
        await close_quietly(stream)
        what = "encrypted" if encrypt else "plaintext"
        raise HandshakeRefused(f"{addr} refused our {what} handshake: {_why(exc)}") from exc
    except BaseException:
        await close_quietly(stream)
        raise


def _why(exc: BaseException) -> str:
    if isinstance(exc, HandshakeRefused):
        return "it closed the connection"
    if isinstance(exc, trio.TooSlowError):
        return "no answer in time"
    if isinstance(exc, trio.BrokenResourceError):
        return "it reset the connection"
    return str(exc)


async def dial_peer(
    network: Network,
    addr: PeerAddr,
    make_conn: Callable[[], PeerConnection],
    handshake: Handshake,
    encryption: PeerEncryption,
    *,
    connect_timeout: float,
    handshake_timeout: float,
) -> tuple[trio.abc.Stream, PeerConnection, Handshake, Kind]:
    """Connect to ``addr`` and exchange handshakes under the torrent's encryption policy
    (see the module docstring). Raises what the connect raised (OSError, TooSlowError),
    HandshakeRejected, or HandshakeRefused when the peer refused every attempt (counted for
    :meth:`PeerEncryption.all_refused`). Each attempt has its own time-outs."""
    encrypt = encryption.encrypt_first(addr)
    retry = encryption.policy == "prefer"
    while True:
        conn = make_conn()
        try:
            stream, hs, kind = await _attempt(
                network,
                addr,
                conn,
                handshake,
                encrypt=encrypt,
                encryption=encryption,
                connect_timeout=connect_timeout,
                handshake_timeout=handshake_timeout,
            )
        except HandshakeRefused as exc:
            if encryption.policy == "prefer":
                encryption.flip(addr)
            if not retry:
                encryption.refused(addr, str(exc))
                raise
            retry = False
            encrypt = not encrypt
            continue
        encryption.connected(addr)
        return stream, conn, hs, kind
