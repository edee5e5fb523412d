"""Message Stream Encryption (MSE/PE), sans-IO: the handshake that hides a peer wire stream.

The scheme is Vuze's "Message Stream Encryption", as libtorrent, Transmission and aria2 speak
it (docs/design.md, "Encryption"). A dials B; SKEY is the torrent's info-hash::

    1 A->B  Ya, PadA
    2 B->A  Yb, PadB
    3 A->B  HASH('req1', S), HASH('req2', SKEY) xor HASH('req3', S),
            ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA)), ENCRYPT(IA)
    4 B->A  ENCRYPT(VC, crypto_select, len(PadD), PadD), ENCRYPT2(payload)
    5 A->B  ENCRYPT2(payload)

Ya / Yb are 768-bit Diffie-Hellman public keys (G = 2, the 768-bit prime ``P``), 96 bytes
big-endian; S is the shared secret, also 96 bytes. HASH is SHA-1. ENCRYPT is RC4 keyed with
HASH('keyA', S, SKEY) from A to B and HASH('keyB', S, SKEY) from B to A, the first 1,024
keystream bytes discarded. VC is 8 zero bytes. crypto_provide / crypto_select are 32-bit
fields: 0x01 plaintext, 0x02 RC4; ENCRYPT2 is RC4 when RC4 was selected, else nothing (the
handshake itself, IA included, is always encrypted). IA is A's initial payload (we put our
BitTorrent handshake there, as libtorrent does).

Neither side knows the length of the other's random pad, so each *synchronises*: B searches
the bytes after Ya for HASH('req1', S), A searches the bytes after Yb for ENCRYPT(VC). The
search windows and every other bound are in docs/limits.md ("Encryption handshake"):
pads of at most 512 bytes, a search of at most 512 + 20 (B) or 512 + 8 (A) bytes, an IA of
at most ``MAX_IA`` bytes. A public key < 2 or >= P-1 is refused (it would make S guessable).

:class:`Initiator` and :class:`Responder` take bytes in (``receive_data``) and give bytes to
send (``data_to_send``); randomness (the private key and the pad) can be injected for tests.
When ``result`` is set, the handshake is over: it holds the ciphers to use from then on (or
none, plaintext) and the payload bytes that followed the handshake, already decrypted. Any
rule broken raises :class:`MSEError` (a RemoteProtocolError) naming what; the driver drops
the connection and answers nothing, so a stranger learns nothing about what we serve.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from torrentkit.errors import LocalProtocolError, RemoteProtocolError

#: The 768-bit MODP prime of the specification (RFC 2409's first Oakley group).
P: Final = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A63A36210000000000090563",
    16,
)
G: Final = 2
KEY_BYTES: Final = 96
#: Private keys are 160 random bits (the specification's recommendation).
PRIVATE_BITS: Final = 160
VC: Final = bytes(8)
CRYPTO_PLAINTEXT: Final = 0x01
CRYPTO_RC4: Final = 0x02
#: RC4 keystream bytes thrown away before the first byte is encrypted.
RC4_DISCARD: Final = 1024
#: PadA, PadB, PadC and PadD: at most this long (docs/limits.md).
MAX_PAD: Final = 512
#: B finds HASH('req1', S) within this many bytes after Ya (PadA + the hash).
REQ1_WINDOW: Final = MAX_PAD + 20
#: A finds ENCRYPT(VC) within this many bytes after Yb (PadB + VC).
VC_WINDOW: Final = MAX_PAD + 8
#: The initial payload A may send inside step 3 (a handshake is 68 bytes; docs/limits.md).
MAX_IA: Final = 1024


class MSEFailure(enum.Enum):
    """Why an encryption handshake failed (the driver words it; the peer hears nothing)."""

    BAD_KEY = "bad_key"  # a public key < 2 or >= P-1
    NO_SYNC = "no_sync"  # req1 / VC not found within the search window
    UNKNOWN_TORRENT = "unknown_torrent"  # req2 names no torrent we serve
    BAD_VC = "bad_vc"  # the decrypted verification constant is not zeros
    BAD_PAD = "bad_pad"  # a pad length over 512
    BAD_PAYLOAD = "bad_payload"  # len(IA) over MAX_IA
    NO_COMMON_METHOD = "no_common_method"  # crypto_provide / select fits our policy nowhere


class MSEError(RemoteProtocolError):
    """The peer's encryption handshake broke a rule; ``reason`` says which."""

    def __init__(self, reason: MSEFailure, message: str) -> None:
        self.reason = reason
        super().__init__(message)


