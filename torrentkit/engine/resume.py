"""Fast resume: start a torrent without rehashing what has not changed on disk.

What libtorrent and Transmission do: alongside the verified pieces, the resume data records
each file's size and modification time as they were when it was saved. On the next start
:func:`fast_check` compares them with the files now:

- a piece recorded as verified whose bytes lie only in files that look the same (same size,
  same ``mtime_ns``) is trusted without hashing;
- every piece touching a file that changed (other size or time, missing now, not a regular
  file any more) is hashed, whatever the resume data said about it -- the user may also
  have copied a complete file in;
- a piece recorded as not verified whose files all look the same stays missing without
  hashing. It may have been partly written (blocks arrive out of order), but nothing on
  disk changed since the engine last knew it was incomplete, so missing is the safe answer.
- Pad files (BEP 47) never exist on disk and never count as changed.
- No resume data (none saved, damaged, another torrent's): a full recheck.

The resume file (``<state_dir>/<info-hash hex>.resume``) is one bencoded dictionary::

    version          1
    info-hash        20 bytes
    save-path        the download folder, UTF-8
    pieces           the verified pieces, a BEP 3 bitfield (high bit of byte 0 = piece 0)
    files            per entry of info.files, in order: [size, mtime_ns], or [] for a pad
                     file or a file that was not on disk
    uploaded         all-time payload bytes sent
    downloaded       all-time payload bytes received
    active-ms        all-time milliseconds the torrent was started
    seeding-ms       all-time milliseconds it was started and complete
    file-priorities  optional: per file, 0 (skip) .. 7
    unsynced-boot    optional: the boot id of the machine (Linux's
                     /proc/sys/kernel/random/boot_id) when the data was saved without an
                     fsync of the files, and
    unsynced-files   the files (indexes) written in the last minutes before that save

The keys of the first resume files (written by the CLI before fast resume: info-hash,
save-path, pieces, uploaded, downloaded) keep their meaning; such a file has no
``version``, so it is refused (and a full recheck follows). Times are kept to the
millisecond (bencode has no floats): ``decode(encode(d))`` equals ``d`` up to that
rounding, and encoding is idempotent.

Reading a resume file never raises: :func:`load` returns a :class:`Loaded` whose ``data``
is ``None`` when there is no usable file and whose ``problem`` says why when there was one
(damaged, foreign, unreadable). :func:`decode` itself raises :class:`ResumeError`, a
RemoteProtocolError (the bytes come from outside this process), for anything wrong.

Saving without an fsync (every save: periodic ones and the last one at a stop). Syncing
every file at each stop made a finished download wait for its whole payload to reach the
disk (and pay the kernel's writeback in its own CPU time: ~0.3 CPU-s of the 1 + 8 swarm in
tools/bench_swarm.py) where libtorrent and Transmission just exit and let the kernel write
back. But a piece still only in the page cache when the machine loses power comes back as
zeros under the same size and mtime, and the stamps alone would trust it. So a save without
a sync names the files written within :func:`dirty_window` before it (the kernel writes
dirty pages back within ``dirty_expire`` + ``dirty_writeback``, 35 s by default) and the
boot id; on the next start, if the machine has booted since (another boot id, or none can be
read), the claimed pieces of those files are hashed again. Same boot: the page cache still
holds what was written, so they are trusted.

Limits (shared with libtorrent and Transmission): the check trusts size and mtime. An
edit that keeps the size and puts the mtime back (``touch -d``, ``rsync -t`` of other bytes)
goes unnoticed; so would one landing within the file system's timestamp granularity after
the stamp was taken, which is why :func:`capture` stats the files last. A forced recheck
(``fast_check(..., None)``) is the answer to "I changed the files myself".

Integrating (the caller's side):

- On start: ``loaded = load(state_dir, info)``; log ``loaded.problem`` if set; then
  ``result = await fast_check(storage, info, loaded.data)`` gives the have list.
  Carry ``uploaded``/``downloaded``/``active_seconds``/``seeding_seconds`` forward from
  ``loaded.data`` (they are all-time totals: add this session's amounts to them).
- On save (periodically, on pause, on a clean stop, after the torrent completes):
  ``data = await capture(storage, save_path=..., pieces=picker.have_bitfield(), ...)``
  then ``save(state_dir, data)`` (blocking: run it in a thread). Take the bitfield first;
  :func:`capture` explains why.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torrentkit import bencoding
from torrentkit.engine.picker import MAX_PRIORITY
from torrentkit.engine.storage import FileStamp, PieceStorage, ProgressFn
from torrentkit.errors import BencodeError, LocalProtocolError, RemoteProtocolError
from torrentkit.ids import InfoHash
from torrentkit.metainfo import Info

VERSION = 1
#: A resume file is at most this big (a torrent's .torrent limit: it holds less than that).
MAX_RESUME_BYTES = bencoding.TORRENT_LIMITS.max_size
SUFFIX = ".resume"
_TEMP_PREFIX = ".resume-"
_TEMP_SUFFIX = ".tmp"
#: A boot id is a UUID (36 characters); anything much longer is not one.
MAX_BOOT_ID = 64
_BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"


def boot_id() -> str:
    """This boot of the machine, as Linux names it; ``""`` where it cannot be read (then
    every start counts as after a reboot: the safe side)."""
    try:
        with open(_BOOT_ID_FILE, encoding="ascii") as fh:
            return fh.read(MAX_BOOT_ID + 1).strip()[:MAX_BOOT_ID]
    except (OSError, UnicodeDecodeError):
        return ""


def dirty_window() -> float:
    """Seconds after a write within which its pages may still be waiting for writeback:
    twice the kernel's ``dirty_expire`` + ``dirty_writeback`` intervals (30 s + 5 s by
    default), and at least two minutes."""
    total = 0.0
    for name, default in (("dirty_expire_centisecs", 3000), ("dirty_writeback_centisecs", 500)):
        try:
            with open(f"/proc/sys/vm/{name}", encoding="ascii") as fh:
                total += int(fh.read(32)) / 100
        except (OSError, ValueError):
            total += default / 100
    return max(120.0, 2 * total)


class ResumeError(RemoteProtocolError):
    """Resume data that cannot be used: not bencoded, another torrent's, malformed."""


