"""One resumable training loop for every training stage (MLM, teacher, GD, TD).

A stage supplies the modules to optimise, a loss function of (batch, step) and a batch
source; the loop owns optimisation, the warm-up schedule, progress lines, the loss log and
checkpoints holding model, optimizer, scheduler and RNG state plus the data position.

The data order of epoch e is a permutation seeded by (seed, e), and a checkpoint restores
every process's random state (dropout draws from it), so a resumed run continues exactly where
the interrupted one stopped: same batches, same dropout stream, a loss curve without a jump.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.distributed as dist
from torch import nn
from transformers import get_linear_schedule_with_warmup

from tinybert.code_deps import code_sha256
from tinybert.config import TrainSchedule
from tinybert.io import atomic_file
from tinybert.runtime import Runtime, is_main_process

CHECKPOINT_FILE = "state.pt"
# Tests set this to simulate a crash right after step N (checkpoints before N survive).
INTERRUPT_ENV = "TINYBERT_INTERRUPT_AT_STEP"


class SimulatedInterruption(RuntimeError):
    pass


class TrainingLog(list):
    """The loss log, one dict per step, and ``runtime``: where the run that finished it trained
    (:meth:`Runtime.describe`). A stage's ``training.json`` records it, since ``dvc.lock`` holds
    only the configured ``device: auto`` and results differ in their last bits between devices."""

    def __init__(self, rows=(), runtime: dict | None = None):
        super().__init__(rows)
        self.runtime = runtime or {}


@dataclass
class BatchSource:
    """``num_examples`` examples, turned into a batch by ``collate(indices)``.

    With ``lengths``, each epoch's shuffled order is cut into chunks of 32 batches and each chunk
    is sorted by length before it is split into batches (whose order is then shuffled): batches
    hold examples of similar length, so dynamic padding wastes little compute. Sentence lengths
    vary a lot (movie reviews: padding to the longest of a random batch doubles the tokens).
    """

    num_examples: int
    collate: Callable[[list[int]], dict]
    lengths: Sequence[int] | None = None
    _orders: dict = field(default_factory=dict, repr=False)

    def batch(self, schedule: TrainSchedule, step: int, runtime: Runtime | None = None) -> dict:
        """Global batch ``step`` (or, with several processes, this process's slice of it)."""
        indices = self.batch_indices(schedule, step)
        return self.collate(runtime.my_share(indices) if runtime else indices)

    def share_weight(self, schedule: TrainSchedule, step: int, runtime: Runtime) -> float:
        """This process's weight in global batch ``step`` (:meth:`Runtime.share_weight`)."""
        return runtime.share_weight(self.batch_indices(schedule, step))

    def batch_indices(self, schedule: TrainSchedule, step: int) -> list[int]:
        """The examples of global batch ``step``."""
        epoch, position = divmod(step, steps_per_epoch(self.num_examples, schedule.batch_size))
        return self.epoch_batches(schedule, epoch)[position]

    def epoch_batches(self, schedule: TrainSchedule, epoch: int) -> list[list[int]]:
        key = (schedule.seed, schedule.batch_size, epoch)
        if key not in self._orders:
            self._orders = {key: self._make_batches(*key)}  # keep one epoch: steps move forward
        return self._orders[key]

    def _make_batches(self, seed: int, batch_size: int, epoch: int) -> list[list[int]]:
        generator = torch.Generator().manual_seed(seed * 1000 + epoch)
        order = torch.randperm(self.num_examples, generator=generator).tolist()
        if self.lengths is None:
            return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        chunk = batch_size * 32
        batches = []
        for start in range(0, len(order), chunk):
            part = sorted(order[start:start + chunk], key=lambda i: self.lengths[i])
            batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
        shuffle = torch.randperm(len(batches), generator=generator).tolist()
        return [batches[i] for i in shuffle]


def seed_everything(seed: int) -> None:
    """Seed before building a model: new heads are initialised from the global RNG, so a stage
    gives the same weights whether it runs in a fresh process (dvc) or after others (Prefect)."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    return max(1, math.ceil(num_examples / batch_size))


def total_steps(num_examples: int, schedule: TrainSchedule) -> int:
    if schedule.max_steps is not None:
        return schedule.max_steps
    return max(1, math.ceil(schedule.epochs * steps_per_epoch(num_examples, schedule.batch_size)))


def checkpoint_dir(stage: str, *fingerprint_parts, module: str) -> Path:
    """Where a stage keeps resumable state: outside DVC outputs (DVC deletes those before a run).

    The folder is keyed by what DVC would compare: the stage's configuration and the contents of
    its inputs (``fingerprint_parts``; digests, not paths, since every run reads the same paths),
    and the code of ``module``, the stage's module. So a resumed run never continues state that
    another parameter, another input or another version of the code produced."""
    parts = (code_sha256(module), *fingerprint_parts)
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
    root = Path(os.environ.get("TINYBERT_CHECKPOINTS", "checkpoints"))
    folder = root / f"{stage}-{digest}"
    _mention_stale_checkpoints(folder)
    return folder


def _mention_stale_checkpoints(folder: Path) -> None:
    """Name the stage's other checkpoint folders: interrupted runs under other parameters,
    inputs or code. A finished run deletes its own folder, but these stay (a run of those
    settings would resume them, e.g. an ablation row retried), and a training stage's can hold
    gigabytes. Deleting them is the user's call; this says where the space went."""
    if not folder.parent.is_dir() or not is_main_process():
        return
    stage = folder.name.rsplit("-", 1)[0]
    for other in sorted(folder.parent.glob(f"{stage}-*")):
        if other == folder or not other.is_dir() or other.name.rsplit("-", 1)[0] != stage:
            continue
        try:
            size = sum(f.stat().st_size for f in other.rglob("*") if f.is_file())
        except OSError:  # deleted while we looked (another run finishing): nothing to mention
            continue
        print(f"[{stage}] note: {other} ({size / 2**20:.1f} MiB) holds an interrupted run's state for other "
              "parameters, inputs or code; delete it if you will not rerun those", file=sys.stderr, flush=True)


def _fmt_seconds(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def train(
    *,
    name: str,
    modules: dict[str, nn.Module],
    param_groups: Sequence[dict],
    loss_fn: Callable[[dict, int], tuple[torch.Tensor, dict[str, torch.Tensor | float]]],
    batches: BatchSource,
    schedule: TrainSchedule,
    checkpoint_to: Path,
) -> TrainingLog:
    """Optimise ``param_groups`` on ``loss_fn`` and return the loss log (one row per step).

    ``modules`` are saved in checkpoints and switched to training mode. A checkpoint in
    ``checkpoint_to`` from an earlier, interrupted run is resumed.
    """
    runtime = Runtime.create(schedule.device, schedule.precision)
    for module in modules.values():
        module.to(runtime.device)  # keeps Parameter identity: param_groups stay valid
    steps = total_steps(batches.num_examples, schedule)
    optimizer = adamw(decay_groups(param_groups, modules), lr=schedule.lr, weight_decay=schedule.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(schedule.warmup_ratio * steps), steps)
    scaler = runtime.grad_scaler()
    params = [p for group in param_groups for p in group["params"]]
    log: list[dict] = []
    start = 0

    state_path = Path(checkpoint_to) / CHECKPOINT_FILE
    if state_path.is_file():
        # On the CPU: the modules and the optimizer move what they load to their parameters'
        # device (fused AdamW's step counters too: its kernel reads them there, without a sync).
        state = torch.load(state_path, weights_only=True, map_location="cpu")
        for key, module in modules.items():
            module.load_state_dict(state["modules"][key])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):  # fp16's loss scale, so a resumed run skips no extra steps
            scaler.load_state_dict(state["scaler"])
        _set_rng_state(state, runtime)
        start, log = state["step"], state["log"]
        print(f"[{name}] resumed from checkpoint at step {start}/{steps}", file=sys.stderr, flush=True)
    else:
        # Each process draws its own dropout masks; the weights still agree after every step.
        torch.manual_seed(schedule.seed + runtime.rank)
        runtime.broadcast_parameters(modules.values())

    interrupt_at = _interrupt_step(name)
    for module in modules.values():
        module.train()
    began, done_here = time.monotonic(), 0
    # Each step's loss and parts stay on the device until a log line, a checkpoint or the end
    # needs them: reading a GPU scalar waits for the GPU, and a wait per loss part every step
    # stops the CPU from queueing the next kernels while the GPU works.
    pending: list[tuple[int, float, float, dict[str, torch.Tensor]]] = []  # step, lr, share weight, values

    def flush() -> None:
        log.extend(_read_pending(pending, runtime))
        pending.clear()

    for step in range(start, steps):
        batch = {k: v.to(runtime.device) for k, v in batches.batch(schedule, step, runtime).items()}
        with runtime.autocast():
            loss, parts = loss_fn(batch, step)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        weight = batches.share_weight(schedule, step, runtime)
        runtime.average_gradients(params, weight)  # before unscaling, so every process skips the same inf steps
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, schedule.max_grad_norm)
        lr = scheduler.get_last_lr()[0]  # this step's; after scheduler.step() it is the next one's
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        done_here += 1
        pending.append((step + 1, lr, weight, {"loss": loss.detach(), **parts}))

        log_now = (step + 1) % schedule.log_every == 0 or step + 1 == steps
        checkpoint_now = (step + 1) % schedule.checkpoint_every == 0 and step + 1 < steps
        if log_now or checkpoint_now or step + 1 == interrupt_at:
            flush()  # every process takes part: with several, the values are averaged across them
        if runtime.is_main and log_now:
            per_step = (time.monotonic() - began) / done_here
            print(
                f"[{name}] step {step + 1}/{steps} loss {log[-1]['loss']:.4f} "
                f"lr {log[-1]['lr']:.2e} {per_step:.2f}s/step ETA {_fmt_seconds(per_step * (steps - step - 1))}",
                file=sys.stderr,
                flush=True,
            )
        if checkpoint_now:
            rng = runtime.gather(_rng_state(runtime))  # every process takes part
            if runtime.is_main:
                _save_checkpoint(state_path, modules, optimizer, scheduler, scaler, rng, step + 1, log)
        if interrupt_at and step + 1 == interrupt_at:
            raise SimulatedInterruption(f"[{name}] simulated interruption after step {interrupt_at}")
    flush()
    runtime.barrier()
    for module in modules.values():
        # Back on the CPU, where the stages' own evaluation and saving code expects them.
        module.eval().to("cpu")
    return TrainingLog(log, runtime.describe())


