"""`m3leo serve`: a folder of repos over the Hugging Face Hub protocol."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import UsageError
from .app import app
from .render import say

if TYPE_CHECKING:
    from ..server import HubServer


@app.command("serve")
def serve(
    folder: Annotated[
        Path,
        typer.Argument(
            help="Folder holding <org>/<name>/ repo folders (a site mirror), or an m3leo store."
        ),
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
    max_connections: Annotated[
        int,
        typer.Option(
            "--max-connections",
            min=1,
            help="Connections served at once per port; more are answered 503 with Retry-After.",
        ),
    ] = 256,
    hash_cache: Annotated[
        Path | None,
        typer.Option(
            "--hash-cache",
            help="JSON file that keeps file hashes across restarts (big mirrors start fast).",
        ),
    ] = None,
    real_hub: Annotated[
        bool,
        typer.Option(
            "--real-hub",
            help="Behave like huggingface.co: signed content links that expire, a CDN ETag "
            "that is not the sha256, RateLimit headers (rehearse clients against it).",
        ),
    ] = False,
    link_ttl: Annotated[
        float,
        typer.Option("--link-ttl", min=0, help="--real-hub: seconds a content link stays valid."),
    ] = 3600.0,
    gated: Annotated[
        list[str] | None,
        typer.Option("--gated", help="--real-hub: a repo that needs accepted terms (repeatable)."),
    ] = None,
    private: Annotated[
        list[str] | None,
        typer.Option("--private", help="--real-hub: a repo only granted tokens see (repeatable)."),
    ] = None,
    grant_token: Annotated[
        list[str] | None,
        typer.Option(
            "--grant-token",
            help="--real-hub: a valid token with access to the gated and private repos "
            "(repeatable); any other token is refused as invalid.",
        ),
    ] = None,
    rename: Annotated[
        list[str] | None,
        typer.Option("--rename", help="--real-hub: OLD=NEW repo id, answered with a 307."),
    ] = None,
) -> None:
    """Serve every DIR/<org>/<name>/ folder as the Hub dataset repo <org>/<name>.

    An m3leo store is served for what it holds: its miniset regions, and the full edition of
    the regions whose shards it kept (download --keep-shards). Clients (m3leo,
    huggingface_hub, hf download) use it with HF_ENDPOINT=<the printed URL>. Stop with Ctrl-C.

    Example: m3leo serve /shared/m3leo-mirror --host 0.0.0.0 --port 8080
    """
    from ..server import RealHub, run_server

    real = None
    extras = gated or private or grant_token or rename
    if extras and not real_hub:
        raise UsageError(
            "--gated, --private, --grant-token and --rename need the real-Hub mode",
            "add --real-hub",
        )
    if real_hub:
        renames = {}
        for item in rename or ():
            old, sep, new = item.partition("=")
            if not sep or old.count("/") != 1 or new.count("/") != 1:
                raise UsageError(f"bad --rename {item!r}", "use --rename OLD/NAME=NEW/NAME")
            renames[old] = new
        tokens = frozenset(grant_token or ())
        real = RealHub(
            link_ttl=link_ttl,
            gated=frozenset(gated or ()),
            private=frozenset(private or ()),
            tokens=tokens,
            granted=tokens,
            renames=renames,
        )

    def ready(server: HubServer, counts: dict[str, int]) -> None:
        total = sum(counts.values())
        editions, not_served, warnings = server.notes(list(counts))
        kind = " (an m3leo store)" if server.layout.is_store else ""
        say(f"Serving {len(counts)} repo(s), {total} file(s) from {server.root}{kind}")
        for repo_id, n in counts.items():
            say(f"  {repo_id}  ({n} files)")
        for edition, regions in editions.items():
            say(f"Edition {edition}: {', '.join(regions)}")
        for line in not_served:
            say(f"Not served: {line}")
        for line in warnings:
            say(f"warning: {line}")
        say(f"Hub endpoint: {server.url}   (LFS bytes on {server.content_url})")
        if real is not None:
            say(f"Real-Hub mode: content links expire after {real.link_ttl:g} s")
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
        real=real,
        max_connections=max_connections,
        on_ready=ready,
        on_warning=lambda message: say(f"warning: {message}"),
    )
    say("Stopped.")
