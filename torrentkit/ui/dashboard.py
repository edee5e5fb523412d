"""The live dashboard as a pure function: a snapshot and a terminal size in, one rich
renderable out (issue 5).

``render(snap, width=, height=)`` never reads the clock, the terminal or the engine, so it is
tested by printing to a recording Console and benchmarked by tools/bench_ui.py. The frame is
built to fit ``width`` x ``height`` (every line is cut with an ellipsis, never wrapped), so a
Live display never has to crop or scroll it.

Layout, top to bottom::

    header     k/n title · name                                   keys hint
               ━━━━━━━━━━━━━━━━━━━━━━━╸──────────  45.2%  180/400 pieces  ETA 1m05
               ↓ 1.2 MiB/s  ↑ 310 KiB/s  ratio 0.42  peers 12 (40 known, 1 banned)
    piece map  label line, then 1-3 rows fit to the width
    peers      one row per connected peer, cut to the rows that fit + "+N more"
    events     the last few engine events in words, newest at the bottom
    legend     what the flag letters mean (the longest wording that fits)

Narrow terminals drop table columns in this order: the wide-only totals (conn, sent, got),
then client, then unchoked time, then the peer's progress and the rates; the address and
the flags always stay.

Cost: lines are built as (text, style) runs of known cell width and drawn as rich Segments
by :class:`Frame`. rich's Table/Text layout (per-cell padding, wrapping, justifying) made a
50-peer frame cost 20-30 ms; fixed-width runs cost a fraction of that (tools/bench_ui.py),
so four frames a second stay well under 5% of a core.

Every string that came from the network (torrent name, client names, reasons) goes through
:func:`~torrentkit.text.safe_text` and is drawn as plain text, never parsed as markup:
``[bold]`` in a name shows as typed and an ESC byte as ``\\x1b``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from rich.cells import cell_len, set_cell_size
from rich.console import Console, ConsoleOptions, RenderResult
from rich.progress_bar import ProgressBar
from rich.segment import Segment
from rich.style import Style

from torrentkit.engine.snapshot import PeerSnapshot, TorrentSnapshot
from torrentkit.events import Event
from torrentkit.text import format_duration, format_rate, format_size, safe_text

__all__ = [
    "LEGENDS",
    "QUIET_EVENTS",
    "Frame",
    "describe_event",
    "flag_letters",
    "format_duration",
    "format_rate",
    "format_rate_short",
    "format_size",
    "render",
]

#: a run of text in one style; a line is a list of runs
Run = tuple[str, str]
Line = list[Run]


# ----------------------------------------------------------------------------- formatting


@lru_cache(maxsize=4096)
def _clean_str(text: str) -> str:
    text = safe_text(text)
    if text.isprintable():
        return text
    # What safe_text leaves: format characters (zero-width, bidi marks), unassigned and
    # private-use code points, lone surrogates, line/paragraph separators.
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


def _clean(value: object) -> str:
    """Network text made safe and visible: control characters escaped as ``\\x1b`` (as the
    CLI does), anything else not printable as ``\\u200b``. Cached: the same names come
    back every frame."""
    return _clean_str(str(value))


def format_rate_short(bps: float) -> str:
    """A rate in at most 5 cells for the table: ``0``, ``980B``, ``9.8K``, ``512K``, ``1.2M``."""
    if not bps >= 1:  # also NaN
        return "0"
    if not bps < 999.5 * 1024.0**4:
        return "∞"
    for unit, scale in (("B", 1.0), ("K", 1024.0), ("M", 1024.0**2), ("G", 1024.0**3)):
        v = bps / scale
        if v < 9.95:
            return f"{v:.1f}{unit}" if unit != "B" else f"{v:.0f}B"
        if v < 999.5:
            return f"{v:.0f}{unit}"
    return f"{bps / 1024.0**4:.0f}T"


def _clock(t: float) -> str:
    if not 0 <= t < 1e9:  # also NaN
        return "?"
    s = int(t)
    if s < 3600:
        return f"{s // 60}:{s % 60:02d}"
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


# ----------------------------------------------------------------------------- lines


def _fit(line: Iterable[Run], width: int) -> Line:
    """``line`` cut to ``width`` cells, ending in an ellipsis where it was cut."""
    runs = list(line)
    if sum(cell_len(t) for t, _ in runs) <= width:
        return runs
    out: Line = []
    room = width - 1
    for text, style in runs:
        n = cell_len(text)
        if n <= room:
            out.append((text, style))
            room -= n
            continue
        if room > 0:
            out.append((set_cell_size(text, room), style))
        out.append(("…", style))
        break
    return out


def _cell(text: str, width: int, *, right: bool = False) -> str:
    """``text`` in exactly ``width`` cells: padded, or cut with an ellipsis."""
    n = cell_len(text)
    if n > width:
        return set_cell_size(text, width - 1) + "…" if width > 0 else ""
    pad = " " * (width - n)
    return pad + text if right else text + pad


def _line_len(line: Line) -> int:
    return sum(cell_len(t) for t, _ in line)


@dataclass(frozen=True, slots=True)
class _BarLine:
    """A progress bar ``bar_width`` cells wide, then ``rest``."""

    bar: ProgressBar
    bar_width: int
    rest: Line


class Frame:
    """One dashboard frame: lines of styled runs, each already fit to the width."""

    __slots__ = ("lines", "width")

    def __init__(self, lines: list[Line | _BarLine], width: int) -> None:
        self.lines = lines
        self.width = width

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        styles: dict[str, Style] = {}

        def style_of(name: str) -> Style:
            st = styles.get(name)
            if st is None:
                st = styles[name] = console.get_style(name, default="none")
            return st

        newline = Segment.line()
        for line in self.lines:
            if isinstance(line, _BarLine):
                drawn = 0
                for seg in console.render(line.bar, options.update_width(line.bar_width)):
                    drawn += seg.cell_length
                    yield seg
                yield Segment(" " * (line.bar_width - drawn + 1))
                runs = line.rest
            else:
                runs = line
            for text, style in runs:
                yield Segment(text, style_of(style) if style else None)
            yield newline


# ----------------------------------------------------------------------------- peer flags

# (letter, style). Positions are fixed so the column lines up; "." is an unset position.
_DOWN_UNCHOKED = ("D", "bold green")  # we are interested and they unchoke us: downloading
_DOWN_CHOKED = ("d", "yellow")  # we are interested but they choke us
_DOWN_IDLE = ("K", "green")  # they unchoke us but we are not interested
_UP_UNCHOKED = ("U", "bold cyan")  # they are interested and we unchoke them: uploading
_UP_CHOKED = ("u", "magenta")  # they are interested but we choke them
_UP_IDLE = ("?", "cyan")  # we unchoke them but they are not interested
_OPTIMISTIC = ("O", "bold magenta")
_SNUBBED = ("S", "bold red")
_INCOMING = ("I", "blue")
_UNSET = (".", "bright_black")

FLAG_WIDTH = 5


def _flag_runs(p: PeerSnapshot) -> Line:
    if p.am_interested:
        down = _DOWN_CHOKED if p.peer_choking else _DOWN_UNCHOKED
    else:
        down = _UNSET if p.peer_choking else _DOWN_IDLE
    if p.peer_interested:
        up = _UP_CHOKED if p.am_choking else _UP_UNCHOKED
    else:
        up = _UNSET if p.am_choking else _UP_IDLE
    return [
        down,
        up,
        _OPTIMISTIC if p.optimistic else _UNSET,
        _SNUBBED if p.snubbed else _UNSET,
        _UNSET if p.outgoing else _INCOMING,
    ]


def flag_letters(p: PeerSnapshot) -> str:
    """The peer's flags as shown, 5 fixed positions (``"."`` = unset):

    1. D: we are interested and they unchoke us (downloading) · d: we are interested, they
       choke us · K: they unchoke us, we are not interested (uTorrent's letters)
    2. U: they are interested and we unchoke them (uploading) · u: they are interested, we
       choke them · ?: we unchoke them, they are not interested
    3. O: they hold our optimistic unchoke slot
    4. S: snubbed (an unchoking peer sent us nothing for a while)
    5. I: incoming connection (they dialled us)
    """
    return "".join(letter for letter, _ in _flag_runs(p))


#: Footer legends, longest first; the first that fits the width is shown.
LEGENDS: tuple[str, ...] = (
    "D downloading · d they choke us · K they unchoke, we're not interested · "
    "U uploading · u we choke them · ? we unchoke, they're not interested · "
    "O optimistic · S snubbed · I incoming · map: █ have ▒ in flight ░ missing (red: nobody)",
    "D/d down: unchoked/choked by them · U/u up: unchoked/choked by us · "
    "K,? unchoked, not interested · O optimistic · S snubbed · I incoming",
    "D/d down unchoked/choked · U/u up unchoked/choked · O optimistic · S snubbed · I incoming",
    "D/d down U/u up · O optimistic · S snubbed · I incoming",
    "D down U up O optim. S snub I in",
)


# ----------------------------------------------------------------------------- event log

#: left out of the log: interest shows in the flags column, and these would crowd out the
#: choke decisions the log is for
QUIET_EVENTS = frozenset({"interested", "not_interested", "piece"})


def describe_event(event: Event | Mapping[str, Any]) -> tuple[str, str]:
    """One engine event in words, with a style: ``("unchoked 127.0.0.1:5001 (rate)",
    "green")``. Unknown events show their name and fields. The text is already escaped."""
    ev = event.to_json() if isinstance(event, Event) else event
    kind = ev.get("event")
    peer = _clean(ev.get("peer", "?"))
    text: str
    style = ""
    if kind == "unchoke":
        text, style = f"unchoked {peer} ({_clean(ev.get('reason', '?'))})", "green"
    elif kind == "choke":
        text, style = f"choked {peer} ({_clean(ev.get('reason', '?'))})", "yellow"
    elif kind == "optimistic":
        text, style = f"optimistic -> {peer}", "magenta"
    elif kind == "snubbed":
        text, style = f"{peer} snubbed", "red"
    elif kind == "hash_failed":
        peers = ev.get("peers") or ()
        senders = ", ".join(_clean(p) for p in peers) if isinstance(peers, list | tuple) else ""
        text = f"piece {_clean(ev.get('index', '?'))} failed its hash check"
        text += f" (from {senders})" if senders else ""
        style = "bold red"
    elif kind == "banned":
        text, style = f"banned {peer}: {_clean(ev.get('reason', '?'))}", "bold red"
    elif kind == "peer_connected":
        client = ev.get("client")
        text = f"{peer} connected" + (f" ({_clean(client)})" if client else "")
        style = "dim"
    elif kind == "peer_disconnected":
        reason = ev.get("reason")
        text = f"{peer} disconnected" + (f" ({_clean(reason)})" if reason else "")
        style = "dim"
    elif kind in ("interested", "not_interested"):
        neg = kind == "not_interested"
        if ev.get("direction") == "ours":
            text = f"we are {'no longer ' if neg else ''}interested in {peer}"
        else:
            text = f"{peer} is {'no longer ' if neg else ''}interested"
        style = "dim"
    elif kind == "completed":
        seconds = ev.get("seconds")
        took = f" in {format_duration(seconds)}" if isinstance(seconds, int | float) else ""
        text, style = f"download complete{took}", "bold green"
    elif kind == "piece":
        text, style = f"got piece {_clean(ev.get('index', '?'))}", "dim"
    elif kind == "checked":
        text = f"checked: {_clean(ev.get('pieces', '?'))}/{_clean(ev.get('num_pieces', '?'))}"
        text += " pieces present"
    elif kind == "error":
        text, style = f"error: {_clean(ev.get('message', '?'))}", "bold red"
    elif kind == "tracker_error":
        source, message = _clean(ev.get("source", "?")), _clean(ev.get("message", "?"))
        text, style = f"tracker {source}: {message}", "red"
    else:
        fields = " ".join(
            f"{_clean(k)}={_clean(v)}"
            for k, v in ev.items()
            if k not in ("event", "t", "info_hash")
        )
        text = f"{_clean(kind)} {fields}".rstrip()
    return text, style


def _kind(event: Event | Mapping[str, Any]) -> Any:
    return event.kind if isinstance(event, Event) else event.get("event")


# ----------------------------------------------------------------------------- piece map


Cell = tuple[float, float, float]


def _resample(cells: Sequence[Cell], n: int) -> list[Cell]:
    """``cells`` stretched or averaged onto ``n`` cells."""
    m = len(cells)
    if m == n:
        return list(cells)
    out: list[Cell] = []
    for j in range(n):
        lo = j * m // n
        hi = max((j + 1) * m // n, lo + 1)
        run = cells[lo:hi]
        k = len(run)
        if k == 1:
            out.append(run[0])
            continue
        out.append(
            (
                sum(c[0] for c in run) / k,
                sum(c[1] for c in run) / k,
                sum(c[2] for c in run) / k,
            )
        )
    return out


def _map_cell(have: float, flight: float, avail: float) -> Run:
    if have >= 0.999:
        return "█", "green"
    if flight > 0:
        return "▒", "yellow"
    if have > 0:
        return "▓", "green"
    if avail < 0.5:
        return "░", "red"  # no connected peer has it
    if avail < 1.5:
        return "░", "blue"
    if avail < 3.5:
        return "░", "bright_blue"
    return "░", "bright_cyan"


def _piece_map(snap: TorrentSnapshot, width: int, rows: int) -> list[Line]:
    """The snapshot's piece map spread over ``rows`` lines of ``width`` cells (fewer rows
    when there are fewer cells than that); equal neighbours share one run."""
    src = snap.piece_map
    if not src or width < 1 or rows < 1:
        return []
    rows = min(rows, -(-len(src) // width))
    cells = _resample(src, width * rows)
    lines: list[Line] = []
    for r in range(rows):
        line: Line = []
        run_char, run_style, run_len = "", "", 0
        for have, flight, avail in cells[r * width : (r + 1) * width]:
            ch, st = _map_cell(have, flight, avail)
            if ch == run_char and st == run_style:
                run_len += 1
                continue
            if run_len:
                line.append((run_char * run_len, run_style))
            run_char, run_style, run_len = ch, st, 1
        if run_len:
            line.append((run_char * run_len, run_style))
        lines.append(line)
    return lines


# ----------------------------------------------------------------------------- peers table


@dataclass(frozen=True, slots=True, kw_only=True)
class _Column:
    header: str
    width: int  # the client column may grow to max_width
    cell: Callable[[PeerSnapshot], Run]
    right: bool = True
    max_width: int = 0


def _rate_run(v: float, style: str) -> Run:
    return format_rate_short(v), style if v >= 1 else "bright_black"


#: optional columns, highest priority first: the last are dropped first when narrow
_OPTIONAL_COLUMNS: tuple[_Column, ...] = (
    _Column(header="down", width=5, cell=lambda p: _rate_run(p.down_rate, "green")),
    _Column(header="up", width=5, cell=lambda p: _rate_run(p.up_rate, "cyan")),
    _Column(header="have", width=4, cell=lambda p: (f"{p.progress * 100:.0f}%", "")),
    _Column(header="unchk", width=5, cell=lambda p: (format_duration(p.unchoked_seconds), "")),
    _Column(
        header="client",
        width=10,
        max_width=24,
        right=False,
        cell=lambda p: (_clean(p.client) or "?", ""),
    ),
    _Column(header="got", width=9, cell=lambda p: (format_size(p.downloaded), "")),
    _Column(header="sent", width=9, cell=lambda p: (format_size(p.uploaded), "")),
    _Column(header="conn", width=5, cell=lambda p: (format_duration(p.connected_for), "")),
)


def table_columns(width: int, addr_width: int = 21, client_width: int = 16) -> list[str]:
    """The headers of the peer table at ``width`` cells (for docs and tests)."""
    cols = _choose_columns(width, addr_width, client_width)
    return ["address", "flags", *(c.header for c in cols)]


def _choose_columns(width: int, addr_width: int, client_width: int) -> list[_Column]:
    """The optional columns that fit after the address and flags, in priority order; the
    client column asks for ``client_width`` (its longest name) and settles for less."""
    used = addr_width + 1 + FLAG_WIDTH
    chosen: list[_Column] = []
    for col in _OPTIONAL_COLUMNS:
        want = col.width
        if col.max_width:
            want = max(col.width, min(col.max_width, client_width, width - used - 1))
        if used + 1 + want > width:
            break
        chosen.append(
            _Column(header=col.header, width=want, cell=col.cell, right=col.right)
            if want != col.width
            else col
        )
        used += 1 + want
    return chosen


def _sorted_peers(snap: TorrentSnapshot) -> list[PeerSnapshot]:
    """Busiest first: by download rate while downloading, by upload rate once complete."""
    if snap.complete:
        return sorted(snap.peers, key=lambda p: (-p.up_rate, -p.down_rate, p.addr))
    return sorted(snap.peers, key=lambda p: (-p.down_rate, -p.up_rate, p.addr))


def _peers_table(peers: Sequence[PeerSnapshot], width: int, rows: int) -> list[Line]:
    """A header line and at most ``rows`` lines (the last one "+N more" when cut)."""
    addrs = [_clean(p.addr) for p in peers]
    addr_width = min(max([9, *(len(a) for a in addrs)]), 28, max(9, width - 1 - FLAG_WIDTH))
    client_width = max([6, *(cell_len(_clean(p.client)) for p in peers)])
    columns = _choose_columns(width, addr_width, client_width)
    header = " ".join(
        [
            _cell("address", addr_width),
            _cell("flags", FLAG_WIDTH),
            *(_cell(c.header, c.width, right=c.right) for c in columns),
        ]
    )
    lines: list[Line] = [_fit([(header, "bold")], width)]
    total = len(peers)
    shown = total if total <= rows else max(0, rows - 1)
    for p, addr in zip(peers[:shown], addrs, strict=False):
        addr_style = "red" if p.snubbed else ("magenta" if p.optimistic else "")
        line: Line = [(_cell(addr, addr_width), addr_style), (" ", ""), *_flag_runs(p)]
        for col in columns:
            text, style = col.cell(p)
            line.append((" ", ""))
            line.append((_cell(text, col.width, right=col.right), style))
        lines.append(_fit(line, width))
    if shown < total:
        lines.append([(f"+{total - shown} more", "italic")])
    if not peers:
        lines.append([("no peers yet", "dim")])
    return lines


# ----------------------------------------------------------------------------- header


def _title_line(
    snap: TorrentSnapshot,
    width: int,
    title: str | None,
    selected: int | None,
    count: int | None,
    hint: str | None,
) -> Line:
    line: Line = []
    if count is not None and count > 1 and selected is not None:
        line += [(f" {selected + 1}/{count} ", "bold reverse"), (" ", "")]
    if title:
        line += [(_clean(title), "bold"), (" · ", "dim")]
    line.append((_clean(snap.name) or "?", "bold cyan"))
    if hint:
        used, hint_len = _line_len(line), cell_len(hint)
        if used + 2 + hint_len <= width:
            line += [(" " * (width - used - hint_len), ""), (hint, "dim")]
    return _fit(line, width)


def _progress_line(snap: TorrentSnapshot, width: int) -> Line | _BarLine:
    if snap.error:
        status, style = "error", "bold red"
    elif snap.complete:
        status, style = "complete", "bold green"
    elif snap.eta is not None:
        status, style = f"ETA {format_duration(snap.eta)}", ""
    else:
        status, style = "ETA -", "dim"
    rest: Line = [
        (f"{snap.progress * 100:5.1f}%", "bold"),
        ("  ", ""),
        (f"{snap.pieces_have}/{snap.num_pieces} pieces", "dim"),
        ("  ", ""),
        (status, style),
    ]
    bar_width = min(40, width - _line_len(rest) - 1)
    if bar_width < 8:
        return _fit(rest, width)
    bar = ProgressBar(
        total=max(1, snap.num_pieces),
        completed=snap.pieces_have,
        width=bar_width,
    )
    return _BarLine(bar, bar_width, rest)


def _rates_line(snap: TorrentSnapshot, width: int) -> Line:
    extra = [f"{snap.known_peers} known"]
    if snap.banned:
        extra.append(f"{snap.banned} banned")
    line: Line = [
        ("↓ ", "green"),
        (format_rate(snap.down_rate), "bold green"),
        ("  ↑ ", "cyan"),
        (format_rate(snap.up_rate), "bold cyan"),
        ("  ratio ", "dim"),
        (f"{snap.ratio:.2f}", ""),
        ("  peers ", "dim"),
        (str(len(snap.peers)), "bold"),
        (f" ({', '.join(extra)})", "dim"),
        ("  got ", "dim"),
        (format_size(snap.downloaded), ""),
        ("  sent ", "dim"),
        (format_size(snap.uploaded), ""),
    ]
    return _fit(line, width)


def _label(text: str, width: int) -> Line:
    fill = width - cell_len(text) - 1
    line: Line = [(text, "bold")]
    if fill > 0:
        line.append((" " + "─" * fill, "bright_black"))
    return _fit(line, width)


# ----------------------------------------------------------------------------- the frame


def render(
    snap: TorrentSnapshot,
    *,
    width: int,
    height: int,
    title: str | None = None,
    selected: int | None = None,
    count: int | None = None,
    hint: str | None = None,
) -> Frame:
    """One dashboard frame for ``snap``, at most ``width`` x ``height`` cells.

    ``title`` names the node or torrent shown (e.g. the demo's ``"leech2"``); ``selected``
    (0-based) and ``count`` show "k/n" when there are several; ``hint`` (e.g. the keys) is
    right-aligned on the first line when it fits.
    """
    width = max(20, width)
    height = max(1, height)
    lines: list[Line | _BarLine] = [
        _title_line(snap, width, title, selected, count, hint),
        _progress_line(snap, width),
        _rates_line(snap, width),
    ]
    if snap.error:
        lines.append(_fit([(f"error: {_clean(snap.error)}", "bold red")], width))

    # Section sizes for the height; the peers table gets what is left.
    map_rows = 1 if height <= 30 else 2 if height <= 45 else 3
    map_rows = min(map_rows, -(-len(snap.piece_map) // width))
    event_rows = 4 if height <= 30 else min(12, 4 + (height - 30) // 3)
    events = [ev for ev in snap.events if _kind(ev) not in QUIET_EVENTS]
    event_rows = min(event_rows, max(1, len(events)))
    legend = 1
    peers = _sorted_peers(snap)
    want_rows = max(1, len(peers))

    top = len(lines)

    def rows_for_peers() -> int:
        used = top + (1 + map_rows if map_rows else 0) + 1  # + the table header
        return height - used - (1 + event_rows if event_rows else 0) - legend

    # Small terminals: give up the legend, then event lines, then the map, for 3 peer rows.
    while rows_for_peers() < min(3, want_rows):
        if legend:
            legend = 0
        elif event_rows:
            event_rows = event_rows - 1 if event_rows > 1 else 0
        elif map_rows:
            map_rows = 0
        else:
            break
    # Lines left over once every peer has its row go to the event log, which then reaches
    # down to the legend: the frame uses the whole height, and the log fills as events come.
    spare = rows_for_peers() - want_rows
    if spare > 0 and event_rows:
        event_rows += spare

    peer_rows = rows_for_peers()
    if map_rows:
        label = f"pieces {snap.pieces_have}/{snap.num_pieces}  █ have ▒ in flight ░ missing"
        lines.append(_label(label, width))
        lines.extend(_piece_map(snap, width, map_rows))
    if peer_rows >= 1:
        lines.extend(_peers_table(peers, width, peer_rows))
    if event_rows:
        lines.append(_label("events", width))
        recent = events[-event_rows:]
        for ev in recent:
            text, style = describe_event(ev)
            t = ev.t if isinstance(ev, Event) else ev.get("t")
            stamp = _clock(t) if isinstance(t, int | float) else "?"
            lines.append(_fit([(f"{stamp:>7} ", "bright_black"), (text, style)], width))
        if not recent:
            lines.append([("no events yet", "dim")])
        lines.extend([] for _ in range(event_rows - max(1, len(recent))))
    if legend:
        fitting = [s for s in LEGENDS if cell_len(s) <= width]
        lines.append(_fit([(fitting[0] if fitting else LEGENDS[-1], "dim")], width))
    return Frame(lines[:height], width)
