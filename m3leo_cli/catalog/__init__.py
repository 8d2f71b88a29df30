"""catalog: the local Parquet manifest of what exists on the Hub.

``manifest`` (schema and I/O) < ``build`` (rows from a listing) < ``refresh`` (the one module
that talks to the Hub and writes manifests); ``info``, ``query`` and ``stats`` read them. May
use hub/, store/ and the foundation.
"""
