"""The distillation objective alone: layers stacked per loss kind against one loss per match.

The objective (``tinybert.distill.objective``) computes each loss kind's matched layers together.
The baseline, measured in the same run, is the same sum written one match at a time, as the
objective computed it until 2026-11-28: per layer a projection, ``F.mse_loss`` (after zeroing
masked scores, for attention), a weighting and an accumulation. Both run forward and backward
on the same features: a TinyBERT4 student's (leaf tensors, so backward stops at the objective)
against a 12-layer teacher's, made under inference mode as the loop makes them.

Printed per variant: aten operators per forward + backward (all, and outermost: the ones the
host dispatches itself; views among them launch no kernel), the time of one, and the ratio.
``--tiny`` shrinks every dimension so that dispatch, not arithmetic, is the cost: the regime of
a short general-distillation step on a GPU, where the loop's overhead target (1.15) is missed.

    python benchmarks/objective.py [--tiny] [--device cuda] [--precision bf16]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

import tinybert  # noqa: F401  (offline defaults)
from tinybert.capture import MASKED_SCORE_THRESHOLD, Features
from tinybert.config import LossWeights
from tinybert.distill.matches import build_matches
from tinybert.distill.objective import DistillationObjective
from tinybert.runtime import Runtime


def features(layers: int, hidden: int, heads: int, batch: int, length: int, device: str, *, student: bool) -> Features:
    generator = torch.Generator().manual_seed(hidden)

    def tensor(*shape):
        return torch.randn(*shape, generator=generator).to(device).requires_grad_(student)

    states = tuple(tensor(batch, length, hidden) for _ in range(layers + 1))
    scores = tuple(tensor(batch, heads, length, length) for _ in range(layers))
    if student:
        return Features(states, scores, None)
    with torch.inference_mode():  # the loop runs the teacher so
        return Features(tuple(s.clone() for s in states), tuple(s.clone() for s in scores), None)


def per_match(objective: DistillationObjective, student: Features, teacher: Features):
    """The baseline: one loss per match, accumulated one at a time."""
    total = torch.zeros((), device=student.hidden[0].device)
    parts: dict[str, torch.Tensor] = {}

    def zero_masked(scores):
        return scores.masked_fill(scores <= MASKED_SCORE_THRESHOLD, 0.0)

    for m in objective.matches:
        if m.feature == "attention":
            loss = F.mse_loss(zero_masked(student.scores[m.student - 1]), zero_masked(teacher.scores[m.teacher - 1]))
        else:  # a target autograd saves must not be an inference tensor: a copy, as before
            proj = objective.embedding_proj if m.feature == "embedding" else objective.hidden_proj
            loss = F.mse_loss(proj(student.hidden[m.student]), teacher.hidden[m.teacher].clone())
        total = total + m.weight * loss
        key = f"{m.feature}_loss"
        parts[key] = parts[key] + loss.detach() if key in parts else loss.detach()
    return total, parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="batch 2, length 8, hidden 24 / 48: dispatch-bound")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=0, help="forward+backward passes per timing (default: 200 tiny, 10 else)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    args = parser.parse_args()
    runtime = Runtime.create(args.device, args.precision)
    batch, length, s_hidden, t_hidden = (2, 8, 24, 48) if args.tiny else (args.batch, args.length, 312, 768)
    repeats = args.repeats or (200 if args.tiny else 10)
    student = features(4, s_hidden, 12, batch, length, args.device, student=True)
    teacher = features(12, t_hidden, 12, batch, length, args.device, student=False)
    torch.manual_seed(0)
    matches = build_matches("uniform", 4, 12, LossWeights(prediction=0.0), intermediate=True, prediction=False)
    objective = DistillationObjective(matches, s_hidden, t_hidden, student_heads=12, teacher_heads=12).to(args.device)
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu, torch threads {torch.get_num_threads()}"
    print(f"general-distillation objective, TinyBERT4 ({s_hidden}) vs 12 layers ({t_hidden}), batch {batch}, "
          f"length {length}, {where}, {args.precision}")

    def synchronize():
        if args.device == "cuda":
            torch.cuda.synchronize()

    def one(fn):
        with runtime.autocast():
            total, _ = fn(student, teacher)
        total.backward()
        return total

    rows = {}
    for name, fn in (("one loss per match (baseline)", lambda s, t: per_match(objective, s, t)),
                     ("stacked layers (tinybert)", objective)):
        for _ in range(3):
            value = one(fn)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            one(fn)
            synchronize()
        ops = [e for e in prof.events() if e.name.startswith("aten::")]
        outermost = [e for e in ops if e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")]
        times = []
        for _ in range(3):
            synchronize()
            began = time.perf_counter()
            for _ in range(repeats):
                one(fn)
            synchronize()
            times.append((time.perf_counter() - began) / repeats)
        rows[name] = min(times)
        print(f"{name:32s} aten operators {len(ops):4d} (outermost {len(outermost):3d})   "
              f"{min(times) * 1000:8.3f} ms   loss {value.item():.6f}")
    baseline, stacked = rows.values()
    print(f"stacked / baseline time: {stacked / baseline:.2f}")


if __name__ == "__main__":
    main()
