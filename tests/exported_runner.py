"""Runs exported models the way a deployer does, in a process that never imports resnet_hub.

Reads JSON lines ``{"model": PATH, "input": NPY, "output": NPY}`` on stdin; for each, runs the
``.onnx`` in ONNX Runtime (CPU provider) or the ``.pt2`` through ``torch.export.load``, saves the
logits to ``output`` and answers one JSON line with the resnet_hub modules loaded so far (none).
"""
import json
import sys

import numpy as np


def run(model: str, images: np.ndarray) -> np.ndarray:
    if model.endswith(".onnx"):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # the suite shares 2 cores between 2 workers
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        return session.run(["logits"], {"pixel_values": images})[0]
    import torch

    torch.set_num_threads(1)
    with torch.no_grad():
        return torch.export.load(model).module()(torch.from_numpy(images)).numpy()


for line in sys.stdin:
    request = json.loads(line)
    np.save(request["output"], run(request["model"], np.load(request["input"])))
    loaded = sorted(m for m in sys.modules if m.split(".")[0] == "resnet_hub")
    print(json.dumps({"resnet_hub_modules": loaded}), flush=True)
