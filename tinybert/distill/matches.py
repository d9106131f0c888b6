"""What to match, as data: one record per (feature, student layer, teacher layer, weight).

General and task distillation run the same loop and differ only in the list built here.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Mapping

from tinybert.config import LossWeights
from tinybert.errors import InputError
from tinybert.mapping import layer_mapping

Feature = Literal["embedding", "hidden", "attention", "prediction"]


@dataclass(frozen=True)
class Match:
    """Student layer ``student`` learns ``feature`` from teacher layer ``teacher``.

    Layers use the method's numbering: 0 = embeddings, 1..M transformer layers, M+1 prediction.
    """

    feature: Feature
    student: int
    teacher: int
    weight: float


def build_matches(
    mapping: str | list[int],
    student_layers: int,
    teacher_layers: int,
    weights: LossWeights,
    *,
    intermediate: bool,
    prediction: bool,
    layer_weights: Mapping[int, float] | None = None,
    mapping_field: str = "mapping",
) -> list[Match]:
    """Matches for the intermediate layers (embedding, attention, hidden) and/or the prediction layer.

    A match's weight is its loss kind's weight times its student layer's lambda_m
    (``layer_weights``, default 1). A match whose weight is 0 is left out, so it costs nothing.
    """
    g = layer_mapping(mapping, student_layers, teacher_layers, field=mapping_field)
    lam = dict(layer_weights or {})
    unknown = sorted(layer for layer in lam if not 0 <= layer <= student_layers + 1)
    if unknown:
        raise InputError(
            f"layer_weights: student layers are 0..{student_layers + 1} "
            f"(0 embeddings, {student_layers + 1} prediction), got {unknown}"
        )
    matches: list[Match] = []
    if intermediate:
        matches.append(Match("embedding", 0, 0, weights.embedding))
        for m, t in enumerate(g, start=1):
            matches.append(Match("attention", m, t, weights.attention))
            matches.append(Match("hidden", m, t, weights.hidden))
    if prediction:
        matches.append(Match("prediction", student_layers + 1, teacher_layers + 1, weights.prediction))
    matches = [replace(m, weight=m.weight * lam.get(m.student, 1.0)) for m in matches]
    return [m for m in matches if m.weight > 0]
