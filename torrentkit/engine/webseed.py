"""Web seeds (BEP 19), the pure part: URLs, byte ranges, and what a reply must look like.

A torrent's ``url-list`` names HTTP(S) servers holding the same files. The engine treats
each one as a peer that has every piece and never chokes (``engine/webseed_link.py`` drives
it); this module decides, without any I/O:

- **where each file lives** (:func:`file_urls`): for a single-file torrent the URL itself,
  or, when it ends in ``/``, the URL plus the torrent's name; for a multi-file torrent the
  URL (a ``/`` added if missing) plus the name and the file's path, every component
  percent-encoded;
- **which ranges to ask for** (:func:`plan_ranges`): a run of payload bytes becomes one
  ``Range: bytes=START-END`` request per file it touches, in payload order; pad files
  (BEP 47) are never asked for, their bytes are zeros;
- **whether a reply is usable** (:func:`check_reply`): a ``206`` whose ``Content-Range`` is
  exactly the asked range (and whose total, when given, is the file's length), or a ``200``
  only when the whole file was asked for; everything else is a :class:`WebSeedError`,
  either *fatal* (the seed is dropped for the rest of the session: no range support, a wrong
  ``Content-Range``, a missing file, a redirect loop, extra bytes, data failing its hash) or
  *transient* (5xx, 408, 429, a timeout, a short body: retried with :func:`retry_delay`).

The limits (docs/limits.md, web seeds) are the constants below.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import quote

from torrentkit.engine.layout import Layout
from torrentkit.errors import TorrentkitError
from torrentkit.metainfo import Info, is_web_seed_url

#: Redirects followed for one request (httpx's ``max_redirects``); a loop ends there.
MAX_REDIRECTS = 3
#: Payload bytes asked of a web seed at once: a run of whole pieces up to this size (at
#: least one piece; see :func:`run_pieces`).
RUN_BYTES = 4 * 1024 * 1024
#: Requests (each a run of pieces) one web seed may have in flight at once, over one HTTP
#: client's connection pool: a server far away or slow per connection still fills the
#: pipe, as aria2's split connections do.
REQUESTS_PER_SEED = 3
#: Transient failures back off RETRY_BASE x 2^(failures - 1) seconds, at most RETRY_CAP.
RETRY_BASE = 5.0
RETRY_CAP = 300.0
#: HTTP statuses worth trying again later (the server is busy or failing for now).
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

_CONTENT_RANGE = re.compile(r"bytes\s+(\d{1,19})-(\d{1,19})/(\d{1,19}|\*)\Z", re.ASCII)


class WebSeedError(TorrentkitError):
    """A web seed request failed; ``fatal``: drop the seed for good, else retry later."""

    def __init__(self, message: str, *, fatal: bool) -> None:
        super().__init__(message)
        self.fatal = fatal


@dataclass(frozen=True, slots=True)
class WebSeedKey:
    """How a web seed is named where peers are named by address (trust, piece senders)."""

    url: str

    def __str__(self) -> str:
        return self.url


def usable_url(url: str) -> bool:
    """An ``http`` or ``https`` URL with a host (other schemes are ignored, BEP 19)."""
    return is_web_seed_url(url)


def _encode(component: str) -> str:
    return quote(component, safe="")


def file_urls(base: str, info: Info) -> tuple[str, ...]:
    """The URL of every file of ``info`` (``info.files`` order) on the web seed ``base``."""
    if not info.multi_file:
        url = base + _encode(info.name) if base.endswith("/") else base
        return (url,)
    root = base if base.endswith("/") else base + "/"
    # FileEntry.path is (name, dir, ..., file) for a multi-file torrent.
    return tuple(root + "/".join(_encode(c) for c in f.path) for f in info.files)


class RangeRequest(NamedTuple):
    """``length`` bytes of file ``file_index`` at ``start`` (``url`` None: a pad file's zeros)."""

    file_index: int
    url: str | None
    start: int
    length: int
    file_length: int

    @property
    def end(self) -> int:
        """The last byte, inclusive (as in a ``Range`` header)."""
        return self.start + self.length - 1

    @property
    def header(self) -> str:
        return f"bytes={self.start}-{self.end}"


def plan_ranges(
    layout: Layout, urls: Sequence[str], offset: int, length: int
) -> list[RangeRequest]:
    """The requests covering payload bytes ``[offset, offset + length)``, in payload order."""
    files = layout.info.files
    out: list[RangeRequest] = []
    for span in layout.spans(offset, length):
        f = files[span.file_index]
        url = None if span.pad else urls[span.file_index]
        out.append(RangeRequest(span.file_index, url, span.offset, span.length, f.length))
    return out


def contiguous_runs(
    blocks: Sequence[tuple[int, int, int]], piece_length: int
) -> list[list[tuple[int, int, int]]]:
    """``(piece, begin, length)`` blocks grouped into runs of adjacent payload bytes (sorted
    first), so each run is fetched as one range per file."""
    ordered = sorted(blocks)
    runs: list[list[tuple[int, int, int]]] = []
    end = -1
    for block in ordered:
        start = block[0] * piece_length + block[1]
        if runs and start == end:
            runs[-1].append(block)
        else:
            runs.append([block])
        end = start + block[2]
    return runs


def check_reply(status: int, headers: Mapping[str, str], req: RangeRequest) -> None:
    """Raise :class:`WebSeedError` unless a reply with ``status`` and ``headers`` (names in
    lower case, as httpx gives them) carries exactly the bytes ``req`` asked for."""
    if status in RETRY_STATUSES:
        raise WebSeedError(f"HTTP {status}", fatal=False)
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise WebSeedError(f"reply has content-encoding {encoding!r}", fatal=True)
    declared = headers.get("content-length")
    if status == 200:
        # No range support: usable only when the whole file was asked for.
        if req.start != 0 or req.length != req.file_length:
            raise WebSeedError("answered 200 to a range request (no range support)", fatal=True)
        if declared is not None and declared.strip() != str(req.length):
            raise WebSeedError(
                f"Content-Length {declared.strip()[:20]!r} for a {req.length}-byte file",
                fatal=True,
            )
        return
    if status != 206:
        raise WebSeedError(f"HTTP {status}", fatal=True)
    text = headers.get("content-range", "").strip()
    match = _CONTENT_RANGE.match(text)
    if match is None:
        raise WebSeedError(f"bad Content-Range {text[:60]!r}", fatal=True)
    first, last, total = match.groups()
    if int(first) != req.start or int(last) != req.end:
        raise WebSeedError(
            f"Content-Range {text[:60]!r} for the asked bytes {req.start}-{req.end}", fatal=True
        )
    if total != "*" and int(total) != req.file_length:
        raise WebSeedError(
            f"Content-Range says the file has {total} bytes, the torrent {req.file_length}",
            fatal=True,
        )
    if declared is not None and declared.strip() != str(req.length):
        raise WebSeedError(
            f"Content-Length {declared.strip()[:20]!r} for {req.length} asked bytes", fatal=True
        )


def retry_delay(failures: int) -> float:
    """Seconds to wait after ``failures`` transient failures in a row (>= 1)."""
    return min(RETRY_CAP, RETRY_BASE * 2.0 ** min(failures - 1, 30))


def run_pieces(piece_length: int, num_pieces: int) -> int:
    """How many whole pieces one run asks for: :data:`RUN_BYTES` worth, but at most a
    sixteenth of the torrent (BEP 19 suggests about 5 % of it), so that several web seeds
    and the peers share even a small torrent; at least one piece."""
    return max(1, min(RUN_BYTES // piece_length, num_pieces // 16))
