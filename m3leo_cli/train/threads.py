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
environment variable is needed; without threadpoolctl installed BLAS is not limited. The
libraries are looked up again at each batch (``StoreDataset.__getitems__``: 0.3 ms a batch),
so one loaded after the first batch (scipy's BLAS, by a metric say) is held too.

The store dataset writes each batch's images straight into one tensor (:func:`batch_tensor`),
which :func:`collate` passes on instead of stacking a copy: stacking eight 6.4 MB S1 images
took a fifth of a 0-worker pass.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

_state: dict[str, Any] = {"pid": None, "controller": None, "worker": False}


def _setup() -> None:
    """A limited worker, or a controller for the main process: once per process, and again
    at each batch (a library loaded since, scipy's BLAS say, is limited too)."""
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


def batch_tensor(shape: tuple[int, ...], dtype: str = "float32") -> Any:
    """An empty tensor for one batch: in shared memory in a DataLoader worker (as
    ``default_collate`` allocates its batches there: the main process maps it, no copy);
    numpy's memory in the main process (numpy asks for huge pages for large arrays: a fresh
    50 MB batch is written about 3x faster than into ``torch.empty``'s 4 KiB pages)."""
    import numpy as np
    import torch
    from torch.utils.data import get_worker_info

    if get_worker_info() is None:
        return torch.from_numpy(np.empty(shape, dtype=dtype))
    numel = 1
    for n in shape:
        numel *= n
    elem = torch.empty(0, dtype=getattr(torch, dtype))
    storage = elem._typed_storage()._new_shared(numel, device=elem.device)
    return elem.new(storage).resize_(*shape)


def _slots_of(images: list[Any]) -> Any:
    """The batch tensor whose slots 0..n-1 the ``images`` (tensors) are, in order, else
    None."""
    base = getattr(images[0], "_base", None)
    if base is None or base.dim() != images[0].dim() + 1 or base.shape[0] != len(images):
        return None
    if not base.is_contiguous():
        return None
    slot_strides = base.stride()[1:]
    for k, im in enumerate(images):
        if (
            im._base is not base
            or im.shape != base.shape[1:]
            or im.stride() != slot_strides
            or im.data_ptr() != base[k].data_ptr()
        ):
            return None  # a transform made another view (transposed, cropped): stack them
    return base


def _collate(batch: Any) -> Any:
    """``default_collate``, except that tensors already written into one batch tensor
    (``StoreDataset.__getitems__``: images, masks, targets) are that tensor, not a stacked
    copy of it."""
    from torch.utils.data import default_collate

    first = batch[0] if isinstance(batch, list) and batch else None
    if not isinstance(first, dict):
        return default_collate(batch)
    bases = {}
    for key, value in first.items():
        if getattr(value, "_base", None) is not None and all(key in s for s in batch):
            base = _slots_of([s[key] for s in batch])
            if base is not None:
                bases[key] = base
    if not bases:
        return default_collate(batch)
    rest = default_collate([{k: v for k, v in s.items() if k not in bases} for s in batch])
    return {k: bases[k] if k in bases else rest[k] for k in first}


def collate(batch: Any) -> Any:
    """``default_collate`` on one torch thread (in the main process; workers have one), images
    written into their batch tensor by the dataset passed on as they are."""
    import torch
    from torch.utils.data import get_worker_info

    if get_worker_info() is not None:
        return _collate(batch)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _collate(batch)
    finally:
        torch.set_num_threads(threads)


@contextmanager
def loader_threads(batch: bool = False) -> Iterator[None]:
    """Assemble a sample (``batch``: the samples of a batch) under the limits above."""
    if batch or _state["pid"] != os.getpid():
        _setup()
    controller = _state["controller"]
    if controller is None or _state["worker"]:
        with nullcontext():
            yield
        return
    with controller.limit(limits=1, user_api="blas"):
        yield