# The reference's (and BERT's) optimizer leaves these out of weight decay: a parameter whose name
# holds one of them.
NO_DECAY = ("bias", "LayerNorm.bias", "LayerNorm.weight")


# Devices with PyTorch's fused AdamW kernel (torch.optim.AdamW's docs); elsewhere its default.
FUSED_ADAMW_DEVICES = frozenset({"cpu", "cuda"})


def adamw(param_groups: Sequence[dict], lr: float, weight_decay: float = 0.0) -> torch.optim.AdamW:
    """AdamW with the fused kernel where the parameters' device has one: one pass over each
    tensor, where PyTorch's default on a CPU is a dozen elementwise operators per tensor (a step
    of the 14M-parameter student: 6 ms against 35 on two idle cores; benchmarks/optimizer.py).
    The update is the same to the last bits of float32. A state saved by the unfused optimizer
    would turn this one unfused on loading; checkpoints are keyed by this file's code, so none
    from before the switch is resumed."""
    groups = list(param_groups)
    devices = {p.device.type for group in groups for p in group["params"]}
    fused = bool(devices) and devices <= FUSED_ADAMW_DEVICES
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, fused=fused or None)


def decay_groups(param_groups: Sequence[dict], modules: dict[str, nn.Module]) -> list[dict]:
    """Each group split in two, as the reference's optimizer groups them: its parameters under
    the schedule's weight decay, and its biases and LayerNorm weights (named in ``modules``)
    with none. Empty groups are dropped."""
    names = {id(p): name for module in modules.values() for name, p in module.named_parameters()}
    groups = []
    for group in param_groups:
        params = list(group["params"])
        spared = [any(part in names.get(id(p), "") for part in NO_DECAY) for p in params]
        exempt = [p for p, spare in zip(params, spared) if spare]
        decayed = [p for p, spare in zip(params, spared) if not spare]
        groups += [{**group, "params": decayed}] if decayed else []
        groups += [{**group, "params": exempt, "weight_decay": 0.0}] if exempt else []
    return groups


