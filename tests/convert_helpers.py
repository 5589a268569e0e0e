"""mmpretrain reference models with random weights, saved the way mmcls v0 and mmpretrain 1.x publish them."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
import torch.nn as nn

from resnet_hub import load_config

FORMATS = ("mmcls-v0", "mmpretrain-1.x", "bare")


def randomize_(model: nn.Module, seed: int) -> nn.Module:
    """Random weights and BatchNorm statistics (never zeros or ones) in every tensor of a ResNet.

    Scaled so that deep nets stay finite; fails on a module it would leave uninitialised.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.weight.normal_(0.0, (2.0 / module.weight[0].numel()) ** 0.5, generator=g)
                if module.bias is not None:
                    module.bias.normal_(0.0, 0.1, generator=g)
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.2, 0.7, generator=g)
                module.bias.normal_(0.0, 0.1, generator=g)
                module.running_mean.normal_(0.0, 0.2, generator=g)
                module.running_var.uniform_(0.5, 2.0, generator=g)
                module.num_batches_tracked.fill_(int(torch.randint(1, 10_000, (1,), generator=g)))
            elif not name.endswith("data_preprocessor") and (
                    [*module.parameters(recurse=False)] or [*module.buffers(recurse=False)]):
                raise TypeError(f"randomize_ does not know {name} ({type(module).__name__})")
    return model


def reference_model(name: str, seed: int = 0, num_classes: int | None = None):
    """mmpretrain's model for config ``name`` (with a head of ``num_classes``, as a fine-tune of it has)
    with random weights, in eval mode."""
    from resnet_hub.reference import build_mmpretrain_model

    return randomize_(build_mmpretrain_model(name, num_classes=num_classes), seed).eval()


def checkpoint_dict(model: nn.Module, name: str, fmt: str, classes: list[str] | None = None) -> dict:
    """What a published checkpoint of ``model`` holds, in format ``fmt`` (one of FORMATS); its meta names
    ``classes`` (default: the config's, as a release does; a fine-tune's own head names its own)."""
    from resnet_hub.zoo.labels import label_names

    cfg = load_config(name)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    classes = list(label_names(cfg.labels)) if classes is None else list(classes)
    if fmt == "mmcls-v0":
        meta = {"mmcls_version": "0.15.0", "CLASSES": classes, "epoch": 100, "iter": 500500,
                "config": f"model = dict(backbone=dict(depth={cfg.architecture.depth}))"}
        return {"meta": meta, "state_dict": state}
    if fmt == "mmpretrain-1.x":
        # mmpretrain 1.0's data preprocessor kept its normalisation as buffers in the state dict
        state["data_preprocessor.mean"] = torch.tensor([m * 255 for m in cfg.eval.mean]).view(-1, 1, 1)
        state["data_preprocessor.std"] = torch.tensor([s * 255 for s in cfg.eval.std]).view(-1, 1, 1)
        meta = {"mmengine_version": "0.10.7", "epoch": 100, "iter": 500500, "seed": 1234,
                "experiment_name": name, "time": "20230101_000000", "dataset_meta": {"classes": classes}}
        return {"meta": meta, "state_dict": state}
    if fmt == "bare":
        return state
    raise ValueError(f"unknown format {fmt!r}; one of {FORMATS}")


def released_name(name: str, sha256: str) -> str:
    """The config's released file name, with the hash prefix of *this* file."""
    stem = load_config(name).checkpoint.file_name.rsplit("-", 1)[0]
    return f"{stem}-{sha256[:8]}.pth"


def save_as_released(obj, folder: Path, name: str, **save_kwargs) -> Path:
    """torch.save ``obj`` into ``folder`` under the config's released file name, with its real sha256 prefix."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.tmp"
    torch.save(obj, tmp, **save_kwargs)
    sha = hashlib.sha256(tmp.read_bytes()).hexdigest()
    path = folder / released_name(name, sha)
    os.replace(tmp, path)
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree_digest(folder: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under ``folder`` (empty when it does not exist)."""
    folder = Path(folder)
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): sha256_of(p) for p in sorted(folder.rglob("*")) if p.is_file()}


class FileServer:
    """A tiny HTTP server on 127.0.0.1 serving ``files`` (name -> bytes), logging each GET.

    A name in ``truncated`` is announced with its full Content-Length but only half of it is sent.
    """

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.truncated: set[str] = set()
        self.gets: list[str] = []
        self._server = None
        self._thread = None

    def url(self, name: str) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/files/{name}"

    def __enter__(self) -> "FileServer":
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                server.gets.append(name)
                data = server.files.get(name)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2] if name in server.truncated else data)
                if name in server.truncated:
                    self.close_connection = True

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