# --------------------------------------------------------------------------- the data


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumeData:
    """What a torrent needs to start again without a full recheck. Validates itself
    (LocalProtocolError); :func:`decode` also checks it against the torrent."""

    info_hash: InfoHash
    save_path: str
    #: the verified pieces, a BEP 3 bitfield
    pieces: bytes
    #: one per entry of info.files: size and mtime_ns when saved, None for a pad file or a
    #: file that was not on disk
    files: tuple[FileStamp | None, ...]
    uploaded: int = 0
    downloaded: int = 0
    active_seconds: float = 0.0
    seeding_seconds: float = 0.0
    file_priorities: tuple[int, ...] | None = None
    #: saved without an fsync: the boot id then (``""`` if none could be read) ...
    unsynced_boot: str | None = None
    #: ... and the files written shortly before, maybe not on disk yet (see the module)
    unsynced_files: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem is not None:
            raise LocalProtocolError(problem)

    def have(self, num_pieces: int) -> list[bool]:
        """The verified pieces as a list of ``num_pieces`` booleans."""
        return have_from_bitfield(self.pieces, num_pieces)


def _problem(d: ResumeData) -> str | None:
    """Why ``d`` is not valid on its own, or None."""
    if not isinstance(d.info_hash, bytes) or len(d.info_hash) != 20:
        return "info-hash: not 20 bytes"
    if not isinstance(d.save_path, str):
        return "save-path: not a string"
    if not isinstance(d.pieces, bytes):
        return "pieces: not bytes"
    for k, stamp in enumerate(d.files):
        if stamp is None:
            continue
        if not isinstance(stamp, FileStamp):
            return f"files[{k}]: not a file stamp"
        if not _is_int(stamp.size) or not _is_int(stamp.mtime_ns, signed=True):
            return f"files[{k}]: size must be a whole number >= 0 and mtime_ns an integer"
    for name in ("uploaded", "downloaded"):
        if not _is_int(getattr(d, name)):
            return f"{name}: must be a whole number >= 0"
    for name in ("active_seconds", "seeding_seconds"):
        value = getattr(d, name)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not 0 <= value * 1000 <= bencoding.INT64_MAX
        ):
            return f"{name}: must be a finite number of seconds >= 0"
    if d.unsynced_boot is not None and (
        not isinstance(d.unsynced_boot, str) or len(d.unsynced_boot) > MAX_BOOT_ID
    ):
        return f"unsynced-boot: must be a string of at most {MAX_BOOT_ID} characters"
    if d.unsynced_files and d.unsynced_boot is None:
        return "unsynced-files: given without unsynced-boot"
    if list(d.unsynced_files) != sorted(set(d.unsynced_files)) or not all(
        _is_int(i) and i < len(d.files) for i in d.unsynced_files
    ):
        return "unsynced-files: must be ascending file indexes, each once"
    if d.file_priorities is not None:
        if len(d.file_priorities) != len(d.files):
            return f"file-priorities: {len(d.file_priorities)} entries for {len(d.files)} files"
        for k, p in enumerate(d.file_priorities):
            if not _is_int(p) or p > MAX_PRIORITY:
                return f"file-priorities[{k}]: must be 0..{MAX_PRIORITY}"
    return None


