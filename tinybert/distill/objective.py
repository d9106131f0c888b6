"""The distillation objective: projections W_e / W_h plus the loss of every match."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from transformers import PretrainedConfig

from tinybert.capture import Features
from tinybert.config import MatchSettings
from tinybert.distill.matches import Match, build_matches
from tinybert.errors import InputError
from tinybert.losses import (
    attention_losses,
    head_mean_attention_losses,
    regression_prediction_loss,
    soft_cross_entropy,
    state_losses,
)

# General distillation saves its W_h / W_e here, beside the general student, and task
# distillation starts from them, as the reference does: its general TinyBERT checkpoint holds
# ``fit_dense``, which the task stage's model loads with the rest of the weights.
PROJECTIONS_FILE = "projections.safetensors"


@dataclass(frozen=True)
class _LayerStack:
    """Matches computed together: one loss function over their layers stacked, (k, ...) -> (k,).

    ``weights`` and ``kinds`` name non-persistent buffers (the state dict, which checkpoints and
    the saved projections hold, stays W_h and W_e): each match's weight, and a (k, kinds) 0/1
    matrix that sums the per-layer losses into each loss kind's logged part."""

    matches: tuple[Match, ...]
    projection: str | None  # attribute holding the projection; None: attention scores
    weights: str
    kinds: str

    @property
    def kind_names(self) -> list[str]:
        return list(dict.fromkeys(m.feature for m in self.matches))


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
        states = {"embedding": "hidden_proj" if shared_projection else "embedding_proj", "hidden": "hidden_proj"}
        groups: dict[str | None, list[Match]] = {}
        for match in self.matches:
            if match.feature != "prediction":
                groups.setdefault(states.get(match.feature), []).append(match)
        self._stacks = [self._stack(i, tuple(group), projection) for i, (projection, group) in enumerate(groups.items())]
        self._prediction = next((m for m in self.matches if m.feature == "prediction"), None)

    def _stack(self, index: int, matches: tuple[Match, ...], projection: str | None) -> _LayerStack:
        stack = _LayerStack(matches, projection, f"_stack{index}_weights", f"_stack{index}_kinds")
        self.register_buffer(stack.weights, torch.tensor([m.weight for m in matches]), persistent=False)
        kinds = torch.tensor([[float(m.feature == kind) for kind in stack.kind_names] for m in matches])
        self.register_buffer(stack.kinds, kinds, persistent=False)
        return stack

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
        for stack in self._stacks:
            per_layer = self._stack_losses(stack, student, teacher)
            total = total + (per_layer * self.get_buffer(stack.weights)).sum()
            by_kind = (per_layer.detach()[:, None] * self.get_buffer(stack.kinds)).sum(0)
            parts.update({f"{kind}_loss": by_kind[i] for i, kind in enumerate(stack.kind_names)})
        if self._prediction is not None:
            loss = self._prediction_loss(student, teacher)
            total = total + self._prediction.weight * loss
            parts["prediction_loss"] = loss.detach()
        return total, parts

    def _stack_losses(self, stack: _LayerStack, student: Features, teacher: Features) -> torch.Tensor:
        # Stacking the teacher's outputs also copies them out of inference mode (the loop runs
        # the teacher so), which a tensor autograd saves for backward must be.
        if stack.projection is not None:
            s = torch.stack([student.hidden[m.student] for m in stack.matches])
            t = torch.stack([teacher.hidden[m.teacher] for m in stack.matches])
            return state_losses(s, t, getattr(self, stack.projection))
        s = torch.stack([student.scores[m.student - 1] for m in stack.matches])
        t = torch.stack([teacher.scores[m.teacher - 1] for m in stack.matches])
        return head_mean_attention_losses(s, t) if self.head_mean else attention_losses(s, t)

    def _prediction_loss(self, student: Features, teacher: Features) -> torch.Tensor:
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
    mapping_field: str = "mapping",
) -> DistillationObjective:
    """The objective for a student/teacher pair under one configuration's match settings.
    ``mapping_field`` is the params.yaml setting its mapping came from, named in a mapping error
    that only the teacher's depth reveals (``ObjectiveSwitches.mapping_field``)."""
    matches = build_matches(
        settings.mapping,
        student.num_hidden_layers,
        teacher.num_hidden_layers,
        settings.weights,
        intermediate=intermediate,
        prediction=prediction,
        layer_weights=settings.layer_weights,
        mapping_field=mapping_field,
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
