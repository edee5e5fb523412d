"""BEP 44 items: the BEP's test vectors, the put rules and their error codes, the store."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrentkit import bencoding
from torrentkit.dht import items
from torrentkit.dht.items import Item, ItemError, ItemStore

# The BEP's "Test vectors" section. Its private key is libtorrent's 64-byte expanded form (no
# seed given), so the vectors are checked by verifying their signatures with the public key.
VALUE = b"12:Hello World!"
PUBLIC_KEY = bytes.fromhex("77ff84905a91936367c01360803104f92432fcd904a43511876df5cdf3e7e548")
SIG_1 = bytes.fromhex(
    "305ac8aeb6c9c151fa120f120ea2cfb923564e11552d06a5d856091e5e853cff"
    "1260d3f39e4999684aa92eb73ffd136e6f4f3ecbfda0ce53a1608ecd7ae21f01"
)
SIG_2 = bytes.fromhex(
    "6834284b6b24c3204eb2fea824d82f88883a3d95e8b4a21b8c0ded553d17d17d"
    "df9a8a7104b1258f30bed3787e6cb896fca78c58f8e03b5f18f14951a87d9a08"
)
SEED = bytes(range(32))


def test_vector_1_mutable() -> None:
    assert items.signature_buffer(1, VALUE) == b"3:seqi1e1:v12:Hello World!"
    assert items.mutable_target(PUBLIC_KEY).hex() == "4a533d47ec9c7d95b1ad75f576cffc641853b750"
    item = Item(value=VALUE, public_key=PUBLIC_KEY, seq=1, sig=SIG_1)
    assert item.signature_valid()
    assert item.target.hex() == "4a533d47ec9c7d95b1ad75f576cffc641853b750"


def test_vector_2_mutable_with_salt() -> None:
    assert (
        items.signature_buffer(1, VALUE, b"foobar") == b"4:salt6:foobar3:seqi1e1:v12:Hello World!"
    )
    item = Item(value=VALUE, public_key=PUBLIC_KEY, salt=b"foobar", seq=1, sig=SIG_2)
    assert item.target.hex() == "411eba73b6f087ca51a3795d9c8c938d365e32c1"
    assert item.signature_valid()
    # The salt is part of what is signed: the same signature without it, or the other
    # vector's signature with it, does not verify.
    assert not Item(value=VALUE, public_key=PUBLIC_KEY, seq=1, sig=SIG_2).signature_valid()
    assert not Item(
        value=VALUE, public_key=PUBLIC_KEY, salt=b"foobar", seq=1, sig=SIG_1
    ).signature_valid()


def test_vector_3_immutable() -> None:
    assert items.immutable_target(VALUE).hex() == "e5f96f6f38320f0f33959cb4d3d656452117aadb"
    assert items.make_immutable(b"Hello World!").target.hex() == (
        "e5f96f6f38320f0f33959cb4d3d656452117aadb"
    )


def test_sign_and_verify_roundtrip() -> None:
    item = items.sign_mutable(SEED, {"a": [1, b"x"]}, seq=7, salt=b"s")
    assert item.public_key == items.public_key_for(SEED)
    assert item.signature_valid()
    assert item.decoded() == {b"a": [1, b"x"]}
    assert item.target == hashlib.sha1(item.public_key + b"s").digest()
    # Any change to seq, value or salt breaks the signature.
    for changed in (
        Item(value=item.value, public_key=item.public_key, salt=b"s", seq=8, sig=item.sig),
        Item(value=b"i1e", public_key=item.public_key, salt=b"s", seq=7, sig=item.sig),
        Item(value=item.value, public_key=item.public_key, salt=b"t", seq=7, sig=item.sig),
    ):
        assert not changed.signature_valid()


def test_empty_salt_is_no_salt() -> None:
    a = items.sign_mutable(SEED, b"v", seq=1, salt=b"")
    assert items.signature_buffer(1, b"1:v", b"") == b"3:seqi1e1:v1:v"
    assert a.target == items.mutable_target(a.public_key or b"")


def test_our_own_limits() -> None:
    with pytest.raises(ValueError, match="1000"):
        items.make_immutable(b"x" * 1000)  # 1000 bytes + "1000:" prefix
    items.make_immutable(b"x" * 995)  # "995:" + 995 = 999 bytes
    with pytest.raises(ValueError, match="salt"):
        items.sign_mutable(SEED, b"v", seq=1, salt=b"s" * 65)
    with pytest.raises(ValueError, match="seq"):
        items.sign_mutable(SEED, b"v", seq=-1)
    with pytest.raises(ValueError, match="seed"):
        items.sign_mutable(b"short", b"v", seq=1)


# ------------------------------------------------------------------------------ incoming put


def put_args(item: Item, **extra: object) -> dict[bytes, object]:
    args = bencoding.decode(
        bencoding.encode({b"id": b"n" * 20, **items.put_arguments(item, b"tok")}),
        bencoding.DATAGRAM_LIMITS,
    )
    args.update({k.encode(): v for k, v in extra.items()})
    return args  # type: ignore[no-any-return]


def test_parse_put_immutable() -> None:
    item = items.make_immutable([b"hello", 5])
    parsed, cas = items.parse_put(put_args(item), item.value)
    assert parsed == item and cas is None


def test_parse_put_mutable_with_cas() -> None:
    item = items.sign_mutable(SEED, b"hi", seq=3, salt=b"salt")
    parsed, cas = items.parse_put(put_args(item, cas=2), item.value)
    assert parsed == item and cas == 2


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"sig": b"\0" * 64}, items.INVALID_SIGNATURE),
        ({"seq": 4}, items.INVALID_SIGNATURE),
        ({"salt": b"s" * 65}, items.SALT_TOO_BIG),
        ({"k": b"short"}, items.PROTOCOL_ERROR),
        ({"sig": b"short"}, items.PROTOCOL_ERROR),
        ({"seq": -1}, items.PROTOCOL_ERROR),
        ({"seq": b"3"}, items.PROTOCOL_ERROR),
        ({"k": 5}, items.PROTOCOL_ERROR),
    ],
)
def test_parse_put_rejects(change: dict[str, object], code: int) -> None:
    item = items.sign_mutable(SEED, b"hi", seq=3, salt=b"salt")
    with pytest.raises(ItemError) as info:
        items.parse_put(put_args(item, **change), item.value)
    assert info.value.code == code


def test_parse_put_value_limits() -> None:
    big = b"1000:" + b"x" * 1000
    with pytest.raises(ItemError) as info:
        items.parse_put({b"token": b"t"}, big)
    assert info.value.code == items.MESSAGE_TOO_BIG
    with pytest.raises(ItemError) as info:
        items.parse_put({b"token": b"t"}, None)
    assert info.value.code == items.PROTOCOL_ERROR
    with pytest.raises(ItemError) as info:
        items.parse_put({b"token": b"t"}, b"i03e")
    assert info.value.code == items.PROTOCOL_ERROR
    mutable = items.sign_mutable(SEED, b"hi", seq=3)
    partial = put_args(mutable)
    del partial[b"seq"]
    with pytest.raises(ItemError) as info:
        items.parse_put(partial, mutable.value)
    assert info.value.code == items.PROTOCOL_ERROR


def test_raw_value_keeps_verbatim_bytes() -> None:
    # A value dict with unsorted keys: re-encoding would sort them and change the hash.
    unsorted = b"d1:bi1e1:ai2ee"
    datagram = (
        b"d1:ad2:id20:" + b"n" * 20 + b"5:token3:tok1:v" + unsorted + b"e1:q3:put1:t2:aa1:y1:qe"
    )
    raw = items.raw_value(datagram, b"a")
    assert raw == unsorted
    assert bencoding.encode(bencoding.decode(unsorted)) != unsorted
    parsed, _ = items.parse_put({b"token": b"tok"}, raw)
    assert parsed.target == hashlib.sha1(unsorted).digest()
    assert items.raw_value(b"d1:rd2:id20:" + b"n" * 20 + b"e1:t2:aa1:y1:re", b"r") is None
    assert items.raw_value(b"d1:ai5ee", b"a") is None


@given(st.binary(max_size=200))
def test_raw_value_any_bytes(data: bytes) -> None:
    """Invariant: any datagram gives the raw v, None, or a RemoteProtocolError."""
    from torrentkit.errors import RemoteProtocolError

    with contextlib.suppress(RemoteProtocolError):
        items.raw_value(data, b"a")


# ------------------------------------------------------------------------ get on the asking side


def test_get_response_fields_and_parse() -> None:
    item = items.sign_mutable(SEED, {"n": 1}, seq=5, salt=b"x")
    reply = {b"id": b"n" * 20, b"token": b"t", **items.get_response_fields(item)}
    datagram = bencoding.encode({b"r": reply, b"t": b"aa", b"y": b"r"})
    raw = items.raw_value(datagram, b"r")
    decoded = bencoding.decode(datagram, bencoding.DATAGRAM_LIMITS)[b"r"]
    assert items.parse_get_response(item.target, decoded, raw, salt=b"x") == item
    # Without the salt the key does not hash to the target; another target fails too.
    assert items.parse_get_response(item.target, decoded, raw) is None
    assert items.parse_get_response(b"\0" * 20, decoded, raw, salt=b"x") is None
    # A forged value under a real signature fails.
    assert items.parse_get_response(item.target, decoded, b"i2e", salt=b"x") is None
    # The asker already has seq 5: only seq comes back.
    assert items.get_response_fields(item, seq=5) == {b"seq": 5}
    assert b"v" in items.get_response_fields(item, seq=4)


def test_parse_get_response_immutable() -> None:
    item = items.make_immutable(b"data")
    assert items.parse_get_response(item.target, {}, item.value) == item
    assert items.parse_get_response(item.target, {}, b"5:datb") is None
    assert items.parse_get_response(item.target, {}, None) is None


# --------------------------------------------------------------------------------- the store


def test_store_sequence_and_cas_rules() -> None:
    store = ItemStore()
    v1 = items.sign_mutable(SEED, b"one", seq=1)
    v2 = items.sign_mutable(SEED, b"two", seq=2)
    store.put(v1, 0.0, source="10.0.0.1")
    assert store.get(v1.target, 1.0) == v1
    # CAS that does not match the stored seq: 301, nothing changes.
    with pytest.raises(ItemError) as info:
        store.put(v2, 1.0, source="10.0.0.1", cas=0)
    assert info.value.code == items.CAS_MISMATCH
    assert store.get(v1.target, 1.0) == v1
    store.put(v2, 2.0, source="10.0.0.1", cas=1)
    assert store.get(v1.target, 2.0) == v2
    # Going backwards, or the same seq with another value: 302.
    with pytest.raises(ItemError) as info:
        store.put(v1, 3.0)
    assert info.value.code == items.SEQ_TOO_OLD
    other = items.sign_mutable(SEED, b"other", seq=2)
    with pytest.raises(ItemError) as info:
        store.put(other, 3.0)
    assert info.value.code == items.SEQ_TOO_OLD
    # The same seq and value again refreshes its lifetime.
    store.put(v2, items.ITEM_LIFETIME)
    assert store.get(v2.target, items.ITEM_LIFETIME + 10.0) == v2


def test_store_cas_ignored_without_a_stored_item() -> None:
    store = ItemStore()
    item = items.sign_mutable(SEED, b"x", seq=9)
    store.put(item, 0.0, cas=4)
    assert store.get(item.target, 0.0) == item


def test_store_expiry() -> None:
    store = ItemStore(lifetime=100.0)
    a = items.make_immutable(b"a")
    b = items.make_immutable(b"b")
    store.put(a, 0.0)
    store.put(b, 50.0)
    assert store.get(a.target, 99.0) == a
    store.expire(100.0)
    assert store.get(a.target, 100.0) is None
    assert len(store) == 1
    assert store.get(b.target, 150.0) is None
    assert len(store) == 0


def test_store_caps() -> None:
    store = ItemStore(max_items=10, max_per_source=3)
    for i in range(3):
        store.put(items.make_immutable(i), float(i), source="10.0.0.9")
    # One address cannot hold more than its share...
    with pytest.raises(ItemError) as info:
        store.put(items.make_immutable(99), 5.0, source="10.0.0.9")
    assert info.value.code == items.PROTOCOL_ERROR
    # ...but may refresh what it holds.
    store.put(items.make_immutable(0), 6.0, source="10.0.0.9")
    # The total cap: the entry closest to expiry makes room.
    for i in range(20):
        store.put(items.make_immutable(100 + i), 10.0 + i, source=f"10.1.0.{i}")
    assert len(store) == 10
    assert store.get(items.make_immutable(119).target, 40.0) is not None
    assert store.get(items.make_immutable(1).target, 40.0) is None
    # A source whose items were evicted gets its quota back.
    for i in range(3):
        store.put(items.make_immutable(200 + i), 50.0, source="10.0.0.9")