def _is_int(value: object, *, signed: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, int):
        return False
    low = bencoding.INT64_MIN if signed else 0
    return low <= value <= bencoding.INT64_MAX


def bitfield_from_have(have: Sequence[bool]) -> bytes:
    """A list of booleans as a BEP 3 bitfield (high bit of byte 0 = piece 0)."""
    out = bytearray((len(have) + 7) // 8)
    for i, ok in enumerate(have):
        if ok:
            out[i >> 3] |= 0x80 >> (i & 7)
    return bytes(out)


def have_from_bitfield(bits: bytes, num_pieces: int) -> list[bool]:
    """A BEP 3 bitfield as ``num_pieces`` booleans (LocalProtocolError if it does not fit)."""
    want = (num_pieces + 7) // 8
    if len(bits) != want:
        raise LocalProtocolError(f"{num_pieces} pieces take {want} bytes, got {len(bits)}")
    return [bool(bits[i >> 3] & (0x80 >> (i & 7))) for i in range(num_pieces)]


def _check_against(d: ResumeData, info: Info) -> str | None:
    """Why ``d`` does not fit torrent ``info``, or None."""
    if d.info_hash != info.info_hash:
        return f"info-hash: resume data of {d.info_hash.hex()}, not {info.info_hash.hex()}"
    n = info.num_pieces
    if len(d.pieces) != (n + 7) // 8:
        return f"pieces: {len(d.pieces)} bytes for {n} pieces (expected {(n + 7) // 8})"
    if n % 8 and d.pieces[-1] & (0xFF >> (n % 8)):
        return "pieces: spare bits set after the last piece"
    if len(d.files) != len(info.files):
        return f"files: {len(d.files)} stamps for {len(info.files)} files"
    return None


# --------------------------------------------------------------------------- encoding


def encode(data: ResumeData) -> bytes:
    """The bencoded resume file for ``data``."""
    doc: dict[str, Any] = {
        "version": VERSION,
        "info-hash": data.info_hash,
        "save-path": data.save_path,
        "pieces": data.pieces,
        "files": [[] if s is None else [s.size, s.mtime_ns] for s in data.files],
        "uploaded": data.uploaded,
        "downloaded": data.downloaded,
        "active-ms": round(data.active_seconds * 1000),
        "seeding-ms": round(data.seeding_seconds * 1000),
    }
    if data.file_priorities is not None:
        doc["file-priorities"] = list(data.file_priorities)
    if data.unsynced_boot is not None:
        doc["unsynced-boot"] = data.unsynced_boot
        doc["unsynced-files"] = list(data.unsynced_files)
    return bencoding.encode(doc)


def decode(raw: bytes, info: Info) -> ResumeData:
    """Parse a resume file for torrent ``info``. Raises :class:`ResumeError` (naming the
    field) for anything wrong: not bencoded, another torrent's, bad types or lengths,
    negative counts, spare bitfield bits set."""
    try:
        doc = bencoding.decode(raw)
    except BencodeError as exc:
        raise ResumeError(f"not a resume file: {exc}") from None
    if not isinstance(doc, dict):
        raise ResumeError("not a resume file: not a dictionary")
    version = doc.get(b"version")
    if version != VERSION:
        raise ResumeError(f"version: {version!r} is not a resume format this reads")
    info_hash = _field(doc, "info-hash", bytes)
    if len(info_hash) != 20:
        raise ResumeError(f"info-hash: {len(info_hash)} bytes, not 20")
    save_path_raw = _field(doc, "save-path", bytes)
    try:
        save_path = save_path_raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ResumeError("save-path: not UTF-8") from None
    files: list[FileStamp | None] = []
    for k, entry in enumerate(_field(doc, "files", list)):
        if entry == []:
            files.append(None)
        elif (
            isinstance(entry, list)
            and len(entry) == 2
            and all(isinstance(v, int) for v in entry)
            and entry[0] >= 0
        ):
            files.append(FileStamp(size=entry[0], mtime_ns=entry[1]))
        else:
            raise ResumeError(f"files[{k}]: expected [size >= 0, mtime_ns] or []")
    if len(files) != len(info.files):
        raise ResumeError(f"files: {len(files)} stamps for {len(info.files)} files")
    prios_raw = doc.get(b"file-priorities")
    prios: tuple[int, ...] | None = None
    if prios_raw is not None:
        if not isinstance(prios_raw, list) or not all(isinstance(p, int) for p in prios_raw):
            raise ResumeError("file-priorities: expected a list of integers")
        prios = tuple(prios_raw)
    boot: str | None = None
    unsynced: tuple[int, ...] = ()
    if b"unsynced-boot" in doc:
        try:
            boot = _field(doc, "unsynced-boot", bytes).decode("ascii")
        except UnicodeDecodeError:
            raise ResumeError("unsynced-boot: not ASCII") from None
        raw_files = _field(doc, "unsynced-files", list)
        if not all(isinstance(i, int) for i in raw_files):
            raise ResumeError("unsynced-files: expected a list of integers")
        unsynced = tuple(raw_files)
    counts = {}
    for key in ("uploaded", "downloaded", "active-ms", "seeding-ms"):
        value = _field(doc, key, int)
        if value < 0:
            raise ResumeError(f"{key}: negative ({value})")
        counts[key] = value
    try:
        data = ResumeData(
            info_hash=InfoHash(info_hash),
            save_path=save_path,
            pieces=_field(doc, "pieces", bytes),
            files=tuple(files),
            uploaded=counts["uploaded"],
            downloaded=counts["downloaded"],
            active_seconds=counts["active-ms"] / 1000,
            seeding_seconds=counts["seeding-ms"] / 1000,
            file_priorities=prios,
            unsynced_boot=boot,
            unsynced_files=unsynced,
        )
    except LocalProtocolError as exc:
        raise ResumeError(str(exc)) from None
    problem = _check_against(data, info)
    if problem is not None:
        raise ResumeError(problem)
    return data


def _field(doc: dict[bytes, Any], key: str, kind: type[Any]) -> Any:
    value = doc.get(key.encode())
    if value is None:
        raise ResumeError(f"{key}: missing")
    if not isinstance(value, kind):
        raise ResumeError(f"{key}: expected {kind.__name__}, got {type(value).__name__}")
    return value


# --------------------------------------------------------------------------- files


def resume_path(state_dir: Path | str, info_hash: bytes) -> Path:
    """Where the resume data of ``info_hash`` lives: ``<state_dir>/<hex>.resume``."""
    return Path(state_dir) / f"{bytes(info_hash).hex()}{SUFFIX}"


def save(state_dir: Path | str, data: ResumeData) -> Path:
    """Write ``data`` atomically and durably; return the file's path. Blocking: call it in
    a thread from trio code.

    Encodes first, then writes a temp file in ``state_dir`` (created if needed), fsyncs it,
    renames it over the old file and fsyncs the folder. Any failure (OSError from a full
    disk...) propagates, leaving the previous file as it was and no temp file behind.
    """
    raw = encode(data)
    folder = Path(state_dir)
    target = resume_path(folder, data.info_hash)
    write_atomically(target, raw)
    return target


def write_atomically(target: Path, raw: bytes) -> None:
    """Write ``raw`` to ``target`` atomically and durably (blocking): a temp file in the same
    folder (created if needed), fsync, rename over ``target``, fsync the folder. Any failure
    propagates, leaving the previous file as it was and no temp file behind."""
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX, dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    # The rename itself survives a power cut only once the folder is synced too.
    with contextlib.suppress(OSError):
        dir_fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@dataclass(frozen=True, slots=True, kw_only=True)
class Loaded:
    """What :func:`load` found. ``data`` is None when there is nothing usable; then
    ``problem`` is None for "no resume file" and says what was wrong otherwise."""

    data: ResumeData | None
    problem: str | None = None


def load(state_dir: Path | str, info: Info) -> Loaded:
    """Read the resume data of ``info`` from ``state_dir``. Never raises for anything about
    the file (missing, unreadable, too big, damaged, another torrent's): the answer is then
    ``Loaded(data=None, problem=...)`` and the caller runs a full recheck. Blocking."""
    path = resume_path(state_dir, info.info_hash)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_RESUME_BYTES + 1)
    except FileNotFoundError:
        return Loaded(data=None)
    except OSError as exc:
        return Loaded(data=None, problem=f"{path}: {exc.strerror or exc}")
    if len(raw) > MAX_RESUME_BYTES:
        return Loaded(data=None, problem=f"{path}: larger than {MAX_RESUME_BYTES} bytes")
    try:
        return Loaded(data=decode(raw, info))
    except ResumeError as exc:
        return Loaded(data=None, problem=f"{path}: {exc}")