def sha1(*parts: bytes) -> bytes:
    h = hashlib.sha1()
    for part in parts:
        h.update(part)
    return h.digest()


def req2_hash(skey: bytes) -> bytes:
    """HASH('req2', SKEY): how B recognises the torrent A wants (a session keeps these)."""
    return sha1(b"req2", skey)


class RC4:
    """One direction's keystream (``cryptography``'s ARC4), the first 1,024 bytes dropped."""

    __slots__ = ("_ctx",)

    def __init__(self, key: bytes) -> None:
        # Imported on the first RC4 stream: ~11 ms of CPU that a process whose connections
        # are all plaintext (--encryption disable, or peers that never offer MSE) never pays.
        from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4
        from cryptography.hazmat.primitives.ciphers import Cipher

        self._ctx = Cipher(ARC4(key), mode=None).encryptor()
        self._ctx.update(bytes(RC4_DISCARD))

    def crypt(self, data: bytes | bytearray | memoryview) -> bytes:
        """Encrypt or decrypt (the same thing) the next ``len(data)`` bytes of the stream."""
        return self._ctx.update(data)


def public_key(private: int) -> bytes:
    return pow(G, private, P).to_bytes(KEY_BYTES, "big")


def check_public_key(data: bytes) -> int:
    """The peer's public key as an int; MSEError unless 2 <= Y < P-1."""
    y = int.from_bytes(data, "big")
    if not 2 <= y < P - 1:
        raise MSEError(MSEFailure.BAD_KEY, "the peer's Diffie-Hellman key is degenerate")
    return y


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def _random_pad(length: int | None) -> bytes:
    n = secrets.randbelow(MAX_PAD + 1) if length is None else length
    if not 0 <= n <= MAX_PAD:
        raise LocalProtocolError(f"pad length {n} is not 0-{MAX_PAD}")
    return secrets.token_bytes(n)


def _private(private: int | None) -> int:
    if private is None:
        return secrets.randbits(PRIVATE_BITS) | (1 << (PRIVATE_BITS - 1))
    if not 1 < private < P - 1:
        raise LocalProtocolError("private key out of range")
    return private


def _method_ok(bits: int) -> bool:
    return bits in (CRYPTO_PLAINTEXT, CRYPTO_RC4)


@dataclass(frozen=True, slots=True)
class MSEResult:
    """The handshake is done. ``method``: CRYPTO_RC4 or CRYPTO_PLAINTEXT. ``encrypt`` /
    ``decrypt``: the ciphers for everything sent / received from now on (None: plaintext).
    ``payload``: what arrived after the handshake, decrypted -- on B's side IA first. ``skey``:
    the info-hash the stream is for."""

    method: int
    skey: bytes
    encrypt: RC4 | None
    decrypt: RC4 | None
    payload: bytes


