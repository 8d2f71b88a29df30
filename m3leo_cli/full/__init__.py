"""full: the full edition's Parquet shards.

``index`` (footers and row paths), ``plan`` (whole shard or row-group ranges), ``unpack``
(streaming rows to files), ``shardjob`` (one shard: fetch, unpack, record), ``download`` (the
edition's download on fetch/'s plan and runner), ``unpacked`` (records, and unpacking shards
already on disk). May use fetch/, catalog/, hub/, store/ and the foundation.
"""
