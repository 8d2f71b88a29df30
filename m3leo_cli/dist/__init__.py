"""dist: the heavy commands beyond one machine, on Dask distributed.

``engine`` opens the engine a command asked for (``local``: none; ``dask``: a client of a
scheduler, or of a LocalCluster) as a ``concurrent.futures.Executor``; the library below takes
any executor and submits its natural units to it (shards, tile batches, export units), so the
same code runs in threads here or on workers there. ``events`` carries progress from workers
back to the client; ``plugin`` tells each worker the local edition's regions. May use every
layer below it; nothing below imports it.
"""
