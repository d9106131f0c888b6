"""TinyBERT's distillation losses, each a small pure function (method.md, "Losses")."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from tinybert.capture import MASKED_SCORE_THRESHOLD


def embedding_loss(student_emb: torch.Tensor, teacher_emb: torch.Tensor, proj: torch.nn.Module) -> torch.Tensor:
    """L_embd = MSE(E^S W_e, E^T).  E^S: (B, L, d'), E^T: (B, L, d), W_e: d' -> d."""
    return F.mse_loss(proj(student_emb), teacher_emb)


def hidden_loss(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, proj: torch.nn.Module) -> torch.Tensor:
    """L_hidn = MSE(H^S W_h, H^T).  H^S: (B, L, d'), H^T: (B, L, d), W_h: d' -> d."""
    return F.mse_loss(proj(student_hidden), teacher_hidden)


def attention_loss(student_scores: torch.Tensor, teacher_scores: torch.Tensor) -> torch.Tensor:
    """L_attn = (1/h) sum_i MSE(A_i^S, A_i^T) on pre-softmax scores (B, h, L, L).

    With equal head counts the mean over heads of per-head MSEs equals the MSE over all
    elements. Masked entries (<= -100: transformers puts the dtype minimum there) are set to
    0 on both sides, as in the reference, so padding contributes nothing and nothing overflows.
    """
    if student_scores.shape != teacher_scores.shape:
        raise ValueError(f"attention shapes differ: student {tuple(student_scores.shape)}, teacher {tuple(teacher_scores.shape)}")
    return F.mse_loss(_zero_masked(student_scores), _zero_masked(teacher_scores))


def head_mean_attention_loss(student_scores: torch.Tensor, teacher_scores: torch.Tensor) -> torch.Tensor:
    """Fallback for different head counts (``attention_heads: mean``, not in the paper):
    MSE between the head-averaged score maps (B, L, L) of both sides, masked entries zeroed
    first as in :func:`attention_loss`. With one head each it is exactly :func:`attention_loss`."""
    if student_scores.shape[0] != teacher_scores.shape[0] or student_scores.shape[2:] != teacher_scores.shape[2:]:
        raise ValueError(f"attention shapes differ: student {tuple(student_scores.shape)}, teacher {tuple(teacher_scores.shape)}")
    return F.mse_loss(_zero_masked(student_scores).mean(dim=1), _zero_masked(teacher_scores).mean(dim=1))


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
