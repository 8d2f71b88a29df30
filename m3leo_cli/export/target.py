"""Where an export ends up: a local folder, or an object store through an fsspec URL.

For ``--out s3://bucket/prefix`` (or ``gs://``, ``az://``, any fsspec protocol whose package is
installed) the export is written exactly as for a folder, into a staging folder under
``<data_dir>/.m3leo/exports/``, and each finished file is uploaded then removed from staging:
by the process that wrote it (a Dask worker, or this one), before the unit is recorded as done.
The staging folder keeps the resume state, so a re-run completes an interrupted export;
``metadata.json`` is uploaded last, when every unit is done. Object stores have no rename, but
an object PUT is all-or-nothing, so readers never see half a file.

Credentials and endpoints come from the protocol's usual places (``AWS_*`` variables and
profiles for S3, ``FSSPEC_S3_*``/``FSSPEC_S3`` for fsspec's own configuration).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError, OutputExistsError, StoreError

# botocore's exception names (matched by name: botocore is imported only by s3fs, when used)
_NO_CREDENTIALS = {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"}
_PROFILE_NOT_FOUND = {"ProfileNotFound"}


def is_url(out: str | os.PathLike[str]) -> bool:
    """``--out`` names an object store (``s3://...``), not a local folder."""
    text = os.fspath(out)
    return "://" in text and not text.startswith("file://")


def staging_dir(url: str, data_dir: Path | None) -> Path:
    """The local folder a remote export is staged and resumed in (one per URL)."""
    base = data_dir / ".m3leo" if data_dir is not None else Path(tempfile.gettempdir()) / "m3leo"
    return base / "exports" / hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RemoteTarget:
    """An fsspec URL prefix that finished export files are uploaded to."""

    url: str

    @cached_property
    def _fs(self) -> tuple[Any, str]:
        """The filesystem and root path, resolved once (not once per uploaded file)."""
        try:
            import fsspec
        except ImportError:
            extra = "s3" if self.url.startswith("s3://") else "dask"
            raise MissingDependencyError("fsspec", extra) from None
        try:
            fs, root = fsspec.core.url_to_fs(self.url)
        except (ImportError, ValueError) as exc:
            from ..errors import install_hint

            protocol = self.url.split("://", 1)[0]
            if protocol == "s3" and isinstance(exc, ImportError):
                raise MissingDependencyError("s3fs", "s3") from None
            how = (
                install_hint("s3")
                if protocol == "s3"
                else f"install fsspec's package for {protocol}:// (gcsfs for gs://)"
            )
            raise StoreError(
                f"cannot write to {self.url}: {exc}", f"{how}, or give --out a local folder"
            ) from None
        return fs, root.rstrip("/")

    def filesystem(self) -> tuple[Any, str]:
        """The fsspec filesystem and root path (readers of an export: ``train.exportio``)."""
        return self._fs

    def has_files(self, files: Mapping[str, Mapping[str, Any]]) -> bool:
        """Every file of a unit is there with its recorded size."""
        fs, root = self._fs
        for rel, info in files.items():
            try:
                with self._refusals():
                    if int(fs.size(f"{root}/{rel}")) != int(info["size"]):
                        return False
            except (FileNotFoundError, OSError):
                return False
        return True

    def publish(self, staged: Path, rel: str) -> None:
        """Upload one finished file, then drop the staged copy."""
        fs, root = self._fs
        try:
            with self._refusals():
                fs.put_file(str(staged), f"{root}/{rel}")
        except OSError as exc:
            raise StoreError(
                f"cannot upload {rel} to {self.url}: {exc}",
                "check the credentials and the bucket, then re-run: finished units are kept",
            ) from None
        staged.unlink()

    @contextmanager
    def _refusals(self) -> Iterator[None]:
        """The object store's own "who are you" failures as one StoreError with the fix.

        botocore raises NoCredentialsError (not an OSError) when no AWS credentials are found
        anywhere: without this, a 60-line traceback."""
        try:
            yield
        except Exception as exc:
            kind = type(exc).__name__
            if kind in _NO_CREDENTIALS:
                raise StoreError(
                    f"cannot write to {self.url}: no AWS credentials were found ({exc})",
                    "set AWS_PROFILE (a profile of ~/.aws/credentials) or AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL_S3 for an S3-compatible store), "
                    "or give --out a local folder",
                ) from None
            if kind in _PROFILE_NOT_FOUND:
                raise StoreError(
                    f"cannot write to {self.url}: {exc}",
                    "set AWS_PROFILE to a profile that exists in ~/.aws/config or "
                    "~/.aws/credentials, or unset it",
                ) from None
            raise

    def claim(self, resuming: bool, overwrite: bool) -> None:
        """Refuse a prefix holding objects of someone else's unless ``--overwrite``, which
        (as for a folder) writes next to them and over same-named ones, never deleting."""
        if resuming or overwrite:
            return
        fs, root = self._fs
        try:
            with self._refusals():
                found = fs.find(root, maxdepth=None, withdirs=False)
        except (FileNotFoundError, OSError):
            return
        if found:
            raise OutputExistsError(
                f"--out {self.url} already holds {len(found)} objects (not this export's)",
                "choose another --out, or pass --overwrite to write next to them",
            )
