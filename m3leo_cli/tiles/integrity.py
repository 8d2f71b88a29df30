"""Integrity on read: every reader checks a stored file before trusting its bytes.

:func:`check_intact` is called by ``read_tile``/``band_names`` (so by ``export``, ``stats
--bands``, ``show`` and ``info``) and by the training dataset's fast netCDF path. It costs one
``os.stat`` and one record lookup (``store.integrity``) when the file is as it was written;
a file whose size or mtime differ from its record, or that has no record while the manifest
has its sha256, is re-hashed: a match renews the record, a mismatch is refused with a
``CorruptTileError`` naming ``m3leo verify --repair``. A decoder alone cannot tell: one flipped
bit in a GeoTIFF still decodes, into thousands of wrong pixels.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ..checksum import file_hexdigest
from ..errors import CorruptTileError, TileNotLocalError
from ..store import integrity
from .model import repair_command

_manifests: dict[Path, tuple[int, dict[str, bytes]]] = {}  # path -> (mtime, {repo path: sha})
_manifest_lock = threading.Lock()


def check_intact(path: Path | str, expected_sha256: str | None = None) -> os.stat_result:
    """Raise unless ``path`` is a file whose bytes are the ones that were written.

    ``expected_sha256`` (hex): the manifest's checksum when the caller knows it (used only for
    a file without a record). Raises TileNotLocalError for a missing file. Returns its stat.
    """
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise TileNotLocalError(f"tile file {path} does not exist") from None
    if not _is_file(st):
        raise TileNotLocalError(f"tile file {path} does not exist (a folder is in its place)")
    place = integrity.place_of(path)
    if place is None:
        return st  # not a store file: nothing to compare with
    rec = integrity.lookup(place)
    if rec is not None and rec.matches(st):
        return st
    want: bytes | None = rec.sha256 if rec is not None else None
    if want is None and expected_sha256:
        want = bytes.fromhex(expected_sha256)
    if want is None:
        want = _manifest_sha256(place)
    if want is None:
        return st  # nothing known to compare with (`m3leo verify` checks what it can)
    got = file_hexdigest(Path(path), "sha256")
    if got != want.hex():
        why = "changed since it was written" if rec is not None else "differs from the manifest"
        raise CorruptTileError(
            f"cannot read {path}: it {why} (sha256 {got[:12]}..., expected {want.hex()[:12]}...)",
            f"the file is corrupt or truncated; run `{repair_command(Path(path))}` to "
            "re-download it",
        )
    integrity.record(path, got, st)  # intact: the next read costs one stat again
    return st


def _is_file(st: os.stat_result) -> bool:
    import stat

    return stat.S_ISREG(st.st_mode)


def _manifest_sha256(place: integrity.Place) -> bytes | None:
    """The manifest's sha256 of the file (miniset tiles, aux files), loaded once per region and
    process; None for files the manifest has no sha256 for (full-edition tiles)."""
    mpath = place.root / "manifest" / f"edition={place.edition}" / f"region={place.region}"
    mpath = mpath / "manifest.parquet"
    try:
        stamp = os.stat(mpath).st_mtime_ns  # a refreshed manifest is loaded again
    except OSError:
        return None
    with _manifest_lock:
        known = _manifests.get(mpath)
        if known is None or known[0] != stamp:
            known = _manifests[mpath] = (stamp, _load_sha256(mpath))
    return known[1].get(place.key)


def _load_sha256(mpath: Path) -> dict[str, bytes]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(mpath, columns=["path", "checksum_kind", "checksum"])
    except (OSError, pa.ArrowException):
        return {}
    out: dict[str, bytes] = {}
    for p, kind, digest in zip(
        table.column("path").to_pylist(),
        table.column("checksum_kind").to_pylist(),
        table.column("checksum").to_pylist(),
        strict=True,
    ):
        if kind == "sha256" and digest:
            out[p] = digest
    return out
