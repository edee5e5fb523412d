"""The Napster index, pure: who shares which files, and keyword search over them.

No sockets, no asyncio, no clock reads: every call that depends on time takes ``now`` (seconds
on whatever clock the driver uses); :meth:`NapsterIndex.search` may also be handed a clock
*function* to bound its own run time. :mod:`.server` is the aiohttp adapter, :mod:`.protocol` the
JSON mapping, :mod:`.client` the httpx client.

Model (the lecture's "centralized database"):

- **join**: a peer announces the TCP port it serves on; its address is the connecting IP (never
  an address it claims) and that port. It gets a *session*: an opaque token, the capability to
  publish for that address. A new join from the same address replaces the old session (a
  restarted client does not leave stale entries behind).
- **publish**: the peer reports files (name, size, info-hash, private flag), in batches. One
  entry per (session, info-hash): publishing an info-hash again with the same name and size
  only refreshes it; with a new name or size it replaces it. ``replace=True`` makes the batch
  the peer's whole list; ``remove`` drops info-hashes. A batch is atomic: any bad file, any cap
  exceeded, and nothing of it is applied. Private torrents (BEP 27) are refused (403), always.
- **refresh** (heartbeat) or any publish keeps a session alive for ``ttl`` seconds; after
  that its entries vanish from search at once and are purged by :meth:`NapsterIndex.expire`.
- **leave** drops the session and its entries.
- **search**: by name, three ways (the lecture's "search expressiveness"), each combinable with
  attribute filters (size range, extension, info-hash):

  ``word``       every word of the query appears as a whole word of the name (case-insensitive;
                 words are runs of letters and digits, so ``_``, ``.``, ``-`` separate them).
                 An inverted index (word -> entry ids) answers it by set intersection.
  ``substring``  the query appears anywhere in the name (case-insensitive unless asked).
  ``regex``      an RE2 regular expression (google-re2: linear time, no backreferences or
                 look-around) matches somewhere in the name; ``^``/``$`` anchor at the name's
                 start/end; case-insensitive unless asked; at most 256 characters.
  (no query)     attributes only: at least one of min/max size, extension, info-hash.

  ``substring`` and ``regex`` run RE2 once over one newline-joined buffer of all names and map
  each match back to its entry (bisect over line starts), instead of a Python loop over the
  names: ~5 ms for a scan of 100,000 names. The buffer grows by appending; removed entries
  leave dead lines that are skipped and squeezed out when they outnumber the live ones.

  Hits are grouped by (info-hash, name, size); each lists the addresses of up to
  ``max_peers_per_hit`` live peers sharing it. Order: first published first. ``truncated``
  says more hits may exist: the limit was reached, or the scan budget ran out.

Work is bounded per search: at most ``max_scan`` (20,000) candidate entries are examined, and
with a ``clock`` the search stops after ``search_time_budget`` (0.1 s); either way the reply
says ``truncated``. (RE2 is linear, but some patterns, e.g. ``[a-m][a-z ]{14}Q``, overflow its
DFA cache and run ~100x slower on its NFA: over 1 s for 100,000 names without the budget.)

Caps (:class:`IndexConfig`): 100,000 sessions, 64 per IP address, 1,000,000 entries, 10,000 per
peer, names up to 1,024 bytes of UTF-8 without control characters, queries up to 256
characters and 16 words, at most 500 hits (100 by default) with 50 peers each.
"""

from __future__ import annotations

import enum
import re
import secrets
import sys
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import re2  # type: ignore[import-untyped]

from torrentkit.discovery.base import SearchHit
from torrentkit.errors import LocalProtocolError, RemoteProtocolError
from torrentkit.ids import InfoHash, PeerAddr
from torrentkit.tokenbucket import KeyedBuckets

MAX_SIZE = 2**63 - 1

