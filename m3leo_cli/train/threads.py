"""BLAS / OpenMP threads while samples are assembled (threadpoolctl).

Resampling runs small matrix products through numpy's BLAS. Left alone, every DataLoader
worker starts a full BLAS pool and the pools spin against each other and the training
process: on a 2-core machine a 2-worker loader fell to 0.82x the authors' loader. So each
worker process holds BLAS and OpenMP to one thread for its lifetime (its own process: nothing
else shares it), and the main process, when it assembles samples itself
(``loader.num_workers=0``), holds numpy's BLAS to one thread while it does so only, leaving
torch's own OpenMP pool (the model) untouched. :func:`collate` does the same for torch while
a batch is stacked in the main process: a parallel copy of a 50 MB batch gains nothing on a
small machine and leaves its OpenMP threads spinning against the next sample's decoding. No
environment variable is needed; without threadpoolctl installed BLAS is not limited.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

_state: dict[str, Any] = {"pid": None, "controller": None, "worker": False}


def _setup() -> None:
    """Once per process: a limited worker, or a controller for the main process."""
    _state["pid"] = os.getpid()
    _state["controller"] = None
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return
    from torch.utils.data import get_worker_info

    controller = ThreadpoolController()
    _state["worker"] = get_worker_info() is not None
    if _state["worker"]:
        controller.limit(limits=1)  # the whole worker process, for good
    else:
        _state["controller"] = controller


def collate(batch: Any) -> Any:
    """``default_collate`` on one torch thread (in the main process; workers have one)."""
    import torch
    from torch.utils.data import default_collate, get_worker_info

    if get_worker_info() is not None:
        return default_collate(batch)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return default_collate(batch)
    finally:
        torch.set_num_threads(threads)


@contextmanager
def loader_threads() -> Iterator[None]:
    """Assemble a sample under the limits above."""
    if _state["pid"] != os.getpid():
        _setup()
    controller = _state["controller"]
    if controller is None or _state["worker"]:
        with nullcontext():
            yield
        return
    with controller.limit(limits=1, user_api="blas"):
        yield
