"""One file, fetched so that a file at its final path is always complete and verified.

State machine per :class:`FileJob` (see docs/design.md, "Download state machine")::

    dest exists with the expected size ............................ skipped (no request)
    <dest>.part exists: re-seed the hash from it (its validator is in <dest>.part.validator)
      part larger than expected ................................... truncate, start at 0
      part at full size: hash matches -> commit (no request, never an empty Range / 416)
                         hash differs -> truncate, start at 0
    GET url  [Range: bytes=N-  If-Range: <validator>]  (redirect to the content host by hand)
      206 with Content-Range N-.../size ........................... append
      206 with any other Content-Range ............................ truncate, retry from 0
      200 ......................................................... truncate, write from 0
      body bytes beyond the expected size ......................... not written; connection dropped
      connection drops ............................................ keep the part, retry with Range
    size reached: digest == manifest -> fsync (or, in a RunJournal, one sync per run),
                  os.replace(part, dest)
                  digest != manifest -> truncate, re-fetch (bounded), then ChecksumMismatchError

The validator is what the content host said about the bytes in the part: its strong ``ETag``,
else its ``Last-Modified`` (the real Hub's CDN has its own ETag, not the sha256). A part with
no validator kept beside it sends the sha256 as ETag; a host that does not recognise it answers
200 and the file restarts from zero (verified like any other). Whatever arrives, the file is
committed only when the sha256 of all its bytes matches the manifest.

The retry counter resets whenever bytes arrive, so a slow but progressing transfer never gives
up; a transfer that makes no progress gives up after ``settings.max_retries`` attempts.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..checksum import hash_file, new_hasher
from ..errors import ChecksumMismatchError, DiskFullError, HubProtocolError, SizeMismatchError
from ..hub.pacing import Retrier
from ..hub.wire import TimeoutException, TransportError
from ..store.integrity import record_written
from ..store.journal import WRITEBACK_STEP, start_writeback
from ..store.layout import open_in_folder

if TYPE_CHECKING:
    from ..hub.client import HubClient
    from ..hub.wire import Response

PART_SUFFIX = ".part"
VALIDATOR_SUFFIX = ".part.validator"  # beside the part: the content host's ETag/Last-Modified
MAX_CHECKSUM_REFETCH = 2  # a corrupt body is re-fetched this many times before reporting
PROGRESS_STEP = 1 << 20  # report transferred bytes at least every MiB
READ_SIZE = 1 << 20  # one read fills up to this much of a thread's buffer
_buffers = threading.local()  # one read buffer per worker thread, reused for every file
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class Cancelled(Exception):
    """The run is stopping (Ctrl-C or a fatal error in another worker); the part is kept."""


@dataclass(frozen=True)
class FileJob:
    """A file to fetch: where from, where to, and what it must be."""

    url: str
    dest: Path
    size: int
    checksum_kind: str  # "sha256" | "git-sha1"
    checksum: bytes  # raw digest
    name: str = ""  # repo path, for reports (defaults to dest)
    durable: bool = True  # fsync before the rename (off inside a RunJournal: one sync a run)
    suspect: bool = False  # an unfinished run may have left dest incomplete: re-hash it

    @property
    def label(self) -> str:
        return self.name or str(self.dest)


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + PART_SUFFIX)


def validator_path(dest: Path) -> Path:
    return dest.with_name(dest.name + VALIDATOR_SUFFIX)


def file_matches(path: Path, kind: str, size: int, checksum: bytes) -> bool:
    try:
        if path.stat().st_size != size:
            return False
    except FileNotFoundError:
        return False
    return bool(hash_file(path, kind, size).digest() == checksum)


def _disk_full(exc: OSError, path: Path) -> DiskFullError:
    return DiskFullError(f"disk full while writing {path} ({exc.strerror})")


def _buffer() -> memoryview:
    buf = getattr(_buffers, "view", None)
    if buf is None:
        buf = _buffers.view = memoryview(bytearray(READ_SIZE))
    return buf


class Transfer:
    """Fetch one :class:`FileJob` (see the module docstring for the states)."""

    def __init__(
        self,
        client: HubClient,
        job: FileJob,
        *,
        stop: threading.Event | None = None,
        on_bytes: Any = None,
    ) -> None:
        self.client = client
        self.job = job
        self.part = part_path(job.dest)
        self.sidecar = validator_path(job.dest)
        self.stop = stop or threading.Event()
        self.on_bytes = on_bytes or (lambda n: None)
        self.transferred = 0  # body bytes received over the network
        self.requests = 0
        self.ranged = 0  # requests sent with a Range header
        self.waited = 0.0  # seconds from sending a request to its answer's headers
        self.hasher: Any = None  # hash of the part's bytes so far
        self.have = 0  # bytes in the part file
        self._fsynced = False
        self._sidecar_maybe = True  # a validator file may be on disk (an earlier run's)
        self._validator_doc: dict[str, Any] | None = None  # known, not yet written

    # ------------------------------------------------------------------ entry point
    def run(self) -> str:
        """Return "skipped" or "downloaded"; raise an M3leoError when the file failed."""
        job = self.job
        try:
            st = job.dest.lstat()  # a link at a tile's path is never "already there"
            if (
                stat.S_ISREG(st.st_mode)
                and st.st_size == job.size
                and not os.path.lexists(self.part)
            ):
                if not job.suspect or file_matches(
                    job.dest, job.checksum_kind, job.size, job.checksum
                ):
                    return "skipped"
                job.dest.unlink()  # written by a run that never synced it, and wrong: refetch
        except FileNotFoundError:
            pass
        try:
            return self._run()
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _disk_full(exc, self.part) from None
            raise

    def _run(self) -> str:
        job = self.job
        self._seed()
        if self.have == job.size:
            if self.hasher.digest() == job.checksum:
                self._commit()
                return "downloaded"
            self._restart()
        # sleeping on the stop event: Ctrl-C does not wait for a backoff to end
        retrier = Retrier(self.client.settings.max_retries, self.client.pacer, sleep=self.stop.wait)
        refetches = 0
        while True:
            if self.stop.is_set():
                raise Cancelled()
            before = self.have
            try:
                self._fetch()
            except (TransportError, _Truncated) as exc:
                if self.have > before:
                    retrier.reset()  # progress was made: the budget starts again
                elif isinstance(exc, TimeoutException):
                    raise self.client.connection_error(exc, job.url) from None  # as given
                if not retrier.again(None, None):
                    if isinstance(exc, _Truncated):
                        raise SizeMismatchError(
                            f"{job.label}: the server kept ending the body early "
                            f"({self.have} of {job.size} bytes)"
                        ) from None
                    raise self.client.connection_error(exc, job.url) from None
                continue
            except _BadRange as exc:
                if not retrier.again(None, None):
                    raise HubProtocolError(f"{job.label}: {exc}") from None
                self._restart()
                continue
            if self.hasher.digest() == job.checksum:
                self._commit()
                return "downloaded"
            refetches += 1
            if refetches > MAX_CHECKSUM_REFETCH:
                self.part.unlink(missing_ok=True)
                self.sidecar.unlink(missing_ok=True)
                raise ChecksumMismatchError(
                    f"{job.label}: {job.checksum_kind} differs from the manifest after "
                    f"{refetches} downloads"
                )
            self._restart()

    # ------------------------------------------------------------------ states
    def _seed(self) -> None:
        """Hash what an earlier run left in the part file (truncating it if it is too long).

        Anything at the part's name that is not a plain file (a planted link) is removed and
        the file starts from zero: a link is never read, resumed or written through.
        """
        try:
            st = self.part.lstat()
            if not stat.S_ISREG(st.st_mode):
                self.part.unlink()
                raise FileNotFoundError(self.part)
            have = st.st_size
        except FileNotFoundError:
            self.hasher, self.have = new_hasher(self.job.checksum_kind, self.job.size), 0
            self._sidecar_maybe = False  # no part: nothing to resume, no validator to read
            return
        if have > self.job.size:
            self._restart()
            return
        self.hasher = hash_file(self.part, self.job.checksum_kind, self.job.size, limit=have)
        self.have = have

    def _restart(self) -> None:
        os.close(self._open_part(os.O_WRONLY | os.O_CREAT | os.O_TRUNC))
        self._drop_validator()
        self._fsynced = False
        self.hasher, self.have = new_hasher(self.job.checksum_kind, self.job.size), 0

    def _fetch(self) -> None:
        """One GET from ``self.have`` on; returns when the expected size is reached."""
        job = self.job
        headers: dict[str, str] = {}
        if self.have:
            headers["range"] = f"bytes={self.have}-"
            headers["if-range"] = self._validator()
            self.ranged += 1
        self.requests += 1
        sent = time.monotonic()
        with self.client.stream("GET", job.url, headers=headers) as resp:
            self.waited += time.monotonic() - sent
            if resp.status_code == 206:
                cr = resp.headers.get("content-range", "")
                m = _CONTENT_RANGE.match(cr)
                if not m or int(m.group(1)) != self.have:
                    raise _BadRange(f"wrong Content-Range {cr!r} for bytes={self.have}-")
                if m.group(3) != "*" and int(m.group(3)) != job.size:
                    raise SizeMismatchError(
                        f"{job.label}: the server says {m.group(3)} bytes, the manifest {job.size}"
                    )
                if not self.sidecar.exists():
                    self._keep_validator(resp)
            elif resp.status_code == 200:
                if self.have:  # Range ignored, or If-Range did not match: start over
                    self._restart()
                self._keep_validator(resp)
                cl = resp.headers.get("content-length")
                if cl is not None and cl.isdigit() and int(cl) < job.size:
                    raise SizeMismatchError(
                        f"{job.label}: the server sends {cl} bytes, the manifest says {job.size}"
                    )
            else:
                raise HubProtocolError(f"{job.label}: unexpected status {resp.status_code}")
            self._write_body(resp)
        if self.have < job.size:
            raise _Truncated()

    def _write_body(self, resp: Response) -> None:
        """Read the body into this thread's buffer, then write and hash from it (no copies).

        Reads never ask for more than the expected size: bytes beyond it are not read, and the
        connection they arrived on is closed rather than reused.
        """
        job = self.job
        want = job.size - self.have
        pending = 0
        hasher = self.hasher
        buf = _buffer()
        # nothing hashed yet: the part starts empty (no fstat to check it)
        fd = self._open_part(os.O_WRONLY | os.O_CREAT | (os.O_APPEND if self.have else os.O_TRUNC))
        flushed = self.have  # the first byte not yet handed to the kernel's writeback
        try:
            if self.have and os.fstat(fd).st_size != self.have:  # never append to a part we
                raise _BadRange("the part file changed under us")  # did not hash
            while want > 0:
                n = resp.readinto(buf[: min(want, READ_SIZE)])
                if not n:
                    break
                if want > n and self._validator_doc is not None:
                    self._write_validator()  # the part will outlive this read: its validator
                    # goes to disk first, so a part never holds bytes without one
                chunk = buf[:n]
                done = 0
                while done < n:  # os.write may write less than asked
                    done += os.write(fd, chunk[done:])
                hasher.update(chunk)
                self.have += n
                want -= n
                self.transferred += n
                pending += n
                if self.have - flushed >= WRITEBACK_STEP:
                    start_writeback(fd, flushed, self.have - flushed)
                    flushed = self.have
                if pending >= PROGRESS_STEP:
                    self.on_bytes(pending)
                    pending = 0
                if self.stop.is_set() and want > 0:
                    raise Cancelled()
            if want <= 0 and not resp.at_end():
                resp.readinto(buf[:1])  # one more read finds the end (chunked) or extra bytes
            if want <= 0 and self.job.durable:
                os.fsync(fd)
                self._fsynced = True
            elif self.have > flushed:  # the run's one sync will find these bytes on their way
                start_writeback(fd, flushed)
        finally:
            os.close(fd)
            if pending:
                self.on_bytes(pending)

    def _open_part(self, flags: int) -> int:
        return open_in_folder(self.part, flags)

    def _commit(self) -> None:
        if self.job.size == 0 and not os.path.lexists(self.part):  # nothing arrived: none was
            os.close(self._open_part(os.O_WRONLY | os.O_CREAT | os.O_TRUNC))  # made (B8)
        if self.job.durable and not self._fsynced:
            with self.part.open("rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(self.part, self.job.dest)
        record_written(self.job.dest, self.job.checksum_kind, self.job.checksum)  # read checks
        self._drop_validator()

    # ------------------------------------------------------------------ validator sidecar
    def _keep_validator(self, resp: Response) -> None:
        """Note the content host's validator for the bytes the part is about to hold.

        It is written beside the part only once a read leaves the file unfinished: a file that
        arrives in one read (small tiles) never costs a validator file.
        """
        etag = resp.headers.get("etag", "")
        doc = {
            "etag": etag if etag and not etag.startswith("W/") else None,  # If-Range: strong
            "last_modified": resp.headers.get("last-modified"),
            "size": self.job.size,
        }
        self._drop_validator()  # an older note must not outlive the bytes it described
        self._validator_doc = doc if doc["etag"] or doc["last_modified"] else None

    def _write_validator(self) -> None:
        doc, self._validator_doc = self._validator_doc, None
        self._sidecar_maybe = True
        # written before the bytes it describes: a kill mid-write leaves a part with none of
        # them, and an unreadable note only costs a restart (If-Range falls back to sha256)
        self.sidecar.write_text(json.dumps(doc), encoding="utf-8")

    def _drop_validator(self) -> None:
        self._validator_doc = None
        if self._sidecar_maybe:
            self.sidecar.unlink(missing_ok=True)
            self._sidecar_maybe = False

    def _validator(self) -> str:
        """If-Range for a resume: the kept ETag, else Last-Modified, else the sha256 as ETag."""
        try:
            doc = json.loads(self.sidecar.read_text(encoding="utf-8"))
            if doc.get("size") == self.job.size:
                value = doc.get("etag") or doc.get("last_modified")
                if isinstance(value, str) and value:
                    return value
        except (OSError, ValueError, AttributeError):
            pass
        return f'"{self.job.checksum.hex()}"'


class _Truncated(Exception):
    """The body ended before the expected size (connection closed cleanly but early)."""


class _BadRange(Exception):
    """A 206 for the wrong offset: the part must be restarted."""
