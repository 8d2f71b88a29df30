"""What every Dask worker must know before it runs an m3leo task.

Tasks receive settings as values, never by loading them, so the one thing ``load_settings``
does as a side effect, registering the local edition's regions and datakinds of your own
(``config.register_local``), has to happen on each worker: on the ones there now and on any
that joins later. Imported only once ``distributed`` is known to be installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from ..config import register_local


class LocalEdition(WorkerPlugin):
    """Registers ``<data_dir>/local/*`` on a worker as it starts (and on those already up)."""

    name = "m3leo-local-edition"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)

    def setup(self, worker: Any) -> None:
        register_local(self.data_dir)
