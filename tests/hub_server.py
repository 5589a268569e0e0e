"""A local stand-in for the Hugging Face Hub's file endpoints, and an HF cache filler.

``LocalHub`` serves ``GET``/``HEAD /{repo_id}/resolve/{revision}/{filename}`` on 127.0.0.1 with
the headers the real Hub sends (``X-Repo-Commit``, ``ETag``, ``Content-Length``), so the real
huggingface_hub client, pointed at it through ``HF_ENDPOINT``, downloads and caches as usual.
"""
from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote


def commit_of(files: dict[str, bytes]) -> str:
    h = hashlib.sha1()
    for name in sorted(files):
        h.update(name.encode() + hashlib.sha256(files[name]).digest())
    return h.hexdigest()


class LocalHub:
    def __init__(self):
        self.repos: dict[tuple[str, str], tuple[str, dict[str, bytes]]] = {}
        self.requests: list[tuple[str, str]] = []
        self._server = None

    def add(self, repo_id: str, files: dict[str, bytes], revision: str = "main") -> str:
        commit = commit_of(files)
        self.repos[(repo_id, revision)] = (commit, dict(files))
        self.repos[(repo_id, commit)] = (commit, dict(files))
        return commit

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "LocalHub":
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _serve(self, body: bool):
                hub.requests.append((self.command, self.path))
                path = unquote(self.path.split("?", 1)[0]).lstrip("/")
                parts = path.split("/")
                if len(parts) >= 5 and parts[2] == "resolve":
                    repo_id, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
                    commit, files = hub.repos.get((repo_id, revision), (None, {}))
                    if commit is None:
                        return self._error(404, "RepositoryNotFound", "Repository not found")
                    if filename not in files:
                        return self._error(404, "EntryNotFound", "Entry not found")
                    data = files[filename]
                    self.send_response(200)
                    self.send_header("X-Repo-Commit", commit)
                    self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("Content-Type", "application/octet-stream")
                    self.end_headers()
                    if body:
                        self.wfile.write(data)
                    return
                self._error(404, "EntryNotFound", "not served by LocalHub")

            def _error(self, status: int, code: str, message: str):
                data = message.encode()
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", message)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def do_GET(self):
                self._serve(body=True)

            def do_HEAD(self):
                self._serve(body=False)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()


def fill_hf_cache(cache_dir: Path, repo_id: str, files: dict[str, bytes], revision: str = "main") -> str:
    """Lay out ``files`` in an HF hub cache the way ``hf_hub_download`` leaves it."""
    commit = commit_of(files)
    repo = Path(cache_dir) / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(blob)
    return commit
