"""Piece storage: verified pieces in, blocks out, rechecks, never a byte outside the root.

Two implementations share one interface (:class:`PieceStorage`) and one set of algorithms:

- :class:`FileStorage` keeps the payload in files under a download folder ``root`` (the
  libtorrent save-path convention: ``root/<name>`` for a single-file torrent, the folder
  ``root/<name>/...`` for a multi-file one). All disk work runs in worker threads, so the
  event loop never waits on the disk: a download's pieces on a :class:`PieceWriter`'s
  long-lived threads fed through a queue, everything else through ``trio.to_thread.run_sync``,
  one thread call per piece (``write_piece``, reads) or per batch of pieces (recheck). The
  one exception never waits either: a read whose bytes are all in the page cache is done on
  the event loop (``preadv2`` with ``RWF_NOWAIT``, which fails rather than wait), saving an
  upload the thread round trip. Pieces are hashed in parallel but written one at a time.
- :class:`MemoryStorage` keeps the files as byte arrays, for simulations. It runs the same
  code inline (no threads), so a simulation under a virtual clock stays deterministic.

Rules:

- ``write_piece`` checks SHA-1 and writes in one call. A piece whose hash does not match is
  refused (``False``) and nothing is written.
- Pad files (BEP 47) are part of the piece mapping but never exist on disk: reads and
  rechecks see zeros for them. ``write_piece`` requires a piece's pad bytes to be zeros and
  refuses the piece otherwise (as for a hash failure): a piece we could not give back exactly
  as it hashed must not be counted as had. Their bytes are then dropped.
- Files are created lazily, on the first write that touches them, at their full length as a
  sparse file (``ftruncate``), together with their folders. :meth:`PieceStorage.allocate`
  does the same up front for every file; it is the only way a zero-length file (which no
  piece touches) is created. An existing file is never shrunk or replaced.
- A recheck never raises for missing, short, unreadable or unsafe files: their pieces are
  simply not complete.
- Safety (docs/limits.md item 2): every file is opened by walking down from the root one
  component at a time with ``openat``-style calls and ``O_NOFOLLOW``, so a symbolic link
  anywhere below the root (``root/name -> /etc``) is refused, even one swapped in between
  two opens. Only regular files are used (a FIFO or device where a file should be is
  refused; ``O_NONBLOCK`` keeps a FIFO from hanging the open). The root itself is the
  user's choice and may be a symlink. Problems raise :class:`StorageError` with a one-line
  message naming the path; OS errors such as a full disk or a read-only folder too.

Fast resume (resume.py) needs two more things from storage: :meth:`PieceStorage.file_stamps`
(each file's size and modification time, by the same ``O_NOFOLLOW`` walk; MemoryStorage
counts versions instead of times) and ``recheck(only=...)``, which hashes just the pieces
whose files changed since the resume data was saved.

Recheck speed (tools/bench_verify.py): each worker thread reads whole pieces with
``preadv`` into one reused buffer of about 2 MiB (small enough to still be in the CPU
cache when SHA-1 reads it) and hashes them there; hashlib releases the GIL, so ``workers``
threads (one per CPU, at most 4) hash batches of ~16 MiB in parallel. One worker runs at
~0.85x the in-memory SHA-1 speed of one core (the rest is the page-cache copy); two on two
cores at ~1.6x. mmap would avoid the copy but turns a file truncated under us into SIGBUS.
Cached descriptors are dropped at the start of a recheck, so it sees files as they are now.
Linux/POSIX only (``dir_fd``, ``O_NOFOLLOW``, ``preadv``).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import itertools
import math
import os
import queue
import stat
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Literal, Protocol, Self, TypeVar

import trio

from torrentkit.engine.layout import Layout, Span
from torrentkit.errors import LocalProtocolError, StorageError
from torrentkit.metainfo import Info

T = TypeVar("T")

#: A recheck worker's read buffer: whole pieces when they fit, else a piece is hashed
#: incrementally through it. Small enough that the bytes just copied from the page cache
#: are still in the CPU cache when SHA-1 reads them (8 MiB buffers measured ~2x slower
#: with two workers here; 256 KiB-2 MiB all ran at about the same speed).
READ_CHUNK = 2 * 1024 * 1024
#: Payload bytes one recheck thread call covers (at least one piece).
BATCH_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_OPEN_FILES = 64
#: ``page_cache="drop"``: a written piece's pages are released once this many later pieces
#: have been written (its writeback, started when it was written, has finished by then on
#: any disk that keeps up with the download; pages still dirty are simply kept).
DROP_LAG = 4

#: ``page_cache="drop"``: a span is written with ``O_DIRECT`` (around the page cache) when
#: its file offset, its length and its buffer's address are multiples of this (the largest
#: logical block size in common use; Linux asks for the device's, 512 or 4096).
DIRECT_ALIGN = 4096

_FADVISE = getattr(os, "posix_fadvise", None)  # not on macOS or Windows
_O_DIRECT: int = getattr(os, "O_DIRECT", 0)  # Linux (and some BSDs)
_DONTNEED = getattr(os, "POSIX_FADV_DONTNEED", 0)

ProgressFn = Callable[[int, bool], None]
Buffer = bytes | bytearray | memoryview


class Sha1(Protocol):
    """A SHA-1 object as ``hashlib.sha1()`` makes."""

    def update(self, data: Buffer, /) -> None: ...

    def digest(self) -> bytes: ...


#: A piece's hashing begun elsewhere: the SHA-1 object that has taken the piece's first
#: ``n`` bytes, and ``n`` (the engine hashes blocks as they arrive: see assembly.py).
HashPrefix = tuple[Sha1, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class FileStamp:
    """What a file looked like: its size and modification time (``st_mtime_ns``; for
    MemoryStorage a version number that changes on every write)."""

    size: int
    mtime_ns: int


_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


# --------------------------------------------------------------------------- path safety


def check_components(components: Sequence[str]) -> None:
    """Refuse path components that could leave the folder (metainfo already cleans them;
    this is the last line of defence)."""
    if not components:
        raise StorageError("empty file path")
    for c in components:
        if c in ("", ".", "..") or "/" in c or "\\" in c or "\x00" in c:
            raise StorageError(f"unsafe path component {c!r} in {'/'.join(components)!r}")


def safe_join(root: Path, components: Sequence[str]) -> Path:
    """``root / components``, refusing anything that would resolve outside ``root``.

    Every part of the path that already exists below ``root`` is checked with ``lstat``:
    a symbolic link anywhere is refused, as is a non-folder where a folder must be and a
    last component that exists but is not a regular file. Parts that do not exist yet are
    fine (they will be created as plain folders and files). Raises :class:`StorageError`.

    FileStorage does not rely on this check alone: it opens files with ``O_NOFOLLOW`` walks
    (see the module docstring), which also closes the gap between a check and an open.
    """
    check_components(components)
    path = Path(root)
    last = len(components) - 1
    for k, comp in enumerate(components):
        path = path / comp
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return Path(root).joinpath(*components)
        except OSError as exc:
            raise StorageError(f"{path}: {_reason(exc)}") from None
        if stat.S_ISLNK(st.st_mode):
            raise StorageError(f"{path}: is a symbolic link; refusing to follow it")
        if k < last and not stat.S_ISDIR(st.st_mode):
            raise StorageError(f"{path}: is not a folder")
        if k == last and not stat.S_ISREG(st.st_mode):
            kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise StorageError(f"{path}: is {kind}")
    return path


_REASONS = {
    errno.ENOSPC: "no space left on the device (disk full)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EFBIG: "file too large for this file system or process limit",
    errno.ENOTDIR: "a path component is not a folder",
    errno.ELOOP: "is a symbolic link; refusing to follow it",
    errno.EISDIR: "is a folder",
    errno.ENOENT: "missing",
}


def _reason(exc: OSError) -> str:
    if exc.errno in _REASONS:
        return _REASONS[exc.errno]
    return (exc.strerror or str(exc)).lower()


# --------------------------------------------------------------------------- the interface


class PieceStorage:
    """What the engine uses. Subclasses provide the byte-level primitives and how a blocking
    call is run (in a thread, or inline)."""

    #: How many batches a recheck runs at once (worker threads for FileStorage).
    workers: int = 1

    @property
    def write_threads(self) -> int:
        """Worker threads of a :class:`PieceWriter` on this storage; 0: it works inline."""
        return 0

    def __init__(self, info: Info) -> None:
        self.info = info
        self.layout = Layout.from_info(info)
        # Pieces are hashed in parallel but written one at a time: concurrent buffered
        # writes to one file contend for its inode lock, and the kernel spins on it (6% of
        # a download's CPU in issue 15's profile); threads waiting here sleep instead.
        self._write_lock = threading.Lock()
        #: file index -> ``time.monotonic()`` of its last write, until a :meth:`sync` made
        #: it durable (guarded by ``_write_lock``): resume data saved without a sync names
        #: the files written lately, whose pages may not have reached the disk yet.
        self._written: dict[int, float] = {}

    # ---- primitives (blocking, thread-safe) --------------------------------------------

    def _pread(self, file_index: int, offset: int, into: memoryview) -> int:
        """Read up to ``len(into)`` bytes at ``offset``; fewer only at the end of the file.
        A missing or unusable file raises StorageError."""
        raise NotImplementedError

    def _pwrite(self, file_index: int, offset: int, data: memoryview) -> bool:
        """Write all of ``data`` at ``offset``; True when it went around the page cache
        (nothing of it is left there to drop)."""
        raise NotImplementedError

    def _allocate_sync(self, only: frozenset[int] | None = None) -> None:
        raise NotImplementedError

    def _file_problems_sync(self) -> list[str | None]:
        raise NotImplementedError

    def _file_stamps_sync(self) -> list[FileStamp | None]:
        raise NotImplementedError

    def _sync_sync(self) -> None:
        raise NotImplementedError

    async def _call(self, fn: Callable[[], T]) -> T:
        raise NotImplementedError

    async def _forget_open_files(self) -> None:
        """Before a recheck: stop using cached open files, so files replaced or deleted
        behind our back are seen as they are now."""

    # ---- public async interface ------------------------------------------------------------

    async def write_piece(self, index: int, data: Buffer, prefix: HashPrefix | None = None) -> bool:
        """Verify piece ``index`` and store it. ``False`` (nothing written) on a hash
        mismatch or non-zero pad bytes; StorageError when the disk refuses. Do not mutate
        ``data`` until this returns. ``prefix``: a SHA-1 object that has taken
        ``data[:n]`` already, and ``n``; only the rest is hashed here."""
        return await self._call(functools.partial(self._write_piece_sync, index, data, prefix))

    async def read_block(self, index: int, begin: int, length: int) -> bytes | bytearray:
        """``length`` bytes at ``begin`` in piece ``index`` (an upload). Out-of-range
        requests raise LocalProtocolError: the caller must have checked them. The result may
        be a ``bytearray`` (read straight into, not copied again); it belongs to the caller,
        and nothing here changes it afterwards."""
        self.layout.piece_spans(index, begin, length)  # bounds check before any thread
        return await self._call(functools.partial(self._read_sync, index, begin, length))

    async def read_piece(self, index: int) -> bytes | bytearray:
        return await self.read_block(index, 0, self.layout.piece_size(index))

    async def recheck(
        self, progress: ProgressFn | None = None, *, only: Iterable[int] | None = None
    ) -> list[bool]:
        """Which pieces are complete and correct in storage. ``progress(index, ok)`` is
        called on the calling (trio) thread for each piece as batches finish; the order is
        not strictly increasing when several workers run.

        With ``only``, just those pieces are hashed (and reported to ``progress``); every
        other piece is reported ``False`` in the result. Runs of consecutive pieces are
        read and hashed in batches as a full recheck is, on as many workers. Indexes out of
        range raise LocalProtocolError."""
        await self._forget_open_files()
        info = self.info
        n = info.num_pieces
        results = [False] * n
        per_batch = max(1, BATCH_BYTES // info.piece_length)
        runs = _runs(range(n) if only is None else only, n)  # checks the indexes too
        # A piece none of whose files is on disk cannot be complete, so it is not read: a
        # new download, whose files do not exist yet, is "checked" without any I/O.
        on_disk = bytearray(n)  # pad files count as present: they are zeros, never files
        files = info.files
        for i, stamp in enumerate(await self._call(self._file_stamps_sync)):
            pieces = self.layout.file_pieces(i)
            if (stamp is not None or files[i].pad) and pieces:
                on_disk[pieces.start : pieces.stop] = b"\x01" * len(pieces)
        absent = [i for start, stop in runs for i in range(start, stop) if not on_disk[i]]
        if absent:
            if progress is not None:
                for i in absent:
                    progress(i, False)
            runs = _runs((i for start, stop in runs for i in range(start, stop) if on_disk[i]), n)
        spans = [(a, min(a + per_batch, stop)) for start, stop in runs for a in
                 range(start, stop, per_batch)]  # fmt: skip
        if not spans:
            return results
        batches = iter(spans)

        async def worker() -> None:
            buf = bytearray(_buffer_size(info.piece_length))
            for first, stop in batches:  # one shared iterator: each batch is taken once
                oks = await self._call(functools.partial(self._check_batch, first, stop, buf))
                results[first:stop] = oks
                if progress is not None:
                    for k, ok in enumerate(oks):
                        progress(first + k, ok)

        workers = max(1, min(self.workers, len(spans)))
        if workers == 1:
            await worker()
            return results
        try:
            async with trio.open_nursery() as nursery:
                for _ in range(workers):
                    nursery.start_soon(worker)
        except BaseExceptionGroup as group:
            # Callers see the error a worker raised, as from a plain call; cancellation
            # stays a group for the cancel scopes above to catch.
            if isinstance(first := _first_leaf(group), trio.Cancelled):
                raise
            raise first from None
        return results

    async def allocate(self, only: Iterable[int] | None = None) -> None:
        """Create every folder and (sparse, full-length) file now -- or only the files
        whose indexes are in ``only``; pad files never."""
        chosen = None if only is None else frozenset(only)
        await self._call(functools.partial(self._allocate_sync, chosen))

    async def file_problems(self) -> list[str | None]:
        """Per file: ``None`` when it is present and usable (always for pad files),
        ``"missing"`` when it does not exist, otherwise why it cannot be used."""
        return await self._call(self._file_problems_sync)

    async def file_stamps(self) -> list[FileStamp | None]:
        """Per file: its current :class:`FileStamp` (size and modification time), or
        ``None`` for a pad file and for a file that is missing or cannot be used (a
        symbolic link, not a regular file...). Fast resume compares these with the stamps
        saved alongside the verified pieces (see resume.py)."""
        return await self._call(self._file_stamps_sync)

    async def sync(self) -> None:
        """Make every byte written so far durable (``fsync`` each present file), so that
        resume data saved afterwards never claims a piece a power cut could still lose."""
        started = time.monotonic()
        await self._call(self._sync_sync)
        with self._write_lock:  # what was written before the fsyncs began is on disk now
            self._written = {i: t for i, t in self._written.items() if t > started}

    async def close(self) -> None:
        """Release open files. The storage must not be used afterwards."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- shared algorithms (blocking) --------------------------------------------------------

    def _write_piece_sync(self, index: int, data: Buffer, prefix: HashPrefix | None = None) -> bool:
        size = self.layout.piece_size(index)
        view = memoryview(data).cast("B")
        if len(view) != size:
            raise LocalProtocolError(f"piece {index} is {size} bytes, got {len(view)}")
        if prefix is None:
            digest = hashlib.sha1(view).digest()
        else:
            hasher, done = prefix
            if not 0 <= done <= size:
                raise LocalProtocolError(f"hash prefix of {done} bytes for a {size} byte piece")
            if done < size:
                hasher.update(view[done:])
            digest = hasher.digest()
        if digest != self.info.piece_hash(index):
            return False
        spans = self.layout.piece_spans(index)
        pos = 0
        for s in spans:
            if s.pad and view[pos : pos + s.length].tobytes().count(0) != s.length:
                return False
            pos += s.length
        pos = 0
        cached: list[Span] = []  # the spans written through the page cache
        with self._write_lock:
            for s in spans:
                if not s.pad:
                    if not self._pwrite(s.file_index, s.offset, view[pos : pos + s.length]):
                        cached.append(s)
                    self._written[s.file_index] = time.monotonic()
                pos += s.length
            if cached:
                self._piece_written(cached)
        return True

    def _piece_written(self, spans: Sequence[Span]) -> None:
        """A verified piece was just written (``_write_lock`` held); ``spans``: the parts of
        it that went through the OS page cache. A storage that manages the cache does it
        here."""

    def written_within(self, seconds: float) -> tuple[int, ...]:
        """The files (indexes, ascending) written through this storage in the last
        ``seconds`` and not made durable by a :meth:`sync` since."""
        since = time.monotonic() - seconds
        with self._write_lock:
            return tuple(sorted(i for i, t in self._written.items() if t >= since))

    def _read_sync(self, index: int, begin: int, length: int) -> bytes | bytearray:
        out = bytearray(length)
        view = memoryview(out)
        pos = 0
        for s in self.layout.piece_spans(index, begin, length):
            if not s.pad:
                n = self._pread(s.file_index, s.offset, view[pos : pos + s.length])
                if n < s.length:
                    raise StorageError(f"{self._describe(s.file_index)}: shorter than expected")
            pos += s.length
        return out  # not copied into bytes: a piece read for the upload cache is 1 MiB

    def _describe(self, file_index: int) -> str:
        return self.info.files[file_index].path_str

    def _fill(self, view: memoryview, offset: int) -> list[tuple[int, int]]:
        """Read payload bytes ``[offset, offset + len(view))`` into ``view`` (pads as
        zeros); return the payload ranges that could not be read."""
        bad: list[tuple[int, int]] = []
        pos = 0
        for s in self.layout.spans(offset, len(view)):
            seg = view[pos : pos + s.length]
            if s.pad:
                seg[:] = bytes(s.length)
            else:
                try:
                    n = self._pread(s.file_index, s.offset, seg)
                except StorageError:
                    n = 0
                if n < s.length:
                    bad.append((offset + pos + n, offset + pos + s.length))
            pos += s.length
        return bad

    def _check_batch(self, first: int, stop: int, buf: bytearray) -> list[bool]:
        """Hash pieces ``[first, stop)`` from storage, reading through ``buf``."""
        info = self.info
        plen = info.piece_length
        total = info.total_length
        hashes = info.piece_hashes
        mv = memoryview(buf)
        sha1 = hashlib.sha1
        out: list[bool] = []
        if plen <= len(buf):
            per_read = len(buf) // plen
            for a in range(first, stop, per_read):
                b = min(a + per_read, stop)
                start = a * plen
                n = min(b * plen, total) - start
                bad = self._fill(mv[:n], start)
                for i in range(a, b):
                    lo = (i - a) * plen
                    hi = min(lo + plen, n)
                    if bad and _overlaps(bad, start + lo, start + hi):
                        out.append(False)
                    else:
                        out.append(sha1(mv[lo:hi]).digest() == hashes[20 * i : 20 * i + 20])
            return out
        for i in range(first, stop):
            h = sha1()
            pos = i * plen
            end = min(pos + plen, total)
            ok = True
            while pos < end:
                n = min(len(buf), end - pos)
                if self._fill(mv[:n], pos):
                    ok = False
                    break
                h.update(mv[:n])
                pos += n
            out.append(ok and h.digest() == hashes[20 * i : 20 * i + 20])
        return out


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def _buffer_size(piece_length: int) -> int:
    if piece_length <= READ_CHUNK:
        return READ_CHUNK // piece_length * piece_length
    return READ_CHUNK


