"""The distillation objective: projections W_e / W_h plus the loss of every match."""
from __future__ import annotations

import torch
from torch import nn

from transformers import PretrainedConfig

from tinybert.capture import Features
from tinybert.config import MatchSettings
from tinybert.distill.matches import Match, build_matches
from tinybert.errors import InputError
from tinybert.losses import (
    attention_loss,
    embedding_loss,
    head_mean_attention_loss,
    hidden_loss,
    regression_prediction_loss,
    soft_cross_entropy,
)

# General distillation saves its W_h / W_e here, beside the general student, and task
# distillation starts from them, as the reference does: its general TinyBERT checkpoint holds
# ``fit_dense``, which the task stage's model loads with the rest of the weights.
PROJECTIONS_FILE = "projections.safetensors"


class DistillationObjective(nn.Module):
    """sum over matches of weight * loss (method.md, "Model loss").

    ``shared_projection=True`` is the reference (one d' -> d projection for the embeddings and
    every hidden layer); ``False`` is the paper (W_e separate from a shared W_h).
    """

    def __init__(
        self,
        matches: list[Match],
        student_hidden: int,
        teacher_hidden: int,
        *,
        student_heads: int,
        teacher_heads: int,
        shared_projection: bool = True,
        attention_heads: str = "strict",
        temperature: float = 1.0,
        regression: bool = False,
    ):
        super().__init__()
        if any(m.feature == "attention" for m in matches) and student_heads != teacher_heads and attention_heads == "strict":
            raise InputError(
                f"attention loss needs equal head counts: student has {student_heads}, teacher {teacher_heads}; "
                "set the student's heads to the teacher's, turn the attention loss off (weight 0), "
                "or set attention_heads: mean to compare head-averaged scores"
            )
        # The fallback is for a head-count mismatch only: with equal counts the paper's per-head loss stands.
        self.head_mean = attention_heads == "mean" and student_heads != teacher_heads
        self.matches = list(matches)
        self.temperature = temperature
        self.regression = regression
        self.hidden_proj = nn.Linear(student_hidden, teacher_hidden)
        self.embedding_proj = self.hidden_proj if shared_projection else nn.Linear(student_hidden, teacher_hidden)

    def _projections(self, *, distinct: bool = False) -> list[tuple[str, nn.Linear]]:
        """(name, module) of W_h and W_e; with ``distinct``, a shared W_e is left out."""
        pairs = [("hidden", self.hidden_proj), ("embedding", self.embedding_proj)]
        return pairs[:1] if distinct and self.embedding_proj is self.hidden_proj else pairs

    def projection_tensors(self) -> dict[str, torch.Tensor]:
        """W_h and W_e with their biases, keyed ``hidden.*`` and ``embedding.*``. Both are written
        even when they are one module, so a later stage with either setting can start from them."""
        return {f"{name}.{key}": value.detach().to("cpu", copy=True)
                for name, module in self._projections() for key, value in module.state_dict().items()}

    def projection_mismatch(self, tensors: dict[str, torch.Tensor]) -> str | None:
        """Why ``tensors`` (from ``projection_tensors``) cannot initialise these projections, or None."""
        for name, module in self._projections():
            for key, value in module.state_dict().items():
                saved = tensors.get(f"{name}.{key}")
                if saved is None:
                    return f"no {name}.{key}"
                if saved.shape != value.shape:
                    return f"{name}.{key} is {tuple(saved.shape)}, this stage needs {tuple(value.shape)}"
        return None

    @torch.no_grad()
    def start_projections_from(self, tensors: dict[str, torch.Tensor]) -> None:
        """Initialise W_h (and a separate W_e) from ``projection_tensors`` output of another stage;
        a shared projection takes W_h's."""
        problem = self.projection_mismatch(tensors)
        if problem:
            raise ValueError(f"projections do not fit: {problem}")
        for name, module in self._projections(distinct=True):
            module.load_state_dict({key: tensors[f"{name}.{key}"] for key in module.state_dict()})

    @property
    def needs_intermediate(self) -> bool:
        return any(m.feature != "prediction" for m in self.matches)

    @property
    def needs_logits(self) -> bool:
        return any(m.feature == "prediction" for m in self.matches)

    def forward(self, student: Features, teacher: Features) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        reference = student.logits if student.logits is not None else student.hidden[0]
        total = torch.zeros((), device=reference.device)
        parts: dict[str, torch.Tensor] = {}  # detached, left on the device: the loop reads them in one go
        for match in self.matches:
            loss = self._loss(match, student, teacher)
            total = total + match.weight * loss
            key = f"{match.feature}_loss"
            parts[key] = parts[key] + loss.detach() if key in parts else loss.detach()
        return total, parts

    def _loss(self, match: Match, student: Features, teacher: Features) -> torch.Tensor:
        if match.feature == "embedding":
            return embedding_loss(student.hidden[0], _savable(teacher.hidden[0]), self.embedding_proj)
        if match.feature == "hidden":
            return hidden_loss(student.hidden[match.student], _savable(teacher.hidden[match.teacher]), self.hidden_proj)
        if match.feature == "attention":
            # The losses mask the teacher's scores first, which makes an ordinary tensor of them.
            pair = student.scores[match.student - 1], teacher.scores[match.teacher - 1]
            return head_mean_attention_loss(*pair) if self.head_mean else attention_loss(*pair)
        if self.regression:
            return regression_prediction_loss(student.logits, _savable(teacher.logits))
        return soft_cross_entropy(student.logits, teacher.logits, self.temperature)


def _savable(target: torch.Tensor) -> torch.Tensor:
    """A teacher output that autograd may save for backward: one computed under inference mode
    (the loop runs the teacher so) is copied, as it may not be saved; any other is used as is."""
    return target.clone() if target.is_inference() else target


def build_objective(
    settings: MatchSettings,
    student: PretrainedConfig,
    teacher: PretrainedConfig,
    *,
    intermediate: bool,
    prediction: bool,
    temperature: float = 1.0,
    regression: bool = False,
) -> DistillationObjective:
    """The objective for a student/teacher pair under one configuration's match settings."""
    matches = build_matches(
        settings.mapping,
        student.num_hidden_layers,
        teacher.num_hidden_layers,
        settings.weights,
        intermediate=intermediate,
        prediction=prediction,
        layer_weights=settings.layer_weights,
    )
    return DistillationObjective(
        matches,
        student.hidden_size,
        teacher.hidden_size,
        student_heads=student.num_attention_heads,
        teacher_heads=teacher.num_attention_heads,
        shared_projection=settings.shared_projection,
        attention_heads=settings.attention_heads,
        temperature=temperature,
        regression=regression,
    )