# --------------------------------------------------------------------------- checking


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    """What :func:`fast_check` decided."""

    #: per piece: complete and correct (trusted from resume data, or hashed now)
    have: list[bool]
    #: pieces taken as verified from the resume data without hashing
    trusted: tuple[int, ...]
    #: pieces hashed now (their result is in ``have``)
    rechecked: tuple[int, ...]
    #: files whose size or modification time differs from the resume data (all files
    #: when there was no resume data)
    changed_files: tuple[int, ...]

    @property
    def full(self) -> bool:
        """True when every piece was hashed."""
        return len(self.rechecked) == len(self.have)


async def fast_check(
    storage: PieceStorage,
    info: Info,
    resume: ResumeData | None,
    *,
    progress: ProgressFn | None = None,
    boot: str | None = None,
) -> CheckResult:
    """Which pieces are complete, hashing only what may have changed since ``resume`` was
    saved (the rules are in the module docstring); with ``resume=None`` a full recheck.
    ``boot`` stands in for :func:`boot_id` (tests).

    ``progress(index, ok)`` is called once per piece: first for every piece decided without
    hashing, then for hashed ones as they finish. Resume data that does not belong to
    ``info`` is a caller's bug (LocalProtocolError): :func:`load` never returns such data.
    """
    if storage.info.info_hash != info.info_hash:
        raise LocalProtocolError("fast_check: the storage holds another torrent")
    n = info.num_pieces
    if resume is None:
        have = await storage.recheck(progress)
        return CheckResult(
            have=have,
            trusted=(),
            rechecked=tuple(range(n)),
            changed_files=tuple(i for i, f in enumerate(info.files) if not f.pad),
        )
    problem = _check_against(resume, info)
    if problem is not None:
        raise LocalProtocolError(f"fast_check: {problem}")

    current = await storage.file_stamps()
    # A file "matches" when it is a pad file or looks exactly as recorded (both missing
    # counts too: nothing on disk then or now). Trusting a piece needs more: every real file
    # it touches was on disk when saved and is unchanged.
    files = info.files
    matches = [f.pad or resume.files[i] == current[i] for i, f in enumerate(files)]
    solid = [f.pad or (matches[i] and current[i] is not None) for i, f in enumerate(files)]
    if resume.unsynced_files:
        now_boot = boot_id() if boot is None else boot
        if not now_boot or now_boot != resume.unsynced_boot:
            # Booted since a save without fsync: what was written just before it may
            # never have reached the disk, whatever its stamp says.
            for i in resume.unsynced_files:
                solid[i] = False
    # Per piece, from the files' piece ranges (O(pieces + files), no per-piece spans):
    # 2 = touches a changed file, 1 = touches a file not solid, 0 = all solid.
    mark = bytearray(n)
    for i in range(len(files)):
        if not solid[i]:
            level = 1 if matches[i] else 2
            for p in storage.layout.file_pieces(i):
                mark[p] = max(mark[p], level)
    recorded = resume.have(n)
    have = [False] * n
    trusted: list[int] = []
    to_hash: list[int] = []
    for p in range(n):
        if mark[p] == 2:
            to_hash.append(p)  # touches a changed file: whatever was recorded
        elif recorded[p]:
            if mark[p] == 0:
                trusted.append(p)
                have[p] = True
            else:
                to_hash.append(p)  # claimed, yet a file it needs was missing: check it
        # else: recorded missing, files unchanged -> stays missing, not hashed
    if progress is not None:
        hashed = set(to_hash)
        for p in range(n):
            if p not in hashed:
                progress(p, have[p])
    if to_hash:
        checked = await storage.recheck(progress, only=to_hash)
        for p in to_hash:
            have[p] = checked[p]
    return CheckResult(
        have=have,
        trusted=tuple(trusted),
        rechecked=tuple(to_hash),
        changed_files=tuple(i for i, ok in enumerate(matches) if not ok),
    )


