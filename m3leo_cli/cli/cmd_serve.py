"""`m3leo serve`: a folder of repos over the Hugging Face Hub protocol."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .app import app
from .render import say

if TYPE_CHECKING:
    from ..server import HubServer


@app.command("serve")
def serve(
    folder: Annotated[
        Path, typer.Argument(help="Folder holding <org>/<name>/ repo folders, e.g. a site mirror.")
    ],
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on; 0.0.0.0 for every interface.")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Hub port (0 picks a free one).")
    ] = 8080,
    content_port: Annotated[
        int,
        typer.Option(
            "--content-port", min=0, max=65535, help="Port for LFS bytes (the 302 target; 0 = any)."
        ),
    ] = 0,
    page_size: Annotated[
        int,
        typer.Option("--page-size", min=1, help="Entries per tree-listing page (the Hub: 1000)."),
    ] = 1000,
    latency_ms: Annotated[
        float,
        typer.Option("--latency-ms", min=0, help="Delay every answer (to rehearse a slow link)."),
    ] = 0.0,
    access_log: Annotated[
        bool, typer.Option("--access-log", help="Print one line per request on stderr.")
    ] = False,
    hash_cache: Annotated[
        Path | None,
        typer.Option(
            "--hash-cache",
            help="JSON file that keeps file hashes across restarts (big mirrors start fast).",
        ),
    ] = None,
) -> None:
    """Serve every DIR/<org>/<name>/ folder as the Hub dataset repo <org>/<name>.

    Clients (m3leo, huggingface_hub, hf download) use it with HF_ENDPOINT=<the printed URL>.
    Stop with Ctrl-C.

    Example: m3leo serve /shared/m3leo-mirror --host 0.0.0.0 --port 8080
    """
    from ..server import run_server

    def ready(server: HubServer, counts: dict[str, int]) -> None:
        total = sum(counts.values())
        say(f"Serving {len(counts)} repo(s), {total} file(s) from {server.root}")
        for repo_id, n in counts.items():
            say(f"  {repo_id}  ({n} files)")
        say(f"Hub endpoint: {server.url}   (LFS bytes on {server.content_url})")
        say(f"Use it with:  export HF_ENDPOINT={server.url}")
        say("Press Ctrl-C to stop.")

    run_server(
        folder,
        host=host,
        port=port,
        content_port=content_port,
        page_size=page_size,
        latency_ms=latency_ms,
        access_log=access_log,
        hash_cache=hash_cache,
        on_ready=ready,
    )
    say("Stopped.")
