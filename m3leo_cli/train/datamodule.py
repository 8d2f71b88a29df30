"""A LightningDataModule with train / val / test from the split CSVs (the manifest's split).

Each split is a :class:`~m3leo_cli.train.dataset.StoreDataset` over the local store, or, when
``export`` names an export (a folder or an fsspec URL such as ``s3://bucket/prefix``), an
:class:`~m3leo_cli.train.exported.ExportDataset` streaming it (the train split shuffled by
shards and a ``shuffle_buffer`` of samples, per seed and epoch), or, with ``source="hub"``, an
:class:`~m3leo_cli.train.streamed.M3LEOStream` streaming the Hub's shards (through a
:class:`~m3leo_cli.train.streamed.StreamLoader`, which resumes mid-epoch). The training loader
shuffles a map-style dataset with a seeded generator, so two runs with the same seed see the
same order.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch

from .layers import DataSpec
from .threads import collate

if TYPE_CHECKING:
    from ..config import Settings


class M3leoDataModule(L.LightningDataModule):
    def __init__(
        self,
        data: DataSpec,
        *,
        batch_size: int = 8,
        num_workers: int = 0,
        settings: Settings | None = None,
        export: str | Path | None = None,
        seed: int = 0,
        stats: Any = None,
        source: str = "store",
        stream: dict[str, Any] | None = None,
        shuffle_buffer: int = 64,
    ) -> None:
        super().__init__()
        self.data = data
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.settings = settings
        self.export = export or None  # a folder or an fsspec URL (kept as given: not a Path)
        self.shuffle_buffer = shuffle_buffer  # export: samples mixed in the train split
        self.seed = seed
        self.stats = stats  # normstats.RunStats: every split normalised with the train split's
        self.datasets: dict[str, Any] = {}
        self.source = source
        self.stream = dict(stream or {})  # M3LEOStream's keyword arguments (cache, prefetch)

    def dataset(self, split: str) -> Any:
        """The dataset of one split, built on first use (errors name the fix)."""
        if split not in self.datasets:
            if self.source == "hub":
                from .streamed import M3LEOStream

                self.datasets[split] = M3LEOStream(
                    self.data, split, self.settings, stats=self.stats, seed=self.seed,
                    **self.stream,
                )  # fmt: skip
            elif self.export is not None:
                from .exported import ExportDataset

                self.datasets[split] = ExportDataset(
                    self.export, split, self.data, shuffle=split == "train", seed=self.seed,
                    shuffle_buffer=self.shuffle_buffer,
                )  # fmt: skip
            else:
                from .dataset import StoreDataset

                self.datasets[split] = StoreDataset(
                    self.data, split, self.settings, stats=self.stats
                )
        return self.datasets[split]

    @property
    def num_channels(self) -> int:
        return len(self.dataset("train").channel_names)

    def setup(self, stage: str | None = None) -> None:
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}
        for split in splits.get(stage or "fit", ("train", "val", "test")):
            self.dataset(split)

    def _loader(self, split: str, shuffle: bool) -> torch.utils.data.DataLoader:
        ds = self.dataset(split)
        if self.source == "hub":
            from .streamed import StreamLoader

            return StreamLoader(
                ds,
                batch_size=self.batch_size,
                num_workers=self.num_workers,
                pin_memory=self._on_cuda(),
                collate_fn=collate,
            )
        iterable = isinstance(ds, torch.utils.data.IterableDataset)
        gen = torch.Generator().manual_seed(self.seed) if shuffle and not iterable else None
        return torch.utils.data.DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=bool(shuffle and not iterable),
            num_workers=self.num_workers,
            generator=gen,
            persistent_workers=self.num_workers > 0,
            pin_memory=self._on_cuda(),  # page-locked batches: the copy to the GPU overlaps
            collate_fn=collate,  # stacked on one thread (train.threads)
        )

    def _on_cuda(self) -> bool:
        trainer = getattr(self, "trainer", None)
        strategy = getattr(trainer, "strategy", None) if trainer is not None else None
        device = getattr(strategy, "root_device", None)
        return getattr(device, "type", None) == "cuda"

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader("test", shuffle=False)
