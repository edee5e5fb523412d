"""One HTTP request whose reply body is read up to a cap (httpx on trio).

Trackers, the Napster index and (later) web seeds answer with bodies we must hold in memory,
so none may be read without a limit. :func:`request_capped` sends one request and reads the
body as it arrives:

- a declared ``Content-Length`` over ``max_bytes`` fails before any of the body is read; a
  body that grows past ``max_bytes`` fails as soon as it does, and the connection is dropped;
- a ``Content-Encoding`` other than identity fails (the bytes are read raw, and a compressed
  body could expand past the cap); clients should send ``Accept-Encoding: identity``;
- the whole exchange has one deadline, ``timeout`` seconds;
- every HTTP status comes back: what a 404 or a 206 means is the caller's business.

Errors: :class:`FetchError` (transport error, timeout, bad URL) and its subclass
:class:`ReplyRefused` (the server answered, but the body is over the cap or encoded), each
with a one-line message the caller can prefix and log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import trio

from torrentkit.errors import TorrentkitError

__all__ = ["CappedReply", "FetchError", "ReplyRefused", "request_capped"]


class FetchError(TorrentkitError):
    """A capped request got no usable reply: transport error, timeout, bad URL."""


class ReplyRefused(FetchError):
    """The server answered, but its body is over the cap or in a content-encoding."""


@dataclass(frozen=True, slots=True)
class CappedReply:
    status: int
    headers: httpx.Headers
    body: bytes


async def request_capped(
    http: httpx.AsyncClient,
    url: str,
    *,
    max_bytes: int,
    timeout: float,
    method: str = "GET",
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    json: Any = None,
) -> CappedReply:
    """Send ``method url`` (with ``params``, extra ``headers`` such as ``Range``, a ``json``
    body) and read the reply's body up to ``max_bytes``; see the module doc."""
    try:
        with trio.fail_after(timeout):
            async with http.stream(
                method, url, params=params, headers=headers, json=json
            ) as response:
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise ReplyRefused(f"reply of {declared} bytes exceeds {max_bytes} bytes")
                encoding = response.headers.get("content-encoding", "identity").lower()
                if encoding not in ("", "identity"):
                    raise ReplyRefused(f"reply has content-encoding {encoding!r}")
                body = bytearray()
                async for chunk in response.aiter_raw():
                    body += chunk
                    if len(body) > max_bytes:
                        raise ReplyRefused(f"reply exceeds {max_bytes} bytes")
                return CappedReply(response.status_code, response.headers, bytes(body))
    except trio.TooSlowError:
        raise FetchError(f"no reply within {timeout:g} s") from None
    except httpx.TimeoutException as exc:
        raise FetchError(f"timed out ({type(exc).__name__})") from None
    except httpx.HTTPError as exc:
        raise FetchError(f"{type(exc).__name__}: {exc}") from None
    except httpx.InvalidURL as exc:
        raise FetchError(f"invalid URL: {exc}") from None
