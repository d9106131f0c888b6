"""The single distillation loop: general and task distillation only pass different objectives."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tinybert.capture import Features, forward_features
from tinybert.config import TrainSchedule
from tinybert.distill.objective import DistillationObjective
from tinybert.runtime import pick_device
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
    if teacher is not None:
        teacher.eval().to(pick_device(schedule.device))
        for p in teacher.parameters():
            p.requires_grad_(False)

    def loss_fn(batch: dict, step: int):
        if not intermediate and "teacher_logits" in batch:
            target = Features(hidden=(), scores=(), logits=batch["teacher_logits"])
        else:
            if teacher is None:
                raise ValueError("this objective needs the teacher's features, but no teacher was given")
            # no_grad rather than inference_mode: the teacher's tensors become MSE targets that
            # autograd saves for backward, which inference tensors may not be.
            with torch.no_grad():
                target = forward_features(teacher, batch, intermediate=intermediate)
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
    if teacher is not None:
        teacher.to("cpu")
    return log
