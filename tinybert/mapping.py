"""Layer mapping g(m): which teacher layer each student layer learns from (method.md).

Layer 0 is the embedding layer on both sides; transformer layers count from 1.
"""
from __future__ import annotations

from typing import Sequence

from tinybert.errors import InputError


def layer_mapping(
    strategy: str | Sequence[int], student_layers: int, teacher_layers: int, *, field: str = "mapping"
) -> list[int]:
    """Return [g(1), ..., g(M)] for M student and N teacher transformer layers.

    - ``uniform``: g(m) = floor(m * N / M)   (N=12, M=4 -> 3, 6, 9, 12; N=6, M=4 -> 1, 3, 4, 6)
    - ``top``:     g(m) = N - M + m
    - ``bottom``:  g(m) = m
    - a list of M teacher layers (1-based, repeats allowed) is used as given.
    A named strategy needs M <= N; a deeper student takes an explicit list.
    g(0) = 0 (embeddings) and g(M+1) = N+1 (prediction layer) are implicit.
    Errors name ``field``, the setting the strategy came from (``task_distill.mapping``).
    """
    m_, n_ = student_layers, teacher_layers
    if isinstance(strategy, str):
        if strategy not in ("uniform", "top", "bottom"):
            raise InputError(f"{field}: unknown strategy {strategy!r} (uniform, top, bottom or a list of layers)")
        if m_ > n_:
            # uniform's floor would send the first student layers to g(m) = 0, the embeddings,
            # which have no attention scores to match: name the layers instead (they may repeat).
            raise InputError(f"{field} {strategy!r}: student has {m_} layers but teacher only {n_}; "
                             f"give a list of {m_} teacher layers in 1..{n_} instead")
        if strategy == "uniform":
            return [(m * n_) // m_ for m in range(1, m_ + 1)]
        if strategy == "top":
            return [n_ - m_ + m for m in range(1, m_ + 1)]
        return list(range(1, m_ + 1))  # bottom
    layers = [int(x) for x in strategy]
    if len(layers) != m_:
        raise InputError(f"{field}: list {layers} has {len(layers)} entries, student has {m_} layers")
    bad = [x for x in layers if not 1 <= x <= n_]
    if bad:
        raise InputError(f"{field}: teacher has layers 1..{n_}, mapping names {bad}")
    return layers
