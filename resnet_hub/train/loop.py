"""The training loop: one epoch of optimizer steps, the epoch's evaluation, and stopping on a signal.

:func:`train_one_epoch` runs the steps of an epoch (or its rest, after a resume) and checkpoints
every ``--checkpoint-steps``; :func:`finish_epoch` evaluates and records it. SIGTERM/SIGINT
(:class:`StopSignal`) stop at the next optimizer step on every process (:func:`agreed_stop`).

A diverged run stops (:func:`check_finite`, :class:`Diverged`): a non-finite loss or lr, checked
every 10 steps, and non-finite weights, checked before every checkpoint and before an epoch is
evaluated, end the run with one line, so no checkpoint and no ``final/`` bundle holds them.
"""
from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass

import torch

from resnet_hub.commands import CommandError

from . import data as D
from .evaluate import evaluate_loop
from .run_dir import RunState

__all__ = ["train_one_epoch", "finish_epoch", "EpochTotals", "StopSignal", "agreed_stop", "check_finite", "Diverged"]


class StopSignal:
    """SIGTERM/SIGINT set a flag; the loop stops at the next optimizer step boundary."""

    def __init__(self):
        self.signum = 0
        self.previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def agreed_stop(acc, signum: int, *, every: int, step: int, last: bool) -> int:
    """The signal any process received, agreed by all (a collective every ``every`` steps)."""
    if acc.num_processes == 1:
        return signum
    if step % every and not last:
        return 0
    flag = acc.reduce(torch.tensor([signum], device=acc.device), reduction="max")
    return int(flag.item())


@dataclass
class EpochTotals:
    """What an epoch's steps add up to on this process, for its record."""
    loss_sum: torch.Tensor
    loss_n: int
    images: int  # over all processes
    seconds: float
    stop: int = 0  # the signal that stopped the epoch early, 0 if it ran to its end


class Diverged(CommandError):
    """Training produced a non-finite loss, lr or weight; the message says where and what is kept."""


def _nonfinite_weights(model) -> bool:
    values = [v.detach() for v in model.state_dict().values() if v.is_floating_point() and v.numel()]
    # amax propagates NaN and keeps inf: one small tensor, one device sync
    return bool(values) and not bool(torch.isfinite(torch.stack([v.abs().amax().float() for v in values])).all())


def check_finite(step, loss_sum: torch.Tensor, loss: torch.Tensor, state: RunState, checkpoints, *,
                 weights: bool) -> None:
    """Raise :class:`Diverged` if a loss of this epoch so far (their running sum), the lr, or (``weights``) a
    weight is not finite on any process; every process calls it at the same step."""
    acc = step.accelerator
    bad = torch.stack([~torch.isfinite(loss_sum.float()), torch.tensor(not math.isfinite(step.lr), device=acc.device)])
    if weights:
        bad = torch.cat([bad, torch.tensor([_nonfinite_weights(step.model)], device=acc.device)])
    bad = bad.float()
    if acc.num_processes > 1:
        bad = acc.reduce(bad, reduction="max")
    if not bool(bad.any()):
        return
    what = "the weights" if bool(bad[-1]) and weights and not bool(bad[:2].any()) else "the loss or lr"
    latest = checkpoints.latest()
    raise Diverged(f"training diverged at step {state.global_step} (epoch {state.epoch + 1}): {what} became "
                   f"non-finite (loss {float(loss):.4g}, lr {step.lr:.4g}); stopped without saving them. Last finite "
                   f"checkpoint: {latest if latest else 'none'}; a lower --lr (with --overwrite) may train")


def check_batch(batch: dict, state: RunState, *, bad_images: str, num_classes: int, where: str) -> None:
    """Count the images a batch dropped, or stop with one clear error."""
    if batch["bad"]:
        if bad_images == "error":
            raise D.BadImages(f"unreadable training image ({batch['bad'][0]}); pass --bad-images skip "
                              "to drop and count such images")
        state.skipped_images += len(batch["bad"])
    if len(batch["labels"]) == 0:
        raise D.BadImages(f"every image of a training batch is unreadable ({batch['bad'][0]})")
    D.check_labels(batch["labels"], num_classes, where)


