"""A run that lost one of its processes: a machine died, was preempted or left the network.

torch.distributed reports the loss in the first collective that needs the missing peer: at once
where the peer's sockets close (gloo: "Connection closed by peer", "Connection reset by peer"),
else when ``--dist-timeout`` runs out (gloo: "Timed out waiting ... for recv"; NCCL's watchdog
aborts the communicator). :func:`lost_process_message` turns such an error into the one line the
command prints, naming the last complete checkpoint and how to continue; :func:`is_lost_process`
tells it from any other error, which keeps its traceback.
"""
from __future__ import annotations

import re
from pathlib import Path

__all__ = ["is_lost_process", "lost_process_message"]

# what gloo, NCCL and the c10d store say when the other end of a collective is gone or silent
_LOST_PEER = re.compile(r"connection (closed|reset) by peer|broken pipe|timed out waiting|gloo/transport|"
                        r"communicator was aborted|nccl(Remote|System)Error", re.IGNORECASE)


def _chain(error: BaseException):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def is_lost_process(error: BaseException) -> bool:
    """Did ``error`` come from a collective whose peer is gone? Only while a process group of 2+ exists."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() < 2:
        return False
    for e in _chain(error):
        if isinstance(e, getattr(dist, "DistError", ())):  # DistBackendError, DistNetworkError, DistStoreError
            return True
        if isinstance(e, RuntimeError) and _LOST_PEER.search(str(e)):
            return True
    return False


def _cause(error: BaseException, limit: int = 160) -> str:
    """The error's first sentence, without the C++ source location gloo puts first."""
    text = " ".join(str(error).split()) or type(error).__name__
    text = re.sub(r"^\[[^\]]*\.(cc|cpp|h|hpp):\d+\]\s*", "", text).split(". ")[0].rstrip(".")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def lost_process_message(error: BaseException, *, checkpoints: Path, timeout_s: float) -> str:
    """The one line for ``error``, a lost process (:func:`is_lost_process`).

    ``checkpoints`` is the run's checkpoint folder: its newest ``step-*`` folder is complete (a save
    in progress lives in ``.tmp-*`` until it is), and a resume continues from it.
    """
    import torch.distributed as dist

    rank, world = dist.get_rank(), dist.get_world_size()
    done = sorted(p for p in checkpoints.glob("step-*") if p.is_dir()) if checkpoints.is_dir() else []
    then = (f"the last complete checkpoint is {done[-1]}; start the same command on every machine with --resume"
            if done else "no checkpoint was complete yet; start the same command on every machine again")
    return (f"process {rank} of {world} lost contact with another process of the run (a machine died, was "
            f"preempted or left the network; --dist-timeout {timeout_s:g} s bounds the wait for a silent one): "
            f"{_cause(error)}. Stopped; {then}")