def _overlaps(ranges: Iterable[tuple[int, int]], lo: int, hi: int) -> bool:
    return any(a < hi and lo < b for a, b in ranges)


def _runs(pieces: Iterable[int], n: int) -> list[tuple[int, int]]:
    """Distinct piece indexes as sorted ``[start, stop)`` runs of consecutive pieces."""
    chosen = sorted(set(pieces))
    bad = [i for i in chosen[:1] + chosen[-1:] if not 0 <= i < n]
    if bad:
        raise LocalProtocolError(f"piece {bad[0]} does not exist (the torrent has {n})")
    runs: list[tuple[int, int]] = []
    for i in chosen:
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


# --------------------------------------------------------------------------- piece writer


class PieceJob(Protocol):
    """What a :class:`PieceWriter` takes: a complete piece (the engine's ``Assembly``)."""

    @property
    def index(self) -> int: ...

    @property
    def data(self) -> Buffer: ...

    @property
    def prefix(self) -> HashPrefix | None:
        """The hashing done while the piece arrived (``Assembly.prefix``), or None."""


J = TypeVar("J", bound=PieceJob)

#: How a job ended: True (verified and written), False (hash mismatch or non-zero pad
#: bytes: nothing written), or the StorageError the disk raised.
Outcome = bool | StorageError
#: Seconds a writer thread waits for work before it ends (a new piece starts one again).
WRITER_IDLE_EXIT = 5.0
#: A writer thread's name while it serves (``threading`` and, truncated, the OS's).
THREAD_NAME = "piece writer"
#: Piece bytes submitted to a :class:`PieceWriter` but not yet written past which the peer
#: readers stop receiving (:attr:`PieceWriter.room`), until the backlog is down to half of it.
#: When the kernel's writeback stalls, pieces kept arriving at the network's rate and about
#: 80 MiB of them piled up in memory (issue 15); libtorrent caps the same queue with
#: ``max_queued_disk_bytes`` and stops reading its sockets. 32 MiB is a few tenths of a second
#: at loopback rates: enough to ride out a short stall, and to keep two writer threads busy.
MAX_QUEUED_BYTES = 32 * 1024 * 1024