# Words: runs of letters and digits (Unicode), lowercased. A fixed, linear pattern over names
# of bounded length; user patterns never reach Python's ``re``.
_WORD = re.compile(r"[^\W_]+")
# C0, DEL and C1 controls: never in a name (the newline-joined buffer relies on it).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_EXT = re.compile(r"[0-9a-z]{1,16}")
# Bytes of names scanned per RE2 call between two checks of the time budget.
_CHUNK = 256 * 1024

_K = TypeVar("_K")


class IndexRequestError(RemoteProtocolError):
    """A request the index refuses; ``status`` is the HTTP status the server answers with.

    400 malformed, 403 private torrent, 404 unknown or expired session (join again),
    413 too many files, 429 too many sessions from one address or too many requests,
    503 the index is full.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class MatchKind(enum.StrEnum):
    WORD = "word"
    SUBSTRING = "substring"
    REGEX = "regex"


@dataclass(frozen=True, slots=True, kw_only=True)
class IndexConfig:
    """Limits of one index. Times in seconds; name and query lengths in UTF-8 bytes/characters."""

    #: A session lives this long after its last join, publish or refresh.
    ttl: float = 120.0
    max_sessions: int = 100_000
    #: Sessions from one IP address (peers behind one NAT share an address).
    max_sessions_per_ip: int = 64
    max_entries: int = 1_000_000
    max_entries_per_peer: int = 10_000
    #: Longest file name, in bytes of UTF-8.
    max_name_bytes: int = 1024
    #: Longest query (word and substring), and longest regular expression, in characters.
    max_query_length: int = 256
    max_pattern_length: int = 256
    max_query_words: int = 16
    default_limit: int = 100
    max_limit: int = 500
    max_peers_per_hit: int = 50
    #: Candidate entries examined per search at most (then ``truncated``).
    max_scan: int = 20_000
    #: Longest a text scan may run when the caller passes a clock.
    search_time_budget: float = 0.1
    #: RE2's memory budget per regular expression (its DFA cache lives in it).
    regex_max_mem: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        if not self.ttl > 0 or not self.search_time_budget > 0:
            raise LocalProtocolError("ttl and search_time_budget must be positive")
        for name in (
            "max_sessions",
            "max_sessions_per_ip",
            "max_entries",
            "max_entries_per_peer",
            "max_name_bytes",
            "max_query_length",
            "max_pattern_length",
            "max_query_words",
            "default_limit",
            "max_limit",
            "max_peers_per_hit",
            "max_scan",
            "regex_max_mem",
        ):
            if getattr(self, name) < 1:
                raise LocalProtocolError(f"{name} must be at least 1")
        if self.default_limit > self.max_limit:
            raise LocalProtocolError("default_limit must not exceed max_limit")


@dataclass(frozen=True, slots=True, kw_only=True)
class SharedFile:
    """One file a peer shares: what publish carries (the info-hash is the torrent's)."""

    name: str
    size: int
    info_hash: InfoHash
    #: BEP 27: a private torrent is never published; the index refuses it.
    private: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or isinstance(self.size, bool):
            raise LocalProtocolError("size must be an int")
        if not 0 <= self.size <= MAX_SIZE:
            raise LocalProtocolError(f"size out of range: {self.size}")
        if not isinstance(self.info_hash, InfoHash):
            raise LocalProtocolError("info_hash must be an InfoHash")


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchQuery:
    """A search. ``text`` empty means attributes only (then a filter is required).

    Raises :class:`IndexRequestError` (400) when malformed; the core checks the caps of its
    own config again (pattern length, regex syntax) when it runs the query.
    """

    text: str = ""
    match: MatchKind = MatchKind.WORD
    #: Substring and regex only; whole-word search always ignores case.
    case_sensitive: bool = False
    min_size: int | None = None
    max_size: int | None = None
    #: Extension without the dot, compared case-insensitively (``mp3`` matches ``A.MP3``).
    ext: str | None = None
    info_hash: InfoHash | None = None
    #: Most hits wanted (None: the index's default).
    limit: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or _CONTROL.search(self.text):
            raise IndexRequestError("query: must be text without control characters")
        if not isinstance(self.match, MatchKind):
            raise IndexRequestError("match: must be word, substring or regex")
        for name in ("min_size", "max_size", "limit"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SIZE
            ):
                raise IndexRequestError(f"{name}: must be an integer 0-{MAX_SIZE}")
        if self.limit is not None and self.limit < 1:
            raise IndexRequestError("limit: must be at least 1")
        if (
            self.min_size is not None
            and self.max_size is not None
            and self.min_size > self.max_size
        ):
            raise IndexRequestError("min_size is larger than max_size")
        if self.ext is not None and not _EXT.fullmatch(self.ext):
            raise IndexRequestError("ext: 1-16 lowercase letters or digits, without the dot")
        if self.info_hash is not None and not isinstance(self.info_hash, InfoHash):
            raise IndexRequestError("info_hash: must be 40 hex digits")
        if not self.text and not self.has_filter:
            raise IndexRequestError("empty query: give words, a pattern, or a filter")

    @property
    def has_filter(self) -> bool:
        return (
            self.min_size is not None
            or self.max_size is not None
            or self.ext is not None
            or self.info_hash is not None
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    """A joined peer as the index sees it."""

    token: str
    peer: PeerAddr
    expires: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishResult:
    #: Files of this batch that were new or changed (the rest only refreshed).
    added: int
    removed: int
    #: This peer's entries after the batch.
    total: int
    expires: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchResult:
    hits: tuple[SearchHit, ...]
    #: More hits may exist: the limit was reached or the scan budget ran out.
    truncated: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class IndexStats:
    sessions: int
    entries: int
    info_hashes: int
    words: int
    #: Bytes of the name buffer the text search scans (dead lines included).
    text_bytes: int


def has_control(text: str) -> bool:
    """Whether ``text`` holds a C0 or C1 control character or DEL (never allowed in a name)."""
    return _CONTROL.search(text) is not None


def name_words(name: str) -> list[str]:
    """The whole words of a name, lowercased: ``"Floyd_Echoes.MP3"`` -> floyd, echoes, mp3."""
    return _WORD.findall(name.lower())


def name_ext(name: str) -> str:
    """The lowercased extension (``"a.Tar.GZ"`` -> ``"gz"``), or ``""``."""
    _, dot, ext = name.rpartition(".")
    ext = ext.lower()
    return ext if dot and _EXT.fullmatch(ext) else ""


def check_name(name: str, max_bytes: int) -> bytes:
    """The UTF-8 of a publishable name; IndexRequestError (400) naming the problem."""
    if not name:
        raise IndexRequestError("empty file name")
    if len(name) > max_bytes:
        raise IndexRequestError(f"file name longer than {max_bytes} bytes")
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:
        raise IndexRequestError("file name is not valid Unicode (lone surrogate)") from None
    if len(raw) > max_bytes:
        raise IndexRequestError(f"file name longer than {max_bytes} bytes")
    if _CONTROL.search(name):
        raise IndexRequestError("file name contains control characters")
    return raw


class _Session:
    __slots__ = ("entries", "expires", "ip", "peer", "token")

    def __init__(self, token: str, peer: PeerAddr, ip: str, expires: float) -> None:
        self.token = token
        self.peer = peer
        self.ip = ip
        self.expires = expires
        #: info-hash -> entry id
        self.entries: dict[InfoHash, int] = {}


class _Entry:
    __slots__ = ("ext", "id", "info_hash", "name", "session", "size")

    def __init__(
        self, id: int, name: str, size: int, info_hash: InfoHash, ext: str, session: _Session
    ) -> None:
        self.id = id
        self.name = name
        self.size = size
        self.info_hash = info_hash
        self.ext = ext
        self.session = session


class _NameBuffer:
    """All names, one per line, in publish order; lines map back to entry ids.

    Appending is amortised O(1); removal only counts a dead line (the caller knows which ids
    are gone). :meth:`rebuild` squeezes dead lines out.
    """

    __slots__ = ("buf", "dead", "ids", "starts")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.starts = array("q")
        self.ids = array("q")
        self.dead = 0

    def append(self, entry_id: int, raw_name: bytes) -> None:
        self.starts.append(len(self.buf))
        self.ids.append(entry_id)
        self.buf += raw_name
        self.buf += b"\n"

    def rebuild(self, live: Iterable[tuple[int, bytes]]) -> None:
        self.buf = bytearray()
        self.starts = array("q")
        self.ids = array("q")
        self.dead = 0
        for entry_id, raw in live:
            self.append(entry_id, raw)

    def scan(
        self, pattern: object, clock: Callable[[], float] | None, deadline: float
    ) -> Iterator[int]:
        """Ids of lines ``pattern`` matches, in order, each once.

        Stops early (after yielding ``-1``) when ``clock`` passes ``deadline``.
        """
        buf, starts, ids = self.buf, self.starts, self.ids
        end = len(buf)
        nlines = len(starts)
        pos = 0
        search = pattern.search  # type: ignore[attr-defined]
        while pos < end:
            if clock is not None and clock() > deadline:
                yield -1
                return
            # Line-aligned chunks, so that ^ and $ see whole lines.
            cut = bisect_right(starts, pos + _CHUNK)
            chunk_end = starts[cut] if cut < nlines else end
            while pos < chunk_end:
                m = search(buf, pos, chunk_end)
                if m is None or m.start() >= chunk_end:  # (an empty match past the last name)
                    break
                line = bisect_right(starts, m.start()) - 1
                yield ids[line]
                pos = starts[line + 1] if line + 1 < nlines else end
            pos = chunk_end


class NapsterIndex:
    """The central index: sessions, their entries, and the search indexes over them."""

    def __init__(
        self,
        config: IndexConfig | None = None,
        *,
        token_factory: Callable[[], str] | None = None,
    ) -> None:
        self.config = config if config is not None else IndexConfig()
        self._new_token = token_factory if token_factory is not None else _random_token
        self._sessions: dict[str, _Session] = {}
        self._by_addr: dict[PeerAddr, _Session] = {}
        self._per_ip: dict[str, int] = {}
        self._entries: dict[int, _Entry] = {}
        # info-hash -> the one entry id holding it, or a set of them (most hashes have one
        # holder; a set per hash would cost ~200 bytes each).
        self._by_hash: dict[InfoHash, int | set[int]] = {}
        self._by_word: dict[str, set[int]] = {}
        self._by_ext: dict[str, set[int]] = {}
        self._text = _NameBuffer()
        self._next_id = 0

    # ---------------------------------------------------------------------------------------
    # Sessions

    def join(self, *, ip: str, port: int, now: float) -> Session:
        """Open a session for ``ip``:``port`` (the connecting address and the announced port)."""
        if not 0 < port < 65536:
            raise IndexRequestError(f"port: must be 1-65535, got {port}")
        peer = PeerAddr(ip, port)
        old = self._by_addr.get(peer)
        if old is not None:
            self._drop_session(old)
        if len(self._sessions) >= self.config.max_sessions:
            # Expired sessions make room when the driver next calls expire().
            raise IndexRequestError("the index has no room for more peers", 503)
        if self._per_ip.get(ip, 0) >= self.config.max_sessions_per_ip:
            raise IndexRequestError(
                f"too many sessions from {ip} (at most {self.config.max_sessions_per_ip})", 429
            )
        token = self._new_token()
        if token in self._sessions:
            raise LocalProtocolError("token factory repeated a token")
        session = _Session(token, peer, ip, now + self.config.ttl)
        self._sessions[token] = session
        self._by_addr[peer] = session
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        return Session(token=token, peer=peer, expires=session.expires)

    def refresh(self, token: str, *, now: float) -> float:
        """Heartbeat: the session lives ``ttl`` more seconds; returns when it expires."""
        session = self._live_session(token, now)
        session.expires = now + self.config.ttl
        return session.expires

    def leave(self, token: str, *, now: float) -> int:
        """Drop the session and its entries; how many entries went."""
        session = self._live_session(token, now)
        count = len(session.entries)
        self._drop_session(session)
        self._maybe_compact()
        return count

    def expire(self, now: float) -> int:
        """Drop every session that was not refreshed in time; how many went."""
        gone = [s for s in self._sessions.values() if s.expires <= now]
        for session in gone:
            self._drop_session(session)
        self._maybe_compact()
        return len(gone)

    def session(self, token: str, *, now: float) -> Session:
        s = self._live_session(token, now)
        return Session(token=s.token, peer=s.peer, expires=s.expires)

    def _live_session(self, token: str, now: float) -> _Session:
        session = self._sessions.get(token)
        if session is not None and session.expires <= now:
            self._drop_session(session)
            session = None
        if session is None:
            raise IndexRequestError("unknown or expired session; join again", 404)
        return session

    def _drop_session(self, session: _Session) -> None:
        for entry_id in session.entries.values():
            self._remove_entry(self._entries[entry_id])
        session.entries.clear()
        del self._sessions[session.token]
        if self._by_addr.get(session.peer) is session:
            del self._by_addr[session.peer]
        left = self._per_ip[session.ip] - 1
        if left:
            self._per_ip[session.ip] = left
        else:
            del self._per_ip[session.ip]

    # ---------------------------------------------------------------------------------------
    # Entries

    def publish(
        self,
        token: str,
        files: Sequence[SharedFile],
        *,
        now: float,
        remove: Sequence[InfoHash] = (),
        replace: bool = False,
    ) -> PublishResult:
        """Add or refresh ``files`` for a session (atomic; see the module docstring)."""
        session = self._live_session(token, now)
        cfg = self.config
        # Validate everything before changing anything.
        batch: dict[InfoHash, tuple[SharedFile, bytes]] = {}
        for i, f in enumerate(files):
            if f.private:
                raise IndexRequestError(
                    f"files[{i}]: private torrents are never published (BEP 27)", 403
                )
            try:
                raw = check_name(f.name, cfg.max_name_bytes)
            except IndexRequestError as exc:
                raise IndexRequestError(f"files[{i}]: {exc}") from None
            batch[f.info_hash] = (f, raw)
        dropping = set(session.entries) - set(batch) if replace else set(remove) - set(batch)
        dropping &= session.entries.keys()
        changed: list[InfoHash] = []
        for ih, (f, _) in batch.items():
            old_id = session.entries.get(ih)
            if old_id is None:
                changed.append(ih)
            else:
                old = self._entries[old_id]
                if old.name != f.name or old.size != f.size:
                    changed.append(ih)
        new_count = sum(1 for ih in changed if ih not in session.entries)
        peer_total = len(session.entries) - len(dropping) + new_count
        if peer_total > cfg.max_entries_per_peer:
            raise IndexRequestError(
                f"too many files for one peer: {peer_total} (at most {cfg.max_entries_per_peer})",
                413,
            )
        if len(self._entries) - len(dropping) + new_count > cfg.max_entries:
            raise IndexRequestError(f"the index is full ({cfg.max_entries} entries)", 503)
        # Apply.
        for ih in dropping:
            self._remove_entry(self._entries[session.entries.pop(ih)])
        for ih in changed:
            f, raw = batch[ih]
            old_id = session.entries.get(ih)
            if old_id is not None:
                self._remove_entry(self._entries[old_id])
            session.entries[ih] = self._add_entry(f, raw, session)
        session.expires = now + cfg.ttl
        if dropping:
            self._maybe_compact()
        return PublishResult(
            added=len(changed),
            removed=len(dropping),
            total=len(session.entries),
            expires=session.expires,
        )

    def _add_entry(self, f: SharedFile, raw: bytes, session: _Session) -> int:
        entry_id = self._next_id
        self._next_id += 1
        holders = self._by_hash.get(f.info_hash)
        if holders is None:
            self._by_hash[f.info_hash] = entry_id
        elif isinstance(holders, int):
            self._by_hash[f.info_hash] = {holders, entry_id}
        else:
            holders.add(entry_id)
        ext = sys.intern(name_ext(f.name))  # a few distinct values, one object each
        entry = _Entry(entry_id, f.name, f.size, f.info_hash, ext, session)
        self._entries[entry_id] = entry
        by_word = self._by_word
        for word in set(name_words(f.name)):
            ids = by_word.get(word)
            if ids is None:
                by_word[word] = {entry_id}
            else:
                ids.add(entry_id)
        if ext:
            self._by_ext.setdefault(ext, set()).add(entry_id)
        self._text.append(entry_id, raw)
        return entry_id

    def _remove_entry(self, entry: _Entry) -> None:
        entry_id = entry.id
        del self._entries[entry_id]
        holders = self._by_hash[entry.info_hash]
        if isinstance(holders, int):
            del self._by_hash[entry.info_hash]
        else:
            holders.discard(entry_id)
            if len(holders) == 1:
                self._by_hash[entry.info_hash] = holders.pop()
        for word in set(name_words(entry.name)):
            _discard(self._by_word, word, entry_id)
        if entry.ext:
            _discard(self._by_ext, entry.ext, entry_id)
        self._text.dead += 1

    def _holders(self, info_hash: InfoHash) -> set[int] | tuple[int, ...]:
        holders = self._by_hash.get(info_hash, ())
        return (holders,) if isinstance(holders, int) else holders

    def _maybe_compact(self) -> None:
        text = self._text
        if text.dead > 4096 and text.dead > len(self._entries):
            text.rebuild((e.id, e.name.encode("utf-8")) for e in self._entries.values())

    # ---------------------------------------------------------------------------------------
    # Search

    def search(
        self,
        query: SearchQuery,
        *,
        now: float,
        clock: Callable[[], float] | None = None,
    ) -> SearchResult:
        """Run ``query`` over live entries.

        ``clock`` (optional, e.g. ``time.perf_counter``) bounds the work to about
        ``search_time_budget`` seconds; without it only ``max_scan`` bounds it.
        """
        cfg = self.config
        limit = min(query.limit if query.limit is not None else cfg.default_limit, cfg.max_limit)
        deadline = clock() + cfg.search_time_budget if clock is not None else 0.0
        candidates = self._candidates(query, clock, deadline)
        hits: dict[tuple[InfoHash, str, int], SearchHit] = {}
        entries = self._entries
        lo = query.min_size if query.min_size is not None else 0
        hi = query.max_size if query.max_size is not None else MAX_SIZE
        ext = query.ext
        want_hash = query.info_hash
        budget = cfg.max_scan
        truncated = False
        for entry_id in candidates:
            if entry_id < 0 or budget <= 0:
                truncated = True
                break
            budget -= 1
            if clock is not None and not budget & 511 and clock() > deadline:
                truncated = True
                break
            entry = entries.get(entry_id)
            if (
                entry is None
                or entry.session.expires <= now
                or not lo <= entry.size <= hi
                or (ext is not None and entry.ext != ext)
                or (want_hash is not None and entry.info_hash != want_hash)
            ):
                continue
            key = (entry.info_hash, entry.name, entry.size)
            if key in hits:
                continue
            if len(hits) >= limit:
                truncated = True
                break
            hits[key] = SearchHit(
                name=entry.name,
                size=entry.size,
                info_hash=entry.info_hash,
                peers=self._peers_of(entry, now),
            )
        return SearchResult(hits=tuple(hits.values()), truncated=truncated)

    def _peers_of(self, entry: _Entry, now: float) -> tuple[PeerAddr, ...]:
        peers: list[PeerAddr] = []
        cap = self.config.max_peers_per_hit
        for other_id in sorted(self._holders(entry.info_hash)):
            other = self._entries[other_id]
            same = other.name == entry.name and other.size == entry.size
            if same and other.session.expires > now:
                peers.append(other.session.peer)
                if len(peers) >= cap:
                    break
        return tuple(peers)

    def _candidates(
        self, query: SearchQuery, clock: Callable[[], float] | None, deadline: float
    ) -> Iterable[int]:
        """Entry ids that may match, in publish order (a -1 means: time ran out)."""
        cfg = self.config
        if query.text and query.match is not MatchKind.WORD:
            return self._text.scan(self._compile(query), clock, deadline)
        sets: list[set[int]] = []
        if query.text:
            if len(query.text) > cfg.max_query_length:
                raise IndexRequestError(f"query longer than {cfg.max_query_length} characters")
            words = set(name_words(query.text))
            if not words:
                raise IndexRequestError("query has no words (letters or digits)")
            if len(words) > cfg.max_query_words:
                raise IndexRequestError(f"query has more than {cfg.max_query_words} words")
            for word in words:
                ids = self._by_word.get(word)
                if ids is None:
                    return ()
                sets.append(ids)
        if query.info_hash is not None:
            holders = self._holders(query.info_hash)
            sets.append(holders if isinstance(holders, set) else set(holders))
        if query.ext is not None:
            sets.append(self._by_ext.get(query.ext, set()))
        if not sets:
            return self._entries.keys()  # size filters only: every entry, in publish order
        sets.sort(key=len)
        found = sets[0].intersection(*sets[1:]) if len(sets) > 1 else sets[0]
        return sorted(found)

    def _compile(self, query: SearchQuery) -> object:
        cfg = self.config
        options = re2.Options()
        options.case_sensitive = query.case_sensitive
        options.never_nl = True  # a match never spans two names
        options.log_errors = False
        options.max_mem = cfg.regex_max_mem
        if query.match is MatchKind.SUBSTRING:
            if len(query.text) > cfg.max_query_length:
                raise IndexRequestError(f"query longer than {cfg.max_query_length} characters")
            options.literal = True
            pattern = query.text
        else:
            if len(query.text) > cfg.max_pattern_length:
                raise IndexRequestError(
                    f"regular expression longer than {cfg.max_pattern_length} characters"
                )
            try:
                re2.compile(query.text, options)
            except re2.error as exc:
                raise IndexRequestError(f"bad regular expression: {_one_line(exc)}") from None
            finally:
                re2.purge()
            # Multi-line: ^ and $ anchor at each name's start and end.
            pattern = "(?m)" + query.text
        try:
            return re2.compile(pattern, options)
        except re2.error as exc:
            raise IndexRequestError(f"bad regular expression: {_one_line(exc)}") from None
        finally:
            # re2 keeps 128 compiled patterns (each up to max_mem) in a module cache; we keep
            # only the one in use.
            re2.purge()

    # ---------------------------------------------------------------------------------------

    def stats(self) -> IndexStats:
        return IndexStats(
            sessions=len(self._sessions),
            entries=len(self._entries),
            info_hashes=len(self._by_hash),
            words=len(self._by_word),
            text_bytes=len(self._text.buf),
        )


def _discard(index: dict[_K, set[int]], key: _K, entry_id: int) -> None:
    ids = index.get(key)
    if ids is not None:
        ids.discard(entry_id)
        if not ids:
            del index[key]


def _one_line(exc: BaseException) -> str:
    # re2 errors carry bytes.
    arg = exc.args[0] if exc.args else ""
    text = arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)
    return " ".join(text.split())[:200]


def _random_token() -> str:
    return secrets.token_hex(16)


class RateLimiter(KeyedBuckets[str]):
    """Per-IP token buckets (:mod:`torrentkit.tokenbucket`): ``rate`` requests per second,
    bursts up to ``burst``; :meth:`~KeyedBuckets.take` gives 0.0 or the seconds to wait.

    ``rate`` 0 turns limiting off. At most ``max_keys`` keys are tracked; when full, keys whose
    bucket has refilled are forgotten, and if none has, new keys are refused until one does.
    """

    def __init__(self, rate: float, burst: float, *, max_keys: int = 65_536) -> None:
        super().__init__(rate, burst, max_keys=max_keys, when_full="refuse")
