import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from tinybert.capture import enable_capture, forward_features
from tinybert.config import LossWeights
from tinybert.distill.matches import Match, build_matches
from tinybert.distill.objective import DistillationObjective
from tinybert.errors import InputError
from tinybert.losses import attention_loss, embedding_loss, hidden_loss, soft_cross_entropy


def test_intermediate_matches_follow_the_uniform_mapping():
    matches = build_matches("uniform", 4, 12, LossWeights(), intermediate=True, prediction=False)
    assert matches[0] == Match("embedding", 0, 0, 1.0)
    assert [(m.student, m.teacher) for m in matches if m.feature == "hidden"] == [(1, 3), (2, 6), (3, 9), (4, 12)]
    assert [(m.student, m.teacher) for m in matches if m.feature == "attention"] == [(1, 3), (2, 6), (3, 9), (4, 12)]
    assert not any(m.feature == "prediction" for m in matches)


def test_prediction_match_links_layer_m_plus_1_to_n_plus_1():
    matches = build_matches("uniform", 4, 12, LossWeights(), intermediate=False, prediction=True)
    assert matches == [Match("prediction", 5, 13, 1.0)]


def test_a_loss_with_weight_zero_is_left_out():
    matches = build_matches("bottom", 2, 6, LossWeights(attention=0.0), intermediate=True, prediction=False)
    assert {m.feature for m in matches} == {"embedding", "hidden"}


def _models(student_heads=4):
    torch.manual_seed(0)
    teacher_cfg = BertConfig(vocab_size=120, hidden_size=24, num_hidden_layers=4, num_attention_heads=4, intermediate_size=48)
    student_cfg = BertConfig(vocab_size=120, hidden_size=8, num_hidden_layers=2, num_attention_heads=student_heads, intermediate_size=16)
    return enable_capture(BertForSequenceClassification(student_cfg)), enable_capture(BertForSequenceClassification(teacher_cfg))


def test_objective_sums_weighted_losses_of_every_match(padded_batch):
    student, teacher = _models()
    matches = build_matches("uniform", 2, 4, LossWeights(hidden=2.0), intermediate=True, prediction=True)
    objective = DistillationObjective(matches, 8, 24, student_heads=4, teacher_heads=4)
    s, t = forward_features(student, padded_batch), forward_features(teacher, padded_batch)
    total, parts = objective(s, t)
    proj = objective.hidden_proj
    expected = (
        hidden_loss(s.hidden[0], t.hidden[0], proj)
        + 2 * (hidden_loss(s.hidden[1], t.hidden[2], proj) + hidden_loss(s.hidden[2], t.hidden[4], proj))
        + attention_loss(s.scores[0], t.scores[1]) + attention_loss(s.scores[1], t.scores[3])
        + soft_cross_entropy(s.logits, t.logits)
    )
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    assert set(parts) == {"embedding_loss", "hidden_loss", "attention_loss", "prediction_loss"}


def test_separate_projections_and_layer_weights_give_the_per_layer_sum_and_each_kinds_unweighted_part(padded_batch):
    # The objective computes each loss kind's layers together; this is the sum it must equal,
    # written one layer at a time with the per-layer loss functions.
    student, teacher = _models()
    matches = build_matches("bottom", 2, 4, LossWeights(attention=0.5), intermediate=True, prediction=False,
                            layer_weights={0: 2.0, 2: 3.0})
    objective = DistillationObjective(matches, 8, 24, student_heads=4, teacher_heads=4, shared_projection=False)
    s = forward_features(student, padded_batch)
    with torch.inference_mode():  # as the loop runs the teacher
        t = forward_features(teacher, padded_batch)
    total, parts = objective(s, t)
    embedding = embedding_loss(s.hidden[0], t.hidden[0].clone(), objective.embedding_proj)
    hidden = [hidden_loss(s.hidden[m], t.hidden[m].clone(), objective.hidden_proj) for m in (1, 2)]
    attention = [attention_loss(s.scores[m - 1], t.scores[m - 1]) for m in (1, 2)]
    expected = 2.0 * embedding + hidden[0] + 3.0 * hidden[1] + 0.5 * attention[0] + 1.5 * attention[1]
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert parts["embedding_loss"].item() == pytest.approx(embedding.item(), rel=1e-6)
    assert parts["hidden_loss"].item() == pytest.approx((hidden[0] + hidden[1]).item(), rel=1e-6)
    assert parts["attention_loss"].item() == pytest.approx((attention[0] + attention[1]).item(), rel=1e-6)
    total.backward()  # the teacher's inference-mode outputs may take part in a loss autograd differentiates
    assert objective.embedding_proj.weight.grad is not None and objective.hidden_proj.weight.grad is not None
    # what checkpoints and the saved projections hold: W_h and W_e only
    assert set(objective.state_dict()) == {"hidden_proj.weight", "hidden_proj.bias", "embedding_proj.weight", "embedding_proj.bias"}