async def capture(
    storage: PieceStorage,
    *,
    save_path: Path | str,
    pieces: bytes | Sequence[bool],
    uploaded: int,
    downloaded: int,
    active_seconds: float,
    seeding_seconds: float,
    file_priorities: Sequence[int] | None = None,
    sync: bool = True,
    boot: str | None = None,
) -> ResumeData:
    """The resume data of a running torrent, with the files' stamps as they are now.

    ``pieces`` (a BEP 3 bitfield or a have list) must be taken BEFORE this call -- it is
    passed by value, so writing ``capture(storage, pieces=picker.have_bitfield(), ...)``
    does that. The totals are all-time (previous resume data's plus this session's).
    With ``sync`` (the default), written data is fsynced before the stamps are taken;
    without, the files written lately and the boot id are recorded instead (see the
    module). ``boot`` stands in for :func:`boot_id` (tests).
    """
    info = storage.info
    bits = bytes(pieces) if isinstance(pieces, bytes | bytearray) else bitfield_from_have(pieces)
    # Order matters: the bitfield first, then (sync and) the stamps. Every piece the
    # bitfield claims was fully written before it was taken, hence before the stat: the
    # stamp describes a file that already holds every claimed piece. A piece written in
    # between is not claimed and stays missing on the next start (safe), and any later
    # write moves the mtime, so that file is rehashed. In the other order a claimed piece
    # could have landed after its file was stat-ed, and only the mtime -- which coarse
    # timestamps can leave unchanged within one tick -- would tell.
    # The fsync sits between the two: it makes every claimed piece durable before the
    # stamps vouch for it, so a power cut cannot leave a trusted piece half on disk.
    unsynced: tuple[int, ...] = ()
    if sync:
        await storage.sync()
    else:
        unsynced = storage.written_within(dirty_window())
    now = tuple(await stamps(storage))
    data = ResumeData(
        info_hash=info.info_hash,
        save_path=str(save_path),
        pieces=bits,
        files=now,
        uploaded=uploaded,
        downloaded=downloaded,
        active_seconds=float(active_seconds),
        seeding_seconds=float(seeding_seconds),
        file_priorities=None if file_priorities is None else tuple(file_priorities),
        unsynced_boot=(boot_id() if boot is None else boot) if unsynced else None,
        unsynced_files=unsynced,
    )
    problem = _check_against(data, info)
    if problem is not None:
        raise LocalProtocolError(f"capture: {problem}")
    return data


async def stamps(storage: PieceStorage) -> list[FileStamp | None]:
    """Per file: its stamp now, or None (pad file, missing). :func:`capture` uses it."""
    return await storage.file_stamps()


__all__ = [
    "CheckResult",
    "FileStamp",
    "Loaded",
    "ResumeData",
    "ResumeError",
    "bitfield_from_have",
    "capture",
    "decode",
    "encode",
    "fast_check",
    "have_from_bitfield",
    "load",
    "resume_path",
    "save",
    "stamps",
]
