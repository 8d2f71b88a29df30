"""An nginx that serves a synthetic M3LEO source the way the Hub does, so download clients
can be measured against a server that is not the bottleneck.

`m3leo serve` (a Python server sharing the machine's cores) answers once for every API call
the clients make and every file's resolve; those answers become static files and nginx maps:

- ``/api/...`` (revision, paginated tree): the recorded JSON and ``Link`` header, by request URI;
- ``/datasets/<repo>/resolve/<rev>/<path>``: LFS files get the recorded 302 to the content
  address with ``X-Repo-Commit``, ``X-Linked-Etag``, ``X-Linked-Size`` and ``ETag``; small git
  files are served at once with their git-blob ETag (as the Hub does);
- the content address (a second port) serves the files from disk with nginx's own ETag (not
  the sha256, as on the real content host), ``Range`` and ``sendfile``;
- ``/datasets/<repo>.git/info/lfs/objects/batch`` (the Git LFS batch API, a POST whose answer
  depends on the objects asked for): proxied to a small answerer in the benchmark's own process
  (:class:`BatchAnswerer`), which knows every LFS object's content address. A run makes one
  such request per hundred files; the bytes are nginx's.

``delay_ms`` adds that much latency to every request (the echo module's ``echo_sleep``).
Install: ``apt-get install nginx libnginx-mod-http-echo`` (Debian's packages).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

ECHO_MODULE = "/usr/lib/nginx/modules/ngx_http_echo_module.so"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def record(source_root: Path, repos: list[str], api_uris: list[str]) -> dict:
    """Ask ``m3leo serve`` every API URI and every file's resolve; return what it said."""
    import httpx

    from m3leo_cli.server import HubServer

    out: dict = {"api": {}, "resolve": {}}
    with HubServer(source_root) as hub, httpx.Client() as client:
        todo = list(api_uris)
        while todo:  # a listing's next pages too (Link: <...>; rel="next")
            uri = todo.pop(0)
            r = client.get(hub.url + uri)
            out["api"][uri] = {"body": r.text, "link": r.headers.get("link", "")}
            nxt = r.links.get("next", {}).get("url")
            if nxt:
                parts = urlsplit(nxt)
                todo.append(parts.path + (f"?{parts.query}" if parts.query else ""))
        for repo in repos:
            rev = client.get(f"{hub.url}/api/datasets/{repo}/revision/main").json()
            for sib in rev["siblings"]:
                path = sib["rfilename"]
                r = client.head(f"{hub.url}/datasets/{repo}/resolve/main/{path}")
                h = r.headers
                out["resolve"][f"{repo}/{path}"] = {
                    "status": r.status_code,
                    "location": urlsplit(h.get("location", "")).path,
                    "commit": h.get("x-repo-commit", ""),
                    "etag": h.get("etag", ""),
                    "linked_etag": h.get("x-linked-etag", ""),
                    "linked_size": h.get("x-linked-size", ""),
                }
        out["hub_netloc"] = urlsplit(hub.url).netloc
    return out


