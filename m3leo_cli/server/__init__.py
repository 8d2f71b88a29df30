"""A Hugging Face Hub-protocol server over a folder of repos (``m3leo serve``, and the tests),
and ``earthengine``: a loopback Earth Engine REST server (``image:computePixels``) for
``m3leo gee``'s tests.

with HubServer(root) as server:          # root/<org>/<name>/ ... -> dataset repo <org>/<name>
    settings = load_settings({"endpoint": server.url})
    server.faults = Faults(error_first=1)  # the first request per path gets a 503
    ...
    assert any(r.range for r in server.log if r.origin == "content")
"""

from __future__ import annotations

from .faults import Faults, RequestRecord
from .hub import HubServer, run_server
from .index import git_blob_sha1, lfs_pointer
from .realhub import RealHub

__all__ = [
    "Faults",
    "HubServer",
    "RealHub",
    "RequestRecord",
    "git_blob_sha1",
    "lfs_pointer",
    "run_server",
]
