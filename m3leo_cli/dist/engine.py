"""Open the engine a heavy command runs on: this process, or a Dask cluster.

With ``engine="dask"`` the client connects to ``scheduler`` (``--scheduler``,
``M3LEO_DASK_SCHEDULER``, ``scheduler = ...`` in the config file), or starts a LocalCluster of
worker processes on this machine when none is given. What the library sees is a
``concurrent.futures.Executor`` with two more attributes: ``workers`` (how many tasks to keep in
flight) and ``progress_relay`` (a picklable callback that sends a worker's progress events back
here). Work is split along natural units by the library functions themselves, so results are
the same as with the local engine.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from typing import Any

from ..config import Settings
from ..errors import DaskSchedulerError, MissingDependencyError, UsageError
from ..progress import ProgressCallback, no_progress
from .events import WorkerRelay, listen

ENGINES = ("local", "dask")


class DaskExecutor(Executor):
    """A Dask client as a ``concurrent.futures.Executor`` (tasks run on the cluster's workers)."""

    def __init__(self, client: Any, relay: WorkerRelay) -> None:
        self.client = client
        self._inner = client.get_executor(pure=False)
        self.progress_relay = relay

    @property
    def workers(self) -> int:
        """Threads across the cluster's workers: the tasks worth keeping in flight."""
        threads = self.client.nthreads()
        return max(1, sum(threads.values()))

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return self._inner.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._inner.shutdown(wait=wait)


def check_engine(name: str) -> str:
    if name not in ENGINES:
        raise UsageError(
            f"unknown engine {name!r}",
            "use --engine local or --engine dask (or M3LEO_ENGINE, or engine = ... in the config)",
        )
    return name


def probe_scheduler(address: str, timeout: float) -> None:
    """Refuse a TCP scheduler address that refuses connections or has no such host now, in
    about a second, instead of after distributed's own retries for the whole timeout (31 s).
    Other schemes (tls://, ucx://, inproc://) are left to distributed."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme != "tcp" or not parts.hostname:
        return
    try:
        port = parts.port or 8786
    except ValueError:
        raise DaskSchedulerError(address, "the port is not a number") from None
    try:
        with socket.create_connection((parts.hostname, port), timeout=min(timeout, 5.0)):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise DaskSchedulerError(address, f"{reason} (nothing answers on port {port})") from None


@contextmanager
def open_engine(
    settings: Settings,
    engine: str | None = None,
    scheduler: str | None = None,
    progress: ProgressCallback = no_progress,
) -> Iterator[DaskExecutor | None]:
    """``None`` for the local engine; else an executor over the Dask cluster, closed on exit."""
    name = check_engine(engine or settings.engine)
    if name == "local":
        yield None
        return
    try:
        import distributed
    except ImportError:
        raise MissingDependencyError("dask[distributed]", "dask") from None
    address = scheduler or settings.scheduler
    cluster = None
    if address:
        probe_scheduler(address, settings.timeout)
    try:
        if address:
            client = distributed.Client(address, timeout=f"{max(settings.timeout, 1.0)}s")
        else:
            cluster = distributed.LocalCluster(
                n_workers=max(1, min(os.cpu_count() or 1, settings.workers)),
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
                silence_logs=logging.ERROR,  # the command's own lines, not the cluster's chatter
            )
            client = distributed.Client(cluster)
    except (OSError, TimeoutError) as exc:
        raise DaskSchedulerError(address or "a LocalCluster", str(exc)) from None
    from .plugin import LocalEdition

    try:
        client.register_plugin(LocalEdition(settings.data_dir))  # regions of your own, too
        with listen(client, progress) as relay:
            yield DaskExecutor(client, relay)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
