"""BEP 9 ut_metadata messages and assembly, with exact bytes."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrentkit.errors import RemoteProtocolError
from torrentkit.wire import metadata as md


def test_exact_bytes_from_bep_9() -> None:
    assert md.encode(md.MetadataRequest(piece=0)) == b"d8:msg_typei0e5:piecei0ee"
    assert md.encode(md.MetadataReject(piece=0)) == b"d8:msg_typei2e5:piecei0ee"
    data = md.encode(md.MetadataData(piece=0, total_size=3425, data=b"x" * 3425))
    assert data == b"d8:msg_typei1e5:piecei0e10:total_sizei3425ee" + b"x" * 3425


def test_parse_round_trip() -> None:
    for msg in (
        md.MetadataRequest(piece=3),
        md.MetadataReject(piece=1),
        md.MetadataData(piece=1, total_size=20000, data=b"y" * (20000 - 16384)),
    ):
        assert md.parse(md.encode(msg)) == msg


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"le",
        b"d8:msg_typei0ee",  # no piece
        b"d8:msg_typei7e5:piecei0ee",  # unknown type
        b"d8:msg_typei0e5:piecei-1ee",
        b"d8:msg_typei0e5:piecei99999ee",  # beyond any allowed size
        b"d8:msg_typei1e5:piecei0ee" + b"x" * 10,  # data without total_size
        b"d8:msg_typei1e5:piecei0e10:total_sizei0ee",
        b"d8:msg_typei1e5:piecei0e10:total_sizei999999999ee" + b"x" * 16384,  # over the cap
        b"d8:msg_typei1e5:piecei0e10:total_sizei100ee" + b"x" * 99,  # short piece
        b"d8:msg_typei1e5:piecei1e10:total_sizei100ee" + b"x" * 100,  # piece past the end
    ],
)
def test_bad_messages_are_remote_errors(payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        md.parse(payload)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_raise_remote_error(payload: bytes) -> None:
    # The invariant: a message, or RemoteProtocolError; any other exception fails the test.
    with contextlib.suppress(RemoteProtocolError):
        assert isinstance(
            md.parse(payload), md.MetadataRequest | md.MetadataData | md.MetadataReject
        )


def test_serve_and_assemble() -> None:
    raw = bytes(range(256)) * 200  # 51,200 bytes: 4 pieces, the last 2,048 bytes
    ih = hashlib.sha1(raw).digest()
    asm = md.MetadataAssembler(ih, len(raw))
    order = []
    while (piece := asm.next_request("peer")) is not None:
        order.append(piece)
    assert order == [0, 1, 2, 3]
    for piece in order:
        answer = md.serve(raw, md.MetadataRequest(piece=piece))
        assert isinstance(answer, md.MetadataData)
        asm.add("peer", md.parse(md.encode(answer)))  # type: ignore[arg-type]
    assert asm.complete
    assert asm.result() == (raw, set())
    assert md.serve(raw, md.MetadataRequest(piece=4)) == md.MetadataReject(piece=4)


def test_wrong_metadata_names_its_senders_and_resets() -> None:
    raw = b"d4:name3:abce" * 2000
    asm = md.MetadataAssembler(hashlib.sha1(b"something else").digest(), len(raw))
    for piece in range(md.num_pieces(len(raw))):
        answer = md.serve(raw, md.MetadataRequest(piece=piece))
        assert isinstance(answer, md.MetadataData)
        asm.add("liar" if piece else "other", answer)
    assert asm.result() == (None, {"liar", "other"})
    assert not asm.complete and asm.missing() == [0, 1]


def test_size_limits() -> None:
    with pytest.raises(RemoteProtocolError):
        md.MetadataAssembler(b"\0" * 20, md.MAX_METADATA_SIZE + 1)
    asm = md.MetadataAssembler(b"\0" * 20, 100)
    with pytest.raises(RemoteProtocolError, match="total_size"):
        asm.add("p", md.MetadataData(piece=0, total_size=200, data=b"x" * 200))
