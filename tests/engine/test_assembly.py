"""Piece assembly: blocks go straight into the piece buffer, one record of who sent each
block, and the hash outcome goes to trust from that record."""

from __future__ import annotations

import ctypes
import hashlib
import mmap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrentkit.engine.assembly import (
    MIN_SPARE,
    PAGE_ALIGNED_FROM,
    SPARE_BYTES,
    Assemblies,
    Assembly,
    piece_buffer,
)
from torrentkit.engine.trust import BAN_THRESHOLD, Trust
from torrentkit.errors import LocalProtocolError
from torrentkit.metainfo import BLOCK_SIZE as B

# Two pieces of 4 blocks, then a last piece of 2.5 blocks.
PIECE = 4 * B
TOTAL = 2 * PIECE + 2 * B + B // 2
GOOD = bytes((i * 7) % 251 for i in range(PIECE))


def assemblies() -> Assemblies[str]:
    return Assemblies(piece_length=PIECE, total_length=TOTAL)


def block(data: bytes, i: int) -> bytes:
    return data[i * B : (i + 1) * B]


def corrupt(data: bytes, i: int) -> bytes:
    bad = bytearray(data)
    bad[i * B + 5] ^= 0xFF
    return bytes(bad)


def receive(a: Assemblies[str], index: int, data: bytes, senders: str) -> bool:
    """Feed piece ``index`` block by block; ``senders`` names each block's sender by one
    letter ("aaba": b sent block 2). Returns whether the last block completed it."""
    done = False
    for i, sender in enumerate(senders):
        assert not done
        done = a.add_block(index, i * B, block(data, i), sender)
    return done


def test_blocks_in_any_order_fill_the_piece_and_record_their_senders() -> None:
    a = assemblies()
    assert not a.add_block(0, 2 * B, block(GOOD, 2), "b")
    assert not a.add_block(0, 0, block(GOOD, 0), "a")
    assert not a.add_block(0, 3 * B, block(GOOD, 3), "a")
    assert 0 in a and len(a) == 1 and a.buffered_bytes == PIECE
    assert a.add_block(0, B, block(GOOD, 1), "c")
    piece = a.take(0)
    assert 0 not in a and len(a) == 0
    assert piece.index == 0
    assert bytes(piece.data) == GOOD
    assert piece.senders == {0: "a", B: "c", 2 * B: "b", 3 * B: "a"}
    assert piece.contributors() == {"a", "b", "c"}


def test_buffers_are_recycled_for_later_pieces() -> None:
    """A full-size piece's buffer is received into again once the engine hands it back; the
    stale bytes in it are all overwritten before the piece counts as complete."""
    a = assemblies()
    assert receive(a, 0, GOOD, "aaaa")
    done = a.take(0)
    buf = done.data
    a.recycle(done)
    assert len(done.data) == 0 and done.senders == {}
    other = bytes(reversed(GOOD))
    assert not a.add_block(1, B, block(other, 1), "b")
    assert a.buffered_bytes == PIECE
    assert receive(a, 1, other, "bbbb")
    piece = a.take(1)
    assert piece.data is buf
    assert bytes(piece.data) == other
    # The short last piece never takes (or gives back) a full-size buffer.
    a.recycle(piece)
    assert not a.add_block(2, 0, bytes(B), "c")
    a.discard(2)
    assert receive(a, 0, GOOD, "aaaa") and a.take(0).data is buf


def test_the_spare_pool_keeps_a_burst_until_dropped() -> None:
    """Pieces that waited for the disk come back together: the pool keeps them all (up to
    SPARE_BYTES) for the pieces that follow, and drop_spares frees them."""
    big = Assemblies[str](piece_length=1 << 20, total_length=64 << 20)
    assert big._max_spare == SPARE_BYTES // (1 << 20)
    assert Assemblies[str](piece_length=16 << 20, total_length=1 << 30)._max_spare == MIN_SPARE
    a = Assemblies[str](piece_length=B, total_length=20 * B, spare_buffers=12)
    done = []
    for i in range(10):
        assert a.add_block(i, 0, bytes(B), "a")
        done.append(a.take(i))
    bufs = [d.data for d in done]  # held here: a buffer freed by drop_spares keeps its id
    for d in done:
        a.recycle(d)
    again = []
    for i in range(10, 20):
        assert a.add_block(i, 0, bytes(B), "a")
        again.append(a.take(i))
        assert any(again[-1].data is buf for buf in bufs)  # none allocated afresh
    for d in again:
        a.recycle(d)
    a.drop_spares()
    assert a.add_block(0, 0, bytes(B), "a")
    fresh = a.take(0).data
    assert not any(fresh is buf for buf in bufs)  # the pool was emptied


