"""MSE/PE handshake, sans-IO: both roles, both methods, and every hostile input of
docs/limits.md item 15 (degenerate keys, long pads, no synchronisation, unknown torrents)."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4
from cryptography.hazmat.primitives.ciphers import Cipher
from hypothesis import given, settings
from hypothesis import strategies as st

from torrentkit.errors import LocalProtocolError
from torrentkit.wire import mse
from torrentkit.wire.mse import (
    CRYPTO_PLAINTEXT,
    CRYPTO_RC4,
    KEY_BYTES,
    MAX_PAD,
    REQ1_WINDOW,
    VC_WINDOW,
    Initiator,
    MSEError,
    MSEFailure,
    Responder,
)

SKEY = bytes(range(20))
OTHER = bytes(range(1, 21))
IA = b"\x13BitTorrent protocol" + bytes(48)
XA = 0xA1B2C3D4E5F60718293A4B5C6D7E8F9011223344
XB = 0xCAFEBABE0123456789ABCDEF0011223344556677


def find(req2: bytes) -> bytes | None:
    return {mse.req2_hash(SKEY): SKEY, mse.req2_hash(OTHER): OTHER}.get(req2)


def prefer_rc4(provide: int) -> int:
    return CRYPTO_RC4 if provide & CRYPTO_RC4 else CRYPTO_PLAINTEXT


def prefer_plain(provide: int) -> int:
    return CRYPTO_PLAINTEXT if provide & CRYPTO_PLAINTEXT else CRYPTO_RC4


def run(a: Initiator, b: Responder, *, chunk: int = 1 << 20) -> None:
    """Move bytes both ways, ``chunk`` at a time, until both sides are done."""
    for _ in range(10_000):
        out_a, out_b = a.data_to_send(), b.data_to_send()
        if not out_a and not out_b:
            break
        for i in range(0, len(out_a), chunk):
            if b.result is None:
                b.receive_data(out_a[i : i + chunk])
        for i in range(0, len(out_b), chunk):
            if a.result is None:
                a.receive_data(out_b[i : i + chunk])
    assert a.result is not None and b.result is not None


@pytest.mark.parametrize("chunk", [1, 7, 1 << 20])
@pytest.mark.parametrize("pads", [(0, 0), (MAX_PAD, MAX_PAD), (13, 400)])
def test_rc4_round_trip(chunk: int, pads: tuple[int, int]) -> None:
    a = Initiator(SKEY, initial_payload=IA, pad_length=pads[0])
    b = Responder(find, prefer_rc4, pad_length=pads[1])
    run(a, b, chunk=chunk)
    assert a.result is not None and b.result is not None
    assert a.result.method == b.result.method == CRYPTO_RC4
    assert b.result.skey == SKEY and b.result.payload == IA
    assert a.result.encrypt and a.result.decrypt and b.result.encrypt and b.result.decrypt
    # The payload streams: A's encryption is B's decryption and back.
    msg = b"\x00\x00\x00\x01\x02" * 100
    wire = a.result.encrypt.crypt(msg)
    assert wire != msg and b.result.decrypt.crypt(wire) == msg
    assert a.result.decrypt.crypt(b.result.encrypt.crypt(msg)) == msg


def test_bytes_after_the_handshake_arrive_decrypted() -> None:
    a = Initiator(SKEY, initial_payload=IA)
    b = Responder(find, prefer_rc4)
    b.receive_data(a.data_to_send())
    a.receive_data(b.data_to_send())
    step3 = a.data_to_send()
    b.receive_data(step3)
    assert b.result is not None and b.result.encrypt is not None
    step4 = b.data_to_send()
    reply = b.result.encrypt.crypt(b"hello A")
    a.receive_data(step4 + reply)
    assert a.result is not None and a.result.payload == b"hello A"


def test_both_choose_plaintext_after_the_handshake() -> None:
    a = Initiator(SKEY, initial_payload=IA, provide=CRYPTO_RC4 | CRYPTO_PLAINTEXT)
    b = Responder(find, prefer_plain)
    b.receive_data(a.data_to_send())
    a.receive_data(b.data_to_send())
    b.receive_data(a.data_to_send() + b"plain after IA")
    assert b.result is not None
    assert b.result.method == CRYPTO_PLAINTEXT and b.result.encrypt is None
    assert b.result.payload == IA + b"plain after IA"  # IA itself was encrypted
    a.receive_data(b.data_to_send() + b"plain reply")
    assert a.result is not None and a.result.method == CRYPTO_PLAINTEXT
    assert a.result.encrypt is None and a.result.payload == b"plain reply"


def test_rc4_discards_1024_keystream_bytes() -> None:
    key = hashlib.sha1(b"k").digest()
    raw = Cipher(ARC4(key), mode=None).encryptor().update(bytes(1100))
    assert mse.RC4(key).crypt(bytes(76)) == raw[1024:]


def test_public_key_range() -> None:
    assert mse.check_public_key((2).to_bytes(KEY_BYTES, "big")) == 2
    assert mse.check_public_key((mse.P - 2).to_bytes(KEY_BYTES, "big")) == mse.P - 2
    with pytest.raises(LocalProtocolError):
        Initiator(SKEY, private=1)
    with pytest.raises(LocalProtocolError):
        Initiator(SKEY, pad_length=MAX_PAD + 1)


# ---------------------------------------------------------------- hostile inputs


@pytest.mark.parametrize("y", [0, 1, mse.P - 1, mse.P, 2**768 - 1])
def test_degenerate_public_key_refused_both_sides(y: int) -> None:
    key = y.to_bytes(KEY_BYTES, "big")
    b = Responder(find, prefer_rc4)
    with pytest.raises(MSEError) as exc:
        b.receive_data(key)
    assert exc.value.reason is MSEFailure.BAD_KEY
    assert b.data_to_send() == b""  # B never answers a bad key
    a = Initiator(SKEY)
    a.data_to_send()
    with pytest.raises(MSEError) as exc:
        a.receive_data(key)
    assert exc.value.reason is MSEFailure.BAD_KEY


def step3(
    secret: bytes,
    skey: bytes,
    *,
    pad_a: bytes = b"",
    provide: int = CRYPTO_RC4,
    pad_c: int = 0,
    ia: bytes = IA,
    vc: bytes = mse.VC,
) -> bytes:
    """Step 3 as a peer of our making writes it, with any field wrong."""
    enc = mse.RC4(mse.sha1(b"keyA", secret, skey))
    req2 = mse.sha1(b"req2", skey)
    req3 = mse.sha1(b"req3", secret)
    return (
        pad_a
        + mse.sha1(b"req1", secret)
        + bytes(x ^ y for x, y in zip(req2, req3, strict=True))
        + enc.crypt(
            vc
            + provide.to_bytes(4, "big")
            + pad_c.to_bytes(2, "big")
            + bytes(pad_c)
            + len(ia).to_bytes(2, "big")
            + ia
        )
    )


def responder_after_keys() -> tuple[Responder, bytes]:
    """A responder that got a good Ya (no pad yet), and the shared secret."""
    b = Responder(find, prefer_rc4, private=XB)
    b.receive_data(mse.public_key(XA))
    yb = b.data_to_send()[:KEY_BYTES]
    secret = pow(int.from_bytes(yb, "big"), XA, mse.P).to_bytes(KEY_BYTES, "big")
    return b, secret


def test_crafted_step3_is_accepted() -> None:  # the helper itself speaks the protocol
    b, secret = responder_after_keys()
    b.receive_data(step3(secret, OTHER, pad_a=bytes(MAX_PAD)))
    assert b.result is not None and b.result.skey == OTHER and b.result.payload == IA


def test_pad_a_over_512_never_synchronises() -> None:
    b, secret = responder_after_keys()
    with pytest.raises(MSEError) as exc:
        b.receive_data(step3(secret, SKEY, pad_a=bytes(MAX_PAD + 1)))
    assert exc.value.reason is MSEFailure.NO_SYNC


def test_pad_c_over_512_refused() -> None:
    b, secret = responder_after_keys()
    with pytest.raises(MSEError) as exc:
        b.receive_data(step3(secret, SKEY, pad_c=MAX_PAD + 1))
    assert exc.value.reason is MSEFailure.BAD_PAD


def initiator_after_keys(provide: int = CRYPTO_RC4 | CRYPTO_PLAINTEXT) -> tuple[Initiator, mse.RC4]:
    """An initiator that got a good Yb, and the cipher B encrypts with."""
    a = Initiator(SKEY, provide=provide, private=XA, pad_length=0)
    a.data_to_send()
    yb = mse.public_key(XB)
    a.receive_data(yb)
    secret = pow(int.from_bytes(yb, "big"), XA, mse.P).to_bytes(KEY_BYTES, "big")
    return a, mse.RC4(mse.sha1(b"keyB", secret, SKEY))


def test_pad_d_over_512_refused() -> None:
    a, enc_b = initiator_after_keys()
    with pytest.raises(MSEError) as exc:
        a.receive_data(enc_b.crypt(mse.VC + (2).to_bytes(4, "big") + (513).to_bytes(2, "big")))
    assert exc.value.reason is MSEFailure.BAD_PAD


def test_selection_we_did_not_provide_refused() -> None:
    a, enc_b = initiator_after_keys(CRYPTO_RC4)
    with pytest.raises(MSEError) as exc:
        a.receive_data(enc_b.crypt(mse.VC + (1).to_bytes(4, "big") + bytes(2)))
    assert exc.value.reason is MSEFailure.NO_COMMON_METHOD


def feed_until_refused(side: Initiator | Responder, chunk: int) -> int:
    """Feed random-looking bytes ``chunk`` at a time until the side refuses; how many."""
    garbage = hashlib.sha256(b"x").digest() * 200
    fed = 0
    with pytest.raises(MSEError) as exc:
        while fed < len(garbage):
            side.receive_data(garbage[fed : fed + chunk])
            fed += chunk
    assert exc.value.reason is MSEFailure.NO_SYNC
    return fed


@pytest.mark.parametrize("chunk", [1, 100, 4096])
def test_responder_that_never_synchronises(chunk: int) -> None:
    b = Responder(find, prefer_rc4)
    b.receive_data(mse.public_key(XA))
    assert feed_until_refused(b, chunk) < REQ1_WINDOW + chunk  # at the window's end


@pytest.mark.parametrize("chunk", [1, 4096])
def test_initiator_that_never_synchronises(chunk: int) -> None:
    a = Initiator(SKEY)
    a.data_to_send()
    a.receive_data(mse.public_key(XB))
    assert feed_until_refused(a, chunk) < VC_WINDOW + chunk


def test_req2_for_a_torrent_we_do_not_serve() -> None:
    b, secret = responder_after_keys()
    sent_before = b.data_to_send()
    with pytest.raises(MSEError) as exc:
        b.receive_data(step3(secret, bytes(20)))
    assert exc.value.reason is MSEFailure.UNKNOWN_TORRENT
    assert sent_before == b"" and b.data_to_send() == b""  # nothing said after Yb


def test_wrong_vc_refused() -> None:
    b, secret = responder_after_keys()
    with pytest.raises(MSEError) as exc:
        b.receive_data(step3(secret, SKEY, vc=b"\x00" * 7 + b"\x01"))
    assert exc.value.reason is MSEFailure.BAD_VC


def test_initial_payload_over_the_limit_refused() -> None:
    b, secret = responder_after_keys()
    with pytest.raises(MSEError) as exc:
        b.receive_data(step3(secret, SKEY, ia=bytes(mse.MAX_IA + 1)))
    assert exc.value.reason is MSEFailure.BAD_PAYLOAD


@pytest.mark.parametrize("provide", [0, 0x04, CRYPTO_PLAINTEXT])
def test_responder_refuses_methods_its_policy_does_not_allow(provide: int) -> None:
    b = Responder(find, lambda p: CRYPTO_RC4 if p & CRYPTO_RC4 else 0, private=XB)
    b.receive_data(mse.public_key(XA))
    yb = b.data_to_send()[:KEY_BYTES]
    secret = pow(int.from_bytes(yb, "big"), XA, mse.P).to_bytes(KEY_BYTES, "big")
    with pytest.raises(MSEError) as exc:
        b.receive_data(step3(secret, SKEY, provide=provide))
    assert exc.value.reason is MSEFailure.NO_COMMON_METHOD


# ---------------------------------------------------------------- properties


@settings(max_examples=150, deadline=None)
@given(
    data=st.binary(max_size=2048),
    cuts=st.lists(st.integers(min_value=0, max_value=2048), max_size=8),
    initiator=st.booleans(),
)
def test_any_bytes_only_ever_raise_mse_error(data: bytes, cuts: list[int], initiator: bool) -> None:
    """Whatever a peer sends, in whatever pieces, a side needs more, finishes, or raises
    MSEError -- nothing else -- and never holds more than the search window plus a read."""
    side: Initiator | Responder = (
        Initiator(SKEY, private=XA) if initiator else Responder(find, prefer_rc4, private=XB)
    )
    side.data_to_send()
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    try:
        for a, b in itertools.pairwise(bounds):
            side.receive_data(data[a:b])
            assert len(side._buf) <= KEY_BYTES + max(REQ1_WINDOW, VC_WINDOW) + (b - a)
    except MSEError:
        pass


@settings(max_examples=60, deadline=None)
@given(
    pads=st.tuples(st.integers(0, MAX_PAD), st.integers(0, MAX_PAD)),
    chunk=st.integers(1, 700),
    plain=st.booleans(),
)
def test_any_pads_and_chunking_agree(pads: tuple[int, int], chunk: int, plain: bool) -> None:
    """Two honest sides always finish with the same method and matching keystreams."""
    a = Initiator(SKEY, initial_payload=IA, pad_length=pads[0])
    b = Responder(find, prefer_plain if plain else prefer_rc4, pad_length=pads[1])
    run(a, b, chunk=chunk)
    assert a.result is not None and b.result is not None
    assert a.result.method == b.result.method
    assert b.result.payload == IA
    if a.result.encrypt is not None and b.result.decrypt is not None:
        assert b.result.decrypt.crypt(a.result.encrypt.crypt(b"x" * 99)) == b"x" * 99