def test_shared_projection_is_one_module_and_separate_is_two():
    matches = build_matches("uniform", 2, 4, LossWeights(), intermediate=True, prediction=False)
    shared = DistillationObjective(matches, 8, 24, student_heads=4, teacher_heads=4)
    separate = DistillationObjective(matches, 8, 24, student_heads=4, teacher_heads=4, shared_projection=False)
    assert shared.embedding_proj is shared.hidden_proj
    assert separate.embedding_proj is not separate.hidden_proj


def test_different_head_counts_are_refused_with_the_attention_loss():
    matches = build_matches("uniform", 2, 4, LossWeights(), intermediate=True, prediction=False)
    with pytest.raises(InputError, match="student has 2, teacher 4"):
        DistillationObjective(matches, 8, 24, student_heads=2, teacher_heads=4)


def test_different_head_counts_are_allowed_once_the_attention_loss_is_off():
    matches = build_matches("uniform", 2, 4, LossWeights(attention=0.0), intermediate=True, prediction=False)
    DistillationObjective(matches, 8, 24, student_heads=2, teacher_heads=4)


def test_masked_keys_contribute_nothing_to_the_attention_loss(padded_batch):
    student, teacher = _models()
    s, t = forward_features(student, padded_batch), forward_features(teacher, padded_batch)
    real_key = padded_batch["attention_mask"][:, None, None, :].bool().expand_as(s.scores[0])
    # by hand: squared error on real keys only, divided by every element (reference rule)
    diff = torch.where(real_key, s.scores[0] - t.scores[0], torch.zeros(()))
    expected = (diff**2).sum() / diff.numel()
    assert attention_loss(s.scores[0], t.scores[0]).item() == pytest.approx(expected.item(), rel=1e-5)


def test_layer_weights_scale_each_student_layer_on_top_of_the_loss_kind_weight():
    matches = build_matches(
        "uniform", 2, 4, LossWeights(hidden=2.0), intermediate=True, prediction=True, layer_weights={0: 0.5, 2: 3.0, 3: 0.0}
    )
    weights = {(m.feature, m.student): m.weight for m in matches}
    assert weights[("embedding", 0)] == 0.5
    assert weights[("hidden", 1)] == 2.0 and weights[("attention", 1)] == 1.0
    assert weights[("hidden", 2)] == 6.0 and weights[("attention", 2)] == 3.0
    assert ("prediction", 3) not in weights  # lambda 0 drops the prediction layer


def test_layer_weights_for_a_layer_the_student_lacks_are_refused():
    with pytest.raises(InputError, match=r"student layers are 0\.\.3 .* got \[7\]"):
        build_matches("uniform", 2, 4, LossWeights(), intermediate=True, prediction=True, layer_weights={7: 1.0})


def _with_head_averaged_fallback(batch, student_heads: int):
    """Features of both models and the objective's output, under ``attention_heads: mean``."""
    student, teacher = _models(student_heads=student_heads)
    matches = build_matches("uniform", 2, 4, LossWeights(), intermediate=True, prediction=False)
    objective = DistillationObjective(matches, 8, 24, student_heads=student_heads, teacher_heads=4, attention_heads="mean")
    s, t = forward_features(student, batch), forward_features(teacher, batch)
    return s, t, *objective(s, t)