def test_the_short_last_piece() -> None:
    a = assemblies()
    last = bytes(range(200)) * ((2 * B + B // 2) // 200) + bytes((2 * B + B // 2) % 200)
    assert not a.add_block(2, 0, last[:B], "a")
    assert not a.add_block(2, B, last[B : 2 * B], "a")
    assert a.add_block(2, 2 * B, last[2 * B :], "b")  # half a block
    assert bytes(a.take(2).data) == last


@pytest.mark.parametrize(
    ("index", "begin", "length"),
    [
        (0, 100, B),  # off the grid
        (0, 4 * B, B),  # past the piece
        (0, 0, B - 1),  # short block inside a piece
        (2, 2 * B, B),  # the last block of the last piece is half a block
        (3, 0, B),  # no such piece
        (-1, 0, B),
    ],
)
def test_a_block_off_the_grid_is_our_bug(index: int, begin: int, length: int) -> None:
    with pytest.raises(LocalProtocolError):
        assemblies().add_block(index, begin, bytes(length), "a")


def test_only_a_complete_piece_can_be_taken() -> None:
    a = assemblies()
    with pytest.raises(LocalProtocolError):
        a.take(0)
    a.add_block(0, 0, block(GOOD, 0), "a")
    with pytest.raises(LocalProtocolError):
        a.take(0)
    a.discard(0)
    assert 0 not in a


def test_a_block_received_again_replaces_bytes_and_sender() -> None:
    """The picker accepts each block once; should one come twice, the record still holds:
    the bytes in the buffer are the ones the recorded sender sent."""
    a = assemblies()
    for i in (1, 2, 3):
        assert not a.add_block(0, i * B, block(GOOD, i), "h")
    assert a.add_block(0, 0, block(corrupt(GOOD, 0), 0), "liar")
    assert a.add_block(0, 0, block(GOOD, 0), "honest")  # still complete
    piece = a.take(0)
    assert bytes(piece.data) == GOOD
    assert piece.senders == {0: "honest", B: "h", 2 * B: "h", 3 * B: "h"}


# ---------------------------------------------------------------- trust from the one record


def test_smart_ban_through_the_one_record() -> None:
    a = assemblies()
    trust = Trust()
    # The liar sent block 2 of piece 1, corrupted; the piece fails.
    bad = corrupt(GOOD, 2)
    assert receive(a, 1, bad, "hhlh")
    failed = a.take(1)
    assert failed.failed(trust) == set()
    assert trust.points == {"h": -2, "l": -2}
    # Refetched from "g" alone it passes: the liar is banned at once, "h" cleared.
    assert receive(a, 1, GOOD, "gggg")
    assert a.take(1).passed(trust) == {"l"}
    assert trust.is_banned("l")
    assert trust.points["h"] == 0 and trust.points["g"] == 1


def test_trust_points_ban_through_the_one_record() -> None:
    a = assemblies()
    trust = Trust()
    banned: list[set[str]] = []
    for _ in range(4):
        assert receive(a, 0, corrupt(GOOD, 0), "xxxx")
        banned.append(a.take(0).failed(trust))
    assert banned == [set(), set(), set(), {"x"}]
    assert trust.points["x"] <= BAN_THRESHOLD


def test_passed_bans_a_liar_that_sent_nothing_this_time() -> None:
    """Smart ban judges the earlier failed copy: its liar is returned even though it sent
    none of the blocks that passed."""
    a = assemblies()
    trust = Trust()
    assert receive(a, 0, corrupt(GOOD, 3), "hhhl")
    a.take(0).failed(trust)
    assert receive(a, 0, GOOD, "hhhh")
    assert a.take(0).passed(trust) == {"l"}


@given(order=st.permutations(range(4)), senders=st.lists(st.sampled_from("abc"), min_size=4))
def test_complete_exactly_when_the_last_block_arrives(order: list[int], senders: list[str]) -> None:
    a = assemblies()
    done = [a.add_block(0, i * B, block(GOOD, i), senders[i]) for i in order]
    assert done == [False, False, False, True]
    piece = a.take(0)
    assert bytes(piece.data) == GOOD
    assert piece.senders == {i * B: senders[i] for i in range(4)}


def test_add_blocks_writes_only_the_accepted_blocks() -> None:
    a = assemblies()
    last = 2 * B + B // 2
    tail = bytes(range(256)) * (last // 256) + bytes(last % 256)
    blocks = [(0, i * B, block(GOOD, i)) for i in range(4)]
    blocks.insert(1, (0, B, b"\xff" * B))  # refused by the picker: never written
    blocks += [(2, 0, tail[:B]), (2, B, tail[B : 2 * B]), (2, 2 * B, tail[2 * B :])]
    a.add_blocks(blocks, bytearray([1, 0, 1, 1, 1, 1, 0, 1]), "p")
    assert a.is_complete(0) and not a.is_complete(2) and not a.is_complete(1)
    piece = a.take(0)
    assert piece.data == GOOD and piece.contributors() == {"p"}
    a.add_blocks([(2, B, tail[B : 2 * B])], b"\x01", "q")
    assert a.is_complete(2)
    assert a.take(2).data == tail
    with pytest.raises(LocalProtocolError):
        a.add_blocks([(1, 100, b"x" * B)], b"\x01", "p")


def finish(piece: Assembly[str]) -> bytes:
    """The piece's SHA-1 as the piece writer completes it from ``prefix``."""
    prefix = piece.prefix
    if prefix is None:
        return hashlib.sha1(piece.data).digest()
    hasher, n = prefix
    hasher.update(piece.data[n:])
    return hasher.digest()


def test_blocks_in_order_are_hashed_as_they_arrive() -> None:
    """The whole piece is hashed by the time its last block is in (the writer thread only
    compares); the short last piece too."""
    a = assemblies()
    assert not a.add_block(0, 0, block(GOOD, 0), "a")
    assert a._pieces[0].hashed == B
    a.add_blocks([(0, i * B, block(GOOD, i)) for i in (1, 2, 3)], b"\x01\x01\x01", "a")
    piece = a.take(0)
    assert piece.hashed == PIECE and finish(piece) == hashlib.sha1(GOOD).digest()
    last = bytes(range(250)) * ((2 * B + B // 2) // 250) + bytes((2 * B + B // 2) % 250)
    a.add_blocks([(2, i * B, last[i * B : (i + 1) * B]) for i in range(3)], b"\x01" * 3, "b")
    tail = a.take(2)
    assert tail.hashed == len(last) and finish(tail) == hashlib.sha1(last).digest()


def test_a_gap_stops_the_hash_until_it_is_filled() -> None:
    a = assemblies()
    a.add_blocks([(0, 0, block(GOOD, 0)), (0, 2 * B, block(GOOD, 2))], b"\x01\x01", "a")
    assert a._pieces[0].hashed == B  # block 1 missing: block 2 waits
    a.add_block(0, 3 * B, block(GOOD, 3), "a")
    assert a._pieces[0].hashed == B
    a.add_block(0, B, block(GOOD, 1), "b")  # the gap is filled: on to the end
    piece = a.take(0)
    assert piece.hashed == PIECE and finish(piece) == hashlib.sha1(GOOD).digest()


def test_a_block_written_again_below_the_hashed_part_restarts_the_hash() -> None:
    a = assemblies()
    receive(a, 0, corrupt(GOOD, 1)[: 3 * B], "aaa")
    assert a._pieces[0].hashed == 3 * B
    a.add_blocks([(0, B, block(GOOD, 1))], b"\x01", "b")  # replaces hashed bytes
    a.add_block(0, 3 * B, block(GOOD, 3), "a")
    piece = a.take(0)
    assert bytes(piece.data) == GOOD and finish(piece) == hashlib.sha1(GOOD).digest()


@given(
    steps=st.lists(
        st.tuples(st.integers(0, 3), st.booleans(), st.booleans()), min_size=1, max_size=24
    )
)
def test_the_prefix_hash_always_matches_the_buffer(steps: list[tuple[int, bool, bool]]) -> None:
    """Blocks in any order, some sent again with other bytes, one at a time or in batches:
    completing the hash from ``prefix`` always gives the SHA-1 of the bytes in the buffer
    (a recycled buffer's stale bytes included)."""
    a = assemblies()
    receive(a, 0, bytes(reversed(GOOD)), "zzzz")
    a.recycle(a.take(0))  # the next piece gets this buffer, stale bytes and all
    batch: list[tuple[int, int, bytes]] = []
    for blk, bad, batched in steps:
        data = block(corrupt(GOOD, blk) if bad else GOOD, blk)
        if batched:
            batch.append((0, blk * B, data))
            continue
        if batch:
            a.add_blocks(batch, b"\x01" * len(batch), "b")
            batch = []
        a.add_block(0, blk * B, data, "a")
    if batch:
        a.add_blocks(batch, b"\x01" * len(batch), "b")
    for blk in range(4):  # complete it
        if blk * B not in a._pieces[0].senders:
            a.add_block(0, blk * B, block(GOOD, blk), "c")
    piece = a.take(0)
    assert finish(piece) == hashlib.sha1(bytes(piece.data)).digest()


def test_large_piece_buffers_start_on_a_page() -> None:
    """So the storage can write them around the page cache (O_DIRECT)."""
    for size in (PAGE_ALIGNED_FROM, 1 << 20, (1 << 20) + 5):
        buf = piece_buffer(size)
        assert len(buf) == size and not buf.readonly and bytes(buf[:64]) == bytes(64)
        address = ctypes.addressof(ctypes.c_char.from_buffer(buf))
        assert address % mmap.PAGESIZE == 0
    small = piece_buffer(PAGE_ALIGNED_FROM - 1)
    assert len(small) == PAGE_ALIGNED_FROM - 1 and not small.readonly
