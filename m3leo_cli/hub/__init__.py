"""hub: the Hugging Face Hub protocol, client side.

``client`` speaks the Hub's HTTP API (revision, paginated tree, paths-info, resolve with its
redirect to the content host, Range reads, auth); ``pacing`` keeps calls under the Hub's rate
limits and decides retries; ``netenv`` routes requests through proxies and trusts CA bundles;
``failures`` turns answers and connection failures into errors naming the host that failed.
May use the foundation only (spec, errors, config, progress).
"""