def write_site(
    work: Path, source_root: Path, answers: dict, delay_ms: float
) -> tuple[Path, int, int]:
    """Static API files + nginx.conf under ``work``; returns (conf, hub port, content port)."""
    hub_port, content_port, batch_port = _free_port(), _free_port(), _free_port()
    api_dir = work / "api"
    api_dir.mkdir(parents=True, exist_ok=True)
    hub = f"127.0.0.1:{hub_port}"
    # nginx variable -> (the variable it is looked up by, its entries); all declared, even empty
    maps: dict[str, tuple[str, list[tuple[str, str]]]] = {
        v: ("$request_uri", []) for v in ("$api_file", "$api_link")
    } | {
        v: ("$repo_path", [])
        for v in (
            "$res_location",
            "$res_commit",
            "$res_etag",
            "$res_linked_etag",
            "$res_linked_size",
            "$res_small",
        )
    }

    def add(var: str, key: str, value: str) -> None:
        maps[var][1].append((key, value))

    for i, (uri, ans) in enumerate(sorted(answers["api"].items())):
        name = f"/{i:05d}.json"
        (api_dir / name.lstrip("/")).write_text(ans["body"].replace(answers["hub_netloc"], hub))
        add("$api_file", uri, name)
        if ans["link"]:
            add("$api_link", uri, ans["link"].replace(answers["hub_netloc"], hub))
    hrefs: dict[str, str] = {}
    for key, ans in sorted(answers["resolve"].items()):
        if ans["status"] == 302:  # the content address of each LFS object, for batch answers
            sha = ans["linked_etag"].strip('"')
            hrefs.setdefault(sha, f"http://127.0.0.1:{content_port}" + ans["location"])
        add("$res_commit", key, ans["commit"])
        add("$res_etag", key, ans["etag"])
        if ans["status"] == 302:
            add("$res_location", key,
                f"http://127.0.0.1:{content_port}" + ans["location"])  # fmt: skip
            add("$res_linked_etag", key, ans["linked_etag"])
            add("$res_linked_size", key, ans["linked_size"])
        else:
            add("$res_small", key, "1")
    map_blocks = "\n".join(
        f"  map {src} {var} {{\n" + "".join(f"    {_q(k)} {_q(v)};\n" for k, v in entries) + "  }"
        for var, (src, entries) in maps.items()
    )
    sleep = f"echo_sleep {delay_ms / 1000:.3f};" if delay_ms else ""
    module = f"load_module {ECHO_MODULE};" if delay_ms else ""

    def delayed(name: str) -> str:  # the echo module runs the sleep, then the named location
        return f"{sleep} echo_exec @{name};" if delay_ms else f"try_files /nonexistent @{name};"

    files = "/files/$org/$name/$cpath"
    content = f"{sleep} echo_exec {files};" if delay_ms else f"rewrite ^ {files} last;"
    conf = f"""{module}
worker_processes 2;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  log_format t '$msec $request_uri';  # epoch time: bench_wire splits m3leo's phases
  access_log {work}/access.log t;
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_requests 100000; keepalive_timeout 120;
  default_type application/octet-stream;
  map_hash_bucket_size 256; map_hash_max_size 65536;
{map_blocks}
  server {{
    listen 127.0.0.1:{hub_port} backlog=4096;
    location /api/ {{ {delayed("api")} }}
    location @api {{
      root {api_dir}; default_type "application/json; charset=utf-8";
      add_header Link $api_link; try_files $api_file =404;
    }}
    location ~ ^/datasets/(?<repo>[^/]+/[^/]+)/resolve/[^/]+/(?<rpath>.+)$ {{
      set $repo_path "$repo/$rpath";
      {delayed("resolve")}
    }}
    location @resolve {{
      set $repo_path "$repo/$rpath";
      if ($res_small) {{ rewrite ^ /small/$repo_path last; }}
      if ($res_location = "") {{ return 404; }}
      add_header X-Repo-Commit $res_commit always;
      add_header X-Linked-Etag $res_linked_etag always;
      add_header X-Linked-Size $res_linked_size always;
      add_header ETag $res_etag always;
      return 302 $res_location;
    }}
    location ~ ^/datasets/[^/]+/[^/]+\\.git/info/lfs/objects/batch$ {{ {delayed("batch")} }}
    location @batch {{
      proxy_pass http://127.0.0.1:{batch_port}; proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
    location /small/ {{
      internal; alias {source_root}/; etag off;
      add_header X-Repo-Commit $res_commit; add_header ETag $res_etag;
    }}
  }}
  server {{
    listen 127.0.0.1:{content_port} backlog=4096;
    location ~ "^/lfs/(?<org>[^/]+)/(?<name>[^/]+)/[0-9a-f]{{64}}/(?<cpath>.+)$" {{
      {content}
    }}
    location /files/ {{ internal; alias {source_root}/; }}
  }}
}}
"""
    path = work / "nginx.conf"
    path.write_text(conf)
    (work / "batch.json").write_text(json.dumps({"port": batch_port, "hrefs": hrefs}))
    return path, hub_port, content_port


class BatchAnswerer:
    """Answers Git LFS batch requests (download) from the recorded content addresses."""

    def __init__(self, spec: Path) -> None:
        doc = json.loads(spec.read_text())
        hrefs = doc["hrefs"]

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                n = int(self.headers.get("content-length", "0"))
                objects = json.loads(self.rfile.read(n))["objects"]
                out = []
                for o in objects:
                    href = hrefs.get(o["oid"])
                    if href is None:
                        out.append({**o, "error": {"code": 404, "message": "no such object"}})
                    else:
                        download = {"href": href, "expires_in": 3600}
                        out.append({**o, "authenticated": True, "actions": {"download": download}})
                body = json.dumps({"transfer": "basic", "objects": out}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/vnd.git-lfs+json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", doc["port"]), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Nginx:
    """A private nginx (its own config, pid and logs under ``work``)."""

    def __init__(self, conf: Path) -> None:
        self.conf = conf
        self.pidfile = conf.parent / "nginx.pid"

    def __enter__(self) -> Nginx:
        spec = self.conf.parent / "batch.json"
        self.batch = BatchAnswerer(spec) if spec.exists() else None
        try:
            subprocess.run(["nginx", "-t", "-q", "-c", str(self.conf), "-e", "stderr"], check=True)
            subprocess.run(["nginx", "-c", str(self.conf), "-e", "stderr"], check=True)
        except BaseException:
            if self.batch is not None:
                self.batch.close()
            raise
        for _ in range(100):
            if self.pidfile.exists():
                break
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            os.kill(int(self.pidfile.read_text()), signal.SIGQUIT)
        except (OSError, ValueError):
            pass
        if self.batch is not None:
            self.batch.close()


def api_uris(repos: list[str], commits: dict[str, str]) -> list[str]:
    """The API calls m3leo and huggingface_hub make for a whole-repo download."""
    uris = []
    for repo in repos:
        uris.append(f"/api/datasets/{repo}/revision/main")
        uris.append(f"/api/datasets/{repo}/tree/{commits[repo]}?recursive=true&expand=false")
    return uris


def commits_of(source_root: Path, repos: list[str]) -> dict[str, str]:
    import httpx

    from m3leo_cli.server import HubServer

    with HubServer(source_root) as hub:
        return {
            r: httpx.get(f"{hub.url}/api/datasets/{r}/revision/main").json()["sha"] for r in repos
        }


if __name__ == "__main__":  # build and serve a site by hand: python nginx_hub.py SRC WORK [MS]
    import sys

    src, work = Path(sys.argv[1]), Path(sys.argv[2])
    delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    repos = [f"{o.name}/{n.name}" for o in src.iterdir() if o.is_dir() for n in o.iterdir()]
    answers = record(src, repos, api_uris(repos, commits_of(src, repos)))
    conf, hp, cp = write_site(work, src, answers, delay)
    print(json.dumps({"conf": str(conf), "endpoint": f"http://127.0.0.1:{hp}"}))
