"""The toy regression the training-loop tests fit: y = x1 + x2 + x3 with mean squared error."""
from __future__ import annotations

import torch

from tinybert.config import TrainSchedule
from tinybert.training import BatchSource, train


def fit(model: torch.nn.Module, source: BatchSource, checkpoint_to, schedule: TrainSchedule) -> list[dict]:
    """Train ``model`` on batches ``{"x", "y"}`` through the real loop; return its loss log."""
    return train(
        name="t",
        modules={"model": model},
        param_groups=[{"params": list(model.parameters())}],
        loss_fn=lambda b, step: (torch.nn.functional.mse_loss(model(b["x"]), b["y"]), {}),
        batches=source,
        schedule=schedule,
        checkpoint_to=checkpoint_to,
    )
