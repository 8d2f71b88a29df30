"""aoi: M3LEO for your own area of interest: the chip grid, splits, the local edition, ingest
of your own rasters and Earth Engine downloads.

``ids`` (chip identifiers, list hashes, UTM zones: numpy only), ``shape`` (reading and checking
an AOI), ``grid`` (geetiles' chip grid), ``split`` (striped train/val/test), ``local`` (the
``local`` edition's layout and manifest), ``ingest`` (rasters cut onto chips), ``chipfile``
(writing one chip, never through a link); Earth Engine: ``eeexpr`` (REST expressions checked
against the server's names), ``recipes`` (the built-in layers and recipe files), ``eeauth``
(credentials, tokens, project), ``eefetch`` (one chip's request, retried), ``gee`` (the run,
failures per chip). Sits beside
mirror/ and export/: it may use tiles/, catalog/, store/, spec/ and the foundation. Shapely
(the ``aoi`` extra) and earthengine-api (the ``gee`` extra) are imported inside the functions
that need them.
"""
