"""The rough edges a new user hit trying every command (issue 14 item 3), each run as a user
would: the real ``torrentkit`` command in a subprocess."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


def tk(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "torrentkit.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line(r: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """``r`` exited ``code`` with one line on stderr (no traceback) holding every needle."""
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("torrentkit: error: "), r.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    path = tmp_path / "file.bin"
    path.write_bytes(bytes(range(256)) * 400)
    return path


@pytest.mark.parametrize(
    ("output", "needle"),
    [
        ("/proc/x.torrent", "cannot write here"),  # no such folder for a new file
        ("/sys/x.torrent", "cannot write here"),  # a folder nobody may write, root neither
        ("FOLDER", "is a folder"),
    ],
)
def test_create_output_that_cannot_be_written_is_one_line_exit_2(
    payload: Path, tmp_path: Path, output: str, needle: str
) -> None:
    if output == "FOLDER":
        (tmp_path / "folder").mkdir()
        output = str(tmp_path / "folder")
    r = tk("create", str(payload), "-o", output, "--force")
    one_line(r, 2, output, needle)
    assert not list(tmp_path.glob(".torrentkit-*"))  # no temporary file left behind


@pytest.fixture
def torrent(payload: Path, tmp_path: Path) -> Path:
    out = tmp_path / "file.torrent"
    assert tk("create", str(payload), "-o", str(out)).returncode == 0
    return out


@pytest.mark.parametrize("command", ["download", "seed", "tracker", "napster-index"])
def test_a_port_in_use_is_exit_2_for_every_command(
    command: str, torrent: Path, payload: Path
) -> None:
    """One rule (docs/cli.md): a port already in use is bad input, exit 2."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        where = ["--bind", "127.0.0.1", "--port", str(port)]
        args = {
            "download": [
                str(torrent),
                "-o",
                str(payload.parent / "dl"),
                "--no-ui",
                "--no-dht",
                *where,
            ],
            "seed": [
                str(torrent),
                str(payload.parent),
                "--no-ui",
                "--no-tracker",
                "--no-dht",
                *where,
            ],
            "tracker": where,
            "napster-index": where,
        }[command]
        r = tk(command, *args)
    one_line(r, 2, f"127.0.0.1:{port}")


def test_chord_node_on_every_interface_names_the_advertise_flag() -> None:
    r = tk("node", "--discovery", "chord", "--port", "0")
    one_line(r, 2, "--advertise HOST")
    assert "advertise=" not in r.stderr


def tk_without_root_powers(*args: str) -> subprocess.CompletedProcess[str]:
    """``tk`` without root's right to read and write every file (CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH dropped), so that file permissions apply as to a user."""
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "setpriv (util-linux) is needed"
    return subprocess.run(
        [setpriv, "--bounding-set=-dac_override,-dac_read_search",
         sys.executable, "-m", "torrentkit.cli.main", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_create_into_a_read_only_folder_is_one_line_exit_2(payload: Path, tmp_path: Path) -> None:
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o555)
    r = tk_without_root_powers("create", str(payload), "-o", str(folder / "x.torrent"))
    one_line(r, 2, "cannot write here", "ermission denied")
    assert not any(folder.iterdir())


def test_download_into_a_read_only_folder_fails_up_front(torrent: Path, tmp_path: Path) -> None:
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o555)
    r = tk_without_root_powers("download", str(torrent), "-o", str(folder), "--no-ui", "--no-dht")
    one_line(r, 2, str(folder), "cannot write here")


