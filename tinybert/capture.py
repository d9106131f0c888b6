"""Capture hidden states and pre-softmax attention scores from unmodified transformers models.

TinyBERT's attention loss matches the *unnormalised* scores QK^T/sqrt(d_k) + mask. Instead of
vendoring BERT, we register an attention function with transformers 5's attention registry
that behaves exactly like the eager implementation but returns the pre-softmax scores as its
"attention weights". A model loaded with ``attn_implementation=PRESOFTMAX`` then reports the
scores through the normal ``output_attentions=True`` path.

The matching mask function must be registered too: without it transformers prepares the
padding mask for a different backend and the outputs silently change.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask

PRESOFTMAX = "tinybert_presoftmax"

# transformers adds the dtype's minimum at masked positions; the reference used -10000 and
# zeroed entries <= -100 before the MSE. Same threshold here.
MASKED_SCORE_THRESHOLD = -100.0


def presoftmax_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
):
    """Eager attention that returns (output, pre-softmax scores) instead of (output, probs)."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask[:, :, :, : key.shape[-2]]
    probs = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    probs = nn.functional.dropout(probs, p=dropout, training=module.training)
    output = torch.matmul(probs, value).transpose(1, 2).contiguous()
    return output, scores


AttentionInterface.register(PRESOFTMAX, presoftmax_attention)
AttentionMaskInterface.register(PRESOFTMAX, eager_mask)


def enable_capture(model: nn.Module) -> nn.Module:
    """Switch a loaded model to the score-returning attention (in place) and return it."""
    model.set_attn_implementation(PRESOFTMAX)
    return model


@dataclass
class Features:
    """What distillation matches. ``hidden[0]`` is the embedding output; ``scores[l]`` is
    layer l+1's pre-softmax attention, shape (batch, heads, seq, seq)."""

    hidden: tuple[torch.Tensor, ...]
    scores: tuple[torch.Tensor, ...]
    logits: torch.Tensor | None


def forward_features(model: nn.Module, batch: dict, *, intermediate: bool = True) -> Features:
    """Run ``model`` once and collect hidden states, pre-softmax scores and logits.

    ``model`` is a ``BertModel`` or a model with a ``.bert`` backbone and a head (for example
    ``BertForSequenceClassification``); it must have had :func:`enable_capture` applied.
    With ``intermediate=False`` only the logits are computed (the prediction-layer step).
    """
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
    out = model(**inputs, output_hidden_states=intermediate, output_attentions=intermediate, return_dict=True)
    return Features(
        hidden=tuple(out.hidden_states or ()),
        scores=tuple(out.attentions or ()),
        logits=getattr(out, "logits", None),
    )
