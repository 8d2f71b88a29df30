"""Where :class:`~m3leo_cli.train.exported.ExportDataset` reads an export from, what a split
holds, and in which order an epoch reads it.

- :class:`ExportFiles`: a local folder or an fsspec URL (``s3://bucket/prefix``; credentials
  and endpoint from the usual variables, ``AWS_PROFILE``, ``AWS_ENDPOINT_URL_S3`` ..., as
  ``m3leo export --out s3://...`` writes). Files are opened where they are, never copied as a
  whole: fsspec reads what a reader asks for (tar members, Parquet row groups, Zarr chunks).
- :func:`split_shards`: a split's shards and each one's sample count, from ``metadata.json``
  (the file list, the written samples, the failed ones and ``--shard-size``), so nothing is
  opened, listed or counted on an object store before the first sample.
- :func:`epoch_order` and :func:`shuffled`: with shuffling, the shards' order is a permutation
  drawn from (seed, epoch) before the ranks and workers cut their contiguous blocks, and each
  worker mixes its samples through a bounded buffer seeded by (seed, epoch, rank, worker): every
  sample exactly once per epoch, a different order each epoch, the same order for the same
  (seed, epoch) and the same number of ranks and workers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

from ..errors import TrainConfigError

T = TypeVar("T")
SUFFIX = {"webdataset": ".tar", "parquet": ".parquet", "tfrecord": ".tfrecord",
          "hf": ".parquet", "litdata": ".bin", "npz": ".npz"}  # fmt: skip
_FILESYSTEMS: dict[tuple[int, str], tuple[Any, str]] = {}  # (pid, url) -> fs, root


def is_url(root: str | os.PathLike[str]) -> bool:
    text = os.fspath(root)
    return "://" in text and not text.startswith("file://")


class ExportFiles:
    """The files of one export, local or behind an fsspec URL (picklable: each process opens
    its own filesystem, so DataLoader workers never share a connection pool)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.url = os.fspath(root).rstrip("/") if is_url(root) else None
        self.root = Path(root) if self.url is None else None

    def __str__(self) -> str:
        return self.url if self.url is not None else str(self.root)

    def _fs(self) -> tuple[Any, str]:
        assert self.url is not None
        key = (os.getpid(), self.url)
        if key not in _FILESYSTEMS:
            from ..export.target import RemoteTarget

            _FILESYSTEMS[key] = RemoteTarget(self.url).filesystem()
        return _FILESYSTEMS[key]

    def location(self, rel: str) -> str:
        """A file's local path or URL (for libraries that open it themselves)."""
        if self.url is None:
            assert self.root is not None
            return str(self.root / rel)
        return f"{self.url}/{rel}"

    @contextmanager
    def _reading(self, rel: str) -> Iterator[None]:
        """A missing object or a refusal of the object store as one error naming the fix."""
        try:
            yield
        except FileNotFoundError:
            raise
        except Exception as exc:
            if self.url is None or type(exc).__name__ not in _REFUSED:
                raise
            raise TrainConfigError(
                f"cannot read {self.location(rel)}: {exc}",
                "set AWS_PROFILE or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and "
                "AWS_ENDPOINT_URL_S3 for an S3-compatible store), or copy the export to a folder",
            ) from None

    def read_text(self, rel: str) -> str:
        if self.url is None:
            assert self.root is not None
            return (self.root / rel).read_text()
        fs, root = self._fs()
        with self._reading(rel):
            return bytes(fs.cat_file(f"{root}/{rel}")).decode()

    def open(self, rel: str) -> IO[bytes]:
        """A seekable binary file (over an object store: ranged reads with read-ahead)."""
        if self.url is None:
            assert self.root is not None
            return open(self.root / rel, "rb")
        fs, root = self._fs()
        with self._reading(rel):
            fh: IO[bytes] = fs.open(f"{root}/{rel}", "rb", block_size=8 << 20)
        return fh

    def zarr_store(self, rel: str) -> Any:
        """What ``zarr.open_group`` opens: the folder, or a read-only zarr store on this
        process's filesystem (given a URL or a mapper, zarr makes an asynchronous filesystem
        of its own, whose HTTP session is never closed)."""
        if self.url is None:
            return self.location(rel)
        from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper
        from zarr.storage import FsspecStore

        fs, root = self._fs()
        wrapped = AsyncFileSystemWrapper(fs, asynchronous=True)  # its calls run in threads
        return FsspecStore(wrapped, read_only=True, path=f"{root}/{rel}")

    def local_copy(self, rel: str, folder: str) -> str:
        """``rel`` as a local path: itself, or (object store) a copy in ``folder``."""
        if self.url is None:
            return self.location(rel)
        fs, root = self._fs()
        dest = os.path.join(folder, rel.replace("/", "__"))
        with self._reading(rel):
            fs.get_file(f"{root}/{rel}", dest)
        return dest