class PieceWriter(Generic[J]):
    """Verifies and writes a torrent's completed pieces (``write_piece``'s work) on
    long-lived worker threads: no trio task and no thread call per piece.

    The owner runs :meth:`run` in its own nursery (the torrent does), so the workers live
    inside it, and hands it complete pieces with :meth:`submit` (never blocking; also before
    ``run`` has started). Up to ``storage.write_threads`` threads take them from a queue, hash in
    parallel and write one at a time (the storage's write lock); each outcome is handed back
    to the trio thread (``TrioToken.run_sync_soon`` into a memory channel) and ``done(job,
    outcome)`` is awaited for it in ``run``'s task, one job at a time (see :data:`Outcome`).
    An error other than StorageError raised by the work is raised from ``run``, into the
    owner's nursery.

    A job's buffer is the writer's from ``submit`` until ``done`` is called for it: the owner
    must not reuse (recycle) it before. A thread is started when work arrives and fewer are
    running, and ends after :data:`WRITER_IDLE_EXIT` seconds without any, so a seeding or
    idle torrent holds none. The threads use a limiter of their own, not trio's default one.

    Backpressure: :attr:`queued_bytes` counts the bytes of the jobs submitted whose outcome
    has not come back yet. Past ``max_queued`` (:data:`MAX_QUEUED_BYTES`) :attr:`room` is
    replaced by an unset event, which is set again once the backlog is at most half the
    limit (or the writer has ended); the peer readers wait on it before their next receive.

    Cancelled: jobs not started are dropped (``done`` is never called for them, and their
    buffers are left alone), the ones being worked on finish, and every thread has ended
    before ``run`` returns. A storage that works inline (MemoryStorage: ``write_threads`` 0)
    does each job in ``run``'s task instead (through ``storage.write_piece``), so a simulation
    stays deterministic.
    """

    def __init__(
        self,
        storage: PieceStorage,
        done: Callable[[J, Outcome], Awaitable[None]],
        *,
        max_queued: int | None = None,
    ):
        self._storage = storage
        self._done = done
        self._threads = storage.write_threads
        send, receive = trio.open_memory_channel[tuple[J, Outcome | BaseException | None]](math.inf)
        self._send, self._receive = send, receive
        self._jobs: queue.SimpleQueue[J | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards _live and the put / idle-exit decision
        self._live = 0  # threads running (or about to)
        self._stopping = False
        self._nursery: trio.Nursery | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._limiter = trio.CapacityLimiter(max(1, self._threads))
        #: Set once ``run`` has ended: nothing submitted is worked on any more.
        self.closed = False
        self.max_queued = MAX_QUEUED_BYTES if max_queued is None else max_queued
        #: Bytes of the jobs submitted whose outcome has not come back.
        self.queued_bytes = 0
        #: Set while the backlog leaves room for more pieces (see the class).
        self.room = trio.Event()
        self.room.set()

    def submit(self, job: J) -> None:
        """Verify and write ``job`` (from the trio thread); ``done`` tells how it went."""
        self.queued_bytes += len(job.data)
        if self.queued_bytes > self.max_queued and self.room.is_set():
            self.room = trio.Event()
        if not self._threads:
            self._send.send_nowait((job, None))  # worked on in run's task
            return
        with self._lock:
            self._jobs.put(job)
            start = self._live < self._threads and self._nursery is not None
            if start:
                self._live += 1
        if start:
            assert self._nursery is not None
            self._nursery.start_soon(self._thread)

    async def run(self) -> None:
        """Hand every outcome to ``done`` until cancelled (see the class)."""
        self._token = trio.lowlevel.current_trio_token()
        try:
            await self._run()
        except BaseExceptionGroup as group:
            # The owner sees the error as raised, as from a plain call; cancellation stays
            # a group for the cancel scopes above to catch.
            if isinstance(first := _first_leaf(group), trio.Cancelled):
                raise
            raise first from None
        finally:
            self.closed = True
            self.room.set()  # nothing waits on a writer that has ended
            self._nursery = None
            self._receive.close()

    async def _run(self) -> None:
        async with trio.open_nursery() as nursery:
            with self._lock:
                self._nursery = nursery
                waiting = min(self._threads - self._live, self._jobs.qsize())
                self._live += waiting
            for _ in range(waiting):  # jobs submitted before run started
                nursery.start_soon(self._thread)
            try:
                async for job, outcome in self._receive:
                    if outcome is None:  # inline storage: the work is done here
                        outcome = await self._work_inline(job)
                    elif not isinstance(outcome, bool | StorageError):
                        raise outcome
                    self.queued_bytes -= len(job.data)
                    if self.queued_bytes <= self.max_queued // 2:
                        self.room.set()
                    await self._done(job, outcome)
            finally:
                with self._lock:
                    self._stopping = True
                    for _ in range(self._live):
                        self._jobs.put(None)  # wakes a waiting thread, which ends

    async def _thread(self) -> None:
        # Not abandoned on cancellation: the thread always ends before run() does.
        await trio.to_thread.run_sync(self._serve, limiter=self._limiter, thread_name=THREAD_NAME)

    def _serve(self) -> None:
        """A worker thread: jobs from the queue until stopped or idle."""
        jobs, token = self._jobs, self._token
        assert token is not None
        while True:
            try:
                job = jobs.get(timeout=WRITER_IDLE_EXIT)
            except queue.Empty:
                with self._lock:
                    if jobs.empty() or self._stopping:  # no put can slip past this check
                        self._live -= 1
                        return
                continue
            if job is None or self._stopping:
                with self._lock:
                    self._live -= 1
                return
            outcome: Outcome | BaseException
            try:
                outcome = self._work(job)
            except BaseException as exc:  # raised from run()
                outcome = exc
            token.run_sync_soon(self._deliver, job, outcome)  # run() outlives the thread

    def _deliver(self, job: J, outcome: Outcome | BaseException) -> None:
        # On the trio thread, outside any task: must not raise.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            self._send.send_nowait((job, outcome))

    async def _work_inline(self, job: J) -> Outcome:
        # The storage's own write_piece (MemoryStorage: a checkpoint, then the same work as
        # a thread's), so a test's storage can take its time on the virtual clock.
        try:
            return await self._storage.write_piece(job.index, job.data, job.prefix)
        except StorageError as exc:
            return exc

    def _work(self, job: J) -> Outcome:
        try:
            return self._storage._write_piece_sync(job.index, job.data, job.prefix)
        except StorageError as exc:
            return exc


# --------------------------------------------------------------------------- in memory

#: MemoryStorage file versions, unique in the process: a file rebuilt in a new MemoryStorage
#: never takes a version some saved resume data recorded for other contents.
_VERSIONS = itertools.count(1)


class MemoryStorage(PieceStorage):
    """Files as byte arrays; a file exists once a piece touching it was written (or after
    :meth:`allocate`). ``payload`` (the whole concatenated payload, pads included) starts
    it complete, e.g. for a seeder in a simulation."""

    def __init__(self, info: Info, payload: bytes | None = None) -> None:
        super().__init__(info)
        #: file index -> contents, for present non-pad files. Tests may edit it (then call
        #: :meth:`touch`, as a real write would change the file's modification time).
        self.files: dict[int, bytearray] = {}
        #: file index -> version, the stand-in for a modification time (see _VERSIONS).
        self.versions: dict[int, int] = {}
        if payload is not None:
            if len(payload) != info.total_length:
                raise LocalProtocolError(
                    f"payload is {len(payload)} bytes, the torrent holds {info.total_length}"
                )
            for i, f in enumerate(info.files):
                if not f.pad:
                    self.files[i] = bytearray(payload[f.offset : f.offset + f.length])
                    self.touch(i)

    def touch(self, file_index: int) -> None:
        """Record that file ``file_index`` changed (a new version, like a new mtime)."""
        self.versions[file_index] = next(_VERSIONS)

    async def _call(self, fn: Callable[[], T]) -> T:
        await trio.lowlevel.checkpoint()
        return fn()

    def _pread(self, file_index: int, offset: int, into: memoryview) -> int:
        data = self.files.get(file_index)
        if data is None:
            raise StorageError(f"{self._describe(file_index)}: missing")
        chunk = data[offset : offset + len(into)]
        into[: len(chunk)] = chunk
        return len(chunk)

    def _pwrite(self, file_index: int, offset: int, data: memoryview) -> bool:
        f = self.files.get(file_index)
        if f is None:
            f = self.files[file_index] = bytearray(self.info.files[file_index].length)
        f[offset : offset + len(data)] = data
        self.touch(file_index)
        return False

    def _allocate_sync(self, only: frozenset[int] | None = None) -> None:
        for i, f in enumerate(self.info.files):
            if not f.pad and (only is None or i in only):
                if i not in self.files:
                    self.files[i] = bytearray()
                    self.touch(i)
                data = self.files[i]
                if len(data) < f.length:
                    data.extend(bytes(f.length - len(data)))
                    self.touch(i)

    def _file_problems_sync(self) -> list[str | None]:
        return [
            None if f.pad or i in self.files else "missing" for i, f in enumerate(self.info.files)
        ]

    def _file_stamps_sync(self) -> list[FileStamp | None]:
        out: list[FileStamp | None] = []
        for i, f in enumerate(self.info.files):
            data = self.files.get(i)
            if f.pad or data is None:
                out.append(None)
            else:
                out.append(FileStamp(size=len(data), mtime_ns=self.versions.setdefault(i, 0)))
        return out

    def _sync_sync(self) -> None:
        pass


# --------------------------------------------------------------------------- on disk


#: Linux's "only if cached" read flag (preadv2), where the platform has it.
_RWF_NOWAIT: int = getattr(os, "RWF_NOWAIT", 0)
_NOWAIT = bool(_RWF_NOWAIT)


class _Handle:
    __slots__ = ("direct", "evicted", "fd", "refs", "writable")

    def __init__(self, fd: int, writable: bool) -> None:
        self.fd = fd
        self.writable = writable
        self.refs = 0
        self.evicted = False
        #: the same file opened with O_DIRECT for writing: None not yet, -1 refused
        self.direct: int | None = None

    def fds(self) -> list[int]:
        """The descriptors to close with this handle."""
        return [self.fd] if self.direct is None or self.direct < 0 else [self.fd, self.direct]


def _open_direct(fd: int) -> int:
    """The file ``fd`` is, opened again for writing with O_DIRECT (through /proc: the very
    file, no path walk, no race with a rename)."""
    return os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | _O_DIRECT | _O_CLOEXEC)


