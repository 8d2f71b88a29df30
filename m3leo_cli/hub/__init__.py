"""hub: the Hugging Face Hub protocol, client side.

``client`` speaks the Hub's HTTP API (revision, paginated tree, paths-info, resolve with its
redirect to the content host, Range reads, auth); ``pacing`` keeps calls under the Hub's rate
limits and decides retries. May use the foundation only (spec, errors, config, progress).
"""
