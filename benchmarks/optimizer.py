"""One AdamW step over the student's parameters: the kernel every training stage uses against
PyTorch's default.

``tinybert.training.adamw`` asks for the fused kernel (one pass over each tensor) on devices that
have one. PyTorch's default on a CPU, which the loop used until 2026-11-29, updates each tensor
with a dozen elementwise operators; on a GPU its default is the multi-tensor ("foreach") path.
The baselines, measured in the same run on the same parameters and gradients: the default, and
foreach. The student is params.yaml's (general_distill.student) with the task head and W_h of a
BERT-base teacher, the parameters one distillation step updates.

    python benchmarks/optimizer.py [--params params.yaml] [--device cuda] [--steps 20]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification

import tinybert  # noqa: F401  (offline defaults)
from tinybert.config import load_params
from tinybert.models import student_config
from tinybert.training import adamw


def student_parameters(params_file: Path, device: str) -> list[torch.nn.Parameter]:
    shape = load_params(params_file).general_distill.student
    teacher = BertConfig(num_labels=2)  # bert-base-uncased's shape
    student = BertForSequenceClassification(student_config(teacher, shape)).to(device)
    projection = torch.nn.Linear(shape.hidden, teacher.hidden_size).to(device)
    return [p for module in (student, projection) for p in module.parameters()]


def seconds_per_step(parameters: list[torch.nn.Parameter], steps: int, **kind) -> float:
    optimizer = (adamw([{"params": parameters}], lr=1e-4, weight_decay=0.01) if kind.get("fused")
                 else torch.optim.AdamW(parameters, lr=1e-4, weight_decay=0.01, **kind))
    for p in parameters:
        p.grad = torch.randn_like(p)
    for _ in range(3):  # state allocation and first-call costs
        optimizer.step()
    synchronize(parameters[0].device)
    began = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    synchronize(parameters[0].device)
    return (time.perf_counter() - began) / steps


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    parameters = student_parameters(args.params, args.device)
    count = sum(p.numel() for p in parameters)
    print(f"AdamW step over {len(parameters)} tensors, {count / 1e6:.1f}M parameters, on {args.device} "
          f"({torch.get_num_threads()} threads), mean of {args.steps}")
    default = seconds_per_step(parameters, args.steps)
    foreach = seconds_per_step(parameters, args.steps, foreach=True)
    fused = seconds_per_step(parameters, args.steps, fused=True)
    print(f"PyTorch default        {default * 1000:8.2f} ms")
    print(f"foreach (multi-tensor) {foreach * 1000:8.2f} ms")
    print(f"fused (tinybert)       {fused * 1000:8.2f} ms   {default / fused:.1f}x the default, "
          f"{foreach / fused:.1f}x foreach")


if __name__ == "__main__":
    main()
