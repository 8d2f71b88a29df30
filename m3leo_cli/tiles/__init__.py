"""tiles: local tile files as named arrays, and what is computed or drawn from them.

``model`` (the Tile record, band names, decoding) < ``geotiff``/``netcdf`` < ``reader``
(``read_tile``); ``info`` (where a tile is), ``accumulate``/``bandstats``/``statsfile`` (band
statistics), ``preview``/``svgmap`` (pictures and maps). May use catalog/, store/ and the
foundation; never the network.
"""