class _Side:
    def __init__(self, private: int | None, pad_length: int | None) -> None:
        self._x = _private(private)
        self._out = bytearray(public_key(self._x))
        self._out += _random_pad(pad_length)
        self._buf = bytearray()
        self._secret = b""
        self._synced = False
        self._searched = 0  # bytes after the peer's key already searched
        self.result: MSEResult | None = None

    def data_to_send(self) -> bytes:
        """The bytes to write now (then forgotten)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    @property
    def done(self) -> bool:
        return self.result is not None

    def _key_in(self, data: bytes | bytearray | memoryview) -> bool:
        """Buffer ``data``; True once the peer's public key is in (S computed, the key
        removed from the buffer, :meth:`_on_secret` called the first time)."""
        if self.result is not None:
            raise LocalProtocolError("the handshake is over: use the result's ciphers")
        self._buf += data
        if self._secret:
            return True
        if len(self._buf) < KEY_BYTES:
            return False
        y = check_public_key(bytes(self._buf[:KEY_BYTES]))
        del self._buf[:KEY_BYTES]
        self._secret = pow(y, self._x, P).to_bytes(KEY_BYTES, "big")
        self._on_secret()
        return True

    def _on_secret(self) -> None:
        raise NotImplementedError

    def _synchronised(self, marker: bytes, window: int) -> bool:
        """Search the bytes after the peer's key for ``marker``, which must end within
        ``window`` bytes (docs/limits.md); True once found (the buffer then starts after it)."""
        if self._synced:
            return True
        buf, n = self._buf, len(marker)
        at = buf.find(marker, max(0, self._searched - n + 1))
        if at < 0 or at + n > window:
            if len(buf) >= window:
                raise MSEError(MSEFailure.NO_SYNC, f"not synchronised within {window} bytes")
            self._searched = len(buf)
            return False
        del buf[: at + n]
        self._synced = True
        return True

    def _finish(self, method: int, skey: bytes, enc: RC4, dec: RC4, head: bytes) -> None:
        """Done: ``head`` (already decrypted) and the rest of the buffer are the payload."""
        rest = bytes(self._buf)
        self._buf.clear()
        rc4 = method == CRYPTO_RC4
        self.result = MSEResult(
            method=method,
            skey=skey,
            encrypt=enc if rc4 else None,
            decrypt=dec if rc4 else None,
            payload=head + (dec.crypt(rest) if rc4 else rest),
        )


class Initiator(_Side):
    """Side A: we dialled and want torrent ``skey``. ``provide``: CRYPTO_RC4 and/or
    CRYPTO_PLAINTEXT (what we accept after the handshake); ``initial_payload``: IA, sent
    encrypted inside the handshake (our BitTorrent handshake)."""

    def __init__(
        self,
        skey: bytes,
        *,
        provide: int = CRYPTO_RC4 | CRYPTO_PLAINTEXT,
        initial_payload: bytes = b"",
        private: int | None = None,
        pad_length: int | None = None,
    ) -> None:
        if len(skey) != 20:
            raise LocalProtocolError("skey must be 20 bytes")
        if not provide or provide & ~(CRYPTO_RC4 | CRYPTO_PLAINTEXT):
            raise LocalProtocolError(f"bad crypto_provide {provide:#x}")
        if len(initial_payload) > MAX_IA:
            raise LocalProtocolError("initial payload too long")
        super().__init__(private, pad_length)
        self.skey = bytes(skey)
        self.provide = provide
        self._ia = bytes(initial_payload)
        self._enc: RC4 | None = None
        self._dec: RC4 | None = None
        self._enc_vc = b""
        self._select_fields: tuple[int, int] | None = None  # crypto_select, len(PadD)

    def _on_secret(self) -> None:
        s, skey = self._secret, self.skey
        self._enc = RC4(sha1(b"keyA", s, skey))
        self._dec = RC4(sha1(b"keyB", s, skey))
        self._enc_vc = self._dec.crypt(VC)  # B's VC as it will appear on the wire
        self._out += sha1(b"req1", s)
        self._out += _xor(sha1(b"req2", skey), sha1(b"req3", s))
        self._out += self._enc.crypt(
            VC
            + self.provide.to_bytes(4, "big")
            + (0).to_bytes(2, "big")  # len(PadC): we send none
            + len(self._ia).to_bytes(2, "big")
            + self._ia
        )

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes from B; raises MSEError when they break the handshake."""
        if not self._key_in(data) or not self._synchronised(self._enc_vc, VC_WINDOW):
            return
        buf = self._buf
        assert self._dec is not None and self._enc is not None
        if self._select_fields is None:
            if len(buf) < 6:
                return
            fields = self._dec.crypt(bytes(buf[:6]))
            del buf[:6]
            select = int.from_bytes(fields[:4], "big")
            pad_len = int.from_bytes(fields[4:6], "big")
            if not _method_ok(select) or not select & self.provide:
                raise MSEError(
                    MSEFailure.NO_COMMON_METHOD,
                    f"the peer selected crypto {select:#x}; we provided {self.provide:#x}",
                )
            if pad_len > MAX_PAD:
                raise MSEError(MSEFailure.BAD_PAD, f"PadD of {pad_len} bytes (at most {MAX_PAD})")
            self._select_fields = (select, pad_len)
        select, pad_len = self._select_fields
        if len(buf) < pad_len:
            return
        self._dec.crypt(bytes(buf[:pad_len]))
        del buf[:pad_len]
        self._finish(select, self.skey, self._enc, self._dec, b"")


