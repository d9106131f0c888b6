"""The single distillation loop: general and task distillation only pass different objectives."""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from tinybert.capture import Features, forward_features
from tinybert.config import TrainSchedule
from tinybert.distill.objective import DistillationObjective
from tinybert.runtime import DTYPES, pick_device
from tinybert.training import BatchSource, train


def distill(
    *,
    name: str,
    student: nn.Module,
    teacher: nn.Module | None,
    objective: DistillationObjective,
    batches: BatchSource,
    schedule: TrainSchedule,
    checkpoint_to: Path,
) -> list[dict]:
    """Train ``student`` (and the objective's projections) to match ``teacher`` on ``batches``.

    When the objective needs only the prediction layer and the batches carry the teacher's
    logits (``teacher_logits``, from the teacher-logits stage), the teacher is not run at all.
    """
    intermediate = objective.needs_intermediate
    runner = None if teacher is None else frozen_teacher(teacher, pick_device(schedule.device), schedule.precision)

    def loss_fn(batch: dict, step: int):
        if not intermediate and "teacher_logits" in batch:
            target = Features(hidden=(), scores=(), logits=batch["teacher_logits"])
        else:
            if runner is None:
                raise ValueError("this objective needs the teacher's features, but no teacher was given")
            # inference_mode, not no_grad: it skips autograd's bookkeeping on each of the teacher's
            # operators, host time that shows on a GPU. The objective copies the few outputs a
            # loss saves for backward (inference tensors may not be saved).
            with torch.inference_mode():
                target = forward_features(runner, batch, intermediate=intermediate)
        output = forward_features(student, batch, intermediate=intermediate)
        return objective(output, target)

    params = [p for p in list(student.parameters()) + list(objective.parameters()) if p.requires_grad]
    log = train(
        name=name,
        modules={"student": student, "objective": objective},
        param_groups=[{"params": params}],
        loss_fn=loss_fn,
        batches=batches,
        schedule=schedule,
        checkpoint_to=checkpoint_to,
    )
    if runner is teacher and teacher is not None:
        teacher.to("cpu")
    return log


def frozen_teacher(teacher: nn.Module, device: torch.device, precision: str) -> nn.Module:
    """The teacher as the loop runs it: in eval mode, without gradients, on ``device``.

    Under bf16/fp16 the loop runs a copy whose linear layers hold their weights in that dtype,
    and the caller's teacher stays as it was. Autocast would otherwise cast every weight matrix
    again on every forward (a pass over the teacher's weights and an operator per matrix each
    step) to compute the linear layers in that dtype anyway, so the copy's outputs are bit for
    bit the fp32 teacher's under autocast. Layer norms and embeddings stay fp32: on a CPU
    autocast would not widen them again, and the targets would lose precision.
    """
    for p in teacher.parameters():
        p.requires_grad_(False)
    if precision not in DTYPES:
        return teacher.eval().to(device)
    # deepcopy takes the linear weights from ``cast`` instead of copying them in fp32 first.
    cast = {id(p): nn.Parameter(p.detach().to(device=device, dtype=DTYPES[precision]), requires_grad=False)
            for module in teacher.modules() if isinstance(module, nn.Linear)
            for p in module.parameters(recurse=False)}
    return copy.deepcopy(teacher, cast).eval().to(device)
