"""BEP 10 extended handshake: parsing real and hostile dictionaries, encoding ours."""

from __future__ import annotations

import pytest

from torrentkit.errors import RemoteProtocolError
from torrentkit.wire import ExtendedHandshake
from torrentkit.wire.extensions import (
    assign_ids,
    encode_extended_handshake,
    parse_extended_handshake,
    supports_extension_protocol,
)
from torrentkit.wire.testing import drain

from .helpers import open_connection


def test_libtorrent_style_handshake() -> None:
    # Shaped like what libtorrent 2.x sends (keys sorted, as bencode requires).
    data = (
        b"d12:complete_agoi-1e1:md11:lt_donthavei7e10:share_modei8e11:upload_onlyi3e"
        b"12:ut_holepunchi4e11:ut_metadatai2e6:ut_pexi1ee13:metadata_sizei31235e"
        b"4:reqqi500e11:upload_onlyi0e1:v18:libtorrent/2.1.1.06:yourip4:\x7f\x00\x00\x01e"
    )
    hs = parse_extended_handshake(data)
    assert hs.m["ut_metadata"] == 2 and hs.m["ut_pex"] == 1 and len(hs.m) == 6
    assert hs.v == "libtorrent/2.1.1.0"
    assert hs.reqq == 500
    assert hs.metadata_size == 31235
    assert hs.yourip == b"\x7f\x00\x00\x01"
    assert hs.p is None
    assert hs.raw[b"complete_ago"] == -1  # unknown keys are kept, not interpreted


def test_lenient_parts() -> None:
    hs = parse_extended_handshake(
        b"d1:md3:\xff\xfe\xfdi5e4:goodi6ee1:pi0e1:v4:ab\xffc6:yourip16:" + bytes(16) + b"e"
    )
    assert hs.m == {"good": 6}  # a name that is not UTF-8 is ignored
    assert hs.p is None  # p = 0: not given
    assert hs.v == "ab\ufffdc"
    assert hs.yourip == bytes(16)
    long_name = parse_extended_handshake(b"d1:v1000:" + b"x" * 1000 + b"e")
    assert long_name.v == "x" * 256
    assert parse_extended_handshake(b"de") == ExtendedHandshake()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"le",
        b"i5e",
        b"d1:md",  # truncated
        b"de" + b"trailing",
        b"d1:mi1ee",
        b"d1:mli1eee",
        b"d1:md3:fooi256eee",
        b"d1:md3:fooi-1eee",
        b"d1:md3:foo3:baree",
        b"d4:reqq3:abce",
        b"d4:reqqi0ee",
        b"d4:reqqi-5ee",
        b"d1:vi5ee",
        b"d6:yourip5:abcdee",
        b"d6:youripi1ee",
        b"d1:pi70000ee",
        b"d1:p4:6881e",
        b"d13:metadata_sizei-1ee",
        b"d1:x" + b"l" * 20 + b"e" * 20 + b"e",  # nesting beyond MESSAGE_LIMITS
        b"d1:ai1e1:ai2ee",  # duplicate key
    ],
)
def test_garbage_is_remote_protocol_error(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_extended_handshake(data)
    conn = open_connection()
    conn.receive_data((len(data) + 2).to_bytes(4, "big") + b"\x14\x00" + data)
    with pytest.raises(RemoteProtocolError):
        drain(conn)


def test_extension_message_without_id_byte() -> None:
    conn = open_connection()
    conn.receive_data(b"\x00\x00\x00\x01\x14")
    with pytest.raises(RemoteProtocolError, match="without an extension id"):
        drain(conn)


def test_encode_includes_raw_extras_but_fields_win() -> None:
    hs = ExtendedHandshake(
        m={"ut_metadata": 1},
        p=6881,
        metadata_size=100,
        yourip=b"\x7f\x00\x00\x01",
        raw={b"upload_only": 1, b"p": 1},
    )
    assert encode_extended_handshake(hs) == (
        b"d1:md11:ut_metadatai1ee13:metadata_sizei100e1:pi6881e11:upload_onlyi1e"
        b"6:yourip4:\x7f\x00\x00\x01e"
    )


def test_helpers() -> None:
    assert assign_ids(["ut_metadata", "ut_pex"]) == {"ut_metadata": 1, "ut_pex": 2}
    assert supports_extension_protocol(bytes([0, 0, 0, 0, 0, 0x10, 0, 0]))
    assert not supports_extension_protocol(bytes([0, 0, 0, 0, 0, 0xEF, 0xFF, 0xFF]))
    assert not supports_extension_protocol(b"")
