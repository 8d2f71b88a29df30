"""Progress from Dask workers to the client: workers log events on a topic, the client relays
them to the command's progress callback (so the bar moves as bytes and files finish remotely)."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..progress import ProgressCallback, ProgressEvent

# start/done belong to the client's own phases; workers report what they advance
_RELAYED = ("advance", "message")


@dataclasses.dataclass(frozen=True)
class WorkerRelay:
    """A picklable progress callback: on a worker it logs each event on ``topic``."""

    topic: str

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind not in _RELAYED:
            return
        try:
            from distributed import get_worker

            worker = get_worker()
        except (ImportError, ValueError):  # not on a worker (the local engine): nothing to send
            return
        worker.log_event(self.topic, dataclasses.asdict(event))


_FIELDS = {f.name for f in dataclasses.fields(ProgressEvent)}
_FLUSH = "m3leo-flush"


def _flush(topic: str, dask_worker: Any = None) -> None:
    """Runs on each worker (``client.run`` passes it): a marker behind every event that worker
    has logged so far."""
    dask_worker.log_event(topic, {"kind": _FLUSH})


@contextmanager
def listen(client: Any, progress: ProgressCallback, settle: float = 10.0) -> Iterator[WorkerRelay]:
    """Subscribe ``progress`` to a fresh topic for the duration of one command.

    On the way out every worker sends a marker and the client waits (at most ``settle``
    seconds) until all markers are in, so no event a finished task sent is dropped.
    """
    topic = f"m3leo-progress-{uuid.uuid4().hex}"
    flushed: set[str] = set()
    all_in = threading.Event()
    expected: set[str] = set()

    def handler(event: tuple[float, dict[str, Any]]) -> None:
        _, fields = event
        if fields.get("kind") == _FLUSH:
            flushed.add(str(fields.get("worker")))
            if expected and expected <= flushed:
                all_in.set()
            return
        progress(ProgressEvent(**{k: v for k, v in fields.items() if k in _FIELDS}))

    client.subscribe_topic(topic, handler)
    try:
        yield WorkerRelay(topic)
        try:
            expected.update(client.run(_flush, topic))
        except Exception:  # noqa: BLE001 - a worker gone at the end only costs late events
            return
        if expected <= flushed:
            all_in.set()
        all_in.wait(settle)
    finally:
        client.unsubscribe_topic(topic)
