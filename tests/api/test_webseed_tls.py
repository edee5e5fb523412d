"""HTTPS web seeds (BEP 19 over TLS): aiohttp's static files behind a certificate signed by a
CA the test makes; trusted through ``Settings.ca_file`` / ``--ca-file`` or ``SSL_CERT_FILE``,
and refused cleanly when nothing trusts it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from torrentkit.events import PeerBanned, PeerDisconnected
from torrentkit.maketorrent import make_torrent
from torrentkit.settings import Settings, SettingsError

from .helpers import KIB, payload, same_files
from .test_webseed_api import fetch
from .webseed_server import make_certificates, web_seed_server


@pytest.mark.parametrize("trust", ["ca_file", "SSL_CERT_FILE"])
async def test_https_web_seed_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trust: str
) -> None:
    certs = make_certificates(tmp_path / "certs")
    src = payload(tmp_path / "src", {"pack/a.bin": 300 * KIB + 11, "pack/b c.bin": 90 * KIB})
    # The certificate names both; "localhost" also checks the DNS name is matched.
    host = "127.0.0.1" if trust == "ca_file" else "localhost"
    ca = certs.ca if trust == "ca_file" else None
    if ca is None:
        monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca))  # read when https is first used
    with web_seed_server(src, tls=certs, host=host) as server:
        url = server.url("ok")
        assert url.startswith("https://")
        raw = make_torrent(src / "pack", piece_length=16 * KIB, url_list=[url])
        events = await fetch(raw, tmp_path / "dest", tmp_path / "state", ca_file=ca)
        assert server.hits["ok"] >= 2
    assert same_files(src / "pack", tmp_path / "dest" / "pack")
    left = [e for e in events if isinstance(e, PeerDisconnected) and e.peer == url]
    assert [e.reason for e in left] == ["download complete"]


@pytest.mark.parametrize("why", ["unknown CA", "other host"])
async def test_untrusted_https_web_seed_is_dropped_and_the_download_goes_on(
    tmp_path: Path, why: str
) -> None:
    certs = make_certificates(tmp_path / "certs")
    ca = None
    if why == "other host":  # trusted CA, but the certificate names another host
        certs = make_certificates(tmp_path / "other", hosts=("example.invalid",))
        ca = certs.ca
    src = payload(tmp_path / "src", {"pack/x.bin": 400 * KIB, "pack/y.bin": 50 * KIB})
    with (
        web_seed_server(src, tls=certs) as tls_server,
        web_seed_server(src) as plain_server,
    ):
        bad, good = tls_server.url("ok"), plain_server.url("ok")
        raw = make_torrent(src / "pack", piece_length=16 * KIB, url_list=[bad, good])
        events = await fetch(raw, tmp_path / "dest", tmp_path / "state", ca_file=ca)
        assert tls_server.hits["ok"] == 0  # no request got past the handshake
    assert same_files(src / "pack", tmp_path / "dest" / "pack")
    left = [e for e in events if isinstance(e, PeerDisconnected) and e.peer == bad]
    # Dropped at its first try, not retried with backoff; it never sent data to blame.
    assert len(left) == 1 and left[0].downloaded == 0
    assert left[0].reason.startswith("https certificate not trusted: "), left[0].reason
    words = "unable to get local issuer" if why == "unknown CA" else "mismatch"
    assert words in left[0].reason, left[0].reason
    assert not [e for e in events if isinstance(e, PeerBanned)]


def test_ca_file_is_checked_when_settings_are_made(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    for path, words in [(junk, "no certificate"), (tmp_path / "nope.pem", "No such file")]:
        with pytest.raises(SettingsError, match=f"ca_file: .*{words}"):
            Settings(ca_file=path)
    certs = make_certificates(tmp_path / "certs")
    made = Settings(ca_file=str(certs.ca))  # type: ignore[arg-type]
    assert made.ca_file == certs.ca  # a str becomes a Path


@pytest.mark.parametrize("command", ["download", "seed"])
def test_cli_bad_ca_file_is_a_usage_error(tmp_path: Path, command: str) -> None:
    (tmp_path / "f.bin").write_bytes(b"x" * 1000)
    torrent = tmp_path / "f.torrent"
    torrent.write_bytes(make_torrent(tmp_path / "f.bin", piece_length=16 * KIB))
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    where = ["-o", str(tmp_path / "out")] if command == "download" else [str(tmp_path)]
    r = subprocess.run(
        [sys.executable, "-m", "torrentkit.cli.main", command, str(torrent), *where,
         "--bind", "127.0.0.1", "--no-dht", "--no-tracker", "--state-dir", str(tmp_path / "s"),
         "--ca-file", str(junk)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("torrentkit: error: --ca-file: ")


def test_cli_download_over_https_with_ca_file(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path / "certs")
    src = payload(tmp_path / "src", {"f.bin": 200 * KIB})
    torrent = tmp_path / "f.torrent"
    with web_seed_server(src, tls=certs) as server:
        raw = make_torrent(src / "f.bin", piece_length=16 * KIB, url_list=[server.url("ok")])
        torrent.write_bytes(raw)
        r = subprocess.run(
            [sys.executable, "-m", "torrentkit.cli.main", "download", str(torrent),
             "-o", str(tmp_path / "out"), "--bind", "127.0.0.1", "--no-dht", "--no-tracker",
             "--state-dir", str(tmp_path / "s"), "--ca-file", str(certs.ca), "--no-ui",
             "--timeout", "60"],
            capture_output=True, text=True, timeout=90,
        )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "f.bin").read_bytes() == (src / "f.bin").read_bytes()
