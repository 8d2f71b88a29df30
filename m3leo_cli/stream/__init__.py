"""stream: samples straight from the full edition's Parquet shards on the Hub, no download first.

``plan`` (which row group of which shard holds each tile a selection needs; where each tile
will be in the cache), ``order`` (the per-epoch order: row-group components shuffled by
(seed, epoch), split into disjoint shares for ranks x workers, a bounded shuffle buffer,
resumable mid-epoch), ``cache`` (fetched row groups' tiles on disk under a byte budget, LRU),
``fetch`` (one row group through the Hub engine into the cache; the prefetcher that runs ahead
of the consumer). torch-free: ``train.streamed`` is the dataset over it.

May use full/ (shard index, ranges, unpacking), hub/, catalog/, store/ and the foundation.
"""