def test_different_head_counts_can_fall_back_to_head_averaged_attention(padded_batch):
    s, t, total, parts = _with_head_averaged_fallback(padded_batch, student_heads=2)
    assert torch.isfinite(total)
    masked = lambda x: torch.where(x <= -100, torch.zeros(()), x)  # noqa: E731
    expected = torch.nn.functional.mse_loss(masked(s.scores[0]).mean(1), masked(t.scores[1]).mean(1))
    expected = expected + torch.nn.functional.mse_loss(masked(s.scores[1]).mean(1), masked(t.scores[3]).mean(1))
    assert parts["attention_loss"] == pytest.approx(expected.item(), rel=1e-5)


def test_the_head_averaged_fallback_leaves_equal_head_counts_to_the_per_head_loss(padded_batch):
    s, t, _, parts = _with_head_averaged_fallback(padded_batch, student_heads=4)
    expected = attention_loss(s.scores[0], t.scores[1]) + attention_loss(s.scores[1], t.scores[3])
    assert parts["attention_loss"] == pytest.approx(expected.item(), rel=1e-6)


def test_head_averaged_attention_with_one_head_each_is_the_reference_loss():
    from tinybert.losses import head_mean_attention_loss

    s, t = torch.randn(2, 1, 5, 5), torch.randn(2, 1, 5, 5)
    s[..., -1] = torch.finfo(torch.float32).min
    assert head_mean_attention_loss(s, t).item() == pytest.approx(attention_loss(s, t).item())


def test_prediction_step_from_cached_teacher_logits_matches_running_the_teacher(padded_batch, tmp_path):
    from tinybert.batching import Encoded
    from tinybert.config import TrainSchedule
    from tinybert.distill.loop import distill
    from tinybert.models import batched_logits
    from tinybert.training import BatchSource

    ids = [row[mask.bool()].tolist() for row, mask in zip(padded_batch["input_ids"], padded_batch["attention_mask"])]
    data = Encoded(ids, [[0] * len(r) for r in ids], [0, 1, 0])
    schedule = TrainSchedule(max_steps=4, batch_size=2, lr=1e-3, checkpoint_every=100)
    matches = build_matches("uniform", 2, 4, LossWeights(), intermediate=False, prediction=True)
    logs = {}
    for cached in (False, True):
        student, teacher = _models()
        cache = batched_logits(teacher, data, batch_size=3, pad_id=0) if cached else None

        def collate(idx, cache=cache):
            batch = data.collate(idx)
            if cache is not None:
                batch["teacher_logits"] = cache[idx]
            return batch

        objective = DistillationObjective(matches, 8, 24, student_heads=4, teacher_heads=4)
        logs[cached] = distill(
            name="p", student=student, teacher=None if cached else teacher, objective=objective,
            batches=BatchSource(len(data), collate), schedule=schedule, checkpoint_to=tmp_path / str(cached),
        )
    assert [r["loss"] for r in logs[True]] == pytest.approx([r["loss"] for r in logs[False]], rel=1e-4)


def test_bf16_distillation_runs_a_bf16_copy_of_the_teacher_and_leaves_the_callers_teacher_as_it_was(padded_batch, tmp_path):
    from tinybert.batching import Encoded
    from tinybert.config import TrainSchedule
    from tinybert.distill.loop import distill, frozen_teacher
    from tinybert.training import BatchSource

    ids = [row[mask.bool()].tolist() for row, mask in zip(padded_batch["input_ids"], padded_batch["attention_mask"])]
    data = Encoded(ids, [[0] * len(r) for r in ids], [0, 1, 0])
    matches = build_matches("uniform", 2, 4, LossWeights(), intermediate=True, prediction=False)
    logs = {}
    for precision in ("fp32", "bf16"):
        student, teacher = _models()
        before = {k: v.clone() for k, v in teacher.state_dict().items()}
        torch.manual_seed(1)
        objective = DistillationObjective(matches, 8, 24, student_heads=4, teacher_heads=4)
        schedule = TrainSchedule(max_steps=3, batch_size=3, lr=1e-3, checkpoint_every=100, precision=precision)
        logs[precision] = distill(name=precision, student=student, teacher=teacher, objective=objective,
                                  batches=BatchSource(len(data), lambda idx: data.collate(idx)), schedule=schedule,
                                  checkpoint_to=tmp_path / precision)
        after = teacher.state_dict()
        assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())
    runner = frozen_teacher(teacher, torch.device("cpu"), "bf16")
    assert runner.bert.encoder.layer[0].attention.self.query.weight.dtype == torch.bfloat16
    assert runner.bert.embeddings.word_embeddings.weight.dtype == runner.bert.embeddings.LayerNorm.weight.dtype == torch.float32
    # the copy's targets are, bit for bit, the fp32 teacher's under the same autocast
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        fast, exact = forward_features(runner, padded_batch), forward_features(teacher.eval(), padded_batch)
    assert all(torch.equal(a, b) for a, b in zip(fast.hidden + fast.scores, exact.hidden + exact.scores))
    # bf16 rounds the teacher's targets and the student's products, not the losses' scale
    assert [r["loss"] for r in logs["bf16"]] == pytest.approx([r["loss"] for r in logs["fp32"]], rel=0.05)


