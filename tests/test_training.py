import math

import pytest
import torch

from tests.training_helpers import fit
from tinybert.config import TrainSchedule
from tinybert.training import (INTERRUPT_ENV, BatchSource, SimulatedInterruption, adamw, checkpoint_dir, total_steps, train,
                               write_log)


def _setup():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.3), torch.nn.Linear(8, 1))
    x = torch.randn(20, 3, generator=torch.Generator().manual_seed(1))
    y = x.sum(-1, keepdim=True)
    source = BatchSource(20, lambda idx: {"x": x[idx], "y": y[idx]})
    return model, source


def _run(checkpoint_to, schedule):
    model, source = _setup()
    return model, fit(model, source, checkpoint_to, schedule)


SCHEDULE = TrainSchedule(epochs=2, batch_size=6, lr=0.05, checkpoint_every=2, log_every=1)


def test_epochs_round_up_to_whole_batches():
    assert total_steps(20, SCHEDULE) == 8
    assert total_steps(20, SCHEDULE.model_copy(update={"max_steps": 3})) == 3


def test_interrupted_training_resumes_to_the_same_weights_and_curve(tmp_path, monkeypatch):
    reference, reference_log = _run(tmp_path / "straight", SCHEDULE)

    monkeypatch.setenv(INTERRUPT_ENV, "5")
    with pytest.raises(SimulatedInterruption):
        _run(tmp_path / "resumed", SCHEDULE)
    assert (tmp_path / "resumed" / "state.pt").is_file()  # checkpoint of step 4 survived
    monkeypatch.delenv(INTERRUPT_ENV)
    resumed, resumed_log = _run(tmp_path / "resumed", SCHEDULE)

    assert [row["step"] for row in resumed_log] == list(range(1, 9))
    assert [r["loss"] for r in resumed_log] == pytest.approx([r["loss"] for r in reference_log], rel=1e-6)
    for a, b in zip(reference.parameters(), resumed.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_the_log_says_where_the_run_trained(tmp_path):
    _, log = _run(tmp_path, SCHEDULE)
    assert log.runtime == {"device": "cpu", "precision": "fp32", "processes": 1, "torch": torch.__version__}


def test_the_log_gives_each_step_the_learning_rate_it_was_taken_with(tmp_path):
    # Linear warm-up over 2 of 8 steps, then linear decay; the first step is taken at lr 0, as
    # the reference's BertAdam takes it (its schedule reads the step count before counting it).
    _, log = _run(tmp_path, SCHEDULE.model_copy(update={"warmup_ratio": 0.25}))
    factors = [0.0, 0.5, 1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6]
    assert [row["lr"] for row in log] == pytest.approx([SCHEDULE.lr * f for f in factors])


def test_weight_decay_spares_biases_and_layer_norm_weights_as_the_reference_does(tmp_path):
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dense = torch.nn.Linear(3, 3)
            self.LayerNorm = torch.nn.LayerNorm(3)  # the name BERT gives it

        def forward(self, x):
            return self.LayerNorm(self.dense(x))

    torch.manual_seed(0)
    block = Block()
    before = {name: p.detach().clone() for name, p in block.named_parameters()}
    source = BatchSource(4, lambda idx: {"x": torch.ones(len(idx), 3)})
    log = train(name="t", modules={"block": block}, param_groups=[{"params": list(block.parameters())}],
                loss_fn=lambda batch, step: (0.0 * block(batch["x"]).sum(), {}),  # no gradient: only the decay moves
                batches=source, schedule=TrainSchedule(max_steps=3, batch_size=4, lr=0.1, weight_decay=0.5),
                checkpoint_to=tmp_path)
    after = dict(block.named_parameters())
    shrink = math.prod(1 - row["lr"] * 0.5 for row in log)  # AdamW's decoupled decay, step by step
    assert shrink < 0.95
    assert torch.allclose(after["dense.weight"], before["dense.weight"] * shrink)
    for name in ("dense.bias", "LayerNorm.weight", "LayerNorm.bias"):
        assert torch.equal(after[name], before[name]), name


def test_loss_goes_down_on_a_learnable_problem(tmp_path):
    _, log = _run(tmp_path, SCHEDULE.model_copy(update={"epochs": 10}))
    assert log[-1]["loss"] < 0.5 * log[0]["loss"]


def test_loss_log_is_written_as_csv_with_every_column(tmp_path):
    write_log([{"step": 1, "loss": 0.5, "lr": 1e-4}, {"step": 2, "loss": 0.25, "lr": 1e-4, "hidden_loss": 0.1}], tmp_path / "log.csv")
    assert (tmp_path / "log.csv").read_text().splitlines() == ["step,loss,lr,hidden_loss", "1,0.5,0.0001,", "2,0.25,0.0001,0.1"]


def test_loss_log_writes_steps_past_a_million_exactly(tmp_path):
    write_log([{"step": n, "loss": 0.5, "lr": 1e-4} for n in (999_999, 1_000_000, 1_000_001, 1_234_567)], tmp_path / "log.csv")
    steps = [line.split(",")[0] for line in (tmp_path / "log.csv").read_text().splitlines()[1:]]
    assert steps == ["999999", "1000000", "1000001", "1234567"]


def test_length_grouped_batches_cover_every_example_once_per_epoch_with_little_padding():
    lengths = [(i * 37) % 50 + 1 for i in range(1000)]
    source = BatchSource(1000, lambda idx: idx, lengths)
    schedule = TrainSchedule(batch_size=10, seed=3)
    batches = [source.batch(schedule, step) for step in range(100)]
    assert sorted(i for b in batches for i in b) == list(range(1000))
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded < 1.2 * sum(lengths)
    assert batches != [source.batch(schedule, step) for step in range(100, 200)]  # next epoch reshuffles


def test_a_stage_names_its_stale_checkpoint_folders_and_their_size(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TINYBERT_CHECKPOINTS", str(tmp_path))
    current = checkpoint_dir("task-distill", {"lr": 1e-4}, module="tinybert.distill.task")
    stale = checkpoint_dir("task-distill", {"lr": 5e-5}, module="tinybert.distill.task")
    stale.mkdir()
    (stale / "state.pt").write_bytes(b"0" * 2**20)
    (tmp_path / "general-distill-0123456789abcdef").mkdir()  # another stage's: not this stage's business
    capsys.readouterr()

    assert checkpoint_dir("task-distill", {"lr": 1e-4}, module="tinybert.distill.task") == current
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"[task-distill] note: {stale} (1.0 MiB) holds an interrupted run's state for other "
                     "parameters, inputs or code; delete it if you will not rerun those"]


def _adamw_steps(fused: bool | None, steps: int = 30) -> list[torch.Tensor]:
    start = torch.Generator().manual_seed(2)
    params = [torch.randn(40, 30, generator=start).requires_grad_(), torch.randn(30, generator=start).requires_grad_()]
    groups = [{"params": params[:1]}, {"params": params[1:], "weight_decay": 0.0}]
    optimizer = adamw(groups, lr=1e-2, weight_decay=0.01) if fused else torch.optim.AdamW(groups, lr=1e-2, weight_decay=0.01)
    grads = torch.Generator().manual_seed(3)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=grads)
        optimizer.step()
    return [p.detach() for p in params]


def test_training_uses_the_fused_adamw_kernel_on_the_cpu_and_it_takes_pytorch_s_default_steps():
    assert adamw([{"params": [torch.zeros(2, requires_grad=True)]}], lr=1e-3).defaults["fused"] is True
    fused, default = _adamw_steps(fused=True), _adamw_steps(fused=None)
    for a, b in zip(fused, default):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)  # float32's last bits, no more
    assert not torch.allclose(fused[0], _adamw_steps(fused=True, steps=29)[0], rtol=1e-6, atol=1e-6)  # it can fail


def test_adamw_leaves_a_device_without_a_fused_kernel_to_pytorch_s_default():
    assert not adamw([{"params": [torch.zeros(2, device="meta", requires_grad=True)]}], lr=1e-3).defaults["fused"]
