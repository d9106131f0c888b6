"""Several processes (gloo on CPU) and reduced precision run the same training loop."""
from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.training_helpers import fit
from tinybert.config import TrainSchedule
from tinybert.runtime import Runtime
from tinybert.training import INTERRUPT_ENV, BatchSource, SimulatedInterruption

# Even batches, no dropout: two processes averaging their half-batch gradients take exactly
# the steps one process takes on the whole batch.
# On the CPU even where a GPU is present: this is the gloo path, and one GPU cannot host two ranks.
SCHEDULE = TrainSchedule(epochs=3, batch_size=6, lr=0.05, warmup_ratio=0.0, checkpoint_every=100, log_every=100,
                         device="cpu")


def _problem(examples: int = 24):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    x = torch.randn(examples, 3, generator=torch.Generator().manual_seed(1))
    y = x.sum(-1, keepdim=True)
    return model, BatchSource(examples, lambda idx: {"x": x[idx], "y": y[idx]})


def _train(model, source, checkpoint_to, schedule=SCHEDULE):
    return fit(model, source, checkpoint_to, schedule)


def _worker(rank: int, world: int, port: int, out_dir: str, examples: int = 24) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank))
    try:
        model, source = _problem(examples)
        if rank == 1:  # a different start: process 0's weights must be broadcast
            torch.nn.init.zeros_(model[0].weight)
        log = _train(model, source, os.path.join(out_dir, "ckpt"))
        torch.save({"weights": model.state_dict(), "log": list(log)}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _dropout_problem():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.3), torch.nn.Linear(8, 1))
    x = torch.randn(24, 3, generator=torch.Generator().manual_seed(1))
    y = x.sum(-1, keepdim=True)
    return model, BatchSource(24, lambda idx: {"x": x[idx], "y": y[idx]})


RESUMABLE = SCHEDULE.model_copy(update={"checkpoint_every": 2, "log_every": 1})


def _resume_worker(rank: int, world: int, port: int, out_dir: str, interrupt_at: int) -> None:
    """One process of a run that stops after ``interrupt_at`` steps (0: runs to the end)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank))
    if interrupt_at:
        os.environ[INTERRUPT_ENV] = str(interrupt_at)
    try:
        model, source = _dropout_problem()
        log = _train(model, source, os.path.join(out_dir, "ckpt"), RESUMABLE)
        torch.save({"weights": model.state_dict(), "log": list(log)}, os.path.join(out_dir, f"rank{rank}.pt"))
    except SimulatedInterruption:
        pass
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# 2 processes, 24 examples: every batch of 6 splits 3 + 3. 23: each epoch ends with a batch of 5,
# split 3 + 2. 3 processes, 26 examples: each epoch ends with a batch of 2, and process 2 has no
# example of it (its stand-in copy of the first must count for nothing).
@pytest.mark.parametrize("world, examples", [(2, 24), (2, 23), (3, 26)])
def test_gloo_processes_train_like_one_process_on_the_whole_batch(tmp_path, world, examples):
    mp.spawn(_worker, args=(world, _free_port(), str(tmp_path), examples), nprocs=world, join=True)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, world - 1))
    single_model, source = _problem(examples)
    single_log = _train(single_model, source, tmp_path / "single")

    for key, value in single_model.state_dict().items():
        assert torch.equal(rank0["weights"][key], rank1["weights"][key]), f"{key} differs between processes"
        assert torch.allclose(rank0["weights"][key], value, atol=1e-5), f"{key} differs from one-process training"
    assert [row["loss"] for row in rank0["log"]] == pytest.approx([row["loss"] for row in single_log], rel=1e-4)


def test_each_process_takes_an_equal_slice_of_the_global_batch():
    share = lambda rank: Runtime(torch.device("cpu"), rank=rank, world_size=2).my_share([10, 11, 12, 13, 14])  # noqa: E731
    assert share(0) == [10, 12, 14] and share(1) == [11, 13]
    assert Runtime(torch.device("cpu"), rank=1, world_size=2).my_share([7]) == [7]


def test_a_short_batch_weights_each_process_by_its_share_of_the_examples():
    weight = lambda rank, batch: Runtime(torch.device("cpu"), rank=rank, world_size=2).share_weight(batch)  # noqa: E731
    assert (weight(0, [1, 2, 3, 4]), weight(1, [1, 2, 3, 4])) == (1.0, 1.0)
    assert (weight(0, [1, 2, 3, 4, 5]), weight(1, [1, 2, 3, 4, 5])) == (1.2, 0.8)
    assert (weight(0, [7]), weight(1, [7])) == (2.0, 0.0)  # process 1's stand-in example counts for nothing


def test_bf16_autocast_trains_on_the_cpu(tmp_path):
    model, source = _problem()
    log = _train(model, source, tmp_path, SCHEDULE.model_copy(update={"precision": "bf16", "epochs": 6}))
    assert log[-1]["loss"] < log[0]["loss"]


def test_fp16_without_a_gpu_is_a_clear_error():
    from tinybert.errors import InputError

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(InputError, match="fp16 needs a CUDA GPU"):
        Runtime.create("auto", "fp16")


def test_two_processes_killed_and_resumed_continue_as_if_never_stopped(tmp_path):
    """Each process draws its own dropout masks; a resumed run restores each one's random state."""
    def spawn(out_dir, interrupt_at=0):
        mp.spawn(_resume_worker, args=(2, _free_port(), str(out_dir), interrupt_at), nprocs=2, join=True)

    spawn(tmp_path / "straight")
    spawn(tmp_path / "resumed", interrupt_at=5)  # the checkpoint of step 4 survives
    assert not (tmp_path / "resumed" / "rank0.pt").exists()
    spawn(tmp_path / "resumed")

    straight, resumed = (torch.load(tmp_path / run / "rank0.pt") for run in ("straight", "resumed"))
    assert [row["step"] for row in resumed["log"]] == list(range(1, 13))
    assert [r["loss"] for r in resumed["log"]] == pytest.approx([r["loss"] for r in straight["log"]], rel=1e-6)
    for key, value in straight["weights"].items():
        assert torch.allclose(resumed["weights"][key], value, atol=1e-6), key
