"""A real HTTP server for web seed tests: aiohttp on its own thread, on 127.0.0.1.

``/ok/...`` serves the files under ``root`` with aiohttp's ``FileResponse``, which honours
``Range`` (206 and ``Content-Range``) as any ordinary web server does. The other prefixes
misbehave in one way each (docs/limits.md item 16):

- ``/full200/``: ignores ``Range``, answers 200 and the whole file;
- ``/badrange/``: the right bytes under a ``Content-Range`` shifted by one;
- ``/loop/``: redirects to itself forever;
- ``/longer/``: the asked bytes and more, chunked (no length to check up front);
- ``/corrupt/``: the asked range with every byte flipped;
- ``/busy/``: 503 for the first ``busy`` requests, then like ``/ok/``;
- ``/stall/``: a correct 206 header and the first byte, then nothing for 3 s;
- ``/slow/``: correct replies, sent 16 KiB at a time with ``slow`` seconds between (a
  server far away, or slow per connection);
- ``/flaky/``: like ``/slow/``, but every ``flaky``-th request gets a 503;
- ``/breaks/``: like ``/slow/`` for the first ``breaks`` requests, then a shifted
  ``Content-Range`` as ``/badrange/``.

``hits`` counts requests per prefix; ``in_flight`` the requests being answered at this
moment, ``most_in_flight`` the most at once. With ``tls=`` (see :func:`make_certificates`)
it serves https.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import ipaddress
import logging
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote

from aiohttp import web
from aiohttp.web_request import BaseRequest

from torrentkit.discovery.aioservice import ServiceThread, host_port


class Certificates(NamedTuple):
    """PEM files: a CA's certificate, and a server certificate it signed (with its key)."""

    ca: Path
    cert: Path
    key: Path


def make_certificates(
    folder: Path, *, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
) -> Certificates:
    """A fresh CA and a server certificate for ``hosts`` signed by it, written to ``folder``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "torrentkit test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    out = Certificates(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    out.ca.write_bytes(ca.public_bytes(pem))
    out.cert.write_bytes(cert.public_bytes(pem))
    out.key.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return out


class WebSeedServer:
    def __init__(
        self, root: Path, *, busy: int = 0, slow: float = 0.01, flaky: int = 3, breaks: int = 4
    ) -> None:
        self.root = root.resolve()
        self.busy = busy
        self.slow = slow
        self.flaky = flaky
        self.breaks = breaks
        self.hits: collections.Counter[str] = collections.Counter()
        self.in_flight = 0
        self.most_in_flight = 0
        self.base = ""

    def url(self, mode: str) -> str:
        return f"{self.base}/{mode}/"

    def _file(self, rest: str) -> Path:
        path = (self.root / unquote(rest)).resolve()
        if self.root not in path.parents or not path.is_file():
            raise web.HTTPNotFound()
        return path

    async def handle(self, request: BaseRequest) -> web.StreamResponse:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return await self._handle(request)
        finally:
            self.in_flight -= 1

    async def _handle(self, request: BaseRequest) -> web.StreamResponse:
        _, mode, rest = request.raw_path.split("/", 2)
        self.hits[mode] += 1
        if mode == "loop":
            return web.Response(status=302, headers={"Location": request.raw_path})
        path = self._file(rest)
        if mode == "busy" and self.hits[mode] <= self.busy:
            return web.Response(status=503, text="busy")
        if mode == "flaky" and self.hits[mode] % self.flaky == 0:
            return web.Response(status=503, text="busy")
        if mode == "breaks" and self.hits[mode] > self.breaks:
            mode = "badrange"
        if mode in ("ok", "busy"):
            return web.FileResponse(path)
        data = path.read_bytes()
        if mode == "full200":
            return web.Response(body=data)
        rng = request.http_range
        start = rng.start or 0
        stop = len(data) if rng.stop is None else rng.stop
        part = data[start:stop]
        content_range = f"bytes {start}-{stop - 1}/{len(data)}"
        if mode == "badrange":
            content_range = f"bytes {start + 1}-{stop}/{len(data)}"
        elif mode == "corrupt":
            part = bytes(b ^ 0xFF for b in part)
        elif mode == "stall":
            resp = web.StreamResponse(
                status=206,
                headers={"Content-Range": content_range, "Content-Length": str(len(part))},
            )
            await resp.prepare(request)
            await resp.write(part[:1])
            await asyncio.sleep(3)
            return resp
        elif mode in ("slow", "flaky", "breaks"):
            resp = web.StreamResponse(
                status=206,
                headers={"Content-Range": content_range, "Content-Length": str(len(part))},
            )
            await resp.prepare(request)
            for at in range(0, len(part), 16 * 1024):
                await resp.write(part[at : at + 16 * 1024])
                await asyncio.sleep(self.slow)
            await resp.write_eof()
            return resp
        elif mode == "longer":
            resp = web.StreamResponse(status=206, headers={"Content-Range": content_range})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            await resp.write(part)
            await resp.write(b"x" * 100_000)
            await resp.write_eof()
            return resp
        return web.Response(status=206, body=part, headers={"Content-Range": content_range})


@contextlib.contextmanager
def web_seed_server(
    root: Path,
    *,
    tls: Certificates | None = None,
    host: str = "127.0.0.1",
    busy: int = 0,
    slow: float = 0.01,
    flaky: int = 3,
    breaks: int = 4,
) -> Iterator[WebSeedServer]:
    """Serve ``root`` on 127.0.0.1 (a free port) until the block ends; over https with
    ``tls``'s server certificate, its URLs naming ``host``."""
    server = WebSeedServer(root, busy=busy, slow=slow, flaky=flaky, breaks=breaks)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    server.base = f"https://{host}:{port}" if tls else f"http://{host_port(sock)}"
    context = None
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls.cert, tls.key)

    async def serve(s: socket.socket, stop: asyncio.Event) -> None:
        runner = web.ServerRunner(
            web.Server(
                server.handle, access_log=None, logger=logging.getLogger("webseed-test-server")
            ),
            handle_signals=False,
            shutdown_timeout=1,
        )
        await runner.setup()
        try:
            await web.SockSite(runner, s, ssl_context=context).start()
            await stop.wait()
        finally:
            await runner.cleanup()

    with ServiceThread(sock, serve, "webseed-test-server"):
        yield server