@pytest.fixture
def seeder(torrent: Path, payload: Path) -> Iterator[str]:
    """A ``torrentkit seed`` of ``payload`` on loopback; its HOST:PORT."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "torrentkit.cli.main", "seed", str(torrent), str(payload.parent),
         "--bind", "127.0.0.1", "--port", "0", "--no-tracker", "--no-dht", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first["event"] == "listening" and isinstance(first["t"], float), first
        yield f"127.0.0.1:{first['port']}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_download_creates_a_missing_folder(
    torrent: Path, payload: Path, tmp_path: Path, seeder: str
) -> None:
    """aria2c and Transmission create it; so do we: the copy lands in the new folder."""
    folder = tmp_path / "new" / "deeper"
    r = tk("download", str(torrent), "-o", str(folder), "--no-ui", "--no-tracker", "--no-dht",
           "--peer", seeder, "--timeout", "50")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (folder / payload.name).read_bytes() == payload.read_bytes()


def test_plain_status_lines_say_state_eta_and_where_it_was_saved(
    torrent: Path, payload: Path, tmp_path: Path, seeder: str
) -> None:
    folder = tmp_path / "out"
    r = tk("download", str(torrent), "-o", str(folder), "--no-ui", "--no-tracker", "--no-dht",
           "--peer", seeder, "--down-limit", "16K", "--seed-time", "1",
           "--timeout", "50")  # fmt: skip
    assert r.returncode == 0, r.stderr
    status = [line for line in r.stderr.splitlines() if " pieces (" in line]
    assert status, r.stderr  # 100 KB at 16 KiB/s: a few status lines
    for line in status:
        assert re.search(r": (downloading|seeding) \d+/\d+ pieces", line), line
        assert "1 peer," in line and "1 peers" not in line, line
        assert re.search(r"down [\d.]+ (B|KiB|MiB)/s, up [\d.]+ (B|KiB|MiB)/s", line), line
        assert "MB/s" not in line
    assert any(re.search(r"ETA (\d+s|\d+m\d\d|\?)$", line) for line in status), status
    saved = f"{payload.name}: complete in "
    done = [line for line in r.stderr.splitlines() if line.startswith(saved)]
    assert len(done) == 1 and done[0].endswith(f"saved to {folder / payload.name}"), r.stderr
    after = r.stderr.splitlines()[r.stderr.splitlines().index(done[0]) + 1]
    assert after == f"{payload.name}: seeding"


def test_json_summary_counts_a_peer_that_sent_everything_and_left(
    torrent: Path, payload: Path, tmp_path: Path, seeder: str
) -> None:
    r = tk("download", str(torrent), "-o", str(tmp_path / "out"), "--json", "--no-tracker",
           "--no-dht", "--peer", seeder, "--timeout", "50")  # fmt: skip
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert all(isinstance(e.get("t"), int | float) for e in events), events[0]
    assert events[0]["event"] == "listening"
    # both complete: the two part (a seed has nothing for a seed), before the summary
    assert any(e["event"] == "peer_disconnected" for e in events)
    (torrent_row,) = events[-1]["torrents"]
    got = [p for p in torrent_row["peers"] if p["downloaded"] > 0]
    assert [p["downloaded"] for p in got] == [payload.stat().st_size], torrent_row["peers"]


def test_files_reversed_range_says_so(torrent: Path) -> None:
    r = tk("download", str(torrent), "--files", "2-1", "--no-ui", "--no-dht")
    one_line(r, 2, "'2-1' is a reversed range (write 1-2)")


def test_verify_names_a_file_it_cannot_read(torrent: Path, payload: Path) -> None:
    payload.chmod(0)
    r = tk_without_root_powers("verify", str(torrent), str(payload.parent))
    assert r.returncode == 1
    assert "unusable" in r.stdout and "permission denied" in r.stdout, r.stdout
    assert "incomplete" not in r.stdout


@pytest.mark.parametrize("command", ["search", "share", "get"])
def test_help_offers_only_the_discovery_modes_the_command_takes(command: str) -> None:
    r = tk(command, "--help")
    assert r.returncode == 0
    assert "{napster,gnutella,kazaa}" in r.stdout
    assert "tracker" not in r.stdout and "chord" not in r.stdout, r.stdout
    # and one it does not take is refused with the reason, not as a bad choice
    refused = tk(command, "--discovery", "tracker", "x")
    one_line(refused, 2, f"{command} works with napster, gnutella, kazaa")


def test_help_texts() -> None:
    download = tk("download", "--help").stdout
    assert "magnet" in download
    for command in ("download", "seed", "get", "share"):
        text = " ".join(tk(command, "--help").stdout.split())
        assert "--max-peers N connected peers per torrent at most" in text, (command, text)
    example = tk("chord-example", "--help").stdout
    assert "``" not in example and "torrentkit chord-example [--json]:" in " ".join(example.split())


def test_info_prints_a_magnet_link_that_reads_back(tmp_path: Path, payload: Path) -> None:
    out = tmp_path / "t.torrent"
    trackers = ["http://a.example/announce,http://b.example/announce", "udp://c.example:6969"]
    web_seed = "https://w.example/files/"
    made = tk(
        "create", str(payload), "-o", str(out), "-t", trackers[0], "-t", trackers[1],
        "--web-seed", web_seed, "--web-seed", "ftp://not.used.example/",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    r = tk("info", str(out), "--magnet")
    assert r.returncode == 0, r.stderr
    (magnet,) = r.stdout.splitlines()
    assert magnet.startswith(f"magnet:?xt=urn:btih:{made.stdout.strip()}&dn={payload.name}")
    back = json.loads(tk("info", magnet, "--json").stdout)
    assert back["info_hash"] == made.stdout.strip() and back["name"] == payload.name
    assert back["trackers"] == [
        ["http://a.example/announce"],
        ["http://b.example/announce"],
        ["udp://c.example:6969"],
    ]
    assert back["url_list"] == [web_seed]  # ws=, as libtorrent writes web seeds