_REFUSED = {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError",
            "ProfileNotFound", "PermissionError", "ClientError"}  # fmt: skip


def load_metadata(files: ExportFiles) -> dict[str, Any]:
    try:
        meta: dict[str, Any] = json.loads(files.read_text("metadata.json"))
    except (FileNotFoundError, NotADirectoryError):
        raise TrainConfigError(
            f"{files} is not a finished m3leo export (no metadata.json)",
            "point data.export at the --out folder (or s3:// prefix) of a complete `m3leo export`",
        ) from None
    return meta


def split_shards(meta: Mapping[str, Any], split: str) -> list[tuple[str, int]]:
    """The split's shards in the order the export wrote them, each with its sample count."""
    fmt = meta["format"]
    written = [m for m in meta.get("samples", []) if m["split"] == split]
    if fmt == "zarr":  # one store per split; failed samples are empty slots it skips
        return [(split, len(written))] if written else []
    suffix = SUFFIX[fmt]
    files = meta.get("files", {})
    if fmt == "npz":  # one file per sample, in the export's sample order (region, tile id)
        names = [f"{split}/{m['tile_id']}{suffix}" for m in written]
        return [(rel, 1) for rel in names if rel in files]
    failed = {(f["region"], f["tile_id"]) for f in meta.get("skipped", {}).get("failed", [])
              if f["split"] == split}  # fmt: skip
    ok = {(m["region"], m["tile_id"]) for m in written}
    order = sorted(ok | failed)  # the export's sample order within a split
    size = max(1, int(meta.get("options", {}).get("shard_size") or 256))
    out = []
    for n, k in enumerate(range(0, len(order), size)):
        rel = f"{split}/{split}-{n:06d}{suffix}"
        count = sum(key in ok for key in order[k : k + size])
        if count and rel in files:
            out.append((rel, count))
    return out


def row_group_rows(
    pf: Any, columns: list[str], first: int, last: int, combine: bool = False
) -> Iterator[tuple[Any, int]]:
    """``(table, i)`` for rows ``first..last-1`` of a Parquet file: ``table`` the row group
    holding the row (``columns`` only), ``i`` its index there. Row groups outside the range
    are never read."""
    start = 0
    for g in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        if start >= last:
            return
        if start + n > first:
            table = pf.read_row_group(g, columns=columns)
            if combine:
                table = table.combine_chunks()
            for i in range(max(first - start, 0), min(last - start, n)):
                yield table, i
        start += n


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool) -> list[int]:
    """The shards' order for one epoch (a permutation drawn from (seed, epoch))."""
    if not shuffle or n < 2:
        return list(range(n))
    import numpy as np

    return [int(i) for i in np.random.default_rng([seed, epoch, 0x5A4D]).permutation(n)]


def shuffled(items: Iterable[T], size: int, seed: Iterable[int]) -> Iterator[T]:
    """``items`` mixed through a buffer of ``size`` (0: as they come): each new item takes the
    place of one drawn at random, which is yielded; what is left is drawn at the end."""
    if size <= 1:
        yield from items
        return
    import numpy as np

    rng = np.random.default_rng(list(seed))
    buf: list[T] = []
    for item in items:
        if len(buf) < size:
            buf.append(item)
            continue
        k = int(rng.integers(size))
        out, buf[k] = buf[k], item
        yield out
    for k in rng.permutation(len(buf)):
        yield buf[int(k)]