def train_one_epoch(step, batches, state: RunState, checkpoints, signals: StopSignal, *, plan, bad_images: str,
                    where: str, checkpoint_steps: int, log: bool) -> EpochTotals:
    """The optimizer steps of epoch ``state.epoch`` from ``state.step_in_epoch`` on; ``state`` follows along."""
    from tqdm.auto import tqdm

    acc, steps_per_epoch = step.accelerator, batches.steps_per_epoch
    step.model.train()
    start, seen, micro, stop = time.perf_counter(), 0, 0, 0
    # a resumed epoch continues the sums it had when it was checkpointed
    loss_sum = torch.tensor(state.epoch_loss_sum, device=acc.device)
    loss_n = state.epoch_loss_n
    bar = tqdm(total=steps_per_epoch, initial=state.step_in_epoch, desc=f"epoch {state.epoch + 1}/{plan.epochs}",
               disable=not acc.is_local_main_process, dynamic_ncols=True)
    try:
        for batch in batches.batches(state.epoch, state.step_in_epoch):
            check_batch(batch, state, bad_images=bad_images, num_classes=plan.num_classes, where=where)
            loss = step(batch["images"], batch["labels"])
            loss_sum += loss * len(batch["labels"])
            loss_n += len(batch["labels"])
            micro += 1
            if micro % plan.grad_accum:  # mid accumulation cycle: no optimizer step yet
                continue
            state.step_in_epoch += 1
            state.global_step += 1
            seen += plan.total_batch
            elapsed = time.perf_counter() - start
            bar.update(1)
            save = bool(checkpoint_steps) and state.global_step % checkpoint_steps == 0
            # the weights before anything saves or evaluates them: a checkpoint, the epoch's end
            weights = save or state.step_in_epoch == steps_per_epoch
            if state.global_step % 10 == 0 or weights:
                check_finite(step, loss_sum, loss, state, checkpoints, weights=weights)
            if state.global_step % 10 == 0 or state.step_in_epoch == steps_per_epoch:
                # .item() waits for the device: only every 10 steps
                bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{step.lr:.3g}", img_s=f"{seen / elapsed:.0f}")
                if log:
                    acc.log({"train/loss": loss.item(), "train/lr": step.lr}, step=state.global_step)
            stop = agreed_stop(acc, signals.signum, every=1 if acc.num_processes == 1 else 10,
                               step=state.global_step, last=state.step_in_epoch == steps_per_epoch)
            if stop and not weights:
                check_finite(step, loss_sum, loss, state, checkpoints, weights=True)
            if stop or save:
                state.epoch_loss_sum, state.epoch_loss_n = float(loss_sum), loss_n
                state.epoch_seen, state.epoch_time = state.epoch_seen + seen, state.epoch_time + elapsed
                seen, start = 0, time.perf_counter()
                checkpoints.save(state.to_checkpoint(lr=step.lr, epochs=plan.epochs, steps_per_epoch=steps_per_epoch))
            if stop:
                break
    finally:
        bar.close()  # before any error line
    return EpochTotals(loss_sum, loss_n, seen + state.epoch_seen, time.perf_counter() - start + state.epoch_time,
                       stop)


def finish_epoch(step, eval_loader, state: RunState, totals: EpochTotals, *, bad_images: str, epochs: int,
                 log: bool) -> tuple[dict, bool]:
    """Evaluate the epoch just trained, record it in ``state`` and print it; returns the record and
    whether its top-1 is the best so far."""
    acc, epoch = step.accelerator, state.epoch
    sums = torch.stack([totals.loss_sum.float(), torch.tensor(float(totals.loss_n), device=acc.device)])
    sums = acc.reduce(sums, reduction="sum") if acc.num_processes > 1 else sums
    metrics = evaluate_loop(step.eval_model, eval_loader, acc, step.normalize, desc=f"eval {epoch + 1}")
    record = {"epoch": epoch + 1, "loss": float(sums[0] / max(sums[1], 1)),
              "lr": step.last_lr if step.last_lr is not None else step.lr,
              "top1": metrics["top1"], "top5": metrics["top5"],
              "images_per_s": totals.images / totals.seconds if totals.seconds > 0 else None,
              "train_time_s": totals.seconds, "eval_images": metrics["images"],
              "eval_skipped_images": metrics["skipped"]}
    if bad_images == "error" and metrics["skipped"]:
        raise D.BadImages(f"{metrics['skipped']} unreadable evaluation image(s); pass --bad-images skip to "
                          "drop and count them")
    state.history.append(record)
    acc.print(f"epoch {epoch + 1}/{epochs}: loss {record['loss']:.4f}  lr {record['lr']:.4g}  "
              f"top-1 {record['top1']:.2f}  top-5 {record['top5']:.2f}  {record['images_per_s'] or 0:.0f} img/s")
    if log:
        acc.log({"eval/top1": record["top1"], "eval/top5": record["top5"], "train/epoch_loss": record["loss"]},
                step=state.global_step)
    state.epoch, state.step_in_epoch = epoch + 1, 0
    state.epoch_loss_sum, state.epoch_loss_n, state.epoch_seen, state.epoch_time = 0.0, 0, 0, 0.0
    best = record["top1"] > state.best_top1
    if best:
        state.best_top1, state.best_epoch = record["top1"], epoch + 1
    return record, best
