"""mirror: keep the local store in step with the Hub.

``download`` (either edition: chooses fetch/'s miniset path or full/'s shard path), ``verify``
(re-hash the selection, repair on request), ``clean`` (stray parts and cached shards) and
``listing`` (``m3leo tiles``: which tile has which datakind, published and local). May
use full/, fetch/, catalog/, hub/, store/ and the foundation.
"""
