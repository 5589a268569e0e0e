"""Test doubles and builders for publishing: a recording in-process Hub, and bundles to push.

``RecordingHub`` stands in for the Hugging Face Hub behind ``HfApi`` (the real Hub is not
reachable from the tests). ``hub.client`` replaces the ``HfApi`` class; each call is checked
against the real ``HfApi`` method's signature, so a call the real client would reject fails here
too. Files are kept per repo and revision with the metadata the Hub reports for them: git blob
ids, and LFS sha256 for ``*.safetensors`` (the Hub's default ``.gitattributes`` puts them in LFS).
"""
from __future__ import annotations

import hashlib
import inspect
from pathlib import Path
from types import SimpleNamespace

import timm
import torch
from huggingface_hub import HfApi
from huggingface_hub.errors import RepositoryNotFoundError
from huggingface_hub.hf_api import CommitInfo, RepoFile
from huggingface_hub.utils.sha import git_hash

from resnet_hub import load_config
from resnet_hub.hub.bundle import write_bundle

PROVENANCE = {
    "source_url": "https://download.openmmlab.com/mmclassification/v0/resnet/example-0123abcd.pth",
    "source_sha256": "0123abcd" + "5" * 56,
    "parity": {"max_abs_logit_diff": 2.5e-06, "relative": 3.1e-07, "inputs": "2x3xHxW N(0,1), seed 0"},
}


def make_bundle(name: str, out_dir: Path, seed: int = 0, provenance: dict | None = None) -> Path:
    """A bundle of config ``name`` with random weights and random BatchNorm statistics."""
    torch.manual_seed(seed)
    model = timm.create_model(name)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return write_bundle(model, load_config(name), out_dir, provenance=PROVENANCE if provenance is None else provenance)


def file_hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).iterdir())}


class RecordingHub:
    def __init__(self):
        self.clients: list[dict] = []  # HfApi(...) keyword arguments, one per client made
        self.calls: list[tuple[str, dict]] = []
        self.repos: dict[str, dict] = {}  # repo_id -> {"private": bool, "revisions": {rev: {path: bytes}}}
        self.commits: list[dict] = []
        self.collections: dict[str, list[str]] = {}
        self.fail: dict[str, BaseException] = {}  # method name -> error it raises

    def client(self, **kwargs) -> "RecordingHfApi":
        self.clients.append(kwargs)
        return RecordingHfApi(self, **kwargs)

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        return dict(self.repos[repo_id]["revisions"][revision])


class RecordingHfApi:
    def __init__(self, hub: RecordingHub, **kwargs):
        inspect.signature(HfApi).bind(**kwargs)
        self.hub = hub

    def _record(self, method: str, *args, **kwargs) -> None:
        bound = inspect.signature(getattr(HfApi, method)).bind(self, *args, **kwargs)
        self.hub.calls.append((method, {k: v for k, v in bound.arguments.items() if k != "self"}))
        if method in self.hub.fail:
            raise self.hub.fail[method]

    def _repo(self, repo_id: str) -> dict:
        if repo_id not in self.hub.repos:
            raise RepositoryNotFoundError(f"404 Client Error: Repository Not Found for url: /api/models/{repo_id}")
        return self.hub.repos[repo_id]

    def create_repo(self, repo_id, **kwargs):
        self._record("create_repo", repo_id, **kwargs)
        if repo_id not in self.hub.repos:
            gitattributes = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
            self.hub.repos[repo_id] = {"private": bool(kwargs.get("private")),
                                       "revisions": {"main": {".gitattributes": gitattributes}}}
        elif not kwargs.get("exist_ok"):
            raise FileExistsError(repo_id)
        return f"https://huggingface.co/{repo_id}"

    def create_branch(self, repo_id, **kwargs):
        self._record("create_branch", repo_id, **kwargs)
        revisions = self._repo(repo_id)["revisions"]
        revisions.setdefault(kwargs["branch"], dict(revisions["main"]))

    def get_paths_info(self, repo_id, paths, **kwargs):
        self._record("get_paths_info", repo_id, paths, **kwargs)
        files = self._repo(repo_id)["revisions"][kwargs.get("revision") or "main"]
        out = []
        for path in paths:
            if path in files:
                data = files[path]
                lfs = ({"size": len(data), "oid": hashlib.sha256(data).hexdigest(), "pointerSize": 134}
                       if path.endswith(".safetensors") else None)
                out.append(RepoFile(path=path, size=len(data), oid=git_hash(data), lfs=lfs))
        return out

    def create_commit(self, repo_id, operations, **kwargs):
        operations = list(operations)
        self._record("create_commit", repo_id, operations, **kwargs)
        repo = self._repo(repo_id)
        base = kwargs.get("revision") or "main"
        files = {op.path_in_repo: Path(op.path_or_fileobj).read_bytes() for op in operations}
        oid = hashlib.sha1(repr(sorted((k, hashlib.sha256(v).hexdigest()) for k, v in files.items())).encode()
                           + str(len(self.hub.commits)).encode()).hexdigest()
        pr_url = None
        if kwargs.get("create_pr"):
            num = sum(r.startswith("refs/pr/") for r in repo["revisions"]) + 1
            target = f"refs/pr/{num}"
            repo["revisions"][target] = dict(repo["revisions"][base])
            pr_url = f"https://huggingface.co/{repo_id}/discussions/{num}"
        else:
            target = base
        repo["revisions"][target].update(files)
        self.hub.commits.append({"repo_id": repo_id, "revision": target, "files": sorted(files),
                                 "message": kwargs["commit_message"]})
        return CommitInfo(commit_url=f"https://huggingface.co/{repo_id}/commit/{oid}",
                          commit_message=kwargs["commit_message"], commit_description="", oid=oid, pr_url=pr_url)

    def create_collection(self, title, **kwargs):
        self._record("create_collection", title, **kwargs)
        slug = f"{kwargs.get('namespace')}/{title.lower().replace(' ', '-')}-0123456789abcdef"
        self.hub.collections.setdefault(slug, [])
        return SimpleNamespace(slug=slug, url=f"https://huggingface.co/collections/{slug}")

    def add_collection_item(self, collection_slug, item_id, item_type, **kwargs):
        self._record("add_collection_item", collection_slug, item_id, item_type, **kwargs)
        items = self.hub.collections[collection_slug]
        if item_id not in items:
            items.append(item_id)
