"""The one capped HTTP request, against a scripted server on 127.0.0.1 (port 0)."""

from __future__ import annotations

from typing import Any

import httpx
import outcome
import pytest
import trio
import trio.testing

from torrentkit.httpget import CappedReply, FetchError, ReplyRefused, request_capped

CAP = 1000
#: An endless body stops here if nobody hangs up.
STREAM_LIMIT = 64 * 1024 * 1024


class Scripted:
    """A one-trick HTTP server: reads a request head, sends ``response`` (then zeros for as
    long as the client reads, if ``endless``; nothing ever, if ``response`` is empty)."""

    def __init__(self, response: bytes, *, endless: bool = False) -> None:
        self.response = response
        self.endless = endless
        self.heads: list[bytes] = []
        self.sent = 0

    async def serve(self, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            data += chunk
        self.heads.append(data)
        if not self.response:
            await trio.sleep_forever()
        try:
            await stream.send_all(self.response)
            while self.endless and self.sent < STREAM_LIMIT:
                await stream.send_all(bytes(4096))
                self.sent += 4096
        except trio.BrokenResourceError:
            return
        await stream.aclose()


def http_reply(status: str, body: bytes, *extra: str, length: int | None = None) -> bytes:
    head = f"HTTP/1.1 {status}\r\n" + "".join(f"{h}\r\n" for h in extra)
    size = len(body) if length is None else length
    return head.encode() + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % size + body


async def fetch(server: Scripted, **kwargs: Any) -> CappedReply:
    args: dict[str, Any] = {"max_bytes": CAP, "timeout": 10.0, **kwargs}
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.serve)
        async with httpx.AsyncClient(trust_env=False, timeout=60) as http:
            result = await outcome.acapture(
                request_capped, http, f"http://127.0.0.1:{port}/x", **args
            )
        nursery.cancel_scope.cancel()
    return result.unwrap()


async def test_a_reply_comes_back_whatever_its_status() -> None:
    with trio.fail_after(20):
        reply = await fetch(Scripted(http_reply("200 OK", b"x" * CAP, "X-Y: z")))
        assert (reply.status, reply.body, reply.headers["x-y"]) == (200, b"x" * CAP, "z")
        reply = await fetch(Scripted(http_reply("404 Not Found", b"gone")))
        assert (reply.status, reply.body) == (404, b"gone")


async def test_params_headers_and_a_json_body_are_sent() -> None:
    server = Scripted(http_reply("206 Partial Content", b"abc"))
    with trio.fail_after(20):
        reply = await fetch(
            server, method="POST", params={"q": "a b"}, headers={"Range": "bytes=0-2"}, json=[1]
        )
    assert reply.status == 206
    head = server.heads[0].lower()
    assert head.startswith(b"post /x?q=a+b http/1.1") and b"\r\nrange: bytes=0-2\r\n" in head


@pytest.mark.parametrize(
    ("server", "message"),
    [
        (Scripted(http_reply("200 OK", b"", length=CAP + 1)), "reply of 1001 bytes exceeds"),
        (
            Scripted(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", endless=True),
            "reply exceeds 1000 bytes",
        ),
        (
            Scripted(http_reply("200 OK", b"\x1f\x8b", "Content-Encoding: gzip")),
            "content-encoding 'gzip'",
        ),
    ],
)
async def test_bodies_over_the_cap_or_encoded_are_refused(server: Scripted, message: str) -> None:
    with trio.fail_after(20), pytest.raises(ReplyRefused, match=message):
        await fetch(server)
    # An endless body is dropped soon after the cap (what loopback buffers held).
    assert server.sent < STREAM_LIMIT // 2


async def test_transport_errors_and_timeouts_are_fetch_errors(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(100):
        with pytest.raises(FetchError, match="no reply within 10 s") as info:
            await fetch(Scripted(b""))
        assert not isinstance(info.value, ReplyRefused)
        with pytest.raises(FetchError, match="RemoteProtocolError"):
            await fetch(Scripted(b"garbage\r\n\r\n"))
        async with httpx.AsyncClient(trust_env=False) as http:
            with pytest.raises(FetchError, match="UnsupportedProtocol"):
                await request_capped(http, "ftp://x/", max_bytes=CAP, timeout=1)
            with pytest.raises(FetchError, match="invalid URL"):
                await request_capped(http, "http://[::1/", max_bytes=CAP, timeout=1)


# ---- new_client: plain http without any TLS set-up, https verified when first used


def self_signed(tmp: Any) -> tuple[str, str]:
    import subprocess

    key, cert = str(tmp / "key.pem"), str(tmp / "cert.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
         "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


def plain_client() -> httpx.AsyncClient:
    from torrentkit.httpget import new_client

    return new_client(timeout=httpx.Timeout(5.0), headers={}, max_redirects=2)


async def test_new_client_fetches_plain_http() -> None:
    server = Scripted(http_reply("200 OK", b"hello"))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.serve)
        async with plain_client() as http:
            reply = await request_capped(
                http, f"http://127.0.0.1:{port}/x", max_bytes=CAP, timeout=5
            )
        nursery.cancel_scope.cancel()
    assert (reply.status, reply.body) == (200, b"hello")


async def test_new_client_verifies_https_certificates(tmp_path: Any) -> None:
    """https goes through a transport made on first use, and it verifies: a self-signed
    certificate is refused, and nothing is fetched."""
    import ssl

    key, cert = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    served: list[bytes] = []

    async def handle(stream: trio.SocketStream) -> None:
        tls = trio.SSLStream(stream, context, server_side=True)
        try:
            served.append(await tls.receive_some(65536))
        except trio.BrokenResourceError:
            return

    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        nursery.start_soon(trio.serve_listeners, handle, listeners)
        async with plain_client() as http:
            with pytest.raises(FetchError, match="CERTIFICATE_VERIFY_FAILED"):
                await request_capped(http, f"https://127.0.0.1:{port}/", max_bytes=CAP, timeout=5)
        nursery.cancel_scope.cancel()
    assert served == []
