"""TinyBERT's distillation losses, each a small pure function (method.md, "Losses")."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from tinybert.capture import MASKED_SCORE_THRESHOLD


def layer_mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """The MSE of each layer of a stack, (k, ...) against (k, ...) -> (k,): entry i is the mean
    squared error over every element of layer i, as ``F.mse_loss(student[i], teacher[i])``.

    The objective stacks the layers a loss kind matches and computes them in a handful of
    operators instead of a handful per layer: on a GPU a general-distillation step is short
    enough for the host's per-operator cost to show."""
    return F.mse_loss(student, teacher, reduction="none").flatten(1).mean(1)


def state_losses(student_states: torch.Tensor, teacher_states: torch.Tensor, proj: torch.nn.Module) -> torch.Tensor:
    """L_embd or L_hidn of k layers at once: MSE(H^S W, H^T) per layer.

    H^S: (k, B, L, d'), H^T: (k, B, L, d), W: d' -> d; returns (k,)."""
    return layer_mse(proj(student_states), teacher_states)


def attention_losses(student_scores: torch.Tensor, teacher_scores: torch.Tensor) -> torch.Tensor:
    """L_attn = (1/h) sum_i MSE(A_i^S, A_i^T) of k layers at once, on pre-softmax scores
    (k, B, h, L, L); returns (k,).

    With equal head counts the mean over heads of per-head MSEs equals the MSE over all
    elements. Masked entries (<= -100: transformers puts the dtype minimum there) are set to
    0 on both sides, as in the reference, so padding contributes nothing and nothing overflows.
    """
    if student_scores.shape != teacher_scores.shape:
        raise ValueError(f"attention shapes differ: student {tuple(student_scores.shape)}, teacher {tuple(teacher_scores.shape)}")
    return layer_mse(_zero_masked(student_scores), _zero_masked(teacher_scores))


def head_mean_attention_losses(student_scores: torch.Tensor, teacher_scores: torch.Tensor) -> torch.Tensor:
    """Fallback for different head counts (``attention_heads: mean``, not in the paper), k
    layers at once: MSE between the head-averaged score maps (k, B, L, L) of both sides, masked
    entries zeroed first as in :func:`attention_losses`. With one head each it is exactly that."""
    s, t = student_scores.shape, teacher_scores.shape
    if s[:2] != t[:2] or s[3:] != t[3:]:
        raise ValueError(f"attention shapes differ: student {tuple(s)}, teacher {tuple(t)}")
    return layer_mse(_zero_masked(student_scores).mean(dim=2), _zero_masked(teacher_scores).mean(dim=2))


def embedding_loss(student_emb: torch.Tensor, teacher_emb: torch.Tensor, proj: torch.nn.Module) -> torch.Tensor:
    """L_embd = MSE(E^S W_e, E^T).  E^S: (B, L, d'), E^T: (B, L, d), W_e: d' -> d."""
    return state_losses(student_emb[None], teacher_emb[None], proj)[0]


def hidden_loss(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, proj: torch.nn.Module) -> torch.Tensor:
    """L_hidn = MSE(H^S W_h, H^T).  H^S: (B, L, d'), H^T: (B, L, d), W_h: d' -> d."""
    return state_losses(student_hidden[None], teacher_hidden[None], proj)[0]


def attention_loss(student_scores: torch.Tensor, teacher_scores: torch.Tensor) -> torch.Tensor:
    """:func:`attention_losses` of one layer, (B, h, L, L)."""
    return attention_losses(student_scores[None], teacher_scores[None])[0]


def head_mean_attention_loss(student_scores: torch.Tensor, teacher_scores: torch.Tensor) -> torch.Tensor:
    """:func:`head_mean_attention_losses` of one layer, (B, h, L, L)."""
    return head_mean_attention_losses(student_scores[None], teacher_scores[None])[0]


def _zero_masked(scores: torch.Tensor) -> torch.Tensor:
    return scores.masked_fill(scores <= MASKED_SCORE_THRESHOLD, 0.0)


def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """L_pred = -sum softmax(z^T / t) * log_softmax(z^S / t), averaged over the batch. (B, C).

    Computed in fp32: CPU autocast leaves softmax in bf16 (CUDA autocast promotes it), and a
    bf16 log-probability keeps about three significant digits."""
    targets = F.softmax(teacher_logits.float() / temperature, dim=-1)
    return -(targets * F.log_softmax(student_logits.float() / temperature, dim=-1)).sum(dim=-1).mean()


def regression_prediction_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Prediction loss for regression tasks (reference): MSE between logits."""
    return F.mse_loss(student_logits, teacher_logits)
