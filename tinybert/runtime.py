"""Where training runs: the device, the numeric precision and, optionally, several processes.

One code path for every case. A single process trains on the CPU or one GPU. Launched by
``torchrun`` (``WORLD_SIZE`` > 1; ``tinybert`` relaunches itself that way when
``TINYBERT_PROCESSES`` is set), each process takes an equal slice of every global batch, and
gradients are averaged across processes before the optimizer step (gloo on CPU, NCCL on GPU).
The global batch size is therefore the schedule's, whatever the number of processes, and
every process holds the same weights after every step. Only process 0 writes files.

Plain ``torch.distributed`` rather than ``accelerate`` or ``DistributedDataParallel``: the
models are called through the capture helpers and the objective owns extra parameters (the
projections), so one flat all-reduce per step after ``backward`` is the smallest correct
synchronisation. It does not overlap communication with the backward pass as DDP does.
"""
from __future__ import annotations

import contextlib
import functools
import os
import platform
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from tinybert.errors import InputError

PROCESSES_ENV = "TINYBERT_PROCESSES"
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    return rank() == 0


def pick_device(choice: str = "auto") -> torch.device:
    """``auto``: the GPU when there is one (this process's ``LOCAL_RANK`` GPU), else the CPU."""
    has_cuda = torch.cuda.is_available()
    if choice == "cuda" and not has_cuda:
        raise InputError("device: 'cuda' requested but no CUDA GPU is visible; use 'auto' or 'cpu'")
    if choice == "cpu" or not has_cuda:
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def cpu_has_bf16_units() -> bool:
    """Whether this x86 CPU computes in bf16 natively (AVX512-BF16 or AMX). Where it does not,
    oneDNN emulates bf16 through fp32: measured 6.5x slower than plain fp32 on an AVX2-only
    EPYC, against 9.8x faster with AMX. Other architectures are given the benefit of the doubt."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return True
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if None in probes:  # torch no longer offers the probes: nothing to say
        return True
    return any(probe() for probe in probes)


@functools.cache
def warn_if_bf16_is_emulated(device_type: str, precision: str) -> None:
    """One line on stderr, once per process, where bf16 was asked for on a CPU that would emulate
    it: the setting is legal, only slow, so the stage goes on."""
    if precision == "bf16" and device_type == "cpu" and is_main_process() and not cpu_has_bf16_units():
        print("warning: precision bf16 on a CPU without bf16 units (AVX512-BF16 or AMX) is emulated and "
              "several times slower than fp32; set precision: fp32 on this machine", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    precision: str = "fp32"
    rank: int = 0
    world_size: int = 1

    @classmethod
    def create(cls, device: str = "auto", precision: str = "fp32") -> "Runtime":
        chosen = pick_device(device)
        if precision == "fp16" and chosen.type != "cuda":
            raise InputError("precision: fp16 needs a CUDA GPU; use bf16 or fp32 on the CPU")
        size = world_size()
        if size > 1 and not dist.is_initialized():
            if chosen.type == "cuda":
                torch.cuda.set_device(chosen)
            dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
        warn_if_bf16_is_emulated(chosen.type, precision)
        return cls(chosen, precision, rank(), size)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> dict:
        """What a checkpoint's provenance needs beyond the parameters: the device as chosen
        (``auto`` resolved, with the GPU's name), the precision, the processes and torch's version."""
        device = str(self.device)
        if self.device.type == "cuda":
            device += f" ({torch.cuda.get_device_name(self.device)})"
        return {"device": device, "precision": self.precision, "processes": self.world_size, "torch": torch.__version__}

    def autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=DTYPES[self.precision])

    def grad_scaler(self) -> torch.amp.GradScaler:
        # fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none.
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    def my_share(self, indices: list[int]) -> list[int]:
        """This process's slice of a global batch. A final batch smaller than the number of
        processes gives the short ranks its first example rather than nothing (a forward and
        backward they must take part in; :meth:`share_weight` gives that gradient weight 0)."""
        if self.world_size == 1:
            return indices
        return indices[self.rank::self.world_size] or indices[:1]

    def share_weight(self, indices: list[int]) -> float:
        """How much this process's mean loss counts in the global batch's mean: its share of the
        examples times the number of processes. 1 for every process when the batch divides
        evenly; for an epoch's short last batch (5 examples on 2 processes: 3 and 2) the shares
        count 1.2 and 0.8. For a loss that is a mean over examples (cross-entropy, soft
        cross-entropy, regression MSE) the averaged gradient is then exactly the whole batch's;
        a loss averaged over tokens or elements (masked-LM, the layer MSEs of distillation) is
        weighted by examples, not by each process's own token count, so it is close, not exact."""
        if self.world_size == 1:
            return 1.0
        return len(indices[self.rank::self.world_size]) * self.world_size / len(indices)

    def broadcast_parameters(self, modules) -> None:
        """Start every process from process 0's weights."""
        if self.world_size == 1:
            return
        for module in modules:
            for tensor in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(tensor.data, src=0)

    def average_gradients(self, params, weight: float = 1.0) -> None:
        """Average the gradients across processes, this process's counting ``weight`` times
        (:meth:`share_weight`)."""
        if self.world_size == 1:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = _flatten_dense_tensors(grads)
        if weight != 1.0:
            flat *= weight
        dist.all_reduce(flat)
        flat /= self.world_size
        for grad, synced in zip(grads, _unflatten_dense_tensors(flat, grads)):
            grad.copy_(synced)

    def average(self, value: float) -> float:
        if self.world_size == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world_size

    def gather(self, value) -> list:
        """Every process's ``value`` (any picklable object), in rank order, on every process."""
        if self.world_size == 1:
            return [value]
        gathered: list = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()
