import math

import pytest
import torch

from tinybert.losses import attention_loss, embedding_loss, hidden_loss, regression_prediction_loss, soft_cross_entropy


class Scale(torch.nn.Module):
    """A fixed projection d'=1 -> d=2: x -> (x, 2x)."""

    def forward(self, x):
        return torch.cat([x, 2 * x], dim=-1)


def test_embedding_loss_is_mse_of_projected_student_against_teacher():
    student = torch.tensor([[[1.0], [2.0]]])  # (1, 2, 1)
    teacher = torch.tensor([[[1.0, 1.0], [2.0, 5.0]]])  # (1, 2, 2)
    # projected: (1, 2), (2, 4); squared errors 0, 1, 0, 1 -> mean 0.5
    assert embedding_loss(student, teacher, Scale()).item() == pytest.approx(0.5)


def test_hidden_loss_is_mse_of_projected_student_against_teacher():
    student = torch.tensor([[[0.0], [3.0]]])
    teacher = torch.tensor([[[1.0, 0.0], [3.0, 6.0]]])
    # projected: (0, 0), (3, 6); squared errors 1, 0, 0, 0 -> 0.25
    assert hidden_loss(student, teacher, Scale()).item() == pytest.approx(0.25)


def test_attention_loss_averages_over_heads_and_zeroes_masked_entries():
    masked = torch.finfo(torch.float32).min
    student = torch.tensor([[[[1.0, masked]], [[0.0, masked]]]])  # (1, 2 heads, 1, 2)
    teacher = torch.tensor([[[[3.0, masked]], [[1.0, -10000.0]]]])
    # head 1: errors (2^2, 0) -> 2; head 2: (1^2, 0) -> 0.5; (1/h) sum = 1.25
    loss = attention_loss(student, teacher)
    assert math.isfinite(loss.item())
    assert loss.item() == pytest.approx(1.25)


def test_attention_loss_refuses_different_shapes():
    with pytest.raises(ValueError, match="attention shapes differ"):
        attention_loss(torch.zeros(1, 2, 3, 3), torch.zeros(1, 4, 3, 3))


def test_soft_cross_entropy_matches_hand_computation_at_temperature_two():
    student = torch.tensor([[0.0, 2.0]])
    teacher = torch.tensor([[2.0, 0.0]])
    t = 2.0
    p = [math.exp(1) / (math.exp(1) + 1), 1 / (math.exp(1) + 1)]  # softmax(teacher / 2)
    log_q = [0 - math.log(1 + math.exp(1)), 1 - math.log(1 + math.exp(1))]  # log_softmax(student / 2)
    expected = -(p[0] * log_q[0] + p[1] * log_q[1])
    assert soft_cross_entropy(student, teacher, t).item() == pytest.approx(expected, rel=1e-6)


def test_soft_cross_entropy_averages_over_the_batch():
    one = torch.tensor([[0.0, 0.0]])
    both = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    assert soft_cross_entropy(both, both).item() == pytest.approx(soft_cross_entropy(one, one).item()) == pytest.approx(math.log(2))


def test_soft_cross_entropy_under_cpu_bf16_autocast_is_computed_in_fp32():
    student = torch.tensor([[0.1, 2.3, -1.7]], dtype=torch.bfloat16)
    teacher = torch.tensor([[1.9, 0.2, 0.4]], dtype=torch.bfloat16)
    exact = soft_cross_entropy(student.double(), teacher.double(), 2.0).item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = soft_cross_entropy(student, teacher, 2.0)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(exact, rel=1e-6)  # a bf16 log-probability is off by about 1e-3


def test_regression_prediction_loss_is_mse_between_logits():
    assert regression_prediction_loss(torch.tensor([[1.0], [3.0]]), torch.tensor([[2.0], [3.0]])).item() == pytest.approx(0.5)
