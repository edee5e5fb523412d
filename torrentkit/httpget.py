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

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import trio

from torrentkit.errors import TorrentkitError

if TYPE_CHECKING:
    import ssl

__all__ = [
    "CappedReply",
    "FetchError",
    "ReplyRefused",
    "error_reason",
    "new_client",
    "request_capped",
    "tls_context",
]


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
        raise FetchError(f"{type(exc).__name__}: {error_reason(exc)}") from None
    except httpx.InvalidURL as exc:
        raise FetchError(f"invalid URL: {exc}") from None


def error_reason(exc: BaseException) -> str:
    """What went wrong, in words: httpx's own message, or (when it has none, as for TLS
    failures) the message of the error underneath it."""
    seen = exc
    while not str(seen) and (seen.__cause__ or seen.__context__) is not None:
        seen = seen.__cause__ or seen.__context__  # type: ignore[assignment]
    return str(seen) or "no reason given"


def tls_context(ca_file: str | os.PathLike[str] | None = None) -> ssl.SSLContext:
    """The SSL context our https requests verify servers with: the CA bundle httpx ships
    (certifi's), or the one ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` name instead (as OpenSSL
    and curl read them), plus the PEM certificates in ``ca_file`` (a private CA, a
    self-signed web seed). Raises ``OSError`` / ``ssl.SSLError`` if ``ca_file`` cannot be
    read or holds no certificate."""
    context = httpx.create_ssl_context(verify=True, trust_env=True)
    if ca_file is not None:
        context.load_verify_locations(cafile=os.fspath(ca_file))
    return context


class _TLSOnFirstUse(httpx.AsyncBaseTransport):
    """The https transport, made on the first https request: building an SSL context and
    loading the CA bundle costs ~80 ms of CPU, which every process that only ever speaks
    plain HTTP (most trackers, loopback tests, the swarm benchmark's eight leechers) would
    otherwise pay at start."""

    def __init__(self, ca_file: str | os.PathLike[str] | None, **options: Any) -> None:
        self._ca_file = ca_file
        self._options = options
        self._transport: httpx.AsyncHTTPTransport | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._transport is None:
            try:
                context = tls_context(self._ca_file)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise httpx.ConnectError(f"cannot load CA file: {exc}", request=request) from None
            self._transport = httpx.AsyncHTTPTransport(verify=context, **self._options)
        return await self._transport.handle_async_request(request)

    async def aclose(self) -> None:
        if self._transport is not None:
            await self._transport.aclose()


def new_client(
    *,
    timeout: httpx.Timeout,
    headers: Mapping[str, str],
    max_redirects: int,
    ca_file: str | os.PathLike[str] | None = None,
) -> httpx.AsyncClient:
    """An httpx client for our own requests: redirects followed up to ``max_redirects``,
    environment proxies ignored (``trust_env=False``: traffic goes where the URL says, and
    loopback tests never reach a proxy), certificates verified on https against
    :func:`tls_context` (the default bundle, ``SSL_CERT_FILE``, plus ``ca_file``), and the
    TLS set-up made only when the first https URL is fetched."""
    limits = httpx.Limits()
    return httpx.AsyncClient(
        timeout=timeout,
        headers=dict(headers),
        follow_redirects=max_redirects > 0,
        max_redirects=max_redirects,
        trust_env=False,
        # Plain http never uses an SSL context: no CA bundle is loaded for it.
        transport=httpx.AsyncHTTPTransport(verify=False, limits=limits),
        mounts={"https://": _TLSOnFirstUse(ca_file, limits=limits)},
    )
