"""`torrentkit create` and `torrentkit info`, run as a user would (a real subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from torrentkit.metainfo import parse_torrent


def tk(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "torrentkit.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
    )


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    root = tmp_path / "album"
    (root / "disc 1").mkdir(parents=True)
    (root / "disc 1" / "01 été.flac").write_bytes(bytes(range(256)) * 700)
    (root / "cover.jpg").write_bytes(b"\xff\xd8" * 5000)
    return root


def test_create_prints_info_hash_and_info_json_agrees(payload: Path, tmp_path: Path) -> None:
    out = tmp_path / "album.torrent"
    r = tk(
        "create", str(payload), "-o", str(out),
        "-t", "http://a.example/announce,http://b.example/announce",
        "-t", "http://c.example/announce",
        "--piece-size", "32K", "--private", "--comment", "hello",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    meta = parse_torrent(out.read_bytes())
    assert r.stdout.strip() == meta.info_hash.hex()

    r = tk("info", str(out), "--json")
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert obj["info_hash"] == meta.info_hash.hex()
    assert obj["info_hash_v2"] is None
    assert obj["name"] == "album"
    assert obj["piece_length"] == 32768
    assert obj["private"] is True
    assert obj["trackers"] == [
        ["http://a.example/announce", "http://b.example/announce"],
        ["http://c.example/announce"],
    ]
    assert obj["files"] == [
        {"path": "album/cover.jpg", "length": 10000, "pad": False},
        {"path": "album/disc 1/01 été.flac", "length": 179200, "pad": False},
    ]
    assert obj["total_size"] == 189200
    assert obj["num_pieces"] == 6  # ceil(189200 / 32768)


def test_info_table_names_the_fields(payload: Path, tmp_path: Path) -> None:
    out = tmp_path / "a.torrent"
    assert tk("create", str(payload), "-o", str(out)).returncode == 0
    r = tk("info", str(out))
    assert r.returncode == 0, r.stderr
    for label in ("name", "info-hash", "size", "piece length", "pieces", "01 été.flac"):
        assert label in r.stdout


def test_info_of_a_magnet(tmp_path: Path) -> None:
    magnet = (
        "magnet:?xt=urn:btih:c9e15763f722f23e98a29decdfae341b98d53056"
        "&dn=Cosmos%20Laundromat&tr=http%3A%2F%2Ft.example%2Fannounce&x.pe=127.0.0.1:6881"
        "&ws=http%3A%2F%2Fw.example%2Fa%20b%2F"
    )
    r = tk("info", magnet, "--json")
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert obj["info_hash"] == "c9e15763f722f23e98a29decdfae341b98d53056"
    assert obj["name"] == "Cosmos Laundromat"
    assert obj["trackers"] == [["http://t.example/announce"]]
    assert obj["peers"] == ["127.0.0.1:6881"]
    assert obj["url_list"] == ["http://w.example/a b/"]
    assert obj["total_size"] is None and obj["files"] is None


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("info", "{tmp}/missing.torrent"), "missing.torrent"),
        (("info", "{tmp}/garbage.torrent"), "not valid bencode"),
        (("info", "magnet:?xt=urn:btih:xyz"), "magnet.xt"),
        (("info", "{tmp}"), "is a folder"),
        (("create", "{tmp}/nothing-here", "-o", "{tmp}/x.torrent"), "no such file"),
        (("create", "{tmp}/album", "-o", "{tmp}/x.torrent", "--piece-size", "3K"), "power of two"),
        (("create", "{tmp}/album", "-o", "{tmp}/x.torrent", "-t", "ftp://x"), "tracker URL"),
        (("create", "{tmp}/album", "-o", "{tmp}/no/such/dir/x.torrent"), "no such folder"),
        (("create", "{tmp}/empty", "-o", "{tmp}/x.torrent"), "no data"),
        (("frobnicate",), "invalid choice"),
        (("info",), "required"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    payload: Path, tmp_path: Path, args: tuple[str, ...], needle: str
) -> None:
    (tmp_path / "garbage.torrent").write_bytes(b"<html>not a torrent</html>")
    (tmp_path / "empty").mkdir()
    r = tk(*(a.format(tmp=tmp_path) for a in args))
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert needle in lines[0]
    assert "Traceback" not in r.stderr


def test_create_refuses_to_overwrite_without_force(payload: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.torrent"
    out.write_bytes(b"keep me")
    r = tk("create", str(payload), "-o", str(out))
    assert r.returncode == 2 and "already exists" in r.stderr
    assert out.read_bytes() == b"keep me"
    assert tk("create", str(payload), "-o", str(out), "--force").returncode == 0
    assert parse_torrent(out.read_bytes()).name == "album"


def test_hostile_name_never_reaches_the_terminal(tmp_path: Path) -> None:
    # A name carrying a terminal escape is refused by the parser; the error line that names
    # the field must not carry the escape byte either.
    raw = (
        b"d4:infod6:lengthi5e4:name12:evil\x1b[31mred12:piece lengthi16384e"
        b"6:pieces20:" + b"\0" * 20 + b"ee"
    )
    (tmp_path / "evil.torrent").write_bytes(raw)
    r = tk("info", str(tmp_path / "evil.torrent"))
    assert r.returncode == 2
    assert "\x1b" not in r.stderr
    assert "info.name: control character" in r.stderr


def test_safe_text_escapes_what_could_fool_a_terminal() -> None:
    from torrentkit.cli.common import safe_text

    assert safe_text("evil\x1b[31mred") == "evil\\x1b[31mred"
    assert safe_text("a\u202eb\u200bc\u2028d\ufeff") == "a\\u202eb\\u200bc\\u2028d\\ufeff"
    assert safe_text("été 日本 ok") == "été 日本 ok"