_write_direct = os.pwrite  # (a name of its own, for the tests to refuse)


def _buffer_address(data: memoryview) -> int | None:
    """Where ``data`` starts in memory, or None for a buffer that cannot tell (read-only)."""
    import ctypes  # only a storage that writes around the page cache needs it

    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(data))
    except (TypeError, ValueError):
        return None


class FileStorage(PieceStorage):
    """The payload in files below ``root`` (which must exist before anything is written).

    Open file descriptors are cached (at most ``max_open_files``, least recently used
    closed first) and shared by the worker threads; a descriptor in use by a thread is
    closed only once that thread is done with it. ``workers`` threads recheck in parallel
    (default: up to 4, one per CPU); pass 1 for a spinning disk.

    ``page_cache`` (``Settings.page_cache``): ``"drop"`` keeps verified pieces out of the
    OS page cache. Where a piece's span of a file is aligned (its file offset, its length
    and its buffer's address multiples of :data:`DIRECT_ALIGN`: every full piece of a
    single-file torrent, from the engine's page-aligned piece buffers), it is written with
    ``O_DIRECT``, straight from the buffer to the disk: no copy into the page cache, no
    pages to find, dirty and drop (~0.2 CPU-s per GiB less than the advice below, issue 15;
    libtorrent's ``disable_os_cache`` did the same). Every other span is written through
    the cache, which is told to start its writeback at once (``POSIX_FADV_DONTNEED`` on
    dirty pages only starts it) and asked again :data:`DROP_LAG` pieces later, when the
    pages are clean and the kernel releases them. Either way a download holds a few MiB of
    page cache instead of its whole size, and the memory its next writes need is the
    memory just released, not memory the system has to find (on a VM whose free memory
    goes back to the host, the first touch of such memory costs ~15x more: README, issue
    15). Dirty pages are never dropped, so nothing is lost; reads of a released piece (an
    upload) come from the disk. A file system that refuses ``O_DIRECT`` (tmpfs before
    Linux 6.6, some network file systems) gets the advice alone. ``"keep"`` leaves the
    pages to the OS, as libtorrent's default does.
    """

    def __init__(
        self,
        info: Info,
        root: Path | str,
        *,
        max_open_files: int = DEFAULT_MAX_OPEN_FILES,
        workers: int | None = None,
        page_cache: Literal["drop", "keep"] = "keep",
    ) -> None:
        super().__init__(info)
        if page_cache not in ("drop", "keep"):
            raise LocalProtocolError(f"page_cache: drop or keep, got {page_cache!r}")
        #: The spans of each of the last pieces written, oldest first, while pages are
        #: being dropped (guarded by ``_write_lock``); None: the pages are left to the OS.
        self._drop_queue: deque[list[Span]] | None = (
            deque() if page_cache == "drop" and _FADVISE is not None else None
        )
        #: write aligned spans with O_DIRECT (``page_cache="drop"``); off for good once
        #: the system refuses it (a file system without it, such as an older tmpfs, or no
        #: /proc)
        self._direct = page_cache == "drop" and _O_DIRECT != 0
        self.root = Path(os.path.abspath(root))
        for f in info.files:
            if not f.pad:
                check_components(f.path)
        self.max_open_files = max(1, max_open_files)
        self.workers = workers if workers is not None else max(1, min(4, os.cpu_count() or 1))
        self._lock = threading.Lock()
        self._handles: OrderedDict[int, _Handle] = OrderedDict()
        self._root_fd: int | None = None
        self._closed = False

    @property
    def write_threads(self) -> int:
        # Two hash in parallel (on two cores, one piece's write overlaps the next's hash);
        # one for a storage asked to use one thread (a spinning disk).
        return min(2, self.workers)

    async def _call(self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise LocalProtocolError("storage used after close()")
        return await trio.to_thread.run_sync(fn)

    async def read_block(self, index: int, begin: int, length: int) -> bytes | bytearray:
        """As for every storage, but data already in the page cache is read at once, on the
        event loop, without a thread (``preadv2`` with ``RWF_NOWAIT``: never waits on the
        disk, fails instead); anything else goes to a worker thread as before. A thread round
        trip costs about 0.2 ms of CPU, a fifth of a seeder's CPU per GiB (issue 15)."""
        self.layout.piece_spans(index, begin, length)  # bounds check
        if self._closed:
            raise LocalProtocolError("storage used after close()")
        data = self._read_cached(index, begin, length) if _NOWAIT else None
        if data is None:
            return await self._call(functools.partial(self._read_sync, index, begin, length))
        await trio.lowlevel.checkpoint()
        return data

    def _read_cached(self, index: int, begin: int, length: int) -> bytearray | None:
        """The bytes, if every file is open already and every byte is in the page cache;
        else None (nothing is opened and nothing waits here)."""
        global _NOWAIT
        out = bytearray(length)
        view = memoryview(out)
        pos = 0
        for s in self.layout.piece_spans(index, begin, length):
            if not s.pad:
                with self._lock:
                    h = self._handles.get(s.file_index)
                    if h is None:
                        return None
                    h.refs += 1
                try:
                    n = os.preadv(h.fd, [view[pos : pos + s.length]], s.offset, _RWF_NOWAIT)
                except BlockingIOError:
                    return None
                except OSError as exc:
                    if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):
                        _NOWAIT = False  # this system cannot: threads from now on
                    return None  # real errors are reported by the thread's read
                finally:
                    self._release(h)
                if n < s.length:
                    return None
            pos += s.length
        return out

    def _describe(self, file_index: int) -> str:
        return str(self.root.joinpath(*self.info.files[file_index].path))

    # ---- opening files safely ----------------------------------------------------------------

    def _root(self) -> int:
        with self._lock:
            if self._root_fd is not None:
                return self._root_fd
        try:
            fd = os.open(self.root, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
        except FileNotFoundError:
            raise StorageError(f"{self.root}: no such folder") from None
        except OSError as exc:
            raise StorageError(f"{self.root}: {_reason(exc)}") from None
        with self._lock:
            if self._root_fd is None:
                self._root_fd = fd
                return fd
        os.close(fd)
        return self._root_fd

    def _open_file(self, file_index: int, write: bool) -> int:
        """Open file ``file_index`` by walking down from the root without following any
        symlink; with ``write``, create missing folders and the file (sparse, full length)."""
        f = self.info.files[file_index]
        comps = f.path
        dir_fd = self._root()
        opened: list[int] = []
        where = self.root
        try:
            for comp in comps[:-1]:
                where = where / comp
                dir_fd = self._open_dir(dir_fd, comp, where, write)
                opened.append(dir_fd)
            where = where / comps[-1]
            base = _O_NOFOLLOW | _O_CLOEXEC | _O_NONBLOCK
            created = False
            if write:
                try:
                    fd = os.open(comps[-1], os.O_RDWR | os.O_CREAT | os.O_EXCL | base, 0o666,
                                 dir_fd=dir_fd)  # fmt: skip
                    created = True
                except FileExistsError:
                    fd = os.open(comps[-1], os.O_RDWR | base, dir_fd=dir_fd)
            else:
                fd = os.open(comps[-1], os.O_RDONLY | base, dir_fd=dir_fd)
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise StorageError(f"{where}: is not a regular file")
                if created and f.length:
                    os.ftruncate(fd, f.length)
            except BaseException:
                os.close(fd)
                if created:
                    os.unlink(comps[-1], dir_fd=dir_fd)
                raise
            return fd
        except OSError as exc:
            raise StorageError(f"{where}: {self._explain(exc, dir_fd, where)}") from None
        finally:
            for fd_ in opened:
                os.close(fd_)

    def _open_dir(self, parent: int, comp: str, where: Path, create: bool) -> int:
        flags = os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC
        try:
            return os.open(comp, flags, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
        # FileExistsError: made by another thread meanwhile; the open below checks it.
        with contextlib.suppress(FileExistsError):
            os.mkdir(comp, 0o777, dir_fd=parent)
        try:
            return os.open(comp, flags, dir_fd=parent)
        except OSError as exc:
            raise StorageError(f"{where}: {self._explain(exc, parent, where)}") from None

    @staticmethod
    def _explain(exc: OSError, dir_fd: int, where: Path) -> str:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            # O_NOFOLLOW reports a symlink as ELOOP (or ENOTDIR with O_DIRECTORY): say which.
            try:
                st = os.lstat(where.name, dir_fd=dir_fd)
            except OSError:
                return _reason(exc)
            if stat.S_ISLNK(st.st_mode):
                return "is a symbolic link; refusing to follow it"
            if not stat.S_ISDIR(st.st_mode) and exc.errno == errno.ENOTDIR:
                return "is not a folder"
        return _reason(exc)

    # ---- the descriptor cache ---------------------------------------------------------------

    def _acquire(self, file_index: int, write: bool) -> _Handle:
        with self._lock:
            h = self._handles.get(file_index)
            if h is not None and (h.writable or not write):
                h.refs += 1
                self._handles.move_to_end(file_index)
                return h
        fd = self._open_file(file_index, write)  # slow: outside the lock
        to_close: list[int] = []
        with self._lock:
            h = self._handles.get(file_index)
            if h is not None and (h.writable or not write):
                to_close.append(fd)  # another thread opened it meanwhile
            else:
                if h is not None:
                    to_close += self._evict(file_index)
                h = self._handles[file_index] = _Handle(fd, write)
                while len(self._handles) > self.max_open_files:
                    to_close += self._evict(next(iter(self._handles)))
            h.refs += 1
            self._handles.move_to_end(file_index)
        for fd_ in to_close:
            os.close(fd_)
        return h

    def _evict(self, file_index: int) -> list[int]:
        """Drop a cache entry (lock held); return the fd to close if nobody uses it."""
        h = self._handles.pop(file_index)
        h.evicted = True
        return h.fds() if h.refs == 0 else []

    def _release(self, h: _Handle) -> None:
        with self._lock:
            h.refs -= 1
            close = h.refs == 0 and h.evicted
        if close:
            for fd in h.fds():
                os.close(fd)

    # ---- primitives --------------------------------------------------------------------------

    def _pread(self, file_index: int, offset: int, into: memoryview) -> int:
        h = self._acquire(file_index, write=False)
        try:
            got = 0
            want = len(into)
            while got < want:
                n = os.preadv(h.fd, [into[got:]], offset + got)
                if n == 0:
                    break
                got += n
            return got
        except OSError as exc:
            raise StorageError(f"{self._describe(file_index)}: {_reason(exc)}") from None
        finally:
            self._release(h)

    def _piece_written(self, spans: Sequence[Span]) -> None:
        queue_ = self._drop_queue
        if queue_ is None:
            return
        written = [s for s in spans if not s.pad and s.length]
        if not self._advise_dontneed(written):  # starts their writeback
            return
        queue_.append(written)
        if len(queue_) > DROP_LAG:
            self._advise_dontneed(queue_.popleft())  # written back by now: released

    def _advise_dontneed(self, spans: Sequence[Span]) -> bool:
        """``POSIX_FADV_DONTNEED`` on each span whose file is open; False (and no more
        dropping) where the system refuses the advice."""
        assert _FADVISE is not None
        for s in spans:
            with self._lock:
                h = self._handles.get(s.file_index)
                if h is None:
                    continue  # closed since: its pages are the OS's business now
                h.refs += 1
            try:
                _FADVISE(h.fd, s.offset, s.length, _DONTNEED)
            except OSError:  # advice only: e.g. a file system that takes none
                self._drop_queue = None
                return False
            finally:
                self._release(h)
        return True

    def _pwrite(self, file_index: int, offset: int, data: memoryview) -> bool:
        h = self._acquire(file_index, write=True)
        try:
            done = 0
            if self._direct and not (offset | len(data)) % DIRECT_ALIGN:
                done = self._pwrite_direct(h, offset, data)
                if done == len(data):
                    return True
            while done < len(data):
                done += os.pwrite(h.fd, data[done:], offset + done)
        except OSError as exc:
            raise StorageError(f"{self._describe(file_index)}: {_reason(exc)}") from None
        finally:
            self._release(h)
        return False

    def _pwrite_direct(self, h: _Handle, offset: int, data: memoryview) -> int:
        """Write ``data`` (offset and length aligned) with O_DIRECT if its address is
        aligned too; returns the bytes written (0: none, write it the usual way)."""
        address = _buffer_address(data)
        if address is None or address % DIRECT_ALIGN:
            return 0
        fd = self._direct_fd(h)
        if fd < 0:
            self._direct = False
            return 0
        try:
            return _write_direct(fd, data, offset)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self._direct = False  # an alignment this file system does not take
            return 0

    def _direct_fd(self, h: _Handle) -> int:
        """``h``'s file opened again for writing with O_DIRECT (once per handle, closed
        with it); -1 where the system refuses (e.g. an older tmpfs, or no /proc)."""
        if h.direct is None:
            try:
                fd = _open_direct(h.fd)
            except OSError:
                fd = -1
            with self._lock:
                mine = h.direct is None
                if mine:
                    h.direct = fd
            if not mine and fd >= 0:
                os.close(fd)  # another thread opened one meanwhile
        assert h.direct is not None
        return h.direct

    def _allocate_sync(self, only: frozenset[int] | None = None) -> None:
        for i, f in enumerate(self.info.files):
            if f.pad or (only is not None and i not in only):
                continue
            h = self._acquire(i, write=True)
            try:
                if os.fstat(h.fd).st_size < f.length:
                    os.ftruncate(h.fd, f.length)
            except OSError as exc:
                raise StorageError(f"{self._describe(i)}: {_reason(exc)}") from None
            finally:
                self._release(h)

    def _file_problems_sync(self) -> list[str | None]:
        out: list[str | None] = []
        for i, f in enumerate(self.info.files):
            if f.pad:
                out.append(None)
                continue
            try:
                path = safe_join(self.root, f.path)
                if not path.exists():
                    out.append("missing")
                    continue
                os.close(self._open_file(i, write=False))  # readable? (e.g. permissions)
                out.append(None)
            except StorageError as exc:
                out.append(str(exc))
        return out

    def _file_stamps_sync(self) -> list[FileStamp | None]:
        # A fresh O_NOFOLLOW walk per file, not a cached descriptor: a file replaced or
        # deleted behind our back must be seen as it is now.
        out: list[FileStamp | None] = []
        for i, f in enumerate(self.info.files):
            if f.pad:
                out.append(None)
                continue
            try:
                fd = self._open_file(i, write=False)
            except StorageError:
                out.append(None)
                continue
            try:
                st = os.fstat(fd)
            except OSError:
                out.append(None)
            else:
                out.append(FileStamp(size=st.st_size, mtime_ns=st.st_mtime_ns))
            finally:
                os.close(fd)
        return out

    def _sync_sync(self) -> None:
        for i, f in enumerate(self.info.files):
            if f.pad:
                continue
            try:
                fd = self._open_file(i, write=False)
            except StorageError:
                continue  # missing: nothing of it to make durable
            try:
                os.fsync(fd)
            except OSError as exc:
                raise StorageError(f"{self._describe(i)}: {_reason(exc)}") from None
            finally:
                os.close(fd)

    async def _forget_open_files(self) -> None:
        await self._call(functools.partial(self._drop_handles, root=False))

    def _drop_handles(self, *, root: bool) -> None:
        with self._lock:
            to_close = [fd for h in self._handles.values() if h.refs == 0 for fd in h.fds()]
            for h in self._handles.values():
                h.evicted = True
            self._handles.clear()
            if root and self._root_fd is not None:
                to_close.append(self._root_fd)
                self._root_fd = None
        for fd in to_close:
            os.close(fd)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await trio.to_thread.run_sync(functools.partial(self._drop_handles, root=True))


__all__ = [
    "FileStamp",
    "FileStorage",
    "MemoryStorage",
    "Outcome",
    "PieceJob",
    "PieceStorage",
    "PieceWriter",
    "Span",
    "check_components",
    "safe_join",
]
