"""Encrypted connections (MSE/PE) with real clients on 127.0.0.1 (issue 12, item 4).

libtorrent with encryption forced both ways and RC4 only (``pe_forced``, ``pe_rc4``), aria2c
with ``--bt-require-crypto=true --bt-min-crypto-level=arc4`` and transmission-cli with
``-er``: none of them talks plaintext, so a finished download proves the encrypted path,
in both directions, ending byte-identical. And the two mismatches -- ours requiring
encryption against a peer that has it disabled, ours with it disabled against a peer that
requires it -- end within 30 s with exit 1 and one line saying why (docs/cli.md).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import libtorrent as lt
import pytest

from tests.interop.ours import OurPeer, our_download, our_seed
from tests.interop.peers import (
    LOOPBACK,
    MiB,
    aria2c,
    free_port,
    libtorrent_session,
    lt_add,
    lt_port,
    lt_wait_finished,
    make_payload,
    make_test_torrent,
    run_tracker,
    transmission_cli,
    wait_until,
    wait_written,
)
from tests.interop.test_client_interop import _connected_clients, _finished_ok

pytestmark = [pytest.mark.interop, pytest.mark.slow]

KiB = 1024
#: libtorrent talking only RC4-encrypted MSE, both ways.
LT_FORCED: dict[str, Any] = {
    "out_enc_policy": int(lt.enc_policy.pe_forced),
    "in_enc_policy": int(lt.enc_policy.pe_forced),
    "allowed_enc_level": int(lt.enc_level.pe_rc4),
}
#: libtorrent that never encrypts (and refuses encrypted handshakes).
LT_DISABLED: dict[str, Any] = {
    "out_enc_policy": int(lt.enc_policy.pe_disabled),
    "in_enc_policy": int(lt.enc_policy.pe_disabled),
}
ARIA2_CRYPTO = ("--bt-require-crypto=true", "--bt-min-crypto-level=arc4")
#: a torrent whose tracker nobody runs: peers meet through --peer / connect_peer only
NO_TRACKER = "http://127.0.0.1:9/announce"


def payload_and_torrent(tmp_path: Path, size: int, announce: str = NO_TRACKER) -> tuple[Path, Path]:
    payload = make_payload(tmp_path / "seed" / "payload.bin", size)
    torrent = make_test_torrent(payload, announce, tmp_path / "payload.torrent",
                                piece_length=32 * KiB)  # fmt: skip
    return payload, torrent


def encryption_seen(peer: OurPeer) -> set[str]:
    """How our links were encrypted (``peer_connected``'s ``encryption``)."""
    return {e["encryption"] for e in peer.events() if e["event"] == "peer_connected"}


# --------------------------------------------------------------------------- libtorrent


@pytest.mark.parametrize("policy", ["require", "prefer"])
def test_ours_downloads_from_a_forced_libtorrent_seeder(tmp_path: Path, policy: str) -> None:
    payload, torrent = payload_and_torrent(tmp_path, 2 * MiB)
    with libtorrent_session(**LT_FORCED) as seeder:
        lt_add(seeder, torrent, payload.parent, seed=True)
        port = lt_port(seeder)
        with our_download(torrent, tmp_path / "dl", logs=tmp_path / "logs",
                          state_dir=tmp_path / "state", peers=[f"{LOOPBACK}:{port}"],
                          no_tracker=True, timeout=40,
                          extra=["--encryption", policy]) as ours:  # fmt: skip
            _finished_ok(ours, 45)
    assert (tmp_path / "dl" / "payload.bin").read_bytes() == payload.read_bytes()
    assert any(c.startswith("libtorrent") for c in _connected_clients(ours)), ours.logs()
    assert encryption_seen(ours) == {"rc4"}


def test_default_libtorrent_settles_on_plaintext_after_the_handshake(tmp_path: Path) -> None:
    """Both defaults: our encrypted handshake offers RC4 and plaintext, libtorrent
    (``prefer_rc4`` off) picks plaintext -- the data path costs nothing extra."""
    payload, torrent = payload_and_torrent(tmp_path, 1 * MiB)
    with libtorrent_session() as seeder:
        lt_add(seeder, torrent, payload.parent, seed=True)
        port = lt_port(seeder)
        with our_download(torrent, tmp_path / "dl", logs=tmp_path / "logs",
                          state_dir=tmp_path / "state", peers=[f"{LOOPBACK}:{port}"],
                          no_tracker=True, timeout=40) as ours:  # fmt: skip
            _finished_ok(ours, 45)
    assert (tmp_path / "dl" / "payload.bin").read_bytes() == payload.read_bytes()
    assert encryption_seen(ours) == {"handshake"}


@pytest.mark.parametrize("policy", ["require", "prefer"])
def test_forced_libtorrent_downloads_from_our_seeder(tmp_path: Path, policy: str) -> None:
    payload, torrent = payload_and_torrent(tmp_path, 2 * MiB)
    with (
        our_seed(torrent, payload.parent, logs=tmp_path / "logs", state_dir=tmp_path / "state",
                 extra=["--no-tracker", "--encryption", policy]) as ours,
        libtorrent_session(**LT_FORCED) as leecher,
    ):  # fmt: skip
        handle = lt_add(leecher, torrent, tmp_path / "dl")
        handle.connect_peer((LOOPBACK, ours.port))
        lt_wait_finished(handle, 40)
        wait_written(tmp_path / "dl" / "payload.bin", payload.read_bytes())
    assert ours.summary()["uploaded"] >= 2 * MiB, ours.logs()
    assert encryption_seen(ours) == {"rc4"}


# --------------------------------------------------------------------------- aria2c


def test_ours_downloads_from_an_aria2c_seeder_requiring_crypto(tmp_path: Path) -> None:
    payload, torrent = payload_and_torrent(tmp_path, 2 * MiB)
    port = free_port()
    with aria2c(torrent, payload.parent, port=port, seed=True, extra=ARIA2_CRYPTO):
        wait_until(lambda: _listening(port), 15, "aria2c to listen")
        with our_download(torrent, tmp_path / "dl", logs=tmp_path / "logs",
                          state_dir=tmp_path / "state", peers=[f"{LOOPBACK}:{port}"],
                          no_tracker=True, timeout=40,
                          extra=["--encryption", "require"]) as ours:  # fmt: skip
            _finished_ok(ours, 45)
    assert (tmp_path / "dl" / "payload.bin").read_bytes() == payload.read_bytes()
    assert any(c.startswith("aria2") for c in _connected_clients(ours)), ours.logs()
    assert encryption_seen(ours) == {"rc4"}


def test_aria2c_requiring_crypto_downloads_from_our_seeder(tmp_path: Path) -> None:
    """aria2c learns our address from our tracker (it has no --peer), then dials us."""
    with run_tracker() as tracker:
        payload, torrent = payload_and_torrent(tmp_path, 2 * MiB, tracker.announce_url)
        with our_seed(torrent, payload.parent, logs=tmp_path / "logs",
                      state_dir=tmp_path / "state",
                      extra=["--encryption", "require"]) as ours:  # fmt: skip
            ih = lt.torrent_info(str(torrent)).info_hashes().v1.to_bytes()
            wait_until(lambda: tracker.scrape(ih).get(b"complete", 0) >= 1, 20, "our announce")
            with aria2c(torrent, tmp_path / "dl", port=free_port(), extra=ARIA2_CRYPTO) as proc:
                try:
                    code: int | None = proc.wait(40)
                except subprocess.TimeoutExpired:
                    code = None
            logs = "\n".join(p.read_text()[-2000:] for p in tmp_path.glob("aria2c-*.log"))
            assert code == 0, f"aria2c: {code}\n{logs}\n{ours.logs()}"
            assert (tmp_path / "dl" / "payload.bin").read_bytes() == payload.read_bytes()
        assert ours.summary()["uploaded"] >= 2 * MiB
        assert encryption_seen(ours) == {"rc4"}


# --------------------------------------------------------------------------- transmission


def test_ours_downloads_from_a_transmission_seeder_requiring_encryption(tmp_path: Path) -> None:
    """Transmission 3.00 never dials 127.x: our leecher dials it (``--peer``); it unchokes at
    its 10 s rechoke."""
    with run_tracker() as tracker:
        payload, torrent = payload_and_torrent(tmp_path, 1 * MiB, tracker.announce_url)
        port = free_port()
        with transmission_cli(torrent, payload.parent, port=port, encryption="r",
                              settings={"ratio-limit-enabled": False}):  # fmt: skip
            ih = lt.torrent_info(str(torrent)).info_hashes().v1.to_bytes()
            wait_until(lambda: tracker.scrape(ih).get(b"complete", 0) >= 1, 20, "its announce")
            with our_download(torrent, tmp_path / "dl", logs=tmp_path / "logs",
                              state_dir=tmp_path / "state", peers=[f"{LOOPBACK}:{port}"],
                              timeout=50) as ours:  # fmt: skip
                _finished_ok(ours, 55)
    assert (tmp_path / "dl" / "payload.bin").read_bytes() == payload.read_bytes()
    assert any(c.startswith("Transmission") for c in _connected_clients(ours)), ours.logs()
    assert encryption_seen(ours) == {"rc4"}  # our default (prefer) met a peer requiring RC4


# --------------------------------------------------------------------------- mismatches


@pytest.mark.parametrize(
    ("ours_policy", "theirs", "why"),
    [
        ("require", LT_DISABLED, "encryption is required and the peers may not accept it"),
        ("disable", LT_FORCED, "encryption is disabled and the peers may require it"),
    ],
)
def test_policy_mismatch_fails_fast(
    tmp_path: Path, ours_policy: str, theirs: dict[str, Any], why: str
) -> None:
    payload, torrent = payload_and_torrent(tmp_path, 256 * KiB)
    with libtorrent_session(**theirs) as seeder:
        lt_add(seeder, torrent, payload.parent, seed=True)
        port = lt_port(seeder)
        start = time.monotonic()
        with our_download(torrent, tmp_path / "dl", logs=tmp_path / "logs",
                          state_dir=tmp_path / "state", peers=[f"{LOOPBACK}:{port}"],
                          no_tracker=True, timeout=120,
                          extra=["--encryption", ours_policy]) as ours:  # fmt: skip
            code = ours.wait(30)
        took = time.monotonic() - start
    assert code == 1, ours.logs()
    assert took < 30
    err = ours.stderr.read_text().strip().splitlines()
    assert len(err) == 1 and "every peer refused our handshake" in err[0], err
    assert why in err[0] and f"{LOOPBACK}:{port}" in err[0]
    assert "Traceback" not in ours.stderr.read_text()


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex((LOOPBACK, port)) == 0
