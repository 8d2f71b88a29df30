"""train: M3LEO in a training loop (the optional ``train`` extra).

``layers`` (what a model reads: inputs, band selections, the target), ``assemble`` (arrays ->
TorchGeo-style sample dicts), ``dataset`` (map-style dataset over the store), ``exported``
(iterable dataset over webdataset / Parquet exports, split over workers and ranks),
``datamodule`` (Lightning), ``unet`` and ``tasks`` (baseline model, metrics), ``experiments``
(the packaged Hydra configs in ``conf/``), ``run`` (``m3leo train`` / ``evaluate``).

May use everything below it: ``export`` (the tile-id join, resampling, normalisation),
``tiles``, ``catalog``, ``spec``. torch, lightning, hydra and torchmetrics are imported inside
the functions and classes that need them, never at module import by the CLI.
"""