def _interrupt_step(name: str) -> int:
    """The step after which the test hook stops this loop: ``INTERRUPT_ENV`` is ``N`` (any
    loop) or ``NAME:N`` (only the loop called NAME, e.g. ``task-distill/prediction:2``)."""
    target, _, step = os.environ.get(INTERRUPT_ENV, "").rpartition(":")
    if target and target != name:
        return 0
    return int(step or 0)


def _read_pending(pending: list, runtime: Runtime) -> list[dict]:
    """Log rows of the pending steps, read from the device in one transfer (one all-reduce
    across processes when there are several, each weighted as in the gradient average)."""
    if not pending:
        return []
    flat = torch.stack([torch.as_tensor(v, device=runtime.device).detach().double().reshape(()) * weight
                        for _, _, weight, values in pending for v in values.values()])
    if runtime.world_size > 1:
        dist.all_reduce(flat)
        flat /= runtime.world_size
    numbers = iter(flat.tolist())
    rows = []
    for step, lr, _, values in pending:
        read = {key: next(numbers) for key in values}
        rows.append({"step": step, "loss": read.pop("loss"), "lr": lr, **read})
    return rows


def _rng_state(runtime: Runtime) -> dict:
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(runtime.device) if runtime.device.type == "cuda" else None}


def _set_rng_state(state: dict, runtime: Runtime) -> None:
    """This process's random state at the checkpoint. Each process draws its own dropout masks,
    so each has its own state; a checkpoint written with another number of processes cannot
    continue their streams, and this process takes the state of the process with its rank
    modulo theirs."""
    per_process = state.get("rng") or [{"torch": state["torch_rng"], "cuda": state.get("cuda_rng")}]
    mine = per_process[runtime.rank % len(per_process)]
    torch.set_rng_state(mine["torch"].cpu())
    if mine.get("cuda") is not None and runtime.device.type == "cuda":
        torch.cuda.set_rng_state(mine["cuda"].cpu(), runtime.device)


def _save_checkpoint(path: Path, modules, optimizer, scheduler, scaler, rng: list[dict], step: int,
                     log: list[dict]) -> None:
    with atomic_file(path) as tmp:
        torch.save(
            {
                "modules": {key: module.state_dict() for key, module in modules.items()},
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": rng,  # one random state per process, in rank order
                "step": step,
                "log": log,
            },
            tmp,
        )


def write_log(log: list[dict], path: Path) -> None:
    """The loss curve as CSV (DVC plots read it): step, loss, lr and any loss parts."""
    columns = list(dict.fromkeys(key for row in log for key in row))
    lines = [",".join(columns)]
    lines += [",".join(_csv_number(row.get(c)) for c in columns) for row in log]
    Path(path).write_text("\n".join(lines) + "\n")


def _csv_number(value) -> str:
    # Steps are integers: "%g" would write step 1,000,001 as 1e+06, and a GLUE-sized run has more.
    if value is None:
        return ""
    return str(value) if isinstance(value, int) else f"{value:.6g}"
