"""The single distillation loop: general and task distillation only pass different objectives."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tinybert.capture import forward_features
from tinybert.config import TrainSchedule
from tinybert.distill.objective import DistillationObjective
from tinybert.training import BatchSource, train


def distill(
    *,
    name: str,
    student: nn.Module,
    teacher: nn.Module,
    objective: DistillationObjective,
    batches: BatchSource,
    schedule: TrainSchedule,
    checkpoint_to: Path,
) -> list[dict]:
    """Train ``student`` (and the objective's projections) to match ``teacher`` on ``batches``."""
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    intermediate = objective.needs_intermediate

    def loss_fn(batch: dict, step: int):
        # no_grad rather than inference_mode: the teacher's tensors become MSE targets that
        # autograd saves for backward, which inference tensors may not be.
        with torch.no_grad():
            target = forward_features(teacher, batch, intermediate=intermediate)
        output = forward_features(student, batch, intermediate=intermediate)
        return objective(output, target)

    params = [p for p in list(student.parameters()) + list(objective.parameters()) if p.requires_grad]
    return train(
        name=name,
        modules={"student": student, "objective": objective},
        param_groups=[{"params": params}],
        loss_fn=loss_fn,
        batches=batches,
        schedule=schedule,
        checkpoint_to=checkpoint_to,
    )
