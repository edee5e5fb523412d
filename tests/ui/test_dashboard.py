"""The dashboard frame, printed to rich's recording Console at several terminal sizes."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.cells import cell_len
from rich.console import Console

from tests.ui.snapshots import KIB, many_peers, peer, torrent
from torrentkit.engine.snapshot import PeerSnapshot, TorrentSnapshot
from torrentkit.ui.dashboard import (
    describe_event,
    flag_letters,
    format_duration,
    format_rate_short,
    render,
    table_columns,
)

WIDTHS = [60, 80, 120, 200]


def show(snap: TorrentSnapshot, width: int, height: int = 24, **kw: Any) -> list[str]:
    """The frame as plain text lines, as a terminal of ``width`` x ``height`` shows it."""
    console = Console(
        record=True, width=width, height=height, file=io.StringIO(), color_system="truecolor"
    )
    console.print(render(snap, width=width, height=height, **kw))
    return console.export_text().splitlines()


def raw(snap: TorrentSnapshot, width: int, height: int = 24, **kw: Any) -> str:
    """The bytes a real terminal would receive (styles included)."""
    out = io.StringIO()
    console = Console(
        file=out, width=width, height=height, force_terminal=True, color_system="truecolor"
    )
    console.print(render(snap, width=width, height=height, **kw))
    return out.getvalue()


def rows(lines: list[str]) -> dict[str, list[str]]:
    """Peer table rows by address: the whitespace-separated cells after it."""
    out: dict[str, list[str]] = {}
    for line in lines:
        m = re.match(r"^(\d+\.\d+\.\d+\.\d+:\d+)\s+(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2).split()
    return out


def header(lines: list[str]) -> list[str]:
    return next(line.split() for line in lines if line.startswith("address"))


def assert_fits(lines: list[str], width: int, height: int) -> None:
    assert len(lines) <= height, len(lines)
    for line in lines:
        assert cell_len(line) <= width, line


# ------------------------------------------------------------------------- flags


# (am_interested, peer_choking, peer_interested, am_choking) -> first two letters
STATES = [
    (True, False, True, False, "DU"),
    (True, True, True, True, "du"),
    (False, False, False, False, "K?"),
    (False, True, False, True, ".."),
    (True, False, False, True, "D."),
    (False, True, True, False, ".U"),
]


@pytest.mark.parametrize(("am_int", "peer_choke", "peer_int", "am_choke", "letters"), STATES)
def test_flag_letters_follow_the_four_flags(
    am_int: bool, peer_choke: bool, peer_int: bool, am_choke: bool, letters: str
) -> None:
    p = peer(
        "127.0.0.1:5001",
        am_interested=am_int,
        peer_choking=peer_choke,
        peer_interested=peer_int,
        am_choking=am_choke,
    )
    assert flag_letters(p) == letters + "..."


def test_optimistic_snubbed_and_incoming_positions() -> None:
    p = peer("127.0.0.1:5001", optimistic=True, snubbed=True, outgoing=False)
    assert flag_letters(p) == "..OSI"
    assert flag_letters(peer("127.0.0.1:5002", optimistic=True)) == "..O.."
    assert flag_letters(peer("127.0.0.1:5003", snubbed=True)) == "...S."


def _mixed_swarm() -> tuple[PeerSnapshot, ...]:
    return (
        peer(
            "127.0.0.1:5001",
            am_interested=True,
            peer_choking=False,
            peer_interested=True,
            am_choking=False,
            down_rate=200 * KIB,
        ),
        peer("127.0.0.1:5002", am_interested=True, snubbed=True, down_rate=100 * KIB),
        peer(
            "127.0.0.1:5003",
            optimistic=True,
            peer_interested=True,
            am_choking=False,
            down_rate=50 * KIB,
        ),
        peer("127.0.0.1:5004", peer_interested=True, outgoing=False, down_rate=10 * KIB),
    )


@pytest.mark.parametrize("width", WIDTHS)
def test_the_table_shows_each_peers_flags(width: int) -> None:
    lines = show(torrent(_mixed_swarm()), width)
    table = rows(lines)
    assert {a: cells[0] for a, cells in table.items()} == {
        "127.0.0.1:5001": "DU...",
        "127.0.0.1:5002": "d..S.",
        "127.0.0.1:5003": ".UO..",
        "127.0.0.1:5004": ".u..I",
    }
    # busiest downloads first
    assert list(table) == [f"127.0.0.1:500{k}" for k in (1, 2, 3, 4)]
    assert_fits(lines, width, 24)


def test_flag_letters_are_coloured() -> None:
    out = raw(torrent(_mixed_swarm()), 120)
    # "D" in bold green, "S" in bold red, "O" in bold magenta (SGR 1;32 / 1;31 / 1;35)
    assert "\x1b[1;32mD" in out
    assert "\x1b[1;31mS" in out
    assert "\x1b[1;35mO" in out


def test_legend_explains_the_letters() -> None:
    for width in WIDTHS:
        last = show(torrent(_mixed_swarm()), width)[-1]
        assert "O optimistic" in last and "S snubbed" in last and "I incoming" in last, last
        assert "D/d" in last and "U/u" in last


# ------------------------------------------------------------------------- columns


def test_columns_drop_as_the_terminal_narrows() -> None:
    snaps = torrent(_mixed_swarm())
    cols = {w: header(show(snaps, w)) for w in [*WIDTHS, 50, 34, 25]}
    full = ["address", "flags", "down", "up", "have", "unchk", "client", "got", "sent", "conn"]
    assert cols[200] == full
    assert cols[120] == full
    assert cols[80] == full[:-1]  # conn dropped
    assert cols[60] == full[:7]  # the totals dropped, client kept (it just fits)
    assert cols[50] == full[:6]  # client dropped
    assert cols[34] == full[:4]  # unchoked time and the peer's progress dropped
    assert cols[25] == full[:2]  # only the address and the flags
    for w, c in cols.items():
        assert c[:2] == ["address", "flags"], w


def test_long_addresses_drop_columns_sooner() -> None:
    # "255.255.255.255:65535" is 21 cells: at 80, client still fits but the totals do not
    assert table_columns(80, addr_width=21) == [
        "address",
        "flags",
        "down",
        "up",
        "have",
        "unchk",
        "client",
        "got",
    ]
    assert table_columns(60, addr_width=21) == ["address", "flags", "down", "up", "have", "unchk"]


def test_client_column_shrinks_before_it_drops() -> None:
    p = peer("127.0.0.1:5001", client="Transmission 3.00 with a long tail")
    lines = show(torrent((p,)), 60)
    row = next(line for line in lines if line.startswith("127.0.0.1:5001"))
    assert "Transmission" in row and row.rstrip().endswith("…")
    assert_fits(lines, 60, 24)


# ------------------------------------------------------------------------- rows and height


@pytest.mark.parametrize("width", WIDTHS)
def test_rows_that_do_not_fit_become_plus_n_more(width: int) -> None:
    peers = many_peers(50)
    lines = show(torrent(peers), width, 24)
    assert_fits(lines, width, 24)
    assert len(lines) == 24  # the table takes every line the other parts leave
    shown = rows(lines)
    more = [line for line in lines if re.match(r"^\+\d+ more$", line.strip())]
    assert len(more) == 1
    assert int(more[0].strip().split()[0][1:]) == 50 - len(shown)
    # the ones shown are the fastest
    assert list(shown) == [p.addr for p in peers[: len(shown)]]


def test_every_peer_shown_when_there_is_room() -> None:
    peers = many_peers(5)
    lines = show(torrent(peers), 80, 24)
    assert len(rows(lines)) == 5
    assert not any("more" in line for line in lines)


def test_taller_terminals_show_more_rows() -> None:
    peers = many_peers(50)
    assert len(rows(show(torrent(peers), 120, 40))) > len(rows(show(torrent(peers), 120, 24)))


def test_seeding_sorts_by_upload_rate() -> None:
    peers = (
        peer("127.0.0.1:5001", up_rate=1.0),
        peer("127.0.0.1:5002", up_rate=300.0),
        peer("127.0.0.1:5003", up_rate=20.0),
    )
    table = rows(show(torrent(peers, complete=True, pieces_have=400, eta=None), 80))
    assert list(table) == ["127.0.0.1:5002", "127.0.0.1:5003", "127.0.0.1:5001"]


@settings(max_examples=150, deadline=None)
@given(
    width=st.integers(20, 260),
    height=st.integers(1, 90),
    n_peers=st.integers(0, 60),
    n_events=st.integers(0, 100),
)
def test_any_size_fits(width: int, height: int, n_peers: int, n_events: int) -> None:
    events = tuple(
        {"event": "unchoke", "t": float(k), "peer": "127.0.0.1:6000", "reason": "rate"}
        for k in range(n_events)
    )
    snap = torrent(many_peers(n_peers), events=events, name="n" * 300)
    assert_fits(show(snap, width, height), width, height)


# ------------------------------------------------------------------------- hostile text

HOSTILE = [
    "\x1b[2J\x1b[31mred",  # clear screen + colour
    "\x1b]0;owned\x07",  # OSC: set the window title, BEL-terminated
    "\x9b31m",  # C1 CSI
    "[bold]loud[/bold]",  # rich markup
    "[link=file:///etc/passwd]x[/link]",
    "bidi\u202eevil",
    "x" * 500,
]


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_names_are_shown_escaped(width: int, text: str) -> None:
    snap = torrent(
        (peer("127.0.0.1:5001", client=text, down_rate=1.0),),
        name=text,
        events=(
            {"event": "peer_connected", "t": 1.0, "peer": "127.0.0.1:5001", "client": text},
            {"event": "banned", "t": 2.0, "peer": "127.0.0.1:5001", "reason": text},
        ),
    )
    out = raw(snap, width, 24, title=text)
    # The only escape sequences that reach the terminal are rich's own colour codes.
    visible = re.sub(r"\x1b\[[0-9;]*m", "", out)
    assert all(c == "\n" or c.isprintable() for c in visible)
    for bad in ("\x1b]", "\x07", "\x9b", "\u202e", "\x1b[2J"):
        assert bad not in out
    lines = show(snap, width, 24, title=text)
    assert_fits(lines, width, 24)
    text_out = "\n".join(lines)
    if "\x1b" in text:
        assert "\\x1b" in text_out
    if text.startswith("["):
        assert text[:6] in text_out  # the markup shows as typed, it is not applied


def test_markup_in_a_name_is_never_applied() -> None:
    snap = torrent(name="[bold red]not bold[/]")
    out = raw(snap, 120)
    assert "[bold red]not bold[/]" in out
    title_line = out.splitlines()[0]
    assert "\x1b[1;31mnot bold" not in title_line


def test_very_long_names_are_cut_with_an_ellipsis() -> None:
    lines = show(torrent(name="A" * 1000), 80)
    assert lines[0].endswith("…") and cell_len(lines[0]) == 80


# ------------------------------------------------------------------------- header and map


def test_header_shows_name_progress_rates_eta_ratio_and_peers() -> None:
    snap = torrent(many_peers(3), ratio=0.42, eta=65.0)
    lines = show(snap, 120, 24, title="leech2", selected=2, count=6, hint="q quit")
    assert "3/6" in lines[0] and "leech2" in lines[0] and "ubuntu.iso" in lines[0]
    assert lines[0].rstrip().endswith("q quit")
    assert "45.0%" in lines[1] and "180/400 pieces" in lines[1] and "ETA 1m05" in lines[1]
    assert "↓ 5.9 KiB/s" in lines[2] and "↑ 0 B/s" in lines[2]
    assert "ratio 0.42" in lines[2] and "peers 3 (6 known)" in lines[2]


def test_single_snapshot_has_no_k_of_n() -> None:
    assert "1/1" not in show(torrent(), 80, selected=0, count=1)[0]


def test_complete_and_error_states() -> None:
    done = show(torrent(complete=True, pieces_have=400, eta=None), 80)
    assert "100.0%" in done[1] and "complete" in done[1]
    failed = show(torrent(error="disk full"), 80)
    assert "error" in failed[1]
    assert any(line.startswith("error: disk full") for line in failed)


def _map_row(lines: list[str]) -> str:
    i = next(k for k, line in enumerate(lines) if line.startswith("pieces "))
    return lines[i + 1]


@pytest.mark.parametrize("width", WIDTHS)
def test_piece_map_fits_the_width(width: int) -> None:
    cells = tuple((1.0, 0.0, 2.0) if i < 5 else (0.0, 0.0, 0.0) for i in range(10))
    row = _map_row(show(torrent(piece_map=cells, num_pieces=10, pieces_have=5), width))
    assert len(row) == width
    assert row == "█" * (width // 2) + "░" * (width - width // 2)


def test_piece_map_marks_pieces_in_flight() -> None:
    cells = ((1.0, 0.0, 1.0), (0.0, 0.5, 1.0), (0.0, 0.0, 3.0), (0.0, 0.0, 0.0))
    row = _map_row(show(torrent(piece_map=cells, num_pieces=4, pieces_have=1), 80))
    assert row == "█" * 20 + "▒" * 20 + "░" * 40


def test_piece_map_shades_availability() -> None:
    cells = ((0.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, 0.0, 5.0))
    out = raw(torrent(piece_map=cells, num_pieces=3, pieces_have=0), 60)
    # nobody has it: red; one peer: blue; many: bright cyan
    assert "\x1b[31m░" in out and "\x1b[34m░" in out and "\x1b[96m░" in out


# ------------------------------------------------------------------------- event log

EVENTS: list[tuple[dict[str, Any], str]] = [
    (
        {"event": "unchoke", "peer": "127.0.0.1:5001", "reason": "rate"},
        "unchoked 127.0.0.1:5001 (rate)",
    ),
    (
        {"event": "unchoke", "peer": "127.0.0.1:5004", "reason": "optimistic"},
        "unchoked 127.0.0.1:5004 (optimistic)",
    ),
    (
        {"event": "choke", "peer": "127.0.0.1:5001", "reason": "snubbed"},
        "choked 127.0.0.1:5001 (snubbed)",
    ),
    ({"event": "optimistic", "peer": "127.0.0.1:5004"}, "optimistic -> 127.0.0.1:5004"),
    ({"event": "snubbed", "peer": "127.0.0.1:5002"}, "127.0.0.1:5002 snubbed"),
    (
        {"event": "hash_failed", "index": 17, "peers": []},
        "piece 17 failed its hash check",
    ),
    (
        {"event": "hash_failed", "index": 3, "peers": ["127.0.0.1:5003", "127.0.0.1:5005"]},
        "piece 3 failed its hash check (from 127.0.0.1:5003, 127.0.0.1:5005)",
    ),
    (
        {"event": "banned", "peer": "127.0.0.1:5003", "reason": "sent corrupt data"},
        "banned 127.0.0.1:5003: sent corrupt data",
    ),
    (
        {"event": "peer_connected", "peer": "127.0.0.1:5006", "client": "aria2 1.36.0"},
        "127.0.0.1:5006 connected (aria2 1.36.0)",
    ),
    (
        {"event": "peer_disconnected", "peer": "127.0.0.1:5006", "reason": "timeout"},
        "127.0.0.1:5006 disconnected (timeout)",
    ),
    (
        {"event": "interested", "peer": "127.0.0.1:5001", "direction": "ours"},
        "we are interested in 127.0.0.1:5001",
    ),
    (
        {"event": "not_interested", "peer": "127.0.0.1:5001", "direction": "theirs"},
        "127.0.0.1:5001 is no longer interested",
    ),
    ({"event": "completed", "seconds": 75.5}, "download complete in 1m15"),
    ({"event": "mystery", "x": 1}, "mystery x=1"),
]


@pytest.mark.parametrize(("event", "words"), EVENTS)
def test_events_in_words(event: dict[str, Any], words: str) -> None:
    assert describe_event({**event, "t": 1.0})[0] == words


def test_event_log_shows_the_latest_newest_last() -> None:
    events = tuple(
        {"event": "optimistic", "t": 10.0 * k, "peer": f"127.0.0.1:{7000 + k}"} for k in range(30)
    )
    lines = show(torrent(many_peers(40), events=events), 80, 24)
    i = lines.index(next(line for line in lines if line.startswith("events")))
    log = lines[i + 1 : -1]
    assert log == [
        f"{f'{(10 * k) // 60}:{(10 * k) % 60:02d}':>7} optimistic -> 127.0.0.1:{7000 + k}"
        for k in range(30 - len(log), 30)
    ]
    assert len(log) >= 3


def test_spare_lines_go_to_the_event_log() -> None:
    events = tuple(
        {"event": "snubbed", "t": float(k), "peer": f"127.0.0.1:{7000 + k}"} for k in range(30)
    )
    few = show(torrent(many_peers(2), events=events), 80, 24)
    assert sum("snubbed" in line for line in few) > 4
    assert len(few) == 24


def test_hostile_event_fields_are_escaped() -> None:
    text, _ = describe_event(
        {"event": "peer_disconnected", "peer": "1.2.3.4:5", "reason": "\x1b[2Jbye"}
    )
    assert text == "1.2.3.4:5 disconnected (\\x1b[2Jbye)"


# ------------------------------------------------------------------------- formatting


@given(st.floats(0) | st.just(float("nan")))
def test_short_rates_fit_five_cells(bps: float) -> None:
    assert len(format_rate_short(bps)) <= 5


@given(st.floats(0) | st.just(float("nan")))
def test_durations_fit_five_cells(seconds: float) -> None:
    assert len(format_duration(seconds)) <= 5


def test_formats() -> None:
    assert [format_rate_short(v) for v in (0, 500, 9.8 * KIB, 512 * KIB, 1.2 * KIB * KIB)] == [
        "0",
        "500B",
        "9.8K",
        "512K",
        "1.2M",
    ]
    durations = (0, 59, 725, 3 * 3600 + 420, 200 * 3600, 1e12)
    assert [format_duration(s) for s in durations] == ["0s", "59s", "12m05", "3h07", "8d", "∞"]


def test_interest_changes_stay_out_of_the_log() -> None:
    events = (
        {"event": "optimistic", "t": 1.0, "peer": "127.0.0.1:5004"},
        *(
            {"event": "interested", "t": 2.0, "peer": f"127.0.0.1:{6000 + k}", "direction": "ours"}
            for k in range(20)
        ),
    )
    lines = show(torrent(many_peers(40), events=events), 80, 24)
    assert any("optimistic -> 127.0.0.1:5004" in line for line in lines)
    assert not any("interested" in line for line in lines)


@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "event": st.sampled_from([e["event"] for e, _ in EVENTS]),
                "t": st.floats() | st.integers() | st.text(),
            },
            optional={
                "peer": st.text(),
                "reason": st.text(),
                "index": st.integers() | st.text(),
                "peers": st.lists(st.text()) | st.none(),
                "client": st.text() | st.none(),
                "seconds": st.floats() | st.text(),
            },
        ),
        max_size=8,
    )
)
def test_any_event_fields_render(events: list[dict[str, Any]]) -> None:
    lines = show(torrent(events=tuple(events)), 80, 24)
    assert_fits(lines, 80, 24)
    assert all(c.isprintable() for line in lines for c in line)


def test_invisible_characters_are_made_visible() -> None:
    name = "pay\u200bpal\u200f\u2028x\ue000"  # zero-width space, RLM, line separator, private use
    line = show(torrent(name=name), 80)[0]
    assert "pay\\u200bpal\\u200f\\u2028x\\ue000" in line
    assert "日本語" in show(torrent(name="日本語.iso"), 80)[0]  # ordinary text stays as it is
