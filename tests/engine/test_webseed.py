"""Web seeds, the pure part (engine/webseed.py) and the picker's runs of whole pieces."""

from __future__ import annotations

import random

import pytest

from torrentkit.engine.layout import Layout
from torrentkit.engine.picker import Picker
from torrentkit.engine.webseed import (
    RETRY_CAP,
    RangeRequest,
    WebSeedError,
    check_reply,
    contiguous_runs,
    file_urls,
    plan_ranges,
    retry_delay,
    run_pieces,
    usable_url,
)
from torrentkit.ids import InfoHash
from torrentkit.metainfo import BLOCK_SIZE, FileEntry, Info

KIB = 1024


def make_info(files: list[tuple[tuple[str, ...], int]], *, piece_length: int, multi: bool) -> Info:
    entries = []
    offset = 0
    for path, length in files:
        pad = ".pad" in path
        entries.append(FileEntry(path=path, length=length, offset=offset, pad=pad))
        offset += length
    num = -(-offset // piece_length)
    return Info(
        name=files[0][0][0],
        piece_length=piece_length,
        piece_hashes=bytes(20 * num),
        files=tuple(entries),
        multi_file=multi,
        private=False,
        raw=b"",
        info_hash=InfoHash(bytes(20)),
    )


SINGLE = make_info([(("big file.iso",), 100 * KIB)], piece_length=32 * KIB, multi=False)
MULTI = make_info(
    [
        (("my dir", "a b.txt"), 10 * KIB),
        (("my dir", ".pad", "0"), 6 * KIB),
        (("my dir", "sub", "ü%#?.bin"), 40 * KIB),
    ],
    piece_length=16 * KIB,
    multi=True,
)


def test_single_file_urls() -> None:
    assert file_urls("http://h/x/file.iso", SINGLE) == ("http://h/x/file.iso",)
    # A URL ending in "/" gets the torrent's name, percent-encoded (BEP 19).
    assert file_urls("http://h/pub/", SINGLE) == ("http://h/pub/big%20file.iso",)


def test_multi_file_urls_are_name_plus_path_percent_encoded() -> None:
    want = (
        "http://h/pub/my%20dir/a%20b.txt",
        "http://h/pub/my%20dir/.pad/0",
        "http://h/pub/my%20dir/sub/%C3%BC%25%23%3F.bin",
    )
    assert file_urls("http://h/pub/", MULTI) == want
    assert file_urls("http://h/pub", MULTI) == want  # the "/" a multi-file root needs


def test_usable_urls() -> None:
    assert usable_url("http://127.0.0.1:8080/x")
    assert usable_url("https://example.org/")
    for bad in ("ftp://h/x", "file:///etc/passwd", "http://", "nonsense", "http://[::1/"):
        assert not usable_url(bad)


def test_plan_ranges_one_request_per_file_and_no_pad_requests() -> None:
    layout = Layout.from_info(MULTI)
    urls = file_urls("http://h/", MULTI)
    # Bytes 8 KiB .. 24 KiB: the end of a.txt, the whole pad file, the start of the .bin.
    plan = plan_ranges(layout, urls, 8 * KIB, 16 * KIB + 2 * KIB)
    assert plan == [
        RangeRequest(0, urls[0], 8 * KIB, 2 * KIB, 10 * KIB),
        RangeRequest(1, None, 0, 6 * KIB, 6 * KIB),
        RangeRequest(2, urls[2], 0, 10 * KIB, 40 * KIB),
    ]
    assert plan[0].header == f"bytes={8 * KIB}-{10 * KIB - 1}"
    assert plan[2].end == 10 * KIB - 1


def test_contiguous_runs() -> None:
    blocks = [(3, 0, 16), (1, 16, 16), (1, 0, 16), (2, 0, 32)]
    assert contiguous_runs(blocks, 32) == [
        [(1, 0, 16), (1, 16, 16), (2, 0, 32), (3, 0, 16)],
    ]
    assert contiguous_runs([(0, 0, 16), (2, 0, 32)], 32) == [[(0, 0, 16)], [(2, 0, 32)]]


REQ = RangeRequest(0, "http://h/f", 1000, 500, 10_000)


def reply(status: int, **headers: str) -> tuple[int, dict[str, str]]:
    return status, {k.replace("_", "-"): v for k, v in headers.items()}


def test_good_206_reply() -> None:
    check_reply(*reply(206, content_range="bytes 1000-1499/10000", content_length="500"), REQ)
    check_reply(*reply(206, content_range="bytes 1000-1499/*"), REQ)


@pytest.mark.parametrize(
    ("status", "headers", "fatal", "words"),
    [
        # a server without range support answers the whole file: never read, drop
        (200, {"content-length": "10000"}, True, "200"),
        (206, {"content-range": "bytes 1001-1500/10000"}, True, "Content-Range"),
        (206, {"content-range": "bytes 1000-1499/9999"}, True, "9999"),
        (206, {"content-range": "bytes 0-0/10000, 1-1/10000"}, True, "Content-Range"),
        (206, {}, True, "Content-Range"),
        (206, {"content-range": "bytes 1000-1499/10000", "content-length": "501"}, True, "501"),
        (206, {"content-range": "bytes 1000-1499/*", "content-encoding": "gzip"}, True, "gzip"),
        (404, {}, True, "404"),
        (302, {}, True, "302"),
        (503, {}, False, "503"),
        (429, {}, False, "429"),
    ],
)
def test_bad_replies(status: int, headers: dict[str, str], fatal: bool, words: str) -> None:
    with pytest.raises(WebSeedError) as err:
        check_reply(status, headers, REQ)
    assert err.value.fatal is fatal
    assert words in str(err.value)


def test_200_is_fine_for_a_whole_file() -> None:
    whole = RangeRequest(0, "http://h/f", 0, 10_000, 10_000)
    check_reply(200, {"content-length": "10000"}, whole)
    with pytest.raises(WebSeedError):
        check_reply(200, {"content-length": "20000"}, whole)


def test_retry_delay_backs_off_to_a_cap() -> None:
    delays = [retry_delay(n) for n in range(1, 12)]
    assert delays[:4] == [5.0, 10.0, 20.0, 40.0]
    assert delays == sorted(delays)
    assert delays[-1] == RETRY_CAP
    assert retry_delay(10_000) == RETRY_CAP


def test_run_pieces() -> None:
    assert run_pieces(16 * KIB, 10_000) == 256  # 4 MiB of 16 KiB pieces
    assert run_pieces(16 * KIB, 64) == 4  # a sixteenth of a small torrent
    assert run_pieces(8 * 1024 * KIB, 10) == 1  # pieces over 4 MiB: one at a time


# ------------------------------------------------------------------ the picker's runs


def new_picker(num_pieces: int, piece_length: int = 2 * BLOCK_SIZE) -> Picker[str]:
    return Picker(
        piece_length=piece_length,
        total_length=num_pieces * piece_length,
        rng=random.Random(7),
    )


def test_pick_run_takes_whole_adjacent_pieces() -> None:
    picker = new_picker(32)
    picker.peer_have_all("web")
    blocks = picker.pick_run("web", 4)
    pieces = sorted({b[0] for b in blocks})
    assert len(pieces) == 4
    assert pieces == list(range(pieces[0], pieces[0] + 4))
    assert len(blocks) == 8  # every block of each piece
    picker.check_consistency()
    # A peer is not handed blocks the web seed holds: it gets other pieces.
    picker.peer_have_all("peer")
    theirs = picker.pick_blocks("peer", 8)
    assert not {b[0] for b in theirs} & set(pieces)
    picker.check_consistency()


def test_pick_run_stops_at_pieces_we_have_or_are_fetching() -> None:
    picker = new_picker(8)
    for i in (0, 1, 2, 3, 5, 6, 7):
        picker.set_have(i)
    picker.peer_have_all("web")
    assert {b[0] for b in picker.pick_run("web", 8)} == {4}


def test_pick_run_without_fresh_pieces_takes_free_blocks_then_endgame() -> None:
    picker = new_picker(2)
    picker.peer_have_all("peer")
    picker.peer_have_all("web")
    first = picker.pick_blocks("peer", 3)  # piece a whole, piece b half
    assert len(first) == 3
    got = picker.pick_run("web", 4)  # one piece's worth (2 blocks):
    free = [b for b in got if b not in first]
    assert len(free) == 1  # the one free block left, then (endgame) a duplicate
    assert len(got) == 2 and set(got) - set(free) <= set(first)
    dup = picker.pick_run("web", 4)  # endgame: more duplicates of the peer's blocks
    assert dup and set(dup) <= set(first)
    picker.check_consistency()


def test_pick_run_respects_priorities() -> None:
    picker = new_picker(16)
    picker.set_piece_priorities([1] * 8 + [7] * 8)
    picker.peer_have_all("web")
    assert {b[0] for b in picker.pick_run("web", 16)} == set(range(8, 16))
