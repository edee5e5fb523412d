"""`torrentkit verify TORRENT DIR [--json]`: exit codes 0 / 1 / 2, one-line errors, JSON."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from torrentkit.cli.main import main
from torrentkit.maketorrent import make_torrent
from torrentkit.metainfo import parse_torrent

PIECE = 16 * 1024


def blob(n: int, seed: int) -> bytes:
    return bytes((i * 31 + seed * 7 + (i >> 8)) & 0xFF for i in range(n))


@pytest.fixture
def album(tmp_path: Path) -> tuple[Path, Path]:
    """DIR (holding album/) and album.torrent: 3 files + an empty one, 16 KiB pieces."""
    root = tmp_path / "dl"
    folder = root / "album"
    (folder / "disc 1").mkdir(parents=True)
    (folder / "a.flac").write_bytes(blob(40_000, 1))  # payload [0, 40,000)
    (folder / "disc 1" / "b.flac").write_bytes(blob(30_000, 2))  # [40,000, 70,000)
    (folder / "disc 1" / "empty.txt").write_bytes(b"")
    (folder / "z.txt").write_bytes(blob(5_000, 3))  # [70,000, 75,000)
    torrent = tmp_path / "album.torrent"
    torrent.write_bytes(make_torrent(folder, piece_length=PIECE))
    return root, torrent


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["verify", *args])
    out, err = capsys.readouterr()
    return code, out, err


def json_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def test_complete_copy_exits_0(
    capsys: pytest.CaptureFixture[str], album: tuple[Path, Path]
) -> None:
    root, torrent = album
    code, out, err = run(capsys, str(torrent), str(root))
    assert code == 0, err
    assert err == ""
    for name in ("a.flac", "b.flac", "empty.txt", "z.txt", "4 of 4 files ok", "5 of 5 pieces"):
        assert name in out


def test_json_one_object_per_file_then_summary(
    capsys: pytest.CaptureFixture[str], album: tuple[Path, Path]
) -> None:
    root, torrent = album
    (root / "album" / "z.txt").unlink()
    code, out, err = run(capsys, str(torrent), str(root), "--json")
    assert code == 1
    objs = json_lines(out)
    files = [{k: v for k, v in o.items() if k != "t"} for o in objs[:-1]]
    # make_torrent orders paths: a.flac, disc 1/b.flac, disc 1/empty.txt, z.txt
    assert files == [
        {"event": "file", "path": "album/a.flac", "length": 40_000, "status": "ok",
         "pieces": 3, "pieces_ok": 3, "problem": None},
        # b.flac's bytes are right, but its last piece (4) is shared with the missing z.txt
        {"event": "file", "path": "album/disc 1/b.flac", "length": 30_000,
         "status": "incomplete", "pieces": 3, "pieces_ok": 2, "problem": None},
        {"event": "file", "path": "album/disc 1/empty.txt", "length": 0, "status": "ok",
         "pieces": 0, "pieces_ok": 0, "problem": None},
        {"event": "file", "path": "album/z.txt", "length": 5_000, "status": "missing",
         "pieces": 1, "pieces_ok": 0, "problem": None},
    ]  # fmt: skip
    summary = objs[-1]
    assert summary["event"] == "summary"
    assert isinstance(summary["t"], float)
    assert {k: summary[k] for k in ("complete", "files", "files_ok", "pieces", "pieces_ok",
                                    "first_bad_piece", "first_bad_file", "total_size")} == {
        "complete": False, "files": 4, "files_ok": 2, "pieces": 5, "pieces_ok": 4,
        "first_bad_piece": 4, "first_bad_file": "album/z.txt", "total_size": 75_000,
    }  # fmt: skip
    assert err.count("\n") == 1
    assert "piece 4 is bad (album/z.txt: missing)" in err


def test_corrupt_byte_names_the_piece_and_file(
    capsys: pytest.CaptureFixture[str], album: tuple[Path, Path]
) -> None:
    root, torrent = album
    b = root / "album" / "disc 1" / "b.flac"
    data = bytearray(b.read_bytes())
    data[20_000] ^= 0xFF  # payload 60,000 -> piece 3 (49,152-65,535), b.flac only
    b.write_bytes(data)
    code, out, err = run(capsys, str(torrent), str(root))
    assert code == 1
    assert err == (
        "torrentkit: error: verify failed: piece 3 is bad "
        "(album/disc 1/b.flac: incomplete: 2 of 3 pieces); 1 of 4 files not ok, 1 of 5 pieces bad\n"
    )
    assert "incomplete: 2 of 3 pieces" in out


def test_missing_zero_length_file_fails_without_a_bad_piece(
    capsys: pytest.CaptureFixture[str], album: tuple[Path, Path]
) -> None:
    root, torrent = album
    (root / "album" / "disc 1" / "empty.txt").unlink()
    code, _, err = run(capsys, str(torrent), str(root), "--json")
    assert code == 1
    assert err == (
        "torrentkit: error: verify failed: album/disc 1/empty.txt: missing; "
        "1 of 4 files not ok, 0 of 5 pieces bad\n"
    )


def test_symlinked_file_is_unusable(
    capsys: pytest.CaptureFixture[str], album: tuple[Path, Path], tmp_path: Path
) -> None:
    root, torrent = album
    real = tmp_path / "elsewhere.flac"
    a = root / "album" / "a.flac"
    a.rename(real)
    a.symlink_to(real)  # same bytes, but storage never reads through a link
    code, out, err = run(capsys, str(torrent), str(root), "--json")
    assert code == 1
    first = json_lines(out)[0]
    assert first["status"] == "unusable"
    assert "is a symbolic link" in first["problem"]
    assert "piece 0 is bad (album/a.flac: unusable:" in err


def test_single_file_torrent(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "movie.bin").write_bytes(blob(50_000, 9))
    torrent = tmp_path / "movie.torrent"
    torrent.write_bytes(make_torrent(tmp_path / "movie.bin", piece_length=PIECE))
    code, out, _ = run(capsys, str(torrent), str(tmp_path), "--json")
    assert code == 0
    assert json_lines(out)[0]["path"] == "movie.bin"
    # The wrong folder: the file is missing there.
    other = tmp_path / "other"
    other.mkdir()
    code, out, err = run(capsys, str(torrent), str(other), "--json")
    assert code == 1
    assert json_lines(out)[0]["status"] == "missing"
    assert "piece 0 is bad (movie.bin: missing)" in err


def test_bad_input_exits_2(
    capsys: pytest.CaptureFixture[str], album: tuple[Path, Path], tmp_path: Path
) -> None:
    root, torrent = album
    junk = tmp_path / "junk.torrent"
    junk.write_bytes(b"d4:infoi3ee")
    cases = [
        ((str(junk), str(root)), "junk.torrent: info: not a dictionary"),
        ((str(tmp_path / "none.torrent"), str(root)), "none.torrent: No such file"),
        ((str(torrent), str(tmp_path / "nope")), "nope: no such folder"),
        ((str(torrent), str(torrent)), "album.torrent: not a folder"),
    ]
    for args, message in cases:
        code, out, err = run(capsys, *args)
        assert code == 2, args
        assert out == ""
        assert err.startswith("torrentkit: error: ") and message in err, err
        assert err.count("\n") == 1


def test_as_a_real_command(album: tuple[Path, Path]) -> None:
    """The installed entry point: exit codes and no traceback, whatever happens."""
    root, torrent = album

    def tk(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "torrentkit.cli.main", "verify", *args],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    ok = tk(str(torrent), str(root))
    assert ok.returncode == 0, ok.stderr
    assert "4 of 4 files ok" in ok.stdout
    (root / "album" / "a.flac").write_bytes(b"short")
    bad = tk(str(torrent), str(root))
    assert bad.returncode == 1
    assert bad.stderr.startswith("torrentkit: error: verify failed: piece 0 is bad (album/a.flac")
    assert "Traceback" not in bad.stderr
    usage = tk(str(torrent))
    assert usage.returncode == 2
    assert "Traceback" not in usage.stderr
    info = parse_torrent(torrent.read_bytes()).info
    assert info.num_pieces == 5


# --------------------------------------------------------------------------- real torrents

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def fixture_torrents() -> list[str]:
    manifest = json.loads((FIXTURES / "manifest.json").read_text("utf-8"))
    return [entry["torrent"] for entry in manifest]


@pytest.mark.parametrize("name", fixture_torrents())
def test_real_torrents_verify_and_a_corrupted_copy_fails(
    name: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Torrents made by libtorrent, mktorrent and transmission-create (pad files, hybrid,
    unsorted keys): their payloads verify; flipping one byte fails exactly that piece, and
    the error names it and its file."""
    torrent = FIXTURES / name
    code, out, err = run(capsys, str(torrent), str(FIXTURES / "data"), "--json")
    assert code == 0, err
    assert json_lines(out)[-1]["complete"] is True

    info = parse_torrent(torrent.read_bytes()).info
    top = FIXTURES / "data" / info.name
    copy = tmp_path / info.name
    if top.is_dir():
        shutil.copytree(top, copy)
    else:
        shutil.copy2(top, copy)
    # A byte in the middle of a piece lying inside the largest file (if one does).
    plen = info.piece_length
    f = max((f for f in info.files if not f.pad), key=lambda f: f.length)
    inside = [p for p in range(info.num_pieces)
              if p * plen >= f.offset and (p + 1) * plen <= f.offset + f.length]  # fmt: skip
    at = inside[0] * plen + plen // 2 if inside else f.offset + f.length // 2
    bad_piece = at // plen
    target = tmp_path.joinpath(*f.path)
    data = bytearray(target.read_bytes())
    data[at - f.offset] ^= 0xFF
    target.write_bytes(data)

    code, out, err = run(capsys, str(torrent), str(tmp_path), "--json")
    assert code == 1
    summary = json_lines(out)[-1]
    assert summary["pieces_ok"] == info.num_pieces - 1
    assert summary["first_bad_piece"] == bad_piece
    if inside:
        assert summary["first_bad_file"] == f.path_str
    assert f"piece {bad_piece} is bad ({summary['first_bad_file']}: incomplete" in err