class Responder(_Side):
    """Side B: a peer dialled us. ``find_skey(req2)``: the info-hash whose HASH('req2', ...)
    this is, if we serve it. ``select(provide)``: the method we pick from the peer's
    crypto_provide (CRYPTO_RC4 or CRYPTO_PLAINTEXT), or 0 to refuse."""

    def __init__(
        self,
        find_skey: Callable[[bytes], bytes | None],
        select: Callable[[int], int],
        *,
        private: int | None = None,
        pad_length: int | None = None,
    ) -> None:
        super().__init__(private, pad_length)
        self._pending_out = bytes(self._out)  # Yb + PadB: sent once Ya is in
        self._out.clear()
        self._find = find_skey
        self._select = select
        self._req1 = b""
        self._dec: RC4 | None = None
        self._enc: RC4 | None = None
        self._skey = b""
        self._method = 0  # chosen once VC .. len(PadC) is in
        self._pad_c = -1
        self._ia_len = -1

    def _on_secret(self) -> None:
        self._out += self._pending_out
        self._req1 = sha1(b"req1", self._secret)

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes from A; raises MSEError when they break the handshake."""
        if not self._key_in(data) or not self._synchronised(self._req1, REQ1_WINDOW):
            return
        buf = self._buf
        if self._dec is None:
            if len(buf) < 20:
                return
            req2 = _xor(bytes(buf[:20]), sha1(b"req3", self._secret))
            del buf[:20]
            skey = self._find(req2)
            if skey is None:
                raise MSEError(MSEFailure.UNKNOWN_TORRENT, "req2 names no torrent we serve")
            self._skey = skey
            self._dec = RC4(sha1(b"keyA", self._secret, skey))
            self._enc = RC4(sha1(b"keyB", self._secret, skey))
        if not self._method:
            if len(buf) < 14:
                return
            fields = self._dec.crypt(bytes(buf[:14]))
            del buf[:14]
            if fields[:8] != VC:
                raise MSEError(MSEFailure.BAD_VC, "the verification constant is wrong")
            pad_c = int.from_bytes(fields[12:14], "big")
            if pad_c > MAX_PAD:
                raise MSEError(MSEFailure.BAD_PAD, f"PadC of {pad_c} bytes (at most {MAX_PAD})")
            provide = int.from_bytes(fields[8:12], "big")
            method = self._select(provide)
            if not _method_ok(method) or not method & provide:
                raise MSEError(
                    MSEFailure.NO_COMMON_METHOD, f"no crypto method we allow in {provide:#x}"
                )
            self._method = method
            self._pad_c = pad_c
        if self._ia_len < 0:
            if len(buf) < self._pad_c + 2:
                return
            tail = self._dec.crypt(bytes(buf[: self._pad_c + 2]))
            del buf[: self._pad_c + 2]
            self._ia_len = int.from_bytes(tail[-2:], "big")
            if self._ia_len > MAX_IA:
                raise MSEError(
                    MSEFailure.BAD_PAYLOAD, f"initial payload of {self._ia_len} bytes (>{MAX_IA})"
                )
        if len(buf) < self._ia_len:
            return
        method = self._method
        ia = self._dec.crypt(bytes(buf[: self._ia_len]))
        del buf[: self._ia_len]
        assert self._enc is not None
        self._out += self._enc.crypt(VC + method.to_bytes(4, "big") + (0).to_bytes(2, "big"))
        self._finish(method, self._skey, self._enc, self._dec, ia)
