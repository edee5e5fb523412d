"""The napster-index HTTP/JSON API: request parsing and response building, both sides (pure).

Every body is JSON (UTF-8); every answer is ``application/json``, non-ASCII escaped. Errors are
``{"error": "one line"}`` with a 4xx status (503 when the index is full); the message names the
field at fault. Unknown fields are refused (a typo such as ``"privat": true`` must not pass).

``POST /join``     ``{"port": 6881}``
    -> ``{"session": "<32 hex>", "peer": "203.0.113.5:6881", "ttl": 120}``
    The peer's address is the connecting IP and ``port``. A join from an address that already
    has a session replaces it (its entries are dropped). The session is a bearer token: keep it.
``POST /publish``  ``{"session": S, "files": [FILE, ...], "remove": [HEX, ...], "replace": false}``
    FILE is ``{"name": "Artist - Title.mp3", "size": 4096000, "info_hash": "<40 hex>",
    "private": false}`` (all four required). ``remove`` (optional) drops info-hashes;
    ``replace: true`` makes ``files`` the peer's whole list. At most 10,000 files per peer.
    -> ``{"added": 2, "removed": 0, "total": 2, "ttl": 120}``. Also refreshes the session.
    Atomic: on any error nothing is applied. ``private: true`` -> 403.
``POST /refresh``  ``{"session": S}`` -> ``{"ttl": 120}`` (heartbeat)
``POST /leave``    ``{"session": S}`` -> ``{"removed": 2}``
``GET /search?q=TEXT&match=KIND&case_sensitive=0&min_size=N&max_size=N&ext=E&info_hash=H&limit=N``
    All parameters optional, but give ``q`` or a filter; unknown or repeated ones are refused.
    ``match``: ``word`` (default), ``substring`` or ``regex`` (RE2 syntax, at most 256
    characters); ``case_sensitive`` (substring, regex): 0 (default) or 1; sizes in bytes;
    ``ext`` without the dot; ``limit``: 100 by default, at most 500.
    -> ``{"hits": [{"name": ..., "size": ..., "info_hash": "<40 hex>",
    "peers": ["HOST:PORT", ...]}], "truncated": false, "took_ms": 0.42}``. ``took_ms`` is the
    server's own time for the search; ``truncated`` says more hits may exist.
``GET /stats``     -> ``{"sessions": .., "entries": .., "info_hashes": .., "words": ..,
    "text_bytes": ..}``
``GET /``          -> the service name, version, ttl and these endpoints.

Status codes: 400 malformed, 403 private torrent, 404 unknown route, or unknown or expired
session (join again), 405 wrong method, 413 body over 2 MiB or too many files, 415 a POST body
not declared ``application/json``, 429 too many requests (with ``Retry-After``) or sessions from
one address, 503 the index is full, 500 a bug of ours (logged as one line).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from torrentkit.discovery.base import SearchHit
from torrentkit.discovery.napster.index import (
    MAX_SIZE,
    IndexRequestError,
    IndexStats,
    MatchKind,
    PublishResult,
    SearchQuery,
    SearchResult,
    Session,
    SharedFile,
    has_control,
)
from torrentkit.errors import RemoteProtocolError
from torrentkit.ids import InfoHash, PeerAddr

#: Largest request body the server reads.
MAX_BODY = 2 * 1024 * 1024
#: Largest response body the client reads (500 hits x 50 peers, names escaped, fit).
MAX_RESPONSE = 16 * 1024 * 1024
_HEX = frozenset("0123456789abcdefABCDEF")
_TOKEN_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_")
_MAX_TOKEN = 64
_SEARCH_PARAMS = frozenset(
    {"q", "match", "case_sensitive", "min_size", "max_size", "ext", "info_hash", "limit"}
)
_FILE_KEYS = frozenset({"name", "size", "info_hash", "private"})


class IndexResponseError(RemoteProtocolError):
    """A reply from an index that breaks this API (client side)."""


def dumps(obj: object) -> bytes:
    """Compact JSON, every non-ASCII character escaped (safe to print anywhere)."""
    return json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def error_body(message: str) -> bytes:
    return dumps({"error": " ".join(message.split())[:300]})


# ---------------------------------------------------------------------------------------------
# Server side: requests in


def parse_body(body: bytes, allowed: Iterable[str]) -> dict[str, Any]:
    """A JSON object with only ``allowed`` keys, or IndexRequestError (400)."""
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as exc:
        detail = str(exc).split(":")[0] if isinstance(exc, ValueError) else "nested too deeply"
        raise IndexRequestError(f"body is not JSON: {detail[:80]}") from None
    if not isinstance(obj, dict):
        raise IndexRequestError("body must be a JSON object")
    _only_keys(obj, frozenset(allowed), "body")
    return obj


def _only_keys(obj: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    for key in obj:
        if key not in allowed:
            raise IndexRequestError(f"{where}: unknown field {_excerpt(key)}")


def _excerpt(text: str) -> str:
    return repr(text[:40] + ("..." if len(text) > 40 else ""))


def _int(value: object, what: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise IndexRequestError(f"{what}: must be an integer {lo}-{hi}")
    return value


def _info_hash(value: object, what: str) -> InfoHash:
    if not isinstance(value, str) or len(value) != 40 or not _HEX.issuperset(value):
        raise IndexRequestError(f"{what}: must be 40 hex digits")
    return InfoHash(bytes.fromhex(value))


def parse_token(obj: Mapping[str, Any]) -> str:
    token = obj.get("session")
    if (
        not isinstance(token, str)
        or not 0 < len(token) <= _MAX_TOKEN
        or not _TOKEN_CHARS.issuperset(token)
    ):
        raise IndexRequestError("session: missing or malformed; join first")
    return token


def parse_join(body: bytes) -> int:
    """The port of a join request."""
    obj = parse_body(body, ("port",))
    return _int(obj.get("port"), "port", 1, 65535)


def parse_publish(
    body: bytes, max_files: int
) -> tuple[str, list[SharedFile], list[InfoHash], bool]:
    """``(session, files, remove, replace)`` of a publish request."""
    obj = parse_body(body, ("session", "files", "remove", "replace"))
    token = parse_token(obj)
    files_obj = obj.get("files", [])
    remove_obj = obj.get("remove", [])
    replace = obj.get("replace", False)
    if not isinstance(files_obj, list):
        raise IndexRequestError("files: must be a list")
    if not isinstance(remove_obj, list):
        raise IndexRequestError("remove: must be a list")
    if not isinstance(replace, bool):
        raise IndexRequestError("replace: must be true or false")
    if len(files_obj) > max_files or len(remove_obj) > max_files:
        raise IndexRequestError(f"too many files in one request (at most {max_files})", 413)
    files = [_parse_file(item, i) for i, item in enumerate(files_obj)]
    remove = [_info_hash(h, f"remove[{i}]") for i, h in enumerate(remove_obj)]
    return token, files, remove, replace


def _parse_file(item: object, i: int) -> SharedFile:
    where = f"files[{i}]"
    if not isinstance(item, dict):
        raise IndexRequestError(f"{where}: must be an object")
    _only_keys(item, _FILE_KEYS, where)
    name = item.get("name")
    if not isinstance(name, str):
        raise IndexRequestError(f"{where}.name: must be a string")
    private = item.get("private")
    if not isinstance(private, bool):
        raise IndexRequestError(f"{where}.private: required, true or false")
    return SharedFile(
        name=name,
        size=_int(item.get("size"), f"{where}.size", 0, MAX_SIZE),
        info_hash=_info_hash(item.get("info_hash"), f"{where}.info_hash"),
        private=private,
    )


def parse_search(params: Iterable[tuple[str, str]]) -> SearchQuery:
    """A search from query-string pairs (each key at most once)."""
    seen: dict[str, str] = {}
    for key, value in params:
        if key not in _SEARCH_PARAMS:
            raise IndexRequestError(f"unknown search parameter {_excerpt(key)}")
        if key in seen:
            raise IndexRequestError(f"search parameter {key} given twice")
        seen[key] = value
    try:
        match = MatchKind(seen.get("match", "word"))
    except ValueError:
        raise IndexRequestError("match: must be word, substring or regex") from None
    case = seen.get("case_sensitive", "0").lower()
    if case not in ("0", "1", "true", "false"):
        raise IndexRequestError("case_sensitive: must be 0 or 1")
    ext = seen.get("ext")
    if ext is not None:
        ext = ext.removeprefix(".").lower()
    info_hash = seen.get("info_hash")
    return SearchQuery(
        text=seen.get("q", ""),
        match=match,
        case_sensitive=case in ("1", "true"),
        min_size=_decimal(seen.get("min_size"), "min_size"),
        max_size=_decimal(seen.get("max_size"), "max_size"),
        ext=ext,
        info_hash=_info_hash(info_hash, "info_hash") if info_hash is not None else None,
        limit=_decimal(seen.get("limit"), "limit"),
    )


def _decimal(text: str | None, what: str) -> int | None:
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or int(text) > MAX_SIZE:
        raise IndexRequestError(f"{what}: must be an integer 0-{MAX_SIZE}")
    return int(text)


# ---------------------------------------------------------------------------------------------
# Server side: responses out


def join_reply(session: Session, ttl: float) -> bytes:
    return dumps({"session": session.token, "peer": str(session.peer), "ttl": ttl})


def publish_reply(result: PublishResult, ttl: float) -> bytes:
    return dumps(
        {"added": result.added, "removed": result.removed, "total": result.total, "ttl": ttl}
    )


def search_reply(result: SearchResult, took_ms: float) -> bytes:
    return dumps(
        {
            "hits": [
                {
                    "name": h.name,
                    "size": h.size,
                    "info_hash": h.info_hash.hex(),
                    "peers": [str(p) for p in h.peers],
                }
                for h in result.hits
            ],
            "truncated": result.truncated,
            "took_ms": round(took_ms, 3),
        }
    )


def stats_reply(stats: IndexStats) -> bytes:
    return dumps(
        {
            "sessions": stats.sessions,
            "entries": stats.entries,
            "info_hashes": stats.info_hashes,
            "words": stats.words,
            "text_bytes": stats.text_bytes,
        }
    )


# ---------------------------------------------------------------------------------------------
# Client side


def search_params(query: SearchQuery) -> dict[str, str]:
    """The query string of a search (only what differs from the defaults)."""
    params: dict[str, str] = {}
    if query.text:
        params["q"] = query.text
    if query.match is not MatchKind.WORD:
        params["match"] = query.match.value
    if query.case_sensitive:
        params["case_sensitive"] = "1"
    for name in ("min_size", "max_size", "limit"):
        value = getattr(query, name)
        if value is not None:
            params[name] = str(value)
    if query.ext is not None:
        params["ext"] = query.ext
    if query.info_hash is not None:
        params["info_hash"] = query.info_hash.hex()
    return params


def file_object(f: SharedFile) -> dict[str, object]:
    return {"name": f.name, "size": f.size, "info_hash": f.info_hash.hex(), "private": f.private}


def _reply_object(body: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        raise IndexResponseError("index reply is not JSON") from None
    if not isinstance(obj, dict):
        raise IndexResponseError("index reply is not a JSON object")
    return obj


def _reply_field(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise IndexResponseError(f"index reply: {key} missing or of the wrong type")
    return value


def parse_error(body: bytes) -> str | None:
    """The ``error`` message of an error reply, if it has one."""
    try:
        obj = _reply_object(body)
    except IndexResponseError:
        return None
    message = obj.get("error")
    return " ".join(message.split())[:300] if isinstance(message, str) else None


def parse_join_reply(body: bytes) -> tuple[str, PeerAddr, float]:
    """``(session, peer address as the index sees it, ttl)``."""
    obj = _reply_object(body)
    token = _reply_field(obj, "session", str)
    try:
        parse_token({"session": token})
        peer = PeerAddr.parse(_reply_field(obj, "peer", str))
    except (IndexRequestError, ValueError) as exc:
        raise IndexResponseError(f"index reply: {exc}") from None
    return token, peer, _ttl(obj)


def _ttl(obj: Mapping[str, Any]) -> float:
    ttl = float(_reply_field(obj, "ttl", (int, float)))
    if not 0 < ttl < 10**9:
        raise IndexResponseError("index reply: ttl out of range")
    return ttl


def parse_publish_reply(body: bytes) -> tuple[int, int, int, float]:
    """``(added, removed, total, ttl)``."""
    obj = _reply_object(body)
    counts = [_reply_field(obj, k, int) for k in ("added", "removed", "total")]
    return counts[0], counts[1], counts[2], _ttl(obj)


def parse_refresh_reply(body: bytes) -> float:
    return _ttl(_reply_object(body))


def parse_leave_reply(body: bytes) -> int:
    removed: int = _reply_field(_reply_object(body), "removed", int)
    return removed


def parse_search_reply(body: bytes) -> tuple[SearchResult, float]:
    """``(result, server's took_ms)``; hits are checked field by field."""
    obj = _reply_object(body)
    raw_hits = _reply_field(obj, "hits", list)
    truncated = _reply_field(obj, "truncated", bool)
    took = float(_reply_field(obj, "took_ms", (int, float)))
    hits: list[SearchHit] = []
    for i, raw in enumerate(raw_hits):
        if not isinstance(raw, dict):
            raise IndexResponseError(f"index reply: hits[{i}] is not an object")
        try:
            name = _reply_field(raw, "name", str)
            if not name or has_control(name):
                raise IndexResponseError("name empty or with control characters")
            size = _reply_field(raw, "size", int)
            if not 0 <= size <= MAX_SIZE:
                raise IndexResponseError("size out of range")
            info_hash = _info_hash(raw.get("info_hash"), "info_hash")
            peers = tuple(PeerAddr.parse(p) for p in _reply_field(raw, "peers", list))
        except (IndexRequestError, IndexResponseError, ValueError, TypeError, AttributeError) as e:
            raise IndexResponseError(f"index reply: hits[{i}]: {e}") from None
        hits.append(SearchHit(name=name, size=size, info_hash=info_hash, peers=peers))
    return SearchResult(hits=tuple(hits), truncated=truncated), took
