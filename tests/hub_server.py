"""A local Hugging Face Hub on 127.0.0.1: downloads and uploads as the real huggingface_hub client makes them.

``LocalHub`` serves the routes huggingface_hub 2.4's ``HfApi`` calls to publish a model repo over
the LFS path (set ``HF_HUB_DISABLE_XET=1``) and ``hf_hub_download`` calls to fetch one: repo
create and info, paths-info, validate-yaml, preupload, the LFS batch / upload / verify
exchange, commit (to a branch or as a pull request), branches, collections, and
``resolve`` downloads with the headers the real Hub sends. Every commit is a real one: a
sha, its parent and a tree of files by content; contents live in a temporary folder, so a
download serves exactly the bytes that were uploaded.

Writes need ``Authorization: Bearer <token>`` when the hub has a token. ``fail(route, ...)``
makes a route answer with an HTTP error (``Retry-After`` for 429) or drop the connection
(halfway through the body for an upload) until ``heal()``; a failed request changes no repo.
"""
from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import os
import re
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

import yaml
from huggingface_hub.utils.sha import git_hash

# The Hub's default .gitattributes for a new model repo (its LFS part that matters here).
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in (
    "*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.onnx", "*.h5", "*.msgpack", "*tfevents*"))
LFS_OVER = 10 * 1024 * 1024  # the Hub puts any file over 10 MB in LFS, whatever .gitattributes says
REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"
# (method, path pattern, route name): a route name is what fail() takes.
ROUTES = [
    ("POST", r"/api/repos/create", "create"),
    ("GET", rf"/api/models/{REPO}(?:/revision/(?P<rev>[^/]+))?", "repo-info"),
    ("POST", rf"/api/models/{REPO}/paths-info/(?P<rev>[^/]+)", "paths-info"),
    ("POST", r"/api/validate-yaml", "validate-yaml"),
    ("POST", rf"/api/models/{REPO}/preupload/(?P<rev>[^/]+)", "preupload"),
    ("POST", rf"/{REPO}\.git/info/lfs/objects/batch", "lfs-batch"),
    ("PUT", rf"/lfs-storage/{REPO}/(?P<oid>[0-9a-f]{{64}})", "lfs-upload"),
    ("POST", rf"/{REPO}\.git/info/lfs/objects/verify", "lfs-verify"),
    ("POST", rf"/api/models/{REPO}/commit/(?P<rev>[^/]+)", "commit"),
    ("POST", rf"/api/models/{REPO}/branch/(?P<branch>[^/]+)", "branch"),
    ("POST", r"/api/collections", "collection"),
    ("POST", r"/api/collections/(?P<slug>[\w.-]+/[\w.-]+)/items", "collection-item"),
    ("GET", r"/api/collections/(?P<slug>[\w.-]+/[\w.-]+)", "collection-info"),
    ("GET", rf"/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
    ("HEAD", rf"/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
]
FAULT_MESSAGES = {  # what the real Hub says with these statuses
    401: "Invalid credentials in Authorization header",
    403: "You don't have the rights to write to this repository",
    429: "You have been rate-limited; you can retry this action later",
    500: "Internal Error - We're working hard to fix this as soon as possible!",
}
READS = {"repo-info", "paths-info", "validate-yaml", "collection-info", "resolve"}


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, body: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.body = status, code, body


@dataclass(frozen=True)
class Entry:
    sha256: str
    size: int
    lfs: bool


@dataclass(frozen=True)
class Commit:
    sha: str
    parent: str | None
    message: str
    tree: dict[str, Entry]


@dataclass
class Repo:
    private: bool
    refs: dict[str, str] = field(default_factory=dict)  # "main", "dev", "refs/pr/1" -> commit sha
    commits: dict[str, Commit] = field(default_factory=dict)
    lfs: set[str] = field(default_factory=set)  # sha256 of the LFS objects uploaded to this repo
    pull_requests: int = 0


class Call(NamedTuple):
    route: str
    repo_id: str | None
    user_agent: str


@dataclass
class Fault:
    status: int | None  # None: drop the connection
    retry_after: int | None = None
    repo_id: str | None = None  # only requests for this repo
    message: str | None = None  # the error body's message; default (and always the header): the real Hub's
    hits: int = 0


def lfs_pointer(entry: Entry) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{entry.sha256}\nsize {entry.size}\n".encode()


class LocalHub:
    def __init__(self, token: str | None = None):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.collections: dict[str, dict] = {}
        self.faults: dict[str, Fault] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, in order
        self.calls: list[Call] = []  # every request to a known route, in order
        self._lock = threading.RLock()
        self._dir = tempfile.TemporaryDirectory(prefix="local-hub-")
        self._server = None

    # ------------------------------------------------------------------ what tests call

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def fail(self, route: str, status: int | None = None, *, retry_after: int | None = None,
             repo_id: str | None = None, message: str | None = None) -> Fault:
        """Make ``route`` answer ``status`` (None: drop the connection) until :meth:`heal`."""
        if route not in {r for _, _, r in ROUTES}:
            raise ValueError(f"no route {route!r}; routes: {sorted({r for _, _, r in ROUTES})}")
        self.faults[route] = Fault(status, retry_after, repo_id, message)
        return self.faults[route]

    def heal(self) -> None:
        self.faults.clear()

    def add(self, repo_id: str, files: dict[str, bytes], revision: str = "main") -> str:
        """Commit ``files`` to ``revision`` (created from main, or empty), as an upload would; the commit sha."""
        with self._lock:
            repo = self.repos.setdefault(repo_id, Repo(private=False))
            tree = {p: self._store(data, lfs=self._is_lfs(repo, revision, p, len(data))) for p, data in files.items()}
            repo.lfs.update(entry.sha256 for entry in tree.values() if entry.lfs)
            return self._commit(repo, revision, f"add {sorted(files)}", tree, base=revision)

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        commit = self._resolve(repo_id, revision)
        return {p: self._read(e) for p, e in commit.tree.items()}

    def log(self, repo_id: str, revision: str = "main") -> list[Commit]:
        """The commits reachable from ``revision``, newest first."""
        repo, commit = self.repos[repo_id], self._resolve(repo_id, revision)
        out = [commit]
        while out[-1].parent:
            out.append(repo.commits[out[-1].parent])
        return out

    def __enter__(self) -> "LocalHub":
        hub = self

        class Handler(_Handler):
            local_hub = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()
        self._dir.cleanup()

    # ------------------------------------------------------------------ storage

    def _blob(self, sha256: str) -> Path:
        return Path(self._dir.name) / sha256

    def _store(self, data: bytes, lfs: bool) -> Entry:
        sha256 = hashlib.sha256(data).hexdigest()
        if not self._blob(sha256).exists():
            tmp = self._blob(sha256).with_suffix(f".{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, self._blob(sha256))
        return Entry(sha256, len(data), lfs)

    def _read(self, entry: Entry) -> bytes:
        return self._blob(entry.sha256).read_bytes()

    def _repo(self, repo_id: str) -> Repo:
        if repo_id not in self.repos:
            raise HubError(404, "Repository not found", "RepoNotFound")
        return self.repos[repo_id]

    def _resolve(self, repo_id: str, revision: str) -> Commit:
        repo = self._repo(repo_id)
        sha = repo.refs.get(revision, revision)
        if sha not in repo.commits:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return repo.commits[sha]

    def _is_lfs(self, repo: Repo, revision: str, path: str, size: int) -> bool:
        head = repo.commits.get(repo.refs.get(revision) or repo.refs.get("main", ""))
        attributes = self._read(head.tree[".gitattributes"]).decode() if head and ".gitattributes" in head.tree else ""
        patterns = [line.split()[0] for line in attributes.splitlines() if "filter=lfs" in line]
        return size > LFS_OVER or any(fnmatch.fnmatch(Path(path).name, p) for p in patterns)

    def _commit(self, repo: Repo, ref: str, message: str, changes: dict[str, Entry | None], base: str,
                parent_commit: str | None = None) -> str:
        parent = repo.refs.get(base) or repo.refs.get("main")
        if parent_commit and parent_commit != parent:
            raise HubError(412, f"parent commit {parent_commit} is not the head of {base} ({parent})")
        tree = dict(repo.commits[parent].tree) if parent else {}
        for path, entry in changes.items():
            if entry is None:
                tree.pop(path, None)
            else:
                tree[path] = entry
        h = hashlib.sha1(f"{parent}\n{message}\n".encode())
        for path in sorted(tree):
            h.update(f"{path} {tree[path].sha256}\n".encode())
        h.update(str(len(repo.commits)).encode())  # two identical commits still get two shas, as in git
        commit = Commit(h.hexdigest(), parent, message, tree)
        repo.commits[commit.sha] = commit
        repo.refs[ref] = commit.sha
        return commit.sha


class _Handler(BaseHTTPRequestHandler):
    local_hub: LocalHub

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_GET

    def _dispatch(self):
        hub = self.local_hub
        hub.requests.append((self.command, self.path))
        url = urlsplit(self.path)
        self.query = parse_qs(url.query)
        found = [(route, m) for method, pattern, route in ROUTES
                 if method == self.command and (m := re.fullmatch(pattern, url.path))]
        if not found:
            return self._send(404, {"error": f"LocalHub does not serve {self.command} {url.path}"})
        route, match = found[0]
        args = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
        hub.calls.append(Call(route, args.get("repo"), self.headers.get("User-Agent", "")))
        try:
            if self._faulty(route, args.get("repo")):
                return
            self._check_token(route, args.get("repo"))
            with hub._lock:
                status, body = getattr(self, "route_" + route.replace("-", "_"))(**args)
        except HubError as e:
            return self._send(e.status, e.body or {"error": str(e)}, code=e.code, message=str(e))
        if route != "resolve":
            self._send(status, body)

    def _faulty(self, route: str, repo_id: str | None) -> bool:
        fault = self.local_hub.faults.get(route)
        if fault is None or fault.repo_id not in (None, repo_id):
            return False
        fault.hits += 1
        if fault.status is None:  # a dropped connection: for an upload, after half of its body
            self.rfile.read(int(self.headers.get("Content-Length") or 0) // 2)
            self.close_connection = True
            return True
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        message = FAULT_MESSAGES.get(fault.status, f"injected {fault.status} on {route}")
        self._send(fault.status, {"error": fault.message or message}, code=None, message=message, headers=headers)
        return True

    def _check_token(self, route: str, repo_id: str | None):
        hub = self.local_hub
        if hub.token is None or self.headers.get("Authorization") == f"Bearer {hub.token}" or route == "lfs-upload":
            return  # the upload URL is a pre-signed storage URL on the real Hub: no token goes there
        if route in READS and not (repo_id in hub.repos and hub.repos[repo_id].private):
            return
        raise HubError(401, "Invalid credentials in Authorization header")

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _json(self) -> dict:
        return json.loads(self._body() or b"{}")

    def _send(self, status: int, body, code: str | None = None, message: str | None = None,
              headers: dict | None = None):
        data = json.dumps(body).encode()
        self.send_response(status)
        for key, value in {"X-Error-Code": code, "X-Error-Message": message, **(headers or {})}.items():
            if value is not None:
                self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    # ------------------------------------------------------------------ routes: repos and files

    def route_create(self):
        hub, payload = self.local_hub, self._json()
        repo_id = f"{payload['organization']}/{payload['name']}"
        if repo_id in hub.repos:
            raise HubError(409, "You already created this model repo", body={"error": "You already created this "
                                                                                      "model repo",
                                                                             "url": f"{hub.url}/{repo_id}"})
        repo = hub.repos[repo_id] = Repo(private=payload.get("visibility") == "private")
        hub._commit(repo, "main", "initial commit", {".gitattributes": hub._store(GITATTRIBUTES.encode(), False)},
                    base="main")
        return 200, {"url": f"{hub.url}/{repo_id}", "name": repo_id}

    def route_repo_info(self, repo, rev="main"):
        commit, hub = self.local_hub._resolve(repo, rev), self.local_hub
        return 200, {"id": repo, "sha": commit.sha, "private": hub.repos[repo].private,
                     "siblings": [{"rfilename": p} for p in sorted(commit.tree)]}

    def route_paths_info(self, repo, rev):
        commit, hub = self.local_hub._resolve(repo, rev), self.local_hub
        out = []
        for path in parse_qs(self._body().decode()).get("paths", []):
            entry = commit.tree.get(path)
            if entry is None:
                continue  # the Hub leaves out paths it does not hold
            info = {"type": "file", "path": path, "size": entry.size,
                    "oid": git_hash(lfs_pointer(entry) if entry.lfs else hub._read(entry))}
            if entry.lfs:
                info["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": len(lfs_pointer(entry))}
            out.append(info)
        return 200, out

    def route_validate_yaml(self):
        content = self._json()["content"]
        match = re.match(r"^---\n(.*?\n)---\n", content, re.S)
        try:
            metadata = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as e:
            raise HubError(400, "Invalid YAML", body={"errors": [{"message": " ".join(str(e).split())}]}) from None
        if not isinstance(metadata, dict):
            raise HubError(400, "Invalid metadata", body={"errors": [{"message": "metadata must be a mapping"}]})
        return 200, {"errors": [], "warnings": []}

    def route_preupload(self, repo, rev):
        hub = self.local_hub
        commit = hub._resolve(repo, rev) if "create_pr" not in self.query else hub._resolve(repo, "main")
        files = []
        for f in self._json()["files"]:
            lfs = hub._is_lfs(hub.repos[repo], rev, f["path"], f["size"])
            entry = commit.tree.get(f["path"])
            oid = None if entry is None else entry.sha256 if entry.lfs else git_hash(hub._read(entry))
            files.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                          "oid": oid})
        return 200, {"files": files, "commitOid": commit.sha}

    def route_commit(self, repo, rev):
        hub = self.local_hub
        repo_state, _ = hub._repo(repo), hub._resolve(repo, rev)
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        header = next(item["value"] for item in lines if item["key"] == "header")
        regular = {i["value"]["path"]: base64.b64decode(i["value"]["content"]) for i in lines if i["key"] == "file"}
        changes: dict[str, Entry | None] = {}
        for item in lines:
            key, value = item["key"], item["value"]
            if key == "lfsFile":
                if value["oid"] not in repo_state.lfs:
                    raise HubError(422, f"LFS object {value['oid']} for {value['path']} was never uploaded")
                changes[value["path"]] = Entry(value["oid"], hub._blob(value["oid"]).stat().st_size, True)
            elif key in ("deletedFile", "deletedFolder"):
                changes[value["path"]] = None
        changes.update({path: hub._store(data, lfs=False) for path, data in regular.items()})
        message = header["summary"] + (f"\n\n{header['description']}" if header.get("description") else "")
        ref, pr = rev, None
        if "create_pr" in self.query:
            number = repo_state.pull_requests = repo_state.pull_requests + 1
            ref, pr = f"refs/pr/{number}", f"{hub.url}/{repo}/discussions/{number}"
        sha = hub._commit(repo_state, ref, message, changes, base=rev, parent_commit=header.get("parentCommit"))
        return 200, {"success": True, "commitOid": sha, "commitUrl": f"{hub.url}/{repo}/commit/{sha}",
                     "pullRequestUrl": pr}

    def route_branch(self, repo, branch):
        hub, payload = self.local_hub, self._json()
        repo_state = hub._repo(repo)
        if branch in repo_state.refs:
            raise HubError(409, "Reference already exists")
        repo_state.refs[branch] = hub._resolve(repo, payload.get("startingPoint") or "main").sha
        return 200, {}

    def route_resolve(self, repo, rev, path):
        hub = self.local_hub
        commit = hub._resolve(repo, rev)
        if path not in commit.tree:
            raise HubError(404, "Entry not found", "EntryNotFound")
        data = hub._read(commit.tree[path])
        self.send_response(200)
        self.send_header("X-Repo-Commit", commit.sha)
        self.send_header("ETag", f'"{commit.tree[path].sha256}"')
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(data)
        return 200, None

    # ------------------------------------------------------------------ routes: LFS

    def route_lfs_batch(self, repo):
        hub, payload = self.local_hub, self._json()
        hub._repo(repo)
        objects = []
        for obj in payload["objects"]:
            out = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in hub._repo(repo).lfs:  # what the repo already holds is not sent again
                out["actions"] = {"upload": {"href": f"{hub.url}/lfs-storage/{repo}/{obj['oid']}"},
                                  "verify": {"href": f"{hub.url}/{repo}.git/info/lfs/objects/verify"}}
            objects.append(out)
        return 200, {"transfer": "basic", "objects": objects}

    def route_lfs_upload(self, repo, oid):
        data = self._body()
        if hashlib.sha256(data).hexdigest() != oid:
            raise HubError(400, f"content does not match sha256 {oid}")
        self.local_hub._store(data, lfs=True)
        self.local_hub._repo(repo).lfs.add(oid)
        return 200, {}

    def route_lfs_verify(self, repo):
        payload, hub = self._json(), self.local_hub
        if payload["oid"] not in hub._repo(repo).lfs or hub._blob(payload["oid"]).stat().st_size != payload["size"]:
            raise HubError(404, f"LFS object {payload['oid']} not found")
        return 200, {}

    # ------------------------------------------------------------------ routes: collections

    def route_collection(self):
        hub, payload = self.local_hub, self._json()
        for slug, c in hub.collections.items():
            if (c["owner"]["name"], c["title"]) == (payload["namespace"], payload["title"]):
                raise HubError(409, "Collection already exists", body={"slug": slug})
        title_slug = re.sub(r"[^a-z0-9]+", "-", payload["title"].lower()).strip("-")
        slug = f"{payload['namespace']}/{title_slug}-{hashlib.sha1(payload['title'].encode()).hexdigest()[:24]}"
        hub.collections[slug] = {
            "slug": slug, "title": payload["title"], "owner": {"name": payload["namespace"]}, "items": [],
            "lastUpdated": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z"), "position": 0,
            "private": bool(payload.get("private")), "theme": "none", "upvotes": 0,
            "description": payload.get("description")}
        return 200, hub.collections[slug]

    def route_collection_info(self, slug):
        if slug not in self.local_hub.collections:
            raise HubError(404, "Collection not found")
        return 200, self.local_hub.collections[slug]

    def route_collection_item(self, slug):
        status, collection = self.route_collection_info(slug)
        item = self._json()["item"]
        if any(i["id"] == item["id"] for i in collection["items"]):
            raise HubError(409, "Item already in collection")
        collection["items"].append({"_id": hashlib.sha1(item["id"].encode()).hexdigest()[:24], "id": item["id"],
                                    "type": item["type"], "position": len(collection["items"])})
        return status, collection


def fill_hf_cache(cache_dir: Path, repo_id: str, files: dict[str, bytes], revision: str = "main") -> str:
    """Lay out ``files`` in an HF hub cache the way ``hf_hub_download`` leaves it."""
    h = hashlib.sha1()
    for name in sorted(files):
        h.update(name.encode() + hashlib.sha256(files[name]).digest())
    commit = h.hexdigest()
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