def test_a_regression_task_distils_the_single_logit_with_mse(padded_batch):
    torch.manual_seed(0)
    small = dict(vocab_size=120, num_attention_heads=4, num_labels=1)
    student = enable_capture(BertForSequenceClassification(BertConfig(hidden_size=8, num_hidden_layers=2, intermediate_size=16, **small)))
    teacher = enable_capture(BertForSequenceClassification(BertConfig(hidden_size=24, num_hidden_layers=4, intermediate_size=48, **small)))
    matches = build_matches("uniform", 2, 4, LossWeights(), intermediate=False, prediction=True)
    s, t = forward_features(student, padded_batch), forward_features(teacher, padded_batch)
    total, _ = DistillationObjective(matches, 8, 24, student_heads=4, teacher_heads=4, regression=True)(s, t)
    assert total.item() == pytest.approx(torch.nn.functional.mse_loss(s.logits, t.logits).item(), rel=1e-6)
    assert total.item() > 0
    # what the classification loss would give: nothing to learn from one logit
    classification, _ = DistillationObjective(matches, 8, 24, student_heads=4, teacher_heads=4)(s, t)
    assert classification.item() == pytest.approx(0.0, abs=1e-6)


def _intermediate_objective(shared=True, student_hidden=8, teacher_hidden=24, seed=0):
    torch.manual_seed(seed)
    matches = build_matches("uniform", 2, 4, LossWeights(), intermediate=True, prediction=False)
    return DistillationObjective(matches, student_hidden, teacher_hidden, student_heads=4, teacher_heads=4,
                                 shared_projection=shared)


@pytest.mark.parametrize("saved_shared,loaded_shared", [(True, True), (True, False), (False, True), (False, False)])
def test_projections_carry_over_from_general_to_task_distillation_whatever_each_stage_shares(saved_shared, loaded_shared):
    general = _intermediate_objective(shared=saved_shared, seed=1)
    task = _intermediate_objective(shared=loaded_shared, seed=2)
    assert not torch.equal(task.hidden_proj.weight, general.hidden_proj.weight)
    task.start_projections_from(general.projection_tensors())
    for proj in ("hidden_proj", "embedding_proj"):
        for name in ("weight", "bias"):
            expected = getattr(getattr(general, "hidden_proj" if loaded_shared else proj), name)
            assert torch.equal(getattr(getattr(task, proj), name), expected)
    assert (task.embedding_proj is task.hidden_proj) == loaded_shared


def test_saved_projections_are_copies_that_later_training_does_not_change():
    general = _intermediate_objective()
    saved = general.projection_tensors()
    with torch.no_grad():
        general.hidden_proj.weight.add_(1.0)
    assert not torch.equal(saved["hidden.weight"], general.hidden_proj.weight)
    assert saved["hidden.weight"].data_ptr() != saved["embedding.weight"].data_ptr()  # safetensors refuses shared storage


def test_projections_of_another_width_are_named_and_refused():
    saved = _intermediate_objective(teacher_hidden=24).projection_tensors()
    task = _intermediate_objective(teacher_hidden=32)
    assert task.projection_mismatch(saved) == "hidden.weight is (24, 8), this stage needs (32, 8)"
    with pytest.raises(ValueError, match="hidden.weight"):
        task.start_projections_from(saved)
    assert task.projection_mismatch({}) == "no hidden.weight"
